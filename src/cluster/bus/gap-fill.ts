/**
 * The pure part of gap filling (docs/cluster.md, "Filling gaps"): a node that receives an
 * ordered message beyond the next offset of its history holds it (and the ones after it) in
 * a reorder buffer while it asks the owner or the replica for the missing offsets, and applies
 * everything in offset order once they arrive. The buffer is bounded per topic and across
 * topics; a fill that cannot complete (over a bound, another epoch, trimmed at the peer, too
 * slow) is given up: the held messages are then applied with the skip, which subscribers are
 * told about. No sockets, no timers: the mesh drives it.
 */

/** An ordered message held until the offsets before it are applied. `frame` is owned (a copy). */
export interface HeldMessage {
  offset: number;
  origin: string;
  seq: number;
  frame: Buffer;
}

/** One topic waiting for offsets: what it holds and what it asked for. */
export class TopicFill {
  /** Held messages, by offset, no two the same. */
  readonly held: HeldMessage[] = [];
  bytes = 0;
  /** The peer asked last, when, and the last offset asked for. */
  peer = '';
  askedAt = 0;
  askedTo = 0;
  /** The owner that wants acks of the held messages (acked once applied); '' when none does. */
  ackPeer = '';
  /** Requests sent for this gap (a responder that clamps its answer is asked again from where it stopped). */
  requests = 0;

  constructor(
    /** The epoch of the held messages (the history's: another epoch is not a gap). */
    readonly epoch: string,
    /** When the gap was seen: the fill is given up fillTimeoutMs later. */
    readonly since: number,
  ) {}

  /** The lowest held offset (Infinity when none). */
  get firstHeld(): number {
    return this.held.length === 0 ? Infinity : this.held[0]!.offset;
  }
}

export type HoldResult = 'held' | 'duplicate' | 'full';

/** The reorder buffers of every topic, bounded per topic and together. */
export class FillBook {
  readonly topics = new Map<string, TopicFill>();
  /** Frame bytes held by every topic together. */
  bytes = 0;

  constructor(
    readonly maxTopicBytes: number,
    readonly maxTotalBytes: number,
    readonly maxTopics: number,
  ) {}

  /** The topic's fill, or a new one in `epoch` (null when maxTopics are filling already). */
  open(topic: string, epoch: string, now: number): TopicFill | null {
    const f = this.topics.get(topic);
    if (f !== undefined) return f;
    if (this.topics.size >= this.maxTopics) return null;
    const n = new TopicFill(epoch, now);
    this.topics.set(topic, n);
    return n;
  }

  /**
   * Holds a message of a filling topic: 'full' when it would pass a bound (the caller gives the
   * fill up), 'duplicate' when that offset is held already.
   */
  hold(fill: TopicFill, m: HeldMessage): HoldResult {
    const size = m.frame.length;
    if (fill.bytes + size > this.maxTopicBytes || this.bytes + size > this.maxTotalBytes) return 'full';
    const h = fill.held;
    // Messages arrive mostly in order: search from the end.
    let i = h.length;
    while (i > 0 && h[i - 1]!.offset > m.offset) i--;
    if (i > 0 && h[i - 1]!.offset === m.offset) return 'duplicate';
    h.splice(i, 0, m);
    fill.bytes += size;
    this.bytes += size;
    return 'held';
  }

  /** Takes the held messages at or below `upTo`, in offset order. */
  take(fill: TopicFill, upTo: number): HeldMessage[] {
    let n = 0;
    while (n < fill.held.length && fill.held[n]!.offset <= upTo) n++;
    const out = fill.held.splice(0, n);
    for (const m of out) {
      fill.bytes -= m.frame.length;
      this.bytes -= m.frame.length;
    }
    return out;
  }

  /** Ends a topic's fill (completed or given up); returns what it still held, in offset order. */
  close(topic: string): HeldMessage[] {
    const f = this.topics.get(topic);
    if (f === undefined) return [];
    this.topics.delete(topic);
    return this.take(f, Infinity);
  }

  /**
   * Applies what `fill` holds from the next offset on (`position` is the history's last),
   * taking each off the fill; ends the fill when nothing is held any more. Returns the position
   * reached, or null when the history is gone or in another epoch (the caller gives the fill up).
   */
  drain(topic: string, fill: TopicFill, position: () => { epoch: string; offset: number } | null, apply: (m: HeldMessage) => void): { epoch: string; offset: number } | null {
    for (;;) {
      const here = position();
      if (here === null || here.epoch !== fill.epoch) return null;
      const ready = this.take(fill, here.offset + 1);
      if (ready.length === 0) {
        if (fill.held.length === 0) this.close(topic);
        return here;
      }
      for (const m of ready) apply(m);
    }
  }

  /** Topics whose fill has waited longer than `timeoutMs`. */
  expired(now: number, timeoutMs: number): string[] {
    const out: string[] = [];
    for (const [topic, f] of this.topics) if (now - f.since > timeoutMs) out.push(topic);
    return out;
  }
}

/**
 * The range to ask for when `next` is the next offset the history wants and `firstHeld` the
 * first offset held: at most `maxMessages` of them (the rest is asked once these arrived).
 */
export function fillRange(next: number, firstHeld: number, maxMessages: number): { first: number; last: number } | null {
  if (firstHeld <= next) return null;
  return { first: next, last: Math.min(firstHeld - 1, next + maxMessages - 1) };
}
