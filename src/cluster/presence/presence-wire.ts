/**
 * The presence replication wire format, version 1 (docs/cluster.md has the byte layouts).
 *
 * Presence travels inside the gossip layer: deltas and version notices as application
 * broadcasts (the payload of a gossip `User` record, so at most one datagram), the full state
 * of one node as the delegate state of a push-pull (TCP). The first byte of each payload
 * names its kind; a kind this version does not know is skipped (another layer's, or a newer
 * version's).
 *
 * Decoding never trusts a length or a count: each is checked against the limits and against
 * the bytes that remain before anything is allocated, and every failure is one WireError
 * that the caller counts and drops. Integers are big-endian; `inc`/`version`/`epoch`/`since`
 * are u64 limited to 2^53 - 1 (exact JavaScript numbers).
 */
import { isUtf8 } from 'node:buffer';
import { Reader, Writer, WireError } from '../gossip/gossip-wire.js';
import type { PresenceEntry, PresenceMeta } from './types.js';

/**
 * First byte of a payload. WARNING: ONLY APPEND TO THIS TABLE. The numbers are the
 * protocol; 0x00-0x0f and values not listed are left to other layers sharing the gossip
 * delegate.
 */
export const PayloadKind = {
  /** A batch of consecutive changes of one node (broadcast). */
  Delta: 0x10,
  /** "My presence is at this version" (broadcast): receivers behind it pull the full state. */
  Version: 0x11,
  /** The full presence of one node plus a digest of the others (push-pull delegate state). */
  State: 0x12,
  /** "Which of these users have a connection on you?" (a query stream to one node). */
  OnlineAsk: 0x13,
  /** The answer: which of the asked users are online on the answering node. */
  OnlineAnswer: 0x14,
} as const;
export type PayloadKind = (typeof PayloadKind)[keyof typeof PayloadKind];

/** Operations inside a delta. Append-only as well. */
export const OpKind = { Online: 1, Offline: 2, Set: 3, Leave: 4 } as const;
export type OpKind = (typeof OpKind)[keyof typeof OpKind];

export type Op =
  | { kind: typeof OpKind.Online | typeof OpKind.Offline; user: string }
  | { kind: typeof OpKind.Set; topic: string; entry: PresenceEntry }
  | { kind: typeof OpKind.Leave; topic: string; conn: string };

export interface Delta {
  kind: typeof PayloadKind.Delta;
  owner: string;
  epoch: number;
  /** Version before the first op; op i brings the owner to base + i + 1. */
  base: number;
  ops: Op[];
}

export interface VersionNotice {
  kind: typeof PayloadKind.Version;
  owner: string;
  epoch: number;
  version: number;
}

export interface Digest {
  owner: string;
  epoch: number;
  version: number;
}

export interface State {
  kind: typeof PayloadKind.State;
  owner: string;
  epoch: number;
  version: number;
  users: string[];
  /** Entries grouped by topic. */
  topics: Array<[string, PresenceEntry[]]>;
  /** What the sender knows of other nodes: who to pull from when we are behind. */
  digests: Digest[];
}

export interface OnlineAsk {
  kind: typeof PayloadKind.OnlineAsk;
  /** The asking node: answers are only for it. */
  asker: string;
  round: number;
  users: string[];
}

export interface OnlineAnswer {
  kind: typeof PayloadKind.OnlineAnswer;
  /** The answering node. */
  owner: string;
  round: number;
  /** Positions in the ask's user list of the users online on the answering node. */
  online: number[];
}

/** Bounds the decoder enforces; a receiver passes its own configuration. */
export interface WireLimits {
  /** Users in one online ask (u16 on the wire). */
  maxAskUsers: number;
  /** Bytes of a topic name (1..65535). */
  maxTopicBytes: number;
  /** Bytes of a user id (1..65535). */
  maxUserBytes: number;
  /** Bytes of an entry's meta as JSON. */
  maxMetaBytes: number;
  /** Entries in one node's full state. */
  maxEntriesPerNode: number;
  /** Online users in one node's full state. */
  maxUsersPerNode: number;
  /** Nodes in a digest. */
  maxOwners: number;
}

/** Smallest op: kind + a 1-byte user with its u16 length. */
const MIN_OP_BYTES = 4;
/** Smallest state entry: conn str8 (2) + user str16 (3) + since (8) + empty meta (2). */
const MIN_ENTRY_BYTES = 15;
/** Smallest topic group: topic str16 (3) + count (4). */
const MIN_TOPIC_BYTES = 7;
/** Smallest digest: owner str8 (2) + epoch + version. */
const MIN_DIGEST_BYTES = 18;
/** Largest op count in one delta (u16 on the wire). */
const MAX_OPS = 0xffff;

