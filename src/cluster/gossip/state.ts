/**
 * The SWIM membership state machine, with Lifeguard's local health, dynamic suspicion and
 * nacks. Sans-I/O: no sockets, no timers, no clock. It is driven by three calls —
 * `tick(now)` when `nextDeadline()` is reached, `receivePacket(bytes, from, now)` and
 * `receiveStream(bytes, from, now)` — and sends through a GossipTransport. The UDP runtime,
 * the lossy test network and the simulator drive this same class.
 *
 * References: SWIM (Das, Gupta, Motivala 2002) §3-4; Lifeguard (Dadgar, Phillips, Currey
 * 2018) §IV; hashicorp/memberlist state.go for the shape of the rules.
 */
import { Awareness } from './awareness.js';
import { resolveConfig, type GossipConfig } from './gossip-config.js';
import { insertAll, pickRandom, pushPullInterval, randomIndex, retransmitLimit, shuffle, suspicionTimeout, type Random } from './math.js';
import { BroadcastQueue } from './queue.js';
import { Channel, OpenFailure, type PacketSealer } from './security.js';
import { Suspicion } from './suspicion.js';
import {
  MembershipEventType,
  MemberState,
  type GossipCounters,
  type GossipDelegate,
  type GossipTransport,
  type MemberInfo,
  type MembershipEvent,
} from './transport.js';
import {
  decodeStreamFrame,
  decodeRecords,
  encodePushPull,
  encodeQuery,
  encodeRecord,
  MAX_STRING_BYTES,
  MessageType,
  RECORD_HEADER_BYTES,
  WireError,
  WireState,
  type Alive,
  type Dead,
  type PacketMessage,
  type PushPullEntry,
  type Suspect,
} from './gossip-wire.js';

const STATE_NAMES = [MemberState.Alive, MemberState.Suspect, MemberState.Dead, MemberState.Left] as const;
const EMPTY = new Uint8Array(0);

/** One member as this node sees it. Fixed shape; mutated in place. */
class Member {
  name: string;
  addr: string;
  meta: Uint8Array;
  incarnation: number;
  state: WireState;
  stateChangeAt: number;
  /** Position in SwimNode.#all, for O(1) removal. */
  index = -1;
  inProbeList = false;

  constructor(name: string, addr: string, meta: Uint8Array, incarnation: number, state: WireState, now: number) {
    this.name = name;
    this.addr = addr;
    this.meta = meta;
    this.incarnation = incarnation;
    this.state = state;
    this.stateChangeAt = now;
  }

  get live(): boolean {
    return this.state === WireState.Alive || this.state === WireState.Suspect;
  }

  info(): MemberInfo {
    return { name: this.name, addr: this.addr, meta: this.meta, incarnation: this.incarnation, state: STATE_NAMES[this.state] };
  }
}

/** The probe in flight: at most one per protocol period. */
interface Probe {
  seq: number;
  target: Member;
  /** Direct phase ends: indirect probes go out. */
  indirectAt: number;
  /** Protocol period ends: no ack means suspect. */
  endAt: number;
  indirect: boolean;
  expectedNacks: number;
  nacks: number;
}

/** A ping-req we relay for another member. */
interface Relay {
  seq: number;
  origSeq: number;
  requester: string;
  wantNack: boolean;
  nackAt: number;
  expireAt: number;
  done: boolean;
}

export interface SwimNodeOptions {
  /** Unique name of this node in the cluster (1..255 UTF-8 bytes). */
  name: string;
  /** Address peers reach this node at, as the transport understands it (1..255 bytes). */
  addr: string;
  /** Application metadata gossiped with this node (<= maxMetaBytes). */
  meta?: Uint8Array;
  /**
   * Starting incarnation. A restarted node must start above its previous life, so the
   * runtime seeds it from the wall clock (milliseconds); the default 1 suits simulations.
   */
  incarnation?: number;
  config?: Partial<GossipConfig>;
  transport: GossipTransport;
  sealer: PacketSealer;
  /** Uniform [0, 1) source for shuffles and picks; seeded in the simulator. */
  random?: Random;
  delegate?: GossipDelegate;
  /** Membership events, delivered synchronously. Must not throw. */
  onEvent?: (event: MembershipEvent) => void;
  /** A datagram or stream frame from `from` that did not open (another key, label or version). Must not throw. */
  onReject?: (from: string, reason: OpenFailure, channel: 'packet' | 'stream') => void;
  /**
   * Another live process claims our name from another address: it out-bid our refutation of
   * its first claim with its own. Called on every further claim. Must not throw.
   */
  onConflict?: (other: MemberInfo) => void;
  /**
   * A direct probe of `name` at `addr` went unanswered and indirect probes go out: the
   * runtime may look for harder evidence (a refused port) and report it with linkLost.
   * Must not throw.
   */
  onProbeMissed?: (name: string, addr: string) => void;
}

/** What receiveStream did: `reply` is the frame to send back, if any. */
export interface StreamResult {
  ok: boolean;
  reply: Uint8Array | null;
}

/** A member to preload with `preload()`. */
export interface PreloadEntry {
  name: string;
  addr: string;
  incarnation: number;
  meta?: Uint8Array;
}

function newCounters(): GossipCounters {
  return {
    packetsSent: 0,
    packetsReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    rejectedAuth: 0,
    rejectedLabel: 0,
    rejectedVersion: 0,
    rejectedMalformed: 0,
    streamsSent: 0,
    streamsReceived: 0,
    probes: 0,
    indirectProbes: 0,
    probeFailures: 0,
    nacksSent: 0,
    suspicions: 0,
    linkSuspicions: 0,
    refutations: 0,
    deaths: 0,
    membersRejected: 0,
    relaysRejected: 0,
    broadcastsDropped: 0,
    awareness: 0,
  };
}

