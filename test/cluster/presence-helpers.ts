// Helpers for the cluster presence tests: a scripted network of ClusterPresence stores
// (broadcasts queued until delivered, push-pull on demand, membership set by hand), the
// presence layer over the gossip simulator, and comparisons of views.
import { ClusterPresence, type ClusterPresenceOptions, type PresenceHost } from '../../src/cluster/presence/store.js';
import type { PresenceChange, PresenceEntry } from '../../src/cluster/presence/types.js';
import { SimNetwork, type SimHost, type SimNetworkOptions } from '../../src/cluster/gossip/simnet.js';
import { replicationTiming } from '../../src/cluster/presence/store.js';
import type { GossipConfig } from '../../src/cluster/gossip/gossip-config.js';

export const entry = (user: string, conn: string, meta: Record<string, unknown> | null = null, since = 1): PresenceEntry => ({ user, conn, meta, since });

/**
 * Which of `users` are online anywhere, as `p.askOnline` answers once `drive` has run (the
 * network delivering the asks); sorted, with ' (partial)' appended when a node did not answer.
 */
export function askOnline(p: ClusterPresence, users: readonly string[], drive: () => void): string[] {
  let out: string[] | null = null;
  p.askOnline(users, (r) => {
    out = r === 'busy' ? ['busy'] : [...r.online].sort().concat(r.partial ? [' (partial)'] : []);
  });
  if (out === null) drive();
  if (out === null) throw new Error('askOnline did not answer');
  return out;
}

/** A store's view as sorted lines "topic conn user meta", for equality checks. */
export function view(p: ClusterPresence, topics: readonly string[]): string[] {
  const out: string[] = [];
  for (const t of topics) for (const e of p.list(t)) out.push(`${t} ${e.conn} ${e.user} ${JSON.stringify(e.meta)}`);
  return out.sort();
}

/** The entries nodes own, as the same lines: what every view must equal. */
export function union(stores: readonly ClusterPresence[]): string[] {
  const out: string[] = [];
  for (const p of stores) for (const [t, es] of p.entriesOf(p.name)) for (const e of es) out.push(`${t} ${e.conn} ${e.user} ${JSON.stringify(e.meta)}`);
  return out.sort();
}

export function topicsOf(stores: readonly ClusterPresence[]): string[] {
  const s = new Set<string>();
  for (const p of stores) for (const t of p.entriesOf(p.name).keys()) s.add(t);
  return [...s];
}

interface Queued {
  to: string;
  payload: Uint8Array;
}

/**
 * A scripted network: each broadcast is queued for every other live node and delivered by
 * `deliver()` (optionally reordered or filtered), push-pulls happen at once, and membership
 * is whatever the test says. Time is `now`, advanced by hand.
 */
export class ScriptedNet {
  now = 0;
  readonly stores = new Map<string, ClusterPresence>();
  readonly members = new Map<string, 'alive' | 'dead' | 'left'>();
  queue: Queued[] = [];
  /** Queries sent and not yet delivered (`deliver` delivers them and their answers). */
  queries: Array<{ from: string; to: string; payload: Uint8Array }> = [];
  /** Nodes that never answer a query (a stalled process). */
  readonly deaf = new Set<string>();
  readonly changes = new Map<string, PresenceChange[]>();
  pulls: string[] = [];
  maxPayloadBytes = 1300;

  add(name: string, options: Partial<ClusterPresenceOptions> = {}): ClusterPresence {
    const p = new ClusterPresence({ name, epoch: 1000, clock: () => this.now, random: () => 0.5, ...options });
    this.stores.set(name, p);
    this.members.set(name, 'alive');
    const log: PresenceChange[] = [];
    this.changes.set(name, log);
    p.onChange((c) => log.push(c));
    const net = this;
    const host: PresenceHost = {
      broadcast: (payload) => {
        for (const [other, state] of this.members) if (other !== name && state === 'alive') this.queue.push({ to: other, payload: Buffer.from(payload) });
      },
      get maxPayloadBytes() {
        return net.maxPayloadBytes;
      },
      syncWith: (peer) => {
        const q = this.stores.get(peer);
        if (q === undefined || this.members.get(peer) !== 'alive') return false;
        this.pulls.push(`${name}<-${peer}`);
        q.delegate.mergeRemoteState?.(p.delegate.localState?.(false) ?? new Uint8Array(0), false);
        p.delegate.mergeRemoteState?.(q.delegate.localState?.(false) ?? new Uint8Array(0), false);
        return true;
      },
      isLive: (n) => this.members.get(n) === 'alive',
      query: (peer, payload) => {
        if (this.members.get(peer) !== 'alive') return false;
        this.queries.push({ from: name, to: peer, payload: Buffer.from(payload) });
        return true;
      },
    };
    p.attach(host);
    // Every other node hears about the newcomer.
    for (const [other, q] of this.stores) if (other !== name) q.onMember('join', name);
    for (const other of this.stores.keys()) if (other !== name) p.onMember('join', other);
    return p;
  }

  get(name: string): ClusterPresence {
    const p = this.stores.get(name);
    if (p === undefined) throw new Error(`no store ${name}`);
    return p;
  }

