import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { createServer, connect } from 'node:net';
import type { Server as NetServer, Socket } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { leanTransport, LEAN_HIGH_WATER_MARK } from '../../src/transport/lean-transport.js';
import { leanTransportAvailable, verifyLeanTransport, adoptLeanConnections } from '../../src/transport/lean-support.js';
import type { LeanHandle } from '../../src/transport/lean-support.js';
import type { TransportSink } from '../../src/transport/transport.js';
import { delay, until } from '../helpers/net.js';

// LeanTransport over real loopback sockets, with node:net clients as peers. Raw bytes only:
// the WebSocket layers above do not take part.

let uncaught: unknown = null;
process.on('uncaughtException', (e) => {
  uncaught = e;
});

/** The stateless lean transport bound to one sink, so the tests read as calls on one object. */
class Driven {
  constructor(private readonly s: TransportSink) {}
  get kind(): string {
    return leanTransport.kind;
  }
  get handle(): unknown {
    return this.s.io;
  }
  get bufferedBytes(): number {
    return leanTransport.bufferedBytes(this.s);
  }
  get destroyed(): boolean {
    return leanTransport.destroyed(this.s);
  }
  remoteAddress(): string | undefined {
    return leanTransport.remoteAddress(this.s);
  }
  attach(): void {
    leanTransport.attach(this.s);
  }
  write(data: Buffer): boolean {
    return leanTransport.write(this.s, data);
  }
  cork(): void {
    leanTransport.cork(this.s);
  }
  uncork(): void {
    leanTransport.uncork(this.s);
  }
  pause(): void {
    leanTransport.pause(this.s);
  }
  resume(): void {
    leanTransport.resume(this.s);
  }
  end(): void {
    leanTransport.end(this.s);
  }
  destroy(): void {
    leanTransport.destroy(this.s);
  }
}

/** A server-side sink: echoes (with backpressure) or collects, and counts every event. */
class Sink implements TransportSink {
  io: unknown;
  flags = 0;
  readonly t: Driven;
  echo: boolean;
  autoEnd: boolean;
  chunks: Buffer[] = [];
  bytes = 0;
  drains = 0;
  ends = 0;
  closes = 0;
  hadError: boolean | null = null;
  waitingDrain = false;

  constructor(handle: LeanHandle, echo: boolean, autoEnd: boolean) {
    this.io = handle;
    this.t = new Driven(this);
    this.echo = echo;
    this.autoEnd = autoEnd;
  }

  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }

  onTransportData(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (!this.echo) {
      this.chunks.push(chunk);
      return;
    }
    if (!this.t.write(chunk) && !this.waitingDrain) {
      this.waitingDrain = true;
      this.t.pause();
    }
  }

  onTransportDrain(): void {
    this.drains++;
    if (this.waitingDrain) {
      this.waitingDrain = false;
      this.t.resume();
    }
  }

  onTransportEnd(): void {
    this.ends++;
    if (this.autoEnd) this.t.end();
  }

  onTransportClose(hadError: boolean): void {
    this.closes++;
    this.hadError = hadError;
  }
}

interface LeanServer {
  server: NetServer;
  port: number;
  sinks: Sink[];
  next(): Promise<Sink>;
  close(): Promise<void>;
}

