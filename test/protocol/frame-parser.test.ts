import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FrameParser, type FrameParserOptions } from '../../src/protocol/frame-parser.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { Opcode } from '../../src/protocol/constants.js';
import { bits, hex, lcg, randomChunks } from '../helpers/bytes.js';
import { frame, cframe, parse, parseSplit, Recorder, SERVER, CLIENT, hexOf, bytewise, type Event } from '../helpers/protocol.js';

/** Asserts that the bytes fail with exactly this error, fed whole and byte by byte, and nothing after it. */
function expectError(bytes: Buffer, code: string, closeCode: number, options: FrameParserOptions = SERVER, before: Event[] = []): void {
  for (const chunks of [[bytes], bytewise(bytes)]) {
    const events = parse(chunks, options);
    assert.equal(events, [...before, ['error', code, closeCode]], `${code} (${chunks.length} chunks)`);
  }
}

/** Parses and returns the recorder and parser, feeding the given chunks as they are (no copy). */
function run(chunks: Buffer[], options: FrameParserOptions = SERVER): { rec: Recorder; parser: FrameParser } {
  const rec = new Recorder();
  const parser = new FrameParser(rec, options);
  for (const c of chunks) parser.push(c);
  return { rec, parser };
}

// ---------------------------------------------------------------------------------------
// RFC 6455 5.1: masking
// ---------------------------------------------------------------------------------------

test('5.1 server: a masked text frame is unmasked ("Hello", the RFC 5.7 example)', () => {
  assert.equal(parse(hex('81 85 37 fa 21 3d 7f 9f 4d 51 58')), [['message', hexOf('Hello'), false]]);
});

test('5.1 client: an unmasked text frame ("Hello", the RFC 5.7 example)', () => {
  assert.equal(parse(hex('81 05 48 65 6c 6c 6f'), CLIENT), [['message', hexOf('Hello'), false]]);
});

test('5.1 server: an unmasked frame fails with WS_ERR_EXPECTED_MASK / 1002', () => {
  expectError(hex('81 05 48 65 6c 6c 6f'), 'WS_ERR_EXPECTED_MASK', 1002);
});

test('5.1 client: a masked frame fails with WS_ERR_UNEXPECTED_MASK / 1002', () => {
  expectError(hex('81 85 37 fa 21 3d 7f 9f 4d 51 58'), 'WS_ERR_UNEXPECTED_MASK', 1002, CLIENT);
});

test('5.1 a mask key of zero is a valid mask', () => {
  assert.equal(parse(frame({ opcode: Opcode.Binary, payload: 'abc', mask: Buffer.alloc(4) })), [['message', hexOf('abc'), true]]);
});

// ---------------------------------------------------------------------------------------
// RFC 6455 5.2: base framing
// ---------------------------------------------------------------------------------------

test('5.2 header bits read as in the RFC diagram (bits() literal)', () => {
  const bytes = Buffer.concat([bits('1 000 0010  1 0000011'), hex('00 00 00 00'), hex('01 02 03')]);
  assert.equal(parse(bytes), [['message', '010203', true]]);
});

for (const [rsv, name] of [[0x40, 'RSV1'], [0x20, 'RSV2'], [0x10, 'RSV3']] as const) {
  test(`5.2 ${name} set without an extension fails with WS_ERR_UNEXPECTED_RSV / 1002`, () => {
    expectError(cframe({ opcode: Opcode.Text, payload: 'x', rsv }), 'WS_ERR_UNEXPECTED_RSV', 1002);
    expectError(cframe({ opcode: Opcode.Ping, rsv }), 'WS_ERR_UNEXPECTED_RSV', 1002);
  });
}

test('5.2 extension seam: rsvAllowed accepts RSV1 on the first frame only, reports it, skips UTF-8', () => {
  const options = { ...SERVER, rsvAllowed: 0x40 };
  const seen: number[] = [];
  const rec = new Recorder();
  const parser = new FrameParser(rec, options);
  rec.after = () => seen.push(parser.messageRsv);
  // Compressed bytes are not UTF-8; the extension validates after inflating.
  parser.push(cframe({ opcode: Opcode.Text, payload: hex('ff fe'), rsv: 0x40 }));
  parser.push(cframe({ opcode: Opcode.Text, payload: 'plain' }));
  assert.equal(rec.events, [['message', 'fffe', false], ['message', hexOf('plain'), false]]);
  assert.equal(seen, [0x40, 0]);
  expectError(cframe({ opcode: Opcode.Text, payload: 'x', rsv: 0x20 }), 'WS_ERR_UNEXPECTED_RSV', 1002, options);
  expectError(cframe({ opcode: Opcode.Ping, rsv: 0x40 }), 'WS_ERR_UNEXPECTED_RSV', 1002, options);
  const fragmented = Buffer.concat([
    cframe({ opcode: Opcode.Text, payload: 'a', fin: false, rsv: 0x40 }),
    cframe({ opcode: Opcode.Continuation, payload: 'b', rsv: 0x40 }),
  ]);
  expectError(fragmented, 'WS_ERR_UNEXPECTED_RSV', 1002, options);
});

