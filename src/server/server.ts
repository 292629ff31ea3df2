import { Buffer } from 'node:buffer';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Limits } from '../limits.js';
import type { Topics } from '../pubsub/topics.js';
import type { TransportKind } from '../transport/transport.js';
import type { Connection } from './connection.js';
import { ServerCore } from './core.js';
import type { ListenExtras, ServerStats } from './core.js';
import type { Handoff, ServerOptions } from './options.js';
import type { Bus } from '../pubsub/bus.js';

export type { ListenExtras, ServerStats } from './core.js';

/**
 * A WebSocket server. Listens on node:net (or node:tls with `tls` options), or takes
 * upgrades from an existing node:http server through handleUpgrade().
 *
 * ```ts
 * const server = new Server({ handlers: { message(conn, data, isBinary) { conn.send(data, isBinary); } } });
 * await server.listen(8080);
 * ```
 *
 * This class is what applications call; what its connections need from it lives in an internal
 * core it holds (see docs/architecture.md).
 */
let coreOf: (server: Server<never>) => ServerCore<never>;

export class Server<T = unknown> {
  readonly #core: ServerCore<T>;

  static {
    coreOf = (server) => server.#core;
  }

  constructor(options: ServerOptions<T>) {
    this.#core = new ServerCore(options, this);
  }

  /** The limits in force: DEFAULT_LIMITS with the options' overrides. */
  get limits(): Limits {
    return this.#core.limits;
  }

  /** Counters a server keeps; read them for metrics. */
  get stats(): ServerStats {
    return this.#core.stats;
  }

  /** Topics and fan-out (conn.subscribe, server.publish). */
  get pubsub(): Topics {
    return this.#core.pubsub;
  }

  /** Connections past the handshake and not yet closed. */
  get openCount(): number {
    return this.#core.openCount;
  }

  /** Sockets accepted and not yet closed, handshaking ones included. */
  get socketCount(): number {
    return this.#core.socketCount;
  }

  /** Sockets accepted whose upgrade is not answered yet. */
  get handshakeCount(): number {
    return this.#core.admission.handshakes;
  }

  /** Requests on the own listener that the application takes elsewhere (plain HTTP); see Handoff. */
  get handoff(): Handoff | undefined {
    return this.#core.handoff;
  }

  set handoff(handoff: Handoff | undefined) {
    this.#core.handoff = handoff;
  }

  /** The bus publishes go to other processes through, or null. */
  get bus(): Bus | null {
    return this.#core.bus;
  }

  /**
   * Attaches the bus (replacing any other; null detaches): publishes made here go to it, and
   * messages it brings from other processes are fanned out to local subscribers only, through
   * the same encode-once batched path as a local publish, never back onto the bus. A bus that
   * filters by interest is told which topics have local subscribers, and every change.
   * The caller owns the bus: Server.close() does not close it.
   */
  useBus(bus: Bus | null): void {
    this.#core.useBus(bus);
  }

  /** The transport new connections get: 'lean' once listen() adopted the listener, else 'socket'. */
  get transportKind(): TransportKind {
    return this.#core.transportKind;
  }

  /**
   * Starts listening. Resolves with the bound address. `reusePort` (Node >= 22.12) binds a
   * socket of this process's own next to other processes' on the same port (SO_REUSEPORT):
   * the kernel balances new connections between them. `handle` listens on a listening socket
   * handed over by another process instead (port and host are then ignored).
   * @throws Error when already listening, or when `transport: 'lean'` was asked for and is unavailable.
   */
  listen(port = 0, host?: string, listenOptions: ListenExtras = {}): Promise<AddressInfo> {
    return this.#core.listen(port, host, listenOptions);
  }

  /** The listening socket's handle, to hand to another process (which passes it to listen() as `handle`); null when not listening. */
  get listeningHandle(): object | null {
    return this.#core.listeningHandle;
  }

  /** The bound address, once listening. */
  address(): AddressInfo | null {
    return this.#core.address();
  }

  /**
   * Takes an upgrade from a node:http server's 'upgrade' event:
   * `httpServer.on('upgrade', (req, socket, head) => server.handleUpgrade(req, socket, head))`.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#core.handleUpgrade(req, socket, head);
  }

  /**
   * Graceful shutdown: stop accepting, send 1001 to every connection, wait for them to close
   * up to timeoutMs (default limits.shutdownTimeoutMs), then destroy what is left. Resolves
   * when every socket is gone.
   */
  close(timeoutMs?: number): Promise<void> {
    return this.#core.close(timeoutMs);
  }

  /**
   * Resolves once no socket is left (handshaking ones included), or after timeoutMs: true if
   * none is left. For a drain that closes connections itself and keeps the port open meanwhile.
   */
  whenIdle(timeoutMs: number): Promise<boolean> {
    return this.#core.whenIdle(timeoutMs);
  }

  /**
   * Publishes a message to every subscriber of `topic`: encoded once, batched per tick, the
   * same bytes written to every subscriber under its own backpressure budget. Returns the
   * number of subscribers it will reach. `from`, the publisher, is what pubsub's envelope hook
   * stamps; with a bus attached the message also goes to the other processes (Topics.publish).
   */
  publish(topic: string, data: string | Buffer, isBinary: boolean = typeof data !== 'string', from: string | null = null): number {
    return this.#core.publish(topic, data, isBinary, from);
  }

  /** How many connections of this process are subscribed to `topic`. */
  subscriberCount(topic: string): number {
    return this.#core.subscriberCount(topic);
  }

  /** Calls fn for every open connection. */
  forEachConnection(fn: (conn: Connection<T>) => void): void {
    this.#core.forEachConnection(fn);
  }
}

/** The core behind a server: for murmur's own modules and tests, not part of the package's surface. */
export function serverCore<T>(server: Server<T>): ServerCore<T> {
  return coreOf(server as Server<never>) as ServerCore<T>;
}
