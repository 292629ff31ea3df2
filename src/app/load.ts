/**
 * A node's load, measured and summarised: open connections, event-loop delay (p99 of the last
 * window), CPU and memory. Every node of a cluster gossips its summary in its member meta
 * (src/app/cluster.ts); the shedding policy (src/app/shed-policy.ts) reads the summaries.
 *
 * A summary is a small JSON object with short keys (it rides in every alive message of its
 * node, under the gossip layer's 512-byte meta bound):
 * `{"c":1000,"lag":12,"cpu":35,"rss":80,"mem":7900,"o":0,"d":0}`.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { IntervalHistogram } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';

/** What a node tells the others about its load. */
export interface LoadSummary {
  /** Open WebSocket connections. */
  connections: number;
  /** Event-loop delay, p99 of the last window, ms. */
  lagMs: number;
  /** CPU used by the process over the last window, percent of one core. */
  cpuPercent: number;
  /** Resident set size, MiB. */
  rssMiB: number;
  /** The memory limit the node measures itself against, MiB. */
  memoryLimitMiB: number;
  /** Above an overload threshold: it refuses upgrades and sheds. */
  overloaded: boolean;
  /** Draining (shutting down): its connections are leaving. */
  draining: boolean;
}

/** The largest value a summary field may take; anything above is damage, not load. */
const MAX_FIELD = 1e9;

/** The summary as it travels in the member meta. */
export function loadToWire(l: LoadSummary): Record<string, number> {
  return { c: l.connections, lag: l.lagMs, cpu: l.cpuPercent, rss: l.rssMiB, mem: l.memoryLimitMiB, o: l.overloaded ? 1 : 0, d: l.draining ? 1 : 0 };
}

/**
 * A summary read back from another node's meta, or null when absent or malformed: every
 * field a non-negative integer under a billion (a peer of another version, or damage, must
 * not move this node's decisions).
 */
export function loadFromWire(v: unknown): LoadSummary | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const r = v as Record<string, unknown>;
  const n = (k: string): number | null => {
    const x = r[k];
    return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 && x <= MAX_FIELD ? x : null;
  };
  const c = n('c');
  const lag = n('lag');
  const cpu = n('cpu');
  const rss = n('rss');
  const mem = n('mem');
  const o = n('o');
  const d = n('d');
  if (c === null || lag === null || cpu === null || rss === null || mem === null || o === null || d === null) return null;
  return { connections: c, lagMs: lag, cpuPercent: cpu, rssMiB: rss, memoryLimitMiB: mem, overloaded: o !== 0, draining: d !== 0 };
}

/** One window's measurement of this process. */
export interface LoadSample {
  /** Event-loop delay p99 over the window, ms. */
  lagMs: number;
  cpuPercent: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** V8's heap limit: a process whose heap reaches it dies. */
  heapLimitBytes: number;
}

/** The histogram's resolution, ms: delays shorter than this are not seen, and sampling costs one timer per 10 ms. */
const LAG_RESOLUTION_MS = 10;

/** Measures the event-loop delay, CPU and memory of this process, one window per `sample()`. */
export class LoadSampler {
  readonly #delay: IntervalHistogram;
  #cpu = process.cpuUsage();
  #at = performance.now();

  constructor() {
    this.#delay = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    this.#delay.enable();
  }

  /** The window since the last call (or construction). */
  sample(): LoadSample {
    const now = performance.now();
    const cpu = process.cpuUsage();
    const usedUs = cpu.user - this.#cpu.user + (cpu.system - this.#cpu.system);
    const wallMs = Math.max(1, now - this.#at);
    this.#cpu = cpu;
    this.#at = now;
    // The histogram counts from the moment the timer should have fired: its p99 minus the
    // resolution is the delay the loop added.
    const p99 = this.#delay.count > 0 ? this.#delay.percentile(99) / 1e6 - LAG_RESOLUTION_MS : 0;
    this.#delay.reset();
    const heap = getHeapStatistics();
    return {
      lagMs: Math.max(0, Math.round(p99)),
      cpuPercent: Math.round(usedUs / 10 / wallMs),
      rssBytes: process.memoryUsage.rss(),
      heapUsedBytes: heap.used_heap_size,
      heapLimitBytes: heap.heap_size_limit,
    };
  }

  stop(): void {
    this.#delay.disable();
  }
}

/**
 * The memory this process may use: the cgroup's limit (v2 memory.max, v1
 * memory.limit_in_bytes) when one is set below the machine's memory, else the machine's.
 */
export function memoryLimitBytes(): number {
  const total = totalmem();
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const v = Number(readFileSync(file, 'utf8').trim());
      if (Number.isFinite(v) && v > 0 && v < total) return v;
    } catch {
      // no such cgroup file (not Linux, or another cgroup version)
    }
  }
  return total;
}