async function leanServer(opts: { echo?: boolean; autoEnd?: boolean; paused?: boolean } = {}): Promise<LeanServer> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sinks: Sink[] = [];
  let waiters: Array<(s: Sink) => void> = [];
  const ok = adoptLeanConnections(server, (handle) => {
    const s = new Sink(handle, opts.echo ?? true, opts.autoEnd ?? true);
    if (opts.paused) s.t.pause();
    s.t.attach();
    sinks.push(s);
    const w = waiters;
    waiters = [];
    for (const f of w) f(s);
  });
  assert.ok(ok, 'adoptLeanConnections');
  const port = (server.address() as { port: number }).port;
  return {
    server,
    port,
    sinks,
    next: () => new Promise<Sink>((resolve) => waiters.push(resolve)),
    async close() {
      for (const s of sinks) s.t.destroy();
      await until(() => sinks.every((s) => s.closes === 1), 5000, 'server-side closes');
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function client(port: number, allowHalfOpen = false): Promise<Socket> {
  const c = connect({ port, host: '127.0.0.1', allowHalfOpen });
  c.on('error', () => {});
  await once(c, 'connect');
  return c;
}

function collect(c: Socket): { bytes: () => number; data: () => Buffer; ended: () => boolean; closed: Promise<unknown> } {
  const closed = once(c, 'close');
  const chunks: Buffer[] = [];
  let n = 0;
  let ended = false;
  c.on('data', (d: Buffer) => {
    chunks.push(d);
    n += d.length;
  });
  c.on('end', () => (ended = true));
  return { bytes: () => n, data: () => Buffer.concat(chunks), ended: () => ended, closed };
}

/** TCP handles and stream requests alive in the process, by kind (stdio and timers excluded). */
function resources(): string {
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) {
    if (!/^(TCP|WriteWrap|ShutdownWrap)/.test(r)) continue;
    counts.set(r, (counts.get(r) ?? 0) + 1);
  }
  return [...counts].sort().map(([k, v]) => `${k}=${v}`).join(' ');
}

/** A test that must leave no handle, request or uncaught error behind. */
function clean(name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    const before = resources();
    await fn();
    try {
      await until(() => resources() === before, 3000, 'resources to return to their state before');
    } catch {
      assert.is(resources(), before, 'no leaked handles');
    }
    if (uncaught !== null) {
      const e = uncaught;
      uncaught = null;
      throw e;
    }
  });
}

/** Writes `chunk` until write() says the kernel stopped taking bytes; returns the bytes written. */
function fill(t: Driven, chunk: Buffer, maxChunks = 256): number {
  let sent = 0;
  for (let i = 0; i < maxChunks; i++) {
    const ok = t.write(chunk);
    sent += chunk.length;
    if (!ok) return sent;
  }
  throw new Error('the kernel never pushed back');
}

// ------------------------------------------------------------------------------------------

clean('the self-checks pass on this Node, and adoption refuses what it cannot take', async () => {
  assert.equal(leanTransportAvailable(), { ok: true });
  assert.equal(await verifyLeanTransport(), { ok: true });
  assert.equal(leanTransportAvailable(), { ok: true });
  assert.not.ok(adoptLeanConnections(createServer(), () => {}), 'a server that is not listening');
  const http = createHttpServer();
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  assert.not.ok(adoptLeanConnections(http, () => {}), 'an http.Server keeps its sockets');
  await new Promise<void>((r) => http.close(() => r()));
});

clean("an adopted handle gains no property: the connection and corked bytes sit in node's own slots", async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  let before: Array<string | symbol> = [];
  let after: Array<string | symbol> = [];
  let sink: Sink | null = null;
  adoptLeanConnections(server, (h) => {
    before = Reflect.ownKeys(h);
    const s = new Sink(h, false, true);
    s.t.attach();
    s.t.cork();
    s.t.write(Buffer.from('corked'));
    after = Reflect.ownKeys(h);
    s.t.uncork();
    sink = s;
  });
  const c = await client((server.address() as { port: number }).port);
  try {
    const got = collect(c);
    await until(() => got.bytes() === 6, 2000, 'the corked bytes');
    // A new property would give every handle a bigger property array (and, with a symbol of
    // our own, about 24 bytes more per idle connection).
    assert.equal(after, before);
  } finally {
    c.end();
    await until(() => sink !== null && sink.closes === 1, 2000, 'close');
    await new Promise<void>((r) => server.close(() => r()));
  }
});

