/**
 * Load shedding for `murmur serve`: measures this node's load once a window, gossips its
 * summary, and closes connections, oldest first and at a bounded rate, when the node is above
 * the cluster mean (rebalancing, 1012) or overloaded (1013). The decisions are in
 * shed-policy.ts; this file owns the timers, the closes, the counters and the log lines.
 *
 * Every decision is logged: the start and the end of each shedding episode with its figures,
 * and, while one lasts, a line per 10 s with what it shed so far.
 */
import { serverCore } from '../server/server.js';
import type { ServerCore } from '../server/core.js';
import type { Connection } from '../server/connection.js';
import { LogLimiter } from '../cluster/bus/stats.js';
import { LoadSampler, memoryLimitBytes } from './load.js';
import type { LoadSample, LoadSummary } from './load.js';
import { OverloadState, ShedBudget, rebalanceView } from './shed-policy.js';
import type { PeerLoad, RebalanceView, ShedSettings } from './shed-policy.js';
import { AppCloseCode, retryAfterReason } from './serve-protocol.js';
import type { Realtime, ConnData } from './realtime.js';
import type { AppConfig } from './config.js';

/** One load window: the lag percentile, CPU and memory are measured over it, and the overload state moves once per window. */
export const LOAD_WINDOW_MS = 1_000;
/** Shedding acts four times a window, each tick delayed by up to half a tick more (jitter): the closes of a second are spread over it. */
const SHED_TICK_MS = 250;
/**
 * A connection is shed only after this long without a message from its client: one that just
 * sent a request (a publish awaiting its reply) is not the one to move. An overloaded node that
 * finds too few quiet connections takes the busy ones too.
 */
const QUIET_MS = 2_000;
/** While an episode lasts, one progress line per this many ms. */
const SHED_LOG_INTERVAL_MS = 10_000;
/**
 * The retry hint of a rebalancing close: come back at once (the client still waits up to its
 * backoff base, 0.5 s by default, at random). The node is not in trouble, and the shed rate
 * already spreads the reconnects; an overloaded node hints the configured retry-after.
 */
const REBALANCE_RETRY_AFTER_S = 0;

/** Where the shedder reads the cluster's view and publishes this node's summary (AppCluster). */
export interface LoadExchange {
  /** Other live members with their last summary. */
  peerLoads(now: number): PeerLoad[];
  /** Publishes this node's summary (rate-limited by the receiver). */
  publishLoad(load: LoadSummary, now: number): void;
}

export interface ShedCounters {
  /** Connections closed by shedding, by reason ('rebalance', 'overload'). */
  shed: { rebalance: number; overload: number };
  /** Shedding episodes started, by reason. */
  episodes: { rebalance: number; overload: number };
  /** Times the node entered the overloaded state. */
  overloads: number;
}

export function shedSettings(c: AppConfig): ShedSettings {
  return {
    rebalance: c.rebalance,
    margin: c.rebalanceMargin / 100,
    minExcess: c.rebalanceMinExcess,
    joinDelayMs: c.rebalanceJoinDelayMs,
    rate: c.shedRate / 100,
    lagMs: c.overloadLagMs,
    memoryFraction: c.overloadMemory / 100,
  };
}

export class Shedder {
  readonly settings: ShedSettings;
  readonly counters: ShedCounters = { shed: { rebalance: 0, overload: 0 }, episodes: { rebalance: 0, overload: 0 }, overloads: 0 };
  readonly overload = new OverloadState();
  readonly memoryLimit: number;
  /** The last window's measurement (zeros before the first). */
  last: LoadSample = { lagMs: 0, cpuPercent: 0, rssBytes: 0, heapUsedBytes: 0, heapLimitBytes: 0 };
  /** The last rebalancing view (NaN mean before the first, or alone). */
  view: RebalanceView = { mean: NaN, nodes: 0, excess: 0, blocked: 'not started' };
  /** The episode in progress, or null. */
  shedding: 'rebalance' | 'overload' | null = null;
  readonly #rt: Realtime;
  readonly #core: ServerCore<ConnData>;
  readonly #exchange: LoadExchange | null;
  readonly #log: LogLimiter;
  readonly #config: AppConfig;
  #sampler: LoadSampler | null = null;
  #budget: ShedBudget;
  #windowTimer: NodeJS.Timeout | null = null;
  #tickTimer: NodeJS.Timeout | null = null;
  #episodeShed = 0;
  #episodeAt = 0;

  constructor(rt: Realtime, exchange: LoadExchange | null, log: (line: string) => void) {
    this.#rt = rt;
    this.#config = rt.config;
    this.settings = shedSettings(rt.config);
    this.#core = serverCore(rt.server);
    this.#exchange = exchange;
    this.#log = new LogLimiter(log, SHED_LOG_INTERVAL_MS);
    this.memoryLimit = memoryLimitBytes();
    this.#budget = new ShedBudget(performance.now());
  }

