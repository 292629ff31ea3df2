import { nextTick } from 'node:process';
import { Buffer } from 'node:buffer';
import { constants as osConstants } from 'node:os';
import { Socket } from 'node:net';
import type { Transport, TransportSink } from './transport.js';
import { leanBindings, leanBindingsFailure, UV_EOF } from './lean-binding.js';
import type { LeanBindings, LeanHandle, WriteReq, ShutdownReq } from './lean-binding.js';

/**
 * The lean transport: drives the TCP handle node:net accepted (a TCPWrap) directly, with no
 * net.Socket, no stream machinery, no closure and no object of its own per connection. Its
 * per-connection state is two slots of the connection (TransportSink: the handle in `io`, the
 * low bits of `flags`) and two of the handle's own: node's TCP handle template gives every
 * handle `owner_symbol` and `reading` properties (null and false) for the net.Socket that
 * would own it. We are that owner instead: the handle points back to the connection through
 * `owner_symbol`, and `reading` holds what was written while corked. So an idle connection
 * costs the handle's JS object (with the property array node gives it anyway) and the
 * connection object, nothing else in JS.
 *
 * - Reads: readStart() with a module-level onread (`this` is the handle). Until the upgrade,
 *   each chunk is the ArrayBuffer node allocated for the read, shrunk to the bytes read. An
 *   open WebSocket switches (readShared) to one read buffer shared by every connection: no
 *   allocation, zero-fill or copy per read, and the frame parser unmasks each payload straight
 *   into a buffer of its own.
 * - Writes go straight to the handle (uv_try_write first, inside writeBuffer/writev). When the
 *   kernel takes everything, nothing is queued and the request object is reused. Otherwise
 *   libuv queues the rest in order; the request keeps the bytes alive until its oncomplete,
 *   and bufferedBytes is the live libuv write queue plus what is corked.
 * - cork()/uncork() gather a tick's buffers into one write (three or more up to 16 KiB copied
 *   into one buffer, else a writev).
 * - write() returns false once bufferedBytes reaches 16 KiB (net.Socket's high-water mark);
 *   onTransportDrain follows when everything queued has reached the kernel.
 * - end() flushes, then half-closes through a ShutdownWrap queued behind the pending writes;
 *   the handle closes once both directions are done. destroy() closes at once.
 *   onTransportClose comes exactly once, from the handle's close callback.
 *
 * Only plain TCP: TLS and sockets handed over by node:http use the socket transport.
 */

/** Bytes buffered at which write() starts returning false (net.Socket's default). */
export const LEAN_HIGH_WATER_MARK = 16 * 1024;
/** A corked tick of at most this many bytes goes out as one buffer instead of a writev... */
const COALESCE_MAX = 16 * 1024;
/**
 * ...when it holds at least this many pieces. Two go out by writev as they are: a writev of two
 * costs the kernel what one write does, while a copy into a third buffer costs an allocation
 * per tick (per handshake: the 101 and the first message), which a storm of handshakes turns
 * into malloc's heap growing with the slabs it leaves behind.
 */
const COALESCE_MIN_PIECES = 3;

// The transport's bits of TransportSink.flags (all below TRANSPORT_FLAG_BITS).
const T_ATTACHED = 1;
const T_PAUSED = 2;
const T_READING = 4;
const T_EOF = 8; // the peer half-closed
const T_ENDING = 16; // end() was called: no more writes
const T_SHUT = 32; // our half-close reached the kernel
const T_DESTROYED = 64;
const T_CLOSED = 128; // the handle's close callback ran
const T_NEED_DRAIN = 256;
const T_ERROR = 512;
const T_DRAIN_TICK = 1024;
const T_CORKED = 2048;
/** libuv holds bytes of ours (a write went asynchronous and writeQueueSize has not been seen at 0 since). */
const T_QUEUED = 4096;

/** A shutdown of a socket the peer already reset: libuv errors are negated errno values on Unix. */
const UV_ENOTCONN = -(osConstants.errno.ENOTCONN ?? 107);

let B: LeanBindings | null = null;
let state: Int32Array = new Int32Array(4);
let kNread = 0;
let kOffset = 1;
let kAsync = 3;
let kOwner: symbol = Symbol('unset');
/**
 * The read buffer shared by the connections that asked for it (readShared): one read fills
 * it, the connection consumes it in onTransportData, the next read overwrites it. Made on
 * first use, of the size node allocates for each read of its own.
 */
