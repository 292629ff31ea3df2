import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_LIMITS } from '../../src/limits.js';
import {
  getHeader,
  getHeaderList,
  RequestHeadParser,
  requestHeadBytes,
  type HeadLimits,
  type ParsedHead,
} from '../../src/http/request-head.js';
import { HttpReject } from '../../src/http/reject.js';
import { randomChunks } from '../helpers/bytes.js';

const LIMITS: HeadLimits = {
  maxHeadBytes: DEFAULT_LIMITS.maxHeadBytes,
  maxHeaders: DEFAULT_LIMITS.maxHeaders,
  maxLineLength: DEFAULT_LIMITS.maxLineLength,
};

const CHROME =
  'GET /chat?room=1 HTTP/1.1\r\n' +
  'Host: example.com:8080\r\n' +
  'Connection: Upgrade\r\n' +
  'Pragma: no-cache\r\n' +
  'Cache-Control: no-cache\r\n' +
  'Upgrade: websocket\r\n' +
  'Origin: http://example.com:8080\r\n' +
  'Sec-WebSocket-Version: 13\r\n' +
  'Accept-Encoding: gzip, deflate, br\r\n' +
  'Accept-Language: en-US,en;q=0.9\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
  'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n' +
  '\r\n';

function feed(chunks: Buffer[], limits: HeadLimits = LIMITS): ParsedHead | HttpReject | undefined {
  const p = new RequestHeadParser(limits);
  let r: ParsedHead | HttpReject | undefined;
  for (const c of chunks) {
    r = p.push(c);
    if (r !== undefined) return r;
  }
  return r;
}

function parse(s: string | Buffer, limits: HeadLimits = LIMITS): ParsedHead | HttpReject | undefined {
  return feed([typeof s === 'string' ? Buffer.from(s, 'latin1') : s], limits);
}

function head(s: string | Buffer, limits?: HeadLimits): ParsedHead {
  const r = parse(s, limits);
  if (r === undefined || r instanceof HttpReject) throw new Error(`expected a head, got ${JSON.stringify(r)}`);
  return r;
}

function rejected(r: ParsedHead | HttpReject | undefined, status: number, reason: string): void {
  assert.ok(r instanceof HttpReject, `expected a reject, got ${JSON.stringify(r)}`);
  assert.is(r.status, status);
  assert.is(r.reason, reason);
}

function bytewise(s: string): Buffer[] {
  const b = Buffer.from(s, 'latin1');
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i++) out.push(b.subarray(i, i + 1));
  return out;
}

/** A request with `n` header lines, each exactly `lineLen` bytes before its CRLF. */
function withHeaders(n: number, lineLen = 8): string {
  let s = 'GET / HTTP/1.1\r\n';
  for (let i = 0; i < n; i++) {
    const name = `h${i}`;
    s += `${name}: ${'v'.repeat(lineLen - name.length - 2)}\r\n`;
  }
  return `${s}\r\n`;
}

// --- RFC 7230 3.1.1 / 3.2: what a head parses to -------------------------------------------

test('whole head in one chunk', () => {
  const { head: h, rest } = head(CHROME);
  assert.is(h.method, 'GET');
  assert.is(h.target, '/chat?room=1');
  assert.is(h.versionMinor, 1);
  assert.is(h.headers.length, 11);
  assert.equal(h.headers[0], ['host', 'example.com:8080']);
  assert.is(getHeader(h, 'sec-websocket-key'), 'dGhlIHNhbXBsZSBub25jZQ==');
  assert.is(getHeader(h, 'sec-websocket-extensions'), 'permessage-deflate; client_max_window_bits');
  assert.is(getHeader(h, 'missing'), undefined);
  assert.is(rest.length, 0);
});

test('byte by byte gives the same head', () => {
  const chunks = bytewise(CHROME);
  const p = new RequestHeadParser(LIMITS);
  for (let i = 0; i < chunks.length - 1; i++) assert.is(p.push(chunks[i]!), undefined);
  const r = p.push(chunks[chunks.length - 1]!);
  assert.equal(r, head(CHROME));
});

