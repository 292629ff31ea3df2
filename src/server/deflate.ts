/**
 * permessage-deflate (RFC 7692) compression and bounded inflation over node:zlib.
 *
 * Memory policy: no zlib context outlives the call that made it. Each message is deflated or
 * inflated by one synchronous zlib call that creates its context and frees it before
 * returning (node:zlib closes a sync engine at the end of the call), so a connection that
 * negotiated deflate holds nothing between messages, and the process holds at most one live
 * zlib context per thread at any instant: the process-wide cap on contexts is one, by
 * construction. Context takeover (where a peer keeps its window across messages) is carried
 * as a dictionary: the previous message's last window of bytes, a plain buffer; only the
 * client uses it, and only when the server asked for it.
 */
import { Buffer } from 'node:buffer';
import { deflateRawSync, inflateRawSync, constants } from 'node:zlib';
import { protocolError } from '../protocol/index.js';
import type { ProtocolError } from '../protocol/index.js';
import type { DeflateServerPolicy } from '../protocol/index.js';
import { DEFAULT_LIMITS } from '../limits.js';

/** What a server compresses and how: `ServerOptions.perMessageDeflate`. */
export interface PerMessageDeflateOptions {
  /** Messages shorter than this (bytes; characters for a string) go uncompressed. Default limits.deflateThreshold. */
  threshold?: number;
  /** Compress binary messages too (default true); false compresses text only. */
  binary?: boolean;
  /** Largest window the server compresses with, 9..15 (default limits.deflateWindowBits); a client that asks for less gets 9. */
  serverMaxWindowBits?: number;
  /** Largest window asked of clients that offer client_max_window_bits, 8..15. Default 15. */
  clientMaxWindowBits?: number;
  /** zlib compression level 0..9. Default limits.deflateLevel. */
  level?: number;
  /** zlib memLevel 1..9: the size of the compressor's hash tables. Default limits.deflateMemLevel. */
  memLevel?: number;
}

/** A server's resolved compression settings, shared by all its connections. */
export interface DeflateConfig {
  readonly threshold: number;
  readonly binary: boolean;
  readonly level: number;
  readonly memLevel: number;
  readonly policy: DeflateServerPolicy;
}

/** The config for `perMessageDeflate` (true: the defaults), or null when off. @throws RangeError on a value out of range. */
export function resolveDeflate(option: boolean | PerMessageDeflateOptions | undefined): DeflateConfig | null {
  if (option === undefined || option === false) return null;
  const o = option === true ? {} : option;
  const bits = (v: number | undefined, dflt: number, min: number, name: string): number => {
    const b = v ?? dflt;
    if (!Number.isInteger(b) || b < min || b > 15) throw new RangeError(`perMessageDeflate.${name} must be an integer from ${min} to 15`);
    return b;
  };
  const level = o.level ?? DEFAULT_LIMITS.deflateLevel;
  const memLevel = o.memLevel ?? DEFAULT_LIMITS.deflateMemLevel;
  if (!Number.isInteger(level) || level < 0 || level > 9) throw new RangeError('perMessageDeflate.level must be an integer from 0 to 9');
  if (!Number.isInteger(memLevel) || memLevel < 1 || memLevel > 9) throw new RangeError('perMessageDeflate.memLevel must be an integer from 1 to 9');
  return {
    threshold: Math.max(0, o.threshold ?? DEFAULT_LIMITS.deflateThreshold),
    binary: o.binary ?? true,
    level,
    memLevel,
    policy: {
      // zlib has no raw deflate with an 8-bit window: 9 is the smallest it makes.
      serverMaxWindowBits: bits(o.serverMaxWindowBits, DEFAULT_LIMITS.deflateWindowBits, 9, 'serverMaxWindowBits'),
      clientMaxWindowBits: bits(o.clientMaxWindowBits, 15, 8, 'clientMaxWindowBits'),
    },
  };
}

