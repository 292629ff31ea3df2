import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';

/** Slots of a ring when it first holds a message; it doubles from there as messages arrive. */
const MIN_RING_SLOTS = 8;
/** One ring slot: a pointer to the frame (8 bytes) and its timestamp in a Float64Array (8 bytes). */
const RING_SLOT_BYTES = 16;
/** The Buffer object of each kept frame (a Uint8Array view on the heap), besides its bytes (measured: ~110-150). */
const BUFFER_OBJECT_BYTES = 128;
/** The TopicHistory object, its epoch string and its two array objects (measured: ~400 with a ring of 8). */
const HISTORY_FIXED_BYTES = 400;
const EMPTY_FRAMES: Array<Buffer | undefined> = [];
const EMPTY_TIMES = new Float64Array(0);

/** The memory held by a set of histories together (their heldBytes, kept up to date by each). */
export class HistoryLedger {
  held = 0;
  /** Messages kept by every history of the ledger. */
  messages = 0;
}

/** Bounds of one topic's history: whichever is reached first trims the oldest messages. */
export interface HistoryOptions {
  /** Messages kept. */
  maxMessages: number;
  /** Bytes of encoded frames kept. */
  maxBytes: number;
  /** Age in milliseconds after which a message is dropped; 0 = no age limit. */
  maxAgeMs: number;
}

/** Where a client was: the epoch of the history it read and the last offset it saw. */
export interface StreamPosition {
  epoch: string;
  offset: number;
}

export type RecoveryResult =
  | { recovered: true; frames: Buffer[]; messages: number; position: StreamPosition }
  | { recovered: false; reason: 'epoch-changed' | 'trimmed' | 'future'; position: StreamPosition };

/** What a subscriber is told about its recovery (the frames themselves go to its socket). */
export type RecoveryInfo =
  | { recovered: true; messages: number; position: StreamPosition }
  | { recovered: false; reason: 'epoch-changed' | 'trimmed' | 'future'; position: StreamPosition };

/**
 * The recent messages of one topic, as encoded frames, each with an offset. Offsets grow by
 * one per message within an epoch; an epoch is a random id made when the history starts
 * (a new process, a topic that was dropped and made again), so a position from another epoch
 * is recognised as unrecoverable rather than silently misread.
 *
 * A ring of parallel arrays: no object per message. The ring starts empty and doubles as
 * messages arrive (up to maxMessages), and halves when expiry leaves it mostly empty, so a
 * history costs what it holds: a topic that saw one message holds a ring of MIN_RING_SLOTS,
 * not one sized for maxMessages.
 */
export class TopicHistory {
  /** Changes only through restart() (a cluster's ordered topic takes the epoch of its owner). */
  epoch: string;
  /** Offset of the last message appended (0 before the first). */
  lastOffset: number;
  private frames: Array<Buffer | undefined>;
  private times: Float64Array;
  private head: number; // index of the oldest kept message
  private count: number;
  private bytes: number;
  private readonly options: HistoryOptions;
  private readonly ledger: HistoryLedger | null;

  /** `ledger`, when given, is told every change of this history's heldBytes (until release()). */
  constructor(options: HistoryOptions, epoch: string = randomBytes(6).toString('base64url'), ledger: HistoryLedger | null = null) {
    this.epoch = epoch;
    this.lastOffset = 0;
    this.options = options;
    this.frames = EMPTY_FRAMES;
    this.times = EMPTY_TIMES;
    this.head = 0;
    this.count = 0;
    this.bytes = 0;
    this.ledger = ledger;
    if (ledger !== null) ledger.held += this.heldBytes;
  }

  get size(): number {
    return this.count;
  }

  /** Bytes of the kept frames (their payloads and headers). */
  get byteSize(): number {
    return this.bytes;
  }

  /** Slots of the ring as allocated now (grows with the messages kept, never beyond maxMessages). */
  get capacity(): number {
    return this.frames.length;
  }

