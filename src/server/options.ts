import { Buffer } from 'node:buffer';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import type { Socket } from 'node:net';
import type { HttpReject, RequestHead, UpgradeRequest } from '../http/index.js';
import type { ProtocolError } from '../protocol/index.js';
import type { Limits } from '../limits.js';
import type { PerMessageDeflateOptions } from './deflate.js';
import type { Connection } from './connection.js';
import type { HistoryPolicy } from '../pubsub/topics.js';
import type { Bus } from '../pubsub/bus.js';

/** What `send` did with a message. Never squash it to a boolean. */
export const SendResult = {
  /** Handed to the transport, which is under its high-water mark. */
  Written: 'written',
  /** Accepted, but the transport is over its high-water mark: `drain` will follow. */
  Queued: 'queued',
  /** Not sent: the connection is not open, or its backlog is over maxBackpressure. */
  Dropped: 'dropped',
} as const;
export type SendResult = (typeof SendResult)[keyof typeof SendResult];

/** What happens when a send finds the connection's backlog over maxBackpressure. */
export type SlowConsumerPolicy = 'drop' | 'close';

/**
 * The application's handlers, given once to the server. Every callback gets the connection
 * as its first argument; nothing is bound per connection.
 */
export interface Handlers<T = unknown> {
  /**
   * Runs after the upgrade request is validated and before the 101 is written. Authenticate
   * here, set `conn.data`, or reject by returning an HttpReject (see `reject()`). May be async;
   * reading from the socket is paused meanwhile and the handshake timeout still applies.
   */
  upgrade?(req: UpgradeRequest, conn: Connection<T>): void | HttpReject | Promise<void | HttpReject>;
  open?(conn: Connection<T>): void;
  /** A complete message. `data` is a view into a reused buffer: valid only until the callback returns. */
  message?(conn: Connection<T>, data: Buffer, isBinary: boolean): void;
  /** The connection's queued bytes went to the kernel after a send returned 'queued'. */
  drain?(conn: Connection<T>): void;
  /** The connection is gone. `code` is the peer's close code, 1005 if its close had none, 1006 if none arrived. */
  close?(conn: Connection<T>, code: number, reason: string): void;
  /** A ping arrived (the pong is sent automatically). `data` valid only until return. */
  ping?(conn: Connection<T>, data: Buffer): void;
  /** A pong arrived. `data` valid only until return. */
  pong?(conn: Connection<T>, data: Buffer): void;
  /** The peer broke the protocol; the connection is being closed with err.closeCode. */
  error?(conn: Connection<T>, err: ProtocolError): void;
}