function checkName(what: string, s: string): void {
  const n = Buffer.byteLength(s, 'utf8');
  if (n === 0 || n > MAX_STRING_BYTES) throw new RangeError(`${what} must be 1..${MAX_STRING_BYTES} UTF-8 bytes`);
}

/**
 * One node's view of the cluster and the protocol that keeps it current.
 * Not thread-safe, not re-entrant: call it from one place (an event loop, the simulator).
 */
export class SwimNode {
  readonly name: string;
  readonly config: GossipConfig;
  readonly counters: GossipCounters = newCounters();

  readonly #transport: GossipTransport;
  readonly #sealer: PacketSealer;
  readonly #random: Random;
  readonly #delegate: GossipDelegate | undefined;
  readonly #onEvent: ((event: MembershipEvent) => void) | undefined;
  readonly #onReject: ((from: string, reason: OpenFailure, channel: 'packet' | 'stream') => void) | undefined;
  readonly #onConflict: ((other: MemberInfo) => void) | undefined;
  readonly #onProbeMissed: ((name: string, addr: string) => void) | undefined;
  /** Address of the last other process whose claim on our name we refuted. */
  #claimedFrom = '';
  readonly #awareness: Awareness;
  readonly #limits: { maxMetaBytes: number; maxMembers: number };

  readonly #self: Member;
  readonly #members = new Map<string, Member>();
  /** Every member but ourselves, tombstones included (random picks for gossip, push-pull, reconnect). */
  readonly #all: Member[] = [];
  /** Members counted as alive or suspect, ourselves included: the n of every log(n). */
  #live = 1;
  /**
   * Suspected members and their suspicion. Kept here rather than on Member: a simulated
   * cluster of n nodes holds n² Member records, and only a handful are ever suspected.
   */
  readonly #suspects = new Map<Member, Suspicion>();

  #probeList: Member[] = [];
  #probeIndex = 0;
  #probe: Probe | null = null;
  #seq: number;

  readonly #relays = new Map<number, Relay>();
  #relayQueue: Relay[] = [];
  #relayNackHead = 0;
  #relayExpireHead = 0;

  readonly #queue: BroadcastQueue;
  readonly #userQueue: BroadcastQueue;

  #started = false;
  #leaving = false;
  #stopped = false;
  #nextProbeAt = Infinity;
  #nextGossipAt = Infinity;
  #nextPushPullAt = Infinity;
  #nextReconnectAt = Infinity;

  /** @throws GossipConfigError for an inconsistent config, RangeError for a bad name/addr/meta. */
  constructor(options: SwimNodeOptions) {
    this.config = resolveConfig(options.config);
    checkName('name', options.name);
    checkName('addr', options.addr);
    const meta = options.meta ?? EMPTY;
    if (meta.length > this.config.maxMetaBytes) throw new RangeError(`meta of ${meta.length} bytes above maxMetaBytes ${this.config.maxMetaBytes}`);
    const incarnation = options.incarnation ?? 1;
    if (!Number.isSafeInteger(incarnation) || incarnation < 0) throw new RangeError('incarnation must be a safe unsigned integer');
    this.name = options.name;
    this.#transport = options.transport;
    this.#sealer = options.sealer;
    this.#random = options.random ?? Math.random;
    this.#delegate = options.delegate;
    this.#onEvent = options.onEvent;
    this.#onReject = options.onReject;
    this.#onConflict = options.onConflict;
    this.#onProbeMissed = options.onProbeMissed;
    this.#awareness = new Awareness(this.config.awarenessMaxMultiplier);
    this.#limits = { maxMetaBytes: this.config.maxMetaBytes, maxMembers: this.config.maxMembers };
    this.#queue = new BroadcastQueue();
    this.#userQueue = new BroadcastQueue(this.config.maxUserQueueDepth);
    this.#seq = randomIndex(this.#random, 0x1_0000_0000);
    this.#self = new Member(options.name, options.addr, Uint8Array.from(meta), incarnation, WireState.Alive, 0);
    this.#members.set(this.name, this.#self);
  }

  // ---------------------------------------------------------------- lifecycle