clean('echoes many small writes, in order', async () => {
  const srv = await leanServer();
  const c = await client(srv.port);
  const got = collect(c);
  const parts: Buffer[] = [];
  for (let i = 0; i < 1000; i++) parts.push(Buffer.from(`<${i}:${'x'.repeat(i % 300)}>`));
  const want = Buffer.concat(parts);
  for (const p of parts) c.write(p);
  await until(() => got.bytes() >= want.length, 5000, 'echo');
  assert.ok(got.data().equals(want), 'same bytes, same order');
  const s = srv.sinks[0]!;
  assert.is(s.t.kind, 'lean');
  assert.is(s.t.remoteAddress(), '127.0.0.1');
  assert.is(s.t.bufferedBytes, 0);
  c.end();
  await once(c, 'close');
  await until(() => s.closes === 1, 2000, 'server close');
  assert.is(s.ends, 1);
  assert.is(s.hadError, false);
  await srv.close();
});

clean('echoes 16 MiB with no lost or reordered bytes', async () => {
  const srv = await leanServer();
  const c = await client(srv.port);
  const got = collect(c);
  const big = randomBytes(16 * 1024 * 1024);
  c.write(big);
  await until(() => got.bytes() >= big.length, 20000, '16 MiB echo');
  assert.is(got.bytes(), big.length);
  assert.ok(got.data().equals(big), 'identical');
  const s = srv.sinks[0]!;
  assert.is(s.bytes, big.length);
  assert.is(s.t.bufferedBytes, 0);
  c.end();
  await once(c, 'close');
  await srv.close();
});

clean('a client that stops reading: bufferedBytes grows, drain fires once it reads again', async () => {
  const srv = await leanServer({ echo: false });
  const accepted = srv.next();
  const c = await client(srv.port);
  c.pause();
  const s = await accepted;
  const chunk = Buffer.alloc(256 * 1024);
  const parts: Buffer[] = [];
  let sent = 0;
  for (let i = 0; i < 400; i++) {
    const b = Buffer.from(chunk.fill(i & 0xff));
    parts.push(b);
    sent += b.length;
    if (!s.t.write(b)) break;
  }
  assert.ok(s.t.bufferedBytes >= LEAN_HIGH_WATER_MARK, `bufferedBytes ${s.t.bufferedBytes}`);
  assert.ok(s.t.bufferedBytes <= sent);
  await delay(200);
  assert.is(s.drains, 0, 'no drain while the peer does not read');
  assert.ok(s.t.bufferedBytes > 0);
  const got = collect(c);
  c.resume();
  await until(() => s.drains === 1, 5000, 'drain');
  assert.is(s.t.bufferedBytes, 0);
  await until(() => got.bytes() === sent, 5000, 'all bytes at the client');
  assert.ok(got.data().equals(Buffer.concat(parts)), 'in order');
  assert.ok(s.t.write(Buffer.from('more')), 'a small write after the drain is taken at once');
  await delay(20);
  assert.is(s.drains, 1, 'no drain for a write that returned true');
  c.destroy();
  await srv.close();
});

/** Counts the handle's writev and writeBuffer calls from now on. */
function countWrites(handle: unknown): { writev: number; writeBuffer: number } {
  const h = handle as Record<string, (...a: unknown[]) => number>;
  const calls = { writev: 0, writeBuffer: 0 };
  for (const m of ['writev', 'writeBuffer'] as const) {
    const orig = h[m]!;
    h[m] = function (this: unknown, ...a: unknown[]) {
      calls[m]++;
      return orig.apply(this, a);
    };
  }
  return calls;
}

/** A lean server without echo, one client, and the count of the accepted handle's writes. */
async function writeCounted() {
  const srv = await leanServer({ echo: false });
  const accepted = srv.next();
  const c = await client(srv.port);
  const got = collect(c);
  const s = await accepted;
  return { srv, c, got, s, calls: countWrites(s.t.handle) };
}