export interface ServerOptions<T = unknown> {
  handlers: Handlers<T>;
  /** Overrides of DEFAULT_LIMITS (src/limits.ts). */
  limits?: Partial<Limits>;
  /** Policy when a send finds the backlog over maxBackpressure. Default 'drop'. */
  slowConsumer?: SlowConsumerPolicy;
  /** Picks one of the client's subprotocols (in the client's order), or undefined for none. */
  selectProtocol?(protocols: string[], req: UpgradeRequest): string | undefined;
  /**
   * Extra headers of the 101 response (e.g. Set-Cookie), asked for once the subprotocol is
   * chosen, right before the response is written. Absent (the default), nothing is asked.
   */
  upgradeHeaders?(req: UpgradeRequest, conn: Connection<T>, protocol: string | undefined): Array<[string, string]> | undefined;
  /** Origin check; false answers 403. Default: every origin is allowed. */
  verifyOrigin?(origin: string | undefined, req: UpgradeRequest): boolean;
  /** Serve wss: options for tls.createServer (key, cert, ...). */
  tls?: TlsOptions & SecureContextOptions;
  /**
   * Which topics keep a history (bounded by count, bytes and age) so clients can recover
   * missed messages with conn.subscribeFrom(topic, { epoch, offset }). Default: none.
   */
  history?: HistoryPolicy;
  /**
   * How accepted connections reach the kernel. 'lean' drives the accepted TCP handle directly
   * (about a kilobyte per idle connection); 'socket' keeps a net.Socket per connection
   * (portable). 'auto' (the default) uses lean where its start-up self-check passes and says
   * once on stderr when it falls back. TLS and handleUpgrade() always use 'socket'. The
   * environment variable MURMUR_TRANSPORT sets the default (the test matrix uses it).
   */
  transport?: 'auto' | 'socket' | 'lean';
  /** Delivers publishes to other processes (worker processes, cluster nodes) and back. */
  bus?: Bus;
  /**
   * Addresses and CIDR blocks (e.g. a load balancer's, `10.0.0.0/8`) exempt from the per-address
   * limits (maxHandshakesPerAddress, maxConnectionsPerAddress): a proxy is one address for many
   * clients. Their clients are not counted per forwarded address either: the limits act at
   * accept, before any X-Forwarded-For header is read. Throws TypeError on an entry that is
   * neither an address nor a CIDR block.
   */
  trustedAddresses?: readonly string[];
  /** listen() backlog handed to the kernel (capped by net.core.somaxconn). */
  backlog?: number;
  /**
   * Server-level errors, each with its kind: 'upgrade-hook' (the upgrade handler threw or
   * rejected; the client got 500), 'listen' (the listening socket failed), 'descriptors' (the
   * process is nearly or wholly out of file descriptors; said when it happens, not per socket).
   * A peer's protocol errors go to handlers.error instead. Default: one line per kind on stderr
   * at most every limits.errorLogIntervalMs (10 s), with the count of the ones held back.
   */
  onError?: (err: Error, kind: string) => void;
  /** Requests on this server's own listener that another part of the application answers (see {@link Handoff}). */
  handoff?: Handoff;
  /**
   * permessage-deflate (RFC 7692): true (the defaults) or settings; default off. Neither end
   * keeps a compression context between messages (the server asks both no-context-takeover
   * parameters), so a connection that negotiated it costs nothing more while idle, and a
   * message published to a topic is compressed once for every subscriber. maxPayload bounds
   * a compressed message once inflated. See docs/compression.md.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /**
   * Sec-WebSocket-Version values taken (default ['13'], RFC 6455; others get 426). The ws door
   * adds '8', the draft ws also accepts, whose framing is version 13's.
   */
  versions?: readonly string[];
  /**
   * false: pings are not answered by the server; the application answers them from
   * handlers.ping, its pongs under the send budget (the ws door's autoPong: false). Default true.
   */
  autoPong?: boolean;
  /**
   * Gives V8's young generation back when the process goes quiet (default true): a scavenge at
   * the first second the event loop is under 5% busy, and once it has stayed so for 5 s more,
   * one full GC, after which V8 shrinks its semi-spaces (up to 32 MiB) to their floor; one retry
   * 5 s later if it did not; again only after the process was busy or the young generation was
   * back at its floor. Never while busy, never on a heap over 256 MiB. One ticker
   * per process, shared by its servers; false keeps this server from starting it. See
   * docs/serve-memory.md, "The young generation".
   */
  idleGc?: boolean;
}

/**
 * Decides, for each request head read on the server's own listener (after the head limits,
 * before the upgrade is validated), whether another part of the application takes the
 * connection: plain HTTP requests on a WebSocket port, upgrades on another path. Return
 * undefined to keep it here (validated as an upgrade), or a function that gets the connection
 * as a net.Socket, paused, and the bytes read so far (the head, then whatever followed it) to
 * replay into its own parser, e.g. `socket.unshift(bytes); httpServer.emit('connection', socket);
 * socket.resume()`.
 * The server forgets a connection it hands over: it no longer counts or times it out.
 */
export type Handoff = (head: RequestHead) => ((socket: Socket, bytes: Buffer) => void) | undefined;