test('random splits give the same head and the same rest', () => {
  const whole = Buffer.concat([Buffer.from(CHROME, 'latin1'), Buffer.from([0x81, 0x85, 1, 2, 3, 4, 5])]);
  const expected = head(whole);
  assert.equal([...expected.rest], [0x81, 0x85, 1, 2, 3, 4, 5]);
  for (let seed = 1; seed <= 200; seed++) {
    const chunks = randomChunks(whole, seed, 1 + (seed % 40));
    const p = new RequestHeadParser(LIMITS);
    let i = 0;
    let r: ParsedHead | HttpReject | undefined;
    while (r === undefined) r = p.push(chunks[i++]!);
    assert.ok(!(r instanceof HttpReject), `seed ${seed}`);
    assert.equal(r.head, expected.head, `seed ${seed}`);
    // What follows the head: the rest of the last chunk fed, then the chunks not fed.
    assert.equal([...Buffer.concat([r.rest, ...chunks.slice(i)])], [...expected.rest], `seed ${seed}`);
  }
});

test('rest bytes after the head are returned intact, as a view of the last chunk', () => {
  const tail = Buffer.from('\x00\xff\r\n\r\nGET / HTTP/1.1\r\n', 'latin1');
  const chunk = Buffer.concat([Buffer.from(CHROME, 'latin1'), tail]);
  const r = head(chunk);
  assert.ok(r.rest.equals(tail));
  assert.is(r.rest.buffer, chunk.buffer);
  // Split: the head ends inside the second chunk.
  const cut = 20;
  const p = new RequestHeadParser(LIMITS);
  assert.is(p.push(chunk.subarray(0, cut)), undefined);
  const r2 = p.push(chunk.subarray(cut));
  assert.ok(r2 !== undefined && !(r2 instanceof HttpReject));
  assert.ok(r2.rest.equals(tail));
  assert.equal(r2.head, r.head);
});

test('the parser does not keep the caller\'s chunk: a reused read buffer cannot corrupt the head', () => {
  const bytes = Buffer.from(CHROME, 'latin1');
  const readBuf = Buffer.alloc(64);
  const p = new RequestHeadParser(LIMITS);
  let r: ParsedHead | HttpReject | undefined;
  for (let i = 0; i < bytes.length; i += 64) {
    const n = bytes.copy(readBuf, 0, i, i + 64);
    r = p.push(readBuf.subarray(0, n));
  }
  assert.equal(r, head(CHROME));
});

test('empty chunks are harmless', () => {
  const p = new RequestHeadParser(LIMITS);
  assert.is(p.push(Buffer.alloc(0)), undefined);
  assert.is(p.push(Buffer.from('GET / HTTP/1.1\r\n')), undefined);
  assert.is(p.push(Buffer.alloc(0)), undefined);
  const r = p.push(Buffer.from('Host: a\r\n\r\n'));
  assert.ok(r !== undefined && !(r instanceof HttpReject));
});

test('push after a result throws', () => {
  const p = new RequestHeadParser(LIMITS);
  assert.ok(p.push(Buffer.from('GET / HTTP/1.1\r\n\r\n')) !== undefined);
  assert.throws(() => p.push(Buffer.from('x')), /after the head/);
  const q = new RequestHeadParser(LIMITS);
  assert.ok(q.push(Buffer.from('nonsense\r\n\r\n')) instanceof HttpReject);
  assert.throws(() => q.push(Buffer.from('x')), /after the head/);
});

test('names lower-cased, values trimmed of OWS, inner whitespace kept, empty values allowed', () => {
  const { head: h } = head('GET / HTTP/1.1\r\nX-MiXeD:  \t a  b \t \r\nX-Empty:\r\nX-Blank:   \r\n\r\n');
  assert.equal(h.headers, [
    ['x-mixed', 'a  b'],
    ['x-empty', ''],
    ['x-blank', ''],
  ]);
});

test('repeated headers are kept in order; getHeader takes the first, getHeaderList joins (RFC 7230 3.2.2)', () => {
  const { head: h } = head('GET / HTTP/1.1\r\nA: 1\r\nB: x\r\na: 2, 3\r\nA: 4\r\n\r\n');
  assert.is(getHeader(h, 'a'), '1');
  assert.is(getHeaderList(h, 'a'), '1, 2, 3, 4');
  assert.is(getHeaderList(h, 'b'), 'x');
  assert.is(getHeaderList(h, 'c'), undefined);
});

test('__proto__, constructor and hasOwnProperty are ordinary header names', () => {
  const { head: h } = head('GET / HTTP/1.1\r\n__proto__: p\r\nconstructor: c\r\nhasOwnProperty: h\r\n\r\n');
  assert.is(getHeader(h, '__proto__'), 'p');
  assert.is(getHeader(h, 'constructor'), 'c');
  assert.is(getHeader(h, 'hasownproperty'), 'h');
  assert.is(getHeader(h, 'toString'), undefined);
  assert.is(getHeader(h, 'tostring'), undefined);
  assert.is(Object.getPrototypeOf(h), Object.prototype);
});

