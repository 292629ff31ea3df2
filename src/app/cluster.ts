/**
 * `murmur serve` in a cluster: the gossip node (SWIM membership over UDP, push-pull over TCP,
 * AES-256-GCM with a shared key), the cluster-wide presence store replicated over it, and the
 * view of members that GET /api/cluster/members and /metrics show.
 *
 * Every node gossips a small JSON object as its member meta, `{"http":"host:port"}`: the
 * address of its HTTP/WebSocket port, which other code reads to open node-to-node links.
 * Other keys may be added later; readers ignore keys they do not know.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { GossipNode, GossipJoinError, type GossipReject } from '../cluster/gossip/node.js';
import { LogLimiter } from '../cluster/bus/stats.js';
import { DEFAULT_LAN_CONFIG, resolveConfig as resolveGossipConfig } from '../cluster/gossip/gossip-config.js';
import type { GossipConfig } from '../cluster/gossip/gossip-config.js';
import { Keyring } from '../cluster/gossip/security.js';
import type { MemberInfo, MembershipEvent, MembershipEventType, MemberState } from '../cluster/gossip/transport.js';
import { ClusterPresence, replicationTiming } from '../cluster/presence/store.js';
import type { ClusterPresenceLimits } from '../cluster/presence/store.js';
import { PresenceReplicator } from '../cluster/presence/runtime.js';
import { loadFromWire, loadToWire } from './load.js';
import type { LoadSummary } from './load.js';
import type { PeerLoad } from './shed-policy.js';

/** The gossip port when none is given (memberlist's and Serf's). */
export const DEFAULT_GOSSIP_PORT = 7946;
/** Longest node id: it travels in every membership message and every presence delta. */
export const MAX_NODE_ID_LENGTH = 128;
/** Bytes of the member meta we accept to read back (the gossip layer bounds it at 512). */
const MAX_HTTP_ADDR_LENGTH = 300;
/** Seeds configured but no member reached for this long: /readyz says not ready. 10 s: a seed that answers at all answers in milliseconds, and seeds started in any order find each other within the join backoff's first steps. */
export const DEFAULT_CLUSTER_READY_TIMEOUT_MS = 10_000;
/** One log line per reason (and per conflicting address) at most this often: a refused peer retrying every 100 ms must not flood stderr. */
const CLUSTER_LOG_INTERVAL_MS = 10_000;
/** A load summary goes out at most once per this many ms: each one is an alive message with a new incarnation, retransmitted to every member. */
export const LOAD_MIN_INTERVAL_MS = 1_000;
/** ... and at least once per this many ms while nothing changes, so a member's figures are never older than this (plus gossip's spread). */
export const LOAD_REFRESH_MS = 10_000;
/** A change of connections this large (fraction, or LOAD_MIN_CHANGE connections if more) goes out at the next interval; smaller ones wait for the refresh. */
const LOAD_CHANGE_FRACTION = 0.02;
const LOAD_MIN_CHANGE = 5;
/** Exit code of `murmur serve` refused for a node id another live process holds. */
export const EXIT_NODE_ID_CONFLICT = 3;

/** How published messages reach the other nodes. */
export type BusKind = 'mesh' | 'redis' | 'none';

export interface ClusterOptions {
  /** Unique name of this node in the cluster: 1-128 of A-Z a-z 0-9 . _ - : (default: host name plus 8 random hex digits). */
  nodeId?: string;
  /** Address the gossip UDP and TCP sockets bind (default: the HTTP host). */
  bindHost?: string;
  /** Gossip port, UDP and TCP (default 7946; 0 picks a free one). */
  port?: number;
  /** Host other nodes reach this one at, for gossip and HTTP (default: the bind host; required with a wildcard bind). */
  advertiseHost?: string;
  /** `host:port` of nodes to join through; none: this node starts a cluster that others join. */
  seeds?: readonly string[];
  /** Cluster keys, 32 bytes each, the first one sends (the rest are accepted: rotation). */
  keys: readonly Uint8Array[];
  /** Cluster label: nodes of different labels never exchange a packet. */
  label?: string;
  /** Gossip timings and bounds (default: the LAN values of DEFAULT_LAN_CONFIG). */
  gossip?: Partial<GossipConfig>;
  /** `host:port` gossiped as this node's HTTP address (default: advertise host and the HTTP port). */
  advertiseHttp?: string;
  /** Start of the join retry backoff when no seed answers (default 500 ms, doubling up to 10 s). */
  joinRetryMs?: number;
  /** How published messages reach the other nodes: a direct mesh (default), Redis pub/sub, or none. */
  bus?: BusKind;
  /** With bus 'redis': redis://[user:password@]host:port[/db] (default redis://127.0.0.1:6379). */
  redisUrl?: string;
  /** With seeds, /readyz answers 503 when no member was reached this long after start (default 10 s). */
  readyTimeoutMs?: number;
}

