import { constants as osConstants } from 'node:os';
import type { Transport, TransportSink } from './transport.js';
import { leanBindings, leanBindingsFailure, kLeanOwner, UV_EOF } from './lean-binding.js';
import type { LeanBindings, LeanHandle, WriteReq, ShutdownReq } from './lean-binding.js';

/**
 * The lean transport: drives the TCP handle node:net accepted (a TCPWrap) directly, with no
 * net.Socket, no stream machinery and no closure per connection. What an idle connection
 * costs in JS is the handle's object and this one: eight fields, no buffer, no timer.
 *
 * - Reads: readStart() with a module-level onread (`this` is the handle, the transport hangs
 *   off the handle under a symbol). Each chunk is the ArrayBuffer libuv filled, shrunk to the
 *   bytes read; the only allocation per read is the Buffer view over it.
 * - Writes go straight to the handle (uv_try_write first, inside writeBuffer/writev). When the
 *   kernel takes everything, nothing is queued and the request object is reused. Otherwise
 *   libuv queues the rest in order; the request keeps the bytes alive until its oncomplete,
 *   and bufferedBytes is the live libuv write queue plus what is corked.
 * - cork()/uncork() gather a tick's buffers into one writev.
 * - write() returns false once bufferedBytes reaches 16 KiB (net.Socket's high-water mark);
 *   onTransportDrain follows when everything queued has reached the kernel.
 * - end() flushes, then half-closes through a ShutdownWrap queued behind the pending writes;
 *   the handle closes once both directions are done. destroy() closes at once.
 *   onTransportClose comes exactly once, from the handle's close callback.
 *
 * Only plain TCP: TLS and sockets handed over by node:http use SocketTransport.
 */

/** Bytes buffered at which write() starts returning false (net.Socket's default). */
export const LEAN_HIGH_WATER_MARK = 16 * 1024;
/** A corked tick of at most this many bytes goes out as one buffer instead of a writev. */
const COALESCE_MAX = 16 * 1024;

const F_ATTACHED = 1;
const F_PAUSED = 2;
const F_READING = 4;
const F_EOF = 8; // the peer half-closed
const F_ENDING = 16; // end() was called: no more writes
const F_SHUT = 32; // our half-close reached the kernel
const F_DESTROYED = 64;
const F_CLOSED = 128; // the handle's close callback ran
const F_NEED_DRAIN = 256;
const F_ERROR = 512;
const F_DRAIN_TICK = 1024;

/** A shutdown of a socket the peer already reset: libuv errors are negated errno values on Unix. */
const UV_ENOTCONN = -(osConstants.errno.ENOTCONN ?? 107);

let B: LeanBindings | null = null;
let state: Int32Array = new Int32Array(4);
let kNread = 0;
let kOffset = 1;
let kAsync = 3;
/** A write request that has never been dispatched asynchronously: reused until one is. */
let spareReq: WriteReq | null = null;

function bindings(): LeanBindings {
  if (B !== null) return B;
  const b = leanBindings();
  if (b === null) throw new Error(`lean transport unavailable: ${leanBindingsFailure() ?? 'unknown reason'}`);
  B = b;
  state = b.streamBaseState;
  kNread = b.kReadBytesOrError;
  kOffset = b.kArrayBufferOffset;
  kAsync = b.kLastWriteWasAsync;
  return b;
}

function newWriteReq(): WriteReq {
  const req = new B!.WriteWrap();
  req.oncomplete = leanAfterWrite;
  req.buffer = null;
  return req;
}

type OwnedHandle = LeanHandle & { [kLeanOwner]?: LeanTransport | null };

export class LeanTransport implements Transport {
  readonly handle: OwnedHandle;
  sink: TransportSink | null;
  flags: number;
  /** Nesting depth of cork(). */
  corks: number;
  /** What was written while corked: one buffer, or several in order. */
  pending: Buffer | Buffer[] | null;
  pendingBytes: number;
  /** Write requests libuv still holds (dispatched asynchronously, oncomplete not yet called). */
  inflight: number;
  /** Cached on the first remoteAddress() call only. */
  peer: string | undefined;