clean('cork gathers a tick of writes into one write: small ones copied into one buffer, large ones by writev', async () => {
  const { srv, c, got, s, calls } = await writeCounted();
  const parts: Buffer[] = [];
  s.t.cork();
  s.t.cork(); // does not nest: one uncork() sends
  for (let i = 0; i < 50; i++) {
    const p = Buffer.from(`frame ${i};`);
    parts.push(p);
    assert.ok(s.t.write(p));
  }
  assert.is(calls.writev + calls.writeBuffer, 0, 'still corked');
  assert.is(s.t.bufferedBytes, Buffer.concat(parts).length, 'corked bytes count as buffered');
  s.t.uncork();
  assert.equal(calls, { writev: 0, writeBuffer: 1 }, 'a tick of small frames goes out as one buffer');
  s.t.uncork();
  assert.equal(calls, { writev: 0, writeBuffer: 1 }, 'a second uncork() sends nothing');
  assert.is(s.t.bufferedBytes, 0);
  s.t.cork();
  s.t.write(Buffer.from('single'));
  s.t.uncork();
  assert.equal(calls, { writev: 0, writeBuffer: 2 });
  const big = [Buffer.alloc(10_000, 0x61), Buffer.alloc(10_000, 0x62)];
  s.t.cork();
  for (const b of big) s.t.write(b);
  s.t.uncork();
  assert.equal(calls, { writev: 1, writeBuffer: 2 }, 'over 16 KiB: one writev, no copy');
  const want = Buffer.concat([...parts, Buffer.from('single'), ...big]);
  await until(() => got.bytes() === want.length, 2000, 'client bytes');
  assert.ok(got.data().equals(want));
  c.destroy();
  await srv.close();
});