test('5.2 reserved opcodes 3-7 and 11-15 fail with WS_ERR_INVALID_OPCODE / 1002', () => {
  for (const opcode of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) {
    expectError(cframe({ opcode, payload: 'x' }), 'WS_ERR_INVALID_OPCODE', 1002);
    expectError(cframe({ opcode, payload: 'x', fin: false }), 'WS_ERR_INVALID_OPCODE', 1002);
  }
});

test('5.2 payload lengths in 7-, 16- and 64-bit forms, at the form boundaries', () => {
  for (const len of [0, 1, 125, 126, 127, 65535, 65536, 70000]) {
    const payload = Buffer.alloc(len, 0x5a);
    for (const mask of [Buffer.from('01020304', 'hex'), null]) {
      const bytes = frame({ opcode: Opcode.Binary, payload, mask });
      const opts = mask ? SERVER : CLIENT;
      assert.equal(parse(bytes, opts), [['message', payload.toString('hex'), true]], `len ${len}`);
      assert.equal(parseSplit(bytes, len, 5, opts), [['message', payload.toString('hex'), true]], `len ${len} split`);
    }
  }
});

test('5.2 non-minimal length encodings are accepted (as browsers and Autobahn do)', () => {
  for (const lengthBits of [16, 64] as const) {
    const bytes = cframe({ opcode: Opcode.Text, payload: 'hi', lengthBits });
    assert.equal(parse(bytes), [['message', hexOf('hi'), false]]);
    assert.equal(parse(bytewise(bytes)), [['message', hexOf('hi'), false]]);
  }
});

test('5.2 a 64-bit length with the most significant bit set fails with WS_ERR_INVALID_LENGTH / 1002', () => {
  expectError(hex('82 ff 80 00 00 00 00 00 00 01 00 00 00 00'), 'WS_ERR_INVALID_LENGTH', 1002);
  expectError(hex('82 ff ff ff ff ff ff ff ff ff'), 'WS_ERR_INVALID_LENGTH', 1002);
});

test('5.2 a 64-bit length above 2^53 but with the top bit clear fails with 1009', () => {
  expectError(hex('82 ff 7f ff ff ff ff ff ff ff 00 00 00 00'), 'WS_ERR_MESSAGE_TOO_BIG', 1009);
});

// ---------------------------------------------------------------------------------------
// RFC 6455 5.4: fragmentation
// ---------------------------------------------------------------------------------------

test('5.4 a text message in three fragments is delivered once, assembled', () => {
  const bytes = Buffer.concat([
    cframe({ opcode: Opcode.Text, payload: 'Hel', fin: false }),
    cframe({ opcode: Opcode.Continuation, payload: 'lo ', fin: false }),
    cframe({ opcode: Opcode.Continuation, payload: 'world' }),
  ]);
  assert.equal(parse(bytes), [['message', hexOf('Hello world'), false]]);
  assert.equal(parse(bytewise(bytes)), [['message', hexOf('Hello world'), false]]);
});

test('5.4 control frames interleaved in a fragmented message are handled at once', () => {
  const bytes = Buffer.concat([
    cframe({ opcode: Opcode.Binary, payload: 'ab', fin: false }),
    cframe({ opcode: Opcode.Ping, payload: 'p1' }),
    cframe({ opcode: Opcode.Continuation, payload: 'cd', fin: false }),
    cframe({ opcode: Opcode.Pong, payload: '' }),
    cframe({ opcode: Opcode.Continuation, payload: 'ef' }),
  ]);
  const expected: Event[] = [['ping', hexOf('p1')], ['pong', ''], ['message', hexOf('abcdef'), true]];
  assert.equal(parse(bytes), expected);
  assert.equal(parse(bytewise(bytes)), expected);
});

test('5.4 a close frame inside a fragmented message closes; the partial message is dropped', () => {
  const { rec, parser } = run([
    Buffer.concat([
      cframe({ opcode: Opcode.Text, payload: 'ab', fin: false }),
      cframe({ opcode: Opcode.Close, payload: hex('03e8') }),
      cframe({ opcode: Opcode.Continuation, payload: 'cd' }),
    ]),
  ]);
  assert.equal(rec.events, [['close', 1000, '']]);
  assert.is(parser.bufferedBytes, 0);
});

test('5.4 empty fragments, including an empty first and last fragment', () => {
  const bytes = Buffer.concat([
    cframe({ opcode: Opcode.Text, payload: '', fin: false }),
    cframe({ opcode: Opcode.Continuation, payload: '', fin: false }),
    cframe({ opcode: Opcode.Continuation, payload: 'x', fin: false }),
    cframe({ opcode: Opcode.Continuation, payload: '' }),
    cframe({ opcode: Opcode.Binary, payload: '', fin: false }),
    cframe({ opcode: Opcode.Continuation, payload: '' }),
  ]);
  assert.equal(parse(bytes), [['message', hexOf('x'), false], ['message', '', true]]);
});

