import { Buffer } from 'node:buffer';
import { Server as NetServer, createServer, connect } from 'node:net';
import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { leanBindings, leanBindingsFailure } from './lean-binding.js';
import type { LeanHandle } from './lean-binding.js';
import { leanTransport, LEAN_HIGH_WATER_MARK } from './lean-transport.js';
import type { TransportSink } from './transport.js';

export type { LeanHandle } from './lean-binding.js';

export type LeanAvailability = { ok: true } | { ok: false; reason: string };

/**
 * Start-up checks for the lean transport, and the hook that hands accepted TCP handles to it.
 *
 * leanTransportAvailable() is synchronous and cheap: the internals exist, have the expected
 * shape and behave on a handle that is never connected. verifyLeanTransport() is the live
 * check: a loopback listener adopted with adoptLeanConnections, a node:net client, bytes both
 * ways through the real lean transport (a partial write that waits for the kernel, a drain, a
 * corked writev, EOF, half-close, close). Both run once and are cached; a failed live check
 * also turns leanTransportAvailable() to false, so call it before the first listen.
 */

let staticResult: LeanAvailability | null = null;
let liveResult: LeanAvailability | null = null;
let livePromise: Promise<LeanAvailability> | null = null;

/** Whether the lean transport can be used in this process (cached). */
export function leanTransportAvailable(): LeanAvailability {
  if (liveResult !== null && !liveResult.ok) return liveResult;
  if (staticResult === null) staticResult = staticCheck();
  return staticResult;
}

/** Runs the live loopback self-check once (later calls share the result). */
export function verifyLeanTransport(timeoutMs = 5000): Promise<LeanAvailability> {
  if (livePromise === null) {
    livePromise = liveCheck(timeoutMs).then((r) => {
      liveResult = r;
      return r;
    });
  }
  return livePromise;
}

/**
 * After `server.listen(...)` has bound (in its callback or on 'listening'), makes every
 * connection it accepts arrive as a raw TCP handle in onHandle instead of a net.Socket.
 * onHandle must take it: put it in a TransportSink's `io` slot, then `leanTransport.attach`
 * or `leanTransport.destroy` that sink. Only for a plain
 * net.Server (not tls or http, whose sockets must be net.Sockets). Returns false, leaving the
 * server untouched, when the lean transport is unavailable or the server is not listening.
 *
 * What net.Server no longer sees: adopted connections are not counted in getConnections(),
 * maxConnections is not applied, and close() does not wait for them (the caller tracks them).
 */
export function adoptLeanConnections(server: NetServer, onHandle: (handle: LeanHandle) => void): boolean {
  if (!leanTransportAvailable().ok) return false;
  if (Object.getPrototypeOf(server) !== NetServer.prototype) return false;
  const listening = (server as unknown as { _handle?: { onconnection?: unknown; setNoDelay?: unknown } | null })._handle;
  if (listening === null || listening === undefined || typeof listening.onconnection !== 'function') return false;
  // Linux copies TCP_NODELAY from a listening socket to each socket it accepts: set once here,
  // it saves a setsockopt per connection. Where the listener is not ours to set (the cluster
  // module's stand-in in a round-robin worker) or the system may not copy it, each handle gets it.
  const inherited = process.platform === 'linux' && typeof listening.setNoDelay === 'function' && (listening as unknown as LeanHandle).setNoDelay(true) === 0;
  // One function per server, not per connection. `this` is the listening handle (or the
  // cluster module's stand-in for it in a round-robin worker): not needed.
  listening.onconnection = function leanOnConnection(err: number, clientHandle: LeanHandle | undefined): void {
    if (err !== 0 || clientHandle === undefined) {
      // What node:net does with an accept error (EMFILE, ...): the server's 'error' event.
      const name = err !== 0 ? getSystemErrorName(err) : 'EINVAL';
      const e = Object.assign(new Error(`accept ${name}`), { errno: err, code: name, syscall: 'accept' });
      server.emit('error', e);
      return;
    }
    if (!inherited) clientHandle.setNoDelay(true);
    onHandle(clientHandle);
  };
  return true;
}

// ---- the static check ---------------------------------------------------------------------

