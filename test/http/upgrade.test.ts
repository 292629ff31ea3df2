import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { DEFAULT_LIMITS } from '../../src/limits.js';
import { RequestHeadParser, type RequestHead } from '../../src/http/request-head.js';
import { HttpReject, REJECT_STATUS, rejectHandshakeTimeout, rejectOrigin, rejectServerFull } from '../../src/http/reject.js';
import { isWebSocketUpgrade, validateUpgrade, type UpgradeRequest } from '../../src/http/upgrade.js';

const CHROME =
  'GET /chat?room=lobby&x=1 HTTP/1.1\r\n' +
  'Host: localhost:8080\r\n' +
  'Connection: Upgrade\r\n' +
  'Pragma: no-cache\r\n' +
  'Cache-Control: no-cache\r\n' +
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n' +
  'Upgrade: websocket\r\n' +
  'Origin: http://localhost:8080\r\n' +
  'Sec-WebSocket-Version: 13\r\n' +
  'Accept-Encoding: gzip, deflate, br, zstd\r\n' +
  'Accept-Language: en-US,en;q=0.9\r\n' +
  'Cookie: session=abc123; theme=dark\r\n' +
  'Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n' +
  'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n' +
  'Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n' +
  '\r\n';

const FIREFOX =
  'GET /socket HTTP/1.1\r\n' +
  'Host: example.org\r\n' +
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n' +
  'Accept: */*\r\n' +
  'Accept-Language: en-US,en;q=0.5\r\n' +
  'Accept-Encoding: gzip, deflate, br, zstd\r\n' +
  'Sec-WebSocket-Version: 13\r\n' +
  'Origin: https://example.org\r\n' +
  'Sec-WebSocket-Extensions: permessage-deflate\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
  'DNT: 1\r\n' +
  'Connection: keep-alive, Upgrade\r\n' +
  'Sec-Fetch-Dest: empty\r\n' +
  'Sec-Fetch-Mode: websocket\r\n' +
  'Sec-Fetch-Site: same-origin\r\n' +
  'Pragma: no-cache\r\n' +
  'Cache-Control: no-cache\r\n' +
  'Upgrade: websocket\r\n' +
  '\r\n';

/** A minimal valid request, with `edit` applied to its header lines. */
function request(edit: (lines: string[]) => string[] = (l) => l, requestLine = 'GET /ws HTTP/1.1'): RequestHead {
  const lines = edit([
    'Host: example.com',
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version: 13',
  ]);
  return parseHead(`${requestLine}\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`);
}

function parseHead(s: string): RequestHead {
  const r = new RequestHeadParser({ ...DEFAULT_LIMITS }).push(Buffer.from(s, 'latin1'));
  if (r === undefined || r instanceof HttpReject) throw new Error(`test head did not parse: ${JSON.stringify(r)}`);
  return r.head;
}

function without(name: string): (l: string[]) => string[] {
  return (l) => l.filter((x) => !x.toLowerCase().startsWith(`${name.toLowerCase()}:`));
}

function replace(name: string, value: string): (l: string[]) => string[] {
  return (l) => [...without(name)(l), `${name}: ${value}`];
}

function accepted(head: RequestHead): UpgradeRequest {
  const r = validateUpgrade(head);
  if (r instanceof HttpReject) throw new Error(`expected an upgrade, got ${r.status} ${r.reason}`);
  return r;
}

function refused(head: RequestHead, status: number, reason: string, headers: Record<string, string> = {}): void {
  const r = validateUpgrade(head);
  assert.ok(r instanceof HttpReject, `expected ${status} ${reason}, got an upgrade`);
  assert.is(r.status, status);
  assert.is(r.reason, reason);
  assert.equal(r.headers, headers);
}

// --- Real browsers --------------------------------------------------------------------------

test('a Chrome upgrade request with all its headers', () => {
  const u = accepted(parseHead(CHROME));
  assert.is(u.key, 'x3JJHMbDL1EzLkh9GBhXDw==');
  assert.equal(u.protocols, ['chat.v2', 'chat.v1']);
  assert.is(u.extensions, 'permessage-deflate; client_max_window_bits');
  assert.is(u.origin, 'http://localhost:8080');
  assert.is(u.host, 'localhost:8080');
  assert.is(u.path, '/chat');
  assert.is(u.query, 'room=lobby&x=1');
  assert.is(u.head.target, '/chat?room=lobby&x=1');
  assert.ok(isWebSocketUpgrade(u.head));
});

