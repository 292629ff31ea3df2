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
 * Wire format of a Redis message: [version 1][id length u8 = 8][instance id], then one or more
 * records [flags u8: bit 0 = binary][length u32][data]: the publishes of one tick to one topic
 * travel as one Redis message (one PUBLISH instead of one per message), in order.
 */
import { randomBytes } from 'node:crypto';
import type { Bus, BusInterest } from '../../pubsub/bus.js';
import { REDIS_DEFAULTS } from './bus-config.js';
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
}

export interface RedisStats extends BusStats {
  /** Gauge: channels subscribed now. */
  channels: number;
  subscribes: number;
  unsubscribes: number;
  /** Our own messages that Redis brought back, ignored (one per publish). */
  echoes: number;
  /** Publishes not sent: payload over maxPublishBytes. */
  oversized: number;
  /** Publishes Redis or the client refused (counted in dropped too). */
  publishErrors: number;
  /** Errors the Redis client reported (connection refused, reset...). */
  errors: number;
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
}

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

  private constructor(pub: RedisClient, sub: RedisClient, sharded: boolean, options: RedisBusOptions, log: LogLimiter) {
    this.#pub = pub;
    this.#sub = sub;
    this.sharded = sharded;
    this.#log = log;
    this.prefix = options.channelPrefix ?? REDIS_DEFAULTS.channelPrefix;
    this.#maxPending = options.maxPendingBytes ?? REDIS_DEFAULTS.maxPendingBytes;
    this.#maxPublish = options.maxPublishBytes ?? REDIS_DEFAULTS.maxPublishBytes;
    this.instanceId = randomBytes(ID_BYTES);
    this.stats = { ...newBusStats(), channels: 0, subscribes: 0, unsubscribes: 0, echoes: 0, oversized: 0, publishErrors: 0, errors: 0 };
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
      const bus = new RedisBus(pub, sub, sharded, options, log);
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
      // node-redis subscribes again to what it had; anything that changed or failed meanwhile is settled here.
      if (client === this.#sub) this.#reconcileAll();
    });
  }

  // ---- Bus ------------------------------------------------------------------------------

  publish(topic: string, data: Buffer, isBinary: boolean): void {
    if (this.#closed) return;
    if (data.length > this.#maxPublish) {
      this.stats.oversized++;
      return;
    }
    const size = RECORD_HEADER + data.length;
    if (!this.#pub.isReady || this.#pendingBytes + this.#batchedBytes + size > this.#maxPending) {
      this.stats.dropped++;
      this.stats.droppedBytes += size;
      return;
    }
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
      if (!this.#batchScheduled) {
        this.#batchScheduled = true;
        process.nextTick(this.#flushBatches);
      }
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
  };

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
