/**
 * Topic patterns for permissions and history: `*` matches any run of characters (':' included),
 * `?` matches one character, everything else matches itself. `room:*` matches `room:lobby` and
 * `room:a:b`; `*` alone matches every topic.
 *
 * Matched with the two-pointer wildcard algorithm, not a RegExp: O(pattern x topic) in the
 * worst case, so a pattern like `*a*a*a*b` cannot backtrack exponentially.
 */

export const MAX_PATTERN_LENGTH = 256;

/** Throws a TypeError for a pattern that is empty, too long, or has a control character. */
export function checkPattern(pattern: string): void {
  if (typeof pattern !== 'string' || pattern.length === 0 || pattern.length > MAX_PATTERN_LENGTH) {
    throw new TypeError(`a topic pattern must be a string of 1-${MAX_PATTERN_LENGTH} characters: ${JSON.stringify(pattern)}`);
  }
  if (/[\u0000-\u001f\u007f]/.test(pattern)) throw new TypeError(`a topic pattern has a control character: ${JSON.stringify(pattern)}`);
}

/** True if `topic` matches `pattern`. */
export function globMatch(pattern: string, topic: string): boolean {
  let p = 0;
  let t = 0;
  let star = -1; // position in pattern after the last '*'
  let mark = 0; // position in topic that '*' currently absorbs up to
  while (t < topic.length) {
    const pc = pattern.charCodeAt(p);
    if (p < pattern.length && (pc === 63 /* ? */ || pc === topic.charCodeAt(t))) {
      p++;
      t++;
    } else if (p < pattern.length && pc === 42 /* * */) {
      star = ++p;
      mark = t;
    } else if (star !== -1) {
      p = star;
      t = ++mark;
    } else return false;
  }
  while (p < pattern.length && pattern.charCodeAt(p) === 42) p++;
  return p === pattern.length;
}

/** True if `topic` matches any of `patterns`. */
export function matchesAny(patterns: readonly string[], topic: string): boolean {
  for (let i = 0; i < patterns.length; i++) if (globMatch(patterns[i]!, topic)) return true;
  return false;
}