  /**
   * Memory this history really holds: the kept frames, the ring's slots (a pointer and a
   * timestamp each, allocated or not yet used) and the fixed cost of the object itself.
   */
  get heldBytes(): number {
    return HISTORY_FIXED_BYTES + this.frames.length * RING_SLOT_BYTES + this.bytes + this.count * BUFFER_OBJECT_BYTES;
  }

  /** Offset of the oldest message still kept (lastOffset + 1 when empty). */
  get firstOffset(): number {
    return this.lastOffset - this.count + 1;
  }

  get position(): StreamPosition {
    return { epoch: this.epoch, offset: this.lastOffset };
  }

  /** Appends one encoded frame; returns its offset. */
  append(frame: Buffer, now: number): number {
    const held = this.heldBytes;
    const count = this.count;
    const offset = this.store(frame, now);
    this.account(held, count);
    return offset;
  }

  /**
   * Empties the history and starts it again at `position`: the next append gets
   * position.offset + 1. For a history whose positions come from elsewhere (a cluster's
   * ordered topic): another epoch, or a gap in the offsets it was given.
   */
  restart(position: StreamPosition): void {
    const held = this.heldBytes;
    const count = this.count;
    while (this.count > 0) this.dropOldest();
    this.shrinkIfSparse();
    this.epoch = position.epoch;
    this.lastOffset = position.offset;
    this.account(held, count);
  }

  /** The last `n` kept frames, oldest first, and the offset of the first of them. */
  tail(n: number): { first: number; frames: Buffer[] } {
    const k = Math.min(n, this.count);
    const frames: Buffer[] = [];
    for (let i = this.count - k; i < this.count; i++) frames.push(this.frames[(this.head + i) % this.frames.length]!);
    return { first: this.lastOffset - k + 1, frames };
  }

  /**
   * Kept frames from offset `from` on, oldest first: at most `maxMessages`, and no more than
   * `maxBytes` (but at least one). `first` is the offset of the first frame: above `from` when
   * the older ones are trimmed, lastOffset + 1 when none is left from there.
   */
  range(from: number, maxMessages: number, maxBytes: number): { first: number; frames: Buffer[] } {
    const oldest = this.firstOffset;
    const first = Math.max(from, oldest);
    const frames: Buffer[] = [];
    let bytes = 0;
    for (let off = first; off <= this.lastOffset && frames.length < maxMessages; off++) {
      const f = this.frames[(this.head + off - oldest) % this.frames.length]!;
      if (frames.length > 0 && bytes + f.length > maxBytes) break;
      frames.push(f);
      bytes += f.length;
    }
    return { first: Math.min(first, this.lastOffset + 1), frames };
  }