test('a Firefox upgrade request: Connection: keep-alive, Upgrade', () => {
  const u = accepted(parseHead(FIREFOX));
  assert.is(u.key, 'dGhlIHNhbXBsZSBub25jZQ==');
  assert.equal(u.protocols, []);
  assert.is(u.extensions, 'permessage-deflate');
  assert.is(u.origin, 'https://example.org');
  assert.is(u.path, '/socket');
  assert.is(u.query, '');
});

test('a minimal request: no Origin, no protocols, no extensions', () => {
  const u = accepted(request());
  assert.is(u.origin, undefined);
  assert.equal(u.protocols, []);
  assert.is(u.extensions, '');
  assert.is(u.host, 'example.com');
});

// --- isWebSocketUpgrade: routing plain HTTP ------------------------------------------------

test('isWebSocketUpgrade tells upgrades from plain HTTP requests', () => {
  assert.ok(isWebSocketUpgrade(request()));
  assert.ok(isWebSocketUpgrade(request(replace('Upgrade', 'h2c, WebSocket'))));
  assert.ok(isWebSocketUpgrade(request(replace('Upgrade', 'websocket'), 'POST / HTTP/1.1')));
  assert.not.ok(isWebSocketUpgrade(request(without('Upgrade'))));
  assert.not.ok(isWebSocketUpgrade(request(replace('Upgrade', 'h2c'))));
  assert.not.ok(isWebSocketUpgrade(request(replace('Upgrade', 'websockets'))));
  assert.not.ok(isWebSocketUpgrade(parseHead('GET /health HTTP/1.1\r\nHost: a\r\n\r\n')));
});

// --- Each failure, in check order (RFC 6455 4.2.1) --------------------------------------------

test('method other than GET -> 405 METHOD_NOT_ALLOWED with Allow: GET', () => {
  for (const m of ['POST', 'PUT', 'HEAD', 'OPTIONS', 'get', 'Get']) {
    refused(request(undefined, `${m} /ws HTTP/1.1`), 405, 'METHOD_NOT_ALLOWED', { Allow: 'GET' });
  }
});

test('HTTP version below 1.1 -> 400 BAD_HTTP_VERSION (for heads built elsewhere)', () => {
  refused({ ...request(), versionMinor: 0 }, 400, 'BAD_HTTP_VERSION');
  assert.ok(!(validateUpgrade({ ...request(), versionMinor: 2 }) instanceof HttpReject));
});

test('request-target: origin-form and absolute-form accepted, others -> 400 MALFORMED_REQUEST', () => {
  const at = (t: string) => request(undefined, `GET ${t} HTTP/1.1`);
  assert.equal([accepted(at('/')).path, accepted(at('/')).query], ['/', '']);
  assert.equal([accepted(at('/a/b?')).path, accepted(at('/a/b?')).query], ['/a/b', '']);
  assert.equal([accepted(at('/a?b?c')).path, accepted(at('/a?b?c')).query], ['/a', 'b?c']);
  assert.equal([accepted(at('http://h:1/a?q')).path, accepted(at('http://h:1/a?q')).query], ['/a', 'q']);
  assert.equal([accepted(at('ws://h')).path, accepted(at('ws://h')).query], ['/', '']);
  assert.equal([accepted(at('wss://h?q=1')).path, accepted(at('wss://h?q=1')).query], ['/', 'q=1']);
  for (const t of ['*', 'example.com:443', 'chat', '://x/', '1http://h/', 'ht_tp://h/']) refused(at(t), 400, 'MALFORMED_REQUEST');
});

test('Host missing or empty -> 400 MISSING_HOST; repeated -> 400 BAD_HOST', () => {
  refused(request(without('Host')), 400, 'MISSING_HOST');
  refused(request(replace('Host', '')), 400, 'MISSING_HOST');
  refused(request((l) => [...l, 'Host: example.com']), 400, 'BAD_HOST');
  refused(request((l) => [...l, 'HOST: other.example']), 400, 'BAD_HOST');
});

test('Upgrade without the token websocket -> 400 BAD_UPGRADE', () => {
  refused(request(without('Upgrade')), 400, 'BAD_UPGRADE');
  for (const v of ['', 'h2c', 'websockets', 'web socket', 'websocket/13', ',']) refused(request(replace('Upgrade', v)), 400, 'BAD_UPGRADE');
});

