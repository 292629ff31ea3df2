/**
 * A deterministic network simulator for the gossip state machine: virtual time, one event
 * queue, per-packet loss, latency with jitter, partitions and crashes. It drives the same
 * SwimNode the UDP runtime drives; only the clock and the wire are simulated. Given the same
 * seed and the same calls, a run is identical every time.
 *
 * Used by the multi-node tests (as memberlist's MockNetwork) and by native-bench/sim.
 */
import type { GossipConfig } from './gossip-config.js';
import { seededRandom, type Random } from './math.js';
import { AesGcmSealer, Channel, checkHeader, Keyring, labelBytes, NONCE_BYTES, sealedHeader, TAG_BYTES, type OpenResult, type PacketSealer } from './security.js';
import { SwimNode, type PreloadEntry } from './state.js';
import type { GossipDelegate, MembershipEvent } from './transport.js';

/**
 * A sealer with the exact layout and size of AesGcmSealer but no cryptography: the
 * simulator's byte counts stay true while large clusters run fast. Authenticates nothing;
 * never use it on a network.
 */
export class SimulatedSealer implements PacketSealer {
  readonly overhead: number;
  readonly #label: Buffer;
  readonly #headers: Buffer[];

  constructor(label = '') {
    this.#label = labelBytes(label);
    this.overhead = 3 + this.#label.length + NONCE_BYTES + TAG_BYTES;
    this.#headers = [sealedHeader(Channel.Packet, this.#label), sealedHeader(Channel.Stream, this.#label)];
  }

  seal(plain: Uint8Array, channel: Channel): Uint8Array {
    const header = this.#headers[channel - 1] as Buffer;
    const out = Buffer.alloc(header.length + NONCE_BYTES + plain.length + TAG_BYTES);
    header.copy(out, 0);
    out.set(plain, header.length + NONCE_BYTES);
    return out;
  }

  open(sealed: Uint8Array, channel: Channel): OpenResult {
    const h = checkHeader(sealed, channel, this.#label);
    if (typeof h !== 'number') return { ok: false, reason: h };
    return { ok: true, plain: sealed.subarray(h + NONCE_BYTES, sealed.length - TAG_BYTES) };
  }
}

const Kind = { Wake: 0, Packet: 1, StreamRequest: 2, StreamReply: 3 } as const;
type Kind = (typeof Kind)[keyof typeof Kind];

interface SimEvent {
  t: number;
  seq: number;
  kind: Kind;
  host: SimHost;
  /** Sender address (packets, streams); for a stream reply, the peer that replied. */
  from: string;
  /** Sender host, for stream requests (the reply goes back to it). */
  origin: SimHost | null;
  data: Uint8Array | null;
}

/** Binary min-heap on (t, seq). */
class EventHeap {
  readonly #a: SimEvent[] = [];

  get size(): number {
    return this.#a.length;
  }

  peek(): SimEvent | undefined {
    return this.#a[0];
  }

  push(e: SimEvent): void {
    const a = this.#a;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pe = a[p] as SimEvent;
      if (pe.t < e.t || (pe.t === e.t && pe.seq < e.seq)) break;
      a[i] = pe;
      i = p;
    }
    a[i] = e;
  }

  pop(): SimEvent | undefined {
    const a = this.#a;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    let i = 0;
    const n = a.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      const le = a[l] as SimEvent;
      if (r < n) {
        const re = a[r] as SimEvent;
        if (re.t < le.t || (re.t === le.t && re.seq < le.seq)) c = r;
      }
      const ce = a[c] as SimEvent;
      if (last.t < ce.t || (last.t === ce.t && last.seq < ce.seq)) break;
      a[i] = ce;
      i = c;
    }
    a[i] = last;
    return top;
  }
}

