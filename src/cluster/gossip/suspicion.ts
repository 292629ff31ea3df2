import { suspicionTotal } from './math.js';

/**
 * One suspicion of one member: the time it was raised, the confirmations counted so far
 * and the resulting deadline. No timer lives here: the state machine compares `deadline`
 * with the clock it is driven by. Because a refutation replaces the member's Suspicion
 * object (or clears it), a deadline left over from an older suspicion can never kill a
 * member that has since refuted: the state machine checks object identity, the
 * equivalent of memberlist's `StateChange.Equal` guard.
 */
export class Suspicion {
  /** Independent confirmations counted (the accuser itself is not one). */
  n = 0;
  readonly k: number;
  minMs: number;
  maxMs: number;
  readonly start: number;
  /** Our own link to the suspect closed without a goodbye: the timeouts are the link ones. */
  link = false;
  deadline: number;
  readonly #seen = new Set<string>();

  /**
   * @param from the first accuser; excluded from confirmations because our own suspicion
   *   may be gossiped back to us.
   * @param k confirmations that drive the timeout down to `minMs`; below 1 the timeout is
   *   `minMs` from the start (small clusters cannot supply independent confirmations).
   */
  constructor(from: string, k: number, minMs: number, maxMs: number, now: number) {
    this.k = k;
    this.minMs = minMs;
    this.maxMs = maxMs;
    this.start = now;
    this.#seen.add(from);
    this.deadline = now + (k < 1 ? minMs : maxMs);
  }

  /**
   * Our own link to the suspect closed without a goodbye while it was already suspected:
   * the timeouts drop to `minMs`/`maxMs` (never above what they were) and the deadline is
   * recomputed from the original start, so the stronger evidence never delays a verdict.
   */
  strengthen(minMs: number, maxMs: number): void {
    this.link = true;
    if (minMs < this.minMs) this.minMs = minMs;
    if (maxMs < this.maxMs) this.maxMs = maxMs;
    const deadline = this.start + (this.k < 1 ? this.minMs : suspicionTotal(this.n, this.k, this.minMs, this.maxMs));
    if (deadline < this.deadline) this.deadline = deadline;
  }

  /**
   * Count a confirmation from `from`. Returns true when it was new information (a first
   * confirmation from that member while the timeout could still shrink); the caller then
   * re-gossips the suspicion so that others can count it too.
   */
  confirm(from: string): boolean {
    if (this.n >= this.k) return false;
    if (this.#seen.has(from)) return false;
    this.#seen.add(from);
    this.n++;
    const deadline = this.start + suspicionTotal(this.n, this.k, this.minMs, this.maxMs);
    if (deadline < this.deadline) this.deadline = deadline;
    return true;
  }
}
