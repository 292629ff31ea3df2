import { nextTick } from 'node:process';
import { Buffer } from 'node:buffer';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { DEFAULT_LIMITS, LISTEN_BACKLOG } from '../limits.js';
import type { Limits } from '../limits.js';
import { validateUpgrade, HttpReject } from '../http/index.js';
import type { RequestHead } from '../http/index.js';
import type { FrameParser, FrameParserOptions } from '../protocol/index.js';
import { CloseCode, encodeServerFrame, parseExtensions, negotiateDeflate } from '../protocol/index.js';
import type { DeflateAgreement } from '../protocol/index.js';
import { socketTransport } from '../transport/socket-transport.js';
import { leanTransport } from '../transport/lean-transport.js';
import { verifyLeanTransport, adoptLeanConnections } from '../transport/lean-support.js';
import type { LeanHandle } from '../transport/lean-support.js';
import type { Transport, TransportKind } from '../transport/transport.js';
import { Sweeper } from './sweeper.js';
import { idleGc } from './idle-gc.js';
import { resolveDeflate, maybeDeflate } from './deflate.js';
import type { DeflateConfig } from './deflate.js';
import { Topics } from '../pubsub/topics.js';
import { Connection, ConnState } from './connection.js';
import type { OwedPong } from './connection.js';
import type { InflateWait } from './bounded-inflate.js';
import { Admission } from './admission.js';
import { readFileSync } from 'node:fs';
import type { Handlers, Handoff, ServerOptions, SlowConsumerPolicy } from './options.js';
import type { Bus } from '../pubsub/bus.js';
import type { Server } from './server.js';
import { defaultOnError, RateLimitedLog, stderrLine } from './error-log.js';

/** The first header byte's RSV1 bit: set on a message compressed by permessage-deflate (RFC 7692 6). */
const RSV1 = 0x40;

/** Distinct Sec-WebSocket-Extensions values whose answers a server keeps: browsers send a handful; a client inventing values only empties the table. */
const EXTENSION_ANSWERS = 64;

/** Options of listen() beyond port and host. */
export interface ListenExtras {
  reusePort?: boolean;
  /** The accept queue's length, over options.backlog (a group of workers sharing one socket sets it). */
  backlog?: number;
  /** A listening socket handed over by another process (child_process send). */
  handle?: object;
}

/** Counters a server keeps; read them for metrics. */
export interface ServerStats {
  accepted: number;
  upgrades: number;
  rejected: Record<string, number>;
  handshakeTimeouts: number;
  idleTimeouts: number;
  protocolErrors: number;
  messagesIn: number;
  bytesIn: number;
  droppedMessages: number;
  slowConsumerCloses: number;
  /** Connections closed with 1008 for pinging past maxOwedPings while their pongs went unread. */
  pingFloodCloses: number;
  /** Sockets refused 503 because they took one of the descriptorReserve descriptors, plus accepts that failed with EMFILE/ENFILE. */
  descriptorExhaustions: number;
}

/**
 * What a server's connections need from it, behind the public Server (a façade holding one):
 * the state and calls of the hot path, the accept paths and the counters. Not exported by the
 * package: connections reach it through their class's prototype (`conn.server`), so it costs
 * no bytes per connection and every access stays monomorphic.
 */
