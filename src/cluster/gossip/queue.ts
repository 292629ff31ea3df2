/**
 * The transmit-limited broadcast queue (memberlist's TransmitLimitedQueue, SWIM §4.1).
 *
 * Each broadcast is an encoded record handed to the wire a limited number of times. Packing
 * prefers the least-sent broadcasts, and among those the newest, so fresh news overtakes
 * news most nodes already have. A named broadcast replaces any queued one of the same name:
 * newer news about a member supersedes older news about it. Broadcasts are kept in buckets
 * by transmit count (a handful of buckets, since the limit is ~4 * log10(n)), each bucket
 * ordered by id, so packing a datagram touches only what it sends.
 */
export interface Broadcast {
  readonly id: number;
  readonly name: string | null;
  readonly record: Uint8Array;
  transmits: number;
  /** Called once when the broadcast leaves the queue: `true` after its last transmit, `false` if replaced or dropped. */
  readonly done: ((sent: boolean) => void) | null;
}

export class BroadcastQueue {
  #buckets: Broadcast[][] = [];
  readonly #byName = new Map<string, Broadcast>();
  #nextId = 1;
  #size = 0;
  readonly maxDepth: number;
  /** Broadcasts dropped because the queue was full. */
  dropped = 0;

  /** @param maxDepth bound on queued broadcasts; the most-sent one is dropped to make room. */
  constructor(maxDepth = Infinity) {
    this.maxDepth = maxDepth;
  }

  get size(): number {
    return this.#size;
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /** Queue `record`; if `name` is given, replace the queued broadcast of that name. */
  enqueue(record: Uint8Array, name: string | null = null, done: ((sent: boolean) => void) | null = null): void {
    if (name !== null) {
      const old = this.#byName.get(name);
      if (old) this.#remove(old, false);
    }
    if (this.#size >= this.maxDepth) this.#dropOne();
    const b: Broadcast = { id: this.#nextId++, name, record, transmits: 0, done };
    this.#insert(b);
    if (name !== null) this.#byName.set(name, b);
  }

  /**
   * Take broadcasts that fit in `budget` bytes, least-sent and newest first, counting a
   * transmit for each; those reaching `limit` transmits leave the queue.
   */
  take(budget: number, limit: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (this.#size === 0) return out;
    const picked: Broadcast[] = [];
    let left = budget;
    // A packet nearly full stops the scan after a few misses instead of walking a long queue.
    let misses = 0;
    for (let t = 0; t < this.#buckets.length && left > 3 && misses < 64; t++) {
      const bucket = this.#buckets[t];
      if (!bucket) continue;
      for (let i = bucket.length - 1; i >= 0 && left > 3 && misses < 64; i--) {
        const b = bucket[i] as Broadcast;
        if (b.record.length <= left) {
          picked.push(b);
          left -= b.record.length;
        } else {
          misses++;
        }
      }
    }
    for (const b of picked) {
      this.#detach(b);
      b.transmits++;
      out.push(b.record);
      if (b.transmits >= limit) {
        if (b.name !== null) this.#byName.delete(b.name);
        this.#size--;
        b.done?.(true);
      } else {
        this.#place(b);
      }
    }
    return out;
  }

  /** Drop everything (leave/stop). */
  clear(): void {
    for (const bucket of this.#buckets) for (const b of bucket) b.done?.(false);
    this.#buckets = [];
    this.#byName.clear();
    this.#size = 0;
  }

  #insert(b: Broadcast): void {
    this.#place(b);
    this.#size++;
  }

  #place(b: Broadcast): void {
    let bucket = this.#buckets[b.transmits];
    if (!bucket) {
      while (this.#buckets.length <= b.transmits) this.#buckets.push([]);
      bucket = this.#buckets[b.transmits] as Broadcast[];
    }
    // Keep ids ascending; a new broadcast always goes last, a re-placed one by search.
    const last = bucket[bucket.length - 1];
    if (!last || last.id < b.id) {
      bucket.push(b);
      return;
    }
    bucket.splice(this.#search(bucket, b.id), 0, b);
  }

  #search(bucket: Broadcast[], id: number): number {
    let lo = 0;
    let hi = bucket.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((bucket[mid] as Broadcast).id < id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #detach(b: Broadcast): void {
    const bucket = this.#buckets[b.transmits];
    if (!bucket) return;
    const i = this.#search(bucket, b.id);
    if (bucket[i] === b) bucket.splice(i, 1);
  }

  #remove(b: Broadcast, sent: boolean): void {
    this.#detach(b);
    if (b.name !== null) this.#byName.delete(b.name);
    this.#size--;
    b.done?.(sent);
  }

  #dropOne(): void {
    for (let t = this.#buckets.length - 1; t >= 0; t--) {
      const bucket = this.#buckets[t];
      if (bucket && bucket.length > 0) {
        this.#remove(bucket[0] as Broadcast, false);
        this.dropped++;
        return;
      }
    }
  }
}
