import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  frameHeaderSize,
  writeFrameHeader,
  encodeFrame,
  encodeServerFrame,
  encodeCloseFrame,
  serverCloseFrame,
  EMPTY_PING_FRAME,
  EMPTY_PONG_FRAME,
} from '../../src/protocol/frame-encoder.js';
import { MaskKeyPool, type MaskKeySource } from '../../src/protocol/mask.js';
import { Opcode } from '../../src/protocol/constants.js';
import { hex } from '../helpers/bytes.js';
import { frame, parse, CLIENT, SERVER, hexOf, type Event } from '../helpers/protocol.js';

/** A mask source that always yields the same key (the "injected mask" of the round-trip tests). */
function fixedKey(key: string): MaskKeySource {
  const buf = hex(key);
  return { buf, next: () => 0 };
}

/**
 * Both directions: encode(frame) equals the bytes, and parse(bytes) gives the frame back.
 * Server frames (unmasked) are parsed by a client parser and the other way round.
 */
function roundTrip(name: string, opcode: number, payload: Buffer, bytes: string, key: string | null, expected: Event[]): void {
  const encoded = encodeFrame(opcode, payload, true, key === null ? null : fixedKey(key));
  assert.is(encoded.toString('hex'), hex(bytes).toString('hex'), `${name}: encode`);
  assert.equal(parse(hex(bytes), key === null ? CLIENT : SERVER), expected, `${name}: parse`);
}

test('RFC 6455 5.7 examples, both directions', () => {
  roundTrip('unmasked Hello', Opcode.Text, Buffer.from('Hello'), '81 05 48 65 6c 6c 6f', null, [['message', hexOf('Hello'), false]]);
  roundTrip('masked Hello', Opcode.Text, Buffer.from('Hello'), '81 85 37 fa 21 3d 7f 9f 4d 51 58', '37fa213d', [['message', hexOf('Hello'), false]]);
  roundTrip('unmasked ping', Opcode.Ping, Buffer.from('Hello'), '89 05 48 65 6c 6c 6f', null, [['ping', hexOf('Hello')]]);
  roundTrip('masked pong', Opcode.Pong, Buffer.from('Hello'), '8a 85 37 fa 21 3d 7f 9f 4d 51 58', '37fa213d', [['pong', hexOf('Hello')]]);
  // 256 bytes of binary data in one unmasked frame: 16-bit length.
  const p256 = Buffer.alloc(256, 0xab);
  roundTrip('256 bytes', Opcode.Binary, p256, '82 7e 01 00' + p256.toString('hex'), null, [['message', p256.toString('hex'), true]]);
  // 64 KiB in one unmasked frame: 64-bit length.
  const p64k = Buffer.alloc(65536, 0xcd);
  roundTrip('64 KiB', Opcode.Binary, p64k, '82 7f 00 00 00 00 00 01 00 00' + p64k.toString('hex'), null, [['message', p64k.toString('hex'), true]]);
});

test('frameHeaderSize at the length-form boundaries', () => {
  const cases: Array<[number, number]> = [[0, 2], [125, 2], [126, 4], [65535, 4], [65536, 10], [2 ** 32, 10]];
  for (const [len, size] of cases) {
    assert.is(frameHeaderSize(len, false), size, `${len}`);
    assert.is(frameHeaderSize(len, true), size + 4, `${len} masked`);
  }
});

test('writeFrameHeader matches the independent frame builder at every length form', () => {
  for (const len of [0, 1, 125, 126, 127, 65535, 65536, 100000]) {
    for (const masked of [false, true]) {
      for (const fin of [true, false]) {
        const key = hex('0a0b0c0d');
        const target = Buffer.alloc(20, 0xee);
        const n = writeFrameHeader(target, 3, Opcode.Binary, len, fin, false, masked ? key : null, 0);
        assert.is(n, frameHeaderSize(len, masked));
        const expected = frame({ opcode: Opcode.Binary, payload: Buffer.alloc(len), fin, mask: masked ? key : null }).subarray(0, n);
        assert.ok(target.subarray(3, 3 + n).equals(expected), `len ${len} masked ${masked} fin ${fin}`);
        assert.is(target[2], 0xee);
        assert.is(target[3 + n], 0xee);
      }
    }
  }
});

test('writeFrameHeader: RSV1 for an extension, the key taken from an offset in a pool', () => {
  const target = Buffer.alloc(6);
  const pool = hex('00 00 00 00 11 22 33 44');
  assert.is(writeFrameHeader(target, 0, Opcode.Text, 3, true, true, pool, 4), 6);
  assert.is(target.toString('hex'), 'c18311223344');
});

test('writeFrameHeader: 64-bit lengths above 2^32 are written exactly', () => {
  const target = Buffer.alloc(10);
  writeFrameHeader(target, 0, Opcode.Binary, 2 ** 40 + 5, true, false, null, 0);
  assert.is(target.toString('hex'), '827f0000010000000005');
});

