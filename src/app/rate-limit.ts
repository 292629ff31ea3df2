/**
 * Per-connection throttling, as plain fields on the session (no timer, no object per
 * connection): a token bucket for commands, and an error counter over a fixed window that
 * decides when a connection is abusive. Both read a clock the caller passes (ms).
 */

export interface BucketState {
  /** Tokens left (fractional). */
  tokens: number;
  /** Clock of the last refill. */
  refilledAt: number;
}

/** Takes one token if there is one, refilling `ratePerSec` per second up to `burst`. */
export function takeToken(s: BucketState, now: number, ratePerSec: number, burst: number): boolean {
  const elapsed = now - s.refilledAt;
  if (elapsed > 0) {
    s.tokens = Math.min(burst, s.tokens + (elapsed * ratePerSec) / 1000);
    s.refilledAt = now;
  }
  if (s.tokens < 1) return false;
  s.tokens -= 1;
  return true;
}

export interface ErrorWindowState {
  errors: number;
  errorsSince: number;
}

/** Counts one error; true when the window now holds `max` errors (the connection should be closed). */
export function countError(s: ErrorWindowState, now: number, windowMs: number, max: number): boolean {
  if (now - s.errorsSince > windowMs) {
    s.errorsSince = now;
    s.errors = 0;
  }
  s.errors++;
  return s.errors >= max;
}