let readBuffer: Buffer | null = null;
const READ_BUFFER_SIZE = 64 * 1024;
/**
 * Tests set MURMUR_POISON_READS=1: the shared buffer is overwritten after each read, so a
 * view of it kept past onTransportData shows as corrupt data at once, not by chance.
 */
const POISON_READS = process.env.MURMUR_POISON_READS === '1';

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
  kOwner = b.ownerKey;
  return b;
}

function newWriteReq(): WriteReq {
  const req = new B!.WriteWrap();
  req.oncomplete = leanAfterWrite;
  req.buffer = null;
  return req;
}

/** Buffers written while corked, when there is more than one. */
class WriteBatch {
  list: Buffer[];
  bytes: number;

  constructor(first: Buffer, second: Buffer) {
    this.list = [first, second];
    this.bytes = first.length + second.length;
  }
}

/**
 * The handle with the slots we use. `reading` is the template's property (false until we
 * own the handle), holding what was written while corked: null, one buffer or a batch.
 */
type Slots = LeanHandle & { reading: Buffer | WriteBatch | null | boolean };
type Owned = Record<symbol, TransportSink | null | undefined>;

function handleOf(c: TransportSink): Slots {
  return c.io as Slots;
}

/** What was written while corked: null, one buffer or a batch. */
function corked(h: Slots): Buffer | WriteBatch | null {
  const p = h.reading;
  return typeof p === 'boolean' ? null : p;
}

function ownerOf(handle: LeanHandle): TransportSink | null | undefined {
  return (handle as unknown as Owned)[kOwner];
}

/** Makes the handle point back to its connection (idempotent). */
function own(c: TransportSink): Slots {
  bindings();
  const h = handleOf(c);
  const o = h as unknown as Owned;
  if (o[kOwner] !== c) {
    o[kOwner] = c;
    h.onread = leanOnRead;
    h.reading = null;
  }
  return h;
}

class LeanTransport implements Transport {
  get kind(): 'lean' {
    return 'lean';
  }

  bufferedBytes(c: TransportSink): number {
    const f = c.flags;
    if ((f & T_DESTROYED) !== 0) return 0;
    const h = handleOf(c);
    const p = corked(h);
    const bytes = p === null ? 0 : p instanceof WriteBatch ? p.bytes : p.length;
    return (f & T_QUEUED) === 0 ? bytes : bytes + h.writeQueueSize;
  }

  destroyed(c: TransportSink): boolean {
    return (c.flags & T_DESTROYED) !== 0;
  }

  /** getpeername on every call: the caller caches it if it asks often. */
  remoteAddress(c: TransportSink): string | undefined {
    if ((c.flags & T_DESTROYED) !== 0) return undefined;
    const out: { address?: string } = {};
    return handleOf(c).getpeername(out) === 0 ? out.address : undefined;
  }

  attach(c: TransportSink): void {
    c.flags |= T_ATTACHED;
    if ((c.flags & T_CLOSED) !== 0) {
      // Destroyed and closed before anyone listened: still report the close, once.
      nextTick(reportLateClose, c);
      return;
    }
    if ((c.flags & T_DESTROYED) !== 0) return; // the close callback will report
    own(c);
    if ((c.flags & T_PAUSED) === 0) startReading(c);
  }

  write(c: TransportSink, data: Buffer): boolean {
    if ((c.flags & (T_DESTROYED | T_ENDING)) !== 0) return false;
    if ((c.flags & T_CORKED) !== 0) {
      const h = handleOf(c);
      const p = corked(h);
      if (p === null) h.reading = data;
      else if (p instanceof WriteBatch) {
        p.list.push(data);
        p.bytes += data.length;
      } else h.reading = new WriteBatch(p, data);
    } else if (data.length > 0) {
      dispatch(c, data);
      if ((c.flags & T_DESTROYED) !== 0) return false;
    }
    if (this.bufferedBytes(c) < LEAN_HIGH_WATER_MARK) return true;
    c.flags |= T_NEED_DRAIN;
    return false;
  }

  /**
   * Costs the connection one native object (node's listener holding the buffer's address:
   * 40 bytes, a 48-byte malloc chunk), so a connection asks on its first read after the
   * upgrade: one that never sends a byte after it never pays.
   */
  readShared(c: TransportSink): void {
    if ((c.flags & T_DESTROYED) !== 0) return;
    const h = handleOf(c);
    if (typeof h.useUserBuffer !== 'function') return;
    h.useUserBuffer((readBuffer ??= Buffer.allocUnsafeSlow(READ_BUFFER_SIZE)));
  }

