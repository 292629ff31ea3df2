/**
 * Gives V8's young generation back when the process goes quiet.
 *
 * V8 doubles its semi-spaces (1 -> 2 -> 4 -> 8 -> 16 MiB) while objects survive its scavenges,
 * as they do during a ramp of connections or under load, and shrinks them only in a full GC
 * that finds the allocation rate of the last 5 s below 1 MB/s (or one that reduces memory).
 * Left alone, that GC comes from V8's own memory reducer tens of seconds later, or never, and
 * an idle process holds up to 32 MiB it does not use: 0.5-1 KiB per idle connection at
 * 10,000-19,000 connections.
 *
 * So one process-wide ticker watches the event loop's utilisation (which costs the hot path
 * nothing). At the first quiet tick it runs a scavenge (so that V8's allocation rate is then
 * measured over the quiet alone); once the loop has stayed quiet for `quietMs` and the young
 * generation has grown, it runs one full GC (gc() of V8's gc extension, obtained at run time),
 * and at most one more a quiet stretch later if V8 did not shrink in the first. Then it waits:
 * it runs again only after a busy tick or after it has seen the young generation back at its
 * floor. Never while busy; never on a heap larger than `maxHeapBytes` (the pause grows with the
 * live heap).
 *
 * What it costs: one unref'd 1 s interval per process while a server holds it; while quiet,
 * one read of V8's space statistics per tick; the gc function's context (~0.4 MB of RSS, once,
 * made at the first reduction) unless node runs with --expose-gc.
 */