test('Upgrade is case-insensitive and may be a list or repeated', () => {
  for (const v of ['WebSocket', 'WEBSOCKET', 'h2c, websocket', 'websocket , foo', ', websocket,']) accepted(request(replace('Upgrade', v)));
  accepted(request((l) => [...without('Upgrade')(l), 'Upgrade: h2c', 'Upgrade: websocket']));
});

test('Connection without the token upgrade -> 400 BAD_CONNECTION', () => {
  refused(request(without('Connection')), 400, 'BAD_CONNECTION');
  for (const v of ['', 'keep-alive', 'close', 'upgraded', 'keep-alive upgrade']) refused(request(replace('Connection', v)), 400, 'BAD_CONNECTION');
});

test('Connection is case-insensitive and may be a list or repeated', () => {
  for (const v of ['upgrade', 'UPGRADE', 'keep-alive, Upgrade', 'Upgrade, keep-alive', 'keep-alive,upgrade', 'keep-alive ,\tUpgrade']) {
    accepted(request(replace('Connection', v)));
  }
  accepted(request((l) => [...without('Connection')(l), 'Connection: keep-alive', 'Connection: Upgrade']));
});

test('Sec-WebSocket-Version missing or repeated -> 400 BAD_VERSION', () => {
  refused(request(without('Sec-WebSocket-Version')), 400, 'BAD_VERSION');
  refused(request((l) => [...l, 'Sec-WebSocket-Version: 13']), 400, 'BAD_VERSION');
  refused(request((l) => [...l, 'sec-websocket-version: 8']), 400, 'BAD_VERSION');
});

test('Sec-WebSocket-Version present but not 13 -> 426 UNSUPPORTED_VERSION with Sec-WebSocket-Version: 13 (RFC 6455 4.2.2)', () => {
  for (const v of ['8', '12', '14', '013', '13, 8', 'thirteen', '']) {
    refused(request(replace('Sec-WebSocket-Version', v)), 426, 'UNSUPPORTED_VERSION', { 'Sec-WebSocket-Version': '13' });
  }
});

test('a server that takes other versions (the ws door: 13 and 8) accepts those and refuses the rest with 426', () => {
  for (const v of ['13', '8']) assert.ok(!(validateUpgrade(request(replace('Sec-WebSocket-Version', v)), ['13', '8']) instanceof HttpReject), v);
  const r = validateUpgrade(request(replace('Sec-WebSocket-Version', '12')), ['13', '8']);
  assert.ok(r instanceof HttpReject && r.status === 426);
});

