/**
 * The Redis transport of the cluster bus: every node publishes to the Redis channel of the
 * topic, and subscribes to a topic's channel only while it has local subscribers to it.
 *
 * - Sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7+) where the server has it, classic
 *   PUBLISH/SUBSCRIBE otherwise (`sharded: 'auto'`, the default, asks the server once).
 * - Two connections: one publishes, one subscribes (a RESP2 connection in subscribe mode can
 *   do nothing else, and publishes must not queue behind subscription changes).
 * - Each message is tagged with this process's random instance id: a node subscribed to a
 *   topic it publishes to gets its own message back from Redis and ignores it (its local
 *   subscribers had it from the local publish).
 * - One connection per process keeps each publisher's order (Redis delivers a channel's
 *   messages in the order it received them).
 * - Bounded: publish bytes in flight to Redis are capped (maxPendingBytes); past that, or
 *   while Redis is unreachable, publishes are dropped and counted; the client's offline
 *   queue is off, so nothing piles up during an outage.
 * - Reconnects with backoff and jitter when Redis goes away, says so on the log, counts it,
 *   and subscribes again to every channel it needs.
 *
 * The client is the npm package `redis` (node-redis 5 or 6): an optional peer
 * dependency, loaded with a dynamic import only when this transport is used.
 *
 * History topics are ordered by Redis itself (docs/cluster.md, "With the Redis bus";
 * redis-history.ts holds the scripts and the formats): one script call gives a tick's
 * messages to a topic their offsets, keeps them in a capped list and publishes them; every node
 * applies them in offset order, filling gaps and recoveries from that list.
 *
 * Wire format of a Redis message: [version 1][id length u8 = 8][instance id], then one or more
 * records [flags u8: bit 0 = binary][length u32][data]: the publishes of one tick to one topic
 * travel as one Redis message (one PUBLISH instead of one per message), in order.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Bus, BusInterest, OrderedDone, OrderedFailure, OrderingHost } from '../../pubsub/bus.js';
import type { StreamPosition } from '../../pubsub/history.js';
import { REDIS_DEFAULTS } from './bus-config.js';
import { FillBook } from './gap-fill.js';
import type { TopicFill } from './gap-fill.js';
import { LINE_SCRIPT, ORDERED_VERSION, ORDER_SCRIPT, READ_SCRIPT, historyKeys, orderedHead, parseLineReply, parseOrderReply, parseOrdered, parseReadReply } from './redis-history.js';
import type { ReadReply } from './redis-history.js';
import { LogLimiter, defaultLog, newBusStats } from './stats.js';
import type { BusStats } from './stats.js';

export interface RedisBusOptions {
  /** redis://[user:password@]host:port[/db] or rediss:// for TLS. Default redis://127.0.0.1:6379. */
  url?: string;
  /** Channel of topic T is channelPrefix + T. Default 'murmur:bus:'; use one per cluster when clusters share a Redis. */
  channelPrefix?: string;
  /** Sharded pub/sub: 'auto' (default: if the server supports it), true (required) or false (classic). */
  sharded?: 'auto' | boolean;
  /** Publish bytes in flight to Redis before publishes are dropped. */
  maxPendingBytes?: number;
  /** Largest payload published; larger ones stay local and are counted. */
  maxPublishBytes?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Time to connect, at start and on each reconnect attempt. */
  connectTimeoutMs?: number;
  /** How long connect() waits for Redis before it gives up. Default 10 s. */
  startTimeoutMs?: number;
  /** More options for node-redis's createClient (password, tls, ...); url, socket.reconnectStrategy and disableOfflineQueue are set here. */
  clientOptions?: Record<string, unknown>;
  /** Where log lines go. Default: stderr. */
  log?: (line: string) => void;
  /** Bounds of the ordering of history topics (REDIS_DEFAULTS says why each default). */
  limits?: Partial<RedisOrderLimits>;
}

/** The tunables of the ordering of history topics through Redis. */
export interface RedisOrderLimits {
  historyTtlMs: number;
  maxScriptRecords: number;
  fillTimeoutMs: number;
  maxFillMessages: number;
  maxFillBytes: number;
  maxReorderBytes: number;
  maxReorderTotalBytes: number;
  maxFillingTopics: number;
  maxPendingExcepts: number;
  orderTimeoutMs: number;
}

export interface RedisStats extends BusStats {
  /** Gauge: channels subscribed now. */
  channels: number;
  subscribes: number;
  unsubscribes: number;
  /** Our own messages that Redis brought back (one per publish): ignored, or applied in their order for history topics. */
  echoes: number;
  /** Publishes not sent: payload over maxPublishBytes. */
  oversized: number;
  /** Publishes Redis or the client refused (counted in dropped too). */
  publishErrors: number;
  /** Errors the Redis client reported (connection refused, reset...). */
  errors: number;
  /** Messages to history topics ordered by Redis (script calls that answered). */
  ordered: number;
  /** Ordered messages applied past offsets that could not be filled (subscribers told to resync). */
  orderGaps: number;
  /** Ordered messages that started another epoch over a history that held messages (Redis lost the topic's keys). */
  epochChanges: number;
  /** Gaps in the ordered stream read from Redis. */
  fills: number;
  /** Of those, the gaps that could not be filled (trimmed or gone in Redis, over a bound, too slow): applied with the skip. */
  fillsFailed: number;
  /** Recoveries that read the missed messages from Redis first. */
  catchUps: number;
  /** Gauge: frame bytes held past gaps, all topics. */
  reorderBytes: number;
}

/** Thrown by RedisBus.connect when the client package is missing or Redis cannot be reached. */
export class RedisBusError extends Error {
  readonly code = 'BUS_ERR_REDIS';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RedisBusError';
  }
}