  /** Flush every store, then deliver queued payloads (in order, or as `order` rearranges them) until none is left. */
  deliver(order: (q: Queued[]) => Queued[] = (q) => q, maxRounds = 100): number {
    let n = 0;
    for (let round = 0; round < maxRounds; round++) {
      for (const p of this.stores.values()) p.flush();
      const queries = this.queries;
      this.queries = [];
      for (const q of queries) {
        if (this.members.get(q.to) !== 'alive' || this.deaf.has(q.to)) continue;
        const answer = this.get(q.to).delegate.answerQuery?.(q.payload) ?? null;
        if (answer !== null && this.members.get(q.from) === 'alive') this.get(q.from).delegate.queryAnswered?.(answer);
        n++;
      }
      if (this.queue.length === 0 && this.queries.length === 0) return n;
      const batch = order(this.queue);
      this.queue = [];
      for (const m of batch) {
        if (this.members.get(m.to) !== 'alive') continue;
        this.get(m.to).delegate.notifyMessage?.(m.payload);
        n++;
      }
    }
    throw new Error('deliveries did not settle');
  }

  /** Advance time by `ms` and tick every live store (repairs). */
  advance(ms: number): void {
    this.now += ms;
    for (const [name, p] of this.stores) if (this.members.get(name) === 'alive') p.tick(this.now);
  }

  /** Set a member's state and tell every other live store. */
  setMember(name: string, state: 'alive' | 'dead' | 'left'): void {
    const type = state === 'alive' ? 'join' : state === 'dead' ? 'dead' : 'leave';
    this.members.set(name, state);
    for (const [other, p] of this.stores) if (other !== name && this.members.get(other) === 'alive') p.onMember(type, name);
  }
}

/** One node of the gossip simulator with a ClusterPresence on top. */
export interface SimPresenceNode {
  host: SimHost;
  presence: ClusterPresence;
}

/**
 * The presence layer over the gossip simulator: every node's store is wired to its SwimNode
 * (broadcasts, pulls, membership events) and to the virtual clock. `step` flushes and ticks
 * every store; `runUntil` advances virtual time in steps, driving the stores in between.
 */
export class SimPresence {
  readonly net: SimNetwork;
  readonly nodes = new Map<string, SimPresenceNode>();
  readonly config: Partial<GossipConfig>;
  readonly timing;

  constructor(options: SimNetworkOptions & { config: Partial<GossipConfig> & Pick<GossipConfig, 'gossipIntervalMs' | 'streamTimeoutMs' | 'deadMemberTtlMs'> }) {
    this.net = new SimNetwork(options);
    this.config = options.config;
    this.timing = replicationTiming(options.config);
    this.net.onEvent = (host, e) => {
      const n = this.nodes.get(host.name);
      if (n !== undefined && n.host === host) n.presence.onMember(e.type, e.member.name);
    };
  }

  /** Add (or restart, with a new epoch) a node and its store. */
  add(name: string, epoch: number, options: Partial<ClusterPresenceOptions> = {}): SimPresenceNode {
    const presence = new ClusterPresence({ name, epoch, clock: () => this.net.now, timing: this.timing, ...options });
    const host = this.net.addNode(name, { delegate: presence.delegate, incarnation: epoch });
    const node = host.node;
    presence.attach({
      broadcast: (payload, key) => node.broadcast(payload, key),
      maxPayloadBytes: node.maxBroadcastBytes,
      syncWith: (peer) => {
        const m = node.member(peer);
        return m !== undefined && (m.state === 'alive' || m.state === 'suspect') && node.syncWith(m.addr);
      },
      isLive: (peer) => {
        const m = node.member(peer);
        return m !== undefined && (m.state === 'alive' || m.state === 'suspect');
      },
      query: (peer, payload) => {
        const m = node.member(peer);
        return m !== undefined && (m.state === 'alive' || m.state === 'suspect') && node.query(m.addr, payload);
      },
    });
    const n = { host, presence };
    this.nodes.set(name, n);
    return n;
  }

  get(name: string): ClusterPresence {
    const n = this.nodes.get(name);
    if (n === undefined) throw new Error(`no node ${name}`);
    return n.presence;
  }

  /** Stores of hosts whose process is up. */
  up(): ClusterPresence[] {
    return [...this.nodes.values()].filter((n) => n.host.up).map((n) => n.presence);
  }

  step(): void {
    for (const n of this.nodes.values()) {
      if (!n.host.up) continue;
      n.presence.flush();
      n.presence.tick(this.net.now);
      this.net.poke(n.host.name);
    }
  }

  /** Advance in `stepMs` steps until `done` holds or `maxMs` passed; virtual ms taken, or -1. */
  runUntil(done: () => boolean, maxMs: number, stepMs = 5): number {
    const start = this.net.now;
    while (this.net.now - start < maxMs) {
      this.step();
      if (done()) return this.net.now - start;
      this.net.run(stepMs);
    }
    this.step();
    return done() ? this.net.now - start : -1;
  }

  run(ms: number, stepMs = 5): void {
    const end = this.net.now + ms;
    while (this.net.now < end) {
      this.step();
      this.net.run(Math.min(stepMs, end - this.net.now));
    }
    this.step();
  }
}