import { getHeapSpaceStatistics, getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { performance } from 'node:perf_hooks';
import { IDLE_GC_DEFAULTS } from '../limits.js';

export interface IdleGcSettings {
  /** The loop must stay under quietUtilization this long (ms) before a GC. */
  quietMs: number;
  /** A tick whose event-loop utilisation (0..1) is below this is quiet. */
  quietUtilization: number;
  /** A tick at or above this re-arms the trigger after a GC. */
  busyUtilization: number;
  /** Committed young-generation bytes at or below which there is nothing worth giving back. */
  youngFloorBytes: number;
  /** No GC while the JS heap holds more than this many bytes (the pause grows with it). */
  maxHeapBytes: number;
}

/** What a tick decided. */
export type IdleGcDecision = 'none' | 'scavenge' | 'reduce' | 'heap-too-large';

/** The young generation's committed bytes and the heap's used bytes, read only when a decision needs them. */
export interface HeapSizes {
  young: number;
  heapUsed: number;
}

/**
 * GCs per quiet stretch: the first, and one more quietMs later if the first left the young
 * generation above its floor (V8 had still counted the load in its allocation rate).
 */
export const IDLE_GC_ATTEMPTS = 2;

/**
 * The trigger, pure: fed one observation per tick (the clock and the loop's utilisation since
 * the previous tick), it says when to reduce. Sizes are asked for only once the loop has been
 * quiet for quietMs.
 */
export class IdleGcTrigger {
  readonly settings: IdleGcSettings;
  /** End of the first quiet tick of the current stretch (or the last GC's time, after one), -1 while not quiet. */
  private quietSince: number;
  /** GCs left before the trigger waits for a busy tick or for the young generation at its floor. */
  private credits: number;

  constructor(settings: IdleGcSettings) {
    this.settings = settings;
    this.quietSince = -1;
    this.credits = IDLE_GC_ATTEMPTS;
  }

  observe(now: number, utilization: number, sizes: () => HeapSizes): IdleGcDecision {
    const s = this.settings;
    if (utilization >= s.busyUtilization) this.credits = IDLE_GC_ATTEMPTS;
    if (utilization >= s.quietUtilization) {
      this.quietSince = -1;
      return 'none';
    }
    if (this.quietSince < 0) {
      // The first quiet tick: a scavenge now empties the young generation, so that V8's rate at
      // the GC quietMs later counts only the quiet. Without it V8 also counts what the load left
      // in the young generation since its last scavenge (up to a whole semi-space, 16 MiB) and
      // keeps the semi-spaces: measured, 3 GCs in 6 after a ramp of 10,000.
      this.quietSince = now;
      return this.credits > 0 && sizes().young > s.youngFloorBytes ? 'scavenge' : 'none';
    }
    if (now - this.quietSince < s.quietMs) return 'none';
    const { young, heapUsed } = sizes();
    if (young <= s.youngFloorBytes) {
      // Nothing to give back; what grows from here may be given back again.
      this.credits = IDLE_GC_ATTEMPTS;
      return 'none';
    }
    if (this.credits === 0) return 'none';
    if (heapUsed > s.maxHeapBytes) {
      this.credits = 0;
      return 'heap-too-large';
    }
    this.credits--;
    // A retry needs a whole quiet stretch after this GC: V8's rate is over its last 5 s.
    this.quietSince = now;
    return 'reduce';
  }
}

/** What the reducer did in this process (the metrics' figures). */
export interface IdleGcStats {
  /** Scavenges run at the start of a quiet stretch (so the GC after it sees only the quiet). */
  scavenges: number;
  /** GCs run on a quiet process. */
  reductions: number;
  /** Of those, how many left the young generation above its floor (V8 still saw allocation). */
  declined: number;
  /** Quiet periods skipped because the heap was over maxHeapBytes. */
  skippedLargeHeap: number;
  /** Committed young-generation bytes given back, in all. */
  youngBytesFreed: number;
  /** Pause of the last GC and the longest, ms. */
  lastPauseMs: number;
  maxPauseMs: number;
  /** Why the reducer cannot run in this process (no gc function), or null. */
  unavailable: string | null;
}

export const idleGcStats: IdleGcStats = {
  scavenges: 0,
  reductions: 0,
  declined: 0,
  skippedLargeHeap: 0,
  youngBytesFreed: 0,
  lastPauseMs: 0,
  maxPauseMs: 0,
  unavailable: null,
};

type GcFunction = (options?: { type: 'minor' | 'major' }) => void;
let gcFunction: GcFunction | null = null;

/**
 * V8's gc(): the process's own under --expose-gc, else one taken from a context made while the
 * flag is on for that moment only (the gc extension is installed in contexts made while it is
 * set; the flag is turned back off so no later vm context gets a global gc). Null, with the
 * reason in idleGcStats.unavailable, where that fails.
 */
function obtainGc(): GcFunction | null {
  if (gcFunction !== null || idleGcStats.unavailable !== null) return gcFunction;
  const own = (globalThis as { gc?: unknown }).gc;
  if (typeof own === 'function') return (gcFunction = own as GcFunction);
  try {
    setFlagsFromString('--expose-gc');
    try {
      const fn: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
      if (typeof fn === 'function') gcFunction = fn as GcFunction;
    } finally {
      setFlagsFromString('--no-expose-gc');
    }
  } catch (err) {
    idleGcStats.unavailable = `gc() could not be obtained: ${(err as Error).message}`;
    return null;
  }
  if (gcFunction === null) idleGcStats.unavailable = 'gc() could not be obtained: V8 did not install its gc extension';
  return gcFunction;
}

/** Committed bytes of V8's young generation (new space) and used bytes of the whole heap. */
export function heapSizes(): HeapSizes {
  let young = 0;
  for (const sp of getHeapSpaceStatistics()) if (sp.space_name === 'new_space') young = sp.physical_space_size;
  return { young, heapUsed: getHeapStatistics().used_heap_size };
}

/** Runs a scavenge now (V8's minor GC); false when gc() is unavailable. */
export function scavenge(): boolean {
  const gc = obtainGc();
  if (gc === null) return false;
  gc({ type: 'minor' });
  idleGcStats.scavenges++;
  return true;
}

/** Runs one reduction now; returns its pause in ms, or -1 when gc() is unavailable. */
export function reduceYoungGeneration(): number {
  const gc = obtainGc();
  if (gc === null) return -1;
  const before = heapSizes().young;
  const t0 = performance.now();
  gc();
  const pause = performance.now() - t0;
  const after = heapSizes().young;
  idleGcStats.reductions++;
  if (after > idleGc.settings.youngFloorBytes) idleGcStats.declined++;
  if (after < before) idleGcStats.youngBytesFreed += before - after;
  idleGcStats.lastPauseMs = pause;
  if (pause > idleGcStats.maxPauseMs) idleGcStats.maxPauseMs = pause;
  return pause;
}

/** The process-wide ticker: running while at least one server holds it. */
class IdleGcTicker {
  private holders = 0;
  private timer: NodeJS.Timeout | null = null;
  private trigger: IdleGcTrigger | null = null;
  private elu: ReturnType<typeof performance.eventLoopUtilization> | null = null;
  /** IDLE_GC_DEFAULTS, or what tests set before the first hold(). */
  settings: IdleGcSettings & { tickMs: number } = { ...IDLE_GC_DEFAULTS };

  /** Whether the ticker runs (some server holds it and gc() was not found unavailable). */
  get running(): boolean {
    return this.timer !== null;
  }

  hold(): void {
    if (this.holders++ > 0 || idleGcStats.unavailable !== null) return;
    this.trigger = new IdleGcTrigger(this.settings);
    this.elu = performance.eventLoopUtilization();
    this.timer = setInterval(idleGcOnInterval, this.settings.tickMs, this);
    this.timer.unref();
  }

  release(): void {
    if (this.holders === 0 || --this.holders > 0) return;
    this.stop();
  }

  private stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.trigger = null;
    this.elu = null;
  }

  tick(): void {
    if (this.trigger === null || this.elu === null) return;
    const now = performance.eventLoopUtilization();
    const utilization = performance.eventLoopUtilization(now, this.elu).utilization;
    this.elu = now;
    const decision = this.trigger.observe(performance.now(), utilization, heapSizes);
    if (decision === 'heap-too-large') idleGcStats.skippedLargeHeap++;
    else if (decision === 'scavenge' && !scavenge()) this.stop();
    else if (decision === 'reduce' && reduceYoungGeneration() < 0) this.stop();
  }
}

function idleGcOnInterval(ticker: IdleGcTicker): void {
  ticker.tick();
}

/** Servers hold it while they run (ServerOptions.idleGc, on by default) and release it when closed. */
export const idleGc = new IdleGcTicker();
