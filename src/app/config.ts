/**
 * The configuration of `murmur serve`, with every default and the reason for its value (as
 * src/limits.ts does for the library). The CLI maps flags, MURMUR_* variables and a JSON
 * config file onto this; an embedding application passes a Partial<AppConfig>.
 */
import type { Permissions } from './token.js';
import { checkPatterns } from './token.js';
import type { SlowConsumerPolicy } from '../server/options.js';
import { DEFAULT_LIMITS } from '../limits.js';
import { Admission } from '../server/admission.js';

export interface AppConfig {
  port: number;
  host: string;
  /** HMAC secret for tokens; without it every presented token is refused (401 TOKEN_NO_SECRET). */
  secret: string | undefined;
  /** Refuse upgrades without a valid token (401). Needs `secret`. */
  requireToken: boolean;
  /** What a connection without a token may do. */
  anonymous: Permissions;
  /** Key for /api/*; without one the HTTP API answers 403 API_DISABLED. */
  apiKey: string | undefined;
  /** Allowed Origin header values for upgrades (403 otherwise); empty = any. Requests without an Origin (not browsers) pass. */
  origins: string[];
  /** Topic patterns that keep history. */
  historyTopics: string[];
  historyMaxMessages: number;
  historyMaxBytes: number;
  historyMaxAgeMs: number;
  /** Topics with history at once: the bound on all history memory (x historyMaxBytes). */
  historyMaxTopics: number;
  /** Memory all histories together may hold (frames, ring slots, overhead); beyond it the least recently used unsubscribed topics lose theirs. */
  historyMaxTotalBytes: number;
  /** Topics one connection may bring into existence per minute (by subscribe, publish or history on a topic that did not exist and would keep a history). */
  maxNewTopicsPerMinute: number;
  /** Largest command or message (bytes of the frame's payload) answered with a reply; larger gets TOO_LARGE. */
  maxMessageBytes: number;
  /** Negotiate permessage-deflate with clients that offer it (every browser does). */
  deflate: boolean;
  /** Messages shorter than this many bytes go uncompressed on a deflate connection. */
  deflateThreshold: number;
  /** Give V8's young generation back when the process goes quiet (one full GC after 5 s of quiet; ServerOptions.idleGc). */
  idleGc: boolean;
  /** Commands per second per connection (token bucket refill). */
  rateLimit: number;
  /** Token bucket size: a burst of this many commands is allowed. */
  rateBurst: number;
  /** Errors (rate-limited commands included) within abuseWindowMs that close the connection with 1008. */
  abuseMaxErrors: number;
  abuseWindowMs: number;
  presenceMaxMembers: number;
  presenceMaxMetaBytes: number;
  presenceMaxTopics: number;
  /**
   * Frames one connection may send while its `presence online` waits for the other nodes
   * (they are held, in order, until the reply is sent); one more closes it with 1008.
   */
  onlineHeldFrames: number;
  /** Bytes of such held frames, all connections together; past it the connection that would exceed it is closed with 1008. */
  onlineHeldBytes: number;
  /**
   * Replies one connection may have waiting behind a publish the cluster has not yet ordered
   * (history topics in a cluster: a publish is answered once it is held on two nodes); at it,
   * the connection's later frames are held as for `presence online` (onlineHeldFrames, onlineHeldBytes).
   */
  maxWaitingPublishes: number;
  /** Distinct token permission sets shared between connections; past it the cache starts over (0: no sharing). */
  maxSharedScopes: number;
  /** Open connections; beyond it new ones get 1013 with a retry-after hint. 0 = unlimited. */
  maxConnections: number;
  /** Sockets from one address at once, open connections included (429 and close beyond). 0 = unlimited. */
  maxConnectionsPerAddress: number;
  /** Sockets from one address in the handshake at once (429 and close beyond). 0 = unlimited. */
  maxHandshakesPerAddress: number;
  /** Sockets in the handshake at once (503 and close beyond). 0 = unlimited. */
  maxHandshakes: number;
  /**
   * Addresses and CIDR blocks of load balancers and proxies in front of this server: exempt
   * from the per-address limits, for every client behind them (the limits act at accept, before
   * a forwarded address could be read).
   */
  trustedProxies: string[];
  /** Subscriptions per connection (presence watches count too). */
  maxSubscriptions: number;
  /** Bytes of a topic name. */
  maxTopicBytes: number;
  /** Bytes of an HTTP request body (POST /api/publish); larger gets 413. */
  maxBodyBytes: number;
  /**
   * Time for a whole plain HTTP request, head and body; slower gets 408. Also the time a
   * response may wait on a client that does not read it: without progress, the connection closes.
   */
  httpRequestTimeoutMs: number;
  /** Requests one HTTP connection may have in flight (pipelined, not yet answered); beyond it the connection closes. */
  httpMaxPipelined: number;
  /** An idle kept-alive HTTP connection is closed after this. */
  httpKeepAliveTimeoutMs: number;
  /** Bytes queued for one connection before the slow-consumer policy fires. */
  maxBackpressure: number;
  slowConsumer: SlowConsumerPolicy;
  /** On SIGTERM: time /readyz answers 503 before connections are closed, so a load balancer stops routing here. */
  drainDelayMs: number;
  /** On SIGTERM: time connections get to finish their close handshake before they are destroyed. */
  shutdownTimeoutMs: number;
  /** The retry-after hint (seconds) sent with 1012 on restart and 1013 when full, draining or overloaded. */
  retryAfterSeconds: number;
  /** In a cluster, shed connections while this node is above the cluster mean by rebalanceMargin (src/app/shed-policy.ts). */
  rebalance: boolean;
  /** Start rebalancing above the mean by this percentage of it; shed down to the mean. */
  rebalanceMargin: number;
  /** ... and only when the excess is at least this many connections. */
  rebalanceMinExcess: number;
  /** A member that joined less than this long ago does not count in the mean yet. */
  rebalanceJoinDelayMs: number;
  /** Connections shed per second, in percent of this node's connections (rebalancing and overload alike). */
  shedRate: number;
  /** Event-loop delay (p99 over a second) above which, two seconds running, the node is overloaded. 0 = off. */
  overloadLagMs: number;
  /** Percent of the memory limit (cgroup or machine) for RSS, and of V8's heap limit for the heap, above which the node is overloaded. 0 = off. */
  overloadMemory: number;
}