  /** Begin the protocol: announce ourselves and stagger the periodic tasks (so nodes started together do not probe in lockstep). */
  start(now: number): void {
    if (this.#started) return;
    this.#started = true;
    this.#self.stateChangeAt = now;
    this.#broadcastAlive(this.#self);
    const c = this.config;
    this.#nextProbeAt = now + this.#random() * c.probeIntervalMs;
    this.#nextGossipAt = now + this.#random() * c.gossipIntervalMs;
    this.#nextPushPullAt = c.pushPullIntervalMs > 0 ? now + this.#random() * c.pushPullIntervalMs : Infinity;
    this.#nextReconnectAt = c.reconnectIntervalMs > 0 ? now + this.#random() * c.reconnectIntervalMs : Infinity;
  }

  /**
   * Join a cluster through seed addresses: a push-pull with each (our state out, theirs
   * back). Returns how many exchanges were started; replies arrive through receiveStream.
   */
  join(seeds: readonly string[], now: number): number {
    if (!this.#started) this.start(now);
    let n = 0;
    for (const seed of seeds) {
      if (seed === this.#self.addr) continue;
      if (this.#pushPull(seed, true)) n++;
    }
    return n;
  }

  /**
   * Leave gracefully: our `dead` (from ourselves, meaning "left") is gossiped, and every
   * member that hears it drops us at once, without a suspicion period. `onSent` is called
   * when the announcement has been transmitted as often as a broadcast is (or at once when
   * nobody is left to tell); then the runtime can stop.
   */
  leave(now: number, onSent?: () => void): void {
    if (!this.#started || this.#leaving || this.#stopped) {
      onSent?.();
      return;
    }
    this.#leaving = true;
    this.#probe = null;
    const self = this.#self;
    this.#setState(self, WireState.Left, now);
    const others = this.#live;
    const record = encodeRecord({ type: MessageType.Dead, incarnation: self.incarnation, name: self.name, from: self.name });
    this.#queue.enqueue(record, self.name, onSent ? () => onSent() : null);
    if (others === 0) {
      this.#queue.clear();
    }
  }

  /** Stop all activity (after leave, or to simulate a crash). Further input is ignored. */
  stop(): void {
    this.#stopped = true;
    this.#probe = null;
    this.#queue.clear();
    this.#userQueue.clear();
  }

  get started(): boolean {
    return this.#started && !this.#stopped;
  }

  get leaving(): boolean {
    return this.#leaving;
  }

  /** Our current incarnation. */
  get incarnation(): number {
    return this.#self.incarnation;
  }

  get addr(): string {
    return this.#self.addr;
  }

  /** Current local-health score (0 = healthy). */
  get awareness(): number {
    return this.#awareness.score;
  }

  /** Broadcasts (membership + application) waiting to be sent. */
  get pendingBroadcasts(): number {
    return this.#queue.size + this.#userQueue.size;
  }

  /**
   * Preload members as alive, without events or gossip — for simulations and tests that
   * start from a formed cluster instead of replaying thousands of joins.
   */
  preload(entries: readonly PreloadEntry[], now: number): void {
    // The probe order is the one inserting each member on its own would give (the same
    // random draws, in the same order), built at once: n splices per node are O(n²), which
    // at thousands of simulated nodes dominated the simulator's start.
    const lo = this.#probeIndex;
    const base = this.#probeList.length;
    const added: Member[] = [];
    const at: number[] = [];
    for (const e of entries) {
      if (e.name === this.name || this.#members.has(e.name)) continue;
      const m = this.#addMember(e.name, e.addr, e.meta ?? EMPTY, e.incarnation, now, false);
      at.push(lo + randomIndex(this.#random, base + added.length - lo + 1));
      added.push(m);
      m.inProbeList = true;
    }
    if (added.length > 0) this.#probeList = insertAll(this.#probeList, added, at);
  }

  // ---------------------------------------------------------------- application API

  /** Snapshot of every member this node knows, tombstones and ourselves included. */
  members(): MemberInfo[] {
    const out: MemberInfo[] = [this.#self.info()];
    for (const m of this.#all) out.push(m.info());
    return out;
  }

  /** One member's snapshot, or undefined. */
  member(name: string): MemberInfo | undefined {
    return this.#members.get(name)?.info();
  }

  /** Members alive or suspect, ourselves included. */
  get liveCount(): number {
    return this.#live;
  }

  /**
   * Queue an application message to piggyback on gossip, sent ~retransmitMult*log10(n)
   * times. With a `key`, it replaces any queued message of the same key (a newer version of
   * the same fact). Receivers get it through `delegate.notifyMessage`; a delegate that
   * finds it new re-broadcasts it to keep the epidemic going.
   * @throws RangeError when the payload cannot fit in one datagram.
   */
  broadcast(payload: Uint8Array, key?: string): void {
    const max = this.maxBroadcastBytes;
    if (payload.length > max) throw new RangeError(`broadcast of ${payload.length} bytes above the ${max} that fit in a packet`);
    const before = this.#userQueue.dropped;
    this.#userQueue.enqueue(encodeRecord({ type: MessageType.User, payload }), key === undefined ? null : key);
    this.counters.broadcastsDropped += this.#userQueue.dropped - before;
  }

  /** Largest payload `broadcast` accepts: a datagram minus the envelope and the record header. */
  get maxBroadcastBytes(): number {
    return this.config.maxPacketBytes - this.#sealer.overhead - RECORD_HEADER_BYTES;
  }

  /**
   * Start a push-pull (full-state exchange, delegate state included) with the member at
   * `addr` now, outside the periodic schedule: how a layer above repairs its state from the
   * one node that owns it. Returns false when the frame is over maxStreamBytes or we are not
   * running.
   */
  syncWith(addr: string): boolean {
    if (!this.#started || this.#stopped || this.#leaving || addr === this.#self.addr) return false;
    return this.#pushPull(addr, false);
  }

  /**
   * Send `payload` to the member at `addr` as a query stream: its delegate's `answerQuery`
   * makes the answer, which reaches our delegate's `queryAnswered`. Fire-and-forget like every
   * stream (a lost exchange is simply never answered: the asker keeps its own deadline).
   * Returns false when the frame is over maxStreamBytes or we are not running.
   */
  query(addr: string, payload: Uint8Array): boolean {
    if (!this.#started || this.#stopped || addr === this.#self.addr) return false;
    const frame = this.#sealer.seal(encodeQuery({ reply: false, payload }), Channel.Stream);
    if (frame.length > this.config.maxStreamBytes) return false;
    this.counters.streamsSent++;
    this.#transport.sendStream(addr, frame);
    return true;
  }

  /**
   * A connection of a layer above to `name` (a mesh bus link) closed without a goodbye, or
   * its host refused a datagram to its gossip port: its process most likely died and the
   * kernel closed its sockets. Strong evidence, never a
   * verdict: a suspicion starts at once (or the current one is shortened), the suspect is
   * told directly so a live one refutes within a round trip, and the accusation is gossiped
   * so that the other members count it as a confirmation (Lifeguard §IV-B). Confirmed by k
   * members it ends after linkSuspicionMs (stretched by our local health); unconfirmed it
   * waits the ordinary minimum suspicion timeout. Returns true when it started or shortened
   * a suspicion.
   */
  linkLost(name: string, now: number): boolean {
    if (!this.#started || this.#stopped || this.#leaving) return false;
    const m = this.#members.get(name);
    if (m === undefined || m === this.#self || !m.live) return false;
    const c = this.config;
    const min = suspicionTimeout(c.suspicionMult, this.#live, c.probeIntervalMs);
    const floor = Math.min(min, this.#awareness.scale(c.linkSuspicionMs));
    const current = this.#suspects.get(m);
    if (m.state === WireState.Suspect && current !== undefined) {
      if (current.link) return false;
      current.strengthen(floor, min);
      // Our own evidence is an accusation independent of whoever raised the suspicion.
      current.confirm(this.name);
    } else {
      // Every survivor of a crash sees its link close, so even a 3-node cluster can confirm.
      const k = Math.max(0, Math.min(c.suspicionMult - 2, this.#live - 2));
      const s = new Suspicion(this.name, k, floor, min, now);
      s.link = true;
      this.#setState(m, WireState.Suspect, now);
      this.#suspects.set(m, s);
      this.counters.suspicions++;
      this.#emit(MembershipEventType.Suspect, m, now);
    }
    this.counters.linkSuspicions++;
    const record = encodeRecord({ type: MessageType.Suspect, incarnation: m.incarnation, name: m.name, from: this.name });
    this.#send(m.addr, [record]);
    this.#queue.enqueue(record, m.name);
    return true;
  }

  /** Replace our metadata; announced with a new incarnation. */
  setMeta(meta: Uint8Array): void {
    if (meta.length > this.config.maxMetaBytes) throw new RangeError(`meta of ${meta.length} bytes above maxMetaBytes`);
    this.#self.meta = Uint8Array.from(meta);
    this.#self.incarnation++;
    this.#broadcastAlive(this.#self);
  }

  // ---------------------------------------------------------------- driving

  /** When `tick` must next be called (ms, same clock as `now`); Infinity when idle. */
  nextDeadline(): number {
    if (!this.#started || this.#stopped) return Infinity;
    let d = Infinity;
    if (!this.#leaving) {
      const p = this.#probe;
      d = p === null ? this.#nextProbeAt : p.indirect ? p.endAt : p.indirectAt;
      if (this.#nextPushPullAt < d) d = this.#nextPushPullAt;
      if (this.#nextReconnectAt < d) d = this.#nextReconnectAt;
    }
    if ((this.#queue.size > 0 || this.#userQueue.size > 0) && this.#nextGossipAt < d) d = this.#nextGossipAt;
    for (const s of this.#suspects.values()) if (s.deadline < d) d = s.deadline;
    const nackR = this.#relayQueue[this.#relayNackHead];
    if (nackR !== undefined && nackR.nackAt < d) d = nackR.nackAt;
    const expR = this.#relayQueue[this.#relayExpireHead];
    if (expR !== undefined && expR.expireAt < d) d = expR.expireAt;
    return d;
  }

  /** Run every task due at `now`. */
  tick(now: number): void {
    if (!this.#started || this.#stopped) return;
    this.#tickRelays(now);
    this.#tickSuspicions(now);
    if (!this.#leaving) {
      const p = this.#probe;
      if (p !== null && !p.indirect && now >= p.indirectAt) this.#probeIndirect(p);
      if (p !== null && now >= p.endAt) this.#probeFailed(p, now);
      if (this.#probe === null && now >= this.#nextProbeAt) this.#startProbe(now);
      if (now >= this.#nextPushPullAt) {
        const target = pickRandom(this.#all, 1, this.#random, (m) => m.state === WireState.Alive)[0];
        if (target) this.#pushPull(target.addr, false);
        this.#nextPushPullAt = now + pushPullInterval(this.config.pushPullIntervalMs, this.#live);
      }
      if (now >= this.#nextReconnectAt) {
        // Serf-style reconnect: after a partition longer than the suspicion timeout each side
        // believes the other dead and neither probes it; one push-pull across brings the
        // refutations that re-form the cluster.
        const target = pickRandom(this.#all, 1, this.#random, (m) => m.state === WireState.Dead)[0];
        if (target) this.#pushPull(target.addr, false);
        this.#nextReconnectAt = now + this.config.reconnectIntervalMs;
      }
    }
    if (now >= this.#nextGossipAt) {
      if (this.#queue.size > 0 || this.#userQueue.size > 0) this.#gossip(now);
      this.#rollGossip(now);
    }
  }

  /**
   * Keep gossip rounds on their fixed grid. While the queues are empty nobody wakes up for
   * a round; without this, news arriving after a quiet spell would find the round overdue
   * and go out at once, hop after hop, turning periodic gossip into a flood.
   */
  #rollGossip(now: number): void {
    const i = this.config.gossipIntervalMs;
    if (this.#nextGossipAt <= now) this.#nextGossipAt += (Math.floor((now - this.#nextGossipAt) / i) + 1) * i;
  }

  /** Handle one datagram from `from`. Never throws on any input; rejects are counted. */
  receivePacket(packet: Uint8Array, from: string, now: number): void {
    this.counters.packetsReceived++;
    this.counters.bytesReceived += packet.length;
    if (!this.#started || this.#stopped) return;
    if (this.#queue.size === 0 && this.#userQueue.size === 0) this.#rollGossip(now);
    const opened = this.#sealer.open(packet, Channel.Packet);
    if (!opened.ok) {
      this.#countReject(opened.reason, from, 'packet');
      return;
    }
    let messages: PacketMessage[];
    try {
      messages = decodeRecords(opened.plain, this.#limits);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.counters.rejectedMalformed++;
      return;
    }
    for (const m of messages) this.#handle(m, from, now);
  }

  /**
   * Handle one stream frame (a push-pull). Returns the reply to send back, if any. Never
   * throws on any input; rejects are counted and answered with nothing.
   */
  receiveStream(frame: Uint8Array, from: string, now: number): StreamResult {
    if (!this.#started || this.#stopped) return { ok: false, reply: null };
    if (this.#queue.size === 0 && this.#userQueue.size === 0) this.#rollGossip(now);
    const opened = this.#sealer.open(frame, Channel.Stream);
    if (!opened.ok) {
      this.#countReject(opened.reason, from, 'stream');
      return { ok: false, reply: null };
    }
    let pp;
    try {
      pp = decodeStreamFrame(opened.plain, this.#limits, this.config.maxStreamBytes);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.counters.rejectedMalformed++;
      return { ok: false, reply: null };
    }
    this.counters.streamsReceived++;
    if (pp.type === MessageType.Query) {
      const q = pp;
      if (q.reply) {
        this.#safely(() => this.#delegate?.queryAnswered?.(q.payload));
        return { ok: true, reply: null };
      }
      const answer = { payload: null as Uint8Array | null };
      this.#safely(() => (answer.payload = this.#delegate?.answerQuery?.(q.payload) ?? null));
      if (answer.payload === null) return { ok: true, reply: null };
      return { ok: true, reply: this.#sealer.seal(encodeQuery({ reply: true, payload: answer.payload }), Channel.Stream) };
    }
    for (const e of pp.members) this.#mergeEntry(e, now);
    if (pp.userState.length > 0) this.#safely(() => this.#delegate?.mergeRemoteState?.(pp.userState, pp.join));
    if (pp.reply) return { ok: true, reply: null };
    // The reply is built after merging, so it already carries any refutation the request provoked.
    return { ok: true, reply: this.#sealer.seal(this.#encodeState(pp.join, true), Channel.Stream) };
  }

  // ---------------------------------------------------------------- dispatch

  #handle(m: PacketMessage, from: string, now: number): void {
    switch (m.type) {
      case MessageType.Ping:
        // A ping for another name reached a restarted process at a reused address: stay silent
        // so the old name is detected as failed.
        if (m.target !== this.name) return;
        this.#send(from, [encodeRecord({ type: MessageType.Ack, seq: m.seq })]);
        return;
      case MessageType.PingReq:
        this.#relay(m.seq, m.target, m.targetAddr, m.wantNack, from, now);
        return;
      case MessageType.Ack:
        this.#onAck(m.seq);
        return;
      case MessageType.Nack:
        if (this.#probe !== null && this.#probe.seq === m.seq) this.#probe.nacks++;
        return;
      case MessageType.Alive:
        this.#onAlive(m, now);
        return;
      case MessageType.Suspect:
        this.#onSuspect(m, now, from);
        return;
      case MessageType.Dead:
        this.#onDead(m, now);
        return;
      case MessageType.User:
        this.#safely(() => this.#delegate?.notifyMessage?.(m.payload));
        return;
    }
  }

  /** Count (and report) a stream head the runtime could not open, as a frame that did not open is. */
  rejected(reason: OpenFailure, from: string): void {
    this.#countReject(reason, from, 'stream');
  }

  #countReject(reason: OpenFailure, from: string, channel: 'packet' | 'stream'): void {
    if (reason === OpenFailure.Auth) this.counters.rejectedAuth++;
    else if (reason === OpenFailure.Label) this.counters.rejectedLabel++;
    else if (reason === OpenFailure.Version) this.counters.rejectedVersion++;
    else this.counters.rejectedMalformed++;
    if (reason !== OpenFailure.Malformed) this.#safely(() => this.#onReject?.(from, reason, channel));
  }

  // ---------------------------------------------------------------- failure detection

  /** Next member in the shuffled round-robin; every live member is probed once per pass (SWIM §4.3). */
  #nextProbeTarget(now: number): Member | null {
    for (let guard = this.#probeList.length + 1; guard > 0; guard--) {
      if (this.#probeIndex >= this.#probeList.length) {
        this.#resetProbeList(now);
        if (this.#probeList.length === 0) return null;
      }
      const m = this.#probeList[this.#probeIndex++] as Member;
      if (m.live && this.#members.get(m.name) === m) return m;
    }
    return null;
  }

  /** New pass: drop expired tombstones, rebuild the list from live members, reshuffle. */
  #resetProbeList(now: number): void {
    for (const m of this.#probeList) m.inProbeList = false;
    const list: Member[] = [];
    for (let i = this.#all.length - 1; i >= 0; i--) {
      const m = this.#all[i] as Member;
      if (m.live) {
        list.push(m);
        m.inProbeList = true;
      } else {
        const ttl = m.state === WireState.Dead ? this.config.deadMemberTtlMs : this.config.leftMemberTtlMs;
        if (now - m.stateChangeAt > ttl) this.#removeMember(m);
      }
    }
    shuffle(list, this.#random);
    this.#probeList = list;
    this.#probeIndex = 0;
  }

  #startProbe(now: number): void {
    const c = this.config;
    // Local health stretches the whole period (and with it the indirect window), not the
    // direct ack timeout: waiting longer for a lost UDP packet does not bring it back.
    const period = this.#awareness.scale(c.probeIntervalMs);
    this.#nextProbeAt = now + period;
    const target = this.#nextProbeTarget(now);
    if (target === null) return;
    const seq = this.#nextSeq();
    this.#probe = { seq, target, indirectAt: now + c.probeTimeoutMs, endAt: now + period, indirect: false, expectedNacks: 0, nacks: 0 };
    const records = [encodeRecord({ type: MessageType.Ping, seq, target: target.name })];
    if (target.state === WireState.Suspect) {
      // Tell a suspect directly, so it can refute before the news reaches it by gossip.
      records.push(encodeRecord({ type: MessageType.Suspect, incarnation: target.incarnation, name: target.name, from: this.name }));
    }
    this.counters.probes++;
    this.#send(target.addr, records);
  }

  #probeIndirect(p: Probe): void {
    p.indirect = true;
    const target = p.target;
    const relays = pickRandom(this.#all, this.config.indirectChecks, this.#random, (m) => m !== target && m.state === WireState.Alive);
    const wantNack = this.config.nacks;
    for (const r of relays) {
      this.#send(r.addr, [encodeRecord({ type: MessageType.PingReq, seq: p.seq, target: target.name, targetAddr: target.addr, wantNack })]);
    }
    this.counters.indirectProbes += relays.length;
    p.expectedNacks = wantNack ? relays.length : 0;
    if (this.#onProbeMissed !== undefined) this.#safely(() => this.#onProbeMissed?.(target.name, target.addr));
  }

  #probeFailed(p: Probe, now: number): void {
    this.#probe = null;
    this.counters.probeFailures++;
    // Lifeguard: relays that did not even send a nack point at our own network or CPU, so
    // our health score rises by the nacks missed; without relays to ask, by one.
    const missed = p.expectedNacks > 0 ? Math.max(0, p.expectedNacks - p.nacks) : 1;
    this.counters.awareness = this.#awareness.applyDelta(missed);
    const t = p.target;
    if (this.#members.get(t.name) !== t || !t.live) return;
    this.#onSuspect({ type: MessageType.Suspect, incarnation: t.incarnation, name: t.name, from: this.name }, now);
  }

  #onAck(seq: number): void {
    const p = this.#probe;
    if (p !== null && p.seq === seq) {
      if (!p.indirect) this.counters.awareness = this.#awareness.applyDelta(-1);
      this.#probe = null;
      return;
    }
    const r = this.#relays.get(seq);
    if (r !== undefined && !r.done) {
      r.done = true;
      this.#relays.delete(seq);
      this.#send(r.requester, [encodeRecord({ type: MessageType.Ack, seq: r.origSeq })]);
    }
  }

  #relay(origSeq: number, target: string, targetAddr: string, wantNack: boolean, requester: string, now: number): void {
    if (this.#relays.size >= this.config.maxPendingRelays) {
      this.counters.relaysRejected++;
      return;
    }
    const seq = this.#nextSeq();
    const c = this.config;
    // The nack goes out before the requester's own deadline (80% of the probe timeout, as
    // Lifeguard suggests) so it arrives while it still counts.
    const r: Relay = { seq, origSeq, requester, wantNack, nackAt: now + Math.floor(c.probeTimeoutMs * 0.8), expireAt: now + c.probeIntervalMs, done: false };
    this.#relays.set(seq, r);
    this.#relayQueue.push(r);
    this.#send(targetAddr, [encodeRecord({ type: MessageType.Ping, seq, target })]);
  }

  #tickRelays(now: number): void {
    const q = this.#relayQueue;
    // Both deadlines are a fixed offset from creation, so each is reached in queue order.
    while (this.#relayNackHead < q.length) {
      const r = q[this.#relayNackHead] as Relay;
      if (r.nackAt > now) break;
      this.#relayNackHead++;
      if (!r.done && r.wantNack) {
        this.counters.nacksSent++;
        this.#send(r.requester, [encodeRecord({ type: MessageType.Nack, seq: r.origSeq })]);
      }
    }
    while (this.#relayExpireHead < q.length) {
      const r = q[this.#relayExpireHead] as Relay;
      if (r.expireAt > now) break;
      this.#relayExpireHead++;
      r.done = true;
      this.#relays.delete(r.seq);
    }
    const head = Math.min(this.#relayNackHead, this.#relayExpireHead);
    if (head > 256 && head * 2 > q.length) {
      this.#relayQueue = q.slice(head);
      this.#relayNackHead -= head;
      this.#relayExpireHead -= head;
    }
  }

  #tickSuspicions(now: number): void {
    if (this.#suspects.size === 0) return;
    const due: Member[] = [];
    for (const [m, s] of this.#suspects) if (s.deadline <= now) due.push(m);
    for (const m of due) {
      // Identity guard: only the suspicion that set this deadline may kill the member.
      const s = this.#suspects.get(m);
      if (m.state !== WireState.Suspect || s === undefined || s.deadline > now) continue;
      this.#onDead({ type: MessageType.Dead, incarnation: m.incarnation, name: m.name, from: this.name }, now);
    }
  }

  // ---------------------------------------------------------------- membership rules

  #onAlive(a: Alive | { name: string; addr: string; meta: Uint8Array; incarnation: number }, now: number): void {
    if (a.name === this.name) {
      const self = this.#self;
      // An alive about us newer than ours, or with our incarnation but other data, is an
      // older life of ours (we restarted) or an impostor: out-bid it.
      if (a.incarnation > self.incarnation || (a.incarnation === self.incarnation && (a.addr !== self.addr || !sameBytes(a.meta, self.meta)))) {
        // A claim from another address once is an older life of ours; a second one, above the
        // refutation we answered the first with, is a live process refuting in turn.
        if (a.addr !== self.addr) {
          if (this.#claimedFrom === a.addr) {
            const other = { name: a.name, addr: a.addr, meta: Uint8Array.from(a.meta), incarnation: a.incarnation, state: MemberState.Alive };
            this.#safely(() => this.#onConflict?.(other));
          }
          this.#claimedFrom = a.addr;
        }
        this.#refute(a.incarnation);
      }
      return;
    }
    let m = this.#members.get(a.name);
    if (m === undefined) {
      if (this.#members.size >= this.config.maxMembers && !this.#evictTombstone()) {
        this.counters.membersRejected++;
        return;
      }
      m = this.#addMember(a.name, a.addr, a.meta, a.incarnation, now);
      this.#broadcastAlive(m);
      this.#emit(MembershipEventType.Join, m, now);
      return;
    }
    // Only a strictly newer incarnation changes anything (SWIM §4.2): this is what keeps a
    // dead node's old life from being resurrected by late gossip.
    if (a.incarnation <= m.incarnation) return;
    const prev = m.state;
    const changed = m.addr !== a.addr || !sameBytes(m.meta, a.meta);
    m.incarnation = a.incarnation;
    m.addr = a.addr;
    m.meta = a.meta;
    this.#setState(m, WireState.Alive, now);
    if (!m.inProbeList) this.#insertIntoProbeList(m);
    this.#broadcastAlive(m);
    if (prev === WireState.Suspect) this.#emit(MembershipEventType.Alive, m, now);
    else if (prev === WireState.Dead || prev === WireState.Left) this.#emit(MembershipEventType.Join, m, now);
    else if (changed) this.#emit(MembershipEventType.Update, m, now);
  }

  /** @param sender the address the record came from, when it came in a datagram. */
  #onSuspect(s: Suspect | { name: string; incarnation: number; from: string }, now: number, sender?: string): void {
    if (s.name === this.name) {
      this.#onSuspectSelf(s, sender);
      return;
    }
    const m = this.#members.get(s.name);
    if (m === undefined || s.incarnation < m.incarnation || !m.live) return;
    const record = encodeRecord({ type: MessageType.Suspect, incarnation: s.incarnation, name: s.name, from: s.from });
    const current = this.#suspects.get(m);
    if (m.state === WireState.Suspect && current !== undefined) {
      if (s.incarnation > m.incarnation) m.incarnation = s.incarnation;
      // A new independent confirmation shortens the timeout; pass it on so others count it.
      if (current.confirm(s.from)) this.#queue.enqueue(record, m.name);
      return;
    }
    const c = this.config;
    // k confirmations drive the timeout to its minimum; a small cluster cannot supply them.
    let k = c.suspicionMult - 2;
    if (this.#live - 2 < k) k = 0;
    const min = suspicionTimeout(c.suspicionMult, this.#live, c.probeIntervalMs);
    const max = c.suspicionMaxTimeoutMult * min;
    m.incarnation = s.incarnation;
    this.#setState(m, WireState.Suspect, now);
    this.#suspects.set(m, new Suspicion(s.from, k, min, max, now));
    this.counters.suspicions++;
    this.#queue.enqueue(record, m.name);
    this.#emit(MembershipEventType.Suspect, m, now);
  }

  #onSuspectSelf(s: { incarnation: number; from: string }, sender: string | undefined): void {
    const self = this.#self;
    if (this.#leaving || !self.live) return;
    if (s.incarnation >= self.incarnation) {
      // Being suspected is itself a sign we may be the slow one (Lifeguard).
      this.counters.awareness = this.#awareness.applyDelta(1);
      this.#refute(s.incarnation);
    }
    // An accuser that tells us itself (a probe of a suspect, a lost link) gets the refutation
    // back at once: a link-based suspicion may end within linkSuspicionMs, faster than gossip
    // is sure to carry it. Once per accusation packet, so its cost is the accuser's.
    if (sender !== undefined && this.#members.get(s.from)?.addr === sender) {
      this.#send(sender, [encodeRecord({ type: MessageType.Alive, incarnation: self.incarnation, name: self.name, addr: self.addr, meta: self.meta })]);
    }
  }

  #onDead(d: Dead | { name: string; incarnation: number; from: string }, now: number): void {
    const m = this.#members.get(d.name);
    if (m === undefined || d.incarnation < m.incarnation || !m.live) return;
    if (m === this.#self) {
      if (!this.#leaving) this.#refute(d.incarnation);
      return;
    }
    const left = d.from === d.name;
    m.incarnation = d.incarnation;
    this.#setState(m, left ? WireState.Left : WireState.Dead, now);
    if (!left) this.counters.deaths++;
    this.#queue.enqueue(encodeRecord({ type: MessageType.Dead, incarnation: d.incarnation, name: d.name, from: d.from }), m.name);
    this.#emit(left ? MembershipEventType.Leave : MembershipEventType.Dead, m, now);
  }

  #refute(accused: number): void {
    const self = this.#self;
    self.incarnation = Math.max(self.incarnation, accused) + 1;
    this.counters.refutations++;
    this.#broadcastAlive(self);
  }

  /** Push-pull merge (memberlist mergeState): a remote "dead" becomes a local suspicion, so one node's stale view cannot kill members outright. */
  #mergeEntry(e: PushPullEntry, now: number): void {
    switch (e.state) {
      case WireState.Alive:
        this.#onAlive(e, now);
        return;
      case WireState.Left:
        this.#onDead({ name: e.name, incarnation: e.incarnation, from: e.name }, now);
        return;
      case WireState.Suspect:
      case WireState.Dead:
        this.#onSuspect({ name: e.name, incarnation: e.incarnation, from: this.name }, now);
        return;
    }
  }

  #setState(m: Member, state: WireState, now: number): void {
    const wasLive = m.live;
    m.state = state;
    m.stateChangeAt = now;
    const isLive = m.live;
    if (wasLive && !isLive) this.#live--;
    else if (!wasLive && isLive) this.#live++;
    if (state !== WireState.Suspect) this.#suspects.delete(m);
  }

  #addMember(name: string, addr: string, meta: Uint8Array, incarnation: number, now: number, probe = true): Member {
    const m = new Member(name, addr, meta, incarnation, WireState.Alive, now);
    this.#members.set(name, m);
    m.index = this.#all.length;
    this.#all.push(m);
    this.#live++;
    if (probe) this.#insertIntoProbeList(m);
    return m;
  }

  /** A newcomer goes to a random place in the current pass, so it is probed within one pass. */
  #insertIntoProbeList(m: Member): void {
    const list = this.#probeList;
    const lo = this.#probeIndex;
    const at = lo + randomIndex(this.#random, list.length - lo + 1);
    list.splice(at, 0, m);
    m.inProbeList = true;
  }

  #removeMember(m: Member): void {
    this.#members.delete(m.name);
    const last = this.#all.pop() as Member;
    if (last !== m) {
      this.#all[m.index] = last;
      last.index = m.index;
    }
    m.index = -1;
    if (m.live) this.#live--;
    this.#suspects.delete(m);
  }

  /** Make room for a newcomer by forgetting the oldest tombstone. */
  #evictTombstone(): boolean {
    let oldest: Member | null = null;
    for (const m of this.#all) if (!m.live && (oldest === null || m.stateChangeAt < oldest.stateChangeAt)) oldest = m;
    if (oldest === null) return false;
    this.#removeMember(oldest);
    return true;
  }

  // ---------------------------------------------------------------- dissemination

  #broadcastAlive(m: Member): void {
    this.#queue.enqueue(encodeRecord({ type: MessageType.Alive, incarnation: m.incarnation, name: m.name, addr: m.addr, meta: m.meta }), m.name);
  }

  /** Gossip round: queued news to a few random members, the recently dead included so a live one wrongly declared dead hears it and refutes. */
  #gossip(now: number): void {
    const toTheDead = this.config.gossipToTheDeadMs;
    const targets = pickRandom(this.#all, this.config.gossipNodes, this.#random, (m) => m.live || (m.state === WireState.Dead && now - m.stateChangeAt < toTheDead));
    for (const t of targets) {
      if (this.#queue.size === 0 && this.#userQueue.size === 0) return;
      this.#send(t.addr, [], true);
    }
  }

  /**
   * Seal and send `records` to `to`, filling the rest of the datagram with queued
   * broadcasts (membership first, then application). With `onlyIfNews`, nothing is sent
   * when there is no broadcast to carry.
   */
  #send(to: string, records: Uint8Array[], onlyIfNews = false): void {
    let size = 0;
    for (const r of records) size += r.length;
    const limit = retransmitLimit(this.config.retransmitMult, this.#live);
    let budget = this.config.maxPacketBytes - this.#sealer.overhead - size;
    if (budget > 0 && this.#queue.size > 0) {
      for (const r of this.#queue.take(budget, limit)) {
        records.push(r);
        budget -= r.length;
        size += r.length;
      }
    }
    if (budget > 0 && this.#userQueue.size > 0) {
      for (const r of this.#userQueue.take(budget, limit)) {
        records.push(r);
        size += r.length;
      }
    }
    if (records.length === 0 || (onlyIfNews && size === 0)) return;
    const plain = records.length === 1 ? (records[0] as Uint8Array) : Buffer.concat(records, size);
    const sealed = this.#sealer.seal(plain, Channel.Packet);
    this.counters.packetsSent++;
    this.counters.bytesSent += sealed.length;
    this.#transport.sendPacket(to, sealed);
  }

  // ---------------------------------------------------------------- anti-entropy

  #encodeState(join: boolean, reply: boolean): Uint8Array {
    const members: PushPullEntry[] = [{ name: this.#self.name, addr: this.#self.addr, meta: this.#self.meta, incarnation: this.#self.incarnation, state: this.#self.state }];
    for (const m of this.#all) members.push({ name: m.name, addr: m.addr, meta: m.meta, incarnation: m.incarnation, state: m.state });
    let userState: Uint8Array = EMPTY;
    this.#safely(() => {
      userState = this.#delegate?.localState?.(join) ?? EMPTY;
    });
    return encodePushPull({ type: MessageType.PushPull, join, reply, members, userState });
  }

  #pushPull(addr: string, join: boolean): boolean {
    const frame = this.#sealer.seal(this.#encodeState(join, false), Channel.Stream);
    if (frame.length > this.config.maxStreamBytes) return false;
    this.counters.streamsSent++;
    this.#transport.sendStream(addr, frame);
    return true;
  }

  // ---------------------------------------------------------------- helpers

  #nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0;
    return this.#seq;
  }

  #emit(type: MembershipEventType, m: Member, now: number): void {
    if (this.#onEvent === undefined) return;
    const event: MembershipEvent = { type, member: m.info(), at: now };
    this.#safely(() => this.#onEvent?.(event));
  }

  /** Run application code without letting it corrupt a state transition: its exception resurfaces asynchronously. */
  #safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
