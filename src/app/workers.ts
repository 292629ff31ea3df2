/**
 * `murmur serve --workers N` as a library: one machine, N worker processes, one port. Each
 * worker runs a whole App (src/app/app.ts) and is a node of a cluster, so everything that
 * works across the nodes of a cluster works across the workers: a publish on one worker
 * reaches the subscribers on every worker (the cluster bus), presence covers every worker
 * (gossip), and /metrics on any worker shows every worker (asked of the primary here).
 *
 * ```ts
 * const group = await startAppWorkers({ workers: 4, port: 8080 });
 * // later
 * await group.shutdown(); // every worker drains (readyz 503, 1012 to clients), then exits
 * ```
 *
 * The cluster of the workers:
 * - with `cluster` options, worker i joins that cluster as node `<nodeId>-w<i>`, gossip on
 *   port + i (port 0: a free one each), through the seeds given plus the workers already up;
 * - without, the primary makes a private one: a random key and label (sent to the workers
 *   over IPC, never on a command line), gossip on 127.0.0.1, fast local timings.
 * Node-to-node traffic (mesh bus links) cannot use the shared port: a connection to it lands
 * on whichever worker accepts it. So each worker also listens on a peer port of its own
 * (`peerPort` + i, or a free one), which serves only the mesh path and /healthz, and gossips
 * that address as its HTTP address.
 *
 * The processes, the shared port, restarts and the drain are the generic supervisor's
 * (src/server/supervisor.ts, worker side src/server/supervised.ts): plain child processes, not
 * node:cluster workers, so every other socket a worker binds (gossip UDP and TCP, the peer
 * port) is its own; under node:cluster those binds would be routed through the primary and
 * workers asking for port 0 would all share one socket.
 *
 * This file is what is the app's on the supervisor's side (cluster settings, merged metrics,
 * waiting for the mesh); a worker process runs worker.ts, and what the two say over IPC beyond
 * the supervisor's own messages is worker-ipc.ts.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { AppOptions } from './app.js';
import { resolveConfig, ConfigError } from './config.js';
import type { AppConfig } from './config.js';
import { DEFAULT_GOSSIP_PORT, ClusterConfigError, checkNodeId, generateNodeId } from './cluster.js';
import type { ClusterOptions } from './cluster.js';
import { mergeExpositions, renderWorkerGroup } from './metrics.js';
import { DEFAULT_LAN_CONFIG, WORKERS_CONFIG } from '../cluster/gossip/gossip-config.js';
import { MAX_WORKERS, Supervisor } from '../server/supervisor.js';
import type { SupervisedInfo } from '../server/supervisor.js';
import { isAppMessage, WORKER_ARG } from './worker-ipc.js';
import type { AppMessage, WorkerReady, WorkerSettings } from './worker-ipc.js';

export { PEER_HEADERS_TIMEOUT_MS, PEER_MAX_CONNECTIONS } from './worker-ipc.js';
export { MAX_WORKERS, WorkerStartError } from '../server/supervisor.js';

/** Time the primary waits for every worker's samples for one /metrics scrape. */
const COLLECT_TIMEOUT_MS = 2_000;
/** Largest exposition a worker may hand the primary (ours are tens of KB). */
const MAX_SAMPLES_BYTES = 8 * 1024 * 1024;
/** Time the group waits at start for the workers' mesh links to each other. */
const MESH_UP_TIMEOUT_MS = 10_000;

export interface AppWorkersOptions extends Omit<AppOptions, 'presence'> {
  /** Worker processes, 1-256. */
  workers: number;
  /** First port of the workers' peer listeners: worker i listens on peerPort + i (0, the default: a free port each). */
  peerPort?: number;
  /** Where the group's own lines go (a worker died, restarts). Default: stderr. */
  log?: (line: string) => void;
}

/** One worker as the group reports it ('worker' event, list()). */
export interface WorkerInfo {
  index: number;
  pid: number;
  /** Its node id in the cluster. */
  node: string;
  /** Its gossip address, host:port. */
  gossip: string;
  /** Its peer listener (mesh links, /healthz), host:port. */
  peer: string;
}

function workerInfo(s: SupervisedInfo): WorkerInfo {
  const r = s.info as WorkerReady;
  return { index: s.index, pid: s.pid, node: r.node, gossip: r.gossip, peer: r.peer };
}

