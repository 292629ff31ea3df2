// The client's reader for the server's HTTP response head: bytes in, head (or ClientError) out.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ResponseHeadReader, type ResponseHeadResult } from '../../src/client/response-head.js';
import { ClientError } from '../../src/client/errors.js';
import { randomChunks } from '../helpers/bytes.js';

const LIMITS = { maxHeadBytes: 16 * 1024, maxHeaders: 100 };

const UPGRADE =
  'HTTP/1.1 101 Switching Protocols\r\n' +
  'Upgrade: websocket\r\n' +
  'Connection: Upgrade\r\n' +
  'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n' +
  '\r\n';

function feed(chunks: Buffer[], limits = LIMITS): ResponseHeadResult | undefined {
  const reader = new ResponseHeadReader(limits);
  for (const c of chunks) {
    const r = reader.push(c);
    if (r !== undefined) return r;
  }
  return undefined;
}

function parse(s: string, limits = LIMITS): ResponseHeadResult {
  const r = feed([Buffer.from(s, 'latin1')], limits);
  if (r === undefined) throw new Error('expected a complete head');
  return r;
}

function fails(s: string, code: string, limits = LIMITS): void {
  try {
    feed([Buffer.from(s, 'latin1')], limits);
  } catch (err) {
    assert.instance(err, ClientError);
    assert.is((err as ClientError).code, code);
    return;
  }
  assert.unreachable(`expected ${code}`);
}

test('a 101 head: status, reason, lower-cased header names, trimmed values', () => {
  const { head, rest } = parse(UPGRADE);
  assert.is(head.version, '1.1');
  assert.is(head.status, 101);
  assert.is(head.statusText, 'Switching Protocols');
  assert.is(head.headers.get('upgrade'), 'websocket');
  assert.is(head.headers.get('sec-websocket-accept'), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  assert.is(rest.length, 0);
});

test('bytes after the head are handed back (the first frames)', () => {
  const { head, rest } = parse(UPGRADE + '\x81\x02hi');
  assert.is(head.status, 101);
  assert.equal([...rest], [0x81, 0x02, 0x68, 0x69]);
});

test('any chunking, including CRLFCRLF split across chunks, gives the same head', () => {
  const bytes = Buffer.from(UPGRADE + 'tail', 'latin1');
  for (let seed = 1; seed <= 200; seed++) {
    const r = feed(randomChunks(bytes, seed, 7));
    assert.ok(r !== undefined, `seed ${seed}`);
    assert.is(r.head.headers.get('connection'), 'Upgrade');
    assert.is(r.rest.toString('latin1'), 'tail'.slice(0, r.rest.length), 'rest is what followed the head in its chunk');
  }
});

test('repeated headers are joined with ", "; an empty reason phrase is allowed', () => {
  const { head } = parse('HTTP/1.1 101 \r\nConnection: keep-alive\r\nconnection:  Upgrade \r\n\r\n');
  assert.is(head.statusText, '');
  assert.is(head.headers.get('connection'), 'keep-alive, Upgrade');
  assert.is(parse('HTTP/1.0 403\r\n\r\n').head.status, 403);
});

test('an incomplete head returns undefined and keeps no view of the caller chunk', () => {
  const reader = new ResponseHeadReader(LIMITS);
  const chunk = Buffer.from(UPGRADE.slice(0, 20), 'latin1');
  assert.is(reader.push(chunk), undefined);
  chunk.fill(0); // the socket may reuse its buffer
  const r = reader.push(Buffer.from(UPGRADE.slice(20), 'latin1'));
  assert.is(r?.head.status, 101);
});

test('malformed status lines and header lines -> WS_ERR_MALFORMED_RESPONSE', () => {
  fails('HTTP/2 101\r\n\r\n', 'WS_ERR_MALFORMED_RESPONSE');
  fails('HTTP/1.1 1010 Too long\r\n\r\n', 'WS_ERR_MALFORMED_RESPONSE');
  fails('ICY 200 OK\r\n\r\n', 'WS_ERR_MALFORMED_RESPONSE');
  fails('HTTP/1.1 101 OK\r\nNo colon here\r\n\r\n', 'WS_ERR_MALFORMED_RESPONSE');
  fails('HTTP/1.1 101 OK\r\nUpgrade : websocket\r\n\r\n', 'WS_ERR_MALFORMED_RESPONSE');
  fails('HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n folded\r\n\r\n', 'WS_ERR_MALFORMED_RESPONSE');
  fails('HTTP/1.1 101 OK\r\nX: a\nb\r\n\r\n', 'WS_ERR_MALFORMED_RESPONSE');
});

test('limits: head bytes and header count', () => {
  const small = { maxHeadBytes: 64, maxHeaders: 2 };
  fails('HTTP/1.1 101 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n', 'WS_ERR_TOO_MANY_HEADERS', small);
  assert.is(parse('HTTP/1.1 101 OK\r\nA: 1\r\nB: 2\r\n\r\n', small).head.headers.size, 2);
  fails(`HTTP/1.1 101 OK\r\nX: ${'a'.repeat(60)}\r\n\r\n`, 'WS_ERR_RESPONSE_HEAD_TOO_LARGE', small);
  // No terminator yet, but already at the limit: fail without waiting for more.
  fails(`HTTP/1.1 101 OK\r\nX: ${'a'.repeat(60)}`, 'WS_ERR_RESPONSE_HEAD_TOO_LARGE', small);
  // A head of exactly the limit passes.
  const exact = 'HTTP/1.1 101 OK\r\nX: ' + 'a'.repeat(64 - 'HTTP/1.1 101 OK\r\nX: '.length - 4) + '\r\n\r\n';
  assert.is(exact.length, 64);
  assert.is(parse(exact, small).head.status, 101);
});

test.run();