test('5.4 a continuation frame with no message in progress fails with WS_ERR_UNEXPECTED_CONTINUATION / 1002', () => {
  expectError(cframe({ opcode: Opcode.Continuation, payload: 'x' }), 'WS_ERR_UNEXPECTED_CONTINUATION', 1002);
  const afterComplete = Buffer.concat([cframe({ opcode: Opcode.Text, payload: 'a' }), cframe({ opcode: Opcode.Continuation, payload: 'b' })]);
  expectError(afterComplete, 'WS_ERR_UNEXPECTED_CONTINUATION', 1002, SERVER, [['message', hexOf('a'), false]]);
});

test('5.4 a new data frame during a fragmented message fails with WS_ERR_EXPECTED_CONTINUATION / 1002', () => {
  for (const opcode of [Opcode.Text, Opcode.Binary]) {
    const bytes = Buffer.concat([cframe({ opcode: Opcode.Text, payload: 'a', fin: false }), cframe({ opcode, payload: 'b' })]);
    expectError(bytes, 'WS_ERR_EXPECTED_CONTINUATION', 1002);
  }
});

test('5.4 1,000,000 empty continuation frames hold no buffer', () => {
  const empty = cframe({ opcode: Opcode.Continuation, payload: '', fin: false });
  const batch = Buffer.concat(Array.from({ length: 10000 }, () => empty));
  const rec = new Recorder();
  const parser = new FrameParser(rec, SERVER);
  parser.push(cframe({ opcode: Opcode.Text, payload: '', fin: false }));
  for (let i = 0; i < 100; i++) {
    parser.push(Buffer.from(batch));
    assert.is(parser.bufferedBytes, 0);
  }
  parser.push(cframe({ opcode: Opcode.Continuation, payload: 'end' }));
  assert.equal(rec.events, [['message', hexOf('end'), false]]);
  assert.is(parser.bufferedBytes, 0);
});

test('5.4 16 MiB in 64-byte fragments is assembled in one growing buffer, once', () => {
  const total = 16 * 1024 * 1024;
  const piece = Buffer.alloc(64, 0x61);
  const first = cframe({ opcode: Opcode.Text, payload: piece, fin: false });
  const middle = cframe({ opcode: Opcode.Continuation, payload: piece, fin: false });
  const last = cframe({ opcode: Opcode.Continuation, payload: piece });
  // 64 KiB socket-sized chunks of the whole stream.
  const count = total / 64;
  const perChunk = 1024;
  const block = Buffer.concat(Array.from({ length: perChunk }, () => middle));
  let got = null as Buffer | null;
  const parser = new FrameParser(
    {
      onMessage: (data) => void (got = Buffer.from(data)),
      onPing() {},
      onPong() {},
      onClose() {},
      onProtocolError: (e) => assert.unreachable(e.message),
    },
    SERVER,
  );
  parser.push(first);
  let sent = 1;
  while (sent + perChunk < count) {
    parser.push(Buffer.from(block));
    sent += perChunk;
    assert.ok(parser.bufferedBytes <= total);
  }
  while (sent < count - 1) {
    parser.push(Buffer.from(middle));
    sent++;
  }
  parser.push(last);
  assert.ok(got !== null);
  assert.is(got!.length, total);
  assert.ok(got!.every((b) => b === 0x61));
  assert.is(parser.bufferedBytes, 0);
});

test('5.4 a code point split across fragments is valid text', () => {
  const euro = Buffer.from('€'); // e2 82 ac
  const bytes = Buffer.concat([
    cframe({ opcode: Opcode.Text, payload: euro.subarray(0, 1), fin: false }),
    cframe({ opcode: Opcode.Continuation, payload: euro.subarray(1, 2), fin: false }),
    cframe({ opcode: Opcode.Continuation, payload: euro.subarray(2) }),
  ]);
  assert.equal(parse(bytes), [['message', euro.toString('hex'), false]]);
});

// ---------------------------------------------------------------------------------------
// RFC 6455 5.5: control frames
// ---------------------------------------------------------------------------------------

test('5.5.2/5.5.3 ping and pong payloads of 0 and 125 bytes', () => {
  const p125 = Buffer.alloc(125, 0x70);
  const bytes = Buffer.concat([
    cframe({ opcode: Opcode.Ping }),
    cframe({ opcode: Opcode.Ping, payload: p125 }),
    cframe({ opcode: Opcode.Pong, payload: p125 }),
    cframe({ opcode: Opcode.Pong }),
  ]);
  const expected: Event[] = [['ping', ''], ['ping', p125.toString('hex')], ['pong', p125.toString('hex')], ['pong', '']];
  assert.equal(parse(bytes), expected);
  assert.equal(parse(bytewise(bytes)), expected);
});

test('5.5 a control frame of 126 bytes fails with WS_ERR_CONTROL_TOO_LARGE / 1002, from the header', () => {
  for (const opcode of [Opcode.Ping, Opcode.Pong, Opcode.Close]) {
    const bytes = cframe({ opcode, payload: Buffer.alloc(126) });
    expectError(bytes.subarray(0, 2), 'WS_ERR_CONTROL_TOO_LARGE', 1002);
    expectError(bytes, 'WS_ERR_CONTROL_TOO_LARGE', 1002);
  }
  // A small length in the 16-bit form is still a control frame that is too large a form.
  expectError(cframe({ opcode: Opcode.Ping, payload: 'x', lengthBits: 16 }), 'WS_ERR_CONTROL_TOO_LARGE', 1002);
});

