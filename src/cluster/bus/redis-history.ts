/**
 * The pure parts of cluster-wide ordering on the Redis bus (docs/cluster.md, "With the Redis
 * bus"): the two Lua scripts Redis runs (one orders, keeps and publishes a tick's messages to a
 * history topic; one reads a range of them back), the names of a topic's keys, and the parsers
 * of what comes back. Everything read from Redis is validated here: a broken or hostile Redis
 * gives a parse failure (counted, and treated as a gap), never an exception or an unbounded read.
 *
 * Keys of topic T (prefix P = the bus's channelPrefix): `P{T}:m`, a hash with the topic's
 * `epoch` (made once, HSETNX), its last `offset` (HINCRBY) and the `bytes` of its list;
 * `P{T}:h`, a list of the kept messages, oldest first, each `"<offset> <ms> " + record`.
 * Both expire after the topic has been idle for historyTtlMs.
 *
 * An ordered message on the topic's channel: [version 2][instance id, 8][u32 BE seq of the
 * first record][u8 epoch length][epoch][f64 BE offset of the first record], then records
 * [u32 BE length][record]; record k has offset first + k and seq + k.
 */

export const ORDERED_VERSION = 2;
const ID_BYTES = 8;
/** Longest epoch accepted from Redis (ours are 16 hex characters). */
const MAX_EPOCH_BYTES = 64;
const ORDERED_HEAD = 1 + ID_BYTES + 4 + 1;

/**
 * KEYS: meta, list. ARGV: channel, epoch to create, head (instance id + u32 seq), maxMessages,
 * maxBytes, ttlMs, nowMs, maxAgeMs, '1' for SPUBLISH, then the records. Returns {epoch, first offset}.
 */
export const ORDER_SCRIPT = `
local meta, list = KEYS[1], KEYS[2]
local n = #ARGV - 9
redis.call('HSETNX', meta, 'epoch', ARGV[2])
local epoch = redis.call('HGET', meta, 'epoch')
local last = redis.call('HINCRBY', meta, 'offset', n)
local first = last - n + 1
local maxN, maxB, ttl, now, maxAge = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
local parts = {}
for i = 1, n do
  local rec = ARGV[9 + i]
  local e = string.format('%d %d ', first + i - 1, now) .. rec
  redis.call('RPUSH', list, e)
  bytes = bytes + #e
  parts[i] = struct.pack('>I4', #rec) .. rec
end
local len = redis.call('LLEN', list)
while len > 0 do
  local old = len > maxN or bytes > maxB
  if not old and maxAge > 0 then
    local ts = tonumber(string.match(redis.call('LINDEX', list, 0), '^%d+ (%d+) '))
    old = ts ~= nil and now - ts > maxAge
  end
  if not old then break end
  bytes = bytes - #redis.call('LPOP', list)
  len = len - 1
end
redis.call('HSET', meta, 'bytes', bytes)
redis.call('PEXPIRE', meta, ttl)
if len > 0 then redis.call('PEXPIRE', list, ttl) end
local msg = string.char(2) .. ARGV[3] .. string.char(#epoch) .. epoch .. struct.pack('>d', first) .. table.concat(parts)
if ARGV[9] == '1' then redis.call('SPUBLISH', ARGV[1], msg) else redis.call('PUBLISH', ARGV[1], msg) end
return {epoch, tostring(first)}
`;

/**
 * KEYS: meta, list. ARGV: from offset, max messages, max bytes (at least one message), nowMs,
 * maxAgeMs. Returns {} when the topic has no epoch, else {epoch, last offset, first offset
 * returned, entries...}: the kept messages from `from` on (from the oldest kept when `from`
 * is trimmed or aged out).
 */
export const READ_SCRIPT = `
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {} end
local last = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')
local len = redis.call('LLEN', KEYS[2])
local oldest = last - len + 1
local from = math.max(tonumber(ARGV[1]), oldest)
local maxN, maxB, now, maxAge = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if maxAge > 0 then
  while from <= last do
    local ts = tonumber(string.match(redis.call('LINDEX', KEYS[2], from - oldest), '^%d+ (%d+) '))
    if ts == nil or now - ts <= maxAge then break end
    from = from + 1
  end
end
local out = {epoch, tostring(last), tostring(from)}
if from > last then return out end
local els = redis.call('LRANGE', KEYS[2], from - oldest, math.min(last, from + maxN - 1) - oldest)
local bytes = 0
for i, e in ipairs(els) do
  if i > 1 and bytes + #e > maxB then break end
  bytes = bytes + #e
  out[#out + 1] = e
end
return out
`;

/**
 * KEYS: meta. ARGV: epoch to create, ttlMs. The topic's line as it stands: its epoch (created
 * now, with offset 0, when the topic has none: a node hands out positions only in the cluster's
 * epoch, also before the first message) and its last offset. Returns {epoch, last offset}.
 */
export const LINE_SCRIPT = `
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local last = redis.call('HGET', KEYS[1], 'offset') or '0'
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return {epoch, last}
`;

/** The hash and the list of a topic (one hash tag: the same slot on a Redis Cluster). */
export function historyKeys(prefix: string, topic: string): [string, string] {
  const base = `${prefix}{${topic}}`;
  return [`${base}:m`, `${base}:h`];
}