/** One simulated process hosting one SwimNode. */
export class SimHost {
  readonly name: string;
  readonly addr: string;
  readonly node: SwimNode;
  /** False after crash(): the process neither sends nor receives. */
  up = true;
  /** Extra loss on packets this host sends / receives (a degraded host). */
  lossOut = 0;
  lossIn = 0;
  /**
   * Extra delay, in ms, before this host handles a packet (uniform in [0.5, 1.5) times the
   * value): a process starved of CPU, the failure mode Lifeguard was designed for.
   */
  delayIn = 0;
  /** Partition group: packets and streams only flow within a group. */
  group = 0;
  /** Events seen, when the network keeps them. */
  readonly events: MembershipEvent[] = [];
  /** Scheduled wake-up time (the single timer of a runtime). */
  wakeAt = Infinity;

  constructor(name: string, addr: string, node: SwimNode) {
    this.name = name;
    this.addr = addr;
    this.node = node;
  }
}

export interface SimNetworkOptions {
  /** Seed of every random choice (network and nodes). */
  seed?: number;
  /** One-way latency floor, ms. */
  latencyMs?: number;
  /** Uniform extra latency in [0, jitterMs), ms. */
  jitterMs?: number;
  /** Probability that any packet is lost (each direction independently). */
  loss?: number;
  /** Config every node starts from. */
  config?: Partial<GossipConfig>;
  /** Real AES-256-GCM (default) or the simulated sealer of the same size (fast, for big clusters). */
  encryption?: boolean;
  /** Cluster key for encryption (default: a fixed test key). */
  key?: Uint8Array;
  label?: string;
  /** Keep every membership event on its host (tests); off for big simulations. */
  keepEvents?: boolean;
}

export interface SimNodeOptions {
  addr?: string;
  config?: Partial<GossipConfig>;
  incarnation?: number;
  meta?: Uint8Array;
  delegate?: GossipDelegate;
  /** Another sealer (another key or label) for this node only. */
  sealer?: PacketSealer;
  /** Start the protocol at once (default true). */
  start?: boolean;
}

export interface SimStats {
  packetsSent: number;
  packetsDropped: number;
  packetsDelivered: number;
  bytesSent: number;
  streams: number;
  streamsFailed: number;
  /** Largest datagram sent. */
  maxPacketBytes: number;
  /** Bytes of stream frames (push-pull requests and replies). */
  streamBytes: number;
}

const DEFAULT_KEY = Buffer.alloc(32, 7);

export class SimNetwork {
  now = 0;
  readonly hosts = new Map<string, SimHost>();
  readonly stats: SimStats = { packetsSent: 0, packetsDropped: 0, packetsDelivered: 0, bytesSent: 0, streams: 0, streamsFailed: 0, maxPacketBytes: 0, streamBytes: 0 };
  /** Called for every membership event on every host. */
  onEvent: ((host: SimHost, event: MembershipEvent) => void) | null = null;
  loss: number;
  readonly latencyMs: number;
  readonly jitterMs: number;
  readonly config: Partial<GossipConfig>;

  readonly #random: Random;
  readonly #heap = new EventHeap();
  readonly #byAddr = new Map<string, SimHost>();
  #seq = 0;
  readonly #encryption: boolean;
  readonly #key: Uint8Array;
  readonly #label: string;
  readonly #keepEvents: boolean;

  constructor(options: SimNetworkOptions = {}) {
    this.#random = seededRandom(options.seed ?? 1);
    this.latencyMs = options.latencyMs ?? 1;
    this.jitterMs = options.jitterMs ?? 1;
    this.loss = options.loss ?? 0;
    this.config = options.config ?? {};
    this.#encryption = options.encryption ?? true;
    this.#key = options.key ?? DEFAULT_KEY;
    this.#label = options.label ?? '';
    this.#keepEvents = options.keepEvents ?? true;
  }

  /** A sealer as the network's nodes use by default. */
  defaultSealer(): PacketSealer {
    return this.#encryption ? new AesGcmSealer(new Keyring([this.#key]), this.#label) : new SimulatedSealer(this.#label);
  }