test('the head is decoded as latin1: obs-text bytes map one to one, no U+FFFD', () => {
  const bytes = Buffer.concat([Buffer.from('GET / HTTP/1.1\r\nX: '), Buffer.from([0xc3, 0xa9, 0xff, 0x80]), Buffer.from('\r\n\r\n')]);
  const { head: h } = head(bytes);
  assert.is(getHeader(h, 'x'), '\u00c3\u00a9\u00ff\u0080');
});

test('later HTTP/1.x minor versions are accepted', () => {
  assert.is(head('GET / HTTP/1.9\r\n\r\n').head.versionMinor, 9);
});

// --- RFC 7230 3.5: line endings ----------------------------------------------------------

test('bare LF line endings are accepted (RFC 7230 3.5)', () => {
  const lf = CHROME.replaceAll('\r\n', '\n');
  const r = head(lf);
  assert.equal(r.head, head(CHROME).head);
  assert.equal(feed(bytewise(lf)), r);
  // Mixed endings, and CRLF then bare LF for the blank line.
  assert.equal(head('GET / HTTP/1.1\nHost: a\r\nX: b\n\r\n').head.headers, [['host', 'a'], ['x', 'b']]);
  assert.equal(head('GET / HTTP/1.1\r\nHost: a\r\n\nrest').rest.toString(), 'rest');
});

test('a bare CR inside a line is malformed', () => {
  rejected(parse('GET / HTTP/1.1\r\nX: a\rb\r\n\r\n'), 400, 'MALFORMED_REQUEST');
  rejected(parse('GET / HTTP/1.1\r\nX: a\r\r\n\r\n'), 400, 'MALFORMED_REQUEST');
  rejected(parse('GET / HTTP/1.1\r\n\r\r\n\r\n'), 400, 'MALFORMED_REQUEST');
  rejected(parse('GET /\r HTTP/1.1\r\n\r\n'), 400, 'MALFORMED_REQUEST');
});

// --- RFC 7230 3.1.1: the request line ----------------------------------------------------

test('malformed request lines give 400 MALFORMED_REQUEST', () => {
  for (const line of [
    'GET /',
    'GET / HTTP/1.1 ',
    'GET  / HTTP/1.1',
    'GET /  HTTP/1.1',
    ' GET / HTTP/1.1',
    'GET\t/ HTTP/1.1',
    'G(T / HTTP/1.1',
    'GET / http/1.1',
    'GET / HTTP/1.10',
    'GET / HTTP/1',
    'GET / HTTP/1.x',
    'GET /a b HTTP/1.1',
    'GET /\u00e9 HTTP/1.1',
    'GET /\x7f HTTP/1.1',
    '',
  ]) {
    rejected(parse(`${line}\r\nHost: a\r\n\r\n`), 400, 'MALFORMED_REQUEST');
  }
});

