/**
 * The gossip wire format, version 2 (docs/cluster.md has the byte layouts).
 *
 * A datagram's plaintext is a sequence of records `[type u8][length u16 BE][body]`, so
 * several messages share one packet and a receiver skips record types it does not know
 * (a newer peer may send them). A stream frame's plaintext is one record `[type u8][body]`.
 * Integers are big-endian; strings are UTF-8 with a u8 length; incarnations are u64 limited
 * to 2^53 - 1 so they stay exact JavaScript numbers.
 *
 * Decoding never trusts a length: every field is checked against the bytes that remain
 * before anything is allocated, and every failure is one `WireError` caught by the caller.
 */
import { isUtf8 } from 'node:buffer';

/**
 * Version byte of sealed packets and streams. Bump only for incompatible changes.
 * 2: streams open with an authenticated head (stream-head.ts); datagrams unchanged.
 */
export const WIRE_VERSION = 2;

/**
 * Record types. WARNING: ONLY APPEND TO THIS TABLE. The numbers are the protocol; an old
 * node skips a type it does not know, a renumbered type would be misread.
 */
export const MessageType = {
  Ping: 1,
  PingReq: 2,
  Ack: 3,
  Nack: 4,
  Alive: 5,
  Suspect: 6,
  Dead: 7,
  User: 8,
  PushPull: 9,
  /** Stream only: a request of a layer above to one member, or its answer (flag bit 0). */
  Query: 10,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** Member states as sent in push-pull. Append-only as well. */
export const WireState = { Alive: 0, Suspect: 1, Dead: 2, Left: 3 } as const;
export type WireState = (typeof WireState)[keyof typeof WireState];

/** Bytes of a record header in a datagram: type + length. */
export const RECORD_HEADER_BYTES = 3;
/** Largest string field (names, addresses). */
export const MAX_STRING_BYTES = 255;
/** Largest incarnation: exact as a JavaScript number. */
export const MAX_INCARNATION = Number.MAX_SAFE_INTEGER;

export interface Ping { type: typeof MessageType.Ping; seq: number; target: string }
export interface PingReq { type: typeof MessageType.PingReq; seq: number; target: string; targetAddr: string; wantNack: boolean }
export interface Ack { type: typeof MessageType.Ack; seq: number }
export interface Nack { type: typeof MessageType.Nack; seq: number }
export interface Alive { type: typeof MessageType.Alive; incarnation: number; name: string; addr: string; meta: Uint8Array }
export interface Suspect { type: typeof MessageType.Suspect; incarnation: number; name: string; from: string }
export interface Dead { type: typeof MessageType.Dead; incarnation: number; name: string; from: string }
export interface User { type: typeof MessageType.User; payload: Uint8Array }
export type PacketMessage = Ping | PingReq | Ack | Nack | Alive | Suspect | Dead | User;

export interface PushPullEntry { name: string; addr: string; meta: Uint8Array; incarnation: number; state: WireState }
export interface PushPull {
  type: typeof MessageType.PushPull;
  /** Sent by a node joining through a seed. */
  join: boolean;
  /** The answer to a push-pull (the exchange ends with it). */
  reply: boolean;
  members: PushPullEntry[];
  /** The application's full state (GossipDelegate.localState), opaque here. */
  userState: Uint8Array;
}

/** Limits a decoder enforces beyond "fits in the bytes received". */
export interface DecodeLimits {
  maxMetaBytes: number;
  maxMembers: number;
}

/** The one decoding failure; callers count it and drop the input. */
export class WireError extends Error {
  readonly code = 'GOSSIP_ERR_MALFORMED';
  constructor(message: string) {
    super(message);
    this.name = 'WireError';
  }
}

/** Bounds-checked reader over a byte view. Views into the input, copies only what is kept. */
export class Reader {
  pos: number;
  readonly end: number;
  readonly buf: Uint8Array;
  readonly view: DataView;

  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  need(n: number): void {
    if (n < 0 || this.end - this.pos < n) throw new WireError(`truncated: need ${n} bytes, ${this.end - this.pos} left`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++] as number;
  }

  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  /** u64 limited to 2^53 - 1. */
  u53(): number {
    const hi = this.u32();
    const lo = this.u32();
    if (hi > 0x1fffff) throw new WireError('integer above 2^53 - 1');
    return hi * 0x1_0000_0000 + lo;
  }

  /** Non-empty UTF-8 string with a u8 length. */
  str8(): string {
    const len = this.u8();
    if (len === 0) throw new WireError('empty string');
    this.need(len);
    const bytes = this.buf.subarray(this.pos, this.pos + len);
    if (!isUtf8(bytes)) throw new WireError('string is not UTF-8');
    this.pos += len;
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  }

  /** Bytes with a u16 length, copied (the input buffer may be reused). */
  bytes16(max: number): Uint8Array {
    const len = this.u16();
    if (len > max) throw new WireError(`field of ${len} bytes above limit ${max}`);
    return this.take(len);
  }

  /** Bytes with a u32 length, copied. */
  bytes32(max: number): Uint8Array {
    const len = this.u32();
    if (len > max) throw new WireError(`field of ${len} bytes above limit ${max}`);
    return this.take(len);
  }

  take(len: number): Uint8Array {
    this.need(len);
    // A copy, never a view: Buffer#slice would alias the (possibly reused) input.
    const out = new Uint8Array(len);
    out.set(this.buf.subarray(this.pos, this.pos + len));
    this.pos += len;
    return out;
  }
}

/** Growable writer; `finish()` returns a view of the bytes written. */
export class Writer {
  buf: Buffer;
  pos = 0;

  constructor(capacity = 256) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): void {
    this.reserve(1);
    this.buf[this.pos++] = v & 0xff;
  }

  u16(v: number): void {
    this.reserve(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
  }

  u32(v: number): void {
    this.reserve(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
  }

  u53(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`incarnation ${v} is not a safe unsigned integer`);
    this.u32(Math.floor(v / 0x1_0000_0000));
    this.u32(v % 0x1_0000_0000);
  }

  str8(s: string): void {
    const len = Buffer.byteLength(s, 'utf8');
    if (len === 0 || len > MAX_STRING_BYTES) throw new RangeError(`string of ${len} bytes cannot be encoded (1..255)`);
    this.u8(len);
    this.reserve(len);
    this.buf.write(s, this.pos, 'utf8');
    this.pos += len;
  }

  raw(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  bytes16(b: Uint8Array): void {
    if (b.length > 0xffff) throw new RangeError('field above 65535 bytes');
    this.u16(b.length);
    this.raw(b);
  }

  bytes32(b: Uint8Array): void {
    this.u32(b.length);
    this.raw(b);
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/** Encode one datagram message as a record `[type][len u16][body]`. */
export function encodeRecord(m: PacketMessage): Buffer {
  const w = new Writer(64);
  w.u8(m.type);
  w.u16(0); // length, patched below
  switch (m.type) {
    case MessageType.Ping:
      w.u32(m.seq);
      w.str8(m.target);
      break;
    case MessageType.PingReq:
      w.u32(m.seq);
      w.str8(m.target);
      w.str8(m.targetAddr);
      w.u8(m.wantNack ? 1 : 0);
      break;
    case MessageType.Ack:
    case MessageType.Nack:
      w.u32(m.seq);
      break;
    case MessageType.Alive:
      w.u53(m.incarnation);
      w.str8(m.name);
      w.str8(m.addr);
      w.bytes16(m.meta);
      break;
    case MessageType.Suspect:
    case MessageType.Dead:
      w.u53(m.incarnation);
      w.str8(m.name);
      w.str8(m.from);
      break;
    case MessageType.User:
      w.raw(m.payload);
      break;
  }
  const body = w.pos - RECORD_HEADER_BYTES;
  if (body > 0xffff) throw new RangeError('record body above 65535 bytes');
  w.buf.writeUInt16BE(body, 1);
  return w.finish();
}

/** Decode one record body of a known type. Throws WireError. */
function decodeBody(type: number, r: Reader, limits: DecodeLimits): PacketMessage | null {
  switch (type) {
    case MessageType.Ping:
      return { type, seq: r.u32(), target: r.str8() };
    case MessageType.PingReq: {
      const seq = r.u32();
      const target = r.str8();
      const targetAddr = r.str8();
      const flags = r.u8();
      return { type, seq, target, targetAddr, wantNack: (flags & 1) === 1 };
    }
    case MessageType.Ack:
    case MessageType.Nack:
      return { type, seq: r.u32() };
    case MessageType.Alive: {
      const incarnation = r.u53();
      const name = r.str8();
      const addr = r.str8();
      const meta = r.bytes16(limits.maxMetaBytes);
      return { type, incarnation, name, addr, meta };
    }
    case MessageType.Suspect:
    case MessageType.Dead: {
      const incarnation = r.u53();
      const name = r.str8();
      const from = r.str8();
      return { type, incarnation, name, from };
    }
    case MessageType.User:
      return { type, payload: r.take(r.remaining) };
    default:
      return null; // a type from a newer version: skipped
  }
}

/**
 * Decode the records of a datagram plaintext. A malformed record ends decoding with a
 * WireError (the whole packet is dropped: a peer that sends garbage is not trusted for the
 * rest). Unknown record types are skipped. A record body with bytes left over is malformed.
 */
export function decodeRecords(plain: Uint8Array, limits: DecodeLimits): PacketMessage[] {
  const out: PacketMessage[] = [];
  const r = new Reader(plain);
  while (r.remaining > 0) {
    const type = r.u8();
    const len = r.u16();
    r.need(len);
    const body = new Reader(plain, r.pos, r.pos + len);
    r.pos += len;
    const m = decodeBody(type, body, limits);
    if (m === null) continue;
    if (body.remaining !== 0) throw new WireError(`record type ${type} has ${body.remaining} trailing bytes`);
    out.push(m);
  }
  return out;
}

/** Smallest encoded push-pull entry: state, incarnation, 1-byte name, 1-byte addr, empty meta. */
const MIN_ENTRY_BYTES = 1 + 8 + 2 + 2 + 2;

/** Encode a push-pull as a stream plaintext `[type][flags][count u32][entries][userState u32+bytes]`. */
export function encodePushPull(m: PushPull): Buffer {
  const w = new Writer(64 + m.members.length * 48 + m.userState.length);
  w.u8(MessageType.PushPull);
  w.u8((m.join ? 1 : 0) | (m.reply ? 2 : 0));
  w.u32(m.members.length);
  for (const e of m.members) {
    w.u8(e.state);
    w.u53(e.incarnation);
    w.str8(e.name);
    w.str8(e.addr);
    w.bytes16(e.meta);
  }
  w.bytes32(m.userState);
  return w.finish();
}

/** A query stream frame: a layer above asks one member (`reply` false) or answers it. */
export interface Query {
  type: typeof MessageType.Query;
  reply: boolean;
  payload: Uint8Array;
}

/** Encode a query as a stream plaintext `[type][flags: bit 0 = reply][payload u32+bytes]`. */
export function encodeQuery(q: { reply: boolean; payload: Uint8Array }): Buffer {
  const w = new Writer(8 + q.payload.length);
  w.u8(MessageType.Query);
  w.u8(q.reply ? 1 : 0);
  w.bytes32(q.payload);
  return w.finish();
}

/** Decode a stream plaintext: a push-pull or a query. Throws WireError. */
export function decodeStreamFrame(plain: Uint8Array, limits: DecodeLimits, maxUserStateBytes: number): PushPull | Query {
  if (plain[0] !== MessageType.Query) return decodePushPull(plain, limits, maxUserStateBytes);
  const r = new Reader(plain);
  r.u8();
  const flags = r.u8();
  const payload = r.bytes32(maxUserStateBytes);
  if (r.remaining !== 0) throw new WireError('trailing bytes after query');
  return { type: MessageType.Query, reply: (flags & 1) === 1, payload };
}

/** Decode a push-pull stream plaintext. Throws WireError. */
export function decodePushPull(plain: Uint8Array, limits: DecodeLimits, maxUserStateBytes: number): PushPull {
  const r = new Reader(plain);
  const type = r.u8();
  if (type !== MessageType.PushPull) throw new WireError(`stream record type ${type} is not push-pull`);
  const flags = r.u8();
  const count = r.u32();
  if (count > limits.maxMembers) throw new WireError(`push-pull of ${count} members above limit ${limits.maxMembers}`);
  // The count is checked against the bytes present before any entry is decoded.
  if (count * MIN_ENTRY_BYTES > r.remaining) throw new WireError('push-pull member count exceeds its bytes');
  const members: PushPullEntry[] = [];
  for (let i = 0; i < count; i++) {
    const state = r.u8();
    if (state > WireState.Left) throw new WireError(`unknown member state ${state}`);
    const incarnation = r.u53();
    const name = r.str8();
    const addr = r.str8();
    const meta = r.bytes16(limits.maxMetaBytes);
    members.push({ state: state as WireState, incarnation, name, addr, meta });
  }
  const userState = r.bytes32(maxUserStateBytes);
  if (r.remaining !== 0) throw new WireError('trailing bytes after push-pull');
  return { type: MessageType.PushPull, join: (flags & 1) === 1, reply: (flags & 2) === 2, members, userState };
}