test('5.5 a control frame with FIN clear fails with WS_ERR_FRAGMENTED_CONTROL / 1002', () => {
  for (const opcode of [Opcode.Ping, Opcode.Pong, Opcode.Close]) {
    expectError(cframe({ opcode, payload: 'x', fin: false }), 'WS_ERR_FRAGMENTED_CONTROL', 1002);
  }
});

// ---------------------------------------------------------------------------------------
// RFC 6455 5.5.1, 7.4: close frames
// ---------------------------------------------------------------------------------------

test('5.5.1 an empty close frame reports 1005', () => {
  assert.equal(parse(cframe({ opcode: Opcode.Close })), [['close', 1005, '']]);
});

test('5.5.1 a close frame with code and reason', () => {
  const body = Buffer.concat([hex('03e8'), Buffer.from('bye ✓')]);
  assert.equal(parse(bytewise(cframe({ opcode: Opcode.Close, payload: body }))), [['close', 1000, 'bye ✓']]);
  assert.equal(parse(cframe({ opcode: Opcode.Close, payload: hex('0fa0') })), [['close', 4000, '']]);
});

test('5.5.1 a 1-byte close payload fails with WS_ERR_INVALID_CLOSE_PAYLOAD / 1002', () => {
  expectError(cframe({ opcode: Opcode.Close, payload: hex('03') }), 'WS_ERR_INVALID_CLOSE_PAYLOAD', 1002);
});

test('7.4 close codes not allowed on the wire fail with WS_ERR_INVALID_CLOSE_CODE / 1002', () => {
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
    const payload = Buffer.from([code >> 8, code & 255]);
    expectError(cframe({ opcode: Opcode.Close, payload }), 'WS_ERR_INVALID_CLOSE_CODE', 1002);
  }
});

test('5.5.1 a close reason that is not UTF-8 fails with WS_ERR_INVALID_CLOSE_REASON / 1007', () => {
  expectError(cframe({ opcode: Opcode.Close, payload: hex('03e8 ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80') }), 'WS_ERR_INVALID_CLOSE_REASON', 1007);
});

test('5.5.1 input after a close frame is discarded, even in the same chunk', () => {
  const bytes = Buffer.concat([
    cframe({ opcode: Opcode.Text, payload: 'before' }),
    cframe({ opcode: Opcode.Close, payload: hex('03e9') }),
    cframe({ opcode: Opcode.Text, payload: 'after' }),
    hex('ff ff ff'),
  ]);
  const { rec, parser } = run([bytes]);
  assert.equal(rec.events, [['message', hexOf('before'), false], ['close', 1001, '']]);
  assert.ok(parser.halted);
  parser.push(cframe({ opcode: Opcode.Text, payload: 'later' }));
  assert.is(rec.events.length, 2);
});

// ---------------------------------------------------------------------------------------
// RFC 6455 5.6, 8.1: text must be UTF-8, failing fast
// ---------------------------------------------------------------------------------------

test('8.1 invalid UTF-8 in a single-frame text message fails with WS_ERR_INVALID_UTF8 / 1007', () => {
  expectError(cframe({ opcode: Opcode.Text, payload: hex('cebae1bdb9cf83cebcceb5eda080656469746564') }), 'WS_ERR_INVALID_UTF8', 1007);
  expectError(cframe({ opcode: Opcode.Text, payload: Buffer.concat([Buffer.alloc(100, 0x61), hex('c0 af')]) }), 'WS_ERR_INVALID_UTF8', 1007);
  // Truncated at the end of the message.
  expectError(cframe({ opcode: Opcode.Text, payload: hex('48 e2 82') }), 'WS_ERR_INVALID_UTF8', 1007);
});

test('8.1 binary messages are not UTF-8 checked', () => {
  assert.equal(parse(cframe({ opcode: Opcode.Binary, payload: hex('ff fe') })), [['message', 'fffe', true]]);
});

test('8.1 fail fast inside one frame: the error fires at the chunk with the invalid bytes (Autobahn 6.4.3)', () => {
  // One text frame whose payload arrives in three chunks; the invalid F4 90 is in the second.
  const payload = hex('cebae1bdb9cf83cebcceb5 f4908080 656469746564');
  const bytes = cframe({ opcode: Opcode.Text, payload });
  const headerLen = 6;
  const { rec, parser } = run([bytes.subarray(0, headerLen + 11), bytes.subarray(headerLen + 11, headerLen + 13)].map((b) => Buffer.from(b)));
  assert.equal(rec.events, [['error', 'WS_ERR_INVALID_UTF8', 1007]]);
  assert.ok(parser.halted);
});