/** Another live process holds our node id; this node, the later one, stops. */
export class NodeIdConflictError extends Error {
  override readonly name = 'NodeIdConflictError';
  readonly code = 'CLUSTER_ERR_NODE_ID_CONFLICT';
}

/** One member as the HTTP API shows it. */
export interface ClusterMember {
  id: string;
  /** Gossip address, host:port. */
  address: string;
  /** HTTP address from its meta, or null when it gossips none. */
  http: string | null;
  state: MemberState;
  incarnation: number;
  /** Its last load summary (src/app/load.ts), or null when it gossips none. */
  load: LoadSummary | null;
}

/** A membership change, as App emits it ('member'). */
export interface ClusterMemberEvent {
  type: MembershipEventType;
  member: ClusterMember;
  /** Monotonic ms (performance.now()) when this node saw it. */
  at: number;
}

export class ClusterConfigError extends Error {
  override readonly name = 'ClusterConfigError';
}

const WILDCARDS = new Set(['0.0.0.0', '::', '[::]', '']);

/** A node id from the host name: readable in logs, unique thanks to the random part. */
export function generateNodeId(): string {
  const host = hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 40) || 'node';
  return `${host}-${randomBytes(4).toString('hex')}`;
}

/** Checks a node id. @throws ClusterConfigError */
export function checkNodeId(id: string): string {
  if (id.length === 0 || id.length > MAX_NODE_ID_LENGTH || !/^[A-Za-z0-9._:-]+$/.test(id)) {
    throw new ClusterConfigError(`a node id is 1-${MAX_NODE_ID_LENGTH} characters of A-Z a-z 0-9 . _ - :, got ${JSON.stringify(id)}`);
  }
  return id;
}

/**
 * A cluster key from text: 32 bytes as base64 (44 characters, standard or URL alphabet) or
 * hex (64 digits). @throws ClusterConfigError
 */
export function parseClusterKey(text: string): Buffer {
  const t = text.trim();
  let key: Buffer | null = null;
  if (/^[0-9a-fA-F]{64}$/.test(t)) key = Buffer.from(t, 'hex');
  else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) key = Buffer.from(t, 'base64');
  if (key === null || key.length !== 32) throw new ClusterConfigError('a cluster key is 32 bytes as base64 (44 characters) or hex (64 digits); make one with: openssl rand -base64 32');
  return key;
}

/**
 * The meta every node gossips: a UTF-8 JSON object whose "http" key is its HTTP address and
 * "since" the wall-clock ms it started (of two processes claiming one node id, the later one yields).
 */
export function encodeNodeMeta(http: string, since?: number, load?: LoadSummary): Uint8Array {
  const v: Record<string, unknown> = { http };
  if (since !== undefined) v.since = since;
  if (load !== undefined) v.load = loadToWire(load);
  return Buffer.from(JSON.stringify(v), 'utf8');
}

/** Parsed load summaries by meta object: a member's meta is replaced, never changed in place, on every update. */
const loadCache = new WeakMap<Uint8Array, LoadSummary | null>();

/** The "load" key of a member's meta (checked: src/app/load.ts), or null. */
export function loadOfMeta(meta: Uint8Array): LoadSummary | null {
  const hit = loadCache.get(meta);
  if (hit !== undefined) return hit;
  let load: LoadSummary | null = null;
  if (meta.length > 0) {
    try {
      const v = JSON.parse(Buffer.from(meta.buffer, meta.byteOffset, meta.byteLength).toString('utf8')) as { load?: unknown } | null;
      load = loadFromWire(v?.load);
    } catch {
      load = null;
    }
  }
  loadCache.set(meta, load);
  return load;
}