/** Process-wide counters of permessage-deflate (every server and client of the process). */
export interface DeflateCounters {
  /** Messages sent compressed (a fan-out compresses once: counted once), and their bytes before and after. */
  compressedMessages: number;
  compressedBytesIn: number;
  compressedBytesOut: number;
  /** Messages sent uncompressed on a connection that negotiated deflate (below the threshold, or no gain). */
  uncompressedMessages: number;
  /** Compressed messages received and inflated, and their bytes before and after. */
  inflatedMessages: number;
  inflatedBytesIn: number;
  inflatedBytesOut: number;
  /** Compressed messages refused: over maxPayload once inflated, not valid DEFLATE data, or the queue of large inflations full. */
  inflateFailures: number;
}

export const deflateCounters: DeflateCounters = {
  compressedMessages: 0,
  compressedBytesIn: 0,
  compressedBytesOut: 0,
  uncompressedMessages: 0,
  inflatedMessages: 0,
  inflatedBytesIn: 0,
  inflatedBytesOut: 0,
  inflateFailures: 0,
};

/** Large inflations (bounded-inflate.ts), process-wide: running and waiting (gauges), started and refused (counters). */
export const inflateJobs = {
  running: 0,
  queued: 0,
  started: 0,
  /** Refused because the queue was full (counted in inflateFailures too). */
  refused: 0,
};

/** zlib contexts alive between turns of the event loop: one per large inflation running (at most PROCESS_LIMITS.maxInflations), else none. */
export function liveZlibContexts(): number {
  return inflateJobs.running;
}

/** RFC 7692 7.2.1: the 4 octets a sync flush ends with, removed by the sender and appended by the receiver. */
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
/** RFC 7692 7.2.3.6: an empty message compresses to one empty non-final stored block. */
const EMPTY_DEFLATED = Buffer.from([0x00]);

/**
 * Compresses one message's payload (RFC 7692 7.2.1): raw DEFLATE ending with a sync flush whose
 * 4-octet tail is removed. `windowBits` 9..15. `dictionary`: the sender's window from earlier
 * messages (context takeover), else none.
 */
export function deflatePayload(data: string | Buffer, windowBits: number, level: number, memLevel: number, dictionary?: Buffer): Buffer {
  // Sized to the message: a window wider than the message (plus its dictionary) finds nothing
  // more, and zlib allocates and clears the window and hash tables on every call, about 260 KiB
  // at 15 bits. A 1 KiB message gets an 11-bit window and a 4 KiB hash: the same bytes out for
  // a fraction of the set-up, and no 16 KiB output chunk (the output is at most the input plus
  // a few bytes per stored block).
  const length = (typeof data === 'string' ? Buffer.byteLength(data) : data.length) + (dictionary === undefined ? 0 : dictionary.length);
  const bits = Math.max(9, Math.min(windowBits, 32 - Math.clz32(length + 262)));
  const out = deflateRawSync(data, {
    windowBits: bits,
    level,
    memLevel: Math.max(1, Math.min(memLevel, bits - 6)),
    finishFlush: constants.Z_SYNC_FLUSH,
    chunkSize: Math.max(64, Math.min(16 * 1024, length + 64)),
    dictionary,
  });
  const n = out.length - TAIL.length;
  return n <= 0 ? EMPTY_DEFLATED : out.subarray(0, n);
}

/** The compressed bytes followed by the 4 octets RFC 7692 7.2.2 has the receiver append: a copy, owned by the caller. */
export function withTail(data: Buffer): Buffer {
  const input = Buffer.allocUnsafe(data.length + TAIL.length);
  data.copy(input, 0);
  TAIL.copy(input, data.length);
  return input;
}

/** The 1009 of a message over maxPayload once inflated (counted as a failure). */
export function inflateTooBig(maxPayload: number): ProtocolError {
  deflateCounters.inflateFailures++;
  return protocolError('WS_ERR_MESSAGE_TOO_BIG', `Message longer than maxPayload (${maxPayload} bytes) once inflated`);
}