  /** Takes ownership of an accepted TCP handle (see adoptLeanConnections). */
  constructor(handle: LeanHandle) {
    bindings();
    this.handle = handle as OwnedHandle;
    this.sink = null;
    this.flags = 0;
    this.corks = 0;
    this.pending = null;
    this.pendingBytes = 0;
    this.inflight = 0;
    this.peer = undefined;
    this.handle[kLeanOwner] = this;
    this.handle.onread = leanOnRead;
  }

  get kind(): 'lean' {
    return 'lean';
  }

  get bufferedBytes(): number {
    if ((this.flags & F_DESTROYED) !== 0) return 0;
    return this.inflight === 0 ? this.pendingBytes : this.pendingBytes + this.handle.writeQueueSize;
  }

  get destroyed(): boolean {
    return (this.flags & F_DESTROYED) !== 0;
  }

  remoteAddress(): string | undefined {
    if (this.peer === undefined && (this.flags & F_DESTROYED) === 0) {
      const out: { address?: string } = {};
      if (this.handle.getpeername(out) === 0) this.peer = out.address;
    }
    return this.peer;
  }

  attach(sink: TransportSink): void {
    this.sink = sink;
    this.flags |= F_ATTACHED;
    if ((this.flags & F_CLOSED) !== 0) {
      // Destroyed and closed before anyone listened: still report the close, once.
      process.nextTick(reportLateClose, this);
      return;
    }
    if ((this.flags & F_DESTROYED) !== 0) return; // the close callback will report
    this.handle.setNoDelay(true);
    if ((this.flags & F_PAUSED) === 0) this.startReading();
  }

  write(data: Buffer): boolean {
    if ((this.flags & (F_DESTROYED | F_ENDING)) !== 0) return false;
    const len = data.length;
    if (this.corks > 0) {
      const p = this.pending;
      if (p === null) this.pending = data;
      else if (Array.isArray(p)) p.push(data);
      else this.pending = [p, data];
      this.pendingBytes += len;
    } else if (len > 0) {
      this.dispatch(data);
      if ((this.flags & F_DESTROYED) !== 0) return false;
    }
    if (this.bufferedBytes < LEAN_HIGH_WATER_MARK) return true;
    this.flags |= F_NEED_DRAIN;
    return false;
  }

  cork(): void {
    this.corks++;
  }

  uncork(): void {
    if (this.corks === 0) return;
    if (--this.corks === 0 && this.pending !== null) this.flush();
  }

  pause(): void {
    this.flags |= F_PAUSED;
    if ((this.flags & F_READING) !== 0) {
      this.flags &= ~F_READING;
      const err = this.handle.readStop();
      if (err !== 0) this.fail(err);
    }
  }

  resume(): void {
    this.flags &= ~F_PAUSED;
    if ((this.flags & (F_ATTACHED | F_READING | F_EOF | F_DESTROYED)) === F_ATTACHED) this.startReading();
  }

  end(): void {
    if ((this.flags & (F_DESTROYED | F_ENDING)) !== 0) return;
    this.flags |= F_ENDING;
    this.corks = 0;
    if (this.pending !== null) this.flush();
    if ((this.flags & F_DESTROYED) !== 0) return;
    // uv_shutdown waits for the write queue, so it goes out after every queued byte.
    const req = new B!.ShutdownWrap();
    req.oncomplete = leanAfterShutdown;
    const err = this.handle.shutdown(req);
    if (err === 0) return;
    if (err === 1 || err === UV_ENOTCONN) this.shutDown();
    else this.fail(err);
  }

  destroy(): void {
    if ((this.flags & F_DESTROYED) !== 0) return;
    this.flags = (this.flags | F_DESTROYED) & ~(F_READING | F_NEED_DRAIN);
    this.pending = null;
    this.pendingBytes = 0;
    this.corks = 0;
    // Queued writes are cancelled (their oncomplete runs with ECANCELED) before the close callback.
    this.handle.close(leanOnClose);
  }

  // ---- internals ---------------------------------------------------------------------------

  private startReading(): void {
    const err = this.handle.readStart();
    if (err === 0) this.flags |= F_READING;
    else this.fail(err);
  }