clean('a corked pair of writes (a handshake: the 101, then the first message) goes out by writev, not copied into a new buffer', async () => {
  const { srv, c, got, s, calls } = await writeCounted();
  const concat = Buffer.concat;
  let copies = 0;
  Buffer.concat = (...a: Parameters<typeof Buffer.concat>) => {
    copies++;
    return concat(...a);
  };
  try {
    const pair = [Buffer.from('HTTP/1.1 101 Switching Protocols\r\n\r\n'), Buffer.from('\x81\x07welcome')];
    s.t.cork();
    for (const b of pair) s.t.write(b);
    s.t.uncork();
    assert.equal(calls, { writev: 1, writeBuffer: 0 }, 'one writev');
    assert.is(copies, 0, 'no copy');
    const three = [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')];
    s.t.cork();
    for (const b of three) s.t.write(b);
    s.t.uncork();
    assert.equal(calls, { writev: 1, writeBuffer: 1 }, 'three small pieces: one buffer');
    assert.is(copies, 1);
    const want = concat([...pair, ...three]);
    await until(() => got.bytes() === want.length, 2000, 'client bytes');
    assert.ok(got.data().equals(want));
  } finally {
    Buffer.concat = concat;
    c.destroy();
    await srv.close();
  }
});

clean('a corked batch of 3,000 buffers (more than IOV_MAX) goes out intact behind a full socket', async () => {
  const srv = await leanServer({ echo: false });
  const accepted = srv.next();
  const c = await client(srv.port);
  c.pause();
  const s = await accepted;
  const head = fill(s.t, Buffer.alloc(256 * 1024, 0x2e));
  const parts: Buffer[] = [];
  s.t.cork();
  for (let i = 0; i < 3000; i++) {
    const p = Buffer.from(`[${i}]`);
    parts.push(p);
    s.t.write(p);
  }
  s.t.uncork();
  const tail = Buffer.concat(parts);
  assert.ok(s.t.bufferedBytes >= tail.length, 'queued behind the full socket');
  const got = collect(c);
  c.resume();
  await until(() => got.bytes() === head + tail.length, 5000, 'every byte');
  assert.ok(got.data().subarray(head).equals(tail), 'in order');
  await until(() => s.drains === 1, 2000, 'drain');
  assert.is(s.t.bufferedBytes, 0);
  c.destroy();
  await srv.close();
});

clean('pause and resume reading', async () => {
  const srv = await leanServer({ echo: false, paused: true });
  const accepted = srv.next();
  const c = await client(srv.port);
  const s = await accepted;
  const closed = once(c, 'close');
  c.write('abc');
  await delay(150);
  assert.is(s.bytes, 0, 'paused before attach: nothing read');
  s.t.resume();
  await until(() => s.bytes === 3, 2000, 'bytes after resume');
  s.t.pause();
  c.write('defg');
  await delay(150);
  assert.is(s.bytes, 3, 'paused again');
  c.end();
  await delay(100);
  assert.is(s.ends, 0, 'no EOF while paused');
  s.t.resume();
  await until(() => s.ends === 1, 2000, 'EOF after resume');
  assert.is(s.data.toString(), 'abcdefg');
  await until(() => s.closes === 1, 2000, 'close');
  await closed;
  await srv.close();
});

clean('peer reset mid-write: onTransportClose once, no crash', async () => {
  const srv = await leanServer({ echo: false });
  const accepted = srv.next();
  const c = await client(srv.port);
  c.pause();
  const s = await accepted;
  fill(s.t, Buffer.alloc(1024 * 1024, 7));
  assert.ok(s.t.bufferedBytes > 0, 'bytes queued');
  c.resetAndDestroy();
  await until(() => s.closes === 1, 5000, 'close after reset');
  assert.is(s.hadError, true);
  assert.ok(s.t.destroyed);
  assert.is(s.t.bufferedBytes, 0);
  assert.not.ok(s.t.write(Buffer.from('x')), 'write after the reset is dropped');
  s.t.end();
  s.t.destroy();
  await delay(100);
  assert.is(s.closes, 1, 'exactly once');
  assert.is(s.drains, 0);
  await srv.close();
});

clean('peer half-close: onTransportEnd, writes still arrive, end() completes the close', async () => {
  const srv = await leanServer({ echo: false, autoEnd: false });
  const accepted = srv.next();
  const c = await client(srv.port, true);
  const got = collect(c);
  const s = await accepted;
  c.write('last words');
  c.end();
  await until(() => s.ends === 1, 2000, 'onTransportEnd');
  assert.is(s.data.toString(), 'last words');
  assert.is(s.closes, 0, 'half-open: still alive');
  assert.ok(s.t.write(Buffer.from('reply after your FIN')));
  s.t.end();
  await until(() => got.ended(), 2000, 'client end');
  assert.is(got.data().toString(), 'reply after your FIN');
  await until(() => s.closes === 1, 2000, 'close');
  assert.is(s.hadError, false);
  assert.is(s.ends, 1);
  await got.closed;
  await srv.close();
});

clean('end() sends every queued byte before the FIN', async () => {
  const srv = await leanServer({ echo: false });
  const accepted = srv.next();
  const c = await client(srv.port);
  c.pause();
  const s = await accepted;
  const sent = fill(s.t, Buffer.alloc(512 * 1024, 3));
  s.t.cork();
  s.t.write(Buffer.from('tail'));
  s.t.end(); // uncorks, then half-closes behind the queue
  assert.not.ok(s.t.write(Buffer.from('too late')), 'write after end is dropped');
  const got = collect(c);
  c.resume();
  await until(() => got.ended(), 5000, 'client end');
  assert.is(got.bytes(), sent + 4);
  assert.is(got.data().subarray(-4).toString(), 'tail');
  c.end();
  await until(() => s.closes === 1, 2000, 'close');
  assert.is(s.hadError, false);
  await srv.close();
});

clean('write after the peer closed does not throw', async () => {
  const srv = await leanServer({ echo: false, paused: true }); // paused: the EOF goes unnoticed
  const accepted = srv.next();
  const c = await client(srv.port);
  const s = await accepted;
  c.destroy();
  await once(c, 'close');
  await delay(50);
  const results: boolean[] = [];
  for (let i = 0; i < 20 && !s.t.destroyed; i++) {
    results.push(s.t.write(Buffer.alloc(64 * 1024, 1)));
    await delay(10);
  }
  await until(() => s.closes === 1, 3000, 'close after EPIPE/ECONNRESET');
  assert.is(s.hadError, true);
  assert.not.ok(s.t.write(Buffer.from('x')));
  s.t.resume();
  s.t.pause();
  s.t.end();
  s.t.destroy();
  await delay(50);
  assert.is(s.closes, 1);
  await srv.close();
});

clean('destroy() before attach still reports the close, once', async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  let sink: Sink | null = null;
  adoptLeanConnections(server, (h) => {
    sink = new Sink(h, false, false);
    sink.t.destroy();
  });
  const c = await client((server.address() as { port: number }).port);
  const closed = once(c, 'close');
  await until(() => sink !== null, 2000, 'accept');
  await closed;
  await delay(20);
  const s: Sink = sink!;
  assert.is(s.closes, 0, 'nothing reported before attach');
  s.t.attach();
  await until(() => s.closes === 1, 1000, 'late close');
  await delay(20);
  assert.is(s.closes, 1);
  assert.is(s.hadError, false);
  await new Promise<void>((r) => server.close(() => r()));
});

