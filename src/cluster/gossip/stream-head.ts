/**
 * The framing of a push-pull stream, authenticated before anything large is read.
 *
 * Each direction carries one head, then one frame:
 *   head  = the sealed layout of security.ts on channel StreamHead, whose 4-byte plaintext is
 *           the frame's length: `[2][3][labelLen][label][nonce 12][u32 length, encrypted][tag 16]`
 *           (35 bytes + the label, at most 290);
 *   frame = the sealed push-pull (channel Stream), exactly `length` bytes.
 * A refused stream is answered with `[2][4][reason u8]` in the clear, then closed.
 *
 * The reader holds at most one head's bytes until the head authenticates, so a stranger
 * costs a few hundred bytes whatever it sends; the frame's length is only believed once the
 * key has vouched for it. Streams of wire version 1 (`[u32 length][sealed frame]`, first
 * byte 0 for every length accepted) are told apart by their first byte and refused as an
 * incompatible version. A connection whose first record is sealed on channel WatchHello is a
 * liveness link (watch-wire.ts): its hello is authenticated here like a head, then the link is
 * handed over. Sans-I/O: bytes in, results out.
 */
import { Channel, NONCE_BYTES, OpenFailure, TAG_BYTES, type AesGcmSealer } from './security.js';
import { WIRE_VERSION } from './gossip-wire.js';
import { decodeWatchHello, watchHelloBytes, type WatchHello } from './watch-wire.js';

/**
 * Why a stream was refused, sent in a refusal record. WARNING: ONLY APPEND TO THIS TABLE.
 */
export const StreamRefusal = {
  /** Another wire version (or the first stream format). */
  Version: 1,
  /** Another cluster label. */
  Label: 2,
  /** No key of the keyring authenticates the head. */
  Auth: 3,
  /** Not a stream head. */
  Malformed: 4,
  /** The frame announced is over maxStreamBytes, or more bytes came than announced. */
  TooBig: 5,
  /** Too many streams in flight, or the byte budget of in-flight frames is spent. */
  Busy: 6,
  /** The head or the frame did not arrive in time. */
  Timeout: 7,
  /** A liveness link meant for another member (the address changed hands). */
  Stranger: 8,
} as const;
export type StreamRefusal = (typeof StreamRefusal)[keyof typeof StreamRefusal];

const REFUSAL_TEXT: Readonly<Record<StreamRefusal, string>> = {
  1: 'incompatible version',
  2: 'wrong label',
  3: 'wrong key',
  4: 'malformed stream',
  5: 'stream too large',
  6: 'busy',
  7: 'timed out',
  8: 'not the member meant',
};

/** A refusal reason in words, as logs and errors show it. */
export function refusalText(reason: number): string {
  return REFUSAL_TEXT[reason as StreamRefusal] ?? `refusal ${reason}`;
}

/** Bytes of the plaintext of a head: the frame length. */
const HEAD_PLAIN_BYTES = 4;
/** Bytes before the label: version, channel, label length. */
const HEAD_PREFIX_BYTES = 3;

/** Bytes of a stream head for a label of `labelLength` bytes. */
export function streamHeadBytes(labelLength: number): number {
  return HEAD_PREFIX_BYTES + labelLength + NONCE_BYTES + HEAD_PLAIN_BYTES + TAG_BYTES;
}

/** The head announcing a frame of `frameLength` bytes. */
export function encodeStreamHead(sealer: AesGcmSealer, frameLength: number): Uint8Array {
  const plain = Buffer.allocUnsafe(HEAD_PLAIN_BYTES);
  plain.writeUInt32BE(frameLength, 0);
  return sealer.seal(plain, Channel.StreamHead);
}

/** The clear refusal record. */
export function encodeRefusal(reason: StreamRefusal): Buffer {
  return Buffer.from([WIRE_VERSION, Channel.Refusal, reason]);
}

/**
 * What `push` found: more bytes needed, the head authenticated (the caller may still refuse
 * the length, e.g. over its byte budget), the whole frame, the peer's refusal, or a failure
 * of the peer's bytes.
 */
export type StreamEvent =
  | { kind: 'more' }
  | { kind: 'head'; length: number }
  | { kind: 'frame'; frame: Buffer }
  | { kind: 'refused'; reason: number }
  | { kind: 'fail'; reason: StreamRefusal }
  /** An authenticated liveness-link hello; `rest` is what came after it. The reader is spent. */
  | { kind: 'watch'; hello: WatchHello; rest: Buffer };

const MORE: StreamEvent = { kind: 'more' };

/** The failure of `open` a head refusal stands for, if any (counted like a datagram's). */
export function refusalOpenFailure(reason: StreamRefusal): OpenFailure | null {
  for (const [f, r] of Object.entries(OPEN_REFUSAL)) if (r === reason) return f as OpenFailure;
  return null;
}

