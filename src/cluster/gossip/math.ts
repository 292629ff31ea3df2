/**
 * Pure timing and sizing math of the gossip protocol, kept apart from the state machine so
 * each formula has its own table test (memberlist keeps the same split in util.go).
 * Times are milliseconds.
 */

/**
 * How long a suspected member has before it is declared dead, before any confirmation:
 * `mult * max(1, log10(n)) * probeInterval`. The log term keeps the odds that a refutation
 * reaches the whole cluster roughly constant as the cluster grows (SWIM §4.2).
 */
export function suspicionTimeout(mult: number, n: number, probeIntervalMs: number): number {
  const scale = Math.max(1, Math.log10(Math.max(1, n)));
  return Math.floor(mult * scale * probeIntervalMs);
}

/**
 * How many times one broadcast is handed to the wire: `mult * ceil(log10(n + 1))`.
 * Epidemic dissemination reaches every node with high probability after O(log n) rounds.
 */
export function retransmitLimit(mult: number, n: number): number {
  return mult * Math.ceil(Math.log10(n + 1));
}

/** Clusters at or below this size push-pull at the configured interval. */
export const PUSH_PULL_SCALE_THRESHOLD = 32;

/**
 * Push-pull interval for a cluster of `n`: the interval grows by one step each time the
 * cluster doubles past 32 nodes, so full-state exchanges (O(n) bytes each) do not grow the
 * cluster's total anti-entropy traffic quadratically.
 */
export function pushPullInterval(intervalMs: number, n: number): number {
  if (n <= PUSH_PULL_SCALE_THRESHOLD) return intervalMs;
  const mult = Math.ceil(Math.log2(n) - Math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1;
  return mult * intervalMs;
}

/**
 * Lifeguard's dynamic suspicion (Lifeguard §IV-B): the total timeout starts at `max` and
 * falls logarithmically toward `min` as `n` of the wanted `k` independent confirmations
 * arrive. Returns the total timeout measured from the start of the suspicion.
 */
export function suspicionTotal(n: number, k: number, minMs: number, maxMs: number): number {
  if (k < 1) return minMs;
  const frac = Math.log(n + 1) / Math.log(k + 1);
  const raw = Math.floor(maxMs - frac * (maxMs - minMs));
  return raw < minMs ? minMs : raw;
}

/** Time left of a suspicion started `elapsed` ms ago with `n` confirmations; may be negative. */
export function remainingSuspicionTime(n: number, k: number, elapsedMs: number, minMs: number, maxMs: number): number {
  return suspicionTotal(n, k, minMs, maxMs) - elapsedMs;
}

/**
 * The list that inserting `items[k]` at index `positions[k]` one after the other would give
 * (each index counted in the list as it is at that moment, so 0 <= positions[k] <=
 * list.length + k), in O(n log n) instead of O(n²) splices. Walking the insertions
 * backwards, item k takes the positions[k]-th slot that no later item took, because the
 * later items are exactly what was added around it afterwards; `list` fills the slots
 * left, in order. A Fenwick tree counts the free slots.
 */
export function insertAll<T>(list: readonly T[], items: readonly T[], positions: readonly number[]): T[] {
  const n = list.length + items.length;
  const tree = new Int32Array(n + 1);
  for (let i = 1; i <= n; i++) {
    tree[i] = (tree[i] as number) + 1;
    const up = i + (i & -i);
    if (up <= n) tree[up] = (tree[up] as number) + (tree[i] as number);
  }
  let top = 1;
  while (top * 2 <= n) top *= 2;
  const taken = new Uint8Array(n);
  // Exact length: a simulated node keeps this list for as long as it runs.
  const out = new Array<T>(n);
  for (let k = items.length - 1; k >= 0; k--) {
    const p = positions[k] as number;
    if (!(p >= 0 && p <= list.length + k)) throw new RangeError(`insertion ${k} at ${p} outside 0..${list.length + k}`);
    // Largest prefix with fewer than p + 1 free slots: the slot after it is the one.
    let pos = 0;
    let rem = p + 1;
    for (let step = top; step > 0; step >>= 1) {
      const next = pos + step;
      if (next <= n && (tree[next] as number) < rem) {
        pos = next;
        rem -= tree[next] as number;
      }
    }
    out[pos] = items[k] as T;
    taken[pos] = 1;
    for (let i = pos + 1; i <= n; i += i & -i) tree[i] = (tree[i] as number) - 1;
  }
  let j = 0;
  for (let i = 0; i < n; i++) if (taken[i] === 0) out[i] = list[j++] as T;
  return out;
}

/** A source of uniform numbers in [0, 1). The simulator injects a seeded one. */
export type Random = () => number;

/** mulberry32: a tiny seeded PRNG, good enough for shuffles and jitter, never for keys. */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Integer in [0, n). */
export function randomIndex(random: Random, n: number): number {
  return Math.floor(random() * n);
}

/** Fisher-Yates in place. */
export function shuffle<T>(items: T[], random: Random): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomIndex(random, i + 1);
    const t = items[i] as T;
    items[i] = items[j] as T;
    items[j] = t;
  }
}

/**
 * Up to `k` distinct random items passing `accept`. Tries at most 3n random picks and
 * then falls back to a scan, so it terminates and, for small n, still finds every candidate.
 */
export function pickRandom<T>(items: readonly T[], k: number, random: Random, accept: (item: T) => boolean): T[] {
  const out: T[] = [];
  const n = items.length;
  if (k <= 0 || n === 0) return out;
  const tries = 3 * n;
  for (let i = 0; i < tries && out.length < k; i++) {
    const item = items[randomIndex(random, n)] as T;
    if (!out.includes(item) && accept(item)) out.push(item);
  }
  if (out.length < k && n <= 64) {
    // Small lists: random picks may have missed the few eligible items; finish with a scan
    // from a random start so the choice stays unbiased enough.
    const start = randomIndex(random, n);
    for (let i = 0; i < n && out.length < k; i++) {
      const item = items[(start + i) % n] as T;
      if (!out.includes(item) && accept(item)) out.push(item);
    }
  }
  return out;
}