test('8.1 fail fast inside one large frame: a bad piece among long pieces', () => {
  const payload = Buffer.concat([Buffer.alloc(5000, 0x61), hex('ed a0 80'), Buffer.alloc(5000, 0x62)]);
  const bytes = cframe({ opcode: Opcode.Text, payload });
  const rec = new Recorder();
  const parser = new FrameParser(rec, SERVER);
  parser.push(Buffer.from(bytes.subarray(0, 3000)));
  assert.equal(rec.events, []);
  parser.push(Buffer.from(bytes.subarray(3000, 5010)));
  assert.equal(rec.events, [['error', 'WS_ERR_INVALID_UTF8', 1007]]);
  assert.is(parser.bufferedBytes, 0);
});

test('8.1 fail fast across fragments: the fragment that makes text invalid fails (Autobahn 6.4.1)', () => {
  const rec = new Recorder();
  const parser = new FrameParser(rec, SERVER);
  parser.push(cframe({ opcode: Opcode.Text, payload: hex('cebae1bdb9cf83cebcceb5'), fin: false }));
  assert.equal(rec.events, []);
  parser.push(cframe({ opcode: Opcode.Continuation, payload: hex('f4908080'), fin: false }));
  assert.equal(rec.events, [['error', 'WS_ERR_INVALID_UTF8', 1007]]);
  assert.is(parser.bufferedBytes, 0);
});

test('8.1 fail fast: a fragment ending in a prefix that can never be valid fails at once', () => {
  for (const tail of ['f5', 'c0', 'ed a0', 'f4 90', 'e0 80', 'f0 80']) {
    const rec = new Recorder();
    const parser = new FrameParser(rec, SERVER);
    parser.push(cframe({ opcode: Opcode.Text, payload: Buffer.concat([Buffer.from('abc'), hex(tail)]), fin: false }));
    assert.equal(rec.events, [['error', 'WS_ERR_INVALID_UTF8', 1007]], tail);
  }
  // A valid prefix cut at the fragment end waits for the rest.
  const rec = new Recorder();
  const parser = new FrameParser(rec, SERVER);
  parser.push(cframe({ opcode: Opcode.Text, payload: hex('61 f0 9f'), fin: false }));
  assert.equal(rec.events, []);
  parser.push(cframe({ opcode: Opcode.Continuation, payload: hex('98 80') }));
  assert.equal(rec.events, [['message', '61f09f9880', false]]);
});

test('8.1 a fragmented text message ending inside a code point fails with 1007', () => {
  const bytes = Buffer.concat([
    cframe({ opcode: Opcode.Text, payload: 'ok', fin: false }),
    cframe({ opcode: Opcode.Continuation, payload: hex('e2 82') }),
  ]);
  expectError(bytes, 'WS_ERR_INVALID_UTF8', 1007);
});

// ---------------------------------------------------------------------------------------
// RFC 6455 7.1.7: after a failure, discard input
// ---------------------------------------------------------------------------------------

test('7.1.7 after a protocol error nothing more is reported, and onProtocolError fires once', () => {
  const bytes = Buffer.concat([
    cframe({ opcode: Opcode.Text, payload: 'a' }),
    cframe({ opcode: 3 }),
    cframe({ opcode: 3 }),
    cframe({ opcode: Opcode.Text, payload: 'b' }),
  ]);
  const { rec, parser } = run([bytes]);
  assert.equal(rec.events, [['message', hexOf('a'), false], ['error', 'WS_ERR_INVALID_OPCODE', 1002]]);
  assert.is(rec.errors.length, 1);
  assert.instance(rec.errors[0], ProtocolError);
  assert.is(rec.errors[0]!.name, 'ProtocolError');
  parser.push(cframe({ opcode: 3 }));
  assert.is(rec.errors.length, 1);
  assert.ok(parser.halted);
});

test('halt() from a callback stops the rest of the chunk at once', () => {
  const bytes = Buffer.concat([
    cframe({ opcode: Opcode.Text, payload: 'one' }),
    cframe({ opcode: Opcode.Ping }),
    cframe({ opcode: Opcode.Text, payload: 'two' }),
  ]);
  const rec = new Recorder();
  const parser = new FrameParser(rec, SERVER);
  rec.after = () => parser.halt();
  parser.push(Buffer.from(bytes));
  assert.equal(rec.events, [['message', hexOf('one'), false]]);
  assert.ok(parser.halted);
  const rec2 = new Recorder();
  const parser2 = new FrameParser(rec2, SERVER);
  rec2.after = (e) => e[0] === 'ping' && parser2.halt();
  parser2.push(Buffer.from(bytes));
  assert.equal(rec2.events, [['message', hexOf('one'), false], ['ping', '']]);
});

test('halt() releases a partly assembled message', () => {
  const rec = new Recorder();
  const parser = new FrameParser(rec, SERVER);
  parser.push(cframe({ opcode: Opcode.Binary, payload: Buffer.alloc(1000), fin: false }));
  assert.ok(parser.bufferedBytes >= 1000);
  parser.halt();
  assert.is(parser.bufferedBytes, 0);
  parser.push(cframe({ opcode: Opcode.Continuation, payload: 'x' }));
  assert.equal(rec.events, []);
});