// ---------------------------------------------------------------- encoding

function str16(w: Writer, s: string): void {
  const len = Buffer.byteLength(s, 'utf8');
  if (len === 0 || len > 0xffff) throw new RangeError(`string of ${len} bytes cannot be encoded (1..65535)`);
  w.u16(len);
  w.reserve(len);
  w.buf.write(s, w.pos, 'utf8');
  w.pos += len;
}

function meta16(w: Writer, json: string | null): void {
  if (json === null) {
    w.u16(0);
    return;
  }
  const len = Buffer.byteLength(json, 'utf8');
  if (len > 0xffff) throw new RangeError('meta above 65535 bytes');
  w.u16(len);
  w.reserve(len);
  w.buf.write(json, w.pos, 'utf8');
  w.pos += len;
}

/** `meta` as the JSON text carried on the wire (null stays null). */
export function metaJson(meta: PresenceMeta | null): string | null {
  return meta === null ? null : JSON.stringify(meta);
}

export function encodeOnline(user: string, online: boolean): Buffer {
  const w = new Writer(8 + user.length * 3);
  w.u8(online ? OpKind.Online : OpKind.Offline);
  str16(w, user);
  return Buffer.from(w.finish());
}

export function encodeSet(topic: string, entry: PresenceEntry, json: string | null): Buffer {
  const w = new Writer(32 + (topic.length + entry.user.length + (json?.length ?? 0)) * 3);
  w.u8(OpKind.Set);
  str16(w, topic);
  w.str8(entry.conn);
  str16(w, entry.user);
  w.u53(entry.since);
  meta16(w, json);
  return Buffer.from(w.finish());
}

export function encodeLeave(topic: string, conn: string): Buffer {
  const w = new Writer(8 + topic.length * 3 + conn.length * 3);
  w.u8(OpKind.Leave);
  str16(w, topic);
  w.str8(conn);
  return Buffer.from(w.finish());
}

/** Bytes of a delta's header for `owner`: kind, owner, epoch, base, op count. */
export function deltaHeaderBytes(owner: string): number {
  return 1 + 1 + Buffer.byteLength(owner, 'utf8') + 8 + 8 + 2;
}

/** A delta from already encoded ops (at most 65,535). */
export function encodeDelta(owner: string, epoch: number, base: number, ops: readonly Uint8Array[]): Buffer {
  if (ops.length > MAX_OPS) throw new RangeError('more than 65535 ops in one delta');
  let size = deltaHeaderBytes(owner);
  for (const op of ops) size += op.length;
  const w = new Writer(size);
  w.u8(PayloadKind.Delta);
  w.str8(owner);
  w.u53(epoch);
  w.u53(base);
  w.u16(ops.length);
  for (const op of ops) w.raw(op);
  return w.finish();
}

export function encodeVersion(owner: string, epoch: number, version: number): Buffer {
  const w = new Writer(24 + owner.length * 3);
  w.u8(PayloadKind.Version);
  w.str8(owner);
  w.u53(epoch);
  w.u53(version);
  return Buffer.from(w.finish());
}

/** Bytes one state entry takes (conn, user, since, meta), for the sender's size budget. */
export function stateEntryBytes(entry: PresenceEntry, json: string | null): number {
  return 1 + Buffer.byteLength(entry.conn, 'utf8') + 2 + Buffer.byteLength(entry.user, 'utf8') + 8 + 2 + (json === null ? 0 : Buffer.byteLength(json, 'utf8'));
}

/** Bytes a topic group header takes. */
export function stateTopicBytes(topic: string): number {
  return 2 + Buffer.byteLength(topic, 'utf8') + 4;
}

/** Bytes an online user takes in a state. */
export function stateUserBytes(user: string): number {
  return 2 + Buffer.byteLength(user, 'utf8');
}

/** Fixed part of a state: kind, epoch, version, the three counts (owner and digests aside). */
export const STATE_FIXED_BYTES = 1 + 8 + 8 + 4 + 4 + 2;