/** The 1007 of compressed data that is not DEFLATE (counted as a failure). */
export function inflateInvalid(cause: unknown): ProtocolError {
  deflateCounters.inflateFailures++;
  return protocolError('WS_ERR_INVALID_COMPRESSED', 'Compressed message is not valid DEFLATE data', { cause });
}

/** The 1013 of a large compressed message that found the process's queue of inflations full. */
export function inflateBusy(): ProtocolError {
  deflateCounters.inflateFailures++;
  return protocolError('WS_ERR_INFLATE_BUSY', 'Too many large compressed messages being inflated; try again later');
}

/** Counts a message inflated: `compressed` bytes in, `out` out. Returns `out`. */
export function inflateDone(compressed: number, out: Buffer): Buffer {
  deflateCounters.inflatedMessages++;
  deflateCounters.inflatedBytesIn += compressed;
  deflateCounters.inflatedBytesOut += out.length;
  return out;
}

/**
 * Inflates one compressed message (RFC 7692 7.2.2) into at most `maxPayload` bytes in one
 * synchronous call: zlib stops once its output passes the bound (within one 16 KiB zlib
 * chunk), so a small message that would inflate to gigabytes costs at most maxPayload of
 * memory and the time to make it. Returns the payload, or the ProtocolError to fail the
 * connection with (1009 over maxPayload, 1007 for data that is not DEFLATE).
 *
 * `syncBytes`: when maxPayload is above it, the call stops at `syncBytes` of output instead
 * and returns null for a message that is larger (or whose compressed form alone is larger):
 * such a message is inflated by a bounded job (bounded-inflate.ts), so that no call blocks
 * the event loop for longer than it takes to make `syncBytes`.
 */
export function inflatePayload(data: Buffer, maxPayload: number, dictionary?: Buffer, syncBytes = Infinity): Buffer | ProtocolError | null {
  const bounded = maxPayload > syncBytes;
  if (bounded && data.length > syncBytes) return null;
  const limit = bounded ? syncBytes : maxPayload;
  const input = withTail(data);
  let out: Buffer;
  try {
    // A 15-bit window reads whatever window the peer used (8..15).
    // Output chunks sized to the likely result (text compresses 2-10x), not 16 KiB each.
    const chunkSize = Math.max(1024, Math.min(16 * 1024, data.length * 4));
    out = inflateRawSync(input, { windowBits: 15, finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: Math.max(1, limit), chunkSize, dictionary });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return bounded ? null : inflateTooBig(maxPayload);
    return inflateInvalid(err);
  }
  if (out.length > limit) return bounded ? null : inflateTooBig(maxPayload);
  return inflateDone(data.length, out);
}

/**
 * The window a peer with context takeover refers back into after `data`: the last `size` bytes
 * of `prev` followed by `data` (a copy, held between messages; at most 32 KiB).
 */
export function slideWindow(prev: Buffer | undefined, data: Buffer, size: number): Buffer {
  if (data.length >= size) return Buffer.from(data.subarray(data.length - size));
  const keep = prev === undefined ? 0 : Math.min(prev.length, size - data.length);
  const out = Buffer.allocUnsafe(keep + data.length);
  if (keep > 0) prev!.copy(out, 0, prev!.length - keep);
  data.copy(out, keep);
  return out;
}

/** Compresses a message for sending when it is worth it: null below the threshold, for binary the config skips, or when compressing does not make it smaller. Counts the outcome. */
export function maybeDeflate(config: DeflateConfig, data: string | Buffer, isBinary: boolean, small: boolean): Buffer | null {
  const length = data.length;
  if (length < config.threshold || (isBinary && !config.binary)) {
    deflateCounters.uncompressedMessages++;
    return null;
  }
  const z = deflatePayload(data, small ? 9 : config.policy.serverMaxWindowBits, config.level, config.memLevel);
  const before = typeof data === 'string' ? Buffer.byteLength(data) : length;
  if (z.length >= before) {
    deflateCounters.uncompressedMessages++;
    return null;
  }
  deflateCounters.compressedMessages++;
  deflateCounters.compressedBytesIn += before;
  deflateCounters.compressedBytesOut += z.length;
  return z;
}