/** The "since" key of a member's meta, or null. */
function sinceOfMeta(meta: Uint8Array): number | null {
  try {
    const v = JSON.parse(Buffer.from(meta.buffer, meta.byteOffset, meta.byteLength).toString('utf8')) as { since?: unknown } | null;
    return typeof v?.since === 'number' && Number.isFinite(v.since) ? v.since : null;
  } catch {
    return null;
  }
}

/** The "http" key of a member's meta, or null (no meta, not JSON, no such key). */
export function httpOfMeta(meta: Uint8Array): string | null {
  if (meta.length === 0) return null;
  try {
    const v = JSON.parse(Buffer.from(meta.buffer, meta.byteOffset, meta.byteLength).toString('utf8')) as unknown;
    if (typeof v !== 'object' || v === null) return null;
    const http = (v as Record<string, unknown>).http;
    return typeof http === 'string' && http.length <= MAX_HTTP_ADDR_LENGTH ? http : null;
  } catch {
    return null;
  }
}

function memberView(m: MemberInfo): ClusterMember {
  return { id: m.name, address: m.addr, http: httpOfMeta(m.meta), state: m.state, incarnation: m.incarnation, load: loadOfMeta(m.meta) };
}

function hostForAddr(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/**
 * The cluster side of an App. Emits 'member' (ClusterMemberEvent) for every membership change,
 * 'joined' (seeds answered), 'join-failed' (Error; it retries), 'log' (a rate-limited line:
 * refused packets and streams with the address and the reason, node id conflicts) and
 * 'conflict' (NodeIdConflictError: another live process held our node id first; the gossip
 * node is stopped).
 */
export class AppCluster extends EventEmitter {
  readonly id: string;
  readonly presence: ClusterPresence;
  readonly gossipConfig: GossipConfig;
  readonly #options: ClusterOptions;
  readonly #bindHost: string;
  readonly #advertiseHost: string | undefined;
  #node: GossipNode | null = null;
  #replicator: PresenceReplicator | null = null;
  #joinTimer: NodeJS.Timeout | null = null;
  #stopped = false;
  #startedAt = 0;
  /** True once any other member was seen alive (readiness). */
  #reached = false;
  #lastJoinError = '';
  /** Set when this node yielded its id to an earlier process. */
  #conflict: string | null = null;
  /** This node's HTTP address and start time, as its meta carries them. */
  #http = '';
  #since = 0;
  /** The summary last gossiped, and when (performance.now()). */
  #load: LoadSummary | null = null;
  #loadAt = -Infinity;
  /** When each other member was last seen joining (performance.now()): a newcomer is counted in the mean only after a delay. */
  readonly #joinedAt = new Map<string, number>();
  readonly #log = new LogLimiter((line) => this.emit('log', line), CLUSTER_LOG_INTERVAL_MS);

  /** @throws ClusterConfigError for a bad id, key, timing or a wildcard bind without an advertised host. */
  constructor(options: ClusterOptions, defaultHost: string, limits: Partial<ClusterPresenceLimits>) {
    super();
    this.#options = options;
    this.id = checkNodeId(options.nodeId ?? generateNodeId());
    if (options.keys.length === 0) throw new ClusterConfigError('a cluster needs a key (--cluster-key or MURMUR_CLUSTER_KEY)');
    for (const k of options.keys) if (k.length !== 32) throw new ClusterConfigError('a cluster key is 32 bytes');
    try {
      this.gossipConfig = resolveGossipConfig({ ...DEFAULT_LAN_CONFIG, ...options.gossip });
    } catch (err) {
      throw new ClusterConfigError((err as Error).message);
    }
    this.#bindHost = options.bindHost ?? defaultHost;
    this.#advertiseHost = options.advertiseHost;
    if (this.#advertiseHost === undefined && WILDCARDS.has(this.#bindHost)) {
      throw new ClusterConfigError(`a cluster node bound to ${this.#bindHost || 'every interface'} must say where others reach it: --advertise-host`);
    }
    if (options.label !== undefined && Buffer.byteLength(options.label) > 255) throw new ClusterConfigError('a cluster label is at most 255 bytes');
    const ready = options.readyTimeoutMs ?? DEFAULT_CLUSTER_READY_TIMEOUT_MS;
    if (!Number.isFinite(ready) || ready <= 0) throw new ClusterConfigError(`the cluster ready timeout must be a positive number of ms, got ${ready}`);
    const port = options.port ?? DEFAULT_GOSSIP_PORT;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ClusterConfigError(`gossip port must be 0-65535, got ${port}`);
    this.presence = new ClusterPresence({ name: this.id, limits, timing: replicationTiming(this.gossipConfig), log: (line) => process.stderr.write(`${line}\n`) });
  }

  /** The settings this cluster side was made with. */
  get settings(): Readonly<ClusterOptions> {
    return this.#options;
  }

  /** The gossip node (after start). */
  get node(): GossipNode {
    if (this.#node === null) throw new Error('cluster not started');
    return this.#node;
  }

  get started(): boolean {
    return this.#node !== null;
  }

  /**
   * Binds the gossip sockets and starts replicating presence; the HTTP address goes into the
   * member meta (`advertiseHttp`, or the advertised host with `httpPort`). Joining the seeds
   * happens in the background, retried with backoff until one answers. Returns the gossip address.
   */
  async start(httpPort: number): Promise<string> {
    if (this.#node !== null) return this.#node.address;
    const o = this.#options;
    const advertise = this.#advertiseHost ?? this.#bindHost;
    const http = o.advertiseHttp ?? `${hostForAddr(advertise)}:${httpPort}`;
    this.#http = http;
    this.#since = Date.now();
    const node = new GossipNode({
      name: this.id,
      bindHost: this.#bindHost,
      port: o.port ?? DEFAULT_GOSSIP_PORT,
      ...(this.#advertiseHost !== undefined ? { advertiseHost: this.#advertiseHost } : {}),
      keys: new Keyring(o.keys),
      label: o.label ?? '',
      meta: encodeNodeMeta(http, this.#since),
      config: this.gossipConfig,
      delegate: this.presence.delegate,
    });
    for (const type of ['join', 'suspect', 'alive', 'dead', 'leave', 'update'] as const) {
      node.on(type, (m: MemberInfo, e: MembershipEvent) => this.emit('member', { type, member: memberView(m), at: e.at } satisfies ClusterMemberEvent));
    }
    node.on('join', (m: MemberInfo) => {
      this.#reached = true;
      this.#joinedAt.set(m.name, performance.now());
    });
    for (const gone of ['dead', 'leave'] as const) node.on(gone, (m: MemberInfo) => this.#joinedAt.delete(m.name));
    node.on('reject', (r: GossipReject) => this.#onReject(r));
    node.on('conflict', (other: MemberInfo) => this.#onConflict(other));
    const addr = await node.start();
    this.#startedAt = performance.now();
    this.#node = node;
    this.#replicator = new PresenceReplicator(this.presence, node);
    this.#replicator.start();
    this.#join(o.joinRetryMs ?? 500);
    return addr;
  }

  /**
   * Why this node should not take traffic, or null. With seeds configured, a node that has not
   * reached another member yet is joining: a client it took now would see none of the cluster
   * (a restarted node would serve a recovery from its empty history, or order a history topic
   * in a new epoch). One that never reached another member within `readyTimeoutMs` of starting
   * is cut off (wrong key or label, another version, a firewall): its presence and messages
   * would reach nobody.
   */
  notReadyReason(now = performance.now()): string | null {
    if (this.#conflict !== null) return `cluster: ${this.#conflict}`;
    if (this.#node === null || this.#reached) return null;
    const seeds = (this.#options.seeds ?? []).filter((s) => s !== this.#node?.address);
    const limit = this.#options.readyTimeoutMs ?? DEFAULT_CLUSTER_READY_TIMEOUT_MS;
    if (seeds.length === 0) return null;
    if (now - this.#startedAt < limit) return 'cluster: joining';
    return `cluster: no member reached within ${limit} ms of start${this.#lastJoinError === '' ? '' : ` (${this.#lastJoinError})`}`;
  }

  #onReject(r: GossipReject): void {
    const who = r.by === 'us' ? `refused a ${r.channel} from ${r.addr}` : `${r.addr} refused our stream`;
    this.#log.line(`${r.channel}:${r.by}:${r.reason}`, `[murmur] cluster: ${who}: ${r.reason}`);
  }

  #onConflict(other: MemberInfo): void {
    const ours = sinceOfMeta(this.node.machine.member(this.id)?.meta ?? new Uint8Array(0));
    const theirs = sinceOfMeta(other.meta);
    // The later process yields; equal or unknown start times fall back to the address order,
    // so exactly one side yields.
    const weYield = ours !== null && theirs !== null && ours !== theirs ? ours > theirs : this.node.address > other.addr;
    if (!weYield) {
      this.#log.line(`conflict:${other.addr}`, `[murmur] cluster: node id ${this.id} is also claimed by a process at ${other.addr}, started later; it is refused and should exit`);
      return;
    }
    if (this.#stopped) return;
    this.#conflict = `node id ${this.id} is held by ${other.addr}`;
    const err = new NodeIdConflictError(`node id ${this.id} is already held by a live process at ${other.addr}; give this node another --node-id`);
    void this.stop().then(() => this.emit('conflict', err));
  }

  /**
   * Gossips this node's load summary in its meta: at most once per LOAD_MIN_INTERVAL_MS, when
   * its state (overloaded, draining) changed or its connections moved by 2% (5 at least), and
   * at least once per LOAD_REFRESH_MS.
   */
  publishLoad(load: LoadSummary, now: number): void {
    const node = this.#node;
    if (node === null || this.#stopped || now - this.#loadAt < LOAD_MIN_INTERVAL_MS) return;
    const prev = this.#load;
    const moved = prev === null ? Infinity : Math.abs(load.connections - prev.connections);
    const changed =
      prev === null || prev.overloaded !== load.overloaded || prev.draining !== load.draining || moved >= Math.max(LOAD_MIN_CHANGE, prev.connections * LOAD_CHANGE_FRACTION);
    if (!changed && now - this.#loadAt < LOAD_REFRESH_MS) return;
    try {
      node.machine.setMeta(encodeNodeMeta(this.#http, this.#since, load));
    } catch (err) {
      // Over the gossip layer's meta bound (a very long advertised address): the other
      // members see no load from this node, and do not rebalance.
      this.#log.line('load-meta', `[murmur] cluster: cannot gossip the load summary: ${(err as Error).message}`);
      return;
    }
    this.#load = load;
    this.#loadAt = now;
  }

  /** Every other live member with its last load summary, for the shedding policy. */
  peerLoads(now: number): PeerLoad[] {
    if (this.#node === null) return [];
    const out: PeerLoad[] = [];
    for (const m of this.#node.liveMembers()) {
      if (m.name === this.id) continue;
      out.push({ id: m.name, load: loadOfMeta(m.meta), since: this.#joinedAt.get(m.name) ?? now, suspect: m.state === 'suspect' });
    }
    return out;
  }

  /** Members this node knows, itself and tombstones (dead, left) included. */
  members(): ClusterMember[] {
    return this.#node === null ? [] : this.#node.members().map(memberView);
  }

  /** Leave gracefully: peers drop this node (and its presence) at once. Idempotent. */
  async leave(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#joinTimer !== null) clearTimeout(this.#joinTimer);
    this.#replicator?.stop();
    await this.#node?.leave();
  }

  /** Stop without a word (tests: looks like a crash to peers). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#joinTimer !== null) clearTimeout(this.#joinTimer);
    this.#replicator?.stop();
    await this.#node?.stop();
  }

  #join(retryMs: number): void {
    const seeds = (this.#options.seeds ?? []).filter((s) => s !== this.#node?.address);
    if (seeds.length === 0 || this.#stopped) return;
    this.#node?.join(seeds).then(
      (n) => {
        this.#reached = true;
        this.emit('joined', n);
      },
      (err: unknown) => {
        if (this.#stopped) return;
        if (err instanceof GossipJoinError) {
          this.#lastJoinError = err.message;
          this.emit('join-failed', err);
        }
        // Nobody answered yet (seeds starting in any order): try again, backing off.
        this.#joinTimer = setTimeout(() => this.#join(Math.min(retryMs * 2, 10_000)), retryMs);
        this.#joinTimer.unref();
      },
    );
  }
}