test('Sec-WebSocket-Key missing or repeated -> 400 BAD_KEY', () => {
  refused(request(without('Sec-WebSocket-Key')), 400, 'BAD_KEY');
  refused(request((l) => [...l, 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==']), 400, 'BAD_KEY');
  refused(request((l) => [...l, 'Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==']), 400, 'BAD_KEY');
});

test('Sec-WebSocket-Key must be base64 of exactly 16 bytes', () => {
  const key = (k: string) => request(replace('Sec-WebSocket-Key', k));
  for (let i = 0; i < 50; i++) accepted(key(randomBytes(16).toString('base64')));
  accepted(key('AAAAAAAAAAAAAAAAAAAAAA=='));
  accepted(key('/////////////////////w=='));
  accepted(key('+/+/+/+/+/+/+/+/+/+/+Q=='));
  for (const bad of [
    '',
    'dGhlIHNhbXBsZSBub25jZQ', // 22 chars, padding missing
    'dGhlIHNhbXBsZSBub25jZQAA', // 24 chars not ending "=="
    'dGhlIHNhbXBsZSBub25jZQ=A',
    'dGhlIHNhbXBsZSBub25jZQ=', // 23 chars
    'dGhlIHNhbXBsZSBub25jZQ===', // 25 chars
    'dGhlIHNhbXBsZSBub25jZ===', // one more "=": 15 bytes
    randomBytes(15).toString('base64'), // 20 chars
    randomBytes(17).toString('base64'), // 24 chars ending "=" only: 17 bytes
    randomBytes(18).toString('base64'), // 24 chars, no padding: 18 bytes
    'dGhlIHNhbXBsZSBub25jZQ-_', // base64url alphabet
    'dGhlIHNhbXBsZSBub25jZ-==',
    'dGhlIHNhbXBsZSBub25j*Q==',
    'dGhlIHNhbXBsZSBub25j ZQ==',
    'dGhlIHNhbXBsZSBub25jZQ==dGhl',
    '========================',
    '\u00e9GhlIHNhbXBsZSBub25jZQ==',
  ]) {
    refused(key(bad), 400, 'BAD_KEY');
  }
});

test('Sec-WebSocket-Protocol: a token list, possibly over several lines, order kept', () => {
  assert.equal(accepted(request(replace('Sec-WebSocket-Protocol', 'a'))).protocols, ['a']);
  assert.equal(accepted(request(replace('Sec-WebSocket-Protocol', 'b ,a,\tc'))).protocols, ['b', 'a', 'c']);
  assert.equal(accepted(request(replace('Sec-WebSocket-Protocol', 'x, , y'))).protocols, ['x', 'y']);
  const twoLines = request((l) => [...l, 'Sec-WebSocket-Protocol: mqtt, wamp.2.json', 'Sec-WebSocket-Protocol: v1.chat']);
  assert.equal(accepted(twoLines).protocols, ['mqtt', 'wamp.2.json', 'v1.chat']);
});

test('Sec-WebSocket-Protocol with a non-token, an empty list or a duplicate -> 400 BAD_PROTOCOL', () => {
  for (const v of ['', ',', ' , ', 'a b', 'chat/1', 'a;b', '"chat"', 'ch@t', 'a, {b}', 'a, a', 'a, b, a']) {
    refused(request(replace('Sec-WebSocket-Protocol', v)), 400, 'BAD_PROTOCOL');
  }
  refused(request((l) => [...l, 'Sec-WebSocket-Protocol: a', 'Sec-WebSocket-Protocol: a']), 400, 'BAD_PROTOCOL');
});

test('Sec-WebSocket-Extensions lines are joined raw; header names are case-insensitive', () => {
  const h = request(() => [
    'HOST: example.com',
    'UPGRADE: WebSocket',
    'CONNECTION: UPGRADE',
    'SEC-WEBSOCKET-KEY: dGhlIHNhbXBsZSBub25jZQ==',
    'sec-WebSocket-version: 13',
    'sec-websocket-extensions: permessage-deflate; server_no_context_takeover',
    'SEC-WEBSOCKET-EXTENSIONS: x-foo',
  ]);
  assert.is(accepted(h).extensions, 'permessage-deflate; server_no_context_takeover, x-foo');
});

test('checks run in the documented order: the first failure wins', () => {
  const allBad = request(() => ['Sec-WebSocket-Version: 8'], 'POST /ws HTTP/1.1');
  refused(allBad, 405, 'METHOD_NOT_ALLOWED', { Allow: 'GET' });
  refused(request(() => ['Sec-WebSocket-Version: 8']), 400, 'MISSING_HOST');
  refused(request(() => ['Host: a', 'Sec-WebSocket-Version: 8']), 400, 'BAD_UPGRADE');
  refused(request(() => ['Host: a', 'Upgrade: websocket', 'Sec-WebSocket-Version: 8']), 400, 'BAD_CONNECTION');
  refused(request(() => ['Host: a', 'Upgrade: websocket', 'Connection: upgrade', 'Sec-WebSocket-Version: 8']), 426, 'UNSUPPORTED_VERSION', {
    'Sec-WebSocket-Version': '13',
  });
  refused(request(() => ['Host: a', 'Upgrade: websocket', 'Connection: upgrade', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Protocol: a b']), 400, 'BAD_KEY');
});

// --- Server-side rejections: statuses live in reject.ts ------------------------------------

test('rejectOrigin, rejectServerFull, rejectHandshakeTimeout', () => {
  assert.equal({ ...rejectOrigin() }, { status: 403, reason: 'ORIGIN_FORBIDDEN', headers: {}, body: undefined });
  assert.equal({ ...rejectServerFull(30) }, { status: 503, reason: 'SERVER_FULL', headers: { 'Retry-After': '30' }, body: undefined });
  assert.equal(rejectServerFull(0.2).headers, { 'Retry-After': '1' });
  assert.throws(() => rejectServerFull(-1), RangeError);
  assert.throws(() => rejectServerFull(Number.NaN), RangeError);
  assert.is(rejectHandshakeTimeout().status, 408);
  assert.is(rejectHandshakeTimeout().reason, 'HANDSHAKE_TIMEOUT');
});

test('every reason code maps to a 4xx/5xx status', () => {
  for (const [reason, status] of Object.entries(REJECT_STATUS)) {
    assert.ok(status >= 400 && status < 600, reason);
    assert.ok(/^[A-Z_]+$/.test(reason), reason);
  }
});

test.run();