  /** Add a node (replacing any host of the same name, e.g. a restart) and start it. */
  addNode(name: string, options: SimNodeOptions = {}): SimHost {
    const addr = options.addr ?? name;
    const old = this.hosts.get(name);
    if (old) {
      old.up = false;
      old.node.stop();
      if (this.#byAddr.get(old.addr) === old) this.#byAddr.delete(old.addr);
    }
    let host: SimHost | null = null;
    const node = new SwimNode({
      name,
      addr,
      meta: options.meta,
      incarnation: options.incarnation,
      config: { ...this.config, ...options.config },
      sealer: options.sealer ?? this.defaultSealer(),
      random: seededRandom(Math.floor(this.#random() * 0xffffffff)),
      delegate: options.delegate,
      transport: {
        sendPacket: (to, packet) => this.#sendPacket(host as SimHost, to, packet),
        sendStream: (to, frame) => this.#sendStream(host as SimHost, to, frame),
      },
      onEvent: (event) => {
        const h = host as SimHost;
        if (this.#keepEvents) h.events.push(event);
        this.onEvent?.(h, event);
      },
    });
    host = new SimHost(name, addr, node);
    this.hosts.set(name, host);
    this.#byAddr.set(addr, host);
    if (options.start ?? true) {
      node.start(this.now);
      this.#schedule(host);
    }
    return host;
  }

  host(name: string): SimHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no simulated host ${name}`);
    return h;
  }

  /** Join `name` through the seeds' addresses. */
  join(name: string, seeds: readonly string[]): void {
    const h = this.host(name);
    h.node.join(seeds.map((s) => this.hosts.get(s)?.addr ?? s), this.now);
    this.#schedule(h);
  }

  /** Give every listed node the full member list at once (a formed cluster, without replaying joins). */
  preloadAll(names?: readonly string[]): void {
    const list = names ?? [...this.hosts.keys()];
    const entries: PreloadEntry[] = list.map((n) => {
      const h = this.host(n);
      return { name: n, addr: h.addr, incarnation: h.node.incarnation };
    });
    for (const n of list) {
      const h = this.host(n);
      h.node.preload(entries, this.now);
      this.#schedule(h);
    }
  }

  /**
   * Re-arm `name`'s wake-up after the test called into its node from outside an event (a
   * broadcast queued by a layer above), as a runtime re-arms its timer after any call.
   */
  poke(name: string): void {
    this.#schedule(this.host(name));
  }

  /** Kill a process abruptly (kill -9): no leave, no more packets. */
  crash(name: string): void {
    const h = this.host(name);
    h.up = false;
    h.node.stop();
  }

  /** Graceful leave of `name`; the host stops once the announcement was sent (or after `stopAfterMs`). */
  leave(name: string, stopAfterMs = 0): void {
    const h = this.host(name);
    h.node.leave(this.now, () => {
      if (stopAfterMs === 0) h.node.stop();
    });
    this.#schedule(h);
  }

  /** Split the cluster: each listed group only reaches itself; unlisted hosts form group 0. */
  partition(groups: readonly (readonly string[])[]): void {
    for (const h of this.hosts.values()) h.group = 0;
    groups.forEach((g, i) => {
      for (const n of g) this.host(n).group = i + 1;
    });
  }

  heal(): void {
    for (const h of this.hosts.values()) h.group = 0;
  }

  /** Advance virtual time by `ms`, processing every event due. */
  run(ms: number): void {
    this.#runTo(this.now + ms);
  }

  /**
   * Advance until `done()` holds (checked every `stepMs`) or `maxMs` passed.
   * Returns the virtual time taken, or -1 on timeout.
   */
  runUntil(done: () => boolean, maxMs: number, stepMs = 10): number {
    const start = this.now;
    const end = start + maxMs;
    while (this.now < end) {
      if (done()) return this.now - start;
      this.#runTo(Math.min(end, this.now + stepMs));
    }
    return done() ? this.now - start : -1;
  }

  /** Hosts whose process is up. */
  upHosts(): SimHost[] {
    return [...this.hosts.values()].filter((h) => h.up);
  }

  #runTo(t: number): void {
    const heap = this.#heap;
    for (;;) {
      const e = heap.peek();
      if (e === undefined || e.t > t) break;
      heap.pop();
      this.now = e.t;
      this.#dispatch(e);
    }
    this.now = t;
  }

  #dispatch(e: SimEvent): void {
    const h = e.host;
    switch (e.kind) {
      case Kind.Wake:
        if (e.t !== h.wakeAt) return; // superseded by an earlier wake-up
        h.wakeAt = Infinity;
        if (!h.up) return;
        h.node.tick(this.now);
        this.#schedule(h);
        return;
      case Kind.Packet:
        if (!h.up) {
          this.stats.packetsDropped++;
          return;
        }
        this.stats.packetsDelivered++;
        h.node.receivePacket(e.data as Uint8Array, e.from, this.now);
        this.#schedule(h);
        return;
      case Kind.StreamRequest: {
        const origin = e.origin as SimHost;
        if (!h.up || !this.#reachable(origin, h)) {
          this.stats.streamsFailed++;
          return;
        }
        const res = h.node.receiveStream(e.data as Uint8Array, e.from, this.now);
        this.#schedule(h);
        if (res.reply !== null) this.stats.streamBytes += res.reply.length;
        if (res.reply !== null) this.#push(this.now + this.#latency(), Kind.StreamReply, origin, h.addr, null, res.reply);
        return;
      }
      case Kind.StreamReply:
        if (!h.up) return;
        h.node.receiveStream(e.data as Uint8Array, e.from, this.now);
        this.#schedule(h);
        return;
    }
  }

  #reachable(a: SimHost, b: SimHost): boolean {
    return a.group === b.group;
  }

  #latency(): number {
    return this.latencyMs + this.#random() * this.jitterMs;
  }

  #sendPacket(from: SimHost, to: string, packet: Uint8Array): void {
    if (!from.up) return;
    this.stats.packetsSent++;
    this.stats.bytesSent += packet.length;
    if (packet.length > this.stats.maxPacketBytes) this.stats.maxPacketBytes = packet.length;
    const dest = this.#byAddr.get(to);
    if (dest === undefined || !this.#reachable(from, dest)) {
      this.stats.packetsDropped++;
      return;
    }
    const p = this.loss + from.lossOut + dest.lossIn;
    if (p > 0 && this.#random() < p) {
      this.stats.packetsDropped++;
      return;
    }
    const slow = dest.delayIn > 0 ? dest.delayIn * (0.5 + this.#random()) : 0;
    this.#push(this.now + this.#latency() + slow, Kind.Packet, dest, from.addr, null, packet);
  }

  #sendStream(from: SimHost, to: string, frame: Uint8Array): void {
    if (!from.up) return;
    this.stats.streams++;
    this.stats.streamBytes += frame.length;
    const dest = this.#byAddr.get(to);
    if (dest === undefined) {
      this.stats.streamsFailed++;
      return;
    }
    this.#push(this.now + this.#latency(), Kind.StreamRequest, dest, from.addr, from, frame);
  }

  #schedule(h: SimHost): void {
    if (!h.up) return;
    let d = h.node.nextDeadline();
    if (d === Infinity || d >= h.wakeAt) return;
    if (d < this.now) d = this.now;
    h.wakeAt = d;
    this.#push(d, Kind.Wake, h, '', null, null);
  }

  #push(t: number, kind: Kind, host: SimHost, from: string, origin: SimHost | null, data: Uint8Array | null): void {
    this.#heap.push({ t, seq: this.#seq++, kind, host, from, origin, data });
  }
}
