/**
 * Checks on the strings clients name things with (topics, user ids, presence meta), shared by
 * both entry points of `murmur serve` (the WebSocket protocol and the HTTP API) and by token
 * verification, plus the rate-limited log of client errors.
 *
 * Why well-formed Unicode: a JavaScript string may hold a lone UTF-16 surrogate ("\ud83d"),
 * which JSON escapes can produce but UTF-8 cannot carry. Encoded for another node (the
 * cluster bus, presence replication) it becomes U+FFFD, so "room:\ud83d" on one node is
 * "room:\ufffd" on the others: delivered here, lost there. Such names are refused where they
 * enter, with BAD_UNICODE.
 */

/** Longest user id: ids are held per presence entry and sent in every message envelope. */
export const MAX_USER_LENGTH = 128;
/** A client error kind is logged at most once per this interval, with the count of the ones not logged. */
export { ERROR_LOG_INTERVAL_MS as CLIENT_ERROR_LOG_INTERVAL_MS } from '../server/error-log.js';

const LONE_SURROGATE = /\p{Cs}/u;
const CONTROL = /[\u0000-\u001f\u007f]/;

/** False when `s` holds a lone UTF-16 surrogate (a string UTF-8 cannot represent). */
export function wellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

/** Whether `s` has a C0 control character or DEL. */
export function hasControl(s: string): boolean {
  return CONTROL.test(s);
}

/** What is wrong with a user id, as an error code and a message; null when it is fine. */
export function userProblem(u: unknown, what: string): { code: 'BAD_FIELD' | 'BAD_UNICODE'; message: string } | null {
  if (typeof u !== 'string' || u.length === 0 || u.length > MAX_USER_LENGTH || hasControl(u)) {
    return { code: 'BAD_FIELD', message: `${what} must be a string of 1-${MAX_USER_LENGTH} characters without control characters` };
  }
  if (!wellFormed(u)) return { code: 'BAD_UNICODE', message: `${what} holds a lone UTF-16 surrogate (not well-formed Unicode)` };
  return null;
}

/**
 * Whether every string in a JSON value (object keys included) is well-formed. Iterative, so a
 * deeply nested value costs its size and never the call stack.
 */
export function jsonWellFormed(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (!wellFormed(v)) return false;
    } else if (Array.isArray(v)) {
      for (const x of v) stack.push(x);
    } else if (typeof v === 'object' && v !== null) {
      for (const k of Object.keys(v)) {
        if (!wellFormed(k)) return false;
        stack.push((v as Record<string, unknown>)[k]);
      }
    }
  }
  return true;
}

/**
 * Logs client errors (and server failures a client triggered) without letting a client flood
 * the log: the server's RateLimitedLog, one line per kind per interval. Kinds are the server's
 * own codes, never client text, so the map stays small.
 */
export { RateLimitedLog as ClientErrorLog, stderrLine } from '../server/error-log.js';

/** Parsed request target: the path and the query; null when it is not a URL (the client gets 400). */
export function requestTarget(raw: string | undefined): URL | null {
  try {
    return new URL(raw ?? '/', 'http://localhost');
  } catch {
    return null;
  }
}