  private flush(): void {
    const p = this.pending!;
    const bytes = this.pendingBytes;
    this.pending = null;
    this.pendingBytes = 0;
    // Many small frames (a tick of short replies): one copy into one buffer costs less than
    // a writev over dozens of tiny pieces.
    this.dispatch(Array.isArray(p) && bytes <= COALESCE_MAX ? Buffer.concat(p, bytes) : p);
    // Everything reached the kernel at once after a write that returned false: drain, but
    // never from inside uncork() (the sink may be in the middle of writing).
    if (this.inflight === 0 && (this.flags & (F_NEED_DRAIN | F_DESTROYED | F_DRAIN_TICK)) === F_NEED_DRAIN) {
      this.flags |= F_DRAIN_TICK;
      process.nextTick(drainTick, this);
    }
  }

  private dispatch(data: Buffer | Buffer[]): void {
    const req = spareReq ?? newWriteReq();
    spareReq = null;
    const err = Array.isArray(data) ? this.handle.writev(req, data, true) : this.handle.writeBuffer(req, data);
    if (err !== 0) {
      // The request may have been wrapped (and disposed) natively: do not reuse it.
      this.fail(err);
      return;
    }
    if (state[kAsync] === 0) {
      spareReq = req; // untouched by native code: reuse for the next write
      return;
    }
    req.buffer = data;
    this.inflight++;
  }

  /** Called after a write request of this transport completed (status >= 0). */
  afterWrite(): void {
    if (this.inflight === 0 && this.pendingBytes === 0 && (this.flags & F_NEED_DRAIN) !== 0) {
      this.flags &= ~F_NEED_DRAIN;
      this.sink?.onTransportDrain();
    }
  }

  shutDown(): void {
    this.flags |= F_SHUT;
    if ((this.flags & F_EOF) !== 0) this.destroy();
  }

  onEof(): void {
    this.flags = (this.flags | F_EOF) & ~F_READING;
    this.sink?.onTransportEnd();
    if ((this.flags & (F_SHUT | F_DESTROYED)) === F_SHUT) this.destroy();
  }

  /** An error from libuv (ECONNRESET, EPIPE, ...): close, reporting hadError. */
  fail(_err: number): void {
    if ((this.flags & F_DESTROYED) !== 0) return;
    this.flags |= F_ERROR;
    this.destroy();
  }
}

// ---- module-level callbacks: `this` is the handle or the request, nothing per connection --------

function leanOnRead(this: LeanHandle, ab: ArrayBuffer | undefined): void {
  const nread = state[kNread]!;
  const t = (this as OwnedHandle)[kLeanOwner];
  if (t === undefined || t === null || (t.flags & F_DESTROYED) !== 0) return;
  if (nread > 0) {
    t.sink?.onTransportData(Buffer.from(ab!, state[kOffset]!, nread));
    return;
  }
  if (nread === 0) return;
  if (nread === UV_EOF) t.onEof();
  else t.fail(nread);
}

function leanAfterWrite(this: WriteReq, status: number, handle: LeanHandle): void {
  this.buffer = null;
  const t = (handle as OwnedHandle)[kLeanOwner];
  if (t === undefined || t === null) return;
  t.inflight--;
  if ((t.flags & F_DESTROYED) !== 0) return;
  if (status < 0) t.fail(status);
  else t.afterWrite();
}

function leanAfterShutdown(this: ShutdownReq, status: number, handle: LeanHandle): void {
  const t = (handle as OwnedHandle)[kLeanOwner];
  if (t === undefined || t === null || (t.flags & F_DESTROYED) !== 0) return;
  if (status < 0 && status !== UV_ENOTCONN) t.fail(status);
  else t.shutDown();
}

function leanOnClose(this: LeanHandle): void {
  const h = this as OwnedHandle;
  const t = h[kLeanOwner];
  if (t === undefined || t === null) return;
  h[kLeanOwner] = null;
  t.flags |= F_CLOSED;
  const sink = t.sink;
  if (sink === null) return; // attach() after this reports it
  t.sink = null;
  sink.onTransportClose((t.flags & F_ERROR) !== 0);
}

function reportLateClose(t: LeanTransport): void {
  const sink = t.sink;
  if (sink === null) return;
  t.sink = null;
  sink.onTransportClose((t.flags & F_ERROR) !== 0);
}

function drainTick(t: LeanTransport): void {
  t.flags &= ~F_DRAIN_TICK;
  if ((t.flags & F_DESTROYED) !== 0) return;
  t.afterWrite();
}
