// HTTP on serve's shared port: the first head of a connection is read by the library's parser
// under its limits (431, 408, 400), WebSocket upgrades on /ws stay murmur connections, every
// other request is served by node:http with keep-alive, pipelining, chunked bodies and
// 100-continue, and its later heads and bodies have their own timeouts (408) and limits (431).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { testApp, closeAll } from './helpers.js';
import { RawClient, upgradeRequest } from '../helpers/net.js';

test.after.each(closeAll);

const open = { anonymous: { subscribe: ['*'], publish: ['*'], presence: ['*'] } };

/** Reads one response: its status, its head and its Content-Length body. */
async function response(raw: RawClient, timeoutMs = 5000): Promise<{ status: number; head: string; body: string }> {
  const head = await raw.readHead(timeoutMs);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
  const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
  const body = length > 0 ? (await raw.read(length, timeoutMs)).toString() : '';
  return { status, head, body };
}

const get = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: a\r\n${extra}\r\n`;

test("WebSockets on /ws are connections of the port's own listener, on the lean transport where it is available", async () => {
  const { app, port } = await testApp();
  const raw = await RawClient.connect(port);
  raw.write(upgradeRequest({ path: '/ws' }));
  assert.match(await raw.readHead(), /^HTTP\/1\.1 101 /);
  await raw.readFrame(); // the welcome
  const kinds: string[] = [];
  app.realtime.server.forEachConnection((c) => kinds.push(c.transport.kind));
  const wanted = process.env.MURMUR_TRANSPORT === 'socket' ? 'socket' : 'lean';
  assert.equal([app.realtime.server.transportKind, kinds], [wanted, [wanted]]);
  raw.destroy();
});

test('keep-alive: several plain requests on one connection, each answered, the connection stays open', async () => {
  const { port } = await testApp();
  const raw = await RawClient.connect(port);
  for (const path of ['/healthz', '/readyz', '/healthz']) {
    raw.write(get(path));
    const r = await response(raw);
    assert.is(r.status, 200);
    assert.match(r.head, /\r\nConnection: keep-alive\r\n/i);
  }
  assert.not.ok(raw.closed);
  raw.destroy();
});

test('a request followed at once by the client half-closing its side is still answered', async () => {
  const { port } = await testApp();
  const raw = await RawClient.connect(port);
  raw.socket.end(get('/healthz'));
  assert.equal((await response(raw)).body, 'ok\n');
  await raw.waitClosed();
});

test('pipelining: requests written together are answered in order', async () => {
  const { port } = await testApp();
  const raw = await RawClient.connect(port);
  raw.write(get('/healthz') + get('/nope') + get('/readyz'));
  assert.equal((await response(raw)).body, 'ok\n');
  assert.is((await response(raw)).status, 404);
  assert.match((await response(raw)).body, /^ready/);
  raw.destroy();
});

test('a chunked body with Expect: 100-continue reaches the API', async () => {
  const { port } = await testApp({ ...open, apiKey: 'k-0123456789abcdef' });
  const raw = await RawClient.connect(port);
  raw.write('POST /api/publish HTTP/1.1\r\nHost: a\r\nX-Api-Key: k-0123456789abcdef\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n');
  assert.match(await raw.readHead(), /^HTTP\/1\.1 100 Continue\r\n/);
  const body = JSON.stringify({ topic: 'room:a', data: 'hi' });
  raw.write(`5\r\n${body.slice(0, 5)}\r\n${(body.length - 5).toString(16)}\r\n${body.slice(5)}\r\n0\r\n\r\n`);
  const r = await response(raw);
  assert.is(r.status, 200);
  assert.is(JSON.parse(r.body).topic, 'room:a');
  raw.destroy();
});

test('a slow first head gets 408 after the library handshake timeout, not node:http headersTimeout', async () => {
  const { app, port } = await testApp();
  app.realtime.server.limits.handshakeTimeoutMs = 200;
  const raw = await RawClient.connect(port);
  raw.write('GET /healthz HTTP/1.1\r\nHost:');
  // The sweep runs about once a second with serve's limits: 408 well before node:http's 10 s.
  const r = await response(raw, 5000);
  assert.is(r.status, 408);
  await raw.waitClosed();
});

test('slow later heads and slow bodies get 408 (never 400)', async () => {
  const { app, port } = await testApp({ ...open, apiKey: 'k-0123456789abcdef' });
  app.http.headersTimeout = 300;
  app.http.requestTimeout = 600;
  for (const slow of ['GET /healthz HTTP/1.1\r\nHost:', 'POST /api/publish HTTP/1.1\r\nHost: a\r\nX-Api-Key: k-0123456789abcdef\r\nContent-Length: 100\r\n\r\n{"topic":']) {
    const raw = await RawClient.connect(port);
    raw.write(get('/healthz'));
    assert.is((await response(raw)).status, 200);
    raw.write(slow);
    assert.is((await response(raw, 5000)).status, 408, slow);
    await raw.waitClosed();
  }
});

test('heads over the limit get 431, on the first request and on a later one', async () => {
  const { port } = await testApp();
  const big = `X-Big: ${'a'.repeat(7000)}\r\n`.repeat(3);
  const first = await RawClient.connect(port);
  first.write(get('/healthz', big));
  assert.is((await response(first)).status, 431);
  await first.waitClosed();
  const later = await RawClient.connect(port);
  later.write(get('/healthz'));
  assert.is((await response(later)).status, 200);
  later.write(get('/healthz', big));
  assert.is((await response(later)).status, 431);
  await later.waitClosed();
});

test('a malformed first head gets the library 400 and the connection closes', async () => {
  const { port } = await testApp();
  const raw = await RawClient.connect(port);
  raw.write('GET /healthz HTTP/1.1\r\nHost : a\r\n\r\n');
  assert.is((await response(raw)).status, 400);
  await raw.waitClosed();
});

test('absolute-form targets: an upgrade to http://host/ws opens, a plain GET of http://host/healthz answers', async () => {
  const { port } = await testApp();
  const ws = await RawClient.connect(port);
  ws.write(upgradeRequest({ path: `http://127.0.0.1:${port}/ws` }));
  assert.match(await ws.readHead(), /^HTTP\/1\.1 101 /);
  assert.is((await ws.readFrame()).opcode, 1, 'the welcome');
  ws.destroy();
  const plain = await RawClient.connect(port);
  plain.write(get(`http://127.0.0.1:${port}/healthz`));
  assert.equal((await response(plain)).body, 'ok\n');
  plain.destroy();
});

test('an upgrade on a kept-alive connection after plain requests opens a WebSocket', async () => {
  const { port } = await testApp();
  const raw = await RawClient.connect(port);
  raw.write(get('/healthz'));
  assert.is((await response(raw)).status, 200);
  raw.write(get('/readyz'));
  assert.is((await response(raw)).status, 200);
  raw.write(upgradeRequest({ path: '/ws?x=1' }));
  assert.match(await raw.readHead(), /^HTTP\/1\.1 101 /);
  const welcome = await raw.readFrame();
  assert.is(JSON.parse(welcome.payload.toString()).type, 'welcome');
  raw.destroy();
});

test('HTTP/1.0 plain requests are answered (health checkers send them); upgrades elsewhere than /ws get 404', async () => {
  const { port } = await testApp();
  const old = await RawClient.connect(port);
  old.write('GET /healthz HTTP/1.0\r\n\r\n');
  assert.equal((await response(old)).body, 'ok\n');
  await old.waitClosed();
  const other = await RawClient.connect(port);
  other.write(upgradeRequest({ path: '/chat' }));
  assert.is((await response(other)).status, 404);
  other.destroy();
});

test.run();
