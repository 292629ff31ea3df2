import type { Socket } from 'node:net';
import type { Transport, TransportSink } from './transport.js';

/**
 * The portable transport: one net.Socket (or tls.TLSSocket) per connection. Used for TLS,
 * for upgrades handed over by node:http, and wherever the lean transport is unavailable.
 *
 * Listeners are module-level functions that find their transport through a symbol on the
 * socket: nothing is allocated per connection beyond this small object.
 */
const kTransport = Symbol('murmur.transport');

type OwnedSocket = Socket & { [kTransport]?: SocketTransport };

export class SocketTransport implements Transport {
  socket: OwnedSocket;
  sink: TransportSink | null;

  constructor(socket: Socket) {
    this.socket = socket as OwnedSocket;
    this.sink = null;
    this.socket[kTransport] = this;
  }

  // A getter, not a field: nothing per instance.
  get kind(): 'socket' {
    return 'socket';
  }

  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  get destroyed(): boolean {
    return this.socket.destroyed;
  }

  remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  attach(sink: TransportSink): void {
    this.sink = sink;
    const s = this.socket;
    s.setNoDelay(true);
    // Only the listeners every connection needs; 'drain' is added by the first write the
    // kernel does not take at once, and 'end' only where Node would not end our side itself.
    s.on('data', socketOnData);
    s.on('close', socketOnClose);
    s.on('error', socketOnError);
    if (s.allowHalfOpen) s.on('end', socketOnEnd);
    if (s.destroyed) queueMicrotask(() => sink.onTransportClose(true));
  }

  write(data: Buffer): boolean {
    const ok = this.socket.write(data);
    if (!ok && this.socket.listenerCount('drain') === 0) this.socket.on('drain', socketOnDrain);
    return ok;
  }

  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  end(): void {
    if (!this.socket.destroyed) this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function socketOnData(this: OwnedSocket, chunk: Buffer): void {
  this[kTransport]?.sink?.onTransportData(chunk);
}

function socketOnDrain(this: OwnedSocket): void {
  this[kTransport]?.sink?.onTransportDrain();
}

function socketOnEnd(this: OwnedSocket): void {
  this[kTransport]?.sink?.onTransportEnd();
}

function socketOnClose(this: OwnedSocket, hadError: boolean): void {
  const t = this[kTransport];
  if (t === undefined) return;
  const sink = t.sink;
  t.sink = null;
  sink?.onTransportClose(hadError);
}

function socketOnError(this: OwnedSocket): void {
  // ECONNRESET, EPIPE and friends: 'close' follows and reports it; the socket is destroyed
  // by Node itself. Having a listener keeps the error from becoming an uncaught exception.
}
