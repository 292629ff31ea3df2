/**
 * ClusterPresence: a PresenceStore whose answers cover the whole cluster, from local memory.
 *
 * Each node is the only writer of the entries of its own connections (its "owner" state).
 * Every local change is one op that advances the owner's version by one; the ops of one
 * event-loop turn are packed into deltas that fit a datagram and go out as gossip broadcasts.
 * Receivers apply a delta only on top of the version it starts from: out-of-order deltas
 * wait in a small buffer, a gap that does not fill within `repairDelayMs` is repaired by a
 * push-pull with the owner (its full state travels over TCP as the gossip delegate state).
 * A node restarted under the same name has a new epoch: the first word of the new life
 * replaces everything of the old one, and the old life's late deltas are ignored. A node
 * that leaves or is declared dead has its entries dropped at once, with a `leave` event for
 * each (and `offline` for users it was the last place of).
 *
 * Sans-I/O like the gossip state machine: time comes from `clock`, the network from a
 * PresenceHost, and the runtime (runtime.ts) or a test drives `flush` and `tick`.
 */
import { performance } from 'node:perf_hooks';
import type { GossipDelegate } from '../gossip/transport.js';
import { WireError } from '../gossip/gossip-wire.js';
import type { JoinResult, OnlineResult, PresenceChange, PresenceEntry, PresenceLimits, PresenceStore } from './types.js';
import {
  decodeBroadcast,
  decodeQuery,
  decodeState,
  deltaHeaderBytes,
  encodeDelta,
  encodeLeave,
  encodeOnlineAnswer,
  encodeOnlineAsk,
  encodeSet,
  encodeState,
  encodeVersion,
  metaJson,
  OpKind,
  PayloadKind,
  STATE_FIXED_BYTES,
  stateEntryBytes,
  stateTopicBytes,
  type Delta,
  type Digest,
  type Op,
  type State,
  type VersionNotice,
  type WireLimits,
} from './presence-wire.js';

/** What the presence layer needs from the membership layer. */
export interface PresenceHost {
  /** Queue a payload to piggyback on gossip; a queued payload with the same key is replaced. */
  broadcast(payload: Uint8Array, key: string): void;
  /** Largest payload `broadcast` accepts (one datagram). */
  readonly maxPayloadBytes: number;
  /** Start a push-pull with member `name` now; false when it cannot. */
  syncWith(name: string): boolean;
  /** Whether `name` is a member alive or suspect right now. */
  isLive(name: string): boolean;
  /** Send a query to member `name` (its answer comes back through the delegate); false when it cannot. */
  query(name: string, payload: Uint8Array): boolean;
}

/** Bounds of the replicated state. Every one is also enforced on what peers send. */
export interface ClusterPresenceLimits extends PresenceLimits {
  /** Bytes of a topic name. */
  maxTopicBytes: number;
  /** Bytes of a user id. */
  maxUserBytes: number;
  /** Entries one node may own; local joins beyond it are 'full', remote ones dropped and counted. */
  maxEntriesPerNode: number;
  /** Online users one node may announce. */
  maxUsersPerNode: number;
  /** Bytes of one node's encoded full state: it must fit a push-pull frame (maxStreamBytes). */
  maxStateBytes: number;
  /** Nodes tracked, tombstones included. */
  maxOwners: number;
  /** Out-of-order deltas held per node while a gap fills. */
  maxBufferedDeltas: number;
  /** Distinct users asked of the other nodes in one round of `askOnline` (also the most a peer's ask may hold). */
  maxAskUsers: number;
  /** `askOnline` calls waiting for or in a round; beyond it they are answered 'busy' at once. */
  maxPendingAsks: number;
  /** Nodes asked at once in a round (the others as answers come in). */
  maxAskStreams: number;
}

export const DEFAULT_CLUSTER_PRESENCE_LIMITS: Readonly<ClusterPresenceLimits> = Object.freeze({
  maxMembers: 1000,
  maxMetaBytes: 512,
  maxTopicsPerConn: 32,
  /** 255: room for any topic the app accepts (maxTopicBytes <= 250). */
  maxTopicBytes: 255,
  /** 512: 128 characters of up to 4 UTF-8 bytes, the app's user id limit. */
  maxUserBytes: 512,
  /** 100,000: at ~200 bytes an entry, 20 MB per node that every other node holds. */
  maxEntriesPerNode: 100_000,
  /** 100,000 distinct users online on one node. */
  maxUsersPerNode: 100_000,
  /** 12 MiB: leaves 4 MiB of the gossip layer's 16 MiB push-pull frame to membership. */
  maxStateBytes: 12 * 1024 * 1024,
  /** 1,024 nodes, tombstones included. */
  maxOwners: 1024,
  /** 64 deltas (~90 KB) per node: reordering by gossip spans a few deltas, not hundreds. */
  maxBufferedDeltas: 64,
  /** 4,096: 40 full `online` commands of 100 users in one round; an ask of ~100 KB, 2 MiB at most with 512-byte ids. */
  maxAskUsers: 4096,
  /** 1,024 callers waiting: a node's whole queue is a few rounds, so a flood is refused, not queued for seconds. */
  maxPendingAsks: 1024,
  /** 16: half of the gossip runtime's 32 outbound streams, leaving room for push-pulls. */
  maxAskStreams: 16,
});

/** Timings of repair, derived from the gossip timings by `replicationTiming`. */
export interface ReplicationTiming {
  /** A version gap waits this long for reordered deltas before the owner is pulled. */
  repairDelayMs: number;
  /** A node that joins (or comes back) is pulled after a random delay up to this, so joins do not make every node pull at once. */
  joinPullJitterMs: number;
  /** A pull that did not bring the owner's state is retried after this (twice), then after twice, four and eight times as long (jittered below). */
  pullRetryMs: number;
  /** Pulls started per tick (half a gossip round) at most; the others due wait for the next tick. */
  maxPullsPerTick: number;
  /** Pending bytes in one turn above which a version notice replaces the deltas (receivers pull the full state over TCP). */
  burstBytes: number;
  /** A dead or left node's record is kept this long, so its late deltas stay ignored. */
  tombstoneTtlMs: number;
  /** A round of `askOnline` answers with what it has after this (partial: a node did not answer). */
  askTimeoutMs: number;
}

