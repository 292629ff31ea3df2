import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { APP_REJECT_REASON, HttpReject, reject, rejectServerFull } from '../../src/http/reject.js';
import type { RejectReason } from '../../src/http/reject.js';
import { httpResponse, rejectResponse, STATUS_TEXT, switchingProtocolsResponse } from '../../src/http/response.js';

const latin1 = (b: Buffer) => b.toString('latin1');

// --- 101 (RFC 6455 4.2.2 item 5) -------------------------------------------------------------

test('101 exact bytes, with the RFC 6455 1.3 example accept value', () => {
  assert.is(
    latin1(switchingProtocolsResponse('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=', undefined)),
    'HTTP/1.1 101 Switching Protocols\r\n' +
      'Upgrade: websocket\r\n' +
      'Connection: Upgrade\r\n' +
      'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n' +
      '\r\n',
  );
});

test('101 exact bytes with a subprotocol and extra headers', () => {
  const b = switchingProtocolsResponse('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=', 'chat', [
    ['Sec-WebSocket-Extensions', 'permessage-deflate; server_no_context_takeover'],
    ['X-Node', 'n1'],
  ]);
  assert.is(
    latin1(b),
    'HTTP/1.1 101 Switching Protocols\r\n' +
      'Upgrade: websocket\r\n' +
      'Connection: Upgrade\r\n' +
      'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n' +
      'Sec-WebSocket-Protocol: chat\r\n' +
      'Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n' +
      'X-Node: n1\r\n' +
      '\r\n',
  );
});

test('101: CRLF injection through any header throws TypeError (response splitting)', () => {
  const accept = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
  assert.throws(() => switchingProtocolsResponse(accept, undefined, [['X-A', 'a\r\nSet-Cookie: x=1']]), TypeError);
  assert.throws(() => switchingProtocolsResponse(accept, undefined, [['X-A', 'a\nb']]), TypeError);
  assert.throws(() => switchingProtocolsResponse(accept, undefined, [['X-A', 'a\rb']]), TypeError);
  assert.throws(() => switchingProtocolsResponse(accept, undefined, [['X-A', 'a\x00b']]), TypeError);
  assert.throws(() => switchingProtocolsResponse(accept, undefined, [['X-A\r\nSet-Cookie', 'x']]), TypeError);
  assert.throws(() => switchingProtocolsResponse(accept, undefined, [['X A', 'x']]), TypeError);
  assert.throws(() => switchingProtocolsResponse(accept, undefined, [['', 'x']]), TypeError);
  assert.throws(() => switchingProtocolsResponse(accept, undefined, [['X-A', '\u2028']]), TypeError);
  assert.throws(() => switchingProtocolsResponse(accept, 'chat\r\nX: y'), TypeError);
  assert.throws(() => switchingProtocolsResponse(accept, 'a b'), TypeError);
  assert.throws(() => switchingProtocolsResponse(accept, ''), TypeError);
  assert.throws(() => switchingProtocolsResponse(`${accept}\r\nX: y`, undefined), TypeError);
  // Tabs and obs-text are legal field content.
  assert.ok(switchingProtocolsResponse(accept, undefined, [['X-A', 'a\tb\u00e9']]).includes(Buffer.from('X-A: a\tb\xe9\r\n', 'latin1')));
});

// --- Rejections ---------------------------------------------------------------------------

test('426 exact bytes: carries Sec-WebSocket-Version: 13 (RFC 6455 4.2.2)', () => {
  assert.is(
    latin1(rejectResponse(reject('UNSUPPORTED_VERSION'))),
    'HTTP/1.1 426 Upgrade Required\r\n' +
      'Connection: close\r\n' +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      'Content-Length: 16\r\n' +
      'Sec-WebSocket-Version: 13\r\n' +
      '\r\n' +
      'Upgrade Required',
  );
});

test('405 carries Allow: GET; 503 carries Retry-After; 400 has no extra header', () => {
  assert.is(
    latin1(rejectResponse(reject('METHOD_NOT_ALLOWED'))),
    'HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n' +
      'Content-Length: 18\r\nAllow: GET\r\n\r\nMethod Not Allowed',
  );
  assert.ok(latin1(rejectResponse(rejectServerFull(5))).startsWith('HTTP/1.1 503 Service Unavailable\r\n'));
  assert.ok(latin1(rejectResponse(rejectServerFull(5))).includes('\r\nRetry-After: 5\r\n\r\n'));
  assert.is(
    latin1(rejectResponse(reject('BAD_KEY'))),
    'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n' +
      'Content-Length: 11\r\n\r\nBad Request',
  );
});

