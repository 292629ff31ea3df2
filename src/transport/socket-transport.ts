import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import type { Transport, TransportSink } from './transport.js';

/**
 * The portable transport: one net.Socket (or tls.TLSSocket) per connection, in the
 * connection's `io` slot. Used for TLS, for upgrades handed over by node:http, and wherever
 * the lean transport is unavailable.
 *
 * Listeners are module-level functions that find their connection through a symbol on the
 * socket: nothing is allocated per connection beyond that one property.
 */
const kSink = Symbol('murmur.sink');

type OwnedSocket = Socket & { [kSink]?: TransportSink | null };

// The transport's bits of TransportSink.flags (below TRANSPORT_FLAG_BITS).
const T_CORKED = 1;
const T_CLOSED = 2;

/** The socket; null once detached (only destroyed() and destroy() are called then). */
function socketOf(c: TransportSink): OwnedSocket {
  return c.io as OwnedSocket;
}

class SocketTransport implements Transport {
  get kind(): 'socket' {
    return 'socket';
  }

  bufferedBytes(c: TransportSink): number {
    return socketOf(c)?.writableLength ?? 0;
  }

  destroyed(c: TransportSink): boolean {
    const s = socketOf(c);
    return s === null || s.destroyed;
  }

  remoteAddress(c: TransportSink): string | undefined {
    return socketOf(c)?.remoteAddress;
  }

  attach(c: TransportSink): void {
    const s = socketOf(c);
    s[kSink] = c;
    s.setNoDelay(true);
    // Only the listeners every connection needs; 'drain' is added by the first write the
    // kernel does not take at once, and 'end' only where Node would not end our side itself.
    s.on('data', socketOnData);
    s.on('close', socketOnClose);
    s.on('error', socketOnError);
    if (s.allowHalfOpen) s.on('end', socketOnEnd);
    if (s.destroyed) queueMicrotask(() => reportClose(c, true));
  }

  write(c: TransportSink, data: Buffer): boolean {
    const s = socketOf(c);
    const ok = s.write(data);
    if (!ok && s.listenerCount('drain') === 0) s.on('drain', socketOnDrain);
    return ok;
  }

  /** A net.Socket reads into buffers of its own: nothing to share. */
  readShared(_c: TransportSink): void {}

  cork(c: TransportSink): void {
    if ((c.flags & T_CORKED) !== 0) return;
    c.flags |= T_CORKED;
    socketOf(c).cork();
  }

  uncork(c: TransportSink): void {
    if ((c.flags & T_CORKED) === 0) return;
    c.flags &= ~T_CORKED;
    socketOf(c).uncork();
  }

  pause(c: TransportSink): void {
    socketOf(c).pause();
  }

  resume(c: TransportSink): void {
    socketOf(c).resume();
  }

  end(c: TransportSink): void {
    const s = socketOf(c);
    if (s === null || s.destroyed) return;
    if ((c.flags & T_CORKED) !== 0) this.uncork(c);
    s.end();
  }

  destroy(c: TransportSink): void {
    socketOf(c)?.destroy();
  }

  detach(c: TransportSink): Socket {
    const s = socketOf(c);
    // Paused first: a flowing socket with no 'data' listener would drop what it reads.
    s.pause();
    s.off('data', socketOnData);
    s.off('close', socketOnClose);
    s.off('error', socketOnError);
    s.off('end', socketOnEnd);
    s.off('drain', socketOnDrain);
    s[kSink] = null;
    c.flags |= T_CLOSED;
    c.io = null;
    s.allowHalfOpen = true; // as node:http's own server makes its sockets: see Transport.detach
    forgetListener(s);
    return s;
  }
}

/** The socket transport (stateless: one object for every connection). */
export const socketTransport: Transport = new SocketTransport();

/**
 * The socket leaves the count of the net.Server that accepted it (as an adopted lean handle
 * never enters it): the listener's close() no longer waits for a socket its server handed on.
 * Node keeps the count in `_connections` and drops it in the socket's destroy through `_server`.
 */
function forgetListener(s: Socket): void {
  const owned = s as Socket & { _server?: { _connections: number; _emitCloseIfDrained?: () => void } | null; server?: unknown };
  const listener = owned._server;
  if (listener === null || listener === undefined) return;
  owned._server = null;
  owned.server = null;
  listener._connections--;
  listener._emitCloseIfDrained?.();
}

/** Reports the close once, whichever of 'close' and an already-destroyed attach comes first. */
function reportClose(c: TransportSink, hadError: boolean): void {
  if ((c.flags & T_CLOSED) !== 0) return;
  c.flags |= T_CLOSED;
  c.onTransportClose(hadError);
}

function socketOnData(this: OwnedSocket, chunk: Buffer): void {
  this[kSink]?.onTransportData(chunk);
}

function socketOnDrain(this: OwnedSocket): void {
  this[kSink]?.onTransportDrain();
}

function socketOnEnd(this: OwnedSocket): void {
  this[kSink]?.onTransportEnd();
}

function socketOnClose(this: OwnedSocket, hadError: boolean): void {
  const c = this[kSink];
  if (c === undefined || c === null) return;
  this[kSink] = null;
  reportClose(c, hadError);
}

function socketOnError(this: OwnedSocket): void {
  // ECONNRESET, EPIPE and friends: 'close' follows and reports it; the socket is destroyed
  // by Node itself. Having a listener keeps the error from becoming an uncaught exception.
}