/** Repair timings for a gossip configuration (its gossip interval and stream timeout). */
export function replicationTiming(g: { gossipIntervalMs: number; streamTimeoutMs: number; deadMemberTtlMs: number }): ReplicationTiming {
  return {
    // Deltas reordered by gossip arrive within a few rounds of each other.
    repairDelayMs: 3 * g.gossipIntervalMs,
    joinPullJitterMs: 2 * g.gossipIntervalMs,
    pullRetryMs: Math.min(g.streamTimeoutMs, 10 * g.gossipIntervalMs),
    // 4: a node that joins a cluster of many (a machine's 56 workers) pulls 55 states, and
    // on a loaded machine 55 at once outlast their timeout and come back as retries together.
    maxPullsPerTick: 4,
    // 16 datagrams: beyond that, one TCP transfer beats ~16 x retransmits of UDP broadcasts.
    burstBytes: 16 * 1300,
    tombstoneTtlMs: g.deadMemberTtlMs,
    // An answer is one TCP round trip; past 2 s a loaded peer is reported as not answering.
    askTimeoutMs: Math.min(g.streamTimeoutMs, 2000),
  };
}

/** Monotonic counters (gauges are in `replicationStats`). */
export interface PresenceCounters {
  /** Deltas of our own changes broadcast. */
  deltasSent: number;
  /** Ops in them. */
  opsSent: number;
  /** Version notices broadcast (startup, bursts, oversized ops). */
  noticesSent: number;
  /** Presence deltas received (our own echoes excluded). */
  deltasReceived: number;
  /** Deltas applied (at once or after waiting in the buffer). */
  deltasApplied: number;
  /** Deltas already applied or already buffered. */
  deltasDuplicate: number;
  /** Deltas of an older epoch or of a node that is not a live member. */
  deltasStale: number;
  /** Deltas dropped: malformed, over a limit, or the buffer was full. */
  deltasDropped: number;
  /** Deltas and notices passed on (epidemic: what is new to us is new to others). */
  rebroadcasts: number;
  /** Full states merged from push-pull. */
  statesMerged: number;
  /** Full states dropped: malformed or over a limit. */
  statesDropped: number;
  /** Repair pulls started (push-pull with an owner). */
  pulls: number;
  /** Remote entries or users refused by maxEntriesPerNode / maxUsersPerNode / maxOwners. */
  limitDrops: number;
  /** Local changes too large for one datagram (peers get them by pulling). */
  oversizeOps: number;
  /** Rounds of `askOnline` started (one ask to every other node). */
  askRounds: number;
  /** Nodes that did not answer a round in time (or could not be asked). */
  askTimeouts: number;
  /** `askOnline` calls answered 'busy' (maxPendingAsks). */
  asksRefused: number;
  /** Asks of other nodes answered here. */
  asksAnswered: number;
  /** Asks or answers from peers dropped as malformed or over a limit. */
  asksDropped: number;
  /** Nodes whose entries were dropped: dead, left, or restarted with a new epoch. */
  ownersDropped: number;
}

export interface ClusterPresenceOptions {
  /** This node's member name: the owner id of its entries. */
  name: string;
  /** This life of the node; default Date.now(), so a restart supersedes the previous life. */
  epoch?: number;
  limits?: Partial<ClusterPresenceLimits>;
  timing?: Partial<ReplicationTiming>;
  /** Monotonic ms (default performance.now); the simulator passes its virtual clock. */
  clock?: () => number;
  random?: () => number;
  /**
   * Where a line goes when a peer's delta or state is dropped as malformed (bad UTF-8, over a
   * limit): at most one per DROP_LOG_INTERVAL_MS, with the count since the last. Default: none.
   */
  log?: (line: string) => void;
}

/** Malformed presence input from peers is logged at most once per this interval (ms, on `clock`). */
export const DROP_LOG_INTERVAL_MS = 10_000;

/** One node's presence as this node holds it. Fixed shape. */
class Owner {
  readonly name: string;
  /** Life of the node the state belongs to; 0 = not known yet. */
  epoch = 0;
  /** Every op up to this one is applied. */
  version = 0;
  /** Highest version heard of in this epoch (> version means a gap). */
  seen = 0;
  /** False once the member died or left (a tombstone: no entries, deltas ignored). */
  live = true;
  goneAt = 0;
  /** Our copy may be incomplete (the node joined or came back): pull its full state. */
  needFull = false;
  /**
   * Back from dead in the same epoch: version 0 here means "nothing known", not "no changes
   * yet", so deltas wait in the buffer until the full state arrives (an old copy of the
   * first delta still circulating must not be applied on top of nothing).
   */
  blind = false;
  /** When to pull next (Infinity: no pull planned). */
  pullAt = Infinity;
  /** Pulls since the owner's state last arrived: the retry's backoff exponent. */
  pullTries = 0;
  readonly topics = new Map<string, Map<string, PresenceEntry>>();
  readonly users = new Set<string>();
  entries = 0;
  /** Deltas that arrived ahead of a gap, in arrival order. */
  buffer: Delta[] | null = null;

  constructor(name: string) {
    this.name = name;
  }
}

const EMPTY = new Uint8Array(0);

/** One `askOnline` call waiting for a round: the users not known here, and its callback. */
interface Ask {
  users: string[];
  online: Set<string>;
  done: (result: OnlineResult) => void;
}