  cork(c: TransportSink): void {
    c.flags |= T_CORKED;
  }

  uncork(c: TransportSink): void {
    if ((c.flags & T_CORKED) === 0) return;
    c.flags &= ~T_CORKED;
    flush(c);
  }

  pause(c: TransportSink): void {
    c.flags |= T_PAUSED;
    if ((c.flags & T_READING) !== 0) {
      c.flags &= ~T_READING;
      const err = handleOf(c).readStop();
      if (err !== 0) fail(c, err);
    }
  }

  resume(c: TransportSink): void {
    c.flags &= ~T_PAUSED;
    if ((c.flags & (T_ATTACHED | T_READING | T_EOF | T_DESTROYED)) === T_ATTACHED) startReading(c);
  }

  end(c: TransportSink): void {
    if ((c.flags & (T_DESTROYED | T_ENDING)) !== 0) return;
    const h = own(c);
    c.flags = (c.flags | T_ENDING) & ~T_CORKED;
    flush(c);
    if ((c.flags & T_DESTROYED) !== 0) return;
    if ((c.flags & T_EOF) !== 0 && ((c.flags & T_QUEUED) === 0 || h.writeQueueSize === 0)) {
      // The peer half-closed and libuv holds nothing of ours: closing sends the same FIN after
      // whatever the kernel still has to send (nothing is left unread), without a shutdown
      // request, its syscall and its callback. Most connections end this way (the client goes).
      c.flags |= T_SHUT;
      this.destroy(c);
      return;
    }
    // uv_shutdown waits for the write queue, so it goes out after every queued byte.
    const req = new B!.ShutdownWrap();
    req.oncomplete = leanAfterShutdown;
    const err = h.shutdown(req);
    if (err === 0) return;
    if (err === 1 || err === UV_ENOTCONN) shutDown(c);
    else fail(c, err);
  }

  destroy(c: TransportSink): void {
    if ((c.flags & T_DESTROYED) !== 0) return;
    c.flags = (c.flags | T_DESTROYED) & ~(T_READING | T_NEED_DRAIN | T_CORKED | T_QUEUED);
    const h = own(c);
    h.reading = null;
    // Queued writes are cancelled (their oncomplete runs with ECANCELED) before the close callback.
    h.close(leanOnClose);
  }

  detach(c: TransportSink): Socket {
    const h = own(c);
    if ((c.flags & T_READING) !== 0) h.readStop();
    c.flags = (c.flags | T_DESTROYED | T_CLOSED) & ~(T_READING | T_NEED_DRAIN | T_CORKED | T_QUEUED);
    // Node's own initial values for the slots we used: the socket takes the handle as if it
    // had accepted it itself (it sets the owner and onread, and starts reading).
    (h as unknown as Owned)[kOwner] = null;
    h.reading = false;
    c.io = null;
    const socket = new Socket({ handle: h, readable: true, writable: true, allowHalfOpen: true } as ConstructorParameters<typeof Socket>[0]);
    socket.pause(); // as the socket transport hands it over: the new owner resumes
    return socket;
  }
}

/** The lean transport (stateless: one object for every connection of every server). */
export const leanTransport: Transport = new LeanTransport();

// ---- internals: plain functions over the connection's slots ---------------------------------

function startReading(c: TransportSink): void {
  const err = handleOf(c).readStart();
  if (err === 0) c.flags |= T_READING;
  else fail(c, err);
}

/** Sends what was written while corked, if anything. */
function flush(c: TransportSink): void {
  const h = handleOf(c);
  const p = corked(h);
  if (p === null) return;
  h.reading = null;
  // Many small frames (a tick of short replies): one copy into one buffer costs less than
  // a writev over dozens of tiny pieces.
  if (p instanceof WriteBatch) dispatch(c, p.bytes <= COALESCE_MAX && p.list.length >= COALESCE_MIN_PIECES ? Buffer.concat(p.list, p.bytes) : p.list);
  else dispatch(c, p);
  // Everything reached the kernel at once after a write that returned false: drain, but
  // never from inside uncork() (the sink may be in the middle of writing).
  if ((c.flags & (T_QUEUED | T_NEED_DRAIN | T_DESTROYED | T_DRAIN_TICK)) === T_NEED_DRAIN) {
    c.flags |= T_DRAIN_TICK;
    nextTick(drainTick, c);
  }
}