test('other majors give 400 BAD_HTTP_VERSION; HTTP/1.0 parses (validateUpgrade refuses it as an upgrade)', () => {
  assert.is(head('GET / HTTP/1.0\r\nHost: a\r\n\r\n').head.versionMinor, 0);
  rejected(parse('GET / HTTP/0.9\r\n\r\n'), 400, 'BAD_HTTP_VERSION');
  rejected(parse('GET / HTTP/2.0\r\n\r\n'), 400, 'BAD_HTTP_VERSION');
  rejected(parse('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), 400, 'BAD_HTTP_VERSION');
});

test('requestHeadBytes gives back a head the parser reads the same, followed by the rest', () => {
  const parsed = head('POST /api?x=1 HTTP/1.1\r\nHost: a\r\nX-Thing:  v 1 \r\nx-thing: two\r\n\r\nbody');
  const bytes = requestHeadBytes(parsed.head, parsed.rest);
  assert.is(bytes.toString('latin1'), 'POST /api?x=1 HTTP/1.1\r\nhost: a\r\nx-thing: v 1\r\nx-thing: two\r\n\r\nbody');
  const again = head(bytes);
  assert.equal(again.head, parsed.head);
  assert.is(again.rest.toString(), 'body');
});

test('a leading empty line is not skipped', () => {
  rejected(parse('\r\nGET / HTTP/1.1\r\n\r\n'), 400, 'MALFORMED_REQUEST');
});

// --- RFC 7230 3.2 / 3.2.4: header lines --------------------------------------------------

test('whitespace between a header name and its colon gives 400 (RFC 7230 3.2.4)', () => {
  rejected(parse('GET / HTTP/1.1\r\nHost : a\r\n\r\n'), 400, 'MALFORMED_REQUEST');
  rejected(parse('GET / HTTP/1.1\r\nHost\t: a\r\n\r\n'), 400, 'MALFORMED_REQUEST');
});

test('obs-fold continuation lines give 400 (RFC 7230 3.2.4)', () => {
  rejected(parse('GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n'), 400, 'MALFORMED_REQUEST');
  rejected(parse('GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n'), 400, 'MALFORMED_REQUEST');
  rejected(parse('GET / HTTP/1.1\r\n Host: a\r\n\r\n'), 400, 'MALFORMED_REQUEST');
});

test('a header line without a colon, or with an empty or non-token name, gives 400', () => {
  for (const line of ['Host', ': a', 'Ho st: a', 'Ho(st: a', 'Ho"st: a', 'H\u00e9: a', 'X\x00: a', 'Host/1: a']) {
    rejected(parse(`GET / HTTP/1.1\r\n${line}\r\n\r\n`), 400, 'MALFORMED_REQUEST');
  }
});

test('NUL and other CTLs in a value give 400; HTAB is allowed', () => {
  rejected(parse('GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n'), 400, 'MALFORMED_REQUEST');
  rejected(parse('GET / HTTP/1.1\r\nX: \x00\r\n\r\n'), 400, 'MALFORMED_REQUEST');
  rejected(parse('GET / HTTP/1.1\r\nX: a\x1bb\r\n\r\n'), 400, 'MALFORMED_REQUEST');
  rejected(parse('GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n'), 400, 'MALFORMED_REQUEST');
  assert.is(getHeader(head('GET / HTTP/1.1\r\nX: a\tb\r\n\r\n').head, 'x'), 'a\tb');
});

test('a malformed line is reported whichever way the bytes were split', () => {
  const bad = 'GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n';
  rejected(feed(bytewise(bad)), 400, 'MALFORMED_REQUEST');
  for (let seed = 1; seed <= 20; seed++) rejected(feed(randomChunks(Buffer.from(bad), seed, 5)), 400, 'MALFORMED_REQUEST');
});

// --- Limits: exactly at the boundary passes, one over fails ------------------------------

test('maxHeadBytes: a head of exactly maxHeadBytes (terminators included) passes, one more byte gives 431', () => {
  const s = 'GET / HTTP/1.1\r\nX: abcdef\r\n\r\n';
  const limits = { ...LIMITS, maxHeadBytes: s.length };
  assert.ok(head(s, limits));
  assert.ok(feed(bytewise(s), limits) !== undefined);
  assert.ok(!(feed(bytewise(s), limits) instanceof HttpReject));
  // Bytes after the head do not count towards the head.
  assert.is(head(`${s}more bytes`, limits).rest.toString(), 'more bytes');
  const over = 'GET / HTTP/1.1\r\nX: abcdefg\r\n\r\n';
  rejected(parse(over, limits), 431, 'HEAD_TOO_LARGE');
  rejected(feed(bytewise(over), limits), 431, 'HEAD_TOO_LARGE');
});

test('maxHeadBytes is enforced before the blank line arrives', () => {
  const limits = { ...LIMITS, maxHeadBytes: 100 };
  const p = new RequestHeadParser(limits);
  assert.is(p.push(Buffer.from('GET / HTTP/1.1\r\n')), undefined);
  // 16 + 84 = 100 bytes of an unfinished head: still waiting.
  assert.is(p.push(Buffer.from(`X: ${'a'.repeat(79)}\r\n`)), undefined);
  rejected(p.push(Buffer.from('Y')), 431, 'HEAD_TOO_LARGE');
});

test('a never-ending header line hits maxHeadBytes without a terminator', () => {
  const p = new RequestHeadParser({ ...LIMITS, maxLineLength: 1 << 20 });
  assert.is(p.push(Buffer.from('GET / HTTP/1.1\r\nX: ')), undefined);
  let r: ParsedHead | HttpReject | undefined;
  const chunk = Buffer.alloc(1000, 0x61);
  for (let i = 0; i < 100 && r === undefined; i++) r = p.push(chunk);
  rejected(r, 431, 'HEAD_TOO_LARGE');
});

test('maxHeaders: exactly maxHeaders header lines pass, one more gives 431', () => {
  const limits = { ...LIMITS, maxHeaders: 5 };
  assert.is(head(withHeaders(5), limits).head.headers.length, 5);
  assert.is((feed(bytewise(withHeaders(5)), limits) as ParsedHead).head.headers.length, 5);
  rejected(parse(withHeaders(6), limits), 431, 'TOO_MANY_HEADERS');
  rejected(feed(bytewise(withHeaders(6)), limits), 431, 'TOO_MANY_HEADERS');
  assert.is(head(withHeaders(DEFAULT_LIMITS.maxHeaders)).head.headers.length, DEFAULT_LIMITS.maxHeaders);
  rejected(parse(withHeaders(DEFAULT_LIMITS.maxHeaders + 1)), 431, 'TOO_MANY_HEADERS');
});

test('maxLineLength, header line: exactly maxLineLength passes, one more gives 431', () => {
  const limits = { ...LIMITS, maxLineLength: 40 };
  const ok = withHeaders(2, 40);
  assert.is(head(ok, limits).head.headers.length, 2);
  assert.ok(!(feed(bytewise(ok), limits) instanceof HttpReject));
  assert.ok(!(parse(ok.replaceAll('\r\n', '\n'), limits) instanceof HttpReject));
  rejected(parse(withHeaders(2, 41), limits), 431, 'HEADER_LINE_TOO_LONG');
  rejected(feed(bytewise(withHeaders(2, 41)), limits), 431, 'HEADER_LINE_TOO_LONG');
});

test('maxLineLength is enforced on a line still arriving, without counting a trailing CR', () => {
  const limits = { ...LIMITS, maxLineLength: 14 };
  const p = new RequestHeadParser(limits);
  assert.is(p.push(Buffer.from('GET / HTTP/1.1\r')), undefined); // 14 bytes and a CR that may end it
  assert.is(p.push(Buffer.from('\nX: 34567890123\r')), undefined);
  const r = p.push(Buffer.from('\n\r\n'));
  assert.ok(r !== undefined && !(r instanceof HttpReject));
  const q = new RequestHeadParser(limits);
  assert.is(q.push(Buffer.from('GET / HTTP/1.1\r\nX: 34567890123')), undefined);
  rejected(q.push(Buffer.from('4')), 431, 'HEADER_LINE_TOO_LONG');
  const c = new RequestHeadParser(limits);
  assert.is(c.push(Buffer.from('GET / HTTP/1.1\r\nX: 34567890123\r')), undefined);
  rejected(c.push(Buffer.from('\r')), 431, 'HEADER_LINE_TOO_LONG');
});

test('maxLineLength, request line: exactly maxLineLength passes, one more gives 414', () => {
  const line = (n: number) => `GET /${'a'.repeat(n - 'GET / HTTP/1.1'.length)} HTTP/1.1`;
  const limits = { ...LIMITS, maxLineLength: 64 };
  assert.is(line(64).length, 64);
  assert.is(head(`${line(64)}\r\n\r\n`, limits).head.target.length, 64 - 13);
  rejected(parse(`${line(65)}\r\n\r\n`, limits), 414, 'URI_TOO_LONG');
  rejected(feed(bytewise(`${line(65)}\r\n\r\n`), limits), 414, 'URI_TOO_LONG');
  // Detected before the line ends.
  const p = new RequestHeadParser(limits);
  rejected(p.push(Buffer.from(line(65))), 414, 'URI_TOO_LONG');
});

test('a flood of 10,000 headers is refused with 431 as soon as maxHeaders is passed', () => {
  let s = 'GET / HTTP/1.1\r\n';
  for (let i = 0; i < 10_000; i++) s += `X-${i}: y\r\n`;
  s += '\r\n';
  rejected(parse(s), 431, 'TOO_MANY_HEADERS');
  rejected(feed(randomChunks(Buffer.from(s), 7, 64)), 431, 'TOO_MANY_HEADERS');
  // With a header limit above the flood, the byte limit stops it instead.
  rejected(parse(s, { ...LIMITS, maxHeaders: 20_000 }), 431, 'HEAD_TOO_LARGE');
});

test('one huge chunk: the broken limit is reported, the more specific one first', () => {
  const huge = Buffer.alloc(50 * 1024 * 1024, 0x61);
  Buffer.from('GET / HTTP/1.1\r\nX: ').copy(huge);
  rejected(parse(huge), 431, 'HEADER_LINE_TOO_LONG');
  rejected(parse(huge, { ...LIMITS, maxLineLength: 1 << 30 }), 431, 'HEAD_TOO_LARGE');
  rejected(parse(Buffer.alloc(1 << 20, 0x61)), 414, 'URI_TOO_LONG');
  rejected(parse(`GET / HTTP/1.1${'\nX: y'.repeat(800_000)}`), 431, 'TOO_MANY_HEADERS');
});

test.run();
