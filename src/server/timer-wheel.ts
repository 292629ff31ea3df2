/**
 * One timer for every connection's deadlines: handshake timeout, heartbeat, idle timeout,
 * close timeout. A hashed wheel with intrusive links, so scheduling is O(1) and costs three
 * fields on the entry instead of a Timeout object (about 150 bytes) per connection.
 *
 * Entries are rescheduled lazily: activity only updates a timestamp on the connection, and
 * when its slot comes round the entry decides whether it is really due (onWheel) and returns
 * its next deadline. So a busy connection costs nothing per message.
 */

export interface WheelEntry {
  wheelNext: WheelEntry | null;
  wheelPrev: WheelEntry | null;
  /** Absolute due time (ms on the wheel's clock); -1 when not scheduled. */
  wheelDue: number;
  /** Called when due. Returns the next due time, or -1 to leave the wheel. */
  onWheel(now: number): number;
}

export type Clock = () => number;

export class TimerWheel {
  readonly tickMs: number;
  readonly slots: Array<WheelEntry | null>;
  /** The wheel's clock at the last tick: a coarse "now" that costs nothing to read. */
  now: number;
  size: number;
  private lastTick: number;
  private timer: NodeJS.Timeout | null;
  private readonly clock: Clock;

  constructor(tickMs = 250, slotCount = 512, clock: Clock = monotonicNow) {
    this.tickMs = tickMs;
    this.slots = new Array<WheelEntry | null>(slotCount).fill(null);
    this.clock = clock;
    this.now = clock();
    this.size = 0;
    this.lastTick = Math.floor(this.now / tickMs);
    this.timer = null;
  }

  /** Starts the interval that drives the wheel (unref'd: it never keeps a process alive). */
  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(wheelOnInterval, this.tickMs, this);
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

  schedule(entry: WheelEntry, due: number): void {
    if (entry.wheelDue !== -1) this.unlink(entry);
    // Never into the slot being processed: the earliest is the next tick. The stored due
    // time is the effective one, so the slot can always be derived from it.
    const effective = Math.max(due, (this.lastTick + 1) * this.tickMs);
    // The first tick at or after the due time.
    const slot = Math.ceil(effective / this.tickMs) % this.slots.length;
    const head = this.slots[slot] ?? null;
    entry.wheelDue = effective;
    entry.wheelPrev = null;
    entry.wheelNext = head;
    if (head !== null) head.wheelPrev = entry;
    this.slots[slot] = entry;
    this.size++;
  }

  cancel(entry: WheelEntry): void {
    if (entry.wheelDue !== -1) this.unlink(entry);
  }

  /** Processes every slot up to `now`. Public so tests can drive a fake clock. */
  tick(now: number): void {
    this.now = now;
    const target = Math.floor(now / this.tickMs);
    // After a long stall, one full turn visits every slot; more would repeat work.
    let t = Math.max(this.lastTick + 1, target - this.slots.length + 1);
    for (; t <= target; t++) {
      this.lastTick = t;
      const slot = t % this.slots.length;
      let e = this.slots[slot] ?? null;
      while (e !== null) {
        const next = e.wheelNext;
        if (e.wheelDue <= now) {
          this.unlink(e);
          const again = e.onWheel(now);
          if (again >= 0 && e.wheelDue === -1) this.schedule(e, again);
        }
        e = next;
      }
    }
    this.lastTick = target;
  }

  /** Visits every scheduled entry (graceful shutdown walks connections this way). */
  forEach(fn: (e: WheelEntry) => void): void {
    const all: WheelEntry[] = [];
    for (let s = 0; s < this.slots.length; s++) {
      for (let e = this.slots[s] ?? null; e !== null; e = e.wheelNext) all.push(e);
    }
    for (const e of all) fn(e);
  }

  private unlink(e: WheelEntry): void {
    if (e.wheelPrev !== null) e.wheelPrev.wheelNext = e.wheelNext;
    else this.slots[Math.ceil(e.wheelDue / this.tickMs) % this.slots.length] = e.wheelNext;
    if (e.wheelNext !== null) e.wheelNext.wheelPrev = e.wheelPrev;
    e.wheelNext = null;
    e.wheelPrev = null;
    e.wheelDue = -1;
    this.size--;
  }
}

function wheelOnInterval(wheel: TimerWheel): void {
  wheel.tick(wheel.refresh());
}

// Whole milliseconds since the process started: small integers (Smis) stored in place on
// every connection, where a fractional time would box a HeapNumber per field.
function monotonicNow(): number {
  return Math.floor(performance.now());
}
