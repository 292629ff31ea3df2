import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Server, serverCore } from '../../src/server/server.js';
import { Connection } from '../../src/server/connection.js';
import { FrameParser } from '../../src/protocol/index.js';
import { leanTransport } from '../../src/transport/lean-transport.js';
import { startServer } from '../helpers/server.js';
import { rawWebSocket, clientFrame, until, delay, RawClient, upgradeRequest } from '../helpers/net.js';

// What a connection holds, and when: six own fields, the server on its class, no parser
// between frames, deadlines met by the sweep.

/** The connection's private slot, read for the test. */
function side(c: Connection): unknown {
  return (c as unknown as { side: unknown }).side;
}

async function serverWithConns(options: ConstructorParameters<typeof Server>[0] = { handlers: {} }) {
  const conns: Connection[] = [];
  const got: string[] = [];
  const { server, port } = await startServer({
    ...options,
    handlers: {
      ...options.handlers,
      open: (c) => conns.push(c),
      message: (c, d) => {
        got.push(d.toString());
        options.handlers.message?.(c, d, false);
      },
    },
  });
  return { server, port, conns, got };
}

test('a connection has six own fields; its server comes from its class', async () => {
  const a = await serverWithConns();
  const b = await serverWithConns();
  const ca = await rawWebSocket(a.port);
  const cb = await rawWebSocket(b.port);
  await until(() => a.conns.length === 1 && b.conns.length === 1);
  const conn = a.conns[0]!;
  assert.equal(Object.keys(conn).sort(), ['data', 'flags', 'io', 'mark', 'side', 'sweepNext']);
  assert.ok(!Object.prototype.hasOwnProperty.call(conn, 'server'));
  assert.is(conn.server, a.server);
  assert.is(b.conns[0]!.server, b.server);
  assert.ok(conn instanceof Connection);
  assert.throws(() => new Connection(leanTransport, null), /made by a Server/);
  ca.destroy();
  cb.destroy();
  await a.server.close();
  await b.server.close();
});

test('no frame parser between frames: whole frames use the spare, a cut-off frame keeps one until it completes', async () => {
  const s = await serverWithConns();
  const c = await rawWebSocket(s.port);
  await until(() => s.conns.length === 1);
  const conn = s.conns[0]!;
  assert.is(side(conn), null, 'nothing before the first frame');
  c.write(Buffer.concat([clientFrame(1, 'one'), clientFrame(1, 'two')]));
  await until(() => s.got.length === 2);
  assert.is(side(conn), null, 'nothing after whole frames');
  const frame = clientFrame(2, Buffer.alloc(3000, 7));
  c.write(frame.subarray(0, 1000));
  await delay(50);
  assert.ok(side(conn) instanceof FrameParser, 'a parser while the frame is cut off');
  c.write(frame.subarray(1000));
  await until(() => s.got.length === 3);
  assert.is(side(conn), null, 'given back once the frame is complete');
  // a fragmented message: the parser stays for the whole message, across chunks
  c.write(clientFrame(1, 'frag-', { fin: false }));
  await delay(50);
  assert.ok(side(conn) instanceof FrameParser, 'a parser while a fragmented message is open');
  c.write(clientFrame(0, 'ment'));
  await until(() => s.got.length === 4);
  assert.is(s.got[3], 'frag-ment');
  assert.is(side(conn), null);
  c.destroy();
  await s.server.close();
});

test('connections with frames cut off at the same time do not share a parser', async () => {
  const s = await serverWithConns();
  const clients: RawClient[] = [];
  for (let i = 0; i < 10; i++) clients.push(await rawWebSocket(s.port));
  await until(() => s.conns.length === 10);
  const cut = clients.slice(0, 5);
  const frames = cut.map((_, i) => clientFrame(1, `message ${i} `.repeat(50)));
  // first halves from five, then whole frames from the other five (read with the spare
  // parser), then the second halves
  cut.forEach((c, i) => c.write(frames[i]!.subarray(0, 100)));
  await delay(50);
  assert.equal(s.got, []);
  for (let i = 5; i < 10; i++) clients[i]!.write(clientFrame(1, `whole ${i}`));
  await until(() => s.got.length === 5);
  cut.forEach((c, i) => c.write(frames[i]!.subarray(100)));
  await until(() => s.got.length === 10);
  for (let i = 0; i < 5; i++) assert.ok(s.got.includes(`message ${i} `.repeat(50)), `connection ${i}'s message whole`);
  for (let i = 5; i < 10; i++) assert.ok(s.got.includes(`whole ${i}`));
  for (const conn of s.conns) assert.is(side(conn), null);
  for (const c of clients) c.destroy();
  await s.server.close();
});

