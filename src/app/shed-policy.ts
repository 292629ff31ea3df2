/**
 * When a node sheds connections, and how many: pure decisions over load summaries and a
 * clock passed in (no timers, no sockets), so every rule is tested with numbers.
 *
 * - Rebalancing: a node whose connections are above the mean of the nodes that take traffic
 *   by more than `margin` sheds down to the mean. Every node computes its own excess from the
 *   same shared view (gossip), so the excesses together are what the nodes below the mean
 *   lack: no coordination is needed for the total to be right. Starting above
 *   mean x (1 + margin) and stopping at the mean is the hysteresis: a node that shed is far
 *   from the threshold, and balanced nodes under churn never reach it.
 * - Overload: event-loop delay above `lagMs` for two windows running, or memory above its
 *   share of a limit, makes the node overloaded (it refuses upgrades and sheds while the last
 *   window is over); it takes traffic again after three windows under every threshold.
 * - Rate: one token bucket per node, `rate` x its connections per second, holding at most one
 *   second of tokens: over any interval T a node sheds at most rate x connections x (T + 1 s).
 */
import type { LoadSample, LoadSummary } from './load.js';

export interface ShedSettings {
  /** Rebalance toward the cluster mean (overload protection is separate). */
  rebalance: boolean;
  /** Start shedding above mean x (1 + margin). */
  margin: number;
  /** ... and only when the excess is at least this many connections. */
  minExcess: number;
  /** A member joined less than this long ago is not yet counted (the balancer's health checks have not let it in). */
  joinDelayMs: number;
  /** Connections shed per second, as a fraction of the node's connections. */
  rate: number;
  /** Event-loop delay (p99 of a window) above which the node is overloaded, ms. 0 = off. */
  lagMs: number;
  /** Share (0-1) of the memory limit, and of V8's heap limit, above which the node is overloaded. 0 = off. */
  memoryFraction: number;
}

/** Another member as the policy sees it. */
export interface PeerLoad {
  id: string;
  /** Its last summary, or null when it gossips none (another version). */
  load: LoadSummary | null;
  /** When this node first saw it alive (same clock as `now`). */
  since: number;
  /** Suspected of having failed (it may be dead, its clients on their way). */
  suspect?: boolean;
}

export interface RebalanceView {
  /** The mean over this node and the members taking traffic, or NaN when there is no view. */
  mean: number;
  /** Nodes in the mean, this one included. */
  nodes: number;
  /** Connections above the mean this node should shed now (0 when within the margin or stopping). */
  excess: number;
  /** Why no excess was computed (a member without a summary, nobody to take the load), or ''. */
  blocked: string;
}

/**
 * This node's excess over the cluster mean. `shedding` is whether it is already shedding
 * (it then goes on down to the mean; otherwise it starts only above the margin).
 */
export function rebalanceView(own: number, peers: readonly PeerLoad[], s: ShedSettings, shedding: boolean, now: number): RebalanceView {
  let total = own;
  let nodes = 1;
  for (const p of peers) {
    if (p.load === null) return { mean: NaN, nodes: 0, excess: 0, blocked: `member ${p.id} gossips no load` };
    // A draining node's connections are all coming to the others, and a suspect one's may be
    // (it may be dead): they count in the total, the node does not.
    if (p.load.draining || p.suspect === true) total += p.load.connections;
    else if (!p.load.overloaded && now - p.since >= s.joinDelayMs) {
      total += p.load.connections;
      nodes++;
    }
  }
  if (nodes === 1) return { mean: own, nodes, excess: 0, blocked: peers.length === 0 ? 'no other member' : 'no other member takes traffic' };
  const mean = total / nodes;
  const over = own - mean;
  const start = over > mean * s.margin && over >= s.minExcess;
  const excess = (shedding && over >= 1) || start ? Math.floor(over) : 0;
  return { mean, nodes, excess, blocked: '' };
}

/** Whether a window's memory is over the threshold. */
export function memoryOver(sample: LoadSample, memoryLimit: number, fraction: number): boolean {
  if (fraction <= 0) return false;
  return sample.rssBytes > memoryLimit * fraction || sample.heapUsedBytes > sample.heapLimitBytes * fraction;
}

/** Windows over the lag threshold, running, that make a node overloaded: one slow window (a GC, a burst) does not. */
const ENTER_WINDOWS = 2;
/** Windows under every threshold, running, before an overloaded node takes traffic again. */
const LEAVE_WINDOWS = 3;

/** The overload state of a node, one window at a time. */
export class OverloadState {
  overloaded = false;
  /** The last window was over a threshold (shed while this holds). */
  hot = false;
  /** What made it overloaded, for logs: 'lag 240 ms > 200 ms', 'memory ...'. */
  why = '';
  #over = 0;
  #under = 0;

  /** Takes one window; returns true when `overloaded` changed. */
  update(sample: LoadSample, memoryLimit: number, s: ShedSettings): boolean {
    const lagOver = s.lagMs > 0 && sample.lagMs > s.lagMs;
    const memOver = memoryOver(sample, memoryLimit, s.memoryFraction);
    this.hot = lagOver || memOver;
    if (this.hot) {
      this.#over++;
      this.#under = 0;
    } else {
      this.#under++;
      this.#over = 0;
    }
    if (!this.overloaded && (memOver || this.#over >= ENTER_WINDOWS)) {
      this.overloaded = true;
      this.why = memOver
        ? `memory: rss ${mib(sample.rssBytes)} MiB of ${mib(memoryLimit)}, heap ${mib(sample.heapUsedBytes)} of ${mib(sample.heapLimitBytes)} MiB (threshold ${Math.round(s.memoryFraction * 100)}%)`
        : `event-loop delay p99 ${sample.lagMs} ms > ${s.lagMs} ms`;
      return true;
    }
    if (this.overloaded && this.#under >= LEAVE_WINDOWS) {
      this.overloaded = false;
      this.why = '';
      return true;
    }
    return false;
  }
}

function mib(bytes: number): number {
  return Math.round(bytes / 1048576);
}

/** A token bucket of connections to shed: `rate` x connections per second, at most one second's worth held. */
export class ShedBudget {
  #tokens = 0;
  #at: number;

  constructor(now: number) {
    this.#at = now;
  }

  /** Connections that may be shed now (whole), given the node's connections and the rate. */
  take(now: number, connections: number, rate: number, want: number): number {
    const perSecond = Math.max(1, rate * connections);
    this.#tokens = Math.min(perSecond, this.#tokens + (perSecond * Math.max(0, now - this.#at)) / 1000);
    this.#at = now;
    const n = Math.min(want, Math.floor(this.#tokens));
    if (n <= 0) return 0;
    this.#tokens -= n;
    return n;
  }

  /** Forget saved tokens (shedding stopped: the next episode starts from empty). */
  reset(now: number): void {
    this.#tokens = 0;
    this.#at = now;
  }
}
