/**
 * The wire protocol of `murmur serve` (docs/serve-protocol.md is the reference; this file is the
 * one place its shapes, codes and limits are checked). Sans-I/O: bytes or text in, a
 * validated command or an AppError out; envelopes out as strings or Buffers.
 *
 * Text frames carry JSON commands `{"type": ..., "id": ..., ...}`. A binary frame is
 * `[u16 big-endian N][N bytes of JSON header][payload bytes]`: the header is a command (only
 * `publish` is allowed from clients) or, from the server, a message envelope without `data`;
 * the payload is the message's bytes, unchanged.
 */
import type { StreamPosition } from '../pubsub/history.js';
import { jsonWellFormed, MAX_USER_LENGTH, wellFormed } from './validate.js';

/** Every error code a command can get, with its meaning. Codes are stable; the table only grows. */
export const AppErrorCode = {
  BAD_JSON: 'the text frame is not valid JSON',
  BAD_COMMAND: 'the command is not a JSON object with a string "type"',
  UNKNOWN_COMMAND: 'no command has that "type"',
  MISSING_FIELD: 'a required field is missing',
  BAD_FIELD: 'a field has the wrong type or an out-of-range value',
  BAD_BINARY: 'a binary frame whose header is malformed, or that is not a publish',
  TOO_LARGE: 'the frame is larger than maxMessageBytes',
  BAD_TOPIC: 'a topic name that is empty, too long, has control characters or starts with "$" (reserved)',
  BAD_UNICODE: 'a topic, user id or presence meta holds a lone UTF-16 surrogate: not well-formed Unicode, so UTF-8 cannot carry it to other nodes',
  FORBIDDEN: "the connection's permissions do not cover this topic",
  RATE_LIMITED: 'more commands than the per-connection rate limit allows; slow down',
  TOO_MANY_SUBSCRIPTIONS: 'the connection has reached maxSubscriptions (presence watches count too)',
  NO_HISTORY: 'the topic keeps no history',
  TOO_MANY_NEW_TOPICS: 'the connection created maxNewTopicsPerMinute topics with history in the last minute; use existing ones or wait',
  PRESENCE_FULL: 'the topic has reached presenceMaxMembers',
  META_TOO_LARGE: 'presence meta is over presenceMaxMetaBytes as JSON, or is not an object',
  TOO_MANY_PRESENCE_TOPICS: 'the connection is present in presenceMaxTopics topics already',
  ONLINE_BUSY: 'too many `presence online` asks are waiting for the other nodes of the cluster; ask again shortly',
  UNAVAILABLE: 'the cluster could not order the message in time (or this node is stopping): it is not known to be published',
  CATCHING_UP: "this node cannot tell yet where the topic stands in the cluster (it is starting, or its bus is reconnecting or slow), so it cannot answer with the cluster's position: subscribe (or ask the history) again shortly; the murmur clients retry with backoff",
  PUBLISH_BUSY: 'too many publishes are waiting for the cluster to order them on this node: it was not published; publish again shortly',
  INTERNAL: 'the server failed handling the command (a bug: it is logged)',
} as const;
export type AppErrorCode = keyof typeof AppErrorCode;

/** Close codes the application sends, with the reason text it uses. */
export const AppCloseCode = {
  /** Too many errors (rate-limited commands included) within the abuse window. */
  Abuse: 1008,
  /** Graceful drain (SIGTERM): reconnect elsewhere or after the hinted delay. */
  ServiceRestart: 1012,
  /** The server is full or draining: reconnect after the hinted delay. */
  TryAgainLater: 1013,
  /** The token expired while connected: reconnect with a fresh one. */
  TokenExpired: 4001,
} as const;

/** Reason hint carried by 1012/1013 closes, read by the browser client (which cannot see a 503's Retry-After). */
export function retryAfterReason(text: string, seconds: number): string {
  return `${text}; retry-after=${Math.max(0, Math.ceil(seconds))}`;
}

export class AppError {
  constructor(
    readonly code: AppErrorCode,
    readonly message: string = AppErrorCode[code],
    readonly id: RequestId = null,
  ) {}
}

export type RequestId = string | number | null;

export type PresenceAction = 'join' | 'leave' | 'list' | 'watch' | 'unwatch' | 'online';

export type Command =
  | { type: 'subscribe'; id: RequestId; topic: string; since: StreamPosition | null; rewind: number; presence: boolean }
  | { type: 'unsubscribe'; id: RequestId; topic: string }
  | { type: 'publish'; id: RequestId; topic: string; data: unknown; echo: boolean; binary: Buffer | null }
  | { type: 'presence'; id: RequestId; action: PresenceAction; topic: string; meta: Record<string, unknown> | null; users: string[] }
  | { type: 'history'; id: RequestId; topic: string; since: StreamPosition | null; limit: number }
  | { type: 'ping'; id: RequestId };