// ---------------------------------------------------------------------------------------
// Limits: maxPayload (RFC 6455 10.4, close code 1009)
// ---------------------------------------------------------------------------------------

test('10.4 exactly maxPayload passes; maxPayload + 1 fails with 1009 from the header alone', () => {
  const options = { maxPayload: 1000, expectMasked: true };
  assert.equal(parse(cframe({ opcode: Opcode.Binary, payload: Buffer.alloc(1000, 1) }), options), [['message', '01'.repeat(1000), true]]);
  const over = cframe({ opcode: Opcode.Binary, payload: Buffer.alloc(1001) });
  // Only the first 4 bytes (header up to the length) are fed: the error fires already.
  const rec = new Recorder();
  const parser = new FrameParser(rec, options);
  parser.push(over.subarray(0, 4));
  assert.equal(rec.events, [['error', 'WS_ERR_MESSAGE_TOO_BIG', 1009]]);
  assert.is(parser.bufferedBytes, 0);
  expectError(over, 'WS_ERR_MESSAGE_TOO_BIG', 1009, options);
});

test('10.4 the 64-bit length form is checked against maxPayload from the header', () => {
  const rec = new Recorder();
  const parser = new FrameParser(rec, { maxPayload: 65536, expectMasked: true });
  parser.push(hex('82 ff 00 00 00 00 00 01 00 01'));
  assert.equal(rec.events, [['error', 'WS_ERR_MESSAGE_TOO_BIG', 1009]]);
});

test('10.4 a fragmented message is limited by the sum of its fragments, at the fragment header', () => {
  const options = { maxPayload: 100, expectMasked: true };
  const ok = Buffer.concat([
    cframe({ opcode: Opcode.Binary, payload: Buffer.alloc(60), fin: false }),
    cframe({ opcode: Opcode.Continuation, payload: Buffer.alloc(40) }),
  ]);
  assert.equal(parse(ok, options), [['message', '00'.repeat(100), true]]);
  const rec = new Recorder();
  const parser = new FrameParser(rec, options);
  parser.push(cframe({ opcode: Opcode.Binary, payload: Buffer.alloc(60), fin: false }));
  parser.push(cframe({ opcode: Opcode.Continuation, payload: Buffer.alloc(41) }).subarray(0, 2));
  assert.equal(rec.events, [['error', 'WS_ERR_MESSAGE_TOO_BIG', 1009]]);
  assert.is(parser.bufferedBytes, 0);
});

test('10.4 a single-frame 16 MiB message', () => {
  const len = 16 * 1024 * 1024;
  const payload = Buffer.alloc(len);
  for (let i = 0; i < len; i += 4096) payload[i] = i & 0xff;
  const bytes = cframe({ opcode: Opcode.Binary, payload });
  for (const chunks of [[bytes], randomChunks(bytes, 9, 65536)]) {
    let got = null as Buffer | null;
    const parser = new FrameParser(
      {
        onMessage: (data) => void (got = Buffer.from(data)),
        onPing() {},
        onPong() {},
        onClose() {},
        onProtocolError: (e) => assert.unreachable(e.message),
      },
      SERVER,
    );
    for (const c of chunks) parser.push(c);
    assert.ok(got !== null && payload.equals(got));
    assert.is(parser.bufferedBytes, 0);
  }
});

// ---------------------------------------------------------------------------------------
// Zero copy and memory
// ---------------------------------------------------------------------------------------

test('zero copy: a payload within one chunk is delivered as a view of that chunk', () => {
  const chunk = Buffer.concat([cframe({ opcode: Opcode.Binary, payload: Buffer.alloc(300, 7) }), cframe({ opcode: Opcode.Ping, payload: 'pp' })]);
  const views: Buffer[] = [];
  const parser = new FrameParser(
    {
      onMessage: (d) => void views.push(d),
      onPing: (d) => void views.push(d),
      onPong() {},
      onClose() {},
      onProtocolError: (e) => assert.unreachable(e.message),
    },
    SERVER,
  );
  parser.push(chunk);
  assert.is(views.length, 2);
  assert.ok(views[0]!.buffer === chunk.buffer && views[0]!.byteOffset === chunk.byteOffset + 8);
  assert.ok(views[0]!.every((b) => b === 7));
  assert.ok(views[1]!.buffer === chunk.buffer);
  assert.is(views[1]!.toString(), 'pp');
});

test('a payload spanning chunks is copied into one buffer of exactly its length; idle holds nothing', () => {
  const bytes = cframe({ opcode: Opcode.Binary, payload: Buffer.alloc(5000, 3) });
  const rec = new Recorder();
  const parser = new FrameParser(rec, SERVER);
  assert.is(parser.bufferedBytes, 0);
  parser.push(Buffer.from(bytes.subarray(0, 8)));
  assert.is(parser.bufferedBytes, 0, 'nothing allocated before payload bytes arrive');
  parser.push(Buffer.from(bytes.subarray(8, 100)));
  assert.is(parser.bufferedBytes, 5000);
  parser.push(Buffer.from(bytes.subarray(100)));
  assert.equal(rec.events, [['message', '03'.repeat(5000), true]]);
  assert.is(parser.bufferedBytes, 0);
});

