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
import { isUtf8 } from 'node:buffer';

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
  const fromBytes = from === null ? EMPTY : Buffer.from(from, 'utf8');
  if (fromBytes.length > MAX_FROM_BYTES) throw new RangeError(`publisher id over ${MAX_FROM_BYTES} bytes`);
  const bodyLength = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  const out = Buffer.allocUnsafe(HEADER_BYTES + fromBytes.length + bodyLength);
  out[0] = BUS_RECORD_VERSION;
  out[1] = isBinary ? FLAG_BINARY : 0;
  out.writeUInt16BE(fromBytes.length, 2);
  fromBytes.copy(out, HEADER_BYTES);
  if (typeof payload === 'string') out.write(payload, HEADER_BYTES + fromBytes.length, bodyLength, 'utf8');
  else payload.copy(out, HEADER_BYTES + fromBytes.length);
  return out;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Decodes a record; null when it is not one (wrong version, truncated, unknown flags, bad UTF-8). */
export function decodeBusRecord(data: Buffer): BusRecord | null {
  if (data.length < HEADER_BYTES || data[0] !== BUS_RECORD_VERSION) return null;
  const flags = data[1]!;
  if ((flags & ~FLAG_BINARY) !== 0) return null;
  const fromLength = data.readUInt16BE(2);
  if (fromLength > MAX_FROM_BYTES || data.length < HEADER_BYTES + fromLength) return null;
  const payload = data.subarray(HEADER_BYTES + fromLength);
  const isBinary = (flags & FLAG_BINARY) !== 0;
  // Text is checked, not decoded: only an envelope needs it as a string (Topics decodes it then).
  if (!isBinary && !isUtf8(payload)) return null;
  if (fromLength === 0) return { from: null, payload, isBinary };
  try {
    return { from: decoder.decode(data.subarray(HEADER_BYTES, HEADER_BYTES + fromLength)), payload, isBinary };
  } catch {
    return null;
  }
}