export function encodeState(
  owner: string,
  epoch: number,
  version: number,
  users: Iterable<string>,
  topics: Iterable<[string, Iterable<PresenceEntry>]>,
  digests: readonly Digest[],
  sizeHint = 256,
): Buffer {
  const w = new Writer(Math.max(64, sizeHint));
  w.u8(PayloadKind.State);
  w.str8(owner);
  w.u53(epoch);
  w.u53(version);
  const usersAt = w.pos;
  w.u32(0);
  let n = 0;
  for (const u of users) {
    str16(w, u);
    n++;
  }
  w.buf.writeUInt32BE(n, usersAt);
  const topicsAt = w.pos;
  w.u32(0);
  let t = 0;
  for (const [topic, entries] of topics) {
    str16(w, topic);
    const countAt = w.pos;
    w.u32(0);
    let k = 0;
    for (const e of entries) {
      w.str8(e.conn);
      str16(w, e.user);
      w.u53(e.since);
      meta16(w, metaJson(e.meta));
      k++;
    }
    w.buf.writeUInt32BE(k, countAt);
    t++;
  }
  w.buf.writeUInt32BE(t, topicsAt);
  if (digests.length > 0xffff) throw new RangeError('more than 65535 digests');
  w.u16(digests.length);
  for (const d of digests) {
    w.str8(d.owner);
    w.u53(d.epoch);
    w.u53(d.version);
  }
  return w.finish();
}

/** `[0x13][asker str8][round u32][count u16][user str16]*` */
export function encodeOnlineAsk(asker: string, round: number, users: readonly string[]): Buffer {
  if (users.length > 0xffff) throw new RangeError('more than 65535 users in one ask');
  const w = new Writer(16 + users.length * 24);
  w.u8(PayloadKind.OnlineAsk);
  w.str8(asker);
  w.u32(round);
  w.u16(users.length);
  for (const u of users) str16(w, u);
  return w.finish();
}

/** `[0x14][owner str8][round u32][count u16][position u16]*` */
export function encodeOnlineAnswer(owner: string, round: number, online: readonly number[]): Buffer {
  const w = new Writer(16 + online.length * 2);
  w.u8(PayloadKind.OnlineAnswer);
  w.str8(owner);
  w.u32(round);
  w.u16(online.length);
  for (const i of online) w.u16(i);
  return w.finish();
}

// ---------------------------------------------------------------- decoding

