import { DEFAULT_LIMITS } from '../limits.js';

/** A kind of line is logged at most once per this interval, with the count of the ones not logged (limits.errorLogIntervalMs). */
export const ERROR_LOG_INTERVAL_MS = DEFAULT_LIMITS.errorLogIntervalMs;

/**
 * A log that says each kind of line at most once per interval, then how many it held back:
 * a peer that triggers the same error in a loop cannot flood the log (or the disk behind it).
 * Memory: one entry per kind, and kinds are the program's own strings, never the peer's.
 */
export class RateLimitedLog {
  readonly #log: (line: string) => void;
  readonly #intervalMs: number;
  readonly #clock: () => number;
  readonly #kinds = new Map<string, { at: number; suppressed: number }>();

  constructor(log: (line: string) => void, intervalMs: number = ERROR_LOG_INTERVAL_MS, clock: () => number = Date.now) {
    this.#log = log;
    this.#intervalMs = intervalMs;
    this.#clock = clock;
  }

  /** Logs `text` under `kind` unless a line of that kind went out less than an interval ago. */
  line(kind: string, text: string): void {
    const now = this.#clock();
    const k = this.#kinds.get(kind);
    if (k !== undefined && now - k.at < this.#intervalMs) {
      k.suppressed++;
      return;
    }
    const more = k === undefined || k.suppressed === 0 ? '' : ` (and ${k.suppressed} more since the last line of this kind)`;
    this.#kinds.set(kind, { at: now, suppressed: 0 });
    this.#log(`${text}${more}`);
  }
}

/** The default sink of log lines: stderr. */
export function stderrLine(line: string): void {
  process.stderr.write(`${line}\n`);
}

/**
 * A server's default onError: each kind said on stderr at most once per interval (with the
 * count held back), the error's stack included.
 */
export function defaultOnError(log: RateLimitedLog = new RateLimitedLog(stderrLine)): (err: Error, kind: string) => void {
  return (err, kind) => log.line(kind, `[murmur] ${kind}: ${err.stack ?? err.message}`);
}