// ---------------------------------------------------------------------------------------
// Any chunking gives the same result
// ---------------------------------------------------------------------------------------

function mixedStream(): Buffer {
  const rnd = lcg(99);
  const payload = (n: number, text: boolean): Buffer => {
    if (text) return Buffer.from('aé€😀'.repeat(Math.ceil(n / 10))).subarray(0, n - (n % 10 === 0 ? 0 : 0));
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
    return b;
  };
  const parts: Buffer[] = [];
  for (const n of [0, 1, 125, 126, 65535, 65536, 100000]) {
    const key = payload(4, false);
    parts.push(frame({ opcode: Opcode.Binary, payload: payload(n, false), mask: key }));
    // Valid text of about n bytes (whole code points).
    const text = Buffer.from(payload(n, true).toString('utf8').replace(/\ufffd/g, ''));
    parts.push(frame({ opcode: Opcode.Text, payload: text, mask: key }));
    parts.push(cframe({ opcode: Opcode.Ping, payload: payload(Math.min(n, 125), false) }));
  }
  // Fragmented messages with interleaved control frames; a code point split across fragments.
  const euro = Buffer.from('€');
  parts.push(cframe({ opcode: Opcode.Text, payload: Buffer.concat([Buffer.from('x'.repeat(300)), euro.subarray(0, 2)]), fin: false }));
  parts.push(cframe({ opcode: Opcode.Ping, payload: 'mid' }));
  parts.push(cframe({ opcode: Opcode.Continuation, payload: euro.subarray(2), fin: false }));
  parts.push(cframe({ opcode: Opcode.Pong, payload: '' }));
  parts.push(cframe({ opcode: Opcode.Continuation, payload: payload(70000, true).toString('utf8').replace(/\ufffd/g, '') }));
  parts.push(cframe({ opcode: Opcode.Binary, payload: payload(65536, false), fin: false }));
  for (let i = 0; i < 20; i++) parts.push(cframe({ opcode: Opcode.Continuation, payload: payload(i * 7, false), fin: false }));
  parts.push(cframe({ opcode: Opcode.Ping, payload: payload(125, false) }));
  parts.push(cframe({ opcode: Opcode.Continuation, payload: payload(100000, false) }));
  parts.push(cframe({ opcode: Opcode.Close, payload: Buffer.concat([hex('0bb8'), Buffer.from('done')]) }));
  return Buffer.concat(parts);
}

test('chunking equivalence: whole, byte by byte and 50 random splits give the same events', () => {
  const stream = mixedStream();
  const whole = parse(stream);
  assert.is(whole.filter((e) => e[0] === 'error').length, 0);
  assert.is(whole.filter((e) => e[0] === 'message').length, 16);
  assert.equal(whole[whole.length - 1], ['close', 3000, 'done']);
  assert.equal(parseSplit(stream, 0, 1), whole, 'byte by byte');
  for (let seed = 1; seed <= 50; seed++) {
    const maxChunk = [3, 17, 200, 5000, 70000][seed % 5]!;
    assert.equal(parseSplit(stream, seed, maxChunk), whole, `seed ${seed} maxChunk ${maxChunk}`);
  }
});

test('chunking equivalence for errors: the same error at any split', () => {
  const stream = Buffer.concat([
    cframe({ opcode: Opcode.Text, payload: 'ok' }),
    cframe({ opcode: Opcode.Text, payload: Buffer.concat([Buffer.alloc(200, 0x61), hex('ff'), Buffer.alloc(10, 0x61)]) }),
  ]);
  const expected: Event[] = [['message', hexOf('ok'), false], ['error', 'WS_ERR_INVALID_UTF8', 1007]];
  for (let seed = 1; seed <= 30; seed++) assert.equal(parseSplit(stream, seed, 40), expected);
});

test('random valid streams (sizes, fragmentation, masks, control frames) parse to what was sent, at any split', () => {
  const rnd = lcg(2024);
  const bytesOf = (n: number): Buffer => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
    return b;
  };
  const sizes = [0, 1, 2, 3, 4, 5, 7, 125, 126, 127, 200, 1000, 65535, 65536];
  const size = (): number => (rnd() < 0.8 ? sizes[Math.floor(rnd() * sizes.length)]! : Math.floor(rnd() * 3000));
  for (let round = 0; round < 60; round++) {
    const parts: Buffer[] = [];
    const expected: Event[] = [];
    const key = (): Buffer => (rnd() < 0.1 ? Buffer.alloc(4) : bytesOf(4));
    for (let m = 0; m < 8; m++) {
      const isText = rnd() < 0.5;
      const body = isText ? Buffer.from('x€😀é'.repeat(Math.ceil(size() / 10))) : bytesOf(size());
      const pieces = rnd() < 0.5 ? 1 : 1 + Math.floor(rnd() * 5);
      const cuts = Array.from({ length: pieces - 1 }, () => Math.floor(rnd() * (body.length + 1))).sort((a, b) => a - b);
      const bounds = [0, ...cuts, body.length];
      for (let f = 0; f < pieces; f++) {
        const opcode = f === 0 ? (isText ? Opcode.Text : Opcode.Binary) : Opcode.Continuation;
        parts.push(frame({ opcode, payload: body.subarray(bounds[f]!, bounds[f + 1]!), fin: f === pieces - 1, mask: key() }));
        if (f === pieces - 1) expected.push(['message', body.toString('hex'), !isText]);
        if (rnd() < 0.3) {
          const p = bytesOf(Math.floor(rnd() * 126));
          const isPing = rnd() < 0.5;
          parts.push(frame({ opcode: isPing ? Opcode.Ping : Opcode.Pong, payload: p, mask: key() }));
          expected.push([isPing ? 'ping' : 'pong', p.toString('hex')]);
        }
      }
    }
    const stream = Buffer.concat(parts);
    assert.equal(parse(stream), expected, `round ${round} whole`);
    assert.equal(parseSplit(stream, round + 1, 1 + Math.floor(rnd() * 300)), expected, `round ${round} split`);
  }
});


