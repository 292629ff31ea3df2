/**
 * The supervisor of a group of worker processes serving one port: one machine, N processes.
 * It forks the workers (plain child processes: every other socket a worker binds is its own),
 * tells each what to run (the `init` settings, cloned over IPC) and how to take the shared
 * port, restarts a worker that dies (with backoff), asks every worker a question and gathers
 * the answers, and drains them all on shutdown(); a worker never outlives it (supervised.ts).
 *
 * How the workers share the port: with SO_REUSEPORT where Node exposes it (listen({ reusePort })
 * from Node 22.12/23.1) each binds its own socket and the kernel balances; elsewhere worker 0
 * binds, hands the listening socket to the supervisor, and the supervisor hands it to every
 * other worker (and to a restarted one): all accept on the same socket.
 *
 * What runs in a worker is the caller's (a module that calls runSupervisedWorker()); what the
 * two sides say beyond start, ready, questions and shutdown goes through send() and the
 * 'message' event.
 */
import { fork } from 'node:child_process';
import type { ChildProcess, SendHandle, Serializable } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { LISTEN_BACKLOG } from '../limits.js';

/** Whether this Node's net.Server.listen accepts `reusePort`. */
export function reusePortSupported(): boolean {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return major >= 23 || (major === 22 && minor >= 12);
}

/**
 * The accept queue of one listening socket shared by `workers` processes: LISTEN_BACKLOG for each,
 * as they would have with a socket each (the kernel caps it at net.core.somaxconn).
 */
export function sharedBacklog(workers: number): number {
  return LISTEN_BACKLOG * workers;
}

/** Most workers a group may have: far above any core count; a typo like 1000 is refused. */
export const MAX_WORKERS = 256;
/** Time a new worker gets to listen and report ready. */
export const START_TIMEOUT_MS = 30_000;
/** A worker that ran this long before it died is restarted after the shortest delay again. */
const STABLE_MS = 30_000;
/** Restart delays after a worker dies: the first, doubling with each quick death up to the cap. */
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 30_000;
/** The environment variable that marks a process as a supervised worker (its value: its index). */
export const WORKER_ENV = 'MURMUR_SUPERVISED_WORKER';

/** How a worker takes the shared port. */
export type ListenPlan = { kind: 'create'; port: number; host: string; reusePort: boolean; backlog: number } | { kind: 'handle'; backlog: number };

/** What the supervisor and its workers say to each other; `user` carries the caller's own messages. */
export type ToWorker =
  | { op: 'init'; index: number; settings: unknown; listen: ListenPlan; shareHandle: boolean }
  | { op: 'ask'; id: number; what: string }
  | { op: 'shutdown' }
  | { op: 'user'; body: unknown };

export type ToSupervisor =
  | { op: 'ready'; index: number; port: number; address: string; family: string; info: unknown }
  | { op: 'failed'; index: number; message: string }
  | { op: 'answer'; id: number; value: unknown }
  | { op: 'user'; body: unknown };

export function isOp<T extends { op: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && typeof (m as { op?: unknown }).op === 'string';
}

/** A worker that could not start while the group started (bad setting, port taken...). */
export class WorkerStartError extends Error {
  override readonly name = 'WorkerStartError';
}

export interface SupervisorOptions {
  /** Worker processes, 1-256. */
  workers: number;
  /** The module a worker runs (it calls runSupervisedWorker()), and its arguments. */
  module: string;
  args?: string[];
  /** Node options of the workers (default: the supervisor's own). */
  execArgv?: string[];
  /** Where the shared port is bound (port 0: a free one, chosen by the first worker). */
  port: number;
  host: string;
  /** The settings of worker i, cloned over IPC at each of its starts (restarts too). */
  settings(index: number): unknown;
  /** Time every worker gets to drain on shutdown() before it is killed. */
  drainTimeoutMs: number;
  /** Where the group's own lines go (a worker died, restarts). Default: stderr. */
  log?: (line: string) => void;
  /**
   * Bytes of counted messages (send's `bytes`) not yet written to one worker's channel; a
   * counted send over it is refused. Default SUPERVISOR_MAX_UNSENT_BYTES.
   */
  maxUnsentBytes?: number;
}

/**
 * A worker that does not read its channel (stalled, or slower than the others send) makes the
 * supervisor queue what is sent to it: 64 MiB of counted messages per worker, then refusals.
 */
export const SUPERVISOR_MAX_UNSENT_BYTES = 64 * 1024 * 1024;

/** A running worker: what its ready message said. */
export interface SupervisedInfo {
  index: number;
  pid: number;
  /** What the worker reported with its ready message (its own details). */
  info: unknown;
}

interface Slot {
  index: number;
  child: ChildProcess | null;
  ready: SupervisedInfo | null;
  startedAt: number;
  /** Quick deaths in a row: the exponent of the restart delay. */
  failures: number;
  timer: NodeJS.Timeout | null;
  /** The start in progress: settled by the worker's 'ready' or 'failed', or its exit. */
  pending: { resolve: (info: SupervisedInfo) => void; reject: (err: Error) => void } | null;
}

