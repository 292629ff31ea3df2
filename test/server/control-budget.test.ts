import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { once } from 'node:events';
import type { Connection } from '../../src/server/connection.js';
import type { ServerOptions } from '../../src/server/options.js';
import { startServer } from '../helpers/server.js';
import { rawWebSocket, clientFrame, until, delay, upgradeRequest } from '../helpers/net.js';
import { serverCore } from '../../src/server/server.js';

// Control frames live under a budget: a pong is queued only while the connection's backlog is
// under maxControlBacklog; above it one pong is owed (for the latest ping) and reading pauses;
// a peer that keeps pinging past maxOwedPings is closed with 1008. Pings are not activity.

const PING = 0x9;
const PONG = 0xa;
const BIG = 8 * 1024 * 1024;

async function serverWithConns(options: Partial<ServerOptions> = {}) {
  const conns: Connection[] = [];
  let pings = 0;
  const { server, port } = await startServer({
    ...options,
    limits: { maxBackpressure: 64 * 1024 * 1024, ...options.limits },
    handlers: {
      open: (c) => conns.push(c),
      ping: () => pings++,
      // 'fill' queues a large message the client does not read yet: a backlog over the budget.
      message: (c, d, isBinary) => c.send(d.toString() === 'fill' ? Buffer.alloc(BIG, 1) : d, isBinary),
    },
  });
  return { server, port, conns, pings: () => pings };
}

/** A client socket that collects what it reads, parsing server frames after skipping `skip` bytes. */
class Reader {
  readonly socket: Socket;
  frames: Array<{ opcode: number; payload: Buffer }> = [];
  private seen = 0;
  private tail = Buffer.alloc(0);
  private skip = 0;
  closed = false;

  constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => {});
  }

  /** Bytes from here on that are not parsed (a large frame whose content does not matter). */
  skipBytes(n: number): void {
    this.skip = this.seen + n;
  }

  private onData(d: Buffer): void {
    const start = this.seen;
    this.seen += d.length;
    if (this.seen <= this.skip) return;
    this.tail = Buffer.concat([this.tail, d.subarray(Math.max(0, this.skip - start))]);
    for (;;) {
      if (this.tail.length < 2) return;
      const len = this.tail[1]! & 0x7f;
      if (len >= 126 || this.tail.length < 2 + len) return; // only small frames are parsed here
      this.frames.push({ opcode: this.tail[0]! & 0x0f, payload: Buffer.from(this.tail.subarray(2, 2 + len)) });
      this.tail = this.tail.subarray(2 + len);
    }
  }
}

/** Connects, upgrades, and stops reading: the server's bytes pile up. */
async function nonReader(port: number): Promise<Reader> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(upgradeRequest());
  let head = '';
  while (!head.includes('\r\n\r\n')) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    head += chunk.toString('latin1');
  }
  assert.ok(head.startsWith('HTTP/1.1 101'), head);
  socket.pause();
  return new Reader(socket);
}

test('pings within the budget are all answered, in order', async () => {
  const s = await serverWithConns();
  const c = await rawWebSocket(s.port);
  c.write(Buffer.concat(['1', '2', '3', '4', '5'].map((p) => clientFrame(PING, p))));
  for (const p of ['1', '2', '3', '4', '5']) {
    const f = await c.readFrame();
    assert.equal([f.opcode, f.payload.toString()], [PONG, p]);
  }
  assert.is(serverCore(s.server).owedPongs.size, 0);
  c.destroy();
  await s.server.close();
});

test('over the budget, pings owe one pong (the latest), sent once the backlog drains; reading resumes', async () => {
  const s = await serverWithConns();
  const r = await nonReader(s.port);
  await until(() => s.conns.length === 1);
  const conn = s.conns[0]!;
  r.socket.write(clientFrame(1, 'fill'));
  await until(() => conn.bufferedAmount > 64 * 1024, 5000, 'a backlog');
  const before = conn.bufferedAmount;
  r.socket.write(Buffer.concat([clientFrame(PING, 'a'), clientFrame(PING, 'b'), clientFrame(PING, 'c')]));
  await until(() => s.pings() === 3, 5000, 'three pings');
  assert.ok(conn.bufferedAmount <= before, 'no pong was queued behind the backlog');
  const owed = serverCore(s.server).owedPongs.get(conn);
  assert.ok(owed !== undefined);
  assert.is(owed.payload.subarray(0, owed.length).toString(), 'c');
  // The peer reads: the big message, then exactly one pong, for the latest ping.
  r.skipBytes(10 + BIG);
  r.socket.resume();
  await until(() => r.frames.length >= 1, 10_000, 'the owed pong');
  assert.equal(r.frames.map((f) => [f.opcode, f.payload.toString()]), [[PONG, 'c']]);
  assert.is(serverCore(s.server).owedPongs.size, 0);
  // Reading was resumed: a message is echoed.
  r.socket.write(clientFrame(1, 'after'));
  await until(() => r.frames.length === 2, 5000, 'the echo');
  assert.equal([r.frames[1]!.opcode, r.frames[1]!.payload.toString()], [1, 'after']);
  r.socket.destroy();
  await s.server.close();
});

