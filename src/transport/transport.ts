/**
 * The seam between a connection and the kernel. A connection never touches a socket
 * directly: it writes buffers, reads through its sink, pauses, ends and destroys through
 * this interface, so a leaner implementation can replace net.Socket without the server
 * noticing.
 */

/** What a transport calls back into. Implemented by the connection: no closures. */
export interface TransportSink {
  /** Bytes from the peer. The sink owns the chunk from here on (it may unmask it in place). */
  onTransportData(chunk: Buffer): void;
  /** Everything queued has been handed to the kernel. */
  onTransportDrain(): void;
  /** The peer half-closed its side. */
  onTransportEnd(): void;
  /** The transport is gone (closed by either side or destroyed). Called exactly once. */
  onTransportClose(hadError: boolean): void;
}

export type TransportKind = 'socket' | 'lean';

export interface Transport {
  readonly kind: TransportKind;
  /** Bytes accepted by write() that the kernel has not taken yet. */
  readonly bufferedBytes: number;
  readonly destroyed: boolean;
  remoteAddress(): string | undefined;
  /** Starts delivering events to the sink (and reading, unless paused). */
  attach(sink: TransportSink): void;
  /** Queues bytes; they go out in order. Returns false when the kernel did not take them at once. */
  write(data: Buffer): boolean;
  /** Holds writes until uncork(), so a tick's frames reach the kernel as one writev. */
  cork(): void;
  uncork(): void;
  pause(): void;
  resume(): void;
  /** Flushes what is queued, then half-closes. */
  end(): void;
  /** Closes at once, dropping what is queued. */
  destroy(): void;
}