  /**
   * Puts older messages of this epoch in front of the kept ones (fetched from another node: a
   * history that started late). `frames` hold offsets first..; only those just before the
   * oldest kept one are taken, and only when they reach it. A history that holds nothing yet
   * takes them all, in their epoch, and with no frames takes the position before `first` (the
   * line as it stands where nothing of it is kept). The bounds still hold: beyond them the
   * oldest go. Returns whether anything was taken.
   */
  backfill(epoch: string, first: number, frames: readonly Buffer[], now: number): boolean {
    const fresh = this.count === 0 && (this.lastOffset === 0 || epoch !== this.epoch || first === this.lastOffset + 1);
    if (frames.length === 0) {
      if (!fresh) return false;
      this.restart({ epoch, offset: first - 1 });
      return true;
    }
    if (!fresh && (epoch !== this.epoch || first >= this.firstOffset || first + frames.length < this.firstOffset)) return false;
    const held = this.heldBytes;
    const count = this.count;
    const older = fresh ? frames : frames.slice(0, this.firstOffset - first);
    const keptFrames: Buffer[] = [];
    const keptTimes: number[] = [];
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) % this.frames.length;
      keptFrames.push(this.frames[i]!);
      keptTimes.push(this.times[i]!);
    }
    const last = fresh ? first + frames.length - 1 : this.lastOffset;
    while (this.count > 0) this.dropOldest();
    this.epoch = epoch;
    this.lastOffset = first - 1;
    for (const f of older) this.store(f, now);
    for (let k = 0; k < keptFrames.length; k++) this.store(keptFrames[k]!, keptTimes[k]!);
    this.lastOffset = last;
    this.account(held, count);
    return true;
  }

  /** Drops messages older than maxAgeMs. */
  expire(now: number): void {
    const maxAge = this.options.maxAgeMs;
    if (maxAge <= 0 || this.count === 0) return;
    const held = this.heldBytes;
    const count = this.count;
    while (this.count > 0 && now - this.times[this.head]! > maxAge) this.dropOldest();
    this.shrinkIfSparse();
    this.account(held, count);
  }

  /** Tells the ledger how held bytes and kept messages changed since `held` and `count`. */
  private account(held: number, count: number): void {
    if (this.ledger === null) return;
    this.ledger.held += this.heldBytes - held;
    this.ledger.messages += this.count - count;
  }

  /** Takes this history out of its ledger (its topic is gone). */
  release(): void {
    if (this.ledger !== null) {
      this.ledger.held -= this.heldBytes;
      this.ledger.messages -= this.count;
    }
  }

  private store(frame: Buffer, now: number): number {
    const { maxMessages, maxBytes } = this.options;
    while (this.count > 0 && (this.count >= maxMessages || this.bytes + frame.length > maxBytes)) this.dropOldest();
    this.lastOffset++;
    if (frame.length > maxBytes || maxMessages === 0) {
      this.shrinkIfSparse(); // too big to keep at all, and it may have pushed everything out
      return this.lastOffset;
    }
    if (this.count === this.frames.length) this.resize(Math.min(maxMessages, Math.max(MIN_RING_SLOTS, this.frames.length * 2)));
    const i = (this.head + this.count) % this.frames.length;
    this.frames[i] = frame;
    this.times[i] = now;
    this.count++;
    this.bytes += frame.length;
    return this.lastOffset;
  }

  /** The messages after `since`, if the history still covers that position. */
  recover(since: StreamPosition, now: number): RecoveryResult {
    this.expire(now);
    const position = this.position;
    if (since.epoch !== this.epoch) return { recovered: false, reason: 'epoch-changed', position };
    if (!Number.isSafeInteger(since.offset) || since.offset < 0 || since.offset > this.lastOffset) {
      return { recovered: false, reason: 'future', position };
    }
    // Everything after since.offset must still be here: the oldest kept is since.offset + 1 or earlier.
    if (since.offset + 1 < this.firstOffset) return { recovered: false, reason: 'trimmed', position };
    const frames: Buffer[] = [];
    const skip = since.offset + 1 - this.firstOffset;
    for (let k = skip; k < this.count; k++) frames.push(this.frames[(this.head + k) % this.frames.length]!);
    return { recovered: true, frames, messages: frames.length, position };
  }

  private dropOldest(): void {
    const f = this.frames[this.head]!;
    this.frames[this.head] = undefined;
    this.bytes -= f.length;
    this.head = (this.head + 1) % this.frames.length;
    this.count--;
  }

  /** A ring a quarter full or less shrinks to twice what it holds (so it does not flip at the edge); an empty one gives back all. */
  private shrinkIfSparse(): void {
    const cap = this.frames.length;
    if (this.count === 0) {
      if (cap > 0) {
        this.frames = EMPTY_FRAMES;
        this.times = EMPTY_TIMES;
        this.head = 0;
      }
      return;
    }
    if (cap <= MIN_RING_SLOTS || this.count > cap >>> 2) return;
    let next = MIN_RING_SLOTS;
    while (next < this.count * 2) next *= 2;
    this.resize(next);
  }

  private resize(cap: number): void {
    const frames = new Array<Buffer | undefined>(cap);
    const times = new Float64Array(cap);
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) % this.frames.length;
      frames[k] = this.frames[i];
      times[k] = this.times[i]!;
    }
    this.frames = frames;
    this.times = times;
    this.head = 0;
  }
}
