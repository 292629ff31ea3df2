/**
 * The seam between a connection and the kernel. A connection never touches a socket
 * directly: it writes buffers, pauses, ends and destroys through a Transport, so a leaner
 * implementation can replace net.Socket without the server noticing.
 *
 * A Transport is stateless and shared (one object per kind, `leanTransport` and
 * `socketTransport`): what it keeps per connection lives in two slots of the connection
 * itself (TransportSink: `io` and the low bits of `flags`) and in the kernel-side object in
 * `io`, so a connection is one object, not a connection plus a transport object. That is
 * what an idle connection costs; see docs/lean-transport.md.
 */

import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';

/**
 * The low bits of TransportSink.flags that belong to the transport. The owner may use every
 * bit from TRANSPORT_FLAG_BITS up (and must keep the value a small integer: below 2^30).
 * 13: the lean transport uses 13 bits (the socket transport 2); the connection uses the other 17.
 */
export const TRANSPORT_FLAG_BITS = 13;

/**
 * The connection, as a transport sees it: the slots the transport keeps its per-connection
 * state in (set them in the constructor, and otherwise leave them to the transport), and the
 * events it reports. No closures: the transport calls these methods.
 */
export interface TransportSink {
  /** The kernel-side object: the accepted TCP handle (lean) or the net.Socket (socket). */
  io: unknown;
  /** Bit field shared with the owner: the transport uses the bits below TRANSPORT_FLAG_BITS. Start at 0. */
  flags: number;
  /**
   * Bytes from the peer. The sink owns the chunk from here on (it may unmask it in place),
   * unless `transient`: then the chunk is a view of a read buffer the transport reuses as soon
   * as this returns (see Transport.readShared), and the sink copies whatever it keeps.
   */
  onTransportData(chunk: Buffer, transient?: boolean): void;
  /** Everything queued has been handed to the kernel. */
  onTransportDrain(): void;
  /** The peer half-closed its side. */
  onTransportEnd(): void;
  /** The transport is gone (closed by either side or destroyed). Called exactly once. */
  onTransportClose(hadError: boolean): void;
}

export type TransportKind = 'socket' | 'lean';

/** Operations on one connection's transport slots. Every method takes the connection. */
export interface Transport {
  readonly kind: TransportKind;
  /** Bytes accepted by write() that the kernel has not taken yet. */
  bufferedBytes(c: TransportSink): number;
  destroyed(c: TransportSink): boolean;
  remoteAddress(c: TransportSink): string | undefined;
  /**
   * Takes charge of `c.io` and starts delivering events to `c` (and reading, unless paused).
   * The first call for a connection, unless destroy() comes first.
   */
  attach(c: TransportSink): void;
  /** Queues bytes; they go out in order. Returns false when the kernel did not take them at once. */
  write(c: TransportSink, data: Buffer): boolean;
  /**
   * From the next read on, the connection's bytes arrive in one read buffer shared by every
   * connection (onTransportData with `transient`) instead of a buffer node allocates for each
   * read (and, when the read is short, zero-fills and copies again to shrink). Only for a
   * connection that will never be handed to another owner. Call it with a chunk that was not
   * transient; a transport without the means does nothing.
   */
  readShared(c: TransportSink): void;
  /** Holds writes until uncork(), so a tick's frames reach the kernel together. Does not nest. */
  cork(c: TransportSink): void;
  uncork(c: TransportSink): void;
  pause(c: TransportSink): void;
  resume(c: TransportSink): void;
  /** Flushes what is queued, then half-closes. */
  end(c: TransportSink): void;
  /** Closes at once, dropping what is queued. */
  destroy(c: TransportSink): void;
  /**
   * Hands the connection to another owner as a net.Socket (plain HTTP on a WebSocket port goes
   * to node:http this way): stops reading for `c` and never reports to it again, not even a
   * close. The socket comes paused: bytes stay in it or in the kernel until the new owner
   * resumes it, and allows half-open connections: a peer that half-closes after its request
   * still gets the answer, and the new owner ends its side itself (node:http does). Only before anything was
   * written, and not after destroy(). Afterwards `c` counts as destroyed and its `io` is null.
   */
  detach(c: TransportSink): Socket;
}
