/**
 * The pure parts of cluster-wide ordering (docs/cluster.md, "Cluster-wide positions"): who
 * owns a topic, and what each node remembers per ordered topic — as an origin, the messages
 * it forwarded and not yet saw come back ordered; as the owner, the messages waiting for the
 * replica's ack; everywhere, the last sequence number ordered per origin (duplicates of a
 * resent forward are recognised). No sockets, no timers: the mesh drives it.
 */
import type { OrderedDone } from '../../pubsub/bus.js';

/** 32-bit FNV-1a of a string's UTF-16 units, then murmur3's finaliser (FNV alone mixes the last characters poorly). */
function score(id: string, topic: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ 0x0a, 0x01000193);
  for (let i = 0; i < topic.length; i++) h = Math.imul(h ^ topic.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The owner and the replica of `topic` among `ids` (rendezvous hashing: the two highest
 * scores; ties go to the smaller id). Removing the owner from `ids` makes the replica the
 * owner, and a member that joins takes only the topics it scores highest on.
 */
export function ownerAndReplica(topic: string, ids: readonly string[]): [string | null, string | null] {
  let first: string | null = null;
  let second: string | null = null;
  let s1 = -1;
  let s2 = -1;
  for (const id of ids) {
    const s = score(id, topic);
    if (s > s1 || (s === s1 && first !== null && id < first)) {
      second = first;
      s2 = s1;
      first = id;
      s1 = s;
    } else if (s > s2 || (s === s2 && second !== null && id < second)) {
      second = id;
      s2 = s;
    }
  }
  return [first, second];
}

/** A publish made here, forwarded to the owner and kept until it comes back ordered. */
export interface PendingForward {
  seq: number;
  record: Buffer;
  /** Handed back to the local apply (the subscriber to skip). */
  except: object | null;
  /** Told once the publish came back ordered (or failed). */
  done: OrderedDone | null;
  firstAt: number;
  sentAt: number;
}

const NONE: PendingForward[] = [];

/** A message the owner ordered, waiting for the replica's ack before it is delivered. */
export interface Unacked {
  offset: number;
  frame: Buffer;
  origin: string;
  seq: number;
  at: number;
  /** The Ordered record sent to the replica (with its ack request); null when none was. */
  record: Buffer | null;
}

/** A forward an owner keeps until it knows where the topic's line stands (in arrival order). */
export interface WaitingForward {
  origin: string;
  seq: number;
  from: number;
  known: { epoch: string; offset: number } | null;
  record: Buffer;
}

export type ForwardVerdict = 'new' | 'duplicate' | 'out-of-order';

/** What one node keeps for one ordered topic. */
export class TopicOrder {
  /** Origin -> the last sequence number ordered from it (most recently updated last). */
  readonly origins = new Map<string, number>();
  /** As the owner: the epoch and the last offset assigned (ahead of the history by the unacked). */
  epoch = '';
  assigned = 0;
  readonly unacked: Unacked[] = [];
  /** As an origin: the next sequence number, and the forwards not back yet (in order). */
  nextSeq = 1;
  readonly pending: PendingForward[] = [];
  /** When one of our forwards last came back ordered: an owner that makes progress is slow, not losing them. */
  progressAt = 0;
  /** Whether this node owned the topic at the last membership change. */
  owned = false;
  /**
   * As the owner: whether it knows where the topic's line stands (it held the line as the
   * replica, a peer's tail came, or nobody could tell); until then it orders nothing.
   */
  lineKnown = false;
  /** This node took part in the topic's line: it ordered it, or acked it as the replica. */
  inLine = false;
  /**
   * The peer that asked this node, its owner in its own view, for the topic's tail: a claim. Until
   * this node's view agrees (it no longer owns the topic) or the claimant's link to it closes, it
   * orders nothing of the topic, so two owners never give one offset to two messages ('' : none).
   */
  cededTo = '';
  /** When the claim was made (Date.now()); a claim older than maxCedeMs no longer holds. */
  cededAt = 0;
  /** A claimant whose claim expired: its claims on this topic are not honoured again until the members change ('' : none). */
  cedeRefused = '';
  /**
   * As the owner: another line of the topic's epoch met this one (a healed partition, two owners
   * at once). Its next message starts a new epoch, so every node's subscribers are told and a
   * position of either line is not taken for one of the other.
   */
  fork = false;
  /** While asking peers for the tail of their history: since when (0: not asking), when last asked, whom, how many requests, how many peers held none. */
  tailSince = 0;
  tailAskedAt = 0;
  tailPeer = '';
  tailRequests = 0;
  tailNones = 0;
  /** As the owner, until it knows the line: the forwards that came meanwhile (null: none). */
  waiting: WaitingForward[] | null = null;
  /**
   * The epoch the topic's line starts with, before its first message ('' : none): positions
   * given to subscribers before any message are of it, on every node. `reservedBy` says whence:
   * 'owner', this node reserved it as the owner (or took it with the former owner's tail) and
   * orders its first message in it; 'replica', the owner told this node, its replica, which
   * orders in it if it takes over; 'learned', asked of the owner for a subscribe here (never
   * ordered in: a node that becomes the owner without being told reserves anew). Forgotten once
   * a message of the topic is applied here, or handed to a claimant.
   */
  reserved = '';
  reservedBy: '' | 'owner' | 'replica' | 'learned' = '';
  /** As the owner: the replica that acknowledged holding the reservation, and when it was last told. */
  reserveHeldBy = '';
  reserveSentAt = 0;

  /** Holds `epoch` as the line's reservation, from `by` (what was held before is forgotten). */
  reserve(epoch: string, by: 'owner' | 'replica' | 'learned'): void {
    this.unreserve();
    this.reserved = epoch;
    this.reservedBy = by;
  }

  /** Forgets the reservation (the line has a message, or another node holds it now). */
  unreserve(): void {
    this.reserved = '';
    this.reservedBy = '';
    this.reserveHeldBy = '';
    this.reserveSentAt = 0;
  }

  /**
   * What an origin says with each forward: every number before `from` is done (ordered, or
   * given up by the origin), so the next one taken is `from` at the earliest. Without it, an
   * owner that refused an origin's forwards (not the owner yet in its own view) could take a
   * newer forward first, after which the older ones look like duplicates and are lost.
   */
  resumeFrom(origin: string, from: number, max: number): void {
    const last = this.origins.get(origin);
    if (last === undefined || last < from - 1) this.noteOrigin(origin, from - 1, max);
  }

  /**
   * Whether the owner takes a forward: an origin's numbers are taken in order only (a gap
   * means an earlier one is still on its way or lost: the origin resends from there); an
   * origin not remembered starts anywhere.
   */
  verdict(origin: string, seq: number): ForwardVerdict {
    const last = this.origins.get(origin);
    if (last === undefined) return 'new';
    if (seq <= last) return 'duplicate';
    return seq === last + 1 ? 'new' : 'out-of-order';
  }

  /** Remembers that `seq` of `origin` was ordered; at most `max` origins, the least recently updated forgotten. */
  noteOrigin(origin: string, seq: number, max: number): void {
    if (origin === '') return;
    const last = this.origins.get(origin);
    if (last !== undefined && last >= seq) return;
    this.origins.delete(origin);
    this.origins.set(origin, seq);
    if (this.origins.size > max) this.origins.delete(this.origins.keys().next().value!);
  }

  /**
   * A message of ours came back ordered with `seq`: it and every earlier one are done
   * (an origin's messages are ordered in its sequence). Returns the `except` of `seq`, the
   * bytes of the records let go, and the forwards let go (their `done` is the caller's to call).
   */
  confirm(seq: number): { except: object | null; freed: number; done: PendingForward[] } {
    let except: object | null = null;
    let freed = 0;
    let n = 0;
    while (n < this.pending.length && this.pending[n]!.seq <= seq) {
      const p = this.pending[n]!;
      if (p.seq === seq) except = p.except;
      freed += p.record.length;
      n++;
    }
    const done = n > 0 ? this.pending.splice(0, n) : NONE;
    if (n > 0) this.progressAt = Date.now();
    return { except, freed, done };
  }

  /** Whether the topic holds nothing that must not be forgotten (a bounded book may drop it). */
  get idle(): boolean {
    return this.pending.length === 0 && this.unacked.length === 0 && this.tailSince === 0 && this.waiting === null;
  }
}

/**
 * Every ordered topic's TopicOrder, at most `maxTopics` of them: beyond it the least recently
 * used idle one is forgotten (what it loses is the memory of which forwards were ordered,
 * which only matters while forwards are resent).
 */
export class OrderBook {
  readonly topics = new Map<string, TopicOrder>();
  /** Bytes of the records of every pending forward, and of the frames of every unacked message. */
  pendingBytes = 0;
  unackedBytes = 0;
  /** Bytes of the records of every waiting forward (TopicOrder.waiting). */
  waitingBytes = 0;

  constructor(readonly maxTopics: number) {}

  /** The topic's order, made (and marked most recently used) on use. */
  get(topic: string): TopicOrder {
    let t = this.topics.get(topic);
    if (t !== undefined) {
      this.topics.delete(topic);
      this.topics.set(topic, t);
      return t;
    }
    t = new TopicOrder();
    this.topics.set(topic, t);
    if (this.topics.size > this.maxTopics) {
      for (const [name, o] of this.topics) {
        if (o.idle && o !== t) {
          this.topics.delete(name);
          break;
        }
      }
    }
    return t;
  }
}
