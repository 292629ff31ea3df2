import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { WebSocket as WsClient } from 'ws';
import { startServer, echoHandlers } from '../helpers/server.js';
import { rawWebSocket, clientFrame, until, delay } from '../helpers/net.js';
import type { Connection } from '../../src/server/connection.js';

// Protocol failures over a real socket: the close code arrives, then the server closes TCP
// and ignores anything after the bad frame (RFC 6455 7.1.7).

test('protocol failures close with the RFC code and discard what follows', async () => {
  const got: string[] = [];
  const { server, port } = await startServer({
    handlers: { message: (_c, d) => got.push(d.toString()), error: (_c, e) => got.push(e.code) },
    limits: { maxPayload: 1000 },
  });
  const cases: Array<[string, Buffer, number]> = [
    ['unmasked frame', clientFrame(1, 'x', { mask: false }), 1002],
    ['rsv bit without extension', clientFrame(1, 'x', { rsv: 4 }), 1002],
    ['reserved opcode', clientFrame(3, 'x'), 1002],
    ['invalid utf-8', clientFrame(1, Buffer.from([0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80])), 1007],
    ['too big', clientFrame(2, Buffer.alloc(1001)), 1009],
    ['bad close code', clientFrame(8, Buffer.from([0x03, 0xe7])), 1002],
  ];
  for (const [name, frame, code] of cases) {
    const c = await rawWebSocket(port);
    c.write(Buffer.concat([frame, clientFrame(1, 'after')]));
    assert.is(await c.readClose(), code, name);
    await c.waitClosed();
  }
  assert.not.ok(got.includes('after'));
  assert.is(server.stats.protocolErrors, cases.length);
  await server.close();
});

test('a quiet peer gets pings; one that never answers is closed after idleTimeout', async () => {
  const { server, port } = await startServer({ handlers: echoHandlers(), limits: { pingIntervalMs: 300, idleTimeoutMs: 900 } });
  const c = await rawWebSocket(port);
  const ping = await c.readFrame(3000);
  assert.is(ping.opcode, 9);
  const code = await c.readClose(3000);
  assert.is(code, 1001);
  await c.waitClosed(8000);
  assert.is(server.stats.idleTimeouts, 1);
  await server.close();
});

test('a peer that answers pings stays connected past the idle timeout', async () => {
  const { server, url } = await startServer({ handlers: echoHandlers(), limits: { pingIntervalMs: 200, idleTimeoutMs: 600 } });
  const ws = new WsClient(url); // ws answers pings automatically
  await once(ws, 'open');
  let pings = 0;
  ws.on('ping', () => pings++);
  await delay(1500);
  assert.is(ws.readyState, WsClient.OPEN);
  assert.ok(pings >= 2, `pings: ${pings}`);
  ws.close();
  await server.close();
});

test('a client that stops reading: memory stays within the budget and messages are dropped', async () => {
  const budget = 256 * 1024;
  let conn: Connection | undefined;
  const { server, port } = await startServer({ handlers: { open: (c) => (conn = c) }, limits: { maxBackpressure: budget } });
  const c = await rawWebSocket(port);
  c.socket.pause(); // never read again
  await until(() => conn !== undefined, 2000, 'open');
  const chunk = Buffer.alloc(16 * 1024, 1);
  const results = { written: 0, queued: 0, dropped: 0 };
  let maxBuffered = 0;
  for (let round = 0; round < 200 && results.dropped < 50; round++) {
    for (let i = 0; i < 16; i++) results[conn!.send(chunk)]++;
    maxBuffered = Math.max(maxBuffered, conn!.bufferedAmount);
    await delay(5);
  }
  assert.ok(results.dropped >= 50, JSON.stringify(results));
  assert.ok(results.queued > 0, JSON.stringify(results));
  assert.ok(maxBuffered <= budget + chunk.length + 64, `buffered ${maxBuffered}`);
  assert.is(server.stats.droppedMessages, results.dropped);
  c.destroy();
  await server.close();
});

test('slow-consumer policy close: the connection is closed with 1008', async () => {
  let conn: Connection | undefined;
  let closed = false;
  const { server, port } = await startServer({
    handlers: { open: (c) => (conn = c), close: () => (closed = true) },
    limits: { maxBackpressure: 64 * 1024, closeTimeoutMs: 300 },
    slowConsumer: 'close',
  });
  const c = await rawWebSocket(port);
  c.socket.pause();
  await until(() => conn !== undefined, 2000, 'open');
  const chunk = Buffer.alloc(32 * 1024);
  for (let i = 0; i < 200 && conn!.isOpen; i++) {
    conn!.send(chunk);
    await delay(1);
  }
  assert.not.ok(conn!.isOpen);
  assert.is(server.stats.slowConsumerCloses, 1);
  await until(() => closed, 3000, 'close after timeout');
  await server.close();
});

test('reading pauses while the echo backlog is over budget, and nothing is lost', async () => {
  const { server, port } = await startServer({ handlers: echoHandlers(), limits: { maxBackpressure: 128 * 1024 } });
  const c = await rawWebSocket(port);
  c.socket.pause();
  const payload = Buffer.alloc(8 * 1024, 7);
  const frames = Buffer.concat(Array.from({ length: 200 }, () => clientFrame(2, payload))); // 1.6 MiB
  c.write(frames);
  await delay(300);
  c.socket.resume();
  for (let i = 0; i < 200; i++) {
    const f = await c.readFrame();
    assert.is(f.payload.length, payload.length);
  }
  assert.is(server.stats.droppedMessages, 0);
  c.destroy();
  await server.close();
});

test('graceful shutdown sends 1001 to every client and resolves when they are gone', async () => {
  const { server, url } = await startServer({ handlers: echoHandlers() });
  const clients = Array.from({ length: 20 }, () => new WsClient(url));
  await Promise.all(clients.map((c) => once(c, 'open')));
  const codes = clients.map((c) => once(c, 'close').then(([code]) => code as number));
  await server.close(3000);
  assert.equal(await Promise.all(codes), clients.map(() => 1001));
  assert.is(server.socketCount, 0);
});

test('graceful shutdown destroys a client that never answers the close', async () => {
  const { server, port } = await startServer({ handlers: echoHandlers() });
  const c = await rawWebSocket(port);
  c.socket.pause();
  await server.close(300);
  assert.is(server.socketCount, 0);
  c.socket.resume();
  await c.waitClosed(2000);
});

test('shutdown with writes still queued for a client that does not read: no crash, no leaked handle', async () => {
  let conn: Connection | undefined;
  const tcp = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPWrap' || r === 'TCPSocketWrap').length;
  const before = tcp(); // whatever earlier tests of this file still hold
  const { server, port } = await startServer({ handlers: { open: (c) => (conn = c) }, limits: { maxBackpressure: 64 * 1024 * 1024 } });
  const c = await rawWebSocket(port);
  c.socket.pause();
  await until(() => conn !== undefined, 2000, 'open');
  const chunk = Buffer.alloc(256 * 1024, 3);
  for (let i = 0; i < 16; i++) conn!.send(chunk);
  await delay(50);
  assert.ok(conn!.bufferedAmount > 0, 'bytes are queued');
  await server.close(300);
  assert.is(server.socketCount, 0);
  c.destroy();
  await until(() => tcp() <= before, 3000, `no TCP handle left (${tcp()} > ${before})`);
});

test.run();