export interface ProtocolLimits {
  /** Bytes of a topic name (UTF-8). */
  maxTopicBytes: number;
  /** Messages a `history` command or a `rewind` may return. */
  maxHistoryLimit: number;
}

/** Longest request id echoed back. */
export const MAX_ID_LENGTH = 64;
/** Largest JSON header of a binary frame: a command or envelope, never data. */
export const MAX_BINARY_HEADER = 4096;
/** Users one `presence online` query may ask about. */
export const MAX_ONLINE_QUERY = 100;
const COMMANDS = ['subscribe', 'unsubscribe', 'publish', 'presence', 'history', 'ping'] as const;
const ACTIONS: readonly PresenceAction[] = ['join', 'leave', 'list', 'watch', 'unwatch', 'online'];

/** Parses a text frame into a command. Never throws. */
export function parseTextCommand(text: string, limits: ProtocolLimits): Command | AppError {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return new AppError('BAD_JSON');
  }
  return readCommand(raw, limits, null);
}

/** Parses a binary frame (header + payload) into a publish command. Never throws. */
export function parseBinaryCommand(frame: Buffer, limits: ProtocolLimits): Command | AppError {
  if (frame.length < 2) return new AppError('BAD_BINARY', 'a binary frame starts with a 2-byte header length');
  const n = frame.readUInt16BE(0);
  if (n === 0 || n > MAX_BINARY_HEADER || 2 + n > frame.length) return new AppError('BAD_BINARY', `header length ${n} is 0, over ${MAX_BINARY_HEADER}, or past the frame's end`);
  let raw: unknown;
  try {
    raw = JSON.parse(frame.toString('utf8', 2, 2 + n));
  } catch {
    return new AppError('BAD_BINARY', 'the header is not valid JSON');
  }
  const payload = frame.subarray(2 + n);
  const cmd = readCommand(raw, limits, payload);
  if (!(cmd instanceof AppError) && cmd.type !== 'publish') return new AppError('BAD_BINARY', 'only publish may be sent in a binary frame', cmd.id);
  return cmd;
}

/** Bytes at each end of a frame (or of a binary frame's header) that peekId looks at. */
export const ID_SCAN_BYTES = 128;
const ID_VALUE = String.raw`(-?\d{1,16}|"[^"\\\u0000-\u001f]{0,${MAX_ID_LENGTH}}")`;
/** `{"id": ...` or `{"type": "...", "id": ...` at the start. */
const ID_AT_START = new RegExp(String.raw`^\s*\{\s*(?:"type"\s*:\s*"[A-Za-z]{1,16}"\s*,\s*)?"id"\s*:\s*${ID_VALUE}\s*[,}]`);
/** `, "id": ...}` at the end. */
const ID_AT_END = new RegExp(String.raw`[{,]\s*"id"\s*:\s*${ID_VALUE}\s*\}\s*$`);

/**
 * The request id of a frame refused before it is parsed (rate-limited), so its sender can
 * match the error, at a cost that does not grow with the frame: only the first and last
 * ID_SCAN_BYTES bytes are read, for a top-level "id" that is the first key (or the second,
 * after "type") or the last key, holding an integer or a string without escapes. Anything
 * else gets null. Never throws.
 */
export function peekId(frame: Buffer, isBinary: boolean): RequestId {
  let start = 0;
  let end = frame.length;
  if (isBinary) {
    if (frame.length < 2) return null;
    start = 2;
    end = Math.min(frame.length, 2 + frame.readUInt16BE(0));
  }
  const head = ID_AT_START.exec(frame.toString('utf8', start, Math.min(end, start + ID_SCAN_BYTES)));
  const m = head ?? ID_AT_END.exec(frame.toString('utf8', Math.max(start, end - ID_SCAN_BYTES), end));
  const v = m?.[1];
  if (v === undefined) return null;
  if (v.charCodeAt(0) === 34 /* " */) return v.slice(1, -1);
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : null;
}