export const DEFAULT_APP_CONFIG: Readonly<AppConfig> = {
  /** 8080: the usual unprivileged HTTP alternative port. */
  port: 8080,
  /** Loopback: a fresh `npm start` is not reachable from the network until asked (--host 0.0.0.0). */
  host: '127.0.0.1',
  secret: undefined,
  requireToken: false,
  /** The demo chat works out of the box: anonymous users may use room:* topics. */
  anonymous: { subscribe: ['room:*'], publish: ['room:*'], presence: ['room:*'] },
  apiKey: undefined,
  origins: [],
  /** Rooms are where people come back after a reload. */
  historyTopics: ['room:*'],
  /** 1,000 messages: a long chat scroll-back, and a reload or reconnect never misses any. */
  historyMaxMessages: 1000,
  /** 1 MiB per topic: a long scroll-back of chat; historyMaxTotalBytes bounds all topics together. */
  historyMaxBytes: 1024 * 1024,
  /** One hour: longer gaps are a resync, not a recovery. */
  historyMaxAgeMs: 3_600_000,
  /** 10,000 topics with history; beyond it the least recently used unsubscribed one loses its history (a subscribed one never does). */
  historyMaxTopics: 10_000,
  /** 256 MiB: the history of 10,000 busy rooms fits in a small server; what nobody subscribes to goes first. */
  historyMaxTotalBytes: 256 * 1024 * 1024,
  /** 60 a minute: a client opening rooms for people stays far under it; a flood of new topics meets TOO_MANY_NEW_TOPICS and then the abuse close. */
  maxNewTopicsPerMinute: 60,
  /** 64 KiB: chat and JSON events fit; files do not belong in a message. */
  maxMessageBytes: 64 * 1024,
  /** On: JSON chat compresses 3-10x, and with no context takeover an idle connection costs nothing more (docs/compression.md). */
  deflate: true,
  /** 64 bytes, as the library's deflateThreshold: smaller messages gain little and cost a zlib call. */
  deflateThreshold: DEFAULT_LIMITS.deflateThreshold,
  /** On: never runs while the loop is busy, and gives back up to 32 MiB (~0.6-1.2 KiB per idle connection at 10,000-19,000) once quiet (docs/serve-memory.md). */
  idleGc: true,
  /** 50 commands/s sustained: far above a person typing, low enough that one client cannot hog a core. */
  rateLimit: 50,
  /** 100: a reconnect that resubscribes and rejoins many topics at once is not throttled. */
  rateBurst: 100,
  /** 20 errors in 10 s: a buggy client sees its errors, a hostile one is cut off within a second of flooding. */
  abuseMaxErrors: 20,
  abuseWindowMs: 10_000,
  /** 1,000 members per topic: presence lists are sent whole on watch. */
  presenceMaxMembers: 1000,
  /** 512 bytes of meta: a name and a status, not a profile. */
  presenceMaxMetaBytes: 512,
  /** 32 topics one connection is present in. */
  presenceMaxTopics: 32,
  /** 128: above rateBurst (100), so a client's burst behind an `online` is held, not cut; frames beyond a burst would be refused anyway. */
  onlineHeldFrames: 128,
  /** 16 MiB: 256 connections' worth of 64 KiB frames; an answer takes a round trip, so honest clients hold a few bytes each. */
  onlineHeldBytes: 16 * 1024 * 1024,
  /** 256: a publisher keeps 256 publishes in flight (a few ms each on a LAN: tens of thousands a second); a reply slot costs ~100 bytes. */
  maxWaitingPublishes: 256,
  /** 1,024 sets: an application's roles fit many times over; tokens with per-user patterns cannot grow it (it starts over, at ~100 bytes a set). */
  maxSharedScopes: 1024,
  maxConnections: 0,
  /** 4,096 sockets per address: a large office or carrier NAT fits; one address cannot hold a node's descriptors. */
  maxConnectionsPerAddress: 4096,
  /** The library's 1,024 (src/limits.ts): a NAT's reconnect storm fits. */
  maxHandshakesPerAddress: DEFAULT_LIMITS.maxHandshakesPerAddress,
  /** The library's 4,096 (src/limits.ts). */
  maxHandshakes: DEFAULT_LIMITS.maxHandshakes,
  /** None: behind a load balancer, list its addresses, or every client shares its per-address limit. */
  trustedProxies: [],
  /** 100 per connection: a client in more rooms than this should use a pattern topic design instead. */
  maxSubscriptions: 100,
  /** 200 bytes: leaves room under the library's 256-byte limit for the server's internal "$p:" presence topics. */
  maxTopicBytes: 200,
  /** 64 KiB, as maxMessageBytes: the API publishes one message per request. */
  maxBodyBytes: 64 * 1024,
  /** 30 s: a 64 KiB body over a slow mobile link, not a connection held open by a trickle. */
  httpRequestTimeoutMs: 30_000,
  /** 128: clients that pipeline send a few dozen at most; each request in flight holds node:http's request and response objects (a few KB). */
  httpMaxPipelined: 128,
  /** 5 s: a scraper's or a load balancer's next check reuses the connection; an idle one costs a socket and node:http's parser. */
  httpKeepAliveTimeoutMs: 5_000,
  /** 1 MiB, the library default. */
  maxBackpressure: 1024 * 1024,
  /** Close slow consumers: they reconnect and recover from history instead of silently missing messages. */
  slowConsumer: 'close',
  /** 0 for a laptop; behind a load balancer set it above the balancer's health-check interval (e.g. 5000). */
  drainDelayMs: 0,
  /** 10 s, the library default. */
  shutdownTimeoutMs: 10_000,
  /** 2 s: long enough for a replacement to come up, short enough that users barely notice. */
  retryAfterSeconds: 2,
  /** On: a node added to a cluster takes its share within a minute instead of idling until users leave on their own. */
  rebalance: true,
  /** 10%: churn on balanced nodes stays well inside it (docs/benchmarks.md), and 4 nodes end within 25% +/- 2.5%. */
  rebalanceMargin: 10,
  /** 20 connections: on small nodes a difference of a few connections is noise, not worth a reconnect. */
  rebalanceMinExcess: 20,
  /** 5 s: above the time a load balancer takes to let a new node in (the documented HAProxy checks: 2 x 1 s). */
  rebalanceJoinDelayMs: 5_000,
  /** 1% a second: a node of 10,000 sheds 100 a second, a reconnect rate any node absorbs; a 4th node fills in about 30 s. */
  shedRate: 1,
  /** 500 ms: measured on the 2-core machine (native-bench/cluster/rebalance.mjs, docs/benchmarks.md), 4 nodes of 750 clients under churn show a p99 of 36 ms (60 ms at worst); a broadcast flood that keeps both cores busy, 120 ms (418 ms at worst): only a node past that is saturated. */
  overloadLagMs: 500,
  /** 90%: V8 slows down collecting near its heap limit and dies at it; RSS near the cgroup limit is an OOM kill. */
  overloadMemory: 90,
};

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Fills defaults and checks ranges. @throws ConfigError with a message naming the setting. */
export function resolveConfig(partial: Partial<AppConfig> = {}): AppConfig {
  const c: AppConfig = { ...DEFAULT_APP_CONFIG, ...stripUndefined(partial) };
  c.anonymous = { ...DEFAULT_APP_CONFIG.anonymous, ...partial.anonymous };
  const int = (name: keyof AppConfig, min: number, max = Number.MAX_SAFE_INTEGER): void => {
    const v = c[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  };
  int('port', 0, 65535);
  int('historyMaxMessages', 0);
  int('historyMaxBytes', 0);
  int('historyMaxAgeMs', 0);
  int('historyMaxTopics', 0);
  int('maxNewTopicsPerMinute', 1);
  int('historyMaxTotalBytes', 0);
  int('maxMessageBytes', 64, 64 * 1024 * 1024);
  if (typeof c.deflate !== 'boolean') throw new ConfigError(`deflate must be true or false, got ${String(c.deflate)}`);
  int('deflateThreshold', 0);
  if (typeof c.idleGc !== 'boolean') throw new ConfigError(`idleGc must be true or false, got ${String(c.idleGc)}`);
  if (!(c.rateLimit > 0) || !Number.isFinite(c.rateLimit)) throw new ConfigError(`rateLimit must be a positive number, got ${c.rateLimit}`);
  int('rateBurst', 1);
  int('abuseMaxErrors', 1);
  int('abuseWindowMs', 1);
  int('presenceMaxMembers', 1);
  int('presenceMaxMetaBytes', 2);
  int('presenceMaxTopics', 1);
  int('onlineHeldFrames', 0);
  int('onlineHeldBytes', 0);
  int('maxWaitingPublishes', 1);
  int('maxSharedScopes', 0);
  int('maxConnections', 0);
  int('maxConnectionsPerAddress', 0);
  int('maxHandshakesPerAddress', 0);
  int('maxHandshakes', 0);
  if (!Array.isArray(c.trustedProxies) || c.trustedProxies.some((p) => typeof p !== 'string')) throw new ConfigError('trustedProxies must be a list of addresses or CIDR blocks');
  try {
    new Admission(c.trustedProxies);
  } catch (err) {
    throw new ConfigError(`trustedProxies: ${(err as Error).message}`);
  }
  int('maxSubscriptions', 1);
  int('maxTopicBytes', 1, 250);
  int('maxBodyBytes', 1);
  int('httpRequestTimeoutMs', 1);
  int('httpKeepAliveTimeoutMs', 1);
  int('httpMaxPipelined', 1);
  int('maxBackpressure', 1024);
  int('drainDelayMs', 0);
  int('shutdownTimeoutMs', 0);
  int('retryAfterSeconds', 0, 3600);
  if (typeof c.rebalance !== 'boolean') throw new ConfigError(`rebalance must be true or false, got ${String(c.rebalance)}`);
  int('rebalanceMargin', 1, 1000);
  int('rebalanceMinExcess', 1);
  int('rebalanceJoinDelayMs', 0);
  if (typeof c.shedRate !== 'number' || !(c.shedRate > 0) || c.shedRate > 100) throw new ConfigError(`shedRate must be a number above 0 and at most 100, got ${String(c.shedRate)}`);
  int('overloadLagMs', 0);
  int('overloadMemory', 0, 100);
  if (c.slowConsumer !== 'drop' && c.slowConsumer !== 'close') throw new ConfigError(`slowConsumer must be drop or close, got ${String(c.slowConsumer)}`);
  if (typeof c.host !== 'string' || c.host === '') throw new ConfigError('host must be a non-empty string');
  if (c.requireToken && (c.secret === undefined || c.secret === '')) throw new ConfigError('requireToken needs a secret (--secret or MURMUR_SECRET)');
  if (c.secret === '') c.secret = undefined;
  if (c.apiKey === '') c.apiKey = undefined;
  try {
    c.historyTopics = checkPatterns(c.historyTopics, 'history');
    c.anonymous = {
      subscribe: checkPatterns(c.anonymous.subscribe, 'anonymous subscribe'),
      publish: checkPatterns(c.anonymous.publish, 'anonymous publish'),
      presence: checkPatterns(c.anonymous.presence, 'anonymous presence'),
    };
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  return c;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
