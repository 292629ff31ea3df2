import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { WebSocket as WsClient } from 'ws';
import { startServer, echoHandlers } from '../helpers/server.js';
import { RawClient, upgradeRequest, expectedAccept, until, delay } from '../helpers/net.js';
import { HttpReject, reject } from '../../src/http/index.js';
import { leanTransport } from '../../src/transport/lean-transport.js';
import { socketTransport } from '../../src/transport/socket-transport.js';
import type { Transport } from '../../src/transport/transport.js';

// The upgrade handshake over a real socket: every rejection gets its status and the socket
// is closed (RFC 6455 4.2.1, 4.2.2).

async function statusOf(port: number, request: string | Buffer): Promise<{ status: number; head: string; client: RawClient }> {
  const c = await RawClient.connect(port);
  c.write(request);
  const head = await c.readHead();
  await c.waitClosed();
  return { status: Number(head.split(' ')[1]), head, client: c };
}

test('a valid request gets 101 with the right Sec-WebSocket-Accept', async () => {
  const { server, port } = await startServer({ handlers: echoHandlers() });
  const key = 'dGhlIHNhbXBsZSBub25jZQ==';
  const c = await RawClient.connect(port);
  c.write(upgradeRequest({ key }));
  const head = await c.readHead();
  assert.match(head, /^HTTP\/1\.1 101 /);
  assert.match(head, /\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/i);
  assert.is(expectedAccept(key), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  c.destroy();
  await server.close();
});

test('rejections carry their status and close the socket', async () => {
  const { server, port } = await startServer({ handlers: echoHandlers() });
  const cases: Array<[string, string, number]> = [
    ['POST', upgradeRequest({ method: 'POST' }), 405],
    ['version 8', upgradeRequest({ headers: { 'Sec-WebSocket-Version': '8' } }), 426],
    ['no key', upgradeRequest({ headers: { 'Sec-WebSocket-Key': '' } }), 400],
    ['short key', upgradeRequest({ headers: { 'Sec-WebSocket-Key': 'abc' } }), 400],
    ['no host', upgradeRequest({ headers: { Host: '' } }), 400],
    ['upgrade h2c', upgradeRequest({ headers: { Upgrade: 'h2c' } }), 400],
    ['connection close', upgradeRequest({ headers: { Connection: 'close' } }), 400],
    ['garbage', 'HELLO\r\n\r\n', 400],
    ['huge header', upgradeRequest({ headers: { 'X-Big': 'a'.repeat(20_000) } }), 431],
  ];
  for (const [name, req, status] of cases) {
    const r = await statusOf(port, req);
    assert.is(r.status, status, name);
    if (status === 426) assert.match(r.head, /\r\nSec-WebSocket-Version: 13\r\n/i);
    if (status === 405) assert.match(r.head, /\r\nAllow: GET\r\n/i);
  }
  assert.is(server.stats.rejected.UNSUPPORTED_VERSION, 1);
  await server.close();
});

test('Connection may be a list and header names are case-insensitive', async () => {
  const { server, port } = await startServer({ handlers: echoHandlers() });
  const c = await RawClient.connect(port);
  c.write(
    'GET /x HTTP/1.1\r\nhOsT: a\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n' +
      'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSEC-WEBSOCKET-VERSION: 13\r\n__proto__: x\r\nconstructor: y\r\n\r\n',
  );
  assert.match(await c.readHead(), /^HTTP\/1\.1 101 /);
  c.destroy();
  await server.close();
});

test('the request head may arrive one byte at a time', async () => {
  const { server, port } = await startServer({ handlers: echoHandlers() });
  const c = await RawClient.connect(port);
  const req = Buffer.from(upgradeRequest());
  for (const b of req) {
    c.write(Buffer.from([b]));
    await delay(0);
  }
  assert.match(await c.readHead(), /^HTTP\/1\.1 101 /);
  c.destroy();
  await server.close();
});

test('a handshake that does not finish in time gets 408 and is closed', async () => {
  const { server, port } = await startServer({ handlers: echoHandlers(), limits: { handshakeTimeoutMs: 300 } });
  const c = await RawClient.connect(port);
  c.write('GET / HTTP/1.1\r\nHost: x\r\n'); // never finished
  const head = await c.readHead(3000);
  assert.match(head, /^HTTP\/1\.1 408 /);
  await c.waitClosed(3000);
  assert.is(server.stats.handshakeTimeouts, 1);
  await server.close();
});

test('an origin check that fails answers 403', async () => {
  const { server, port } = await startServer({
    handlers: echoHandlers(),
    verifyOrigin: (origin) => origin === 'https://good.example',
  });
  const bad = await statusOf(port, upgradeRequest({ headers: { Origin: 'https://evil.example' } }));
  assert.is(bad.status, 403);
  const c = await RawClient.connect(port);
  c.write(upgradeRequest({ headers: { Origin: 'https://good.example' } }));
  assert.match(await c.readHead(), /^HTTP\/1\.1 101 /);
  c.destroy();
  await server.close();
});

test('at maxConnections the next upgrade gets 503 with Retry-After', async () => {
  const { server, port, url } = await startServer({ handlers: echoHandlers(), limits: { maxConnections: 2 } });
  const a = new WsClient(url);
  const b = new WsClient(url);
  await Promise.all([once(a, 'open'), once(b, 'open')]);
  const r = await statusOf(port, upgradeRequest());
  assert.is(r.status, 503);
  assert.match(r.head, /\r\nRetry-After: \d+\r\n/i);
  a.close();
  await once(a, 'close');
  await until(() => server.openCount === 1, 2000, 'slot freed');
  const c = new WsClient(url);
  await once(c, 'open');
  b.close();
  c.close();
  await server.close();
});

test('subprotocol selection answers with one of the offered protocols', async () => {
  const { server, url } = await startServer({
    handlers: echoHandlers(),
    selectProtocol: (offered) => offered.find((p) => p === 'chat.v2'),
  });
  const ws = new WsClient(url, ['chat.v1', 'chat.v2']);
  await once(ws, 'open');
  assert.is(ws.protocol, 'chat.v2');
  ws.close();
  // Selecting none is allowed (RFC 6455 4.2.2): the 101 simply has no Sec-WebSocket-Protocol.
  const none = await RawClient.connect(Number(new URL(url).port));
  none.write(upgradeRequest({ headers: { 'Sec-WebSocket-Protocol': 'other' } }));
  const head = await none.readHead();
  assert.match(head, /^HTTP\/1\.1 101 /);
  assert.not.match(head, /sec-websocket-protocol/i);
  none.destroy();
  await server.close();
});

test('an async upgrade hook attaches user data or rejects with its own status', async () => {
  const seen: string[] = [];
  const { server, url, port } = await startServer<{ user: string }>({
    handlers: {
      async upgrade(req, conn) {
        await delay(20);
        const token = new URLSearchParams(req.query).get('token');
        if (token !== 'secret') return new HttpReject(401, 'UNAUTHORIZED');
        conn.data = { user: 'ada' };
      },
      message(conn, data) {
        seen.push(`${conn.data.user}:${data.toString()}`);
        conn.send('ok');
      },
    },
  });
  const r = await statusOf(port, upgradeRequest({ path: '/?token=wrong' }));
  assert.is(r.status, 401);
  const ws = new WsClient(`${url}/?token=secret`);
  await once(ws, 'open');
  ws.send('hello');
  await once(ws, 'message');
  assert.equal(seen, ['ada:hello']);
  ws.close();
  await server.close();
});

test('an upgrade hook refuses with reject(401, body): that status, its phrase and the body, counted as REFUSED', async () => {
  const { server, port } = await startServer({
    handlers: {
      upgrade: (req) => (req.query === 'ok' ? undefined : reject(401, 'who are you?', { 'WWW-Authenticate': 'Bearer' })),
    },
  });
  const c = await RawClient.connect(port);
  c.write(upgradeRequest({ path: '/' }));
  const head = await c.readHead();
  assert.match(head, /^HTTP\/1\.1 401 Unauthorized\r\n/);
  assert.match(head, /\r\nWWW-Authenticate: Bearer\r\n/);
  assert.is((await c.read(12)).toString(), 'who are you?');
  await c.waitClosed();
  assert.is(server.stats.rejected.REFUSED, 1);
  await server.close();
});

test('frames sent right behind the request head are not lost', async () => {
  const { server, port } = await startServer({ handlers: echoHandlers() });
  const c = await RawClient.connect(port);
  const mask = Buffer.from([1, 2, 3, 4]);
  const frame = Buffer.from([0x81, 0x82, ...mask, 'h'.charCodeAt(0) ^ 1, 'i'.charCodeAt(0) ^ 2]);
  c.write(Buffer.concat([Buffer.from(upgradeRequest()), frame]));
  await c.readHead();
  const f = await c.readFrame();
  assert.is(f.payload.toString(), 'hi');
  c.destroy();
  await server.close();
});

test('the 101 and what the open handler sends leave in one corked write, not two', async () => {
  const { server, port } = await startServer({
    handlers: {
      open(conn) {
        conn.send('welcome');
      },
    },
  });
  // Every call the connection makes on its transport, in order (the transport is shared, so
  // its methods are wrapped for this test and put back after).
  const transport: Transport = server.transportKind === 'lean' ? leanTransport : socketTransport;
  const calls: string[] = [];
  const saved = { cork: transport.cork, uncork: transport.uncork, write: transport.write };
  transport.cork = function (c) {
    calls.push('cork');
    return saved.cork.call(this, c);
  };
  transport.uncork = function (c) {
    calls.push('uncork');
    return saved.uncork.call(this, c);
  };
  transport.write = function (c, data) {
    calls.push(data.subarray(0, 12).toString('latin1') === 'HTTP/1.1 101' ? 'write 101' : 'write');
    return saved.write.call(this, c, data);
  };
  try {
    const c = await RawClient.connect(port);
    c.write(upgradeRequest());
    assert.match(await c.readHead(), /^HTTP\/1\.1 101 /);
    const f = await c.readFrame();
    assert.is(f.payload.toString(), 'welcome');
    const first = calls.indexOf('write 101');
    assert.equal(calls.slice(first - 1, first + 3), ['cork', 'write 101', 'write', 'uncork']);
    c.destroy();
  } finally {
    Object.assign(transport, saved);
    await server.close();
  }
});

test.run();