export class ServerCore<T = unknown> {
  readonly handlers: Handlers<T>;
  readonly limits: Limits;
  readonly slowConsumer: SlowConsumerPolicy;
  readonly selectProtocol: ServerOptions<T>['selectProtocol'];
  readonly verifyOrigin: ServerOptions<T>['verifyOrigin'];
  readonly upgradeHeaders: ServerOptions<T>['upgradeHeaders'];
  /** Requests on the own listener that the application takes elsewhere (plain HTTP); see Handoff. */
  handoff: Handoff | undefined;
  /** Sec-WebSocket-Version values taken (ServerOptions.versions). */
  readonly versions: readonly string[] | undefined;
  /** Whether pings are answered by the server (ServerOptions.autoPong). */
  readonly autoPong: boolean;
  readonly parserOptions: FrameParserOptions;
  /** Options of the frames of a connection that negotiated permessage-deflate: RSV1 allowed on a message's first frame. */
  readonly deflateParserOptions: FrameParserOptions;
  /** permessage-deflate settings, or null when the server does not negotiate it. */
  readonly deflate: DeflateConfig | null;
  /**
   * Answers to Sec-WebSocket-Extensions values already seen (every browser of a kind sends the
   * same one): the handshake of a deflate connection parses nothing and allocates no answer.
   * At most EXTENSION_ANSWERS entries; emptied when full.
   */
  private readonly extensionAnswers: Map<string, { agreement: DeflateAgreement; header: string } | null | undefined>;
  /** Every connection's deadlines (handshake, heartbeat, idle, close), on one timer. */
  readonly sweeper: Sweeper;
  /**
   * A frame parser lent to connections for chunks that hold whole frames (the usual case), so
   * an idle connection holds none; a connection keeps it only while a frame is cut off.
   */
  spareParser: FrameParser | null;
  readonly stats: ServerStats;
  /** Topics and fan-out (conn.subscribe, server.publish). */
  readonly pubsub: Topics;
  /** Connections past the handshake and not yet closed. */
  openCount: number;
  /** Sockets accepted and not yet closed, handshaking ones included. */
  socketCount: number;
  draining: boolean;
  /** Handshakes in flight, sockets per address, descriptor exhaustion: what admits a new socket. */
  readonly admission: Admission;
  /** Pongs held back by the control budget, by connection (only connections that owe one are here). */
  readonly owedPongs: Map<Connection<T>, OwedPong>;
  /** Connections whose reading waits for a large message's inflation (only those are here). */
  readonly inflating: Map<Connection<T>, InflateWait>;
  /**
   * Scratch of the chunk being read: the reading connection's idle mark before the chunk, or
   * -1 once a frame other than a ping moved it. Pings put the mark back (they are not activity).
   */
  markBeforeChunk: number;
  /**
   * Accepted descriptors numbered from here up are inside the reserve (descriptorReserve below
   * the soft RLIMIT_NOFILE): answered 503 and closed. The kernel hands out the lowest free
   * number, so such a number means every lower one is taken. Infinity when the limit is unknown.
   */
  private reserveFrom: number;
  private net: NetServer | null;
  private kind: TransportKind;
  private readonly options: ServerOptions<T>;
  private flushList: Connection<T>[];
  private flushScheduled: boolean;
  private drainWaiters: Array<() => void>;
  private busRef: Bus | null;
  /** This server's own Connection subclass, with the server on its prototype (no field per connection). */
  private readonly Conn: new (transport: Transport, io: unknown) => Connection<T>;
  /** Where server-level errors go (ServerOptions.onError, else a rate-limited stderr log). */
  private readonly onError: (err: Error, kind: string) => void;

  /** The public Server holding this core (what `conn.server` gives the application). */
  readonly facade: Server<T>;
  /** Whether this server holds the process's idle GC ticker (src/server/idle-gc.ts). */
  private holdsIdleGc: boolean;

