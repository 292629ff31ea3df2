/**
 * The WebSocket side of `murmur serve`: sessions (who a connection is and what it may do),
 * the command dispatcher of the wire protocol (protocol.ts), presence events, history and
 * recovery, throttling, and the graceful drain. One handlers object for the whole server:
 * nothing is bound per connection; what a connection is lives in `conn.data` (ConnData): one
 * flat Session object, or only a number for an anonymous connection at rest.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Server } from '../server/server.js';
import type { Connection } from '../server/connection.js';
import { HttpReject, getHeader } from '../http/index.js';
import type { UpgradeRequest } from '../http/index.js';
import type { TopicHistory, HistoryOptions, StreamPosition } from '../pubsub/history.js';
import type { AppConfig } from './config.js';
import { matchesAny } from './glob.js';
import { verifyToken, TokenErrorCode } from './token.js';
import type { Permissions } from './token.js';
import type { OnlineResult, PresenceChange, PresenceEntry, PresenceStore } from './presence.js';
import { LocalPresence } from './presence.js';
import { takeToken, countError } from './rate-limit.js';
import type { BucketState, ErrorWindowState } from './rate-limit.js';
import { PermissionScopes } from './scopes.js';
import { ClientErrorLog, stderrLine } from './validate.js';
import {
  AppError,
  AppErrorCode,
  AppCloseCode,
  peekId,
  parseBinaryCommand,
  parseTextCommand,
  replyJson,
  errorJson,
  envelopeHook,
  retryAfterReason,
} from './serve-protocol.js';
import type { Command, ProtocolLimits, RequestId } from './serve-protocol.js';
import type { Bus, OrderedDone, OrderedFailure } from '../pubsub/bus.js';
import type { BusStats } from '../cluster/bus/stats.js';
import type { BusKind } from './cluster.js';

/** Internal topics that carry presence events of topic T are named PRESENCE_PREFIX + T; clients cannot name "$..." topics. */
export const PRESENCE_PREFIX = '$p:';
/** Version of the wire protocol, sent in the welcome. */
export const PROTOCOL_VERSION = 1;
/** How often idle history topics are swept and expired tokens closed. */
const SWEEP_INTERVAL_MS = 15_000;
/** The window of maxNewTopicsPerMinute, in seconds. */
const NEW_TOPICS_WINDOW_S = 60;
/** Topics counted as new within the window, remembered process-wide (the oldest forgotten beyond it): 4,096: ~100 bytes each for a typical room name, ~1.4 MB at most with 256-byte topics. */
const MAX_RECENT_NEW_TOPICS = 4096;

/**
 * What a connection keeps in `conn.data`: its Session, or only its number (`seq`) for an
 * anonymous connection that has not sent anything yet or has come back to rest: everything
 * else about it is the server's (the configured anonymous permissions, no token, a fresh
 * throttle). The number is `seq` while the connection is online and `-seq` before its open and
 * after its close. A small integer in the connection's own slot: an idle anonymous connection
 * costs serve nothing (docs/serve-memory.md has the byte table).
 */
export type ConnData = Session | number;

/**
 * Who a connection is and what it may do: one flat object of five slots (64 bytes), made at the
 * upgrade for a token user and at the first command or ping for an anonymous connection (the
 * sweep takes an anonymous one back to its number once it is at rest). Every field holds a
 * small integer, a shared object or null, so none of them is a boxed number or a string of its
 * own: the id and an anonymous user's name are made from `seq` when asked for (Realtime.idOf,
 * userOf), the permissions are shared by every user of the same scope (PermissionScopes), and
 * the throttling state comes with the first command.
 */
export class Session {
  /**
   * This connection's number on this node (`seq`), negative while the connection is not online
   * (before its open, refused at open, after its close): one slot for both.
   */
  n: number;
  /** The token's user; null for an anonymous connection, whose user is `anon-<id>`. */
  tokenUser: string | null;
  /** Shared with every connection of the same scope: never changed through a session. */
  perms: Permissions;
  /** Token expiry in whole seconds since the epoch (a small integer, no boxed number); 0 for anonymous. */
  expS: number;
  /** Rate limiter, abuse counter and new-topic window, made on the first command or ping. */
  throttle: Throttle | null;

  constructor(seq: number, tokenUser: string | null, perms: Permissions, expS: number) {
    this.n = -seq;
    this.tokenUser = tokenUser;
    this.perms = perms;
    this.expS = expS;
    this.throttle = null;
  }

  /** This connection's number on this node: its id is `<node>.<seq in base 36>`. */
  get seq(): number {
    return this.n < 0 ? -this.n : this.n;
  }

  /** Counted as online in the presence store (false before its open, for a connection refused at open, and after its close). */
  get online(): boolean {
    return this.n > 0;
  }

  set online(on: boolean) {
    this.n = on ? this.seq : -this.seq;
  }

  get anonymous(): boolean {
    return this.tokenUser === null;
  }
}

/** A session's throttling state, one per connection that has sent a command or a ping. */
class Throttle implements BucketState, ErrorWindowState {
  tokens: number;
  refilledAt: number;
  errors: number;
  errorsSince: number;
  /**
   * Topics with history this connection created in the window that started at newTopicsSince
   * (whole seconds of performance.now(): small integers, no boxed number).
   */
  newTopics: number;
  newTopicsSince: number;

  constructor() {
    this.tokens = Infinity;
    this.refilledAt = 0;
    this.errors = 0;
    this.errorsSince = 0;
    this.newTopics = 0;
    this.newTopicsSince = -NEW_TOPICS_WINDOW_S;
  }
}

function throttleOf(s: Session): Throttle {
  return s.throttle ?? (s.throttle = new Throttle());
}

export interface AppCounters {
  /** Messages handed to connections here; deliveries of messages from other nodes are pub/sub's (busCounters.deliveries). */
  messagesOut: number;
  bytesOut: number;
  published: number;
  errors: Record<string, number>;
  abuseCloses: Record<string, number>;
  /** Connections closed at open with 1013: 'full' or 'draining'. */
  refused: Record<string, number>;
  tokenExpiredCloses: number;
  /** Upgrades refused before murmur saw them (wrong path): reason -> count. */
  upgradeRejected: Record<string, number>;
}