function staticCheck(): LeanAvailability {
  if (process.platform === 'win32') return { ok: false, reason: 'not supported on Windows (untested libuv paths)' };
  const b = leanBindings();
  if (b === null) return { ok: false, reason: leanBindingsFailure() ?? 'bindings unavailable' };
  let handle: LeanHandle | null = null;
  try {
    handle = new b.TCP(b.tcpConstants.SOCKET);
    const fn = function probe(): void {};
    handle.onread = fn;
    if (handle.onread !== fn) return { ok: false, reason: 'TCP handle onread accessor does not keep a function' };
    if (handle.writeQueueSize !== 0) return { ok: false, reason: 'TCP handle writeQueueSize is not 0 on a new handle' };
    const out = {};
    const err = handle.getpeername(out);
    if (typeof err !== 'number' || err >= 0) return { ok: false, reason: 'getpeername on an unconnected handle did not fail' };
    const w = new b.WriteWrap();
    const s = new b.ShutdownWrap();
    if (typeof w !== 'object' || typeof s !== 'object') return { ok: false, reason: 'WriteWrap/ShutdownWrap are not constructible' };
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: `static check threw: ${e instanceof Error ? e.message : String(e)}` };
  } finally {
    try {
      handle?.close();
    } catch {
      // nothing to undo
    }
  }
}

// ---- the live check -----------------------------------------------------------------------

const HELLO = 'murmur lean transport self-check';
const CHUNK = 64 * 1024;
const MAX_CHUNKS = 1024;

class CheckSink implements TransportSink {
  io: unknown;
  flags = 0;
  received = '';
  drains = 0;
  ends = 0;
  closes = 0;
  hadError = false;
  sent = 0;
  wentAsync = false;
  sawFalse = false;
  step: (what: string) => void;
  fail: (why: string) => void;
  chunk: Buffer;

  constructor(handle: LeanHandle, chunk: Buffer, step: (what: string) => void, fail: (why: string) => void) {
    this.io = handle;
    this.chunk = chunk;
    this.step = step;
    this.fail = fail;
  }

  onTransportData(chunk: Buffer): void {
    if (!Buffer.isBuffer(chunk)) return this.fail('a read did not arrive as a Buffer');
    this.received += chunk.toString('latin1');
    if (this.received.length < HELLO.length) return;
    if (this.received !== HELLO) return this.fail('read bytes differ from what the client sent');
    const t = leanTransport;
    const peer = t.remoteAddress(this);
    if (peer !== '127.0.0.1') return this.fail(`remoteAddress() is ${String(peer)}`);
    // The client does not read yet: write until the kernel stops taking bytes.
    for (let i = 0; i < MAX_CHUNKS; i++) {
      const ok = t.write(this, this.chunk);
      this.sent += this.chunk.length;
      if (t.bufferedBytes(this) > 0) this.wentAsync = true;
      if (!ok) {
        this.sawFalse = true;
        break;
      }
    }
    if (!this.wentAsync || !this.sawFalse) return this.fail('the kernel never queued a write');
    if (t.bufferedBytes(this) < LEAN_HIGH_WATER_MARK) return this.fail(`bufferedBytes ${t.bufferedBytes(this)} after write() returned false`);
    // Corked writes behind the queued ones: one buffer, in order.
    t.cork(this);
    t.write(this, Buffer.from('<'));
    t.write(this, Buffer.from('>'));
    t.uncork(this);
    this.sent += 2;
    this.step('written');
  }

  onTransportDrain(): void {
    this.drains++;
    const buffered = leanTransport.bufferedBytes(this);
    if (buffered !== 0) return this.fail(`drain with ${buffered} bytes buffered`);
    leanTransport.end(this);
  }

  onTransportEnd(): void {
    this.ends++;
  }

  onTransportClose(hadError: boolean): void {
    this.closes++;
    this.hadError = hadError;
    this.step('closed');
  }
}