  constructor(options: ServerOptions<T>, facade: Server<T>) {
    this.facade = facade;
    this.options = options;
    this.handlers = options.handlers;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.slowConsumer = options.slowConsumer ?? 'drop';
    this.selectProtocol = options.selectProtocol;
    this.verifyOrigin = options.verifyOrigin;
    this.upgradeHeaders = options.upgradeHeaders;
    this.handoff = options.handoff;
    this.versions = options.versions;
    this.autoPong = options.autoPong !== false;
    this.onError = options.onError ?? defaultOnError(new RateLimitedLog(stderrLine, this.limits.errorLogIntervalMs));
    this.parserOptions = { maxPayload: this.limits.maxPayload, expectMasked: true };
    this.deflateParserOptions = { maxPayload: this.limits.maxPayload, expectMasked: true, rsvAllowed: RSV1 };
    this.deflate = resolveDeflate(options.perMessageDeflate);
    this.extensionAnswers = new Map();
    this.sweeper = new Sweeper(sweepTimings(this.limits));
    this.spareParser = null;
    class ServerConnection extends Connection<T> {}
    Object.defineProperty(ServerConnection.prototype, 'core', { value: this, enumerable: false, writable: false, configurable: false });
    this.Conn = ServerConnection;
    this.stats = {
      accepted: 0,
      upgrades: 0,
      rejected: Object.create(null) as Record<string, number>,
      handshakeTimeouts: 0,
      idleTimeouts: 0,
      protocolErrors: 0,
      messagesIn: 0,
      bytesIn: 0,
      droppedMessages: 0,
      slowConsumerCloses: 0,
      pingFloodCloses: 0,
      descriptorExhaustions: 0,
    };
    this.admission = new Admission(options.trustedAddresses);
    this.owedPongs = new Map();
    this.inflating = new Map();
    this.markBeforeChunk = -1;
    this.reserveFrom = reserveStart(this.limits.descriptorReserve);
    this.pubsub = new Topics(this.limits.maxTopicLength, this.limits.maxSubscriptions, options.history ?? null, this.limits.maxHistoryTopics, this.limits.maxHistoryBytes);
    if (this.deflate !== null) this.pubsub.compressFrame = (frame, small) => this.compressFrame(frame, small);
    this.busRef = null;
    if (options.bus !== undefined) this.useBus(options.bus);
    this.openCount = 0;
    this.socketCount = 0;
    this.draining = false;
    this.net = null;
    this.kind = 'socket';
    this.flushList = [];
    this.flushScheduled = false;
    this.drainWaiters = [];
    this.holdsIdleGc = false;
  }

  /** The bus publishes go to other processes through, or null. */
  get bus(): Bus | null {
    return this.busRef;
  }

  /**
   * Attaches the bus (replacing any other; null detaches): publishes made here go to it, and
   * messages it brings from other processes are fanned out to local subscribers only, through
   * the same encode-once batched path as a local publish, never back onto the bus. A bus that
   * filters by interest is told which topics have local subscribers, and every change.
   * The caller owns the bus: Server.close() does not close it.
   */
  useBus(bus: Bus | null): void {
    this.busRef = bus;
    this.pubsub.useBus(bus);
  }

  /** The transport new connections get: 'lean' once listen() adopted the listener, else 'socket'. */
  get transportKind(): TransportKind {
    return this.kind;
  }

  /**
   * Starts listening. Resolves with the bound address. `reusePort` (Node >= 22.12) binds a
   * socket of this process's own next to other processes' on the same port (SO_REUSEPORT):
   * the kernel balances new connections between them. `handle` listens on a listening socket
   * handed over by another process instead (port and host are then ignored).
   */
  async listen(port = 0, host?: string, listenOptions: ListenExtras = {}): Promise<AddressInfo> {
    if (this.net !== null) throw new Error('already listening');
    const wanted = this.options.transport ?? transportFromEnv();
    let lean = false;
    if (this.options.tls === undefined && wanted !== 'socket') {
      const check = await verifyLeanTransport();
      if (check.ok) lean = true;
      else if (wanted === 'lean') throw new Error(`murmur: the lean transport is unavailable here: ${check.reason}`);
      else logOnce(`[murmur] lean transport unavailable (${check.reason}); using net.Socket per connection`);
    }
    const addr = await this.bind(port, host, listenOptions);
    if (lean) {
      if (adoptLeanConnections(this.net!, (handle) => this.adoptHandle(handle))) this.kind = 'lean';
      else if (wanted === 'lean') throw new Error('murmur: the listener could not be adopted by the lean transport');
      else logOnce('[murmur] this listener cannot be driven by the lean transport; using net.Socket per connection');
    }
    return addr;
  }