async function openMany(port: number, n: number): Promise<Socket[]> {
  const out: Socket[] = [];
  for (let i = 0; i < n; i += 200) {
    const batch: Promise<Socket>[] = [];
    for (let j = i; j < Math.min(n, i + 200); j++) batch.push(client(port));
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

/** TCP_NODELAY of a descriptor of this process, read by python3 on a copy of it (node has no getsockopt). */
function noDelayOf(fd: number): number {
  const r = spawnSync('python3', ['-c', 'import socket; s = socket.socket(fileno=3); print(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)); s.detach()'], {
    stdio: ['ignore', 'pipe', 'pipe', fd],
    encoding: 'utf8',
  });
  if (r.error !== undefined || r.status !== 0) throw new Error(`python3 is needed to read TCP_NODELAY (${r.error?.message ?? r.stderr})`);
  return Number(r.stdout.trim());
}

clean('accepted sockets never wait for Nagle: TCP_NODELAY set on each (inherited from the listener on Linux)', async () => {
  const srv = await leanServer();
  const c = await client(srv.port);
  try {
    await until(() => srv.sinks.length === 1, 5000, 'accepted');
    const fd = (srv.sinks[0]!.io as unknown as { fd: number }).fd;
    assert.ok(fd > 0, 'the handle has a descriptor');
    assert.is(noDelayOf(fd), 1, 'TCP_NODELAY on the accepted socket');
    if (process.platform === 'linux') {
      const listening = (srv.server as unknown as { _handle: { fd: number } })._handle.fd;
      assert.is(noDelayOf(listening), 1, 'set once on the listening socket');
    }
  } finally {
    c.destroy();
    await srv.close();
  }
});

clean('2,000 connections closed at once by their peers: every close reported', async () => {
  const srv = await leanServer();
  const clients = await openMany(srv.port, 2000);
  await until(() => srv.sinks.length === 2000, 5000, 'all accepted');
  for (const c of clients) c.write('hi');
  await until(() => srv.sinks.every((s) => s.bytes === 2), 5000, 'every hello read');
  const closed = Promise.all(clients.map((c) => once(c, 'close')));
  for (const c of clients) c.destroy();
  await closed;
  await until(() => srv.sinks.every((s) => s.closes === 1), 10000, 'every server-side close');
  assert.ok(srv.sinks.every((s) => s.ends === 1 && s.hadError === false));
  await srv.close();
});

clean('2,000 connections destroyed at once by the server: every close reported', async () => {
  const srv = await leanServer();
  const clients = await openMany(srv.port, 2000);
  await until(() => srv.sinks.length === 2000, 5000, 'all accepted');
  const closed = Promise.all(clients.map((c) => once(c, 'close')));
  for (const s of srv.sinks) s.t.destroy();
  await until(() => srv.sinks.every((s) => s.closes === 1), 10000, 'every close');
  assert.ok(srv.sinks.every((s) => s.hadError === false));
  await closed;
  await srv.close();
});

test.run();
