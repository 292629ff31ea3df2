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
 * How the workers share the port: with SO_REUSEPORT where Node exposes it (listen({ reusePort })
 * from Node 22.12/23.1) each binds its own socket and the kernel balances; elsewhere worker 0
 * binds, hands the listening socket to the primary, and the primary hands it to every other
 * worker (and to a restarted one): all accept on the same socket. The workers are plain child
 * processes, not node:cluster workers, so every other socket they bind (gossip UDP and TCP,
 * the peer port) is their own; under node:cluster those binds would be routed through the
 * primary and workers asking for port 0 would all share one socket.
 *
 * This file is the supervisor (the primary); a worker process runs worker.ts, and what the two
 * say over IPC is worker-ipc.ts.
 */
import { fork } from 'node:child_process';
import type { ChildProcess, SendHandle } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { AppOptions } from './app.js';
import { resolveConfig, ConfigError } from './config.js';
import type { AppConfig } from './config.js';
import { DEFAULT_GOSSIP_PORT, ClusterConfigError, checkNodeId, generateNodeId } from './cluster.js';
import type { ClusterOptions } from './cluster.js';
import { mergeExpositions, renderWorkerGroup } from './metrics.js';
import { DEFAULT_LAN_CONFIG, FAST_LOCAL_CONFIG } from '../cluster/gossip/gossip-config.js';
import { reusePortSupported } from '../server/workers.js';
import { isOp, START_TIMEOUT_MS, WORKER_ARG } from './worker-ipc.js';
import type { InitMessage, ListenPlan, Question, ToPrimary, ToWorker } from './worker-ipc.js';

export { PEER_HEADERS_TIMEOUT_MS, PEER_MAX_CONNECTIONS } from './worker-ipc.js';

/** Most workers a group may have: far above any core count; a typo like 1000 is refused. */
export const MAX_WORKERS = 256;
/** Time the primary waits for every worker's samples for one /metrics scrape. */
const COLLECT_TIMEOUT_MS = 2_000;
/** Largest exposition a worker may hand the primary (ours are tens of KB). */
const MAX_SAMPLES_BYTES = 8 * 1024 * 1024;
/** Time the group waits at start for the workers' mesh links to each other. */
const MESH_UP_TIMEOUT_MS = 10_000;
/** A worker that ran this long before it died is restarted after the shortest delay again. */
const STABLE_MS = 30_000;
/** Restart delays after a worker dies: the first, doubling with each quick death up to the cap. */
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 30_000;

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

/** A worker that could not start while the group started (bad setting, port taken...). */
export class WorkerStartError extends Error {
  override readonly name = 'WorkerStartError';
}

// ---- primary --------------------------------------------------------------------------------

interface Slot {
  index: number;
  child: ChildProcess | null;
  info: WorkerInfo | null;
  startedAt: number;
  /** Quick deaths in a row: the exponent of the restart delay. */
  failures: number;
  timer: NodeJS.Timeout | null;
  /** The start in progress: settled by the worker's 'ready' or 'failed', or its exit. */
  pending: { resolve: (info: WorkerInfo) => void; reject: (err: Error) => void } | null;
}

/** A question out to the workers: the answers so far, by worker index. */
interface Asking {
  /** Workers asked that have neither answered nor exited. */
  waiting: Set<number>;
  answers: Map<number, unknown>;
  done: () => void;
}

/**
 * The primary side: starts the workers, restarts one that dies (with backoff), gathers
 * /metrics from all of them, and shuts them all down. Emits 'worker' (WorkerInfo) each time
 * a worker is up (restarts included) and 'exit' ({ index, pid, code, signal, restartInMs })
 * when one dies.
 */