  private bind(port: number, host: string | undefined, listenOptions: ListenExtras): Promise<AddressInfo> {
    const onSocket = (socket: Socket): void => this.adopt(socket);
    const srv = this.options.tls !== undefined ? createTlsServer(this.options.tls, onSocket) : createNetServer({ noDelay: true }, onSocket);
    if (this.options.tls !== undefined) {
      // A failed TLS handshake is the client's problem; never let it reach 'error'.
      srv.on('tlsClientError', (_err, socket) => socket.destroy());
    }
    this.net = srv;
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      const reuse = listenOptions.reusePort === true ? { reusePort: true, exclusive: true } : {};
      const backlog = listenOptions.backlog ?? this.options.backlog ?? LISTEN_BACKLOG;
      const listening = (): void => {
        srv.off('error', reject);
        srv.on('error', (err) => this.onListenerError(err));
        this.startSweeping();
        resolve(srv.address() as AddressInfo);
      };
      // A handed listening socket is listened on again here, and listen() sets its queue's
      // length anew: it must be given (Node's options form takes no backlog with a handle).
      if (listenOptions.handle !== undefined) srv.listen(listenOptions.handle, backlog, listening);
      else srv.listen({ port, host, backlog, ...reuse }, listening);
    });
  }

  /**
   * The listener failed. An accept that fails with EMFILE/ENFILE only gets here when libuv's own
   * spare descriptor is gone too (otherwise libuv accepts and closes what is pending, silently):
   * counted and said once, never thrown. The reserve (see reserveFrom) keeps our own accepts
   * from getting there.
   */
  private onListenerError(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EMFILE' && code !== 'ENFILE') {
      this.reportError(err, 'listen');
      return;
    }
    this.stats.descriptorExhaustions++;
    this.reportError(new Error(`out of file descriptors (${code}): pending connections were closed unanswered; raise the limit (ulimit -n)`, { cause: err }), 'descriptors');
  }

  /** Marks whether an accepted descriptor lies in the reserve: the process is nearly out, the socket is answered 503 and closed. */
  private checkReserve(fd: number | undefined): void {
    const full = fd !== undefined && fd >= this.reserveFrom;
    const was = this.admission.descriptorsExhausted;
    this.admission.descriptorsExhausted = full;
    if (!full) return;
    this.stats.descriptorExhaustions++;
    // Said when the reserve is entered, not for every socket refused while it lasts.
    if (!was) this.reportError(new Error(`nearly out of file descriptors (limit ${this.reserveFrom + this.limits.descriptorReserve}, ${this.limits.descriptorReserve} kept in reserve): answering new connections 503 while it lasts`), 'descriptors');
  }

  /** The listening socket's handle, to hand to another process (which passes it to listen() as `handle`); null when not listening. */
  get listeningHandle(): object | null {
    return (this.net as unknown as { _handle?: object | null } | null)?._handle ?? null;
  }

  /** The bound address, once listening. */
  address(): AddressInfo | null {
    const a = this.net?.address();
    return a !== null && typeof a === 'object' ? a : null;
  }

  /** Takes one accepted TCP handle (lean transport). */
  private adoptHandle(handle: LeanHandle): void {
    this.stats.accepted++;
    this.socketCount++;
    this.startSweeping();
    this.checkReserve(handle.fd);
    const conn = new this.Conn(leanTransport, handle);
    conn.startHandshake();
  }

  /** Takes one accepted socket: reads its upgrade request and, if valid, opens a connection. */
  adopt(socket: Socket): void {
    this.stats.accepted++;
    this.socketCount++;
    this.startSweeping();
    this.checkReserve(descriptorOf(socket));
    const conn = new this.Conn(socketTransport, socket);
    conn.startHandshake();
  }

  /**
   * Takes an upgrade from a node:http server's 'upgrade' event:
   * `httpServer.on('upgrade', (req, socket, head) => server.handleUpgrade(req, socket, head))`.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.stats.accepted++;
    this.socketCount++;
    this.startSweeping();
    this.checkReserve(descriptorOf(socket));
    const conn = new this.Conn(socketTransport, socket);
    conn.startFromUpgrade(validateUpgrade(headFromIncoming(req), this.versions), head);
  }

  /**
   * Graceful shutdown: stop accepting, send 1001 to every connection, wait for them to close
   * up to timeoutMs, then destroy what is left. Resolves when every socket is gone.
   */
  async close(timeoutMs = this.limits.shutdownTimeoutMs): Promise<void> {
    this.draining = true;
    const listening = this.stopListening();
    this.sweeper.forEach((e) => {
      const c = e as Connection<T>;
      if (c.state === ConnState.Open) c.close(CloseCode.GoingAway, 'server shutting down');
    });
    this.flushAll();
    if (!(await this.whenIdle(timeoutMs))) {
      this.sweeper.forEach((e) => (e as Connection<T>).terminate());
      if (this.socketCount > 0) await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    }
    await listening;
    this.sweeper.stop();
    if (this.holdsIdleGc) {
      this.holdsIdleGc = false;
      idleGc.release();
    }
  }

  /** Starts the sweep and, unless ServerOptions.idleGc is false, holds the process's idle GC ticker (once). */
  private startSweeping(): void {
    this.sweeper.start();
    if (this.holdsIdleGc || this.options.idleGc === false) return;
    this.holdsIdleGc = true;
    idleGc.hold();
  }

  /**
   * Stops accepting: closes the listening socket and leaves every connection open (close()
   * is the graceful shutdown of both). Resolves once the listener is closed.
   */
  stopListening(): Promise<void> {
    const net = this.net;
    this.net = null;
    return net === null ? Promise.resolve() : new Promise<void>((resolve) => net.close(() => resolve()));
  }

  /**
   * Resolves once no socket is left (handshaking ones included), or after timeoutMs: true if
   * none is left. For a drain that closes connections itself and keeps the port open meanwhile.
   */
  async whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.socketCount === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.drainWaiters.push(resolve)),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    return this.socketCount === 0;
  }

  /**
   * Publishes a message to every subscriber of `topic`: encoded once, batched per tick, the
   * same bytes written to every subscriber under its own backpressure budget. Returns the
   * number of subscribers it will reach.
   */
  publish(topic: string, data: string | Buffer, isBinary: boolean = typeof data !== 'string', from: string | null = null): number {
    return this.pubsub.publish(topic, data, isBinary, null, from);
  }

  subscriberCount(topic: string): number {
    return this.pubsub.subscriberCount(topic);
  }

  /** Calls fn for every open connection. */
  forEachConnection(fn: (conn: Connection<T>) => void): void {
    this.sweeper.forEach((e) => {
      const c = e as Connection<T>;
      if (c.state === ConnState.Open) fn(c);
    });
  }

  /**
   * A fan-out frame as a subscriber that negotiated deflate gets it: compressed with RSV1 set
   * (small: with the smallest window), or the frame itself when not worth compressing. Called
   * once per frame and window for all such subscribers of a batch.
   */
  compressFrame(frame: Buffer, small: boolean): Buffer {
    const b1 = frame[1]! & 0x7f;
    const payload = frame.subarray(b1 < 126 ? 2 : b1 === 126 ? 4 : 10);
    const opcode = frame[0]! & 0x0f;
    const z = maybeDeflate(this.deflate!, payload, opcode === 2, small);
    return z === null ? frame : encodeServerFrame(opcode, z, false, true);
  }

  /** The answer to a Sec-WebSocket-Extensions value: the agreement and header, null to decline, undefined when the value is malformed (400). Needs `deflate`. */
  answerExtensions(value: string): { agreement: DeflateAgreement; header: string } | null | undefined {
    const known = this.extensionAnswers.get(value);
    if (known !== undefined || this.extensionAnswers.has(value)) return known;
    const offers = parseExtensions(value);
    const answer = offers === null ? undefined : negotiateDeflate(offers, this.deflate!.policy);
    if (this.extensionAnswers.size >= EXTENSION_ANSWERS) this.extensionAnswers.clear();
    this.extensionAnswers.set(value, answer);
    return answer;
  }

  /**
   * Calls fn for the `n` oldest open connections that received nothing for `quietMs` (the
   * sweep's coarse clock), in the order they arrived, without copying the list (load shedding,
   * src/app/shed.ts: a connection with a request in flight is not the one to move); fn may
   * close them. Returns how many it got.
   */
  forOldest(n: number, quietMs: number, fn: (conn: Connection<T>) => void): number {
    const now = this.sweeper.now;
    return this.sweeper.forFirst(n, (e) => {
      const c = e as Connection<T>;
      if (c.state !== ConnState.Open || now - c.mark < quietMs) return false;
      fn(c);
      return true;
    });
  }

  // ---- called by connections ------------------------------------------------------------

  scheduleFlush(conn: Connection<T>): void {
    this.flushList.push(conn);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      nextTick(serverFlush, this);
    }
  }

  flushAll(): void {
    this.flushScheduled = false;
    const list = this.flushList;
    this.flushList = [];
    for (let i = 0; i < list.length; i++) list[i]!.flush();
  }

  connectionOpened(_conn: Connection<T>): void {
    this.openCount++;
    this.stats.upgrades++;
  }

  connectionClosed(opened: boolean): void {
    if (opened) this.openCount--;
    this.socketCount--;
    if (this.socketCount === 0 && this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  rejected(r: HttpReject): void {
    this.stats.rejected[r.reason] = (this.stats.rejected[r.reason] ?? 0) + 1;
  }

  /** A server-level error (not a peer's protocol error): to onError, with its kind. */
  reportError(err: unknown, kind: string): void {
    this.onError(err instanceof Error ? err : new Error(String(err)), kind);
  }
}

/**
 * The sweep's period: a quarter of the shortest deadline, between 25 ms and 1 s, so every
 * deadline is met within a quarter of itself, and within 1 s with the defaults (5 s closing).
 */
function sweepTimings(limits: Limits): { periodMs: number; tickMs: number } {
  let shortest = Infinity;
  for (const ms of [limits.handshakeTimeoutMs, limits.closeTimeoutMs, limits.pingIntervalMs, limits.idleTimeoutMs]) {
    if (ms > 0 && ms < shortest) shortest = ms;
  }
  const periodMs = Math.min(1000, Math.max(25, Math.floor(shortest / 4)));
  return { periodMs, tickMs: Math.min(250, periodMs) };
}

function transportFromEnv(): 'auto' | 'socket' | 'lean' {
  const v = process.env.MURMUR_TRANSPORT;
  return v === 'socket' || v === 'lean' ? v : 'auto';
}

/**
 * The first descriptor number of the reserve: `reserve` below the process's soft limit on open
 * files, read from /proc/self/limits (Linux). Infinity (no reserve) where it cannot be read or
 * is unlimited.
 */
function reserveStart(reserve: number): number {
  if (reserve <= 0) return Infinity;
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'latin1'));
    return m === null ? Infinity : Math.max(0, Number(m[1]) - reserve);
  } catch {
    return Infinity;
  }
}

const logged = new Set<string>();
function logOnce(line: string): void {
  if (logged.has(line)) return;
  logged.add(line);
  stderrLine(line);
}

/** The descriptor under a net.Socket (undefined for a TLS socket's or any other stream). */
function descriptorOf(socket: Duplex): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

function serverFlush(server: ServerCore<never>): void {
  server.flushAll();
}

/** Builds a RequestHead from node:http's parsed request (rawHeaders keeps repeats and order). */
function headFromIncoming(req: IncomingMessage): RequestHead {
  const headers: Array<[string, string]> = [];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) headers.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
  return { method: req.method ?? '', target: req.url ?? '/', versionMinor: req.httpVersionMinor, headers };
}