function dispatch(c: TransportSink, data: Buffer | Buffer[]): void {
  const req = spareReq ?? newWriteReq();
  spareReq = null;
  const h = handleOf(c);
  const err = Array.isArray(data) ? h.writev(req, data, true) : h.writeBuffer(req, data);
  if (err !== 0) {
    // The request may have been wrapped (and disposed) natively: do not reuse it.
    fail(c, err);
    return;
  }
  if (state[kAsync] === 0) {
    spareReq = req; // untouched by native code: reuse for the next write
    return;
  }
  req.buffer = data;
  c.flags |= T_QUEUED;
}

/** A write request of this connection completed (status >= 0). */
function afterWrite(c: TransportSink): void {
  if ((c.flags & T_QUEUED) !== 0) {
    // libuv counts down its queue as bytes reach the kernel, before the callbacks run.
    if (handleOf(c).writeQueueSize !== 0) return;
    c.flags &= ~T_QUEUED;
  }
  if ((c.flags & T_NEED_DRAIN) !== 0 && corked(handleOf(c)) === null) {
    c.flags &= ~T_NEED_DRAIN;
    c.onTransportDrain();
  }
}

function shutDown(c: TransportSink): void {
  c.flags |= T_SHUT;
  if ((c.flags & T_EOF) !== 0) leanTransport.destroy(c);
}

function onEof(c: TransportSink): void {
  c.flags = (c.flags | T_EOF) & ~T_READING;
  c.onTransportEnd();
  if ((c.flags & (T_SHUT | T_DESTROYED)) === T_SHUT) leanTransport.destroy(c);
}

/** An error from libuv (ECONNRESET, EPIPE, ...): close, reporting hadError. */
function fail(c: TransportSink, _err: number): void {
  if ((c.flags & T_DESTROYED) !== 0) return;
  c.flags |= T_ERROR;
  leanTransport.destroy(c);
}

// ---- callbacks from node: `this` is the handle or the request, nothing per connection -------

function leanOnRead(this: LeanHandle, ab: ArrayBuffer | undefined): void {
  const nread = state[kNread]!;
  const c = ownerOf(this);
  if (c === undefined || c === null || (c.flags & T_DESTROYED) !== 0) return;
  if (nread > 0) {
    if (ab === undefined) {
      // Read into the shared buffer (readShared): the sink copies what it keeps.
      c.onTransportData(readBuffer!.subarray(0, nread), true);
      if (POISON_READS) readBuffer!.fill(0xa5, 0, nread);
    } else c.onTransportData(Buffer.from(ab, state[kOffset]!, nread));
    return;
  }
  if (nread === 0) return;
  if (nread === UV_EOF) onEof(c);
  else fail(c, nread);
}

function leanAfterWrite(this: WriteReq, status: number, handle: LeanHandle): void {
  this.buffer = null;
  const c = ownerOf(handle);
  if (c === undefined || c === null || (c.flags & T_DESTROYED) !== 0) return;
  if (status < 0) fail(c, status);
  else afterWrite(c);
}

function leanAfterShutdown(this: ShutdownReq, status: number, handle: LeanHandle): void {
  const c = ownerOf(handle);
  if (c === undefined || c === null || (c.flags & T_DESTROYED) !== 0) return;
  if (status < 0 && status !== UV_ENOTCONN) fail(c, status);
  else shutDown(c);
}

function leanOnClose(this: LeanHandle): void {
  const o = this as unknown as Owned;
  const c = o[kOwner];
  if (c === undefined || c === null) return;
  o[kOwner] = null; // node's own initial value: the handle no longer leads to the connection
  c.flags |= T_CLOSED;
  if ((c.flags & T_ATTACHED) === 0) return; // attach() after this reports it
  c.onTransportClose((c.flags & T_ERROR) !== 0);
}

function reportLateClose(c: TransportSink): void {
  c.onTransportClose((c.flags & T_ERROR) !== 0);
}

function drainTick(c: TransportSink): void {
  c.flags &= ~T_DRAIN_TICK;
  if ((c.flags & T_DESTROYED) !== 0) return;
  afterWrite(c);
}