/** The cluster bus a node's Topics is attached to, as the app keeps it (metrics, close). */
export interface AppBus {
  readonly kind: Exclude<BusKind, 'none'>;
  readonly transport: Bus & { readonly stats: BusStats };
}

export interface PublishResult {
  position: StreamPosition | null;
  delivered: number;
}

/** A frame a connection sent while its `presence online` waited (a copy). */
interface HeldFrame {
  data: Buffer;
  isBinary: boolean;
}

/**
 * The replies of a connection from its oldest publish still waiting for the cluster to order it
 * on: each a slot, filled when ready (a publish's when it is ordered), sent in order.
 */
interface ReplyQueue {
  slots: Array<{ text: string | null }>;
  /** Whether this queue holds the connection's frames (maxWaitingPublishes reached). */
  holding: boolean;
}

export class Realtime {
  readonly server: Server<ConnData>;
  readonly config: AppConfig;
  readonly presence: PresenceStore;
  readonly counters: AppCounters;
  draining: boolean;
  /** Set by the shedder (src/app/shed.ts) while the node is overloaded: upgrades get 503 OVERLOADED. */
  overloaded: boolean;
  /** The cluster bus, when the app runs in a cluster with one (set by App). */
  bus: AppBus | null;
  /**
   * A cluster bus is configured but not attached yet (the node is starting: gossip, then the
   * bus): a publish to a history topic would only reach this node, so it is refused (UNAVAILABLE).
   */
  busPending: boolean;
  /** Where failures a client triggered are logged, at most one line per kind per interval. */
  readonly errorLog: ClientErrorLog;
  readonly #limits: ProtocolLimits;
  readonly #nodeId: string;
  #seq: number;
  readonly #historyOptions: HistoryOptions;
  /**
   * Topics with history counted as new (#mayCreate) within the last NEW_TOPICS_WINDOW_S, with
   * the second they were: one that this node does not hold (on the Redis bus a node keeps no
   * history of a topic nobody here subscribes to) is created once, not at every publish to it.
   */
  readonly #recentNewTopics = new Map<string, number>();
  /**
   * Presence changes of this loop turn not yet sent, by topic: each an encoded
   * `{"event":...,"member":...}`. Sent once per turn (setImmediate, after every socket read
   * of the turn), one message per watched topic however many changes: the work a change
   * causes is one string, not one message per watcher.
   */
  #presencePending: Map<string, string[]> | null;
  /**
   * Connections whose `presence online` waits for the other nodes, with the frames they sent
   * since (copies, in order): handled once the reply is sent, so replies stay in order.
   * Nothing for a connection that is not waiting; null for one closed for holding too much
   * (what it still sends until the close completes is dropped).
   */
  readonly #held = new Map<Connection<ConnData>, HeldFrame[] | null>();
  #heldBytes = 0;
  /** Connections with a publish waiting to be ordered (history topics in a cluster), and the replies behind it. */
  readonly #replies = new Map<Connection<ConnData>, ReplyQueue>();
  #sweepTimer: NodeJS.Timeout | null;
  readonly #scopes: PermissionScopes;
  /** The welcome's `limits` field, the same for every connection: serialised once. */
  readonly #welcomeLimits: string;
  /** What follows the user in an anonymous connection's welcome, the same for all of them: serialised once. */
  readonly #anonWelcomeTail: string;

