/**
 * `murmur serve` as a library: one port, owned by the murmur Server's own listener (the lean
 * transport on raw TCP handles where it is available). Each connection's first request head
 * is read by the library's parser under its limits (head bytes, header count, handshake
 * timeout: 431, 414, 400, 408). A WebSocket upgrade on /ws stays a murmur connection; any
 * other request (health, readiness, metrics, the HTTP API, the demo page and the browser
 * client, the mesh bus path, upgrades on other paths) is handed with its bytes to a node:http
 * server that never listens itself, which serves it and the connection's later requests with
 * keep-alive, pipelining and chunked bodies (docs/architecture.md, "serve's port").
 *
 * ```ts
 * const app = await startApp({ port: 8080, apiKey: process.env.MURMUR_API_KEY });
 * // later
 * await app.shutdown(); // readyz 503, 1012 to clients, close handshakes, then the port closes
 * ```
 *
 * With `cluster` options the app joins a cluster (src/app/cluster.ts): presence covers every
 * node, GET /api/cluster/members lists the members, /metrics shows the gossip figures, and
 * the app emits 'member' (ClusterMemberEvent) for every membership change.
 */
import { EventEmitter } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingMessage, Server as HttpServer, ServerOptions, ServerResponse } from 'node:http';
import type { AddressInfo, ListenOptions, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolveConfig, ConfigError } from './config.js';
import { DEFAULT_LIMITS } from '../limits.js';
import type { AppConfig } from './config.js';
import { Realtime } from './realtime.js';
import type { PresenceStore } from './presence.js';
import { renderMetrics, METRICS_CONTENT_TYPE } from './metrics.js';
import type { HttpCounters } from './metrics.js';
import { AppErrorCode, topicError } from './serve-protocol.js';
import { requestTarget, userProblem } from './validate.js';
import { DEMO_HTML, DEMO_JS } from './demo.js';
import { AppCluster, ClusterConfigError } from './cluster.js';
import { Shedder } from './shed.js';
import { LogLimiter } from '../cluster/bus/stats.js';
import { MeshBus } from '../cluster/bus/mesh.js';
import { RedisBus } from '../cluster/bus/redis.js';
import { gossipMembership } from '../cluster/bus/membership.js';
import { MESH_PATH } from '../cluster/bus/bus-config.js';
import { isWebSocketUpgrade, splitTarget, STATUS_TEXT } from '../http/index.js';
import type { RequestHead } from '../http/index.js';
import type { ClusterOptions } from './cluster.js';
import type { StreamPosition } from '../pubsub/history.js';
import type { OrderedFailure } from '../pubsub/bus.js';

/** The path WebSocket upgrades are accepted on. */
export const WS_PATH = '/ws';
/** The path the browser client library is served at. */
export const CLIENT_PATH = '/murmur-client.js';

export interface AppOptions extends Partial<AppConfig> {
  /** A presence store to use instead of this process's LocalPresence (ignored with `cluster`, which brings its own). */
  presence?: PresenceStore;
  /** Join a cluster: membership by gossip and presence replicated to every node. */
  cluster?: ClusterOptions;
  /** Where client-triggered errors are logged (rate-limited, one line per kind per 10 s). Default: stderr. */
  log?: (line: string) => void;
}