export class AppWorkers extends EventEmitter {
  readonly workers: number;
  /** The shared port, and the address it is bound to. */
  port = 0;
  address = '';
  family = '';
  /** True when the workers form a cluster of their own (no `cluster` option was given). */
  readonly privateCluster: boolean;
  /** Workers started again after one died. */
  restarts = 0;
  readonly #options: AppWorkersOptions;
  readonly #config: AppConfig;
  readonly #base: ClusterOptions;
  readonly #baseId: string;
  readonly #gossipPort: number;
  readonly #peerPort: number;
  readonly #peerHost: string;
  readonly #peerAdvertise: string;
  readonly #slots: Slot[];
  readonly #log: (line: string) => void;
  readonly #timeoutMs: number;
  /** The listening socket, held (never listened on here) to hand to workers. */
  #handle: { close?: () => void } | null = null;
  #started = false;
  #startFailed: ((err: Error) => void) | null = null;
  #stopping: Promise<void> | null = null;
  #allExited: (() => void) | null = null;
  #collecting: Promise<string> | null = null;
  readonly #asking = new Map<number, Asking>();
  #seq = 0;

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
        gossip: { ...DEFAULT_LAN_CONFIG, ...FAST_LOCAL_CONFIG },
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
    // Long enough for a whole drain of every worker (they drain at once), then some.
    this.#timeoutMs = config.drainDelayMs + config.shutdownTimeoutMs + 15_000;
    this.#slots = Array.from({ length: workers }, (_, index) => ({ index, child: null, info: null, startedAt: 0, failures: 0, timer: null, pending: null }));
  }

  /**
   * Starts every worker; resolves once all listen and their mesh links to each other are up.
   * @throws WorkerStartError (the workers started so far are stopped)
   */
  async start(): Promise<void> {
    if (this.#started || this.#startFailed !== null || this.#stopping !== null) throw new Error('start() once, before shutdown()');
    const failed = new Promise<never>((_, reject) => (this.#startFailed = reject));
    failed.catch(() => {});
    try {
      // The first worker binds the port (resolving port 0); the others follow it and join
      // its gossip node. They are forked at once, so that their start-up overlaps its.
      for (const s of this.#slots) this.#fork(s);
      await Promise.race([this.#spawn(this.#slots[0]!), failed]);
      await Promise.race([Promise.all(this.#slots.slice(1).map((s) => this.#spawn(s))), failed]);
      await Promise.race([this.#meshUp(), failed]);
      if (this.#stopping !== null) throw new WorkerStartError('the group was shut down while it started');
    } catch (err) {
      this.#startFailed = null;
      await this.shutdown();
      throw err;
    }
    this.#startFailed = null;
    this.#started = true;
  }

  /** The running workers. */
  list(): WorkerInfo[] {
    const out: WorkerInfo[] = [];
    for (const s of this.#slots) if (s.info !== null) out.push(s.info);
    return out;
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
    this.#stopping ??= this.#stopAll();
    return this.#stopping;
  }

  async #stopAll(): Promise<void> {
    for (const s of this.#slots) {
      if (s.timer !== null) clearTimeout(s.timer);
      s.timer = null;
    }
    const exited = new Promise<void>((resolve) => (this.#allExited = resolve));
    this.#checkAllExited();
    for (const s of this.#slots) {
      const c = s.child;
      if (c === null) continue;
      if (c.connected) c.send({ op: 'shutdown' } satisfies ToWorker, (err) => err && c.kill('SIGTERM'));
      else c.kill('SIGTERM');
    }
    const kill = setTimeout(() => {
      for (const s of this.#slots) {
        if (s.child === null) continue;
        this.#log(`[murmur] worker ${s.index} (pid ${s.child.pid}) did not finish its drain in ${this.#timeoutMs} ms: killing it`);
        s.child.kill('SIGKILL');
      }
    }, this.#timeoutMs);
    await exited;
    clearTimeout(kill);
    this.#handle?.close?.();
    this.#handle = null;
  }

  #checkAllExited(): void {
    if (this.#allExited !== null && this.#slots.every((s) => s.child === null)) this.#allExited();
  }

  /** Forks a worker process for a slot; it waits for its settings (the init message of #spawn). */
  #fork(slot: Slot): ChildProcess {
    const child = fork(fileURLToPath(new URL('./worker.js', import.meta.url)), [WORKER_ARG], {
      // Structured clone: the cluster keys cross as bytes; the socket crosses as a handle.
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    slot.child = child;
    slot.startedAt = performance.now();
    child.on('message', (m: unknown, handle: unknown) => this.#onMessage(slot, child, m, handle));
    child.on('error', (err) => this.#log(`[murmur] worker ${slot.index}: ${err.message}`));
    child.on('exit', (code, signal) => this.#onExit(slot, child, code, signal));
    return child;
  }

  /** Starts the worker of a slot (forking it unless it was forked ahead); resolves when it listens. */
  #spawn(slot: Slot): Promise<WorkerInfo> {
    const i = slot.index;
    if (this.#stopping !== null) return Promise.reject(new WorkerStartError(`worker ${i} not started: the group is shutting down`));
    const child = slot.child ?? this.#fork(slot);
    // With SO_REUSEPORT every worker binds the port itself; else the first one binds it and
    // hands it over, and everyone after takes that socket.
    const reuse = reusePortSupported();
    const listen: ListenPlan = !reuse && this.#handle !== null ? { kind: 'handle' } : { kind: 'create', port: this.port !== 0 ? this.port : this.#config.port, host: this.#config.host, reusePort: reuse };
    // Seeds: the cluster's own, and every worker up now (any of them brings the rest).
    const seeds = [...(this.#base.seeds ?? [])];
    for (const s of this.#slots) if (s !== slot && s.info !== null) seeds.push(s.info.gossip);
    const { workers: _w, peerPort: _p, log: _l, cluster: _c, ...appOptions } = this.#options;
    const init: InitMessage = {
      op: 'init',
      index: i,
      options: {
        ...appOptions,
        cluster: { ...this.#base, nodeId: `${this.#baseId}-w${i}`, port: this.#gossipPort === 0 ? 0 : this.#gossipPort + i, seeds },
      },
      listen,
      shareHandle: listen.kind === 'create' && !reuse && this.#handle === null,
      peer: { host: this.#peerHost, port: this.#peerPort === 0 ? 0 : this.#peerPort + i, advertise: this.#peerAdvertise },
    };
    return new Promise<WorkerInfo>((resolve, reject) => {
      if (child.exitCode !== null || child.signalCode !== null) return reject(new WorkerStartError(`worker ${i} exited before it started`));
      const timer = setTimeout(() => {
        fail(new WorkerStartError(`worker ${i} did not listen within ${START_TIMEOUT_MS} ms`));
        child.kill('SIGKILL');
      }, START_TIMEOUT_MS);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        slot.pending = null;
        reject(err);
      };
      slot.pending = {
        resolve: (info) => {
          clearTimeout(timer);
          slot.pending = null;
          resolve(info);
        },
        reject: fail,
      };
      child.send(init, (listen.kind === 'handle' ? this.#handle : undefined) as SendHandle | undefined, (err) => {
        if (err !== null) child.kill('SIGKILL');
      });
    }).catch((err: Error) => {
      // A worker that fails while the group starts fails the start; later, it is restarted.
      if (!this.#started) this.#startFailed?.(err);
      throw err;
    });
  }

  #onMessage(slot: Slot, child: ChildProcess, m: unknown, handle: unknown): void {
    if (!isOp<ToPrimary>(m) || slot.child !== child) return;
    switch (m.op) {
      case 'ready': {
        if (this.port === 0) {
          this.port = m.port;
          this.address = m.address;
          this.family = m.family;
        }
        if (handle !== undefined && handle !== null && this.#handle === null) this.#handle = handle as { close?: () => void };
        slot.info = { index: slot.index, pid: child.pid ?? 0, node: m.node, gossip: m.gossip, peer: m.peer };
        this.emit('worker', slot.info);
        slot.pending?.resolve(slot.info);
        return;
      }
      case 'failed':
        slot.pending?.reject(new WorkerStartError(`worker ${slot.index}: ${m.message}`));
        return;
      case 'answer':
        this.#onAnswer(slot.index, m.id, m.value);
        return;
      case 'scrape':
        this.metrics().then(
          (text) => child.connected && child.send({ op: 'scraped', id: m.id, text } satisfies ToWorker),
          () => {},
        );
        return;
    }
  }

  #onExit(slot: Slot, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (slot.child !== child) return;
    slot.child = null;
    slot.info = null;
    slot.pending?.reject(new WorkerStartError(`worker ${slot.index} exited (${signal ?? code}) before it listened`));
    for (const a of this.#asking.values()) {
      a.waiting.delete(slot.index);
      if (a.waiting.size === 0) a.done();
    }
    if (this.#allExited !== null) {
      this.#checkAllExited();
      return;
    }
    if (!this.#started) return;
    if (performance.now() - slot.startedAt > STABLE_MS) slot.failures = 0;
    const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** Math.min(slot.failures, 10));
    slot.failures++;
    this.#log(`[murmur] worker ${slot.index} (pid ${child.pid}) exited (${signal ?? code}); starting another in ${delay} ms`);
    this.emit('exit', { index: slot.index, pid: child.pid, code, signal, restartInMs: delay });
    slot.timer = setTimeout(() => {
      slot.timer = null;
      if (this.#allExited !== null) return;
      this.restarts++;
      this.#spawn(slot).catch((err: Error) => this.#log(`[murmur] ${err.message}`));
    }, delay);
  }

  /** Asks every running worker; resolves with the answers that came within the time. */
  async #ask(what: Question, timeoutMs: number): Promise<Map<number, unknown>> {
    const id = ++this.#seq;
    const targets = this.#slots.filter((s) => s.info !== null && s.child?.connected === true);
    const asking: Asking = { waiting: new Set(targets.map((s) => s.index)), answers: new Map(), done: () => {} };
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      asking.done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#asking.set(id, asking);
      if (targets.length === 0) asking.done();
      for (const s of targets) s.child!.send({ op: 'ask', id, what } satisfies ToWorker, () => {});
    });
    this.#asking.delete(id);
    return asking.answers;
  }

  #onAnswer(index: number, id: number, value: unknown): void {
    const a = this.#asking.get(id);
    if (a === undefined || !a.waiting.has(index)) return;
    if (typeof value === 'string' && value.length > MAX_SAMPLES_BYTES) return;
    a.waiting.delete(index);
    a.answers.set(index, value);
    if (a.waiting.size === 0) a.done();
  }

  async #collect(): Promise<string> {
    const answers = await this.#ask('metrics', COLLECT_TIMEOUT_MS);
    const parts: Array<{ worker: string; text: string }> = [];
    for (const [index, text] of [...answers].sort((a, b) => a[0] - b[0])) if (typeof text === 'string') parts.push({ worker: String(index), text });
    const running = this.#slots.filter((s) => s.info !== null).map((s) => ({ index: s.index, pid: s.info!.pid }));
    return mergeExpositions(parts) + renderWorkerGroup({ workers: this.workers, answered: parts.length, restarts: this.restarts, running });
  }

  /**
   * Waits (a bounded time) until every worker's mesh has a synced link to every other worker,
   * so that once the group is up a publish on any worker reaches subscribers on all of them.
   */
  async #meshUp(): Promise<void> {
    const deadline = performance.now() + MESH_UP_TIMEOUT_MS;
    while (performance.now() < deadline && this.#stopping === null) {
      const answers = await this.#ask('links', 1_000);
      const nodes = this.#slots.map((s) => s.info?.node);
      const up = this.#slots.every((s) => {
        const synced = answers.get(s.index);
        if (synced === null) return true; // not a mesh (Redis): nothing to wait for
        if (!Array.isArray(synced)) return false;
        return nodes.every((n) => n === s.info?.node || (n !== undefined && synced.includes(n)));
      });
      if (up) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (this.#stopping === null) this.#log(`[murmur] the workers' mesh links were not all up within ${MESH_UP_TIMEOUT_MS} ms; continuing (they keep dialling)`);
  }
}

/** Starts a group of worker processes serving one port. @throws ConfigError, WorkerStartError */
export async function startAppWorkers(options: AppWorkersOptions): Promise<AppWorkers> {
  const group = new AppWorkers(options);
  await group.start();
  return group;
}