const OPEN_REFUSAL: Readonly<Record<OpenFailure, StreamRefusal>> = {
  malformed: StreamRefusal.Malformed,
  label: StreamRefusal.Label,
  auth: StreamRefusal.Auth,
  version: StreamRefusal.Version,
};

/**
 * Reads one direction of a stream: head, then frame. Call `push` with each chunk until it
 * returns something other than 'more'; after 'head', call `push` with an empty chunk to go on
 * with bytes that came with the head. After 'frame', 'refused' or 'fail' the reader is spent.
 */
export class StreamReader {
  readonly #sealer: AesGcmSealer;
  readonly #maxFrame: number;
  /** Head bytes, copied into one small buffer: a trickling stranger holds no chunk objects. */
  #head: Buffer | null = null;
  #headHave = 0;
  #chunks: Buffer[] = [];
  #have = 0;
  /** Bytes of the head (known once its first 3 bytes are in), then of the frame. */
  #want = HEAD_PREFIX_BYTES;
  #stage: 'prefix' | 'head' | 'frame' | 'done' = 'prefix';
  /** The head is a liveness-link hello (channel WatchHello). */
  #watch = false;

  constructor(sealer: AesGcmSealer, maxFrameBytes: number) {
    this.#sealer = sealer;
    this.#maxFrame = maxFrameBytes;
  }

  /** Bytes held, waiting for the rest of the head or frame. */
  get buffered(): number {
    return this.#stage === 'frame' ? this.#have : this.#headHave;
  }

  push(chunk: Buffer): StreamEvent {
    if (this.#stage === 'done') return MORE;
    if (this.#stage !== 'frame') {
      let off = this.#fill(chunk, 0);
      if (this.#headHave < this.#want) return MORE;
      const head = this.#head as Buffer;
      if (this.#stage === 'prefix') {
        if (head[0] !== WIRE_VERSION) return this.#fail(StreamRefusal.Version);
        if (head[1] === Channel.Refusal) {
          this.#stage = 'done';
          return { kind: 'refused', reason: head[2] as number };
        }
        this.#watch = head[1] === Channel.WatchHello;
        if (head[1] !== Channel.StreamHead && !this.#watch) return this.#fail(StreamRefusal.Malformed);
        this.#want = (this.#watch ? watchHelloBytes : streamHeadBytes)(head[2] as number);
        if (this.#want > head.length) {
          this.#head = Buffer.allocUnsafe(this.#want);
          head.copy(this.#head, 0, 0, this.#headHave);
        }
        this.#stage = 'head';
        off = this.#fill(chunk, off);
        if (this.#headHave < this.#want) return MORE;
      }
      const full = (this.#head as Buffer).subarray(0, this.#want);
      const opened = this.#sealer.open(full, this.#watch ? Channel.WatchHello : Channel.StreamHead);
      if (!opened.ok) return this.#fail(OPEN_REFUSAL[opened.reason]);
      if (this.#watch) {
        const hello = decodeWatchHello(opened.plain);
        if (hello === null) return this.#fail(StreamRefusal.Malformed);
        this.#fail(StreamRefusal.Malformed); // spent: what follows belongs to the link
        return { kind: 'watch', hello, rest: chunk.subarray(off) };
      }
      if (opened.plain.length !== HEAD_PLAIN_BYTES) return this.#fail(StreamRefusal.Malformed);
      const length = Buffer.from(opened.plain.buffer, opened.plain.byteOffset, HEAD_PLAIN_BYTES).readUInt32BE(0);
      if (length > this.#maxFrame) return this.#fail(StreamRefusal.TooBig);
      this.#head = null;
      this.#headHave = 0;
      this.#want = length;
      this.#stage = 'frame';
      if (off < chunk.length) this.#add(chunk.subarray(off));
      return { kind: 'head', length };
    }
    if (chunk.length > 0) this.#add(chunk);
    if (this.#have > this.#want) return this.#fail(StreamRefusal.TooBig); // one frame per direction
    if (this.#have < this.#want) return MORE;
    const frame = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks, this.#have);
    this.#chunks = [];
    this.#have = 0;
    this.#stage = 'done';
    return { kind: 'frame', frame };
  }

  /** Copies head bytes from `chunk[off..]`, up to the bytes wanted; returns the new offset. */
  #fill(chunk: Buffer, off: number): number {
    this.#head ??= Buffer.allocUnsafe(streamHeadBytes(255));
    const take = Math.min(chunk.length - off, this.#want - this.#headHave);
    if (take <= 0) return off;
    chunk.copy(this.#head, this.#headHave, off, off + take);
    this.#headHave += take;
    return off + take;
  }

  #add(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#have += chunk.length;
  }

  #fail(reason: StreamRefusal): StreamEvent {
    this.#head = null;
    this.#headHave = 0;
    this.#chunks = [];
    this.#have = 0;
    this.#stage = 'done';
    return { kind: 'fail', reason };
  }
}