/**
 * The primary side: starts the workers (on the generic supervisor, src/server/supervisor.ts),
 * which restarts one that dies (with backoff); gives each its cluster settings, gathers
 * /metrics from all of them, and shuts them all down. Emits 'worker' (WorkerInfo) each time
 * a worker is up (restarts included) and 'exit' ({ index, pid, code, signal, restartInMs })
 * when one dies.
 */
export class AppWorkers extends EventEmitter {
  readonly workers: number;
  /** True when the workers form a cluster of their own (no `cluster` option was given). */
  readonly privateCluster: boolean;
  readonly #options: AppWorkersOptions;
  readonly #config: AppConfig;
  readonly #base: ClusterOptions;
  readonly #baseId: string;
  readonly #gossipPort: number;
  readonly #peerPort: number;
  readonly #peerHost: string;
  readonly #peerAdvertise: string;
  readonly #log: (line: string) => void;
  readonly #group: Supervisor;
  #collecting: Promise<string> | null = null;

  /** @throws ConfigError for a bad setting. Use startAppWorkers(). */
  constructor(options: AppWorkersOptions) {
    super();
    const { workers, peerPort = 0, log, cluster, ...appOptions } = options;
    if (!Number.isInteger(workers) || workers < 1 || workers > MAX_WORKERS) throw new ConfigError(`workers must be an integer from 1 to ${MAX_WORKERS}, got ${String(workers)}`);
    if (!Number.isInteger(peerPort) || peerPort < 0 || peerPort + workers - 1 > 65535) throw new ConfigError(`peerPort must be 0 or a port with room for ${workers} workers above it, got ${String(peerPort)}`);
    const config = resolveConfig(appOptions);
    this.#config = config;
    this.workers = workers;
    this.#options = options;
    this.#log = log ?? ((line) => process.stderr.write(`${line}\n`));
    this.#peerPort = peerPort;
    this.privateCluster = cluster === undefined;
    if (cluster === undefined) {
      this.#base = {
        bindHost: '127.0.0.1',
        port: 0,
        keys: [randomBytes(32)],
        label: `murmur-workers-${randomBytes(8).toString('hex')}`,
        gossip: { ...DEFAULT_LAN_CONFIG, ...WORKERS_CONFIG },
        bus: 'mesh',
      };
      this.#peerHost = '127.0.0.1';
      this.#peerAdvertise = '127.0.0.1';
    } else {
      if (cluster.advertiseHttp !== undefined) throw new ConfigError('an advertised HTTP address (--advertise-http) names one node; with workers each worker advertises its own peer port: set the advertise host and the peer port (--advertise-host, --peer-port) instead');
      if (cluster.bus === 'none') throw new ConfigError('bus none (--bus none) with workers: a publish would reach only the subscribers of the worker it arrived on; use mesh or redis');
      this.#base = cluster;
      this.#peerHost = cluster.bindHost ?? config.host;
      this.#peerAdvertise = cluster.advertiseHost ?? this.#peerHost;
    }
    const gossipPort = this.#base.port ?? DEFAULT_GOSSIP_PORT;
    if (!Number.isInteger(gossipPort) || gossipPort < 0 || gossipPort + workers - 1 > 65535) throw new ConfigError(`gossip port must be 0 or a port with room for ${workers} workers above it, got ${String(gossipPort)}`);
    this.#gossipPort = gossipPort;
    this.#baseId = this.#base.nodeId ?? generateNodeId();
    try {
      checkNodeId(`${this.#baseId}-w${workers - 1}`);
    } catch (err) {
      if (err instanceof ClusterConfigError) throw new ConfigError(`${err.message} (with workers, the node id gets -w<i> appended)`);
      throw err;
    }
    this.#group = new Supervisor({
      workers,
      module: fileURLToPath(new URL('./worker.js', import.meta.url)),
      args: [WORKER_ARG],
      port: config.port,
      host: config.host,
      settings: (i) => this.#settings(i),
      // Long enough for a whole drain of every worker (they drain at once), then some.
      drainTimeoutMs: config.drainDelayMs + config.shutdownTimeoutMs + 15_000,
      log: this.#log,
    });
    this.#group.on('worker', (s: SupervisedInfo) => this.emit('worker', workerInfo(s)));
    this.#group.on('exit', (e: unknown) => this.emit('exit', e));
    this.#group.on('message', (index: number, m: unknown) => this.#onMessage(index, m));
  }

  /** The shared port, and the address it is bound to. */
  get port(): number {
    return this.#group.port;
  }

  get address(): string {
    return this.#group.address;
  }

  get family(): string {
    return this.#group.family;
  }

  /** Workers started again after one died. */
  get restarts(): number {
    return this.#group.restarts;
  }

  /**
   * Starts every worker; resolves once all listen and their mesh links to each other are up.
   * @throws WorkerStartError (the workers started so far are stopped)
   */
  start(): Promise<void> {
    return this.#group.start(() => this.#meshUp());
  }

  /** Sends a signal to every worker process (SIGUSR2: a STATS line from each, src/server/stats-signal.ts). */
  signal(sig: NodeJS.Signals): void {
    this.#group.signal(sig);
  }

  /** The running workers. */
  list(): WorkerInfo[] {
    return this.#group.list().map(workerInfo);
  }

  /**
   * The metrics of every worker in one exposition (each sample labelled worker="<i>"), plus
   * the group's own. What GET /metrics answers on any worker.
   */
  metrics(): Promise<string> {
    // One collection at a time: scrapes that arrive meanwhile share it.
    this.#collecting ??= this.#collect().finally(() => (this.#collecting = null));
    return this.#collecting;
  }

  /**
   * Drains every worker at once (readyz 503, 1012 to clients, close handshakes) and resolves
   * when all have exited; one that overstays its drain is killed. Idempotent.
   */
  shutdown(): Promise<void> {
    return this.#group.shutdown();
  }

  /** The settings of worker i: its App options and its place in the cluster. */
  #settings(i: number): WorkerSettings {
    // Seeds: the cluster's own, and every worker up now (any of them brings the rest).
    const seeds = [...(this.#base.seeds ?? [])];
    for (const w of this.list()) if (w.index !== i) seeds.push(w.gossip);
    const { workers: _w, peerPort: _p, log: _l, cluster: _c, ...appOptions } = this.#options;
    return {
      options: {
        ...appOptions,
        cluster: { ...this.#base, nodeId: `${this.#baseId}-w${i}`, port: this.#gossipPort === 0 ? 0 : this.#gossipPort + i, seeds },
      },
      peer: { host: this.#peerHost, port: this.#peerPort === 0 ? 0 : this.#peerPort + i, advertise: this.#peerAdvertise },
    };
  }

  #onMessage(index: number, m: unknown): void {
    if (!isAppMessage(m) || m.kind !== 'scrape') return;
    const id = m.id;
    this.metrics().then(
      (text) => this.#group.send(index, { kind: 'scraped', id, text } satisfies AppMessage),
      () => {},
    );
  }

  async #collect(): Promise<string> {
    const answers = await this.#group.ask('metrics', COLLECT_TIMEOUT_MS, MAX_SAMPLES_BYTES);
    const parts: Array<{ worker: string; text: string }> = [];
    for (const [index, text] of [...answers].sort((a, b) => a[0] - b[0])) if (typeof text === 'string') parts.push({ worker: String(index), text });
    const running = this.#group.list().map((s) => ({ index: s.index, pid: s.pid }));
    return mergeExpositions(parts) + renderWorkerGroup({ workers: this.workers, answered: parts.length, restarts: this.restarts, running });
  }

  /**
   * Waits (a bounded time) until every worker's mesh has a synced link to every other worker,
   * so that once the group is up a publish on any worker reaches subscribers on all of them.
   */
  async #meshUp(): Promise<void> {
    const deadline = performance.now() + MESH_UP_TIMEOUT_MS;
    while (performance.now() < deadline && !this.#group.stopping) {
      const answers = await this.#group.ask('links', 1_000);
      const running = this.list();
      const nodes = running.map((w) => w.node);
      const up =
        running.length === this.workers &&
        running.every((w) => {
          const synced = answers.get(w.index);
          if (synced === null) return true; // not a mesh (Redis): nothing to wait for
          if (!Array.isArray(synced)) return false;
          return nodes.every((n) => n === w.node || synced.includes(n));
        });
      if (up) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!this.#group.stopping) this.#log(`[murmur] the workers' mesh links were not all up within ${MESH_UP_TIMEOUT_MS} ms; continuing (they keep dialling)`);
  }
}

/** Starts a group of worker processes serving one port. @throws ConfigError, WorkerStartError */
export async function startAppWorkers(options: AppWorkersOptions): Promise<AppWorkers> {
  const group = new AppWorkers(options);
  await group.start();
  return group;
}