/** A question out to the workers: the answers so far, by worker index. */
interface Asking {
  /** Workers asked that have neither answered nor exited. */
  waiting: Set<number>;
  answers: Map<number, unknown>;
  /** Largest string answer taken; a longer one counts as no answer. */
  maxBytes: number;
  done: () => void;
}

/**
 * The supervisor. Emits 'worker' (SupervisedInfo) each time a worker is up (restarts
 * included), 'exit' ({ index, pid, code, signal, restartInMs }) when one dies, and
 * 'message' (index, body) for what a worker sent with sendToSupervisor().
 */
export class Supervisor extends EventEmitter {
  readonly workers: number;
  /** The shared port, and the address it is bound to (once the first worker listens). */
  port = 0;
  address = '';
  family = '';
  /** Workers started again after one died. */
  restarts = 0;
  readonly #options: SupervisorOptions;
  readonly #slots: Slot[];
  readonly #log: (line: string) => void;
  /** The listening socket, held (never listened on here) to hand to workers. */
  #handle: { close?: () => void } | null = null;
  #started = false;
  #startFailed: ((err: Error) => void) | null = null;
  #stopping: Promise<void> | null = null;
  #allExited: (() => void) | null = null;
  readonly #asking = new Map<number, Asking>();
  #seq = 0;
  /** Counted bytes sent to each worker process and not yet written to its channel. */
  readonly #unsent = new WeakMap<ChildProcess, number>();
  readonly #maxUnsent: number;

  /** @throws RangeError for a worker count outside 1-256. */
  constructor(options: SupervisorOptions) {
    super();
    const { workers } = options;
    if (!Number.isInteger(workers) || workers < 1 || workers > MAX_WORKERS) throw new RangeError(`workers must be an integer from 1 to ${MAX_WORKERS}, got ${String(workers)}`);
    this.workers = workers;
    this.#options = options;
    this.#log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.#maxUnsent = options.maxUnsentBytes ?? SUPERVISOR_MAX_UNSENT_BYTES;
    this.#slots = Array.from({ length: workers }, (_, index) => ({ index, child: null, ready: null, startedAt: 0, failures: 0, timer: null, pending: null }));
  }