test('a reject body is sent as UTF-8 and Content-Length counts bytes', () => {
  const b = rejectResponse(new HttpReject(403, 'ORIGIN_FORBIDDEN', {}, 'origin refusée ✋'));
  const text = b.toString('utf8');
  assert.ok(text.includes('Content-Length: 19\r\n'));
  assert.ok(text.endsWith('\r\n\r\norigin refusée ✋'));
});

test('431, 414 and 408 have their reason phrases', () => {
  assert.ok(latin1(rejectResponse(reject('HEAD_TOO_LARGE'))).startsWith('HTTP/1.1 431 Request Header Fields Too Large\r\n'));
  assert.ok(latin1(rejectResponse(reject('URI_TOO_LONG'))).startsWith('HTTP/1.1 414 URI Too Long\r\n'));
  assert.ok(latin1(rejectResponse(reject('HANDSHAKE_TIMEOUT'))).startsWith('HTTP/1.1 408 Request Timeout\r\n'));
});

test('reject(401, body) refuses with that status, its phrase and the body (was "HTTP/1.1 undefined")', () => {
  const r = reject(401, 'unauthorized', { 'WWW-Authenticate': 'Bearer' });
  assert.is(r.reason, APP_REJECT_REASON);
  const text = latin1(rejectResponse(r));
  assert.ok(text.startsWith('HTTP/1.1 401 Unauthorized\r\n'), text);
  assert.ok(text.includes('WWW-Authenticate: Bearer\r\n'));
  assert.ok(text.endsWith('\r\n\r\nunauthorized'));
  assert.ok(latin1(rejectResponse(reject(429))).endsWith('\r\n\r\nToo Many Requests'));
  assert.ok(latin1(rejectResponse(reject(302, '', { Location: '/login' }))).includes('Location: /login\r\n'));
});

test('reject() refuses a status outside 300-599 and an unknown reason code', () => {
  for (const bad of [200, 101, 600, 401.5, Number.NaN]) assert.throws(() => reject(bad), RangeError);
  assert.throws(() => reject('UNAUTHORIZED' as RejectReason), TypeError);
});

test('a reject with an injected header throws TypeError', () => {
  assert.throws(() => rejectResponse(new HttpReject(503, 'SERVER_FULL', { 'Retry-After': '1\r\nSet-Cookie: a=b' })), TypeError);
  assert.throws(() => rejectResponse(new HttpReject(503, 'SERVER_FULL', { 'Retry After': '1' })), TypeError);
});

test('a status missing from STATUS_TEXT keeps the SP of the status line', () => {
  assert.ok(latin1(rejectResponse(new HttpReject(499, 'MALFORMED_REQUEST'))).startsWith('HTTP/1.1 499 \r\n'));
  assert.is(STATUS_TEXT[499], undefined);
});

// --- Small HTTP endpoints ------------------------------------------------------------------

test('httpResponse exact bytes, headers as a record or as pairs, body string or Buffer', () => {
  const expected =
    'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 13\r\nContent-Type: application/json\r\n\r\n{"ok":"yés"}';
  assert.is(httpResponse(200, { 'Content-Type': 'application/json' }, '{"ok":"yés"}').toString('utf8'), expected);
  assert.is(httpResponse(200, [['Content-Type', 'application/json']], Buffer.from('{"ok":"yés"}')).toString('utf8'), expected);
  const two = httpResponse(404, [['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2']], '');
  assert.is(latin1(two), 'HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n');
});

test('httpResponse: 204 and 304 have no Content-Length and no body', () => {
  assert.is(latin1(httpResponse(204, {}, '')), 'HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n');
  assert.throws(() => httpResponse(204, {}, 'x'), TypeError);
  assert.throws(() => httpResponse(304, {}, Buffer.from('x')), TypeError);
});

test('httpResponse refuses framing headers, bad statuses and injected headers', () => {
  assert.throws(() => httpResponse(200, { 'content-length': '5' }, 'hello'), TypeError);
  assert.throws(() => httpResponse(200, { 'Transfer-Encoding': 'chunked' }, 'hello'), TypeError);
  assert.throws(() => httpResponse(200, [['Connection', 'keep-alive']], 'hello'), TypeError);
  assert.throws(() => httpResponse(200, { Location: '/a\r\n\r\n<html>' }, ''), TypeError);
  assert.throws(() => httpResponse(101, {}, ''), RangeError);
  assert.throws(() => httpResponse(600, {}, ''), RangeError);
  assert.throws(() => httpResponse(200.5, {}, ''), RangeError);
});

test.run();