/** What this file uses of a node-redis client (structural: no type dependency on the package). */
type Listener = (message: Buffer, channel: Buffer) => void;
interface RedisClient {
  readonly isReady: boolean;
  withTypeMapping(mapping: Record<string, unknown>): RedisClient;
  on(event: string, fn: (...args: never[]) => void): unknown;
  off(event: string, fn: (...args: never[]) => void): unknown;
  connect(): Promise<unknown>;
  duplicate(): RedisClient;
  sendCommand(args: Array<string | Buffer>): Promise<unknown>;
  publish(channel: string, message: Buffer): Promise<unknown>;
  sPublish(channel: string, message: Buffer): Promise<unknown>;
  subscribe(channel: string, listener: Listener, bufferMode: true): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  sSubscribe(channel: string, listener: Listener, bufferMode: true): Promise<void>;
  sUnsubscribe(channel: string): Promise<void>;
  close(): Promise<void>;
  destroy(): void;
}
interface Batch {
  records: Buffer[];
  bytes: number;
  messages: number;
}
interface RedisModule {
  createClient(options: Record<string, unknown>): RedisClient;
  RESP_TYPES: { BLOB_STRING: number };
}
/** A tick's publishes to one history topic: one script call. */
interface OrderedBatch {
  records: Buffer[];
  bytes: number;
  /** Numbers the batch among this process's (record k is seq * EXCEPT_SLOTS + k for the publisher's `except`). */
  seq: number;
  /** Who is told of record k's position once the script stored it (null until a publish asks). */
  dones: Array<OrderedDone | null> | null;
}
/** Records of one batch, at most (maxScriptRecords is clamped to it). */
const EXCEPT_SLOTS = 1024;
const ORDER_SHA = createHash('sha1').update(ORDER_SCRIPT).digest('hex');
const READ_SHA = createHash('sha1').update(READ_SCRIPT).digest('hex');
const LINE_SHA = createHash('sha1').update(LINE_SCRIPT).digest('hex');

const VERSION = 1;
const FLAG_BINARY = 1;
const ID_BYTES = 8;
const HEADER = 2 + ID_BYTES;
const RECORD_HEADER = 5;
/** A tick's publishes to one topic are sent as one Redis message up to this size. */
const MAX_BATCH_BYTES = 64 * 1024;
const SUBSCRIBING = 1;
const SUBSCRIBED = 2;
const UNSUBSCRIBING = 3;

/**
 * ```ts
 * declare const server: import('murmur-ws').Server;
 * const bus = await RedisBus.connect({ url: 'redis://10.0.0.5:6379' });
 * server.useBus(bus);
 * // ... on shutdown
 * await bus.close();
 * ```
 */