  constructor(config: AppConfig, presence?: PresenceStore, log: (line: string) => void = stderrLine) {
    this.config = config;
    this.errorLog = new ClientErrorLog(log);
    this.presence =
      presence ?? new LocalPresence({ maxMembers: config.presenceMaxMembers, maxMetaBytes: config.presenceMaxMetaBytes, maxTopicsPerConn: config.presenceMaxTopics });
    this.counters = {
      messagesOut: 0,
      bytesOut: 0,
      published: 0,
      errors: Object.create(null) as Record<string, number>,
      abuseCloses: Object.create(null) as Record<string, number>,
      refused: Object.create(null) as Record<string, number>,
      tokenExpiredCloses: 0,
      upgradeRejected: Object.create(null) as Record<string, number>,
    };
    this.draining = false;
    this.overloaded = false;
    this.bus = null;
    this.busPending = false;
    this.#limits = { maxTopicBytes: config.maxTopicBytes, maxHistoryLimit: Math.max(1, Math.min(config.historyMaxMessages, 1000)) };
    this.#nodeId = randomBytes(3).toString('hex');
    this.#seq = 0;
    this.#historyOptions = { maxMessages: config.historyMaxMessages, maxBytes: config.historyMaxBytes, maxAgeMs: config.historyMaxAgeMs };
    this.#presencePending = null;
    this.#sweepTimer = null;
    this.#scopes = new PermissionScopes(config.maxSharedScopes);
    this.#welcomeLimits = JSON.stringify({
      maxMessageBytes: config.maxMessageBytes,
      rateLimit: config.rateLimit,
      rateBurst: config.rateBurst,
      maxSubscriptions: config.maxSubscriptions,
      maxTopicBytes: config.maxTopicBytes,
    });
    this.#anonWelcomeTail = `,"anonymous":true,"permissions":${this.#scopes.jsonOf(config.anonymous)},"limits":${this.#welcomeLimits}}`;
    const origins = config.origins;
    this.server = new Server<ConnData>({
      limits: {
        // Frames up to 4x maxMessageBytes get a TOO_LARGE reply; only beyond that does the
        // protocol layer close with 1009 (reading a frame to answer it costs its bytes).
        maxPayload: config.maxMessageBytes * 4,
        maxBackpressure: config.maxBackpressure,
        maxSubscriptions: config.maxSubscriptions,
        maxTopicLength: 256,
        maxHistoryTopics: config.historyMaxTopics,
        maxHistoryBytes: config.historyMaxTotalBytes,
        maxConnectionsPerAddress: config.maxConnectionsPerAddress,
        maxHandshakesPerAddress: config.maxHandshakesPerAddress,
        maxHandshakes: config.maxHandshakes,
      },
      trustedAddresses: config.trustedProxies,
      slowConsumer: config.slowConsumer,
      perMessageDeflate: config.deflate ? { threshold: config.deflateThreshold } : false,
      idleGc: config.idleGc,
      history: (topic) => this.#historyPolicy(topic),
      // Origin defends browsers' users against other sites' pages (cross-site WebSocket
      // hijacking); clients that are not browsers send none and are let through.
      ...(origins.length > 0 ? { verifyOrigin: (origin: string | undefined) => origin === undefined || origins.includes(origin) } : {}),
      handlers: {
        upgrade: (req, conn) => this.#onUpgrade(req, conn),
        open: (conn) => this.#onOpen(conn),
        message: (conn, data, isBinary) => this.#onMessage(conn, data, isBinary),
        ping: (conn) => this.#onPing(conn),
        close: (conn) => this.#onClose(conn),
      },
    });
    // Every message with a publisher, published here or arriving from the bus, gets this
    // node's envelope with this node's history position (src/pubsub/bus-record.ts says why).
    this.server.pubsub.envelope = envelopeHook;
    // A stream that skips (a gap the cluster could not fill) is told, as a failed recovery is.
    this.server.pubsub.onRestart = (topic, position, reason) =>
      topic.startsWith(PRESENCE_PREFIX) ? null : JSON.stringify({ type: 'resync', topic, reason: reason === 'gap' ? 'gap' : 'epoch-changed', position });
    this.presence.onChange((change) => this.#onPresenceChange(change));
  }

  /** Starts the periodic sweep (idle history topics, expired tokens). */
  start(): void {
    if (this.#sweepTimer !== null) return;
    this.#sweepTimer = setInterval(() => this.sweep(Date.now()), SWEEP_INTERVAL_MS);
    this.#sweepTimer.unref();
  }

  stop(): void {
    if (this.#sweepTimer !== null) clearInterval(this.#sweepTimer);
    this.#sweepTimer = null;
  }

  /**
   * Publishes a message as the server would for a client's publish: wrapped in an envelope
   * with {topic, epoch, offset, from}, kept in the topic's history when it has one, fanned out
   * to every subscriber (but `except`). `payload` is JSON text (the data, serialised) or bytes.
   */
  publish(topic: string, payload: string | Buffer, from: string, except: Connection<ConnData> | null = null, done?: OrderedDone): PublishResult {
    const isBinary = typeof payload !== 'string';
    // With a bus attached, other nodes get the message itself (pubsub puts it on the bus).
    // A topic the cluster orders tells `done` once the message is held on two nodes.
    const delivered = done !== undefined ? this.server.pubsub.publish(topic, payload, isBinary, except, from, done) : except === null ? this.server.publish(topic, payload, isBinary, from) : except.publish(topic, payload, isBinary, from);
    this.counters.published++;
    this.counters.messagesOut += delivered;
    if (delivered > 0) this.counters.bytesOut += delivered * this.server.pubsub.lastPayloadBytes;
    // A topic ordered cluster-wide gets its position from its owner, after this returns.
    const pubsub = this.server.pubsub;
    return { position: pubsub.isOrdered(topic) ? null : pubsub.position(topic), delivered };
  }

  /** Whether a publish to `topic` must wait for the cluster bus that will order it (busPending). */
  orderingPending(topic: string): boolean {
    return this.busPending && this.#historyPolicy(topic) !== undefined;
  }

  /** The history of `topic`: the existing one, or (with create) a new one if the policy grants it. */
  historyFor(topic: string, create: boolean): TopicHistory | null {
    const pubsub = this.server.pubsub;
    if (pubsub.has(topic)) return pubsub.historyOf(topic);
    if (!create || this.#historyPolicy(topic) === undefined) return null;
    return pubsub.history(topic) ?? null;
  }

  /**
   * Graceful drain: /readyz turns 503 at once; after drainDelayMs every connection gets 1012
   * with a retry-after hint, new ones get 1013; the close handshakes get up to
   * shutdownTimeoutMs with the port still open; then the library's close() closes the port and
   * destroys what is left.
   */
  async drain(): Promise<void> {
    this.draining = true;
    if (this.config.drainDelayMs > 0) await new Promise((r) => setTimeout(r, this.config.drainDelayMs));
    // What our clients published to history topics is ordered before they move (bounded: the bus's closeWaitMs).
    await this.bus?.transport.settle?.();
    const reason = retryAfterReason('server restarting', this.config.retryAfterSeconds);
    this.server.forEachConnection((conn) => conn.close(AppCloseCode.ServiceRestart, reason));
    // The port stays open meanwhile: /readyz keeps answering 503 and newcomers get 1013.
    const started = Date.now();
    await this.server.whenIdle(this.config.shutdownTimeoutMs);
    await this.server.close(Math.max(0, this.config.shutdownTimeoutMs - (Date.now() - started)));
    this.stop();
  }

  /**
   * Drops idle history topics whose messages all aged out, closes connections whose token
   * expired, and lets go of the throttling state of connections that have come to rest (a
   * fresh one would decide the same, so a user who subscribed and went quiet costs nothing
   * for it). `clock` is performance.now() (the throttle's clock).
   */
  sweep(now: number, clock: number = performance.now()): void {
    this.server.pubsub.sweepHistory(now);
    this.server.forEachConnection((conn) => {
      const s = conn.data;
      if (typeof s === 'number') return;
      if (s.expS !== 0 && now >= s.expS * 1000) {
        this.#expire(conn);
        return;
      }
      if (s.throttle !== null && this.#atRest(s.throttle, clock)) s.throttle = null;
      // An anonymous session at rest says nothing its number does not, unless the connection
      // is online in the presence store (it joined a topic's presence) or waits for an answer.
      if (s.throttle === null && s.tokenUser === null && s.online && !this.#held.has(conn) && !this.#replies.has(conn) && !this.presence.isOnline(this.userOf(s))) conn.data = s.seq;
    });
  }

  get historyTopicCount(): number {
    return this.server.pubsub.historyTopicCount;
  }

  /** The connection's id, `<node>.<seq in base 36>`: made when asked for, never stored. */
  idOf(s: Session): string {
    return this.#idOfSeq(s.seq);
  }

  #idOfSeq(seq: number): string {
    return `${this.#nodeId}.${seq.toString(36)}`;
  }

  /**
   * The connection's session, made now for an anonymous connection that holds only its number;
   * null for one that is not online (refused at open, closed, or refused at the upgrade).
   */
  #session(conn: Connection<ConnData>): Session | null {
    const d = conn.data as ConnData | undefined;
    if (d === undefined) return null;
    if (typeof d !== 'number') return d.online ? d : null;
    if (d <= 0) return null;
    const s = new Session(d, null, this.config.anonymous, 0);
    s.online = true;
    conn.data = s;
    return s;
  }

  #isOnline(conn: Connection<ConnData>): boolean {
    const d = conn.data as ConnData | undefined;
    return typeof d === 'number' ? d > 0 : d !== undefined && d.online;
  }

  /** The session's user: the token's, or `anon-<id>` for an anonymous connection. */
  userOf(s: Session): string {
    return s.tokenUser ?? `anon-${this.idOf(s)}`;
  }

  // ---- handlers -------------------------------------------------------------------------

  /** Whether `t` behaves as a fresh Throttle would at `clock`: a full bucket, no error window and no new-topic window still open. */
  #atRest(t: Throttle, clock: number): boolean {
    const c = this.config;
    return (
      t.tokens + ((clock - t.refilledAt) * c.rateLimit) / 1000 >= c.rateBurst &&
      (t.errors === 0 || clock - t.errorsSince > c.abuseWindowMs) &&
      (t.newTopics === 0 || Math.floor(clock / 1000) - t.newTopicsSince >= NEW_TOPICS_WINDOW_S)
    );
  }

  /** Which topics keep a history; how many at once is the library's maxHistoryTopics (idle ones evicted first). */
  #historyPolicy(topic: string): HistoryOptions | undefined {
    if (topic.startsWith('$') || !matchesAny(this.config.historyTopics, topic)) return undefined;
    return this.#historyOptions;
  }

  /**
   * Whether `s` may bring `topic` into existence: a topic with history outlives the connection
   * that made it, so each connection may create at most maxNewTopicsPerMinute of them. Topics
   * that exist already (here, or made within the window: on the Redis bus a publisher's node holds
   * no history of a topic nobody there subscribes to), or keep no history, cost nothing here.
   */
  #mayCreate(s: Session, topic: string, id: Command['id']): AppError | undefined {
    if (this.server.pubsub.has(topic) || this.#historyPolicy(topic) === undefined) return undefined;
    const now = Math.floor(performance.now() / 1000);
    const made = this.#recentNewTopics.get(topic);
    if (made !== undefined && now - made < NEW_TOPICS_WINDOW_S) return undefined;
    const t = throttleOf(s);
    if (now - t.newTopicsSince >= NEW_TOPICS_WINDOW_S) {
      t.newTopicsSince = now;
      t.newTopics = 0;
    }
    if (t.newTopics >= this.config.maxNewTopicsPerMinute) {
      return new AppError('TOO_MANY_NEW_TOPICS', `at most ${this.config.maxNewTopicsPerMinute} new topics with history per minute per connection`, id);
    }
    t.newTopics++;
    this.#recentNewTopics.delete(topic);
    this.#recentNewTopics.set(topic, now);
    if (this.#recentNewTopics.size > MAX_RECENT_NEW_TOPICS) this.#recentNewTopics.delete(this.#recentNewTopics.keys().next().value!);
    return undefined;
  }

  #onUpgrade(req: UpgradeRequest, conn: Connection<ConnData>): HttpReject | undefined {
    // Refused before the 101: a load balancer that retries on 503 sends it elsewhere at once.
    if (this.overloaded) return new HttpReject(503, 'OVERLOADED', { 'Retry-After': String(this.config.retryAfterSeconds) }, 'overloaded\n');
    const token = tokenFrom(req);
    if (token === undefined) {
      if (this.config.requireToken) return unauthorized('TOKEN_MISSING');
      // Its number only (not yet online): the session comes with its first command.
      conn.data = -++this.#seq;
      return undefined;
    }
    const check = verifyToken(token, this.config.secret);
    if (!check.ok) return unauthorized(check.code);
    const { claims } = check;
    conn.data = new Session(++this.#seq, claims.user, this.#scopes.share(claims.permissions), claims.exp);
    return undefined;
  }

  #onOpen(conn: Connection<ConnData>): void {
    const s = conn.data;
    const max = this.config.maxConnections;
    if (this.draining || (max > 0 && this.server.openCount > max)) {
      // A browser cannot read a 503's Retry-After, so the refusal is an accepted connection
      // closed at once with 1013 and the hint in the reason (docs/serve-protocol.md).
      const why = this.draining ? 'draining' : 'full';
      this.counters.refused[why] = (this.counters.refused[why] ?? 0) + 1;
      conn.close(AppCloseCode.TryAgainLater, retryAfterReason(`server ${why}`, this.config.retryAfterSeconds));
      return;
    }
    // Field for field what JSON.stringify of the object would give, with the constant parts
    // serialised once (the id is [0-9a-z.] and needs no escaping).
    if (typeof s === 'number') {
      // Anonymous: online from now on, and still only its number. An anonymous id exists for
      // one connection only, so it is online in the presence store once it shows itself in a
      // topic (presence join): a crowd of anonymous viewers costs the presence store, and a
      // cluster's replication, nothing.
      conn.data = -s;
      const id = this.#idOfSeq(-s);
      this.#send(conn, `{"type":"welcome","protocol":${PROTOCOL_VERSION},"conn":"${id}","user":"anon-${id}"${this.#anonWelcomeTail}`);
      return;
    }
    s.online = true;
    // A token user is someone others can ask about: online from the start.
    const id = this.idOf(s);
    if (s.tokenUser !== null) this.presence.connect(s.tokenUser, id);
    this.#send(
      conn,
      `{"type":"welcome","protocol":${PROTOCOL_VERSION},"conn":"${id}","user":${JSON.stringify(this.userOf(s))},"anonymous":${s.tokenUser === null},"permissions":${this.#scopes.jsonOf(s.perms)},"limits":${this.#welcomeLimits}}`,
    );
  }

  #onClose(conn: Connection<ConnData>): void {
    const s = conn.data as ConnData | undefined;
    if (typeof s === 'number') {
      if (s <= 0) return;
      conn.data = -s;
      // At rest, it holds no frames and waits for no reply (see sweep); said here all the same.
      this.#release(conn);
      this.#replies.delete(conn);
      return;
    }
    if (s === undefined || !s.online) return;
    s.online = false;
    this.#release(conn);
    this.#replies.delete(conn);
    this.presence.disconnect(this.userOf(s), this.idOf(s));
  }

  #onMessage(conn: Connection<ConnData>, data: Buffer, isBinary: boolean): void {
    const s = this.#session(conn);
    if (s === null) return;
    const held = this.#held.get(conn);
    if (held !== undefined) {
      if (held !== null) this.#hold(conn, held, data, isBinary);
      return;
    }
    let id: RequestId = null;
    try {
      const now = performance.now();
      if (s.expS !== 0 && Date.now() >= s.expS * 1000) {
        this.#expire(conn);
        return;
      }
      if (!takeToken(throttleOf(s), now, this.config.rateLimit, this.config.rateBurst)) {
        // Refused unparsed: the id comes from a bounded look at the frame's ends (O(1)).
        this.#fail(conn, new AppError('RATE_LIMITED', AppErrorCode.RATE_LIMITED, peekId(data, isBinary)));
        return;
      }
      if (data.length > this.config.maxMessageBytes) {
        this.#fail(conn, new AppError('TOO_LARGE', `the frame has ${data.length} bytes, over maxMessageBytes (${this.config.maxMessageBytes})`));
        return;
      }
      const cmd = isBinary ? parseBinaryCommand(data, this.#limits) : parseTextCommand(data.toString('utf8'), this.#limits);
      if (cmd instanceof AppError) {
        this.#fail(conn, cmd);
        return;
      }
      id = cmd.id;
      const err = this.#dispatch(conn, s, cmd);
      if (err !== undefined) this.#fail(conn, err);
    } catch (err) {
      // A bug a client can trigger at will: its stack is logged, but not once per frame.
      this.errorLog.line('ws-internal', `[murmur] internal error handling a command: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      this.#fail(conn, new AppError('INTERNAL', AppErrorCode.INTERNAL, id));
    }
  }

  #dispatch(conn: Connection<ConnData>, s: Session, cmd: Command): AppError | undefined {
    const { id } = cmd;
    switch (cmd.type) {
      case 'ping':
        this.#send(conn, replyJson(id, { time: Date.now() }));
        return undefined;
      case 'subscribe':
        return this.#subscribe(conn, s, cmd);
      case 'unsubscribe': {
        const unsubscribed = conn.unsubscribe(cmd.topic);
        conn.unsubscribe(PRESENCE_PREFIX + cmd.topic);
        this.#send(conn, replyJson(id, { topic: cmd.topic, unsubscribed }));
        return undefined;
      }
      case 'publish': {
        if (!matchesAny(s.perms.publish, cmd.topic)) return forbidden(id, 'publish to', cmd.topic);
        const refused = this.#mayCreate(s, cmd.topic, id);
        if (refused !== undefined) return refused;
        let payload: string | Buffer;
        if (cmd.binary !== null) payload = cmd.binary;
        else {
          try {
            payload = JSON.stringify(cmd.data);
          } catch {
            return new AppError('BAD_FIELD', '"data" cannot be serialised (nested too deeply)', id);
          }
        }
        if (this.orderingPending(cmd.topic)) return new AppError('UNAVAILABLE', AppErrorCode.UNAVAILABLE, id);
        if (this.server.pubsub.isOrdered(cmd.topic)) return this.#publishOrdered(conn, id, cmd.topic, payload, this.userOf(s), cmd.echo);
        const r = this.publish(cmd.topic, payload, this.userOf(s), cmd.echo ? null : conn);
        this.#send(conn, replyJson(id, { topic: cmd.topic, ...positionFields(r.position), delivered: r.delivered }));
        return undefined;
      }
      case 'history':
        return this.#history(conn, s, cmd);
      case 'presence':
        return this.#presenceCommand(conn, s, cmd);
    }
  }

  /**
   * A publish the cluster orders: answered once the message is ordered and held on two nodes,
   * with its position, or with UNAVAILABLE / PUBLISH_BUSY when it was not published. The
   * connection's later replies wait behind it (replies stay in order); at maxWaitingPublishes
   * waiting, its later frames wait too (held as for `presence online`, with the same bounds).
   */
  #publishOrdered(conn: Connection<ConnData>, id: RequestId, topic: string, payload: string | Buffer, user: string, echo: boolean): undefined {
    let q = this.#replies.get(conn);
    if (q === undefined) this.#replies.set(conn, (q = { slots: [], holding: false }));
    const slot: { text: string | null } = { text: null };
    q.slots.push(slot);
    const queue = q;
    let delivered = -1;
    const answer = (position: StreamPosition | null, failure: OrderedFailure | null): void => {
      if (failure === null) slot.text = replyJson(id, { topic, ...positionFields(position), delivered });
      else {
        const err = failure === 'busy' ? new AppError('PUBLISH_BUSY', AppErrorCode.PUBLISH_BUSY, id) : new AppError('UNAVAILABLE', AppErrorCode.UNAVAILABLE, id);
        this.counters.errors[err.code] = (this.counters.errors[err.code] ?? 0) + 1;
        slot.text = errorJson(err);
      }
    };
    let early: [StreamPosition | null, OrderedFailure | null] | null = null;
    delivered = this.publish(topic, payload, user, echo ? null : conn, (position, failure) => {
      // Answered from within publish() (before `delivered` is known): the reply is built below.
      if (delivered < 0) early = [position, failure];
      else {
        answer(position, failure);
        if (this.#replies.get(conn) === queue) this.#flushReplies(conn, queue);
      }
    }).delivered;
    if (early !== null) {
      answer(...(early as [StreamPosition | null, OrderedFailure | null]));
      this.#flushReplies(conn, queue);
    } else this.#holdAtBound(conn, queue);
    return undefined;
  }

  /** At maxWaitingPublishes replies waiting, the connection's later frames are held until some are sent. */
  #holdAtBound(conn: Connection<ConnData>, q: ReplyQueue): void {
    if (q.slots.length < this.config.maxWaitingPublishes || this.#held.has(conn)) return;
    q.holding = true;
    this.#held.set(conn, []);
  }

  /** Sends the ready replies at the head of a connection's queue; the queue ends when nothing waits. */
  #flushReplies(conn: Connection<ConnData>, q: ReplyQueue): void {
    let n = 0;
    while (n < q.slots.length && q.slots[n]!.text !== null) n++;
    const ready = q.slots.splice(0, n);
    if (q.slots.length === 0) this.#replies.delete(conn);
    for (const r of ready) this.#sendNow(conn, r.text!);
    if (q.holding && q.slots.length < this.config.maxWaitingPublishes) {
      // Below the bound again: the frames held meanwhile are handled (a new hold may start among them).
      q.holding = false;
      const held = this.#held.get(conn);
      this.#release(conn);
      if (held !== undefined && held !== null) for (const f of held) if (this.#isOnline(conn)) this.#onMessage(conn, f.data, f.isBinary);
    }
  }

  /** `caught`: null before the catch-up (#catchUp), then whether it learned what the cluster holds. */
  #subscribe(conn: Connection<ConnData>, s: Session, cmd: Extract<Command, { type: 'subscribe' }>, caught: boolean | null = null): AppError | undefined {
    const { id, topic } = cmd;
    if (!matchesAny(s.perms.subscribe, topic)) return forbidden(id, 'subscribe to', topic);
    if (cmd.presence && !matchesAny(s.perms.presence, topic)) return forbidden(id, 'see the presence of', topic);
    const refused = this.#mayCreate(s, topic, id);
    if (refused !== undefined) return refused;
    const first = this.#lineFirst(conn, id, topic, cmd.since, caught, (now, ok) => this.#subscribe(conn, now, cmd, ok));
    if (first !== undefined) return first === true ? undefined : first;
    const result = conn.subscribe(topic);
    if (result === 'closed') return undefined;
    if (result === 'too-many') return new AppError('TOO_MANY_SUBSCRIPTIONS', `at most ${this.config.maxSubscriptions} subscriptions per connection`, id);
    if (result === 'topic-too-long') return new AppError('BAD_TOPIC', 'topic too long', id);
    if (cmd.presence) {
      const w = conn.subscribe(PRESENCE_PREFIX + topic);
      if (w === 'too-many' || w === 'topic-too-long') {
        if (result === 'subscribed') conn.unsubscribe(topic);
        return new AppError('TOO_MANY_SUBSCRIPTIONS', `at most ${this.config.maxSubscriptions} subscriptions per connection (presence watches count too)`, id);
      }
    }
    const history = this.historyFor(topic, false);
    const reply: Record<string, unknown> = { topic, already: result === 'already' };
    if (cmd.since !== null) {
      if (history === null) {
        reply.recovered = false;
        reply.reason = 'no-history';
      } else {
        const r = history.recover(cmd.since, Date.now());
        reply.recovered = r.recovered;
        if (r.recovered) reply.replayed = this.#sendFrames(conn, r.frames, r.messages);
        else reply.reason = r.reason;
      }
    } else if (cmd.rewind > 0 && history !== null) {
      reply.replayed = this.#replayLast(conn, history, cmd.rewind);
    }
    reply.position = history === null ? null : history.position;
    if (cmd.presence) reply.members = this.presence.list(topic).map(memberOf);
    this.#send(conn, replyJson(id, reply));
    return undefined;
  }

  /**
   * A recovery this node's history cannot serve (it started late: a restarted node), or any
   * subscribe on a node whose history does not hold the topic's cluster-wide line yet (Redis
   * bus), on a topic the cluster orders: what the cluster holds is fetched first (bounded by
   * the bus's fillTimeoutMs), then `retry` runs the command again, subscribing only then so that
   * live messages never overtake the replay; it is told whether the fetch succeeded. False when
   * there is nothing to wait for; CATCHING_UP while the bus is not attached yet (a position
   * given now would be this node's own, and a recovery refused now would be a false resync).
   * `retry` gets the connection's session as it is then (the sweep may have taken an anonymous
   * one back to its number meanwhile).
   */
  #catchUp(conn: Connection<ConnData>, id: RequestId, topic: string, since: StreamPosition | null, retry: (s: Session, ok: boolean) => AppError | undefined): boolean | AppError {
    if (this.orderingPending(topic)) return new AppError('CATCHING_UP', AppErrorCode.CATCHING_UP, id);
    if (since !== null && this.#servable(topic, since)) return false;
    const wait = this.server.pubsub.catchUp(topic, since);
    if (wait === null) return false;
    void wait.then((ok) => {
      const s = conn.isOpen ? this.#session(conn) : null;
      if (s === null) return;
      const err = retry(s, ok);
      if (err !== undefined) this.#fail(conn, err);
    });
    return true;
  }

  /**
   * What a subscribe or history command does first: undefined to go on now; true when it runs
   * again after the catch-up (`caught` is null before it, then its outcome); CATCHING_UP when
   * the catch-up failed and this node's history cannot serve the command as it is.
   */
  #lineFirst(conn: Connection<ConnData>, id: RequestId, topic: string, since: StreamPosition | null, caught: boolean | null, retry: (s: Session, ok: boolean) => AppError | undefined): AppError | true | undefined {
    if (caught === null) {
      const waiting = this.#catchUp(conn, id, topic, since, retry);
      return waiting === false ? undefined : waiting;
    }
    return caught || this.#servable(topic, since) ? undefined : new AppError('CATCHING_UP', AppErrorCode.CATCHING_UP, id);
  }

  /** Whether this node's history answers a recovery from `since` with the messages (null: a command without one). */
  #servable(topic: string, since: StreamPosition | null): boolean {
    if (since === null) return false;
    const history = this.historyFor(topic, false);
    return history !== null && history.recover(since, Date.now()).recovered;
  }

  #history(conn: Connection<ConnData>, s: Session, cmd: Extract<Command, { type: 'history' }>, caught: boolean | null = null): AppError | undefined {
    const { id, topic } = cmd;
    if (!matchesAny(s.perms.subscribe, topic)) return forbidden(id, 'read the history of', topic);
    const refused = this.#mayCreate(s, topic, id);
    if (refused !== undefined) return refused;
    // As a recovery: a node that does not hear the topic (Redis bus) fetches what follows `since`, or the line, first.
    const first = this.#lineFirst(conn, id, topic, cmd.since, caught, (now, ok) => this.#history(conn, now, cmd, ok));
    if (first !== undefined) return first === true ? undefined : first;
    const history = this.historyFor(topic, true);
    if (history === null) return new AppError('NO_HISTORY', `topic ${JSON.stringify(topic)} keeps no history`, id);
    const reply: Record<string, unknown> = { topic };
    if (cmd.since !== null) {
      const r = history.recover(cmd.since, Date.now());
      reply.recovered = r.recovered;
      if (r.recovered) {
        // At most `limit` of them: the oldest first, as a client paging forward expects.
        const frames = r.frames.slice(0, cmd.limit);
        reply.replayed = this.#sendFrames(conn, frames, frames.length);
        reply.more = r.frames.length > frames.length;
      } else reply.reason = r.reason;
    } else reply.replayed = this.#replayLast(conn, history, cmd.limit);
    reply.position = history.position;
    this.#send(conn, replyJson(id, reply));
    return undefined;
  }

  #replayLast(conn: Connection<ConnData>, history: TopicHistory, n: number): number {
    history.expire(Date.now());
    const from = Math.max(history.firstOffset - 1, history.lastOffset - n);
    const r = history.recover({ epoch: history.epoch, offset: from }, Date.now());
    return r.recovered ? this.#sendFrames(conn, r.frames, r.messages) : 0;
  }

  #sendFrames(conn: Connection<ConnData>, frames: Buffer[], messages: number): number {
    if (messages === 0) return 0;
    this.server.pubsub.replay(conn, frames, messages);
    this.counters.messagesOut += messages;
    for (const f of frames) this.counters.bytesOut += f.length;
    return messages;
  }

  #presenceCommand(conn: Connection<ConnData>, s: Session, cmd: Extract<Command, { type: 'presence' }>): AppError | undefined {
    const { id, topic } = cmd;
    switch (cmd.action) {
      case 'join': {
        // Being seen in a topic needs the right to be in it.
        if (!matchesAny(s.perms.subscribe, topic)) return forbidden(id, 'join the presence of', topic);
        const user = this.userOf(s);
        const r = this.presence.join(topic, { user, conn: this.idOf(s), meta: cmd.meta, since: Date.now() });
        if (r === 'full') return new AppError('PRESENCE_FULL', `${JSON.stringify(topic)} has ${this.config.presenceMaxMembers} members already`, id);
        if (r === 'meta-too-large') return new AppError('META_TOO_LARGE', `meta is over ${this.config.presenceMaxMetaBytes} bytes as JSON`, id);
        if (r === 'too-many-topics') return new AppError('TOO_MANY_PRESENCE_TOPICS', `present in ${this.config.presenceMaxTopics} topics already`, id);
        // An anonymous id is one connection's: online from its first join until it closes.
        if (s.tokenUser === null && r === 'joined' && !this.presence.isOnline(user)) this.presence.connect(user, this.idOf(s));
        this.#send(conn, replyJson(id, { topic, joined: r }));
        return undefined;
      }
      case 'leave':
        this.#send(conn, replyJson(id, { topic, left: this.presence.leave(topic, this.idOf(s)) !== undefined }));
        return undefined;
      case 'list':
        if (!matchesAny(s.perms.presence, topic)) return forbidden(id, 'see the presence of', topic);
        this.#send(conn, replyJson(id, { topic, members: this.presence.list(topic).map(memberOf) }));
        return undefined;
      case 'watch': {
        if (!matchesAny(s.perms.presence, topic)) return forbidden(id, 'see the presence of', topic);
        const w = conn.subscribe(PRESENCE_PREFIX + topic);
        if (w === 'too-many' || w === 'topic-too-long') return new AppError('TOO_MANY_SUBSCRIPTIONS', `at most ${this.config.maxSubscriptions} subscriptions per connection (presence watches count too)`, id);
        this.#send(conn, replyJson(id, { topic, members: this.presence.list(topic).map(memberOf) }));
        return undefined;
      }
      case 'unwatch':
        this.#send(conn, replyJson(id, { topic, unwatched: conn.unsubscribe(PRESENCE_PREFIX + topic) }));
        return undefined;
      case 'online': {
        if (s.perms.presence.length === 0) return new AppError('FORBIDDEN', 'this connection may not see presence', id);
        // Users are held only by the node they are connected to: a user not connected here is
        // asked of the other nodes, and the connection's later frames wait for the reply.
        const box: { now: OnlineResult | null; waiting: boolean } = { now: null, waiting: false };
        this.presence.askOnline(cmd.users, (r) => {
          if (!box.waiting) box.now = r;
          else this.#onlineAnswered(conn, id, cmd.users, r);
        });
        if (box.now !== null) return this.#onlineReply(conn, id, cmd.users, box.now);
        box.waiting = true;
        this.#held.set(conn, []);
        return undefined;
      }
    }
  }

  #onlineReply(conn: Connection<ConnData>, id: RequestId, users: readonly string[], r: OnlineResult): AppError | undefined {
    if (r === 'busy') return new AppError('ONLINE_BUSY', AppErrorCode.ONLINE_BUSY, id);
    // Keys are client-chosen user ids: "__proto__" must be a key like any other.
    const online = Object.create(null) as Record<string, boolean>;
    for (const u of users) online[u] = r.online.has(u);
    this.#send(conn, replyJson(id, r.partial ? { online, partial: true } : { online }));
    return undefined;
  }

  /** The other nodes answered: reply, then handle the frames held meanwhile (a new hold may start among them). */
  #onlineAnswered(conn: Connection<ConnData>, id: RequestId, users: readonly string[], r: OnlineResult): void {
    const held = this.#held.get(conn);
    if (held === undefined || held === null || !this.#isOnline(conn)) return;
    this.#release(conn);
    const err = this.#onlineReply(conn, id, users, r);
    if (err !== undefined) this.#fail(conn, err);
    for (const f of held) if (this.#isOnline(conn)) this.#onMessage(conn, f.data, f.isBinary);
  }

  #hold(conn: Connection<ConnData>, held: HeldFrame[], data: Buffer, isBinary: boolean): void {
    if (held.length >= this.config.onlineHeldFrames || this.#heldBytes + data.length > this.config.onlineHeldBytes) {
      this.#release(conn);
      this.#held.set(conn, null);
      conn.close(AppCloseCode.Abuse, 'too many frames while waiting for an online answer');
      return;
    }
    // `data` is valid only during the callback: the held frame is a copy.
    held.push({ data: Buffer.from(data), isBinary });
    this.#heldBytes += data.length;
  }

  /** Stop holding the connection's frames (their bytes leave the total). */
  #release(conn: Connection<ConnData>): void {
    const held = this.#held.get(conn);
    if (held === undefined) return;
    this.#held.delete(conn);
    if (held !== null) for (const f of held) this.#heldBytes -= f.data.length;
  }

  #onPresenceChange(change: PresenceChange): void {
    if (!('topic' in change)) return; // online/offline: nothing to fan out
    if (this.server.subscriberCount(PRESENCE_PREFIX + change.topic) === 0) return;
    const ev = `"event":${JSON.stringify(change.kind)},"member":${JSON.stringify(memberOf(change.entry))}`;
    let pending = this.#presencePending;
    if (pending === null) {
      pending = this.#presencePending = new Map();
      setImmediate(realtimePresenceFlush, this);
    }
    const list = pending.get(change.topic);
    if (list === undefined) pending.set(change.topic, [ev]);
    else list.push(ev);
  }

  /**
   * Sends this turn's presence changes: one `presence` message for a topic with one change,
   * one `presence-batch` with every change in order for a topic with more (docs/serve-protocol.md).
   */
  flushPresence(): void {
    const pending = this.#presencePending;
    if (pending === null) return;
    this.#presencePending = null;
    for (const [topic, events] of pending) {
      const t = JSON.stringify(topic);
      const msg =
        events.length === 1
          ? `{"type":"presence","topic":${t},${events[0]!}}`
          : `{"type":"presence-batch","topic":${t},"events":[{${events.join('},{')}}]}`;
      // Local subscribers only, never onto a cross-node bus: in a cluster every node derives
      // these events from its own replica of the presence (a relayed copy would be a duplicate).
      const n = this.server.pubsub.publishLocal(PRESENCE_PREFIX + topic, msg, false);
      this.counters.messagesOut += n;
      this.counters.bytesOut += n * Buffer.byteLength(msg);
    }
  }

  /**
   * A WebSocket ping costs a command token like any command (the library answers it under its
   * control budget); past the bucket it counts as a RATE_LIMITED error towards the abuse close,
   * without a reply (a ping has no id to answer).
   */
  #onPing(conn: Connection<ConnData>): void {
    const s = this.#session(conn);
    if (s === null) return;
    const now = performance.now();
    const t = throttleOf(s);
    if (takeToken(t, now, this.config.rateLimit, this.config.rateBurst)) return;
    this.counters.errors.RATE_LIMITED = (this.counters.errors.RATE_LIMITED ?? 0) + 1;
    if (countError(t, now, this.config.abuseWindowMs, this.config.abuseMaxErrors)) {
      this.counters.abuseCloses['rate limit exceeded'] = (this.counters.abuseCloses['rate limit exceeded'] ?? 0) + 1;
      conn.close(AppCloseCode.Abuse, 'rate limit exceeded');
    }
  }

  #fail(conn: Connection<ConnData>, err: AppError): void {
    this.counters.errors[err.code] = (this.counters.errors[err.code] ?? 0) + 1;
    this.#send(conn, errorJson(err));
    // The node's own state, not the client's doing: a client asking again is not abuse (its commands are still rate-limited).
    if (err.code === 'CATCHING_UP') return;
    const s = this.#session(conn);
    if (s !== null && countError(throttleOf(s), performance.now(), this.config.abuseWindowMs, this.config.abuseMaxErrors)) {
      const reason = err.code === 'RATE_LIMITED' ? 'rate limit exceeded' : 'too many errors';
      this.counters.abuseCloses[reason] = (this.counters.abuseCloses[reason] ?? 0) + 1;
      conn.close(AppCloseCode.Abuse, reason);
    }
  }

  #expire(conn: Connection<ConnData>): void {
    this.counters.tokenExpiredCloses++;
    conn.close(AppCloseCode.TokenExpired, 'token expired');
  }

  /** Sends a reply (or event) to a connection, after the replies waiting for the cluster to order its publishes. */
  #send(conn: Connection<ConnData>, text: string): void {
    const q = this.#replies.get(conn);
    if (q === undefined) return this.#sendNow(conn, text);
    q.slots.push({ text });
    this.#holdAtBound(conn, q);
  }

  #sendNow(conn: Connection<ConnData>, text: string): void {
    const r = conn.send(text);
    if (r !== 'dropped') {
      this.counters.messagesOut++;
      this.counters.bytesOut += Buffer.byteLength(text);
    }
  }
}

function realtimePresenceFlush(rt: Realtime): void {
  rt.flushPresence();
}

function forbidden(id: Command['id'], what: string, topic: string): AppError {
  return new AppError('FORBIDDEN', `not allowed to ${what} ${JSON.stringify(topic)}`, id);
}

function positionFields(p: StreamPosition | null): Record<string, unknown> {
  return p === null ? {} : { epoch: p.epoch, offset: p.offset };
}

function memberOf(e: PresenceEntry): Record<string, unknown> {
  return { user: e.user, conn: e.conn, meta: e.meta, since: e.since };
}

/** The token from `?token=` or `Authorization: Bearer`; undefined when neither is there. */
function tokenFrom(req: UpgradeRequest): string | undefined {
  const auth = getHeader(req.head, 'authorization');
  if (auth !== undefined) {
    const m = /^Bearer[ \t]+(\S+)\s*$/i.exec(auth);
    if (m !== null) return m[1];
  }
  if (req.query !== '') {
    const q = new URLSearchParams(req.query).get('token');
    if (q !== null && q !== '') return q;
  }
  return undefined;
}

function unauthorized(code: keyof typeof TokenErrorCode): HttpReject {
  return new HttpReject(401, code, { 'WWW-Authenticate': 'Bearer realm="murmur"' }, `${code}: ${TokenErrorCode[code]}\n`);
}