function readStr16(r: Reader, max: number, what: string): string {
  const len = r.u16();
  if (len === 0 || len > max) throw new WireError(`${what} of ${len} bytes outside 1..${max}`);
  r.need(len);
  const bytes = r.buf.subarray(r.pos, r.pos + len);
  if (!isUtf8(bytes)) throw new WireError(`${what} is not UTF-8`);
  r.pos += len;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

function readMeta(r: Reader, max: number): PresenceMeta | null {
  const len = r.u16();
  if (len === 0) return null;
  if (len > max) throw new WireError(`meta of ${len} bytes above limit ${max}`);
  r.need(len);
  const bytes = r.buf.subarray(r.pos, r.pos + len);
  r.pos += len;
  if (!isUtf8(bytes)) throw new WireError('meta is not UTF-8');
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw new WireError('meta is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new WireError('meta is not a JSON object');
  return v as PresenceMeta;
}

function readEpoch(r: Reader): number {
  const epoch = r.u53();
  if (epoch === 0) throw new WireError('epoch 0');
  return epoch;
}

function readEntry(r: Reader, limits: WireLimits, users?: Map<string, string>): PresenceEntry {
  const conn = r.str8();
  let user = readStr16(r, limits.maxUserBytes, 'user');
  // One string per user id, shared with the online list: 32+ bytes saved per entry held.
  if (users !== undefined) user = users.get(user) ?? user;
  const since = r.u53();
  const meta = readMeta(r, limits.maxMetaBytes);
  return { user, conn, meta, since };
}

function readOp(r: Reader, limits: WireLimits): Op {
  const kind = r.u8();
  switch (kind) {
    case OpKind.Online:
    case OpKind.Offline:
      return { kind, user: readStr16(r, limits.maxUserBytes, 'user') };
    case OpKind.Set: {
      const topic = readStr16(r, limits.maxTopicBytes, 'topic');
      return { kind, topic, entry: readEntry(r, limits) };
    }
    case OpKind.Leave: {
      const topic = readStr16(r, limits.maxTopicBytes, 'topic');
      return { kind, topic, conn: r.str8() };
    }
    default:
      // Ops carry no length, so an unknown one cannot be skipped: the delta is dropped and the
      // gap it leaves is repaired from the owner's full state.
      throw new WireError(`unknown op ${kind}`);
  }
}

/**
 * Decodes a broadcast payload. Returns null for a kind that is not a presence broadcast.
 * @throws WireError for anything malformed or over a limit.
 */
export function decodeBroadcast(payload: Uint8Array, limits: WireLimits): Delta | VersionNotice | null {
  const r = new Reader(payload);
  const kind = r.u8();
  if (kind === PayloadKind.Version) {
    const owner = r.str8();
    const epoch = readEpoch(r);
    const version = r.u53();
    if (r.remaining !== 0) throw new WireError('trailing bytes after a version notice');
    return { kind, owner, epoch, version };
  }
  if (kind !== PayloadKind.Delta) return null;
  const owner = r.str8();
  const epoch = readEpoch(r);
  const base = r.u53();
  const count = r.u16();
  if (count === 0) throw new WireError('empty delta');
  if (count * MIN_OP_BYTES > r.remaining) throw new WireError('delta op count exceeds its bytes');
  if (base + count > Number.MAX_SAFE_INTEGER) throw new WireError('delta version above 2^53 - 1');
  const ops: Op[] = [];
  for (let i = 0; i < count; i++) ops.push(readOp(r, limits));
  if (r.remaining !== 0) throw new WireError('trailing bytes after a delta');
  return { kind, owner, epoch, base, ops };
}

/**
 * Decodes a push-pull delegate state. Returns null for a kind that is not a presence state.
 * @throws WireError for anything malformed or over a limit.
 */
export function decodeState(payload: Uint8Array, limits: WireLimits): State | null {
  const r = new Reader(payload);
  const kind = r.u8();
  if (kind !== PayloadKind.State) return null;
  const owner = r.str8();
  const epoch = readEpoch(r);
  const version = r.u53();
  const userCount = r.u32();
  if (userCount > limits.maxUsersPerNode) throw new WireError(`${userCount} users above limit ${limits.maxUsersPerNode}`);
  if (userCount * 3 > r.remaining) throw new WireError('user count exceeds its bytes');
  const users: string[] = [];
  const interned = new Map<string, string>();
  for (let i = 0; i < userCount; i++) {
    const u = readStr16(r, limits.maxUserBytes, 'user');
    users.push(u);
    interned.set(u, u);
  }
  const topicCount = r.u32();
  if (topicCount > limits.maxEntriesPerNode) throw new WireError(`${topicCount} topics above the entry limit`);
  if (topicCount * MIN_TOPIC_BYTES > r.remaining) throw new WireError('topic count exceeds its bytes');
  const topics: Array<[string, PresenceEntry[]]> = [];
  let total = 0;
  for (let t = 0; t < topicCount; t++) {
    const topic = readStr16(r, limits.maxTopicBytes, 'topic');
    const n = r.u32();
    total += n;
    if (total > limits.maxEntriesPerNode) throw new WireError(`more than ${limits.maxEntriesPerNode} entries`);
    if (n * MIN_ENTRY_BYTES > r.remaining) throw new WireError('entry count exceeds its bytes');
    const entries: PresenceEntry[] = [];
    for (let i = 0; i < n; i++) entries.push(readEntry(r, limits, interned));
    topics.push([topic, entries]);
  }
  const digestCount = r.u16();
  if (digestCount > limits.maxOwners) throw new WireError(`${digestCount} digests above limit ${limits.maxOwners}`);
  if (digestCount * MIN_DIGEST_BYTES > r.remaining) throw new WireError('digest count exceeds its bytes');
  const digests: Digest[] = [];
  for (let i = 0; i < digestCount; i++) digests.push({ owner: r.str8(), epoch: readEpoch(r), version: r.u53() });
  if (r.remaining !== 0) throw new WireError('trailing bytes after a state');
  return { kind, owner, epoch, version, users, topics, digests };
}

/**
 * Decodes a query payload (an ask or its answer). Returns null for another kind.
 * @throws WireError for anything malformed or over a limit.
 */
export function decodeQuery(payload: Uint8Array, limits: WireLimits): OnlineAsk | OnlineAnswer | null {
  const r = new Reader(payload);
  const kind = r.u8();
  if (kind !== PayloadKind.OnlineAsk && kind !== PayloadKind.OnlineAnswer) return null;
  const name = r.str8();
  const round = r.u32();
  const count = r.u16();
  if (count > limits.maxAskUsers) throw new WireError(`${count} users above limit ${limits.maxAskUsers}`);
  if (kind === PayloadKind.OnlineAsk) {
    // Each user is at least a u16 length and one byte: checked before anything is allocated.
    if (count * 3 > r.remaining) throw new WireError('user count exceeds its bytes');
    const users: string[] = [];
    for (let i = 0; i < count; i++) users.push(readStr16(r, limits.maxUserBytes, 'user'));
    if (r.remaining !== 0) throw new WireError('trailing bytes after online ask');
    return { kind, asker: name, round, users };
  }
  if (count * 2 !== r.remaining) throw new WireError('answer count does not match its bytes');
  const online: number[] = [];
  for (let i = 0; i < count; i++) online.push(r.u16());
  return { kind, owner: name, round, online };
}