test('a ping flood from a client that never reads: the backlog stays under the budget, reading stops, the flooder is closed', async () => {
  const s = await serverWithConns({ limits: { closeTimeoutMs: 500, idleTimeoutMs: 1500, pingIntervalMs: 0 } });
  const r = await nonReader(s.port);
  await until(() => s.conns.length === 1);
  const conn = s.conns[0]!;
  const batch = Buffer.concat(Array.from({ length: 1000 }, () => clientFrame(PING, Buffer.alloc(125, 0x70))));
  let maxBuffered = 0;
  let stalls = 0;
  const deadline = Date.now() + 15_000;
  // Bounded: at most 200 batches (26 MB) or 15 s, until the server stops reading (our writes
  // stall three times in a row) or closes the connection.
  for (let i = 0; i < 200 && !r.closed && Date.now() < deadline && stalls < 3; i++) {
    if (!r.socket.write(batch)) {
      const drained = await Promise.race([once(r.socket, 'drain').then(() => true), delay(300).then(() => false)]);
      stalls = drained ? 0 : stalls + 1;
    }
    maxBuffered = Math.max(maxBuffered, conn.bufferedAmount);
  }
  const sent = s.pings();
  // Paused, the flooder cannot postpone its idle timeout: 1.5 s (or 1008 at once past maxOwedPings), then the close timeout.
  // The client stopped reading long ago, so the server's count says it.
  await until(() => s.server.socketCount === 0, 10_000, 'the flooder closed');
  maxBuffered = Math.max(maxBuffered, conn.bufferedAmount);
  assert.is(s.server.stats.pingFloodCloses + s.server.stats.idleTimeouts, 1);
  assert.ok(sent < 100_000, `the server read ${sent} pings of the 200,000 it could have`);
  assert.is(conn.closeCode, 1006, 'the flooder never finished the close handshake');
  // Under the budget plus the one write that crossed it (a pong, or the close frame).
  assert.ok(maxBuffered <= 16 * 1024 + 256, `backlog reached ${maxBuffered} bytes`);
  assert.is(serverCore(s.server).owedPongs.size, 0);
  r.socket.destroy();
  await s.server.close(1000);
});

test('past maxOwedPings while a pong is owed, the connection is closed with 1008', async () => {
  const s = await serverWithConns({ limits: { maxOwedPings: 5, closeTimeoutMs: 500 } });
  const r = await nonReader(s.port);
  await until(() => s.conns.length === 1);
  const conn = s.conns[0]!;
  r.socket.write(clientFrame(1, 'fill'));
  await until(() => conn.bufferedAmount > 64 * 1024, 5000, 'a backlog');
  // One write: the pings arrive together, before the pause can take effect.
  r.socket.write(Buffer.concat(Array.from({ length: 10 }, () => clientFrame(PING, 'p'))));
  await until(() => s.server.stats.pingFloodCloses === 1, 5000, 'the 1008');
  assert.is(s.pings(), 6, 'the pings up to the limit reached the handler');
  // The client is not reading, so it cannot see the close: the server's count says it.
  await until(() => s.server.socketCount === 0, 5000, 'closed after the close timeout');
  assert.is(serverCore(s.server).owedPongs.size, 0);
  r.socket.destroy();
  await s.server.close(1000);
});

test('pings do not postpone the idle timeout', async () => {
  const s = await serverWithConns({ limits: { idleTimeoutMs: 400, pingIntervalMs: 0 } });
  const c = await rawWebSocket(s.port);
  const started = Date.now();
  // Bounded: one ping every 50 ms for at most 5 s.
  for (let i = 0; i < 100 && !c.closed; i++) {
    c.write(clientFrame(PING, 'x'));
    await delay(50);
  }
  let code = 0;
  while (code !== 8) {
    const f = await c.readFrame(1000);
    code = f.opcode;
    if (code === 8) assert.is(f.payload.readUInt16BE(0), 1001);
  }
  // 400 ms plus the sweep's period and a loaded machine's slack; pinging for 5 s never ends it on time.
  assert.ok(Date.now() - started < 4000, `closed after ${Date.now() - started} ms`);
  assert.is(s.server.stats.idleTimeouts, 1);
  c.destroy();
  await s.server.close();
});

test('a client that only pings gets one heartbeat ping, not one per sweep: its pings do not answer ours', async () => {
  const s = await serverWithConns({ limits: { idleTimeoutMs: 1500, pingIntervalMs: 200 } });
  const c = await rawWebSocket(s.port);
  let heartbeats = 0;
  let closed = false;
  // Bounded: one ping every 50 ms for at most 6 s; pongs and the server's pings are read as they come.
  const reading = (async () => {
    for (;;) {
      const f = await c.readFrame(6000);
      if (f.opcode === PING) heartbeats++;
      if (f.opcode === 8) return;
    }
  })().finally(() => (closed = true));
  for (let i = 0; i < 120 && !closed; i++) {
    c.write(clientFrame(PING, 'x'));
    await delay(50);
  }
  await reading;
  assert.is(heartbeats, 1);
  assert.is(s.server.stats.idleTimeouts, 1);
  c.destroy();
  await s.server.close();
});

test('messages and pongs still postpone the idle timeout, with pings in the same chunk', async () => {
  const s = await serverWithConns({ limits: { idleTimeoutMs: 600, pingIntervalMs: 0 } });
  const c = await rawWebSocket(s.port);
  // Bounded: 30 rounds of 50 ms (1.5 s, well past the 600 ms timeout).
  for (let i = 0; i < 30; i++) {
    c.write(Buffer.concat([clientFrame(1, 'm'), clientFrame(PING, 'x')]));
    await delay(50);
  }
  assert.is(s.server.stats.idleTimeouts, 0);
  assert.is(s.conns[0]!.isOpen, true);
  c.destroy();
  await s.server.close();
});

test.run();