/** The round of asks in flight: one ask to every other live node. */
class Round {
  readonly id: number;
  readonly users: string[];
  readonly asks: Ask[];
  readonly payload: Uint8Array;
  readonly deadline: number;
  /** Nodes asked or to be asked that have not answered. */
  readonly waiting = new Set<string>();
  /** Nodes still to be asked (at most maxAskStreams are asked at once). */
  readonly unsent: string[];
  readonly online = new Set<string>();
  partial = false;

  constructor(id: number, users: string[], asks: Ask[], payload: Uint8Array, peers: string[], deadline: number) {
    this.id = id;
    this.users = users;
    this.asks = asks;
    this.payload = payload;
    this.deadline = deadline;
    for (const p of peers) this.waiting.add(p);
    this.unsent = peers.reverse();
  }
}

function deltaEnd(d: Delta): number {
  return d.base + d.ops.length;
}

function sameMeta(a: PresenceEntry['meta'], b: PresenceEntry['meta']): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * The cluster-wide PresenceStore. Local calls (connect, join, ...) change this node's own
 * entries and emit their events at once; remote changes arrive through `delegate` (give it
 * to the GossipNode) and `onMember` (membership events), and emit the same events.
 */
export class ClusterPresence implements PresenceStore {
  readonly name: string;
  readonly epoch: number;
  readonly limits: ClusterPresenceLimits;
  readonly timing: ReplicationTiming;
  readonly counters: PresenceCounters = {
    deltasSent: 0,
    opsSent: 0,
    noticesSent: 0,
    deltasReceived: 0,
    deltasApplied: 0,
    deltasDuplicate: 0,
    deltasStale: 0,
    deltasDropped: 0,
    rebroadcasts: 0,
    statesMerged: 0,
    statesDropped: 0,
    pulls: 0,
    limitDrops: 0,
    oversizeOps: 0,
    askRounds: 0,
    askTimeouts: 0,
    asksRefused: 0,
    asksAnswered: 0,
    asksDropped: 0,
    ownersDropped: 0,
  };
  /** The hooks to hand to the gossip layer (GossipNodeOptions.delegate). */
  readonly delegate: GossipDelegate;
  /** Called once when the first change of a turn is pending: the runtime schedules `flush`. */
  onPending: (() => void) | null = null;

  readonly #clock: () => number;
  readonly #random: () => number;
  readonly #log: ((line: string) => void) | null;
  #dropLoggedAt = -Infinity;
  #dropsUnlogged = 0;
  readonly #wire: WireLimits;
  readonly #self: Owner;
  /** Other nodes, tombstones included. */
  readonly #owners = new Map<string, Owner>();
  readonly #listeners = new Set<(change: PresenceChange) => void>();
  #host: PresenceHost | null = null;

  // Local bookkeeping.
  readonly #connTopics = new Map<string, string[]>();
  /** Users with a connection here: held here only, other nodes ask (askOnline). */
  readonly #userConns = new Map<string, number>();
  /** Encoded size of our full state, kept below maxStateBytes. */
  #stateBytes: number;

  // Asks of askOnline: waiting for a round, and the round in flight.
  #asks: Ask[] = [];
  #round: Round | null = null;
  #roundSeq = 0;

  // Cluster-wide indexes.
  /** user -> number of other nodes announcing it online: only nodes of an older release announce users. */
  readonly #userOwners = new Map<string, number>();
  /** topic -> entries cluster-wide. */
  readonly #topicCount = new Map<string, number>();
  #entries = 0;

  // Our changes of this turn, encoded once.
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #pendingBase = 0;
  /** More pending than burstBytes: a version notice goes out instead of deltas. */
  #overflow = false;

