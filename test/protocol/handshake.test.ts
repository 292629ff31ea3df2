import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { acceptKey, isValidClientKey, generateClientKey, parseTokenList, WS_GUID } from '../../src/protocol/handshake.js';

test('RFC 6455 1.3: the sample key gives s3pPLMBiTxaQ9kYGzzhZRbK+xOo=', () => {
  assert.is(WS_GUID, '258EAFA5-E914-47DA-95CA-C5AB0DC85B11');
  assert.is(acceptKey('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
});

test('RFC 6455 4.1: valid client keys are base64 of 16 bytes', () => {
  for (const key of ['dGhlIHNhbXBsZSBub25jZQ==', 'AAAAAAAAAAAAAAAAAAAAAA==', '+/+/+/+/+/+/+/+/+/+/+w==', 'zzzzzzzzzzzzzzzzzzzzzz==']) {
    assert.ok(isValidClientKey(key), key);
  }
});

test('invalid client keys', () => {
  const bad = [
    '',
    'dGhlIHNhbXBsZSBub25jZQ=', // 23 chars
    'dGhlIHNhbXBsZSBub25jZQ===', // 25 chars
    'dGhlIHNhbXBsZSBub25jZQ', // no padding
    'dGhlIHNhbXBsZSBub25jZQAA', // padding missing
    'dGhlIHNhbXBsZSBub25jZ===', // 15 bytes + extra '='
    'dGhlIHNhbXBsZSBub25j ZQ==', // space
    'dGhlIHNhbXBsZSBub25jZ-==', // URL-safe alphabet
    'dGhlIHNhbXBsZSBub25jZ_==',
    'dGhlIHNhbXBsZSBub25jZé==', // non-ASCII
    'dGhlIHNhbXBsZSBub25jZQ==\r',
    'dGhlIHNhbXBsZSBub25jZ\u0000==',
  ];
  for (const key of bad) assert.not.ok(isValidClientKey(key), JSON.stringify(key));
});

test('a huge hostile key is rejected', () => {
  assert.not.ok(isValidClientKey('A'.repeat(10_000_000)));
});

test('generateClientKey gives fresh valid keys', () => {
  const a = generateClientKey();
  const b = generateClientKey();
  assert.ok(isValidClientKey(a) && isValidClientKey(b));
  assert.is.not(a, b);
  assert.is(Buffer.from(a, 'base64').length, 16);
});

test('parseTokenList: RFC 7230 #rule with trimming and empty elements dropped', () => {
  assert.equal(parseTokenList('Upgrade'), ['Upgrade']);
  assert.equal(parseTokenList('keep-alive, Upgrade'), ['keep-alive', 'Upgrade']);
  assert.equal(parseTokenList('  a ,\tb\t,, ,c  '), ['a', 'b', 'c']);
  assert.equal(parseTokenList(''), []);
  assert.equal(parseTokenList(' , ,, '), []);
  assert.equal(parseTokenList('chat, superchat'), ['chat', 'superchat']);
  assert.equal(parseTokenList('a,b,'), ['a', 'b']);
  assert.equal(parseTokenList(',a'), ['a']);
  // Case is kept: Sec-WebSocket-Protocol values are case-sensitive.
  assert.equal(parseTokenList('Chat,CHAT'), ['Chat', 'CHAT']);
});

// No clock here (tests do not time): a quadratic scan of these inputs would run for hours and
// hit the runner's per-file limit instead.
test('parseTokenList on hostile input', () => {
  assert.is(parseTokenList(','.repeat(1_000_000)).length, 0);
  assert.is(parseTokenList(' '.repeat(1_000_000) + 'x').length, 1);
  assert.is(parseTokenList('a,'.repeat(200_000)).length, 200_000);
});

test.run();
