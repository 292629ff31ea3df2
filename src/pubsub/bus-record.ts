/**
 * What a published message is on the bus: the message itself — who published it and the
 * payload — never the envelope a node sends its own clients. That envelope holds the
 * publishing node's history position ({epoch, offset}), which means nothing elsewhere: every
 * receiving node stamps its own (Topics' envelope hook), with a position in its own history.
 * So history and recovery stay correct per node (a client that moves to another node is told
 * to resync, never given offsets of a history that node does not have).
 *
 * Record (the bus's payload, always binary): [u8 version = 1][u8 flags][u16 BE fromLength]
 * [from, UTF-8][payload]. flags bit 0: the payload is binary (else UTF-8 text). fromLength 0:
 * no publisher (a plain server.publish). A record that does not decode is dropped and counted.
 */
import { Buffer, isUtf8 } from 'node:buffer';

export const BUS_RECORD_VERSION = 1;
const FLAG_BINARY = 1;
/** Longest publisher id in bytes: the serve protocol allows 128 characters, up to 4 UTF-8 bytes each. */
const MAX_FROM_BYTES = 512;
const HEADER_BYTES = 4;
const EMPTY = Buffer.alloc(0);

/** A record from the bus, decoded. */
export interface BusRecord {
  /** The publisher, or null when the message has none. */
  from: string | null;
  /** The payload: a view into the received buffer, valid only until the receiver returns. */
  payload: Buffer;
  /** Whether the payload is binary; else it is text, checked to be UTF-8. */
  isBinary: boolean;
}

export function encodeBusRecord(from: string | null, payload: string | Buffer, isBinary: boolean = typeof payload !== 'string'): Buffer {
  const fromLength = from === null ? 0 : Buffer.byteLength(from);
  if (fromLength > MAX_FROM_BYTES) throw new RangeError(`publisher id over ${MAX_FROM_BYTES} bytes`);
  const start = HEADER_BYTES + fromLength;
  const bodyLength = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  const out = Buffer.allocUnsafe(start + bodyLength);
  out[0] = BUS_RECORD_VERSION;
  out[1] = isBinary ? FLAG_BINARY : 0;
  out[2] = fromLength >>> 8;
  out[3] = fromLength & 0xff;
  if (from !== null) out.write(from, HEADER_BYTES, fromLength, 'utf8');
  // TypedArray.set: a smaller fixed cost than Buffer.copy for the short payloads of the hot path.
  if (typeof payload === 'string') out.write(payload, start, bodyLength, 'utf8');
  else out.set(payload, start);
  return out;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Where the payload of a record starts, after checking its header (version, flags, the
 * publisher's length): -1 when `data` is no record. UTF-8 is checked by the readers below.
 */
export function busRecordPayloadStart(data: Buffer): number {
  if (data.length < HEADER_BYTES || data[0] !== BUS_RECORD_VERSION || (data[1]! & ~FLAG_BINARY) !== 0) return -1;
  const fromLength = (data[2]! << 8) | data[3]!;
  if (fromLength > MAX_FROM_BYTES || data.length < HEADER_BYTES + fromLength) return -1;
  return HEADER_BYTES + fromLength;
}

/** Whether a record's payload is binary (else UTF-8 text). */
export function busRecordIsBinary(data: Buffer): boolean {
  return (data[1]! & FLAG_BINARY) !== 0;
}

/**
 * The publisher of a record whose payload starts at `start`: null when it has none, undefined
 * when its id is not UTF-8 (the record must be refused).
 */
export function busRecordFrom(data: Buffer, start: number): string | null | undefined {
  if (start === HEADER_BYTES) return null;
  try {
    return decoder.decode(data.subarray(HEADER_BYTES, start));
  } catch {
    return undefined;
  }
}

/** Decodes a record; null when it is not one (wrong version, truncated, unknown flags, bad UTF-8). */
export function decodeBusRecord(data: Buffer): BusRecord | null {
  const start = busRecordPayloadStart(data);
  if (start < 0) return null;
  const payload = data.subarray(start);
  const isBinary = busRecordIsBinary(data);
  if (!isBinary && !isUtf8(payload)) return null;
  const from = busRecordFrom(data, start);
  return from === undefined ? null : { from, payload, isBinary };
}