  /**
   * Starts every worker and resolves once all listen; `then` (if given) runs before start()
   * resolves and a worker failing meanwhile fails the start too.
   * @throws WorkerStartError (the workers started so far are stopped)
   */
  async start(then?: () => Promise<void>): Promise<void> {
    if (this.#started || this.#startFailed !== null || this.#stopping !== null) throw new Error('start() once, before shutdown()');
    const failed = new Promise<never>((_, reject) => (this.#startFailed = reject));
    failed.catch(() => {});
    try {
      // The first worker binds the port (resolving port 0); the others follow it. They are
      // forked at once, so that their start-up overlaps its.
      for (const s of this.#slots) this.#fork(s);
      await Promise.race([this.#spawn(this.#slots[0]!), failed]);
      await Promise.race([Promise.all(this.#slots.slice(1).map((s) => this.#spawn(s))), failed]);
      if (then !== undefined) await Promise.race([then(), failed]);
      if (this.#stopping !== null) throw new WorkerStartError('the group was shut down while it started');
    } catch (err) {
      this.#startFailed = null;
      await this.shutdown();
      throw err;
    }
    this.#startFailed = null;
    this.#started = true;
  }

  /** Whether shutdown() was called. */
  get stopping(): boolean {
    return this.#stopping !== null;
  }

  /** The running workers. */
  list(): SupervisedInfo[] {
    const out: SupervisedInfo[] = [];
    for (const s of this.#slots) if (s.ready !== null) out.push(s.ready);
    return out;
  }

  /** Sends a message of the caller's to worker `index` (its onMessage); false when that worker is not running. */
  send(index: number, body: unknown, bytes = 0): boolean {
    const c = this.#slots[index]?.child;
    if (c == null || !c.connected) return false;
    if (bytes === 0) {
      c.send({ op: 'user', body } satisfies ToWorker as Serializable, () => {});
      return true;
    }
    const unsent = this.#unsent.get(c) ?? 0;
    if (unsent + bytes > this.#maxUnsent) return false;
    this.#unsent.set(c, unsent + bytes);
    c.send({ op: 'user', body } satisfies ToWorker as Serializable, () => this.#unsent.set(c, (this.#unsent.get(c) ?? bytes) - bytes));
    return true;
  }

  /**
   * Sends a message of the caller's to every running worker but `except` (`bytes`: as send's).
   * Returns how many workers refused it over their unsent budget.
   */
  broadcast(body: unknown, except = -1, bytes = 0): number {
    let refused = 0;
    for (const s of this.#slots) if (s.index !== except && s.ready !== null && !this.send(s.index, body, bytes) && s.child?.connected === true) refused++;
    return refused;
  }

  /** Sends a signal to every worker process (e.g. SIGUSR2 for a stats line from each). */
  signal(sig: NodeJS.Signals): void {
    for (const s of this.#slots) s.child?.kill(sig);
  }

  /**
   * Asks every running worker (its answer() hook); resolves with the answers that came within
   * the time, by worker index. A string answer longer than `maxBytes` is dropped.
   */
  async ask(what: string, timeoutMs: number, maxBytes = Infinity): Promise<Map<number, unknown>> {
    const id = ++this.#seq;
    const targets = this.#slots.filter((s) => s.ready !== null && s.child?.connected === true);
    const asking: Asking = { waiting: new Set(targets.map((s) => s.index)), answers: new Map(), maxBytes, done: () => {} };
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

  /**
   * Drains every worker at once and resolves when all have exited; one that overstays its
   * drain is killed. Idempotent.
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
    const timeoutMs = this.#options.drainTimeoutMs;
    const kill = setTimeout(() => {
      for (const s of this.#slots) {
        if (s.child === null) continue;
        this.#log(`[murmur] worker ${s.index} (pid ${s.child.pid}) did not finish its drain in ${timeoutMs} ms: killing it`);
        s.child.kill('SIGKILL');
      }
    }, timeoutMs);
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
    const o = this.#options;
    const child = fork(o.module, o.args ?? [], {
      // Structured clone: Buffers cross as bytes; the socket crosses as a handle.
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, [WORKER_ENV]: String(slot.index) },
      ...(o.execArgv !== undefined ? { execArgv: o.execArgv } : {}),
    });
    slot.child = child;
    slot.startedAt = performance.now();
    child.on('message', (m: unknown, handle: unknown) => this.#onMessage(slot, child, m, handle));
    child.on('error', (err) => this.#log(`[murmur] worker ${slot.index}: ${err.message}`));
    child.on('exit', (code, signal) => this.#onExit(slot, child, code, signal));
    return child;
  }

  /** Starts the worker of a slot (forking it unless it was forked ahead); resolves when it listens. */
  #spawn(slot: Slot): Promise<SupervisedInfo> {
    const i = slot.index;
    if (this.#stopping !== null) return Promise.reject(new WorkerStartError(`worker ${i} not started: the group is shutting down`));
    const child = slot.child ?? this.#fork(slot);
    // With SO_REUSEPORT every worker binds the port itself; else the first one binds it and
    // hands it over, and everyone after takes that socket.
    const reuse = reusePortSupported();
    const listen: ListenPlan = !reuse && this.#handle !== null ? { kind: 'handle', backlog: sharedBacklog(this.workers) } : { kind: 'create', port: this.port !== 0 ? this.port : this.#options.port, host: this.#options.host, reusePort: reuse, backlog: reuse ? LISTEN_BACKLOG : sharedBacklog(this.workers) };
    const init: ToWorker = { op: 'init', index: i, settings: this.#options.settings(i), listen, shareHandle: listen.kind === 'create' && !reuse && this.#handle === null };
    return new Promise<SupervisedInfo>((resolve, reject) => {
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
      child.send(init as Serializable, (listen.kind === 'handle' ? this.#handle : undefined) as SendHandle | undefined, (err) => {
        if (err !== null) child.kill('SIGKILL');
      });
    }).catch((err: Error) => {
      // A worker that fails while the group starts fails the start; later, it is restarted.
      if (!this.#started) this.#startFailed?.(err);
      throw err;
    });
  }

  #onMessage(slot: Slot, child: ChildProcess, m: unknown, handle: unknown): void {
    if (!isOp<ToSupervisor>(m) || slot.child !== child) return;
    switch (m.op) {
      case 'ready': {
        if (this.port === 0) {
          this.port = m.port;
          this.address = m.address;
          this.family = m.family;
        }
        if (handle !== undefined && handle !== null && this.#handle === null) this.#handle = handle as { close?: () => void };
        slot.ready = { index: slot.index, pid: child.pid ?? 0, info: m.info };
        this.emit('worker', slot.ready);
        slot.pending?.resolve(slot.ready);
        return;
      }
      case 'failed':
        slot.pending?.reject(new WorkerStartError(`worker ${slot.index}: ${m.message}`));
        return;
      case 'answer':
        this.#onAnswer(slot.index, m.id, m.value);
        return;
      case 'user':
        this.emit('message', slot.index, m.body);
        return;
    }
  }

  #onExit(slot: Slot, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (slot.child !== child) return;
    slot.child = null;
    slot.ready = null;
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

  #onAnswer(index: number, id: number, value: unknown): void {
    const a = this.#asking.get(id);
    if (a === undefined || !a.waiting.has(index)) return;
    if (typeof value === 'string' && value.length > a.maxBytes) return;
    a.waiting.delete(index);
    a.answers.set(index, value);
    if (a.waiting.size === 0) a.done();
  }
}
