/**
 * One timer for every connection's deadlines: handshake timeout, heartbeat, idle timeout,
 * close timeout. Connections sit on one singly linked list through a field of their own, and
 * a sweep walks it, a slice per tick, so that every entry is visited about once per period;
 * the entry decides from its own state and one timestamp whether a deadline has passed.
 *
 * What this costs an entry: one link field (8 bytes), against three for a hashed wheel with
 * intrusive links (next, prev, due) or about 150 bytes for a Timeout object. What it costs in
 * time: a visit per entry per period, about 10-100 ns each (a cache miss at worst), and
 * deadlines are met within one period. The visit rate is capped (maxVisitsPerSecond), so a
 * process with a million connections spends a bounded share of a core on it and its period
 * stretches instead (1,000,000 / 200,000 = 5 s).
 *
 * Entries are never unlinked from outside: an entry leaves when its visit returns false (a
 * closed connection), at most one period after it closed. New entries go to the tail, so the
 * sweep's position (the entry before the next to visit) stays valid whatever a visit does.
 */

export interface SweepEntry {
  sweepNext: SweepEntry | null;
  /** Called about once per period. Returns false to leave the list. */
  onSweep(now: number): boolean;
}

export type Clock = () => number;

/** The list's head: never visited, never removed. */
class SweepHead implements SweepEntry {
  sweepNext: SweepEntry | null = null;
  onSweep(): boolean {
    return true;
  }
}

export interface SweeperOptions {
  /** How often the timer runs (ms). */
  tickMs?: number;
  /** Every entry is visited about once per period (ms), while the visit rate allows. */
  periodMs?: number;
  /** The visit rate the sweep stays under; past it the period stretches. */
  maxVisitsPerSecond?: number;
  clock?: Clock;
}

export class Sweeper {
  readonly tickMs: number;
  readonly periodMs: number;
  readonly maxVisitsPerSecond: number;
  /** The clock at the last tick: a coarse "now" that costs nothing to read. */
  now: number;
  /** Entries on the list (closed ones included until their next visit). */
  size: number;
  private readonly head: SweepHead;
  private tail: SweepEntry;
  /** The entry before the next one to visit. */
  private cursor: SweepEntry;
  private lastTick: number;
  private timer: NodeJS.Timeout | null;
  private readonly clock: Clock;

  constructor(options: SweeperOptions = {}) {
    this.periodMs = Math.max(1, options.periodMs ?? 1000);
    this.tickMs = Math.max(1, Math.min(options.tickMs ?? 250, this.periodMs));
    this.maxVisitsPerSecond = options.maxVisitsPerSecond ?? 200_000;
    this.clock = options.clock ?? monotonicNow;
    this.now = this.clock();
    this.size = 0;
    this.head = new SweepHead();
    this.tail = this.head;
    this.cursor = this.head;
    this.lastTick = this.now;
    this.timer = null;
  }

  /** Starts the interval that drives the sweep (unref'd: it never keeps a process alive). */
  start(): void {
    if (this.timer !== null) return;
    this.lastTick = this.refresh();
    this.timer = setInterval(sweeperOnInterval, this.tickMs, this);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Refreshes the coarse clock (for code that needs now between ticks). */
  refresh(): number {
    this.now = this.clock();
    return this.now;
  }

  /** Appends an entry; it must not be on a list already. */
  add(entry: SweepEntry): void {
    entry.sweepNext = null;
    this.tail.sweepNext = entry;
    this.tail = entry;
    this.size++;
  }

  /**
   * Visits the slice of the list that the time since the last tick calls for: size x
   * elapsed / period entries (one whole pass at most), fewer when the visit rate cap says so.
   * Public so tests can drive a fake clock.
   */
  tick(now: number): void {
    this.now = now;
    const elapsed = Math.max(0, now - this.lastTick);
    this.lastTick = now;
    if (this.size === 0) return;
    let budget = Math.min(this.size, Math.ceil((this.size * elapsed) / this.periodMs), Math.ceil((this.maxVisitsPerSecond * elapsed) / 1000));
    const head = this.head;
    let prev = this.cursor;
    while (budget-- > 0) {
      let cur = prev.sweepNext;
      if (cur === null) {
        // End of a pass: start the next at the head.
        prev = head;
        cur = head.sweepNext;
        if (cur === null) break;
      }
      if (cur.onSweep(now)) {
        prev = cur;
        continue;
      }
      // Leaves the list. A visit may have appended entries, but only after the tail, so
      // prev is still cur's predecessor.
      prev.sweepNext = cur.sweepNext;
      if (this.tail === cur) this.tail = prev;
      cur.sweepNext = null;
      this.size--;
    }
    this.cursor = prev;
  }

  /** Visits every entry on the list, in order (graceful shutdown walks connections this way). */
  forEach(fn: (e: SweepEntry) => void): void {
    const all: SweepEntry[] = [];
    for (let e = this.head.sweepNext; e !== null; e = e.sweepNext) all.push(e);
    for (let i = 0; i < all.length; i++) fn(all[i]!);
  }

  /**
   * Calls `fn` on entries from the oldest on until it returned true `n` times or the list
   * ended, without copying the list (shedding a few connections of a million walks a few).
   * `fn` may close the entry it is given: entries leave the list only at a visit, and entries
   * added meanwhile go after the tail. Returns how many times `fn` returned true.
   */
  forFirst(n: number, fn: (e: SweepEntry) => boolean): number {
    let done = 0;
    for (let e = this.head.sweepNext; e !== null && done < n; e = e.sweepNext) if (fn(e)) done++;
    return done;
  }
}

function sweeperOnInterval(sweeper: Sweeper): void {
  sweeper.tick(sweeper.refresh());
}

// Whole milliseconds since the process started: small integers (Smis) stored in place on
// every connection, where a fractional time would box a HeapNumber per field.
function monotonicNow(): number {
  return Math.floor(performance.now());
}