test("after the peer's close frame, later chunks are discarded", async () => {
  const s = await serverWithConns();
  const c = await rawWebSocket(s.port);
  await until(() => s.conns.length === 1);
  c.write(clientFrame(8, Buffer.from([0x03, 0xe8])));
  assert.is(await c.readClose(), 1000);
  c.write(clientFrame(1, 'late'));
  await delay(100);
  assert.equal(s.got, []);
  c.destroy();
  await s.server.close();
});

test('an idle subscriber holds its topic list alone, a cached address is held alone too; a subprotocol makes the extra', async () => {
  const s = await serverWithConns({ handlers: {}, selectProtocol: (list) => (list.includes('chat') ? 'chat' : undefined) });
  const plain = await rawWebSocket(s.port);
  await until(() => s.conns.length === 1);
  const conn = s.conns[0]!;
  conn.subscribe('a');
  conn.subscribe('b');
  assert.ok(Array.isArray(side(conn)));
  assert.equal(conn.topics!.map((t) => t.name), ['a', 'b']);
  // a cut-off frame while subscribed: parser and topics together, then the topics alone again
  const frame = clientFrame(1, 'x'.repeat(500));
  plain.write(frame.subarray(0, 10));
  await delay(50);
  assert.is((side(conn) as object).constructor.name, 'ConnectionExtra');
  plain.write(frame.subarray(10));
  await until(() => s.got.length === 1);
  assert.ok(Array.isArray(side(conn)), 'collapsed back to the topic list');
  conn.unsubscribe('a');
  conn.unsubscribe('b');
  assert.is(side(conn), null);
  assert.is(conn.remoteAddress, '127.0.0.1');
  assert.is(side(conn), '127.0.0.1', 'a cached address alone: the string in the slot');
  conn.subscribe('c');
  assert.is((side(conn) as object).constructor.name, 'ConnectionExtra', 'an address and topics: the extra');
  conn.unsubscribe('c');
  assert.is(side(conn), '127.0.0.1');
  // a negotiated subprotocol
  const sock = await RawClient.connect(s.port);
  sock.write(upgradeRequest({ headers: { 'sec-websocket-protocol': 'chat' } }));
  assert.match(await sock.readHead(), /sec-websocket-protocol: chat/i);
  await until(() => s.conns.length === 2);
  assert.is(s.conns[1]!.protocol, 'chat');
  plain.destroy();
  sock.destroy();
  await s.server.close();
});

test('deadlines: a handshake that trickles bytes still times out; closed connections leave the sweep', async () => {
  const { server, port } = await startServer({ handlers: {}, limits: { handshakeTimeoutMs: 400, closeTimeoutMs: 300 } });
  const slow = await RawClient.connect(port);
  const head = upgradeRequest();
  const started = Date.now();
  let i = 0;
  const drip = setInterval(() => {
    if (i < head.length - 4 && !slow.closed) slow.write(head[i++]!);
  }, 20);
  const answer = await slow.readHead(3000).catch(() => '');
  clearInterval(drip);
  const took = Date.now() - started;
  assert.match(answer, /^HTTP\/1\.1 408/);
  // the deadline counts on the sweeper's clock, which moves once per tick (here 75 ms)
  assert.ok(took >= 325 && took < 1400, `timed out after ${took} ms`);
  assert.is(server.stats.handshakeTimeouts, 1);
  const clients: RawClient[] = [];
  for (let k = 0; k < 20; k++) clients.push(await rawWebSocket(port));
  await until(() => server.openCount === 20);
  for (const c of clients) c.destroy();
  await until(() => server.openCount === 0);
  // gone from the sweep's list within a period or so (here 75 ms)
  await until(() => serverCore(server).sweeper.size === 0, 2000, 'the sweep drops closed connections');
  slow.destroy();
  await server.close();
});

test('a closing peer that keeps sending frames but never its close is destroyed after closeTimeoutMs', async () => {
  const s = await serverWithConns({ handlers: {}, limits: { closeTimeoutMs: 400 } });
  const c = await rawWebSocket(s.port);
  await until(() => s.conns.length === 1);
  const started = Date.now();
  s.conns[0]!.close(1000, 'bye');
  assert.is(await c.readClose(), 1000);
  // pings every 50 ms: bytes from the peer must not postpone the closing's deadline
  const drip = setInterval(() => {
    if (!c.closed) c.write(clientFrame(9, 'still here'));
  }, 50);
  await c.waitClosed(3000).finally(() => clearInterval(drip));
  const took = Date.now() - started;
  // the deadline counts on the sweeper's clock, which moves once per tick (here 100 ms)
  assert.ok(took >= 300 && took < 1500, `destroyed after ${took} ms`);
  await s.server.close();
});

test.run();