test('writeFrameHeader refuses frames RFC 6455 forbids (RangeError)', () => {
  const t = Buffer.alloc(14);
  const isRange = (e: unknown) => e instanceof RangeError;
  assert.throws(() => writeFrameHeader(t, 0, Opcode.Ping, 126, true, false, null, 0), isRange);
  assert.throws(() => writeFrameHeader(t, 0, Opcode.Close, 2, false, false, null, 0), isRange);
  assert.throws(() => writeFrameHeader(t, 0, Opcode.Binary, -1, true, false, null, 0), isRange);
  assert.throws(() => writeFrameHeader(t, 0, Opcode.Binary, 2 ** 53, true, false, null, 0), isRange);
});

test('encodeFrame: a client frame is masked with a fresh key and never mutates the payload', () => {
  const pool = new MaskKeyPool();
  const payload = Buffer.from('the same payload, twice');
  const copy = Buffer.from(payload);
  const a = encodeFrame(Opcode.Text, payload, true, pool);
  const b = encodeFrame(Opcode.Text, payload, true, pool);
  assert.ok(payload.equals(copy));
  assert.not.ok(a.subarray(2, 6).equals(b.subarray(2, 6)), 'different keys');
  for (const f of [a, b]) assert.equal(parse(f), [['message', payload.toString('hex'), false]]);
});

test('encodeFrame with fin=false makes fragments a parser joins', () => {
  const bytes = Buffer.concat([
    encodeFrame(Opcode.Text, Buffer.from('ab'), false, null),
    encodeFrame(Opcode.Continuation, Buffer.from('cd'), true, null),
  ]);
  assert.is(bytes.toString('hex'), '01026162' + '80026364');
  assert.equal(parse(bytes, CLIENT), [['message', hexOf('abcd'), false]]);
});

test('encodeCloseFrame: code and reason, 1005 as an empty body, both directions', () => {
  assert.is(encodeCloseFrame(1000, '', null).toString('hex'), '880203e8');
  assert.is(encodeCloseFrame(1001, 'bye', null).toString('hex'), '880503e9' + hexOf('bye'));
  assert.is(encodeCloseFrame(1005, '', null).toString('hex'), '8800');
  assert.equal(parse(encodeCloseFrame(4000, 'ünï', null), CLIENT), [['close', 4000, 'ünï']]);
  assert.equal(parse(encodeCloseFrame(1000, 'x', fixedKey('01020304'))), [['close', 1000, 'x']]);
  assert.equal(parse(encodeCloseFrame(1005, '', null), CLIENT), [['close', 1005, '']]);
});

test('encodeCloseFrame: a 123-byte reason fits, 124 throws RangeError; bad codes throw', () => {
  const isRange = (e: unknown) => e instanceof RangeError;
  assert.is(encodeCloseFrame(1000, 'r'.repeat(123), null).length, 2 + 125);
  assert.throws(() => encodeCloseFrame(1000, 'r'.repeat(124), null), isRange);
  assert.throws(() => encodeCloseFrame(1000, '€'.repeat(42), null), isRange); // 126 bytes
  assert.throws(() => encodeCloseFrame(1006, '', null), isRange);
  assert.throws(() => encodeCloseFrame(999, '', null), isRange);
  assert.throws(() => encodeCloseFrame(1005, 'reason without code', null), isRange);
});

test('constant control frames are built once and parse back', () => {
  assert.is(EMPTY_PING_FRAME.toString('hex'), '8900');
  assert.is(EMPTY_PONG_FRAME.toString('hex'), '8a00');
  for (const code of [1000, 1001, 1002, 1007, 1008, 1009, 1011]) {
    const f = serverCloseFrame(code);
    assert.ok(serverCloseFrame(code) === f, `${code} cached`);
    assert.is(f.toString('hex'), '8802' + code.toString(16).padStart(4, '0'));
  }
  assert.is(serverCloseFrame(4001).toString('hex'), '88020fa1');
  assert.throws(() => serverCloseFrame(1006), (e: unknown) => e instanceof RangeError);
});

test('encodeServerFrame: one unmasked final frame from a string or bytes, or its header alone', () => {
  assert.is(encodeServerFrame(Opcode.Text, 'Hello').toString('hex'), hex('81 05 48 65 6c 6c 6f').toString('hex'));
  assert.is(encodeServerFrame(Opcode.Text, 'é').toString('hex'), '8102c3a9', 'UTF-8 length, not string length');
  assert.is(encodeServerFrame(Opcode.Pong, Buffer.from('Hello')).toString('hex'), hex('8a 05 48 65 6c 6c 6f').toString('hex'));
  for (const size of [0, 125, 126, 65535, 65536]) {
    const payload = Buffer.alloc(size, 0x5a);
    const whole = encodeServerFrame(Opcode.Binary, payload);
    assert.ok(whole.equals(encodeFrame(Opcode.Binary, payload, true, null)), `${size}: same bytes as encodeFrame`);
    const header = encodeServerFrame(Opcode.Binary, payload, true);
    assert.is(header.length, frameHeaderSize(size, false), `${size}: header only`);
    assert.ok(Buffer.concat([header, payload]).equals(whole), `${size}: header then payload is the frame`);
  }
  assert.throws(() => encodeServerFrame(Opcode.Ping, Buffer.alloc(126)), RangeError);
});

test.run();