function liveCheck(timeoutMs: number): Promise<LeanAvailability> {
  const pre = leanTransportAvailable();
  if (!pre.ok) return Promise.resolve(pre);
  return new Promise<LeanAvailability>((resolve) => {
    let stage = 'listen';
    let done = false;
    let server: NetServer | null = null;
    let client: Socket | null = null;
    let sink: CheckSink | null = null;
    let clientBytes = 0;
    let clientTail = '';
    let clientEnded = false;
    let adopted = 0;
    const pattern = Buffer.allocUnsafe(251);
    for (let i = 0; i < 251; i++) pattern[i] = i;
    const chunk = Buffer.allocUnsafe(CHUNK).fill(pattern); // byte i is i % 251

    const finish = (r: LeanAvailability): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      client?.destroy();
      if (sink !== null) leanTransport.destroy(sink);
      if (server !== null) server.close(() => resolve(r));
      else resolve(r);
    };
    const fail = (why: string): void => finish({ ok: false, reason: `live check (${stage}): ${why}` });
    const timer = setTimeout(() => fail('timed out'), timeoutMs);

    const settle = (): void => {
      if (sink === null || sink.closes === 0 || !clientEnded) return;
      if (sink.closes !== 1) return fail('onTransportClose more than once');
      if (sink.hadError) return fail('closed with an error');
      if (sink.ends !== 1) return fail('peer EOF not reported exactly once (UV_EOF differs?)');
      if (sink.drains !== 1) return fail(`drain reported ${sink.drains} times`);
      if (clientBytes !== sink.sent) return fail(`client got ${clientBytes} of ${sink.sent} bytes`);
      if (!clientTail.endsWith('<>')) return fail('corked bytes missing or out of order');
      stage = 'done';
      // A closed handle must not leave its callbacks behind: let a tick pass, then report.
      setImmediate(() => finish({ ok: true }));
    };

    const step = (what: string): void => {
      if (done) return;
      if (what === 'written') {
        stage = 'drain';
        client!.resume();
      } else if (what === 'closed') {
        stage = 'close';
        settle();
      }
    };

    try {
      server = createServer();
      server.on('error', (e) => fail(e.message));
      // exclusive: in a cluster worker a shared port-0 listener would hand our own check
      // connection to another worker's check.
      server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
        if (done) return;
        stage = 'adopt';
        const ok = adoptLeanConnections(server!, (handle) => {
          adopted++;
          const s = new CheckSink(handle, chunk, step, fail);
          if (adopted > 1 || done) {
            leanTransport.destroy(s);
            return;
          }
          sink = s;
          leanTransport.attach(s);
          stage = 'read';
        });
        if (!ok) return fail('adoptLeanConnections refused a listening net.Server');
        const port = (server!.address() as { port: number }).port;
        stage = 'connect';
        // The client reads into one buffer of its own (net's onread option): moving a few
        // megabytes through the check allocates nothing per read on either side.
        const c = connect({
          port,
          host: '127.0.0.1',
          onread: {
            buffer: Buffer.allocUnsafe(64 * 1024),
            callback: (n: number, d: Uint8Array): boolean => {
              // The bulk is the pattern chunk repeated (sampled here); the last two bytes are the corked ones.
              const bulk = (sink?.sent ?? 0) - 2;
              // First and last byte of every read: no hot loop (an optimizing compile would
              // cost the process megabytes of RSS for a start-up check).
              for (const i of [0, n - 1]) {
                const pos = clientBytes + i;
                if (pos < bulk && d[i] !== (pos % CHUNK) % 251) {
                  fail(`client byte ${pos} is wrong`);
                  return false;
                }
              }
              clientBytes += n;
              clientTail = (clientTail + Buffer.from(d.buffer, d.byteOffset + Math.max(0, n - 2), Math.min(n, 2)).toString('latin1')).slice(-2);
              return true;
            },
          },
        });
        c.pause(); // no reading until the server has filled the kernel's buffers
        client = c;
        c.on('error', (e) => fail(`client: ${e.message}`));
        c.on('connect', () => {
          c.write(HELLO);
        });
        c.on('end', () => {
          stage = 'eof';
          clientEnded = true;
          c.end(); // half-close back: the server sees EOF, its shutdown is done, it closes
          settle();
        });
      });
    } catch (e) {
      fail(e instanceof Error ? e.message : String(e));
    }
  });
}
