import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Opcode, CloseCode, isValidWireCloseCode, MAX_CONTROL_PAYLOAD } from '../../src/protocol/constants.js';
import { ProtocolError, ProtocolErrorCode, protocolError } from '../../src/protocol/errors.js';
import { parseClosePayload, encodeClosePayload, MAX_CLOSE_REASON } from '../../src/protocol/close.js';
import { hex } from '../helpers/bytes.js';
import * as api from '../../src/protocol/index.js';

test('RFC 6455 5.2 opcodes and 7.4.1 close codes', () => {
  assert.equal(Opcode, { Continuation: 0, Text: 1, Binary: 2, Close: 8, Ping: 9, Pong: 10 });
  assert.is(CloseCode.Normal, 1000);
  assert.is(CloseCode.NoStatus, 1005);
  assert.is(CloseCode.Abnormal, 1006);
  assert.is(CloseCode.InvalidPayload, 1007);
  assert.is(CloseCode.MessageTooBig, 1009);
  assert.is(CloseCode.TlsHandshake, 1015);
  assert.is(MAX_CONTROL_PAYLOAD, 125);
  assert.is(MAX_CLOSE_REASON, 123);
});

test('7.4 close codes allowed on the wire, boundary by boundary', () => {
  const allowed = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
  const refused = [-1, 0, 999, 1004, 1005, 1006, 1015, 1016, 1999, 2000, 2999, 5000, 65535, 1000.5, NaN];
  for (const code of allowed) assert.ok(isValidWireCloseCode(code), `${code}`);
  for (const code of refused) assert.not.ok(isValidWireCloseCode(code), `${code}`);
  // Exhaustive over the 16-bit range against the rule as the RFC states it.
  for (let code = 0; code < 65536; code++) {
    const expected = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
    assert.is(isValidWireCloseCode(code), expected, `${code}`);
  }
  // No local-only code is valid on the wire.
  for (const code of [CloseCode.NoStatus, CloseCode.Abnormal, CloseCode.TlsHandshake]) assert.not.ok(isValidWireCloseCode(code));
});

test('one table maps every error code to its close code', () => {
  assert.equal(ProtocolErrorCode, {
    WS_ERR_UNEXPECTED_MASK: 1002,
    WS_ERR_EXPECTED_MASK: 1002,
    WS_ERR_UNEXPECTED_RSV: 1002,
    WS_ERR_INVALID_OPCODE: 1002,
    WS_ERR_CONTROL_TOO_LARGE: 1002,
    WS_ERR_FRAGMENTED_CONTROL: 1002,
    WS_ERR_UNEXPECTED_CONTINUATION: 1002,
    WS_ERR_EXPECTED_CONTINUATION: 1002,
    WS_ERR_INVALID_LENGTH: 1002,
    WS_ERR_MESSAGE_TOO_BIG: 1009,
    WS_ERR_INVALID_UTF8: 1007,
    WS_ERR_INVALID_CLOSE_PAYLOAD: 1002,
    WS_ERR_INVALID_CLOSE_CODE: 1002,
    WS_ERR_INVALID_CLOSE_REASON: 1007,
    WS_ERR_INVALID_COMPRESSED: 1007,
    WS_ERR_INFLATE_BUSY: 1013,
  });
});

test('protocolError() takes the close code from the table and keeps the cause', () => {
  const cause = new Error('inner');
  const err = protocolError('WS_ERR_INVALID_UTF8', 'bad text', { cause });
  assert.instance(err, ProtocolError);
  assert.instance(err, Error);
  assert.is(err.name, 'ProtocolError');
  assert.is(err.code, 'WS_ERR_INVALID_UTF8');
  assert.is(err.closeCode, 1007);
  assert.is(err.message, 'bad text');
  assert.is(err.cause, cause);
  const direct = new ProtocolError('X', 1002, 'm');
  assert.is(direct.code, 'X');
  assert.is(direct.closeCode, 1002);
});

test('parseClosePayload: valid bodies', () => {
  assert.equal(parseClosePayload(Buffer.alloc(0)), { code: 1005, reason: '' });
  assert.equal(parseClosePayload(hex('03e8')), { code: 1000, reason: '' });
  assert.equal(parseClosePayload(Buffer.concat([hex('0fa0'), Buffer.from('Grüße')])), { code: 4000, reason: 'Grüße' });
});

test('parseClosePayload: invalid bodies give the error, with code and close code', () => {
  const cases: Array<[string, string, number]> = [
    ['03', 'WS_ERR_INVALID_CLOSE_PAYLOAD', 1002],
    ['03ec', 'WS_ERR_INVALID_CLOSE_CODE', 1002], // 1004
    ['03ed', 'WS_ERR_INVALID_CLOSE_CODE', 1002], // 1005
    ['03ee', 'WS_ERR_INVALID_CLOSE_CODE', 1002], // 1006
    ['03f7', 'WS_ERR_INVALID_CLOSE_CODE', 1002], // 1015
    ['0000', 'WS_ERR_INVALID_CLOSE_CODE', 1002],
    ['1388', 'WS_ERR_INVALID_CLOSE_CODE', 1002], // 5000
    ['03e8 ff', 'WS_ERR_INVALID_CLOSE_REASON', 1007],
    ['03e8 e2 82', 'WS_ERR_INVALID_CLOSE_REASON', 1007],
    ['03e8 ed a0 80', 'WS_ERR_INVALID_CLOSE_REASON', 1007],
  ];
  for (const [body, code, closeCode] of cases) {
    const r = parseClosePayload(hex(body));
    assert.instance(r, ProtocolError, body);
    assert.is((r as ProtocolError).code, code, body);
    assert.is((r as ProtocolError).closeCode, closeCode, body);
  }
});

test('encodeClosePayload round-trips and refuses what may not be sent', () => {
  for (const [code, reason] of [[1000, ''], [1011, 'oops'], [4999, 'ü'.repeat(61)]] as const) {
    assert.equal(parseClosePayload(encodeClosePayload(code, reason)), { code, reason });
  }
  assert.is(encodeClosePayload(1005, '').length, 0);
  const isRange = (e: unknown) => e instanceof RangeError;
  assert.throws(() => encodeClosePayload(1004, ''), isRange);
  assert.throws(() => encodeClosePayload(1000, 'x'.repeat(124)), isRange);
});

test('index re-exports the public surface', () => {
  const names = [
    'Opcode', 'CloseCode', 'isValidWireCloseCode', 'MAX_CONTROL_PAYLOAD',
    'ProtocolError', 'ProtocolErrorCode', 'protocolError',
    'unmaskInPlace', 'maskInto', 'MaskKeyPool',
    'Utf8Validator', 'isValidUtf8',
    'FrameParser',
    'frameHeaderSize', 'writeFrameHeader', 'encodeFrame', 'encodeCloseFrame', 'serverCloseFrame', 'EMPTY_PING_FRAME', 'EMPTY_PONG_FRAME',
    'WS_GUID', 'acceptKey', 'isValidClientKey', 'generateClientKey', 'parseTokenList',
    'parseClosePayload', 'encodeClosePayload',
  ];
  for (const n of names) assert.ok(n in api, n);
});

test.run();