test('a declared length is not an allocation: 16 MiB announced, a few bytes sent, 64 KiB held', () => {
  const rec = new Recorder();
  const parser = new FrameParser(rec, { maxPayload: 16 * 1024 * 1024, expectMasked: true });
  const whole = cframe({ opcode: Opcode.Binary, payload: Buffer.alloc(16 * 1024 * 1024, 1) });
  parser.push(Buffer.from(whole.subarray(0, 100)));
  assert.ok(parser.bufferedBytes <= 64 * 1024, `held ${parser.bufferedBytes}`);
  // The same for a fragment of a message in progress.
  const p2 = new FrameParser(new Recorder(), { maxPayload: 16 * 1024 * 1024, expectMasked: true });
  p2.push(cframe({ opcode: Opcode.Binary, payload: 'a', fin: false }));
  const frag = cframe({ opcode: Opcode.Continuation, payload: Buffer.alloc(8 * 1024 * 1024) });
  p2.push(Buffer.from(frag.subarray(0, 50)));
  assert.ok(p2.bufferedBytes <= 64 * 1024, `held ${p2.bufferedBytes}`);
  // And the rest still arrives intact.
  for (let i = 100; i < whole.length; i += 300_000) parser.push(Buffer.from(whole.subarray(i, Math.min(whole.length, i + 300_000))));
  assert.is(rec.events.length, 1);
  assert.is(parser.bufferedBytes, 0);
});

// ---------------------------------------------------------------------------------------
// Suspension: a handler finishes a message later (a large inflation), the rest waits in order
// ---------------------------------------------------------------------------------------

/** A recorder whose onMessage answers 'suspend' for the messages `suspendOn` says. */
class Suspender extends Recorder {
  constructor(private readonly suspendOn: (data: Buffer) => boolean) {
    super();
  }
  override onMessage(data: Buffer, isBinary: boolean): void | 'suspend' {
    super.onMessage(data, isBinary);
    return this.suspendOn(data) ? 'suspend' : undefined;
  }
}

test('suspend: push() stops after the message and returns the bytes consumed; resume() reads on from there', () => {
  const rec = new Suspender((d) => d.toString() === 'big');
  const parser = new FrameParser(rec, SERVER);
  const first = cframe({ opcode: Opcode.Binary, payload: 'big' });
  const chunk = Buffer.concat([first, cframe({ opcode: Opcode.Text, payload: 'next' }), cframe({ opcode: Opcode.Ping, payload: 'p' }), cframe({ opcode: Opcode.Close, payload: hex('03 e8') })]);
  const used = parser.push(chunk);
  assert.is(used, first.length);
  assert.ok(parser.suspended);
  assert.not.ok(parser.idle, 'a suspended parser is not handed to another connection');
  assert.is(parser.bufferedBytes, 0, 'nothing held meanwhile');
  assert.is(parser.push(chunk.subarray(used)), 0, 'consumes nothing while suspended');
  assert.equal(rec.events, [['message', hexOf('big'), true]]);
  parser.resume();
  assert.is(parser.push(chunk.subarray(used)), chunk.length - used);
  assert.equal(rec.events, [
    ['message', hexOf('big'), true],
    ['message', hexOf('next'), false],
    ['ping', hexOf('p')],
    ['close', 1000, ''],
  ]);
});

test('suspend: the last fragment of a fragmented message suspends too; halt() while suspended wins over resume()', () => {
  const rec = new Suspender(() => true);
  const parser = new FrameParser(rec, SERVER);
  const chunk = Buffer.concat([cframe({ opcode: Opcode.Text, payload: 'a', fin: false }), cframe({ opcode: Opcode.Continuation, payload: 'b' }), cframe({ opcode: Opcode.Text, payload: 'c' })]);
  const used = parser.push(chunk);
  assert.ok(parser.suspended);
  assert.equal(rec.events, [['message', hexOf('ab'), false]]);
  parser.halt();
  parser.resume();
  assert.ok(parser.halted);
  parser.push(chunk.subarray(used));
  assert.is(rec.events.length, 1);
});

test.run();