const CSP = "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export class App extends EventEmitter {
  readonly config: AppConfig;
  readonly realtime: Realtime;
  /** The cluster side, or null when the app runs alone. */
  readonly cluster: AppCluster | null;
  /** Load measurement, overload protection and rebalancing (src/app/shed.ts). */
  readonly shedder: Shedder;
  /**
   * Serves the plain HTTP requests handed over by the port's listener (and upgrades on paths
   * other than /ws). It never listens itself.
   */
  readonly http: HttpServer;
  readonly httpCounters: HttpCounters;
  readonly startedAt: number;
  #shutdown: Promise<void> | null;
  /** The mesh bus, when the cluster uses one (its links arrive on MESH_PATH). */
  #mesh: MeshBus | null = null;
  #clientJs: string;
  /** Requests in flight per HTTP connection, for connections that have some (#admitPipelined). */
  readonly #inFlight = new WeakMap<object, number>();
  /** Set when the drain delay is over: HTTP responses close their connection from then on. */
  #httpClosing = false;

  /** @throws ConfigError for a bad setting (cluster settings included). */
  constructor(options: AppOptions = {}) {
    super();
    const { presence, cluster, log, ...config } = options;
    this.config = resolveConfig(config);
    if (cluster !== undefined) {
      const c = this.config;
      try {
        this.cluster = new AppCluster(cluster, c.host, { maxMembers: c.presenceMaxMembers, maxMetaBytes: c.presenceMaxMetaBytes, maxTopicsPerConn: c.presenceMaxTopics });
      } catch (err) {
        if (err instanceof ClusterConfigError) throw new ConfigError(err.message);
        throw err;
      }
      this.cluster.on('member', (e) => this.emit('member', e));
    } else this.cluster = null;
    this.realtime = new Realtime(this.config, this.cluster?.presence ?? presence, log);
    // Shedding decisions are the node's, not a client's: stderr, beside the cluster's lines.
    this.shedder = new Shedder(this.realtime, this.cluster, (line) => process.stderr.write(`${line}\n`));
    this.httpCounters = { requests: Object.create(null) as Record<string, number> };
    this.startedAt = Date.now();
    this.#shutdown = null;
    this.#clientJs = loadClientLibrary();
    this.http = createServer(httpOptions(this.config), (req, res) => {
      if (!this.#admitPipelined(req, res)) return;
      this.#onRequest(req, res).catch((err: unknown) => {
        this.realtime.errorLog.line('http-internal', `[murmur] internal error answering ${req.method} ${JSON.stringify((req.url ?? '').slice(0, 200))}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        if (!res.headersSent) this.#json(res, 'error', 500, { error: 'INTERNAL', message: 'internal error' });
        else res.destroy();
      });
    });
    // A response the client does not read is never written: without progress for this long, its connection closes.
    this.http.timeout = this.config.httpRequestTimeoutMs;
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    this.http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (!socket.writable) return socket.destroy();
      const status = clientErrorStatus(err.code);
      socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
    // node:http hands CONNECT to this event and destroys the socket when nobody listens.
    this.http.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      socket.on('error', () => {});
      socket.end(`HTTP/1.1 405 ${STATUS_TEXT[405]}\r\nAllow: GET, HEAD, POST\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
    this.realtime.server.handoff = (head) => this.#route(head);
  }

  /**
   * Where a request read on the port goes: WebSocket upgrades on /ws stay with the murmur
   * Server (undefined); everything else goes to node:http.
   */
  #route(head: RequestHead): ((socket: Socket, bytes: Buffer) => void) | undefined {
    if (splitTarget(head.target)?.path === WS_PATH && isWebSocketUpgrade(head)) return undefined;
    return this.#toHttp;
  }

  /** Hands a connection and the bytes read from it so far to node:http, which reads the rest. */
  readonly #toHttp = (socket: Socket, bytes: Buffer): void => {
    // Before node:http attaches: its first 'data' is then the replayed bytes, in order, ahead of
    // anything still in the kernel.
    socket.unshift(bytes);
    this.http.emit('connection', socket);
    socket.resume();
  };

  /**
   * Starts listening on config.port/host (port 0 picks a free one), or on `on`: other listen
   * options (reusePort, backlog), or a listening socket handed over by another process (worker
   * processes share one, src/app/workers.ts), alone or as `{ handle, backlog }`. In a cluster,
   * then binds the gossip sockets and starts joining the seeds in the background.
   */
  async listen(on?: ListenOptions | object): Promise<AddressInfo> {
    const server = this.realtime.server;
    const options = (on ?? {}) as ListenOptions & { reusePort?: boolean; backlog?: number };
    const handed = on as { handle?: object; backlog?: number } | undefined;
    if (handed?.handle !== undefined) await server.listen(0, undefined, { handle: handed.handle, ...(handed.backlog !== undefined ? { backlog: handed.backlog } : {}) });
    else if (on !== undefined && !('port' in on) && !('host' in on)) await server.listen(0, undefined, { handle: on });
    else await server.listen(options.port ?? this.config.port, options.host ?? this.config.host, { reusePort: options.reusePort === true, ...(options.backlog !== undefined ? { backlog: options.backlog } : {}) });
    // node:http starts its connection list and its header/request timeout checks on
    // 'listening'; it never listens itself here, so it is told once the port is ours.
    this.http.emit('listening');
    if (server.transportKind !== 'lean') {
      process.stderr.write('[murmur] serve: WebSocket connections use net.Socket per connection (the lean transport is off); /metrics murmur_transport_info and /readyz say so\n');
    }
    this.realtime.start();
    this.shedder.start();
    const addr = server.address()!;
    if (this.cluster !== null) {
      this.realtime.busPending = (this.cluster.settings.bus ?? 'mesh') !== 'none';
      try {
        await this.cluster.start(addr.port);
        await this.#startBus(this.cluster);
        this.realtime.busPending = false;
      } catch (err) {
        // The gossip port is taken, Redis does not answer (or similar): do not leave a
        // half-started server behind.
        await this.cluster.stop();
        await this.realtime.server.close(0);
        this.realtime.stop();
        this.shedder.stop();
        throw err;
      }
    }
    return addr;
  }

  /** The mesh bus, when the cluster uses one (worker processes also take its links on a port of their own). */
  get mesh(): MeshBus | null {
    return this.#mesh;
  }

  /** This process's metrics (the Prometheus text). */
  localMetrics(): string {
    return renderMetrics(this.realtime, this.httpCounters, this.startedAt, this.cluster, this.shedder);
  }

  /** What GET /metrics answers; worker processes answer with every worker's (src/app/workers.ts). */
  metricsText: () => string | Promise<string> = () => this.localMetrics();

  get port(): number {
    return this.realtime.server.address()?.port ?? 0;
  }

  /** Whether the port is open (from listen() until the shutdown closes it). */
  get listening(): boolean {
    return this.realtime.server.address() !== null;
  }

  /** The listening socket's handle, for handing the port to other processes (src/app/workers.ts). */
  get listeningHandle(): object | null {
    return this.realtime.server.listeningHandle;
  }

  get draining(): boolean {
    return this.realtime.draining;
  }

  /**
   * Graceful shutdown (what SIGTERM does): /readyz answers 503 at once; after drainDelayMs
   * every WebSocket gets 1012 with a retry-after hint; close handshakes get up to
   * shutdownTimeoutMs; then the HTTP server closes. Idempotent.
   */
  shutdown(): Promise<void> {
    this.#shutdown ??= (async () => {
      // When the drain delay is over (/readyz said 503 all along), kept-alive HTTP connections
      // go: idle ones at once, busy ones after their response. A listener on the socket
      // transport counts them, and would otherwise wait for them to time out before closing.
      const closeHttp = setTimeout(() => {
        this.#httpClosing = true;
        this.http.closeIdleConnections();
      }, this.config.drainDelayMs);
      await this.realtime.drain();
      this.shedder.stop();
      clearTimeout(closeHttp);
      this.#httpClosing = true;
      // The bus goes before the gossip: peers close their links to a member that leaves.
      const bus = this.realtime.bus;
      this.realtime.bus = null;
      this.realtime.server.useBus(null);
      await bus?.transport.close();
      // After the drain: every connection's leave went out as deltas; leaving now drops
      // whatever is left of this node's presence everywhere at once.
      await this.cluster?.leave();
      // node:http never listened: close() only stops its timeout checks and closes the idle
      // connections. A request still in flight gets 2 s to finish, then its connection goes.
      this.http.close();
      const t = setTimeout(() => this.http.closeAllConnections(), 2_000);
      t.unref();
    })();
    return this.#shutdown;
  }

  /**
   * The cluster bus (after the gossip node started): mesh links to the other nodes found by
   * gossip, or Redis pub/sub, or none. Messages cross it as records (src/pubsub/bus-record.ts).
   */
  async #startBus(cluster: AppCluster): Promise<void> {
    const o = cluster.settings;
    const kind = o.bus ?? 'mesh';
    if (kind === 'none') return;
    const log = (line: string) => process.stderr.write(`${line}\n`);
    let bus: MeshBus | RedisBus;
    if (kind === 'mesh') {
      const mesh = new MeshBus({ membership: gossipMembership(cluster.node), keys: o.keys, label: o.label ?? '', log });
      this.#mesh = mesh;
      bus = mesh;
    } else {
      const label = o.label ?? '';
      bus = await RedisBus.connect({ url: o.redisUrl, channelPrefix: `murmur:${label === '' ? 'default' : label}:`, log });
    }
    const rejects = new LogLimiter(log);
    const pubsub = this.realtime.server.pubsub;
    // Every node checks names where they enter, so a record that does not decode is another version or damage.
    pubsub.onRejected = () => rejects.line('rejected', `[murmur] bus: dropped a record from another node that does not decode (${pubsub.busCounters.rejected} so far)`);
    this.realtime.bus = { kind, transport: bus };
    this.realtime.server.useBus(bus);
    this.#mesh?.start();
  }

  // ---- HTTP -------------------------------------------------------------------------------

  /**
   * Counts the requests in flight on the request's connection: node:http parses every request
   * of a chunk it reads (about 1,500 small ones in 64 KiB) before a response is written, and
   * keeps each one's objects until its response is. Beyond httpMaxPipelined the connection
   * closes. The count lives in a WeakMap only while a connection has requests in flight.
   */
  #admitPipelined(req: IncomingMessage, res: ServerResponse): boolean {
    const socket = req.socket;
    if (socket.destroyed) return false;
    const n = (this.#inFlight.get(socket) ?? 0) + 1;
    if (n > this.config.httpMaxPipelined) {
      this.realtime.errorLog.line('http-pipelined', `[murmur] http: closed a connection from ${socket.remoteAddress ?? '?'} with more than ${this.config.httpMaxPipelined} requests in flight`);
      socket.destroy();
      return false;
    }
    this.#inFlight.set(socket, n);
    res.once('close', () => {
      const left = (this.#inFlight.get(socket) ?? 1) - 1;
      if (left === 0) this.#inFlight.delete(socket);
      else this.#inFlight.set(socket, left);
    });
    return true;
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // node:http's idle timeout (this.http.timeout) stays on an upgraded socket; its new owner has its own.
    (socket as Partial<Socket>).setTimeout?.(0);
    // Absolute-form targets ("GET http://host/ws") name the same path (RFC 7230 5.3.2).
    const path = splitTarget(req.url ?? '/')?.path;
    if (path === MESH_PATH && this.#mesh !== null) {
      // A link from another node of the cluster (authenticated by the mesh with the cluster key).
      this.#mesh.handleUpgrade(req, socket, head);
      return;
    }
    if (path !== WS_PATH) {
      const c = this.realtime.counters.upgradeRejected;
      c.NOT_FOUND = (c.NOT_FOUND ?? 0) + 1;
      socket.on('error', () => {});
      const body = `the WebSocket path is ${WS_PATH}\n`;
      socket.end(`HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return;
    }
    this.realtime.server.handleUpgrade(req, socket, head);
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    const url = requestTarget(req.url);
    if (url === null) return this.#badRequest(res, 'other', 'BAD_URL', 'the request target is not a valid URL');
    // RFC 9112 3.2: more than one Host is a 400 (node:http keeps the first); upgrades get the same.
    if (hostCount(req.rawHeaders) > 1) return this.#badRequest(res, 'other', 'BAD_HOST', 'more than one Host header');
    const method = req.method ?? 'GET';
    const route = url.pathname;
    const get = method === 'GET' || method === 'HEAD';
    res.setHeader('X-Content-Type-Options', 'nosniff');
    if (this.#httpClosing) res.setHeader('Connection', 'close');
    switch (route) {
      case '/':
      case '/index.html':
        if (!get) return this.#notAllowed(res, 'demo', 'GET, HEAD');
        return this.#send(res, 'demo', 200, DEMO_HTML, 'text/html; charset=utf-8', { 'Content-Security-Policy': CSP, 'Referrer-Policy': 'no-referrer', 'Cache-Control': 'no-cache' });
      case '/demo.js':
        if (!get) return this.#notAllowed(res, 'demo', 'GET, HEAD');
        return this.#send(res, 'demo', 200, DEMO_JS, 'text/javascript; charset=utf-8', { 'Cache-Control': 'no-cache' });
      case CLIENT_PATH:
        if (!get) return this.#notAllowed(res, 'client', 'GET, HEAD');
        return this.#send(res, 'client', 200, this.#clientJs, 'text/javascript; charset=utf-8', { 'Cache-Control': 'no-cache', 'Access-Control-Allow-Origin': '*' });
      case '/healthz':
        if (!get) return this.#notAllowed(res, 'healthz', 'GET, HEAD');
        return this.#send(res, 'healthz', 200, 'ok\n', 'text/plain; charset=utf-8', { 'Cache-Control': 'no-store' });
      case '/readyz':
        if (!get) return this.#notAllowed(res, 'readyz', 'GET, HEAD');
        if (this.realtime.draining) {
          return this.#send(res, 'readyz', 503, 'draining\n', 'text/plain; charset=utf-8', { 'Cache-Control': 'no-store', 'Retry-After': String(this.config.retryAfterSeconds) });
        }
        if (this.realtime.overloaded) {
          return this.#send(res, 'readyz', 503, `overloaded: ${this.shedder.overload.why}\n`, 'text/plain; charset=utf-8', { 'Cache-Control': 'no-store', 'Retry-After': String(this.config.retryAfterSeconds) });
        }
        {
          const cut = this.realtime.busPending ? 'cluster: bus connecting' : (this.cluster?.notReadyReason() ?? null);
          if (cut !== null) return this.#send(res, 'readyz', 503, `not ready: ${cut}\n`, 'text/plain; charset=utf-8', { 'Cache-Control': 'no-store' });
        }
        return this.#send(res, 'readyz', 200, readyBody(this.realtime.server.transportKind), 'text/plain; charset=utf-8', { 'Cache-Control': 'no-store' });
      case '/metrics': {
        if (!get) return this.#notAllowed(res, 'metrics', 'GET, HEAD');
        // Counted before rendering, so a scrape sees itself.
        this.#count('metrics', 200);
        const text = await this.metricsText();
        res.writeHead(200, { 'Content-Type': METRICS_CONTENT_TYPE, 'Cache-Control': 'no-store' });
        res.end(text);
        return;
      }
      case '/api/publish':
        if (method !== 'POST') return this.#notAllowed(res, 'api_publish', 'POST');
        if (!this.#authorised(req, res, 'api_publish')) return;
        return this.#apiPublish(req, res);
      case '/api/presence':
        if (!get) return this.#notAllowed(res, 'api_presence', 'GET, HEAD');
        if (!this.#authorised(req, res, 'api_presence')) return;
        return this.#apiPresence(url, res);
      case '/api/cluster/members':
        if (!get) return this.#notAllowed(res, 'api_cluster_members', 'GET, HEAD');
        if (!this.#authorised(req, res, 'api_cluster_members')) return;
        return this.#apiMembers(res);
      default:
        return this.#json(res, 'other', 404, { error: 'NOT_FOUND', message: `no route ${route}` });
    }
  }

  async #apiPublish(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await this.#readBody(req, res);
    if (body === undefined) return;
    let raw: unknown;
    try {
      raw = JSON.parse(body.toString('utf8'));
    } catch {
      return this.#badRequest(res, 'api_publish', 'BAD_JSON', 'the body is not JSON: {"topic": ..., "data": ...}');
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return this.#badRequest(res, 'api_publish', 'BAD_COMMAND', 'the body must be a JSON object');
    const r = raw as Record<string, unknown>;
    if (r.topic === undefined) return this.#badRequest(res, 'api_publish', 'MISSING_FIELD', 'the body needs "topic"');
    const problem = topicError(r.topic, this.config.maxTopicBytes);
    if (problem !== null) return this.#badRequest(res, 'api_publish', problem.code, problem.message);
    const from = r.from === undefined ? 'api' : r.from;
    const fromProblem = userProblem(from, '"from"');
    if (fromProblem !== null) return this.#badRequest(res, 'api_publish', fromProblem.code, fromProblem.message);
    let payload: string | Buffer;
    if (r.base64 !== undefined) {
      if (typeof r.base64 !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(r.base64) || 'data' in r) {
        return this.#badRequest(res, 'api_publish', 'BAD_FIELD', '"base64" must be base64 text, and not given with "data"');
      }
      payload = Buffer.from(r.base64, 'base64');
    } else if ('data' in r) {
      try {
        payload = JSON.stringify(r.data);
      } catch {
        // JSON.parse takes any depth; serialising it back recurses (the WebSocket path answers the same).
        return this.#badRequest(res, 'api_publish', 'BAD_FIELD', '"data" cannot be serialised (nested too deeply)');
      }
    } else return this.#badRequest(res, 'api_publish', 'MISSING_FIELD', 'give "data" (any JSON) or "base64" (binary)');
    // A topic the cluster orders is answered once the message is held on two nodes, with its position (as over WebSocket).
    if (this.realtime.orderingPending(r.topic as string)) return this.#json(res, 'api_publish', 503, { error: 'UNAVAILABLE', message: AppErrorCode.UNAVAILABLE });
    const ordered = this.realtime.server.pubsub.isOrdered(r.topic as string);
    let outcome: (position: StreamPosition | null, failure: OrderedFailure | null) => void = () => undefined;
    const answered = new Promise<[StreamPosition | null, OrderedFailure | null]>((resolve) => (outcome = (p, f) => resolve([p, f])));
    const result = this.realtime.publish(r.topic as string, payload, from as string, null, ordered ? outcome : undefined);
    const [position, failure] = ordered ? await answered : [result.position, null];
    if (failure !== null) return this.#json(res, 'api_publish', 503, { error: failure === 'busy' ? 'PUBLISH_BUSY' : 'UNAVAILABLE', message: AppErrorCode[failure === 'busy' ? 'PUBLISH_BUSY' : 'UNAVAILABLE'] });
    const pos = position === null ? {} : { epoch: position.epoch, offset: position.offset };
    return this.#json(res, 'api_publish', 200, { topic: r.topic, ...pos, delivered: result.delivered });
  }

  #apiPresence(url: URL, res: ServerResponse): void {
    const topic = url.searchParams.get('topic');
    const user = url.searchParams.get('user');
    const presence = this.realtime.presence;
    if (topic !== null) {
      const problem = topicError(topic, this.config.maxTopicBytes);
      if (problem !== null) return this.#badRequest(res, 'api_presence', problem.code, problem.message);
      const members = presence.list(topic).map((e) => ({ user: e.user, conn: e.conn, meta: e.meta, since: e.since }));
      return this.#json(res, 'api_presence', 200, { topic, count: members.length, members });
    }
    if (user !== null) {
      const problem = userProblem(user, '"user"');
      if (problem !== null) return this.#badRequest(res, 'api_presence', problem.code, problem.message);
      presence.askOnline([user], (r) => {
        if (r === 'busy') return this.#json(res, 'api_presence', 503, { error: 'ONLINE_BUSY', message: AppErrorCode.ONLINE_BUSY });
        this.#json(res, 'api_presence', 200, r.partial ? { user, online: r.online.has(user), partial: true } : { user, online: r.online.has(user) });
      });
      return;
    }
    return this.#badRequest(res, 'api_presence', 'MISSING_FIELD', 'give ?topic=... or ?user=...');
  }

  #apiMembers(res: ServerResponse): void {
    const c = this.cluster;
    if (c === null || !c.started) return this.#json(res, 'api_cluster_members', 200, { cluster: false, self: null, members: [] });
    return this.#json(res, 'api_cluster_members', 200, { cluster: true, self: c.id, members: c.members() });
  }

  /** The API key check: X-Api-Key or Authorization: Bearer, compared in constant time. */
  #authorised(req: IncomingMessage, res: ServerResponse, route: string): boolean {
    const key = this.config.apiKey;
    if (key === undefined) {
      this.#json(res, route, 403, { error: 'API_DISABLED', message: 'the HTTP API is off: start the server with --api-key or MURMUR_API_KEY' });
      return false;
    }
    let given = req.headers['x-api-key'];
    if (Array.isArray(given)) given = given[0];
    if (given === undefined) {
      const m = /^Bearer[ \t]+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
      if (m !== null) given = m[1];
    }
    if (given === undefined || !sameSecret(given, key)) {
      this.#json(res, route, 401, { error: 'UNAUTHORIZED', message: 'missing or wrong API key (X-Api-Key header)' }, { 'WWW-Authenticate': 'Bearer realm="murmur-api"' });
      return false;
    }
    return true;
  }

  /** Reads a body of at most maxBodyBytes; answers 413 (and closes) and returns undefined beyond it. */
  async #readBody(req: IncomingMessage, res: ServerResponse): Promise<Buffer | undefined> {
    const max = this.config.maxBodyBytes;
    const tooLarge = (): undefined => {
      this.#json(res, 'api_publish', 413, { error: 'TOO_LARGE', message: `the body is over ${max} bytes` }, { Connection: 'close' });
      // Do not read the rest: the connection closes after the response.
      res.on('finish', () => req.destroy());
      return undefined;
    };
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > max) return tooLarge();
    const chunks: Buffer[] = [];
    let size = 0;
    return new Promise<Buffer | undefined>((resolve) => {
      const onData = (chunk: Buffer): void => {
        size += chunk.length;
        if (size > max) {
          req.off('data', onData);
          req.pause();
          resolve(tooLarge());
          return;
        }
        chunks.push(chunk);
      };
      req.on('data', onData);
      req.once('end', () => resolve(size > max ? undefined : Buffer.concat(chunks)));
      req.once('error', () => resolve(undefined));
    });
  }

  #count(route: string, status: number): void {
    const k = `${route} ${status}`;
    this.httpCounters.requests[k] = (this.httpCounters.requests[k] ?? 0) + 1;
  }

  #send(res: ServerResponse, route: string, status: number, body: string, type: string, headers: Record<string, string> = {}): void {
    this.#count(route, status);
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...headers });
    res.end(body);
  }

  #json(res: ServerResponse, route: string, status: number, value: unknown, headers: Record<string, string> = {}): void {
    this.#send(res, route, status, `${JSON.stringify(value)}\n`, 'application/json; charset=utf-8', { 'Cache-Control': 'no-store', ...headers });
  }

  /** A 400 with its code, logged at most once per code per interval (errorLog). */
  #badRequest(res: ServerResponse, route: string, code: string, message: string): void {
    this.realtime.errorLog.line(`http-400 ${code}`, `[murmur] http: 400 ${code} on ${route}: ${message}`);
    this.#json(res, route, 400, { error: code, message });
  }

  #notAllowed(res: ServerResponse, route: string, allow: string): void {
    this.#json(res, route, 405, { error: 'METHOD_NOT_ALLOWED', message: `use ${allow}` }, { Allow: allow });
  }
}

/**
 * node:http's limits for what it is handed: the first head of a connection was already read
 * under the library's limits; these apply to its body and to later requests on the connection.
 */
function httpOptions(c: AppConfig): ServerOptions {
  return {
    // The library's maxHeadBytes and handshakeTimeoutMs: one head limit on the port, whichever parser reads the head.
    maxHeaderSize: DEFAULT_LIMITS.maxHeadBytes,
    headersTimeout: DEFAULT_LIMITS.handshakeTimeoutMs,
    requestTimeout: Math.max(c.httpRequestTimeoutMs, DEFAULT_LIMITS.handshakeTimeoutMs),
    keepAliveTimeout: c.httpKeepAliveTimeoutMs,
    // Timeouts are checked every second (node:http's default is every 30 s).
    connectionsCheckingInterval: 1_000,
  };
}

/** How many Host headers a request has (rawHeaders alternates names and values). */
function hostCount(raw: string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'host') n++;
  return n;
}

/** The status for a request node:http could not parse (its 'clientError' codes). */
function clientErrorStatus(code: string | undefined): number {
  if (code === 'HPE_HEADER_OVERFLOW') return 431;
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 408;
  return 400;
}

/** /readyz's body: says when WebSockets ride on net.Socket instead of the lean transport. */
function readyBody(kind: 'lean' | 'socket'): string {
  return kind === 'lean' ? 'ready\n' : 'ready (transport: socket; the lean transport is off)\n';
}

/** Creates an app and starts listening. */
export async function startApp(options: AppOptions = {}): Promise<App> {
  const app = new App(options);
  await app.listen();
  return app;
}

function sameSecret(given: string, expected: string): boolean {
  // Hash both so the comparison is constant-time whatever their lengths.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The compiled browser client (src/app/public/murmur-client.ts), without its source-map comment. */
function loadClientLibrary(): string {
  const text = readFileSync(new URL('./public/murmur-client.js', import.meta.url), 'utf8');
  return text.replace(/\n\/\/# sourceMappingURL=.*\s*$/, '\n');
}