function readCommand(raw: unknown, limits: ProtocolLimits, binary: Buffer | null): Command | AppError {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return new AppError('BAD_COMMAND');
  const r = raw as Record<string, unknown>;
  let id: RequestId = null;
  if (r.id !== undefined && r.id !== null) {
    if (typeof r.id === 'string' && r.id.length <= MAX_ID_LENGTH) id = r.id;
    else if (typeof r.id === 'number' && Number.isSafeInteger(r.id)) id = r.id;
    else return new AppError('BAD_FIELD', `"id" must be a string of at most ${MAX_ID_LENGTH} characters or an integer`);
  }
  const type = r.type;
  if (typeof type !== 'string') return new AppError('BAD_COMMAND', AppErrorCode.BAD_COMMAND, id);
  if (!(COMMANDS as readonly string[]).includes(type)) return new AppError('UNKNOWN_COMMAND', `unknown command ${JSON.stringify(type.slice(0, 64))}; commands: ${COMMANDS.join(', ')}`, id);
  const f = new Fields(r, id, limits);
  try {
    switch (type as (typeof COMMANDS)[number]) {
      case 'ping':
        return { type: 'ping', id };
      case 'subscribe': {
        const topic = f.topic();
        const since = f.position('since');
        // "The last n": a server that keeps fewer serves what it keeps, as history's limit does.
        const rewind = Math.min(f.int('rewind', 0, Number.MAX_SAFE_INTEGER, 0), limits.maxHistoryLimit);
        if (since !== null && rewind > 0) throw new AppError('BAD_FIELD', 'give "since" or "rewind", not both', id);
        return { type: 'subscribe', id, topic, since, rewind, presence: f.bool('presence', false) };
      }
      case 'unsubscribe':
        return { type: 'unsubscribe', id, topic: f.topic() };
      case 'publish': {
        const topic = f.topic();
        if (binary === null && !('data' in r)) throw new AppError('MISSING_FIELD', 'publish needs "data"', id);
        if (binary !== null && 'data' in r) throw new AppError('BAD_FIELD', 'a binary publish carries its data as the payload, not in the header', id);
        return { type: 'publish', id, topic, data: binary === null ? r.data : undefined, echo: f.bool('echo', true), binary };
      }
      case 'history': {
        const topic = f.topic();
        const since = f.position('since');
        const limit = Math.min(f.int('limit', 1, Number.MAX_SAFE_INTEGER, 50), limits.maxHistoryLimit);
        return { type: 'history', id, topic, since, limit };
      }
      case 'presence': {
        const action = r.action;
        if (action === undefined) throw new AppError('MISSING_FIELD', `presence needs "action": one of ${ACTIONS.join(', ')}`, id);
        if (typeof action !== 'string' || !(ACTIONS as readonly string[]).includes(action)) {
          throw new AppError('BAD_FIELD', `"action" must be one of ${ACTIONS.join(', ')}`, id);
        }
        if (action === 'online') return { type: 'presence', id, action, topic: '', meta: null, users: f.users() };
        const topic = f.topic();
        let meta: Record<string, unknown> | null = null;
        if (action === 'join' && r.meta !== undefined && r.meta !== null) {
          if (typeof r.meta !== 'object' || Array.isArray(r.meta)) throw new AppError('META_TOO_LARGE', '"meta" must be a JSON object', id);
          if (!jsonWellFormed(r.meta)) throw new AppError('BAD_UNICODE', '"meta" holds a lone UTF-16 surrogate in a key or a string', id);
          meta = r.meta as Record<string, unknown>;
        }
        return { type: 'presence', id, action: action as PresenceAction, topic, meta, users: [] };
      }
    }
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
}

/** Field readers that throw an AppError carrying the request id. */
class Fields {
  constructor(
    private readonly r: Record<string, unknown>,
    private readonly id: RequestId,
    private readonly limits: ProtocolLimits,
  ) {}

  topic(): string {
    const t = this.r.topic;
    if (t === undefined) throw new AppError('MISSING_FIELD', 'this command needs "topic"', this.id);
    const problem = topicError(t, this.limits.maxTopicBytes);
    if (problem !== null) throw new AppError(problem.code, problem.message, this.id);
    return t as string;
  }

  position(name: string): StreamPosition | null {
    const v = this.r[name];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) throw new AppError('BAD_FIELD', `"${name}" must be {"epoch": string, "offset": integer >= 0}`, this.id);
    const { epoch, offset } = v as Record<string, unknown>;
    if (typeof epoch !== 'string' || epoch.length > 64 || typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
      throw new AppError('BAD_FIELD', `"${name}" must be {"epoch": string, "offset": integer >= 0}`, this.id);
    }
    return { epoch, offset };
  }

  int(name: string, min: number, max: number, fallback: number): number {
    const v = this.r[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new AppError('BAD_FIELD', `"${name}" must be an integer from ${min} to ${max}`, this.id);
    return v;
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.r[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw new AppError('BAD_FIELD', `"${name}" must be true or false`, this.id);
    return v;
  }

  users(): string[] {
    const v = this.r.users;
    if (v === undefined) throw new AppError('MISSING_FIELD', 'presence online needs "users": [user ids]', this.id);
    if (!Array.isArray(v) || v.length > MAX_ONLINE_QUERY || !v.every((u) => typeof u === 'string' && u.length <= MAX_USER_LENGTH)) {
      throw new AppError('BAD_FIELD', `"users" must be an array of at most ${MAX_ONLINE_QUERY} user ids`, this.id);
    }
    if (!(v as string[]).every(wellFormed)) throw new AppError('BAD_UNICODE', 'a user id in "users" holds a lone UTF-16 surrogate (not well-formed Unicode)', this.id);
    return v as string[];
  }
}

/** Why `t` is not a topic a client may name, or null when it is fine. */
export function topicProblem(t: unknown, maxBytes: number): string | null {
  if (typeof t !== 'string' || t.length === 0) return '"topic" must be a non-empty string';
  if (t.length > maxBytes || Buffer.byteLength(t) > maxBytes) return `"topic" is over ${maxBytes} bytes`;
  if (t.charCodeAt(0) === 36 /* $ */) return 'topics starting with "$" are reserved for the server';
  if (/[\u0000-\u001f\u007f]/.test(t)) return '"topic" has a control character';
  return null;
}

/** Why `t` is not a topic a client may name, as the error code and message; null when it is fine. */
export function topicError(t: unknown, maxBytes: number): { code: 'BAD_TOPIC' | 'BAD_UNICODE'; message: string } | null {
  const problem = topicProblem(t, maxBytes);
  if (problem !== null) return { code: 'BAD_TOPIC', message: problem };
  if (!wellFormed(t as string)) return { code: 'BAD_UNICODE', message: '"topic" holds a lone UTF-16 surrogate (not well-formed Unicode)' };
  return null;
}

// ---- server -> client ------------------------------------------------------------------

export function replyJson(id: RequestId, fields: Record<string, unknown>): string {
  return JSON.stringify({ type: 'reply', id, ...fields });
}

export function errorJson(err: AppError): string {
  return JSON.stringify({ type: 'error', id: err.id, code: err.code, message: err.message });
}

export interface Envelope {
  topic: string;
  /** Present on topics that keep history. */
  position: StreamPosition | null;
  from: string;
}

/** A text message envelope; `dataJson` is the data, already serialised. */
export function textEnvelope(e: Envelope, dataJson: string): string {
  const pos = e.position === null ? '' : `,"epoch":${JSON.stringify(e.position.epoch)},"offset":${e.position.offset}`;
  return `{"type":"message","topic":${JSON.stringify(e.topic)}${pos},"from":${JSON.stringify(e.from)},"data":${dataJson}}`;
}

/** The envelope hook of serve's pub/sub (Topics.envelope): text or binary envelope, with this node's position. */
export function envelopeHook(topic: string, position: StreamPosition | null, from: string, data: string | Buffer, isBinary: boolean): string | Buffer {
  return isBinary ? binaryEnvelope({ topic, position, from }, data as Buffer) : textEnvelope({ topic, position, from }, data as string);
}

/** A binary message: [u16 N][N bytes of JSON header (the envelope without data)][payload]. */
export function binaryEnvelope(e: Envelope, payload: Buffer): Buffer {
  const header: Record<string, unknown> = { type: 'message', topic: e.topic };
  if (e.position !== null) {
    header.epoch = e.position.epoch;
    header.offset = e.position.offset;
  }
  header.from = e.from;
  const h = Buffer.from(JSON.stringify(header));
  const out = Buffer.allocUnsafe(2 + h.length + payload.length);
  out.writeUInt16BE(h.length, 0);
  h.copy(out, 2);
  payload.copy(out, 2 + h.length);
  return out;
}

/** Splits a binary frame into its JSON header and payload (for clients and tests). */
export function decodeBinaryFrame(frame: Buffer): { header: Record<string, unknown>; payload: Buffer } {
  const n = frame.readUInt16BE(0);
  return { header: JSON.parse(frame.toString('utf8', 2, 2 + n)) as Record<string, unknown>, payload: frame.subarray(2 + n) };
}

/** Builds a client binary publish frame (for clients and tests). */
export function encodeBinaryPublish(header: { topic: string; id?: RequestId; echo?: boolean }, payload: Buffer): Buffer {
  const h = Buffer.from(JSON.stringify({ type: 'publish', ...header }));
  return Buffer.concat([Buffer.from([h.length >> 8, h.length & 0xff]), h, payload]);
}