  start(): void {
    if (this.#sampler !== null) return;
    this.#sampler = new LoadSampler();
    this.#windowTimer = setInterval(() => this.window(performance.now()), LOAD_WINDOW_MS);
    this.#windowTimer.unref();
    this.#arm();
  }

  stop(): void {
    if (this.#windowTimer !== null) clearInterval(this.#windowTimer);
    if (this.#tickTimer !== null) clearTimeout(this.#tickTimer);
    this.#windowTimer = this.#tickTimer = null;
    this.#sampler?.stop();
    this.#sampler = null;
  }

  #arm(): void {
    this.#tickTimer = setTimeout(() => {
      this.tick(performance.now());
      if (this.#sampler !== null) this.#arm();
    }, SHED_TICK_MS * (1 + Math.random() / 2));
    this.#tickTimer.unref();
  }

  /** This node's summary as it gossips it. */
  summary(): LoadSummary {
    const s = this.last;
    return {
      connections: this.#rt.server.openCount,
      lagMs: s.lagMs,
      cpuPercent: s.cpuPercent,
      rssMiB: Math.round(s.rssBytes / 1048576),
      memoryLimitMiB: Math.round(this.memoryLimit / 1048576),
      overloaded: this.overload.overloaded,
      draining: this.#rt.draining,
    };
  }

  /** Ends a load window: measures, moves the overload state, publishes the summary. */
  window(now: number, sample: LoadSample | undefined = this.#sampler?.sample()): void {
    if (sample === undefined) return;
    this.last = sample;
    if (this.overload.update(sample, this.memoryLimit, this.settings)) {
      this.#rt.overloaded = this.overload.overloaded;
      if (this.overload.overloaded) {
        this.counters.overloads++;
        this.#log.always('overload', `[murmur] shed: overloaded (${this.overload.why}): refusing upgrades (503 OVERLOADED), /readyz 503, shedding up to ${pct(this.settings.rate)} of ${this.#rt.server.openCount} connections a second with 1013`);
      } else {
        this.#log.always('overload', `[murmur] shed: no longer overloaded (event-loop delay p99 ${sample.lagMs} ms, rss ${Math.round(sample.rssBytes / 1048576)} MiB): taking upgrades again`);
      }
    }
    this.#exchange?.publishLoad(this.summary(), now);
  }

  /** One shedding step: what the policy allows now, oldest connections first. */
  tick(now: number): void {
    const open = this.#rt.server.openCount;
    let reason: 'rebalance' | 'overload' | null = null;
    let want = 0;
    if (this.#rt.draining) {
      // the drain closes everything its own way
    } else if (this.overload.overloaded && this.overload.hot) {
      reason = 'overload';
      want = open;
    } else if (this.settings.rebalance && this.#exchange !== null && !this.overload.overloaded) {
      this.view = rebalanceView(open, this.#exchange.peerLoads(now), this.settings, this.shedding === 'rebalance', now);
      if (this.view.excess > 0) {
        reason = 'rebalance';
        want = this.view.excess;
      }
    }
    if (reason !== this.shedding) this.#episode(reason, now);
    if (reason === null || want === 0) return;
    const n = this.#budget.take(now, open, this.settings.rate, want);
    if (n === 0) return;
    const code = reason === 'overload' ? AppCloseCode.TryAgainLater : AppCloseCode.ServiceRestart;
    const why = retryAfterReason(reason === 'overload' ? 'server overloaded' : 'rebalancing', reason === 'overload' ? this.#config.retryAfterSeconds : REBALANCE_RETRY_AFTER_S);
    const close = (conn: Connection<ConnData>): void => conn.close(code, why);
    let done = this.#core.forOldest(n, QUIET_MS, close);
    if (reason === 'overload' && done < n) done += this.#core.forOldest(n - done, 0, close);
    this.counters.shed[reason] += done;
    this.#episodeShed += done;
    this.#log.line(`progress ${reason}`, `[murmur] shed: ${reason}: ${this.#episodeShed} connections shed in ${Math.round((now - this.#episodeAt) / 1000)} s, ${open - done} left${reason === 'rebalance' ? `, cluster mean ${Math.round(this.view.mean)} over ${this.view.nodes} nodes` : ''}`);
  }

  #episode(reason: 'rebalance' | 'overload' | null, now: number): void {
    const prev = this.shedding;
    const open = this.#rt.server.openCount;
    if (prev !== null) {
      this.#log.always('episode', `[murmur] shed: ${prev} stops after ${this.#episodeShed} connections in ${Math.round((now - this.#episodeAt) / 1000)} s: ${open} open${prev === 'rebalance' && Number.isFinite(this.view.mean) ? `, cluster mean ${Math.round(this.view.mean)}` : ''}`);
    }
    this.shedding = reason;
    this.#episodeShed = 0;
    this.#episodeAt = now;
    this.#budget.reset(now);
    if (reason === null) return;
    this.counters.episodes[reason]++;
    const v = this.view;
    const detail =
      reason === 'rebalance'
        ? `${open} open, cluster mean ${Math.round(v.mean)} over ${v.nodes} nodes (margin ${pct(this.settings.margin)}): shedding ${v.excess} with 1012`
        : `${this.overload.why}: shedding with 1013`;
    this.#log.always('episode', `[murmur] shed: ${reason} starts: ${detail}, at most ${pct(this.settings.rate)} of the connections a second, oldest first`);
  }
}

function pct(f: number): string {
  return `${Math.round(f * 1000) / 10}%`;
}