/** The head of an ordered message published by instance `id` whose first record has `seq`. */
export function orderedHead(id: Buffer, seq: number): Buffer {
  const head = Buffer.allocUnsafe(ID_BYTES + 4);
  id.copy(head, 0);
  head.writeUInt32BE(seq >>> 0, ID_BYTES);
  return head;
}

/** An ordered message from the channel, checked whole. `records` are views into the message. */
export interface OrderedMessage {
  instance: Buffer;
  seq: number;
  epoch: string;
  first: number;
  records: Buffer[];
}

/** Parses an ordered message; null when it is malformed anywhere (then nothing of it is used). */
export function parseOrdered(msg: Buffer, maxRecords: number): OrderedMessage | null {
  if (msg.length < ORDERED_HEAD || msg[0] !== ORDERED_VERSION) return null;
  const epochLength = msg[ORDERED_HEAD - 1]!;
  let o = ORDERED_HEAD + epochLength + 8;
  if (epochLength === 0 || epochLength > MAX_EPOCH_BYTES || msg.length < o) return null;
  const first = msg.readDoubleBE(o - 8);
  if (!Number.isSafeInteger(first) || first < 1) return null;
  const records: Buffer[] = [];
  while (o < msg.length) {
    if (msg.length - o < 4 || records.length >= maxRecords) return null;
    const len = msg.readUInt32BE(o);
    if (msg.length - o - 4 < len) return null;
    records.push(msg.subarray(o + 4, o + 4 + len));
    o += 4 + len;
  }
  if (records.length === 0 || !Number.isSafeInteger(first + records.length)) return null;
  return {
    instance: msg.subarray(1, 1 + ID_BYTES),
    seq: msg.readUInt32BE(1 + ID_BYTES),
    epoch: msg.toString('latin1', ORDERED_HEAD, ORDERED_HEAD + epochLength),
    first,
    records,
  };
}

/** What the order script answered: the topic's epoch and the offset of the first record. */
export function parseOrderReply(reply: unknown): { epoch: string; first: number } | null {
  if (!Array.isArray(reply) || reply.length !== 2) return null;
  const epoch = epochOf(reply[0]);
  const first = decimal(reply[1]);
  return epoch === null || first === null || first < 1 ? null : { epoch, first };
}

/** What the line script answered: the topic's epoch and last offset (0 before its first message). */
export function parseLineReply(reply: unknown): { epoch: string; last: number } | null {
  if (!Array.isArray(reply) || reply.length !== 2) return null;
  const epoch = epochOf(reply[0]);
  const last = decimal(reply[1]);
  return epoch === null || last === null ? null : { epoch, last };
}

/** What the read script answered; `records` are views into the reply. */
export interface ReadReply {
  epoch: string;
  /** The topic's last offset in Redis. */
  last: number;
  /** The offset of records[0] (last + 1 when none is kept from the asked offset on). */
  first: number;
  records: Buffer[];
}

/**
 * Parses a read reply for a request from `from` of at most `maxMessages`: null when the topic
 * has no history in Redis ({}), 'malformed' when anything is off (more than asked, offsets
 * not consecutive from `first`, numbers out of range).
 */
export function parseReadReply(reply: unknown, from: number, maxMessages: number): ReadReply | null | 'malformed' {
  if (!Array.isArray(reply)) return 'malformed';
  if (reply.length === 0) return null;
  if (reply.length < 3 || reply.length > 3 + maxMessages) return 'malformed';
  const epoch = epochOf(reply[0]);
  const last = decimal(reply[1]);
  const first = decimal(reply[2]);
  if (epoch === null || last === null || first === null || first < from || first > last + 1) return 'malformed';
  const records: Buffer[] = [];
  for (let i = 3; i < reply.length; i++) {
    const e = reply[i] as unknown;
    if (!Buffer.isBuffer(e)) return 'malformed';
    const r = parseEntry(e, first + i - 3);
    if (r === null) return 'malformed';
    records.push(r);
  }
  if (first + records.length - 1 > last) return 'malformed';
  return { epoch, last, first, records };
}

/** The record of a kept entry `"<offset> <ms> " + record` whose offset must be `offset`; null when it is not. */
function parseEntry(e: Buffer, offset: number): Buffer | null {
  const sp1 = e.indexOf(0x20);
  if (sp1 <= 0 || sp1 > 16 || e.toString('latin1', 0, sp1) !== String(offset)) return null;
  const sp2 = e.indexOf(0x20, sp1 + 1);
  if (sp2 <= sp1 + 1 || sp2 - sp1 > 17) return null;
  for (let i = sp1 + 1; i < sp2; i++) if (e[i]! < 0x30 || e[i]! > 0x39) return null;
  return e.subarray(sp2 + 1);
}

function epochOf(v: unknown): string | null {
  if (!Buffer.isBuffer(v) || v.length === 0 || v.length > MAX_EPOCH_BYTES) return null;
  return v.toString('latin1');
}

function decimal(v: unknown): number | null {
  if (!Buffer.isBuffer(v) || v.length === 0 || v.length > 16) return null;
  for (const c of v) if (c < 0x30 || c > 0x39) return null;
  const n = Number(v.toString('latin1'));
  return Number.isSafeInteger(n) ? n : null;
}