  constructor(options: ClusterPresenceOptions) {
    this.name = options.name;
    this.epoch = options.epoch ?? Date.now();
    if (!Number.isSafeInteger(this.epoch) || this.epoch < 1) throw new RangeError('epoch must be a positive safe integer');
    const n = Buffer.byteLength(this.name, 'utf8');
    if (n === 0 || n > 255) throw new RangeError('name must be 1..255 UTF-8 bytes');
    this.limits = { ...DEFAULT_CLUSTER_PRESENCE_LIMITS, ...options.limits };
    this.timing = { ...replicationTiming({ gossipIntervalMs: 200, streamTimeoutMs: 10_000, deadMemberTtlMs: 3_600_000 }), ...options.timing };
    this.#clock = options.clock ?? (() => performance.now());
    this.#random = options.random ?? Math.random;
    this.#log = options.log ?? null;
    const l = this.limits;
    this.#wire = {
      maxTopicBytes: l.maxTopicBytes,
      maxUserBytes: l.maxUserBytes,
      maxMetaBytes: l.maxMetaBytes,
      maxEntriesPerNode: l.maxEntriesPerNode,
      maxUsersPerNode: l.maxUsersPerNode,
      maxOwners: l.maxOwners,
      maxAskUsers: l.maxAskUsers,
    };
    this.#self = new Owner(this.name);
    this.#self.epoch = this.epoch;
    this.#stateBytes = STATE_FIXED_BYTES + 1 + n;
    this.delegate = {
      notifyMessage: (payload) => this.#onBroadcast(payload),
      localState: () => this.#localState(),
      mergeRemoteState: (state) => this.#onState(state),
      answerQuery: (payload) => this.#answerAsk(payload),
      queryAnswered: (payload) => this.#onAnswer(payload),
    };
  }

  // ---------------------------------------------------------------- wiring

  /** Start replicating through `host`; announces our epoch and version (a restart replaces our previous life at once). */
  attach(host: PresenceHost): void {
    this.#host = host;
    // Changes made before replication started are covered by the notice: peers pull them.
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#overflow = false;
    this.#broadcast(encodeVersion(this.name, this.epoch, this.#self.version), 'p/v');
    this.counters.noticesSent++;
  }

  /** Stop replicating (the runtime stopped); local answers keep working. */
  detach(): void {
    this.#host = null;
  }

  /**
   * A membership event: `dead` and `leave` drop the node's entries (with their events);
   * `join` (a new node, or one back from dead) schedules a pull of its full state.
   */
  onMember(type: string, name: string): void {
    if (name === this.name) return;
    const now = this.#clock();
    if (type === 'dead' || type === 'leave') {
      const o = this.#owners.get(name);
      if (o === undefined || !o.live) return;
      this.#clear(o);
      o.live = false;
      o.goneAt = now;
      o.version = 0;
      o.seen = 0;
      o.needFull = false;
      o.pullAt = Infinity;
      o.buffer = null;
      this.counters.ownersDropped++;
      // A node gone has no users: the round need not wait for it.
      const r = this.#round;
      if (r !== null && r.waiting.delete(name)) this.#roundProgress(r);
      return;
    }
    if (type === 'join') {
      const o = this.#ownerFor(name);
      if (o === null) return;
      this.#revive(o);
      o.needFull = true;
      o.pullAt = now + this.#random() * this.timing.joinPullJitterMs;
    }
  }

  /** Pack this turn's changes into deltas (or a version notice) and hand them to gossip. */
  flush(): void {
    if (this.#round === null && this.#asks.length > 0) this.#startRound();
    if (this.#pending.length === 0 && !this.#overflow) return;
    const ops = this.#pending;
    const bytes = this.#pendingBytes;
    const overflow = this.#overflow;
    let base = this.#pendingBase;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#overflow = false;
    const host = this.#host;
    // Not replicating yet: peers learn our version from the notice of attach() and pull.
    if (host === null) return;
    if (overflow || bytes > this.timing.burstBytes) {
      this.#notice();
      return;
    }
    const max = host.maxPayloadBytes;
    const header = deltaHeaderBytes(this.name);
    let batch: Buffer[] = [];
    let size = header;
    let needNotice = false;
    const send = (): void => {
      if (batch.length === 0) return;
      this.#broadcast(encodeDelta(this.name, this.epoch, base, batch), `p/${base}`);
      this.counters.deltasSent++;
      this.counters.opsSent += batch.length;
      base += batch.length;
      batch = [];
      size = header;
    };
    for (const op of ops) {
      if (header + op.length > max) {
        // Never fits a datagram: its version is skipped here, and the gap makes peers pull.
        send();
        this.counters.oversizeOps++;
        base++;
        needNotice = true;
        continue;
      }
      if (size + op.length > max || batch.length === 0xffff) send();
      batch.push(op);
      size += op.length;
    }
    send();
    if (needNotice) this.#notice();
  }

  /** Run due repairs (pulls), end a round of asks past its deadline, and forget expired tombstones. */
  tick(now = this.#clock()): void {
    const r = this.#round;
    if (r !== null && now >= r.deadline) this.#endRound(r);
    let started = 0;
    for (const o of this.#owners.values()) {
      if (!o.live) {
        if (now - o.goneAt > this.timing.tombstoneTtlMs) this.#owners.delete(o.name);
        continue;
      }
      if (o.pullAt > now) continue;
      if (!(o.needFull || o.seen > o.version)) {
        o.pullAt = Infinity;
        o.pullTries = 0;
        continue;
      }
      if (started === this.timing.maxPullsPerTick) continue; // due: the next tick
      started++;
      // From the second retry on each waits twice as long (a loaded peer, or a loaded us), up to
      // eight times; jittered below the wait so the retries of many nodes do not come in step.
      const wait = this.timing.pullRetryMs * 2 ** Math.min(Math.max(o.pullTries - 1, 0), 3);
      o.pullTries++;
      o.pullAt = now + wait * (0.5 + 0.5 * this.#random());
      const host = this.#host;
      if (host !== null && host.isLive(o.name) && host.syncWith(o.name)) this.counters.pulls++;
    }
  }

  /** When `tick` has work next (Infinity: none). */
  nextDeadline(): number {
    let d = this.#round?.deadline ?? Infinity;
    for (const o of this.#owners.values()) if (o.live && o.pullAt < d) d = o.pullAt;
    return d;
  }

  // ---------------------------------------------------------------- PresenceStore

  connect(user: string, _conn: string): void {
    const n = this.#userConns.get(user) ?? 0;
    this.#userConns.set(user, n + 1);
    // Held here only: another node asks (askOnline) instead of holding a copy of every user.
    if (n === 0 && !this.#userOwners.has(user)) this.#emit({ kind: 'online', user });
  }

  disconnect(user: string, conn: string): void {
    const topics = this.#connTopics.get(conn);
    if (topics !== undefined) for (const t of [...topics]) this.leave(t, conn);
    const n = this.#userConns.get(user) ?? 0;
    if (n > 1) {
      this.#userConns.set(user, n - 1);
      return;
    }
    if (this.#userConns.delete(user) && !this.isOnline(user)) this.#emit({ kind: 'offline', user });
  }

  join(topic: string, entry: PresenceEntry): JoinResult {
    let json: string | null;
    try {
      json = metaJson(entry.meta);
    } catch {
      return 'meta-too-large'; // a cycle or a BigInt: not JSON
    }
    if (json !== null && Buffer.byteLength(json, 'utf8') > this.limits.maxMetaBytes) return 'meta-too-large';
    const self = this.#self;
    const members = self.topics.get(topic);
    const existing = members?.get(entry.conn);
    if (existing !== undefined) {
      const grow = stateEntryBytes(existing, json) - stateEntryBytes(existing, metaJson(existing.meta));
      if (this.#stateBytes + grow > this.limits.maxStateBytes) return 'full';
      this.#stateBytes += grow;
      existing.meta = entry.meta;
      this.#op(encodeSet(topic, existing, json));
      this.#emit({ kind: 'update', topic, entry: existing });
      return 'updated';
    }
    if ((this.#topicCount.get(topic) ?? 0) >= this.limits.maxMembers) return 'full';
    const mine = this.#connTopics.get(entry.conn);
    if (mine !== undefined && mine.length >= this.limits.maxTopicsPerConn) return 'too-many-topics';
    if (self.entries >= this.limits.maxEntriesPerNode) return 'full';
    const stored: PresenceEntry = { user: entry.user, conn: entry.conn, meta: entry.meta, since: entry.since };
    const bytes = stateEntryBytes(stored, json) + (members === undefined ? stateTopicBytes(topic) : 0);
    if (this.#stateBytes + bytes > this.limits.maxStateBytes) return 'full';
    this.#stateBytes += bytes;
    if (mine === undefined) this.#connTopics.set(entry.conn, [topic]);
    else mine.push(topic);
    this.#op(encodeSet(topic, stored, json));
    this.#addEntry(self, topic, stored);
    return 'joined';
  }

  leave(topic: string, conn: string): PresenceEntry | undefined {
    const self = this.#self;
    const members = self.topics.get(topic);
    const entry = members?.get(conn);
    if (members === undefined || entry === undefined) return undefined;
    this.#stateBytes -= stateEntryBytes(entry, metaJson(entry.meta)) + (members.size === 1 ? stateTopicBytes(topic) : 0);
    const mine = this.#connTopics.get(conn);
    if (mine !== undefined) {
      const i = mine.indexOf(topic);
      if (i !== -1) mine.splice(i, 1);
      if (mine.length === 0) this.#connTopics.delete(conn);
    }
    this.#op(encodeLeave(topic, conn));
    this.#removeEntry(self, topic, conn);
    return entry;
  }

  list(topic: string): PresenceEntry[] {
    const out: PresenceEntry[] = [];
    if (!this.#topicCount.has(topic)) return out;
    const mine = this.#self.topics.get(topic);
    if (mine !== undefined) for (const e of mine.values()) out.push(e);
    for (const o of this.#owners.values()) {
      const m = o.topics.get(topic);
      if (m !== undefined) for (const e of m.values()) out.push(e);
    }
    return out;
  }

  count(topic: string): number {
    return this.#topicCount.get(topic) ?? 0;
  }

  /** Online as far as this node knows without asking: a connection here (or announced by a node of an older release). */
  isOnline(user: string): boolean {
    return this.#userConns.has(user) || this.#userOwners.has(user);
  }

  /**
   * Which of `users` are online anywhere in the cluster. Users known here are answered at
   * once; the others are asked of every other live node in one round shared by the calls of
   * the same turn (at most maxAskUsers distinct users, maxAskStreams nodes at a time), and
   * `done` gets the answer when every node answered, or after askTimeoutMs with `partial`
   * set. `done` is called synchronously when no node needs asking, and with 'busy' when
   * maxPendingAsks calls are waiting already.
   * @throws RangeError for more than maxAskUsers users.
   */
  askOnline(users: readonly string[], done: (result: OnlineResult) => void): void {
    if (users.length > this.limits.maxAskUsers) throw new RangeError(`more than ${this.limits.maxAskUsers} users in one ask`);
    const online = new Set<string>();
    const unknown = new Set<string>();
    for (const u of users) {
      if (this.isOnline(u)) online.add(u);
      else unknown.add(u);
    }
    if (unknown.size === 0 || this.#askablePeers().length === 0) {
      done({ online, partial: false });
      return;
    }
    if (this.#asks.length + (this.#round?.asks.length ?? 0) >= this.limits.maxPendingAsks) {
      this.counters.asksRefused++;
      done('busy');
      return;
    }
    this.#asks.push({ users: [...unknown], online, done });
    if (this.#round === null && this.#asks.length === 1) this.onPending?.();
  }

  onChange(cb: (change: PresenceChange) => void): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  /** `users`: users online on this node (and those announced by nodes of an older release). */
  stats(): { topics: number; entries: number; users: number } {
    let users = this.#userConns.size;
    for (const u of this.#userOwners.keys()) if (!this.#userConns.has(u)) users++;
    return { topics: this.#topicCount.size, entries: this.#entries, users };
  }

  /** Gauges of the replication: our entries, everyone else's, and the nodes they come from. */
  replicationStats(): { localEntries: number; remoteEntries: number; localUsers: number; owners: number; tombstones: number; stateBytes: number; version: number; behind: number } {
    let owners = 0;
    let tombstones = 0;
    let behind = 0;
    for (const o of this.#owners.values()) {
      if (!o.live) tombstones++;
      else {
        owners++;
        if (o.needFull || o.seen > o.version) behind++;
      }
    }
    return {
      localEntries: this.#self.entries,
      remoteEntries: this.#entries - this.#self.entries,
      localUsers: this.#userConns.size,
      owners,
      tombstones,
      stateBytes: this.#stateBytes,
      version: this.#self.version,
      behind,
    };
  }

  /** The entries of one node as held here (tests, inspection): topic -> entries. */
  entriesOf(name: string): Map<string, PresenceEntry[]> {
    const o = name === this.name ? this.#self : this.#owners.get(name);
    const out = new Map<string, PresenceEntry[]>();
    if (o !== undefined) for (const [t, m] of o.topics) out.set(t, [...m.values()]);
    return out;
  }

  /** Users online on this node (`name` ours), or announced by node `name` (only nodes of an older release announce them). */
  usersOf(name: string): string[] {
    if (name === this.name) return [...this.#userConns.keys()];
    return [...(this.#owners.get(name)?.users ?? [])];
  }

  /** Epoch and version held for a node, or undefined. */
  versionOf(name: string): { epoch: number; version: number; seen: number; live: boolean } | undefined {
    const o = name === this.name ? this.#self : this.#owners.get(name);
    return o === undefined ? undefined : { epoch: o.epoch, version: o.version, seen: o.seen, live: o.live };
  }

  // ---------------------------------------------------------------- local changes

  #op(op: Buffer): void {
    const self = this.#self;
    if (this.#pending.length === 0 && !this.#overflow) {
      this.#pendingBase = self.version;
      this.onPending?.();
    }
    self.version++;
    self.seen = self.version;
    if (this.#overflow) return;
    if (this.#pendingBytes + op.length > this.timing.burstBytes) {
      // A burst: keep no bytes, a notice will make peers pull the full state.
      this.#overflow = true;
      this.#pending = [];
      this.#pendingBytes = 0;
      return;
    }
    this.#pending.push(op);
    this.#pendingBytes += op.length;
  }

  #notice(): void {
    this.#broadcast(encodeVersion(this.name, this.epoch, this.#self.version), 'p/v');
    this.counters.noticesSent++;
  }

  #broadcast(payload: Uint8Array, key: string): void {
    const host = this.#host;
    if (host === null) return;
    try {
      host.broadcast(payload, key);
    } catch {
      // Larger than a datagram (a smaller maxPacketBytes than the deltas were cut for): the
      // version gap it leaves is repaired by a pull.
      this.counters.oversizeOps++;
    }
  }

  // ---------------------------------------------------------------- remote changes

  #onBroadcast(payload: Uint8Array): void {
    let msg: Delta | VersionNotice | null;
    try {
      msg = decodeBroadcast(payload, this.#wire);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.counters.deltasDropped++;
      this.#logDrop('delta', err);
      return;
    }
    if (msg === null || msg.owner === this.name) return;
    if (msg.kind === PayloadKind.Delta) this.#onDelta(msg, payload);
    else this.#onVersion(msg, payload);
  }

  /** One line per interval for peers' malformed payloads: a broken or hostile peer must not flood the log. */
  #logDrop(what: string, err: WireError): void {
    if (this.#log === null) return;
    const now = this.#clock();
    if (now - this.#dropLoggedAt < DROP_LOG_INTERVAL_MS) {
      this.#dropsUnlogged++;
      return;
    }
    const more = this.#dropsUnlogged === 0 ? '' : ` (and ${this.#dropsUnlogged} more since the last line)`;
    this.#dropLoggedAt = now;
    this.#dropsUnlogged = 0;
    this.#log(`[murmur] presence: dropped a malformed ${what} from a peer: ${err.message}${more}`);
  }

  #onDelta(d: Delta, raw: Uint8Array): void {
    this.counters.deltasReceived++;
    const o = this.#liveOwner(d.owner, d.epoch);
    if (o === null) {
      this.counters.deltasStale++;
      return;
    }
    const end = deltaEnd(d);
    if (end <= o.version || o.buffer?.some((b) => b.base === d.base)) {
      this.counters.deltasDuplicate++;
      return;
    }
    this.#rebroadcast(raw, `p/${d.owner}/${d.epoch}/${d.base}`);
    if (end > o.seen) o.seen = end;
    if (d.base <= o.version && !o.blind) {
      this.#apply(o, d);
      this.#drain(o);
    } else {
      const buf = (o.buffer ??= []);
      if (buf.length >= this.limits.maxBufferedDeltas) this.counters.deltasDropped++;
      else buf.push(d);
    }
    this.#planRepair(o, this.timing.repairDelayMs);
  }

  #onVersion(v: VersionNotice, raw: Uint8Array): void {
    const before = this.#owners.get(v.owner);
    const prevEpoch = before?.live === true ? before.epoch : 0;
    const o = this.#liveOwner(v.owner, v.epoch);
    if (o === null) return;
    let news = v.epoch > prevEpoch;
    if (v.version > o.seen) {
      o.seen = v.version;
      news = true;
    }
    if (news) this.#rebroadcast(raw, `p/${v.owner}/v`);
    this.#planRepair(o, this.timing.repairDelayMs);
  }

  /**
   * The record of a live member for data of `epoch`, or null: not a live member (late data of
   * a dead node must not resurrect it), an older epoch, or no room. A newer epoch drops the
   * previous life's entries first.
   */
  #liveOwner(name: string, epoch: number): Owner | null {
    if (this.#host === null || !this.#host.isLive(name)) return null;
    const o = this.#ownerFor(name);
    if (o === null) return null;
    if (!o.live) {
      // Live again without the join event (it raced the data): treat it as a comeback.
      this.#revive(o);
      o.needFull = true;
    }
    if (epoch < o.epoch) return null;
    if (epoch > o.epoch) {
      if (o.epoch !== 0) this.counters.ownersDropped++;
      this.#clear(o);
      o.epoch = epoch;
      o.version = 0;
      o.seen = 0;
      o.buffer = null;
      // Version 0 of a new life is exact: its first delta starts from it.
      o.blind = false;
    }
    return o;
  }

  #apply(o: Owner, d: Delta): void {
    const ops = d.ops;
    for (let i = o.version - d.base; i < ops.length; i++) this.#applyOp(o, ops[i] as Op);
    o.version = deltaEnd(d);
    this.counters.deltasApplied++;
  }

  #applyOp(o: Owner, op: Op): void {
    switch (op.kind) {
      case OpKind.Online:
        this.#addUser(o, op.user);
        return;
      case OpKind.Offline:
        this.#removeUser(o, op.user);
        return;
      case OpKind.Set:
        this.#setEntry(o, op.topic, op.entry);
        return;
      case OpKind.Leave:
        this.#removeEntry(o, op.topic, op.conn);
        return;
    }
  }

  /** Apply buffered deltas the version has reached; drop those it passed. */
  #drain(o: Owner): void {
    const buf = o.buffer;
    if (buf === null || o.blind) return;
    let progress = true;
    while (progress && buf.length > 0) {
      progress = false;
      for (let i = 0; i < buf.length; i++) {
        const d = buf[i] as Delta;
        if (deltaEnd(d) <= o.version) {
          buf.splice(i, 1);
          progress = true;
          break;
        }
        if (d.base <= o.version) {
          buf.splice(i, 1);
          this.#apply(o, d);
          progress = true;
          break;
        }
      }
    }
    if (buf.length === 0) o.buffer = null;
  }

  /** Plan a pull when our copy is behind; cancel a planned one when it caught up. */
  #planRepair(o: Owner, delay: number): void {
    if (o.needFull || o.seen > o.version) {
      if (o.pullAt === Infinity) o.pullAt = this.#clock() + delay;
    } else o.pullAt = Infinity;
  }

  #rebroadcast(raw: Uint8Array, key: string): void {
    if (this.#host === null) return;
    this.#broadcast(raw, key);
    this.counters.rebroadcasts++;
  }

  // ---------------------------------------------------------------- full state

  #localState(): Uint8Array {
    const digests: Digest[] = [];
    for (const o of this.#owners.values()) {
      if (o.live && o.epoch !== 0 && digests.length < this.limits.maxOwners) digests.push({ owner: o.name, epoch: o.epoch, version: o.version });
    }
    const self = this.#self;
    const topics = (function* (): Generator<[string, Iterable<PresenceEntry>]> {
      for (const [t, m] of self.topics) yield [t, m.values()];
    })();
    try {
      return encodeState(this.name, this.epoch, self.version, self.users, topics, digests, this.#stateBytes + digests.length * 40 + 64);
    } catch {
      return EMPTY; // a field the wire cannot carry; peers repair from our deltas instead
    }
  }

  #onState(payload: Uint8Array): void {
    let s: State | null;
    try {
      s = decodeState(payload, this.#wire);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.counters.statesDropped++;
      this.#logDrop('state', err);
      return;
    }
    if (s === null || s.owner === this.name) return;
    const o = this.#liveOwner(s.owner, s.epoch);
    if (o !== null) {
      if (s.version > o.version || o.needFull) this.#replace(o, s);
      o.needFull = false;
      o.pullTries = 0;
      // The owner's own word bounds what we may still be missing: only buffered deltas go beyond.
      let seen = o.version;
      if (o.buffer !== null) for (const d of o.buffer) if (deltaEnd(d) > seen) seen = deltaEnd(d);
      o.seen = seen;
      this.#drain(o);
      this.#planRepair(o, this.timing.repairDelayMs);
      this.counters.statesMerged++;
    }
    this.#onDigests(s.owner, s.digests);
  }

  /** Replace a node's entries with its full state, emitting only what changed. */
  #replace(o: Owner, s: State): void {
    const users = new Set(s.users);
    for (const u of users) this.#addUser(o, u);
    const next = new Map<string, Map<string, PresenceEntry>>();
    for (const [topic, entries] of s.topics) {
      let m = next.get(topic);
      if (m === undefined) next.set(topic, (m = new Map()));
      for (const e of entries) m.set(e.conn, e);
    }
    for (const [topic, members] of [...o.topics]) {
      const m = next.get(topic);
      for (const conn of [...members.keys()]) if (m?.has(conn) !== true) this.#removeEntry(o, topic, conn);
    }
    for (const [topic, m] of next) for (const e of m.values()) this.#setEntry(o, topic, e, true);
    for (const u of [...o.users]) if (!users.has(u)) this.#removeUser(o, u);
    o.version = s.version;
    o.blind = false;
  }

  #onDigests(from: string, digests: readonly Digest[]): void {
    for (const d of digests) {
      if (d.owner === this.name || d.owner === from) continue;
      if (this.#host === null || !this.#host.isLive(d.owner)) continue;
      const o = this.#ownerFor(d.owner);
      if (o === null) continue;
      if (!o.live) {
        this.#revive(o);
        o.needFull = true;
      }
      // Hearsay never changes entries: it only tells us whom to pull.
      if (d.epoch > o.epoch) o.needFull = true;
      else if (d.epoch === o.epoch && d.version > o.seen) o.seen = d.version;
      this.#planRepair(o, this.timing.repairDelayMs);
    }
  }

  // ---------------------------------------------------------------- asks (askOnline)

  /** Other nodes that may hold users: live members we have a record of. */
  #askablePeers(): string[] {
    const host = this.#host;
    const out: string[] = [];
    if (host === null) return out;
    for (const o of this.#owners.values()) if (o.live && host.isLive(o.name)) out.push(o.name);
    return out;
  }

  /** One round for the asks waiting, in order, up to maxAskUsers distinct users. */
  #startRound(): void {
    const peers = this.#askablePeers();
    const users = new Set<string>();
    const asks: Ask[] = [];
    let taken = 0;
    for (const a of this.#asks) {
      let more = 0;
      for (const u of a.users) if (!users.has(u)) more++;
      if (asks.length > 0 && users.size + more > this.limits.maxAskUsers) break;
      for (const u of a.users) users.add(u);
      asks.push(a);
      taken++;
    }
    this.#asks = this.#asks.slice(taken);
    const id = (this.#roundSeq = (this.#roundSeq + 1) >>> 0);
    const list = [...users];
    const r = new Round(id, list, asks, encodeOnlineAsk(this.name, id, list), peers, this.#clock() + this.timing.askTimeoutMs);
    this.#round = r;
    this.counters.askRounds++;
    this.#roundProgress(r);
  }

  /** Ask more nodes while fewer than maxAskStreams are out; end the round when all answered. */
  #roundProgress(r: Round): void {
    if (this.#round !== r) return;
    const host = this.#host;
    while (this.#round === r && r.unsent.length > 0 && r.waiting.size - r.unsent.length < this.limits.maxAskStreams) {
      const peer = r.unsent.pop() as string;
      if (!r.waiting.has(peer)) continue;
      if (host === null || !host.query(peer, r.payload)) {
        r.waiting.delete(peer);
        r.partial = true;
        this.counters.askTimeouts++;
      }
    }
    if (r.waiting.size === 0) this.#endRound(r);
  }

  /** Answer every ask of the round with what came in; start the next round if asks wait. */
  #endRound(r: Round): void {
    if (this.#round !== r) return;
    this.#round = null;
    if (r.waiting.size > 0) {
      r.partial = true;
      this.counters.askTimeouts += r.waiting.size;
    }
    for (const a of r.asks) {
      for (const u of a.users) if (r.online.has(u) || this.isOnline(u)) a.online.add(u);
      try {
        a.done({ online: a.online, partial: r.partial });
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
    if (this.#asks.length > 0) this.#startRound();
  }

  /** A peer's ask or answer, or null: another kind, or malformed (dropped, counted, logged at a bounded rate). */
  #decodeQuery(payload: Uint8Array, what: string): ReturnType<typeof decodeQuery> {
    try {
      return decodeQuery(payload, this.#wire);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.counters.asksDropped++;
      this.#logDrop(what, err);
      return null;
    }
  }

  /** A peer asks which of its users are online here: our own connections only, never hearsay. */
  #answerAsk(payload: Uint8Array): Uint8Array | null {
    const q = this.#decodeQuery(payload, 'online ask');
    if (q === null || q.kind !== PayloadKind.OnlineAsk) return null;
    const online: number[] = [];
    for (let i = 0; i < q.users.length; i++) if (this.#userConns.has(q.users[i] as string)) online.push(i);
    this.counters.asksAnswered++;
    return encodeOnlineAnswer(this.name, q.round, online);
  }

  #onAnswer(payload: Uint8Array): void {
    const a = this.#decodeQuery(payload, 'online answer');
    const r = this.#round;
    // A late answer (its round ended) or one we did not ask for is ignored.
    if (a === null || a.kind !== PayloadKind.OnlineAnswer || r === null || a.round !== r.id || !r.waiting.delete(a.owner)) return;
    for (const i of a.online) {
      const u = r.users[i];
      if (u !== undefined) r.online.add(u);
    }
    this.#roundProgress(r);
  }

  // ---------------------------------------------------------------- owner records

  #ownerFor(name: string): Owner | null {
    let o = this.#owners.get(name);
    if (o !== undefined) return o;
    if (this.#owners.size >= this.limits.maxOwners && !this.#evictTombstone()) {
      this.counters.limitDrops++;
      return null;
    }
    o = new Owner(name);
    this.#owners.set(name, o);
    return o;
  }

  #evictTombstone(): boolean {
    let oldest: Owner | null = null;
    for (const o of this.#owners.values()) if (!o.live && (oldest === null || o.goneAt < oldest.goneAt)) oldest = o;
    if (oldest === null) return false;
    this.#owners.delete(oldest.name);
    return true;
  }

  #revive(o: Owner): void {
    if (o.live) return;
    o.live = true;
    o.version = 0;
    o.seen = 0;
    o.blind = o.epoch !== 0;
  }

  /** Drop every entry and user of a node, with their leave and offline events. */
  #clear(o: Owner): void {
    for (const [topic, members] of [...o.topics]) for (const conn of [...members.keys()]) this.#removeEntry(o, topic, conn);
    for (const u of [...o.users]) this.#removeUser(o, u);
  }

  // ---------------------------------------------------------------- indexes and events

  #addUser(o: Owner, user: string): void {
    if (o.users.has(user)) return;
    if (o !== this.#self && o.users.size >= this.limits.maxUsersPerNode) {
      this.counters.limitDrops++;
      return;
    }
    const was = this.isOnline(user);
    o.users.add(user);
    this.#userOwners.set(user, (this.#userOwners.get(user) ?? 0) + 1);
    if (!was) this.#emit({ kind: 'online', user });
  }

  #removeUser(o: Owner, user: string): void {
    if (!o.users.delete(user)) return;
    const n = (this.#userOwners.get(user) ?? 1) - 1;
    if (n <= 0) this.#userOwners.delete(user);
    else this.#userOwners.set(user, n);
    if (!this.isOnline(user)) this.#emit({ kind: 'offline', user });
  }

  /** Add an entry, or update the one of the same connection (with `quiet`, only when something changed). */
  #setEntry(o: Owner, topic: string, entry: PresenceEntry, quiet = false): void {
    let members = o.topics.get(topic);
    const existing = members?.get(entry.conn);
    if (existing !== undefined) {
      if (existing.user !== entry.user) {
        this.#removeEntry(o, topic, entry.conn);
        this.#setEntry(o, topic, entry);
        return;
      }
      if (quiet && existing.since === entry.since && sameMeta(existing.meta, entry.meta)) return;
      existing.meta = entry.meta;
      existing.since = entry.since;
      this.#emit({ kind: 'update', topic, entry: existing });
      return;
    }
    if (o.entries >= this.limits.maxEntriesPerNode) {
      this.counters.limitDrops++;
      return;
    }
    if (members === undefined) o.topics.set(topic, (members = new Map()));
    this.#addEntry(o, topic, entry, members);
  }

  #addEntry(o: Owner, topic: string, entry: PresenceEntry, members?: Map<string, PresenceEntry>): void {
    let m = members ?? o.topics.get(topic);
    if (m === undefined) o.topics.set(topic, (m = new Map()));
    m.set(entry.conn, entry);
    o.entries++;
    this.#entries++;
    this.#topicCount.set(topic, (this.#topicCount.get(topic) ?? 0) + 1);
    this.#emit({ kind: 'join', topic, entry });
  }

  #removeEntry(o: Owner, topic: string, conn: string): void {
    const members = o.topics.get(topic);
    const entry = members?.get(conn);
    if (members === undefined || entry === undefined) return;
    members.delete(conn);
    if (members.size === 0) o.topics.delete(topic);
    o.entries--;
    this.#entries--;
    const n = (this.#topicCount.get(topic) ?? 1) - 1;
    if (n <= 0) this.#topicCount.delete(topic);
    else this.#topicCount.set(topic, n);
    this.#emit({ kind: 'leave', topic, entry });
  }

  #emit(change: PresenceChange): void {
    for (const cb of this.#listeners) {
      try {
        cb(change);
      } catch (err) {
        // A listener's bug must not leave the indexes half-updated: it resurfaces on its own.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