export class RedisBus implements Bus {
  readonly stats: RedisStats;
  /** Random per process: tags our messages so we can recognise them coming back. */
  readonly instanceId: Buffer;
  readonly prefix: string;
  readonly sharded: boolean;
  readonly #pub: RedisClient;
  readonly #sub: RedisClient;
  readonly #log: LogLimiter;
  readonly #maxPending: number;
  readonly #maxPublish: number;
  #receiver: ((topic: string, data: Buffer, isBinary: boolean) => void) | null = null;
  #interest: BusInterest | null = null;
  /** Topics with local subscribers (what we want subscribed). */
  readonly #desired = new Set<string>();
  /** What Redis has: SUBSCRIBING, SUBSCRIBED or UNSUBSCRIBING per channel's topic. */
  readonly #state = new Map<string, number>();
  readonly #changed = new Set<string>();
  #changeScheduled = false;
  #retry: NodeJS.Timeout | null = null;
  /** Bytes and message count of each PUBLISH in flight, in order (Redis answers in order). */
  readonly #inflight: number[] = [];
  #pendingBytes = 0;
  /** This tick's publishes, per topic. */
  readonly #batches = new Map<string, Batch>();
  #batchedBytes = 0;
  #batchScheduled = false;
  #closed = false;
  #closing: Promise<void> | null = null;
  /** The publishing connection, answering bulk strings as Buffers (records are bytes). */
  readonly #bin: RedisClient;
  readonly #limits: RedisOrderLimits;
  #host: OrderingHost | null = null;
  /** This tick's publishes to history topics, per topic. */
  readonly #orderedBatches = new Map<string, OrderedBatch>();
  #nextSeq = 0;
  /** The `except` of our publishes to history topics not back from Redis yet, by seq * EXCEPT_SLOTS + index. */
  readonly #excepts = new Map<number, object>();
  readonly #fills: FillBook;
  /** Topics with a read from Redis in flight (one at a time per topic). */
  readonly #reading = new Map<string, Promise<boolean>>();
  /** Catch-ups running, by topic: the position each reads from (null: the line's head) and its outcome. */
  readonly #catchUps = new Map<string, { since: StreamPosition | null; done: Promise<boolean> }>();
  #fillTimer: NodeJS.Timeout | null = null;
  /** Scripts Redis answered on the publishing connection since it (re)connected: sent by hash. */
  readonly #cachedScripts = new Set<string>();
  readonly #onPublished = (): void => {
    this.#pendingBytes -= this.#inflight.shift() ?? 0;
    this.#inflight.shift();
  };
  readonly #onPublishFailed = (err: unknown): void => {
    const bytes = this.#inflight.shift() ?? 0;
    const messages = this.#inflight.shift() ?? 0;
    this.#pendingBytes -= bytes;
    this.stats.publishErrors++;
    this.stats.dropped += messages;
    this.stats.droppedBytes += bytes;
    if (!this.#closed) this.#log.line('publish', `[murmur] bus: redis publish failed: ${(err as Error)?.message ?? String(err)}`);
  };

  private constructor(pub: RedisClient, sub: RedisClient, bin: RedisClient, sharded: boolean, options: RedisBusOptions, log: LogLimiter) {
    this.#pub = pub;
    this.#bin = bin;
    const l = { ...REDIS_DEFAULTS, ...options.limits };
    this.#limits = { ...l, maxScriptRecords: Math.max(1, Math.min(EXCEPT_SLOTS, l.maxScriptRecords)) };
    this.#fills = new FillBook(l.maxReorderBytes, l.maxReorderTotalBytes, l.maxFillingTopics);
    this.#sub = sub;
    this.sharded = sharded;
    this.#log = log;
    this.prefix = options.channelPrefix ?? REDIS_DEFAULTS.channelPrefix;
    this.#maxPending = options.maxPendingBytes ?? REDIS_DEFAULTS.maxPendingBytes;
    this.#maxPublish = options.maxPublishBytes ?? REDIS_DEFAULTS.maxPublishBytes;
    this.instanceId = randomBytes(ID_BYTES);
    this.stats = { ...newBusStats(), channels: 0, subscribes: 0, unsubscribes: 0, echoes: 0, oversized: 0, publishErrors: 0, errors: 0, ordered: 0, orderGaps: 0, epochChanges: 0, fills: 0, fillsFailed: 0, catchUps: 0, reorderBytes: 0 };
    this.stats.linksUp = 2;
    this.#watch(pub, 'publisher');
    this.#watch(sub, 'subscriber');
  }

  /**
   * Loads the `redis` package, connects both connections and finds out whether the server
   * has sharded pub/sub.
   * @throws RedisBusError when the package is not installed, or Redis does not answer within startTimeoutMs.
   */
  static async connect(options: RedisBusOptions = {}): Promise<RedisBus> {
    const log = new LogLimiter(options.log ?? defaultLog);
    let mod: RedisModule;
    // A variable specifier: the core must build and run without the package installed.
    const name = 'redis';
    try {
      mod = (await import(name)) as RedisModule;
    } catch (err) {
      throw new RedisBusError('the redis bus needs the npm package "redis" (node-redis 5 or 6): npm install redis', { cause: err });
    }
    const url = options.url ?? 'redis://127.0.0.1:6379';
    const min = options.reconnectMinMs ?? REDIS_DEFAULTS.reconnectMinMs;
    const max = options.reconnectMaxMs ?? REDIS_DEFAULTS.reconnectMaxMs;
    const extra = options.clientOptions ?? {};
    const pub = mod.createClient({
      ...extra,
      url,
      // Nothing queues while Redis is away: publishes are dropped and counted instead.
      disableOfflineQueue: true,
      socket: {
        ...((extra.socket as Record<string, unknown> | undefined) ?? {}),
        connectTimeout: options.connectTimeoutMs ?? REDIS_DEFAULTS.connectTimeoutMs,
        reconnectStrategy: (retries: number) => {
          const base = Math.min(max, min * 2 ** Math.min(retries, 20));
          return Math.round(base / 2 + Math.random() * (base / 2));
        },
      },
    });
    const sub = pub.duplicate();
    // Errors are reported through the instance once it exists; until then they only count as
    // a failed start. node-redis emits 'error' on every failed attempt: a listener is required.
    const early: unknown[] = [];
    const onEarly = (err: never): void => void early.push(err);
    pub.on('error', onEarly);
    sub.on('error', onEarly);
    const timeoutMs = options.startTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const sharded = await Promise.race([
        (async () => {
          await Promise.all([pub.connect(), sub.connect()]);
          return RedisBus.#detectSharded(pub, options);
        })(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new RedisBusError(`redis at ${redactUrl(url)} did not answer within ${timeoutMs} ms${early.length > 0 ? `: ${String((early[early.length - 1] as Error)?.message ?? early[early.length - 1])}` : ''}`)), timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      const bus = new RedisBus(pub, sub, pub.withTypeMapping({ [mod.RESP_TYPES.BLOB_STRING]: Buffer }), sharded, options, log);
      pub.off('error', onEarly);
      sub.off('error', onEarly);
      log.always('start', `[murmur] bus: redis at ${redactUrl(url)}, ${sharded ? 'sharded pub/sub (SPUBLISH/SSUBSCRIBE)' : 'classic pub/sub (PUBLISH/SUBSCRIBE)'}`);
      return bus;
    } catch (err) {
      clearTimeout(timer);
      pub.destroy();
      sub.destroy();
      throw err instanceof RedisBusError ? err : new RedisBusError(`cannot use redis at ${redactUrl(url)}: ${(err as Error).message}`, { cause: err });
    }
  }

  static async #detectSharded(pub: RedisClient, options: RedisBusOptions): Promise<boolean> {
    const want = options.sharded ?? 'auto';
    if (want === false) return false;
    try {
      // The capability itself: publishing to a channel nobody listens on costs nothing.
      await pub.sendCommand(['SPUBLISH', `${options.channelPrefix ?? REDIS_DEFAULTS.channelPrefix}$probe`, '']);
      return true;
    } catch (err) {
      if (want === true) throw new RedisBusError(`sharded pub/sub was required but the server refused SPUBLISH: ${(err as Error).message}`, { cause: err });
      return false;
    }
  }

  #watch(client: RedisClient, role: string): void {
    let down = false;
    client.on('error', ((err: Error) => {
      this.stats.errors++;
      if (/NOAUTH|WRONGPASS|NOPERM/.test(err?.message ?? '')) this.stats.authFailures++;
      if (!this.#closed) this.#log.line(`error:${role}`, `[murmur] bus: redis ${role}: ${err?.message ?? String(err)}`);
    }) as (...args: never[]) => void);
    client.on('reconnecting', () => {
      if (this.#closed || down) return;
      down = true;
      this.stats.linksUp--;
      this.#log.always(`down:${role}`, `[murmur] bus: redis ${role} connection lost; reconnecting`);
    });
    client.on('end', () => {
      if (down) return;
      down = true;
      this.stats.linksUp--;
    });
    client.on('ready', () => {
      if (!down || this.#closed) return;
      down = false;
      this.stats.linksUp++;
      this.stats.reconnects++;
      this.#log.always(`up:${role}`, `[murmur] bus: redis ${role} reconnected`);
      // Perhaps another Redis, or one restarted: its script cache is empty.
      if (client === this.#pub) this.#cachedScripts.clear();
      // node-redis subscribes again to what it had; anything that changed or failed meanwhile is settled here.
      if (client === this.#sub) {
        this.#reconcileAll();
        // Ordered messages published while the connection was down are read from Redis.
        if (this.#host !== null) for (const [t, s] of this.#state) if (s === SUBSCRIBED && this.#host.ordered(t)) void this.#read(t);
      }
    });
  }

  // ---- Bus ------------------------------------------------------------------------------

  publish(topic: string, data: Buffer, isBinary: boolean): void {
    if (this.#closed) return;
    const size = RECORD_HEADER + data.length;
    if (!this.#admit(data.length, size)) return;
    const rec = Buffer.allocUnsafe(size);
    rec[0] = isBinary ? FLAG_BINARY : 0;
    rec.writeUInt32BE(data.length, 1);
    data.copy(rec, RECORD_HEADER);
    let batch = this.#batches.get(topic);
    if (batch !== undefined && batch.bytes + size > MAX_BATCH_BYTES) {
      this.#send(topic, batch);
      batch = undefined;
    }
    if (batch === undefined) {
      batch = { records: [], bytes: 0, messages: 0 };
      this.#batches.set(topic, batch);
      this.#scheduleBatches();
    }
    batch.records.push(rec);
    batch.bytes += size;
    batch.messages++;
    this.#batchedBytes += size;
  }

  readonly #flushBatches = (): void => {
    this.#batchScheduled = false;
    for (const [topic, batch] of this.#batches) this.#send(topic, batch);
    this.#batches.clear();
    for (const [topic, batch] of this.#orderedBatches) this.#sendOrdered(topic, batch);
    this.#orderedBatches.clear();
  };

  #scheduleBatches(): void {
    if (this.#batchScheduled) return;
    this.#batchScheduled = true;
    process.nextTick(this.#flushBatches);
  }

  /** Whether a publish of `size` bytes may go to Redis now; counts it as dropped or oversized when not. */
  #admit(payloadBytes: number, size: number): boolean {
    if (payloadBytes > this.#maxPublish) {
      this.stats.oversized++;
      return false;
    }
    if (!this.#pub.isReady || this.#pendingBytes + this.#batchedBytes + size > this.#maxPending) {
      this.stats.dropped++;
      this.stats.droppedBytes += size;
      return false;
    }
    return true;
  }

  /** One PUBLISH for a tick's messages to one topic. */
  #send(topic: string, batch: Batch): void {
    this.#batchedBytes -= batch.bytes;
    if (batch.messages === 0) return;
    const head = Buffer.allocUnsafe(HEADER);
    head[0] = VERSION;
    head[1] = ID_BYTES;
    this.instanceId.copy(head, 2);
    const msg = Buffer.concat([head, ...batch.records], HEADER + batch.bytes);
    batch.records = [];
    batch.bytes = 0;
    const messages = batch.messages;
    batch.messages = 0;
    if (!this.#pub.isReady) {
      this.stats.dropped += messages;
      this.stats.droppedBytes += msg.length;
      return;
    }
    this.#pendingBytes += msg.length;
    this.#inflight.push(msg.length, messages);
    this.stats.messagesSent += messages;
    this.stats.bytesSent += msg.length;
    const channel = this.prefix + topic;
    (this.sharded ? this.#pub.sPublish(channel, msg) : this.#pub.publish(channel, msg)).then(this.#onPublished, this.#onPublishFailed);
  }

  // ---- ordering of history topics (docs/cluster.md, "With the Redis bus") ------------------

  attachOrdering(host: OrderingHost): void {
    this.#host = host;
  }

  /**
   * A publish made here to a history topic: with the tick's others to the topic, one script
   * call orders, keeps and publishes them in Redis. It reaches this node's subscribers when it
   * comes back on the topic's channel, at its position, like every other node's.
   */
  publishOrdered(topic: string, record: Buffer, except: object | null, done?: OrderedDone): void {
    if (this.#closed || this.#host === null) return done?.(null, 'unavailable');
    if (!this.#admit(record.length, record.length)) return done?.(null, this.#pub.isReady ? 'busy' : 'unavailable');
    let batch = this.#orderedBatches.get(topic);
    if (batch !== undefined && (batch.records.length >= this.#limits.maxScriptRecords || batch.bytes + record.length > MAX_BATCH_BYTES)) {
      this.#sendOrdered(topic, batch);
      batch = undefined;
    }
    if (batch === undefined) {
      this.#nextSeq = (this.#nextSeq + 1) >>> 0;
      batch = { records: [], bytes: 0, seq: this.#nextSeq, dones: null };
      this.#orderedBatches.set(topic, batch);
      this.#scheduleBatches();
    }
    if (except !== null) {
      this.#excepts.set(batch.seq * EXCEPT_SLOTS + batch.records.length, except);
      if (this.#excepts.size > this.#limits.maxPendingExcepts) this.#excepts.delete(this.#excepts.keys().next().value!);
    }
    if (done !== undefined) {
      batch.dones ??= [];
      while (batch.dones.length < batch.records.length) batch.dones.push(null);
      batch.dones.push(done);
    }
    batch.records.push(record);
    batch.bytes += record.length;
    this.#batchedBytes += record.length;
  }

  /** One script call for a tick's messages to one history topic. */
  #sendOrdered(topic: string, batch: OrderedBatch): void {
    const { records, bytes, seq, dones } = batch;
    batch.records = [];
    batch.bytes = 0;
    batch.dones = null;
    this.#batchedBytes -= bytes;
    const history = this.#host?.historyLimits(topic) ?? null;
    if (records.length === 0) return;
    // Each publisher is told once: by the answer, or by orderTimeoutMs when Redis stalls.
    let waiting = dones;
    const tell = (k: number, position: StreamPosition | null, failure: OrderedFailure | null): void => waiting?.[k]?.(position, failure);
    const failed = (): void => {
      if (waiting !== null) for (let k = 0; k < waiting.length; k++) tell(k, null, 'unavailable');
      waiting = null;
    };
    if (history === null || !this.#pub.isReady) {
      failed();
      this.#forgetExcepts(seq, records.length);
      this.stats.dropped += records.length;
      this.stats.droppedBytes += bytes;
      return;
    }
    const timer = dones === null ? null : setTimeout(failed, this.#limits.orderTimeoutMs);
    timer?.unref();
    this.#pendingBytes += bytes;
    this.stats.messagesSent += records.length;
    this.stats.bytesSent += bytes;
    const [meta, list] = historyKeys(this.prefix, topic);
    const cap = (n: number): string => String(Number.isFinite(n) ? Math.max(0, Math.floor(n)) : Number.MAX_SAFE_INTEGER);
    const args: Array<string | Buffer> = [meta, list, this.prefix + topic, randomBytes(8).toString('hex'), orderedHead(this.instanceId, seq)];
    args.push(cap(history.maxMessages), cap(history.maxBytes), String(this.#limits.historyTtlMs), String(Date.now()), cap(history.maxAgeMs), this.sharded ? '1' : '0', ...records);
    this.#script(ORDER_SHA, ORDER_SCRIPT, args).then(
      (reply) => {
        this.#pendingBytes -= bytes;
        if (timer !== null) clearTimeout(timer);
        const at = parseOrderReply(reply);
        if (at === null) {
          this.#malformed(topic);
          failed();
        } else {
          this.stats.ordered += records.length;
          // Stored in Redis's list: Redis holds it, and every node that hears the topic will.
          if (waiting !== null) for (let k = 0; k < waiting.length; k++) tell(k, { epoch: at.epoch, offset: at.first + k }, null);
          waiting = null;
        }
        // Not listening on the channel: the messages do not come back here.
        if (this.#state.get(topic) !== SUBSCRIBED) this.#forgetExcepts(seq, records.length);
      },
      (err: unknown) => {
        this.#pendingBytes -= bytes;
        if (timer !== null) clearTimeout(timer);
        failed();
        this.#forgetExcepts(seq, records.length);
        this.stats.publishErrors++;
        this.stats.dropped += records.length;
        this.stats.droppedBytes += bytes;
        if (!this.#closed) this.#log.line('order', `[murmur] bus: redis ordered publish failed: ${(err as Error)?.message ?? String(err)}`);
      },
    );
  }

  #forgetExcepts(seq: number, n: number): void {
    if (this.#excepts.size === 0) return;
    for (let k = 0; k < n; k++) this.#excepts.delete(seq * EXCEPT_SLOTS + k);
  }

  /**
   * Runs a script: by its text until Redis answered one call of it on this connection (then it
   * has it cached), by its hash after. Falling back to the text only on a NOSCRIPT answer would
   * let later calls sent by hash overtake the ones sent again: script calls are executed in
   * the order they are sent, which is what orders one node's publishes.
   */
  async #script(sha: string, text: string, args: Array<string | Buffer>): Promise<unknown> {
    if (!this.#cachedScripts.has(sha)) {
      const reply = await this.#bin.sendCommand(['EVAL', text, '2', ...args]);
      this.#cachedScripts.add(sha);
      return reply;
    }
    try {
      return await this.#bin.sendCommand(['EVALSHA', sha, '2', ...args]);
    } catch (err) {
      // Flushed by hand (SCRIPT FLUSH) while connected: sent again by text.
      if (!/NOSCRIPT/.test((err as Error)?.message ?? '')) throw err;
      this.#cachedScripts.delete(sha);
      return this.#script(sha, text, args);
    }
  }

  /** Reads the kept messages of `topic` from offset `from` (bounded by maxFillMessages and maxFillBytes). */
  async #readHistory(topic: string, from: number): Promise<ReadReply | null | 'malformed'> {
    const l = this.#limits;
    const maxAge = this.#host?.historyLimits(topic)?.maxAgeMs ?? 0;
    const [meta, list] = historyKeys(this.prefix, topic);
    const reply = await this.#script(READ_SHA, READ_SCRIPT, [meta, list, String(from), String(l.maxFillMessages), String(l.maxFillBytes), String(Date.now()), String(Number.isFinite(maxAge) ? maxAge : 0)]);
    return parseReadReply(reply, from, l.maxFillMessages);
  }

  /** An ordered message on a topic's channel: each of its records, in offset order. */
  #onOrderedMessage(topic: string, msg: Buffer): void {
    const host = this.#host;
    if (host === null || !host.ordered(topic)) return;
    const m = parseOrdered(msg, EXCEPT_SLOTS);
    if (m === null) {
      this.#malformed(topic);
      return;
    }
    const ours = this.instanceId.equals(m.instance);
    if (ours) this.stats.echoes += m.records.length;
    else {
      this.stats.bytesReceived += msg.length;
      this.stats.messagesReceived += m.records.length;
    }
    for (let k = 0; k < m.records.length; k++) {
      let except: object | null = null;
      if (ours && this.#excepts.size > 0) {
        const key = m.seq * EXCEPT_SLOTS + k;
        except = this.#excepts.get(key) ?? null;
        this.#excepts.delete(key);
      }
      this.#receiveOrdered(topic, m.epoch, m.first + k, m.records[k]!, except, ours);
    }
  }

  /**
   * An ordered message: applied at once when it is the next offset here (or a duplicate,
   * another epoch, or the first of a history); held when offsets before it are missing, while
   * they are read from Redis.
   */
  #receiveOrdered(topic: string, epoch: string, offset: number, record: Buffer, except: object | null, local: boolean): void {
    const host = this.#host!;
    const frame = host.frame(topic, { epoch, offset }, record);
    if (frame === null) {
      this.#malformed(topic); // a hole: the next message shows the gap
      return;
    }
    const here = host.position(topic);
    let fill = this.#fills.topics.get(topic);
    if (fill === undefined) {
      // A history of this epoch at offset 0 holds the line before its first message (catchUp): what it misses is read too.
      if (here === null || here.epoch !== epoch || offset <= here.offset + 1) return this.#apply(topic, epoch, offset, frame, except, local);
      const opened = this.#fills.open(topic, epoch, Date.now());
      if (opened === null) return this.#apply(topic, epoch, offset, frame, except, local); // too many gaps at once: the skip
      fill = opened;
      this.stats.fills++;
      this.#startFillTimer();
    } else if (here === null || epoch !== fill.epoch) {
      this.#giveUpFill(topic);
      return this.#apply(topic, epoch, offset, frame, except, local);
    }
    if (offset > here!.offset + 1) {
      if (this.#fills.hold(fill, { offset, origin: '', seq: 0, frame }) === 'full') {
        this.#giveUpFill(topic);
        return this.#apply(topic, epoch, offset, frame, except, local);
      }
    } else this.#apply(topic, epoch, offset, frame, except, local);
    this.#drainFill(topic, fill);
  }

  #apply(topic: string, epoch: string, offset: number, frame: Buffer, except: object | null, local: boolean): void {
    const r = this.#host!.apply(topic, { epoch, offset }, frame, except, local);
    if (r === 'gap') this.stats.orderGaps++;
    else if (r === 'epoch') this.stats.epochChanges++;
  }

  /** Applies what the fill holds from the next offset on; reads the rest, or ends the fill when nothing is held. */
  #drainFill(topic: string, fill: TopicFill): void {
    const here = this.#fills.drain(topic, fill, () => this.#host!.position(topic), (m) => this.#apply(topic, fill.epoch, m.offset, m.frame, null, false));
    if (here === null) return this.#giveUpFill(topic);
    if (fill.held.length > 0) void this.#read(topic);
    this.stats.reorderBytes = this.#fills.bytes;
  }

  /** The gap cannot be filled: what was held is applied, with the skip (the history restarts; subscribers are told). */
  #giveUpFill(topic: string): void {
    const fill = this.#fills.topics.get(topic);
    if (fill === undefined) return;
    this.stats.fillsFailed++;
    for (const m of this.#fills.close(topic)) this.#apply(topic, fill.epoch, m.offset, m.frame, null, false);
    this.stats.reorderBytes = this.#fills.bytes;
  }

  /**
   * Reads from Redis what follows this node's history of `topic` and applies it in order: the
   * missing offsets of a gap, or what was published while the channel was not heard (a
   * subscription that just started, a reconnect). One read per topic at a time. Resolves with
   * whether Redis answered (never rejects).
   */
  #read(topic: string): Promise<boolean> {
    const running = this.#reading.get(topic);
    if (running !== undefined) return running;
    const here = this.#host?.position(topic) ?? null;
    if (this.#closed || here === null || !this.#bin.isReady) return Promise.resolve(false);
    const read = this.#readHistory(topic, here.offset + 1).then(
      (reply) => {
        this.#reading.delete(topic);
        return this.#onRead(topic, reply) ?? true;
      },
      (err: unknown) => {
        this.#reading.delete(topic); // read again by the fill timer while the gap lasts
        if (!this.#closed) this.#log.line('read', `[murmur] bus: redis history read failed: ${(err as Error)?.message ?? String(err)}`);
        return false;
      },
    );
    this.#reading.set(topic, read);
    return read;
  }

  #onRead(topic: string, reply: ReadReply | null | 'malformed'): Promise<boolean> | undefined {
    const host = this.#host;
    if (this.#closed || host === null) return;
    if (reply === 'malformed') this.#malformed(topic);
    let progress = false;
    if (reply !== null && reply !== 'malformed') {
      for (let k = 0; k < reply.records.length; k++) {
        const offset = reply.first + k;
        const here = host.position(topic);
        if (here === null || here.epoch !== reply.epoch) break; // another epoch: the live stream tells
        if (offset <= here.offset) continue;
        // Offsets before it are gone from Redis too (trimmed): applied with the skip, which subscribers are told.
        const frame = host.frame(topic, { epoch: reply.epoch, offset }, reply.records[k]!);
        if (frame === null) {
          this.#malformed(topic);
          break;
        }
        this.#apply(topic, reply.epoch, offset, frame, null, false);
        progress = true;
      }
    }
    const fill = this.#fills.topics.get(topic);
    if (fill !== undefined) {
      if (progress) this.#drainFill(topic, fill);
      else this.#giveUpFill(topic); // Redis has nothing more to give
    } else if (progress && reply !== null && reply !== 'malformed' && reply.first + reply.records.length - 1 < reply.last) return this.#read(topic);
    return undefined;
  }

  #startFillTimer(): void {
    if (this.#fillTimer !== null || this.#closed) return;
    this.#fillTimer = setInterval(() => this.#fillTick(), Math.max(10, this.#limits.fillTimeoutMs / 4));
    this.#fillTimer.unref();
  }

  /** Gives up fills that waited fillTimeoutMs; reads again for a gap whose read failed. */
  #fillTick(): void {
    const now = Date.now();
    for (const topic of this.#fills.expired(now, this.#limits.fillTimeoutMs)) this.#giveUpFill(topic);
    for (const topic of this.#fills.topics.keys()) void this.#read(topic);
    if (this.#fills.topics.size === 0 && this.#fillTimer !== null) {
      clearInterval(this.#fillTimer);
      this.#fillTimer = null;
    }
  }

  /**
   * Reads the messages after `since` from Redis into the history here, when this node's history
   * does not hold them (it never heard the topic, or not back that far); with `since` null, the
   * topic's line (its epoch, made now when Redis has none, and its last message) when the
   * history here holds none yet. Whatever Redis answers, a history here that holds nothing of
   * the line takes it, so a failed recovery is told with the cluster's position, never one of
   * this node's own. One read per topic at a time, at most maxFillMessages/maxFillBytes, given
   * up after fillTimeoutMs. Resolves false when Redis could not be asked in time; never rejects.
   */
  catchUp(topic: string, since: StreamPosition | null): Promise<boolean> | null {
    const host = this.#host;
    if (host === null || !host.ordered(topic)) return null;
    const from = since === null || since.epoch === '' || !Number.isSafeInteger(since.offset) || since.offset < 0 ? null : since;
    // A history with a message of the line holds the line (a stale one is brought up to date when its channel is heard).
    if (from === null && (host.known(topic)?.offset ?? 0) > 0) return null;
    if (this.#closed) return Promise.resolve(false);
    const running = this.#catchUps.get(topic);
    if (running !== undefined) {
      // Any catch-up leaves the line here; one from a newer position, or of another epoch, does not bring this one's messages: this one runs after it.
      const covered = from === null || (running.since !== null && running.since.epoch === from.epoch && running.since.offset <= from.offset);
      return covered ? running.done : running.done.then(() => this.catchUp(topic, from) ?? true);
    }
    if (this.#catchUps.size >= this.#limits.maxFillingTopics || !this.#bin.isReady) return Promise.resolve(false);
    this.stats.catchUps++;
    let timer: NodeJS.Timeout | undefined;
    const done = Promise.race([
      this.#fetchCatchUp(topic, from).catch((err: unknown) => {
        if (!this.#closed) this.#log.line('read', `[murmur] bus: redis history read failed: ${(err as Error)?.message ?? String(err)}`);
        return false;
      }),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), this.#limits.fillTimeoutMs);
        timer.unref();
      }),
    ]).then((ok) => {
      clearTimeout(timer);
      this.#catchUps.delete(topic);
      return ok;
    });
    this.#catchUps.set(topic, { since: from, done });
    return done;
  }

  async #fetchCatchUp(topic: string, since: StreamPosition | null): Promise<boolean> {
    const host = this.#host!;
    const before = host.position(topic);
    if (before === null) return true; // no history can be kept here: nothing to hold
    // Behind the position asked for, in its epoch (also a line held at 0, before its first message):
    // what is missing is applied in order (its subscribers missed it too), never put in front silently.
    if (since !== null && before.epoch === since.epoch && before.offset < since.offset) return this.#read(topic);
    let from = since?.offset ?? 0;
    if (since === null) {
      const line = await this.#line(topic);
      if (line === null) return false;
      // A history of the line held at 0 (made before the first message): brought up to it in order.
      const here = host.known(topic);
      if (here !== null && here.epoch === line.epoch) return here.offset < line.last ? this.#read(topic) : true;
      from = line.last;
    }
    // From the client's last message on (as the mesh's catch-up): a node that holds nothing of the
    // topic then holds the client's position even when nothing came after it (a quiet topic), and
    // the recovery succeeds with nothing to replay instead of finding another epoch here.
    let reply = await this.#readHistory(topic, Math.max(1, from));
    if (reply === null) {
      // Redis holds no line of the topic (its keys expired or were lost): one is made, and held here.
      const line = await this.#line(topic);
      if (line === null) return false;
      reply = { epoch: line.epoch, last: line.last, first: line.last + 1, records: [] };
    }
    if (this.#closed) return false;
    if (reply === 'malformed') {
      this.#malformed(topic);
      return false;
    }
    const frames: Buffer[] = [];
    for (let k = 0; k < reply.records.length; k++) {
      const frame = host.frame(topic, { epoch: reply.epoch, offset: reply.first + k }, reply.records[k]!);
      if (frame === null) {
        this.#malformed(topic);
        return false;
      }
      frames.push(frame);
    }
    // What follows `since` in its line: older messages go in front of the history here; a history that holds none takes them all.
    if (since !== null && reply.epoch === since.epoch && reply.first <= since.offset + 1) {
      // A history of another epoch that nothing here hears (left by an earlier catch-up whose client went) is stale: it gives way.
      if (!host.backfill(topic, reply.epoch, reply.first, frames) && host.known(topic)?.epoch !== reply.epoch && this.#state.get(topic) === undefined) {
        host.drop(topic);
        host.backfill(topic, reply.epoch, reply.first, frames);
      }
    } else if (host.known(topic)?.epoch !== reply.epoch) {
      // Another epoch, trimmed past `since`, or the head of the line: taken by a history that holds
      // nothing of it, up to the line's last message (its head alone when the read stopped short).
      // One that holds the line already gets what follows from the live stream and its reads.
      const whole = reply.first + frames.length - 1 === reply.last;
      host.backfill(topic, reply.epoch, whole ? reply.first : reply.last + 1, whole ? frames : []);
    }
    return true;
  }

  /** The topic's epoch (made now when Redis has none) and last offset; null when the reply is malformed. */
  async #line(topic: string): Promise<{ epoch: string; last: number } | null> {
    const [meta, list] = historyKeys(this.prefix, topic);
    const line = parseLineReply(await this.#script(LINE_SHA, LINE_SCRIPT, [meta, list, randomBytes(8).toString('hex'), String(this.#limits.historyTtlMs)]));
    if (line === null) this.#malformed(topic);
    return line;
  }

  onMessage(receiver: (topic: string, data: Buffer, isBinary: boolean) => void): void {
    this.#receiver = receiver;
  }

  watchInterest(interest: BusInterest): void {
    this.#interest = interest;
    for (const t of this.#desired) this.#changed.add(t);
    for (const t of interest.topics()) this.#changed.add(t);
    this.#scheduleChanges();
  }

  interestChanged(topic: string, _interested: boolean): void {
    this.#changed.add(topic);
    this.#scheduleChanges();
  }

  /** Unsubscribes and closes both connections (at most a couple of seconds). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      if (this.#retry !== null) clearTimeout(this.#retry);
      this.#retry = null;
      if (this.#fillTimer !== null) clearInterval(this.#fillTimer);
      this.#fillTimer = null;
      const quit = async (c: RedisClient): Promise<void> => {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([c.close().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, 2_000)))]);
        clearTimeout(timer);
        c.destroy();
      };
      await Promise.all([quit(this.#sub), quit(this.#pub)]);
      this.stats.linksUp = 0;
      this.stats.channels = 0;
    })();
    return this.#closing;
  }

  /** Publish bytes batched or sent to Redis and not answered yet (both kinds of topic). */
  get pendingBytes(): number {
    return this.#pendingBytes + this.#batchedBytes;
  }

  /** Topics whose channels are subscribed now. */
  subscribedTopics(): string[] {
    const out: string[] = [];
    for (const [t, s] of this.#state) if (s === SUBSCRIBED) out.push(t);
    return out;
  }

  // ---- subscriptions ----------------------------------------------------------------------

  #scheduleChanges(): void {
    if (this.#changeScheduled) return;
    this.#changeScheduled = true;
    // One tick's changes at once: a topic that came and went in one tick costs no command.
    process.nextTick(() => {
      this.#changeScheduled = false;
      for (const t of this.#changed) {
        if (this.#interest?.has(t) === true) this.#desired.add(t);
        else this.#desired.delete(t);
        this.#reconcile(t);
      }
      this.#changed.clear();
    });
  }

  #reconcileAll(): void {
    for (const t of this.#desired) this.#reconcile(t);
    for (const t of [...this.#state.keys()]) if (!this.#desired.has(t)) this.#reconcile(t);
  }

  /** Brings the channel of `topic` in line with the local interest; one command in flight per channel. */
  #reconcile(topic: string): void {
    const sub = this.#sub;
    if (this.#closed || !sub.isReady) return; // 'ready' reconciles everything
    const want = this.#desired.has(topic);
    const state = this.#state.get(topic);
    if (state === SUBSCRIBING || state === UNSUBSCRIBING) return; // settled when it answers
    const channel = this.prefix + topic;
    if (want && state === undefined) {
      this.#state.set(topic, SUBSCRIBING);
      const listener: Listener = (message) => this.#onRedisMessage(topic, message);
      (this.sharded ? sub.sSubscribe(channel, listener, true) : sub.subscribe(channel, listener, true)).then(
        () => {
          this.#state.set(topic, SUBSCRIBED);
          this.stats.subscribes++;
          this.stats.channels++;
          // What was published before the channel was heard here follows the history's last message.
          if (this.#host?.ordered(topic) === true) void this.#read(topic);
          this.#reconcile(topic);
        },
        (err: unknown) => {
          this.#state.delete(topic);
          this.#failed('subscribe', err);
        },
      );
    } else if (!want && state === SUBSCRIBED) {
      this.#state.set(topic, UNSUBSCRIBING);
      (this.sharded ? sub.sUnsubscribe(channel) : sub.unsubscribe(channel)).then(
        () => {
          this.#state.delete(topic);
          this.stats.unsubscribes++;
          this.stats.channels--;
          // Not heard from now on: a history kept here would go stale (recoveries read Redis instead).
          if (!this.#desired.has(topic) && this.#host?.ordered(topic) === true) {
            this.#giveUpFill(topic);
            this.#host.drop(topic);
          }
          this.#reconcile(topic);
        },
        (err: unknown) => {
          this.#state.set(topic, SUBSCRIBED);
          this.#failed('unsubscribe', err);
        },
      );
    }
  }

  /** A subscription change failed (Redis went away mid-command): try everything again in a second. */
  #failed(what: string, err: unknown): void {
    if (this.#closed) return;
    this.#log.line(what, `[murmur] bus: redis ${what} failed: ${(err as Error)?.message ?? String(err)}`);
    if (this.#retry !== null) return;
    this.#retry = setTimeout(() => {
      this.#retry = null;
      this.#reconcileAll();
    }, 1_000);
    this.#retry.unref();
  }

  #onRedisMessage(topic: string, msg: Buffer): void {
    if (this.#closed) return;
    if (msg[0] === ORDERED_VERSION) return this.#onOrderedMessage(topic, msg);
    if (msg.length < HEADER + RECORD_HEADER || msg[0] !== VERSION || msg[1] !== ID_BYTES) {
      this.#malformed(topic);
      return;
    }
    // Check the whole message first: a malformed one is ignored whole, not half delivered.
    let o = HEADER;
    let count = 0;
    while (o < msg.length) {
      if (msg.length - o < RECORD_HEADER || (msg[o]! & ~FLAG_BINARY) !== 0) break;
      const len = msg.readUInt32BE(o + 1);
      if (msg.length - o - RECORD_HEADER < len) break;
      o += RECORD_HEADER + len;
      count++;
    }
    if (o !== msg.length) {
      this.#malformed(topic);
      return;
    }
    if (this.instanceId.equals(msg.subarray(2, HEADER))) {
      this.stats.echoes += count;
      return;
    }
    this.stats.bytesReceived += msg.length;
    o = HEADER;
    for (let i = 0; i < count; i++) {
      const len = msg.readUInt32BE(o + 1);
      this.stats.messagesReceived++;
      this.#receiver?.(topic, msg.subarray(o + RECORD_HEADER, o + RECORD_HEADER + len), (msg[o]! & FLAG_BINARY) !== 0);
      o += RECORD_HEADER + len;
    }
  }

  #malformed(topic: string): void {
    this.stats.protocolErrors++;
    this.#log.line('malformed', `[murmur] bus: ignored a malformed message on redis channel ${this.prefix}${topic}`);
  }
}

/** The URL without its password, for logs. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable url)';
  }
}
