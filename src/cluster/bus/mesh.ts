/**
 * The mesh bus: every node keeps one WebSocket link to every other node and sends its own
 * publishes on it, to the peers that have subscribers for the topic. Links use murmur's own
 * client (dialing) and server (accepting). docs/bus.md has the design; in short:
 *
 * - A link goes from the publisher (dialer) to a peer (acceptor). Publishes flow dialer ->
 *   acceptor; the acceptor's interest (topics with local subscribers: the full set when the
 *   link opens, then deltas) flows back on the same link. The dialer forwards a publish only
 *   if the peer's interest holds its topic.
 * - A node sends its own publishes only on its own outbound links, and a receiver never
 *   forwards what it received: each message crosses each link at most once (no duplicates),
 *   and one TCP stream per (publisher, peer) keeps each publisher's order.
 * - The dialer authenticates with an HMAC of the cluster key in the upgrade request
 *   (auth.ts); the acceptor proves the key back in its first record.
 * - An outbound link holds at most maxLinkBufferBytes unsent; past it, publishes to that
 *   peer are dropped and counted. A dropped link is redialled with backoff and jitter while
 *   the peer is still a member; a member that is dead or left has its links closed.
 */
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { Server } from '../../server/server.js';
import type { Connection } from '../../server/connection.js';
import type { Bus, BusInterest, OrderedDone, OrderingHost } from '../../pubsub/bus.js';
import { randomBytes } from 'node:crypto';
import { OrderBook, ownerAndReplica } from './ordering.js';
import type { PendingForward, TopicOrder, Unacked, WaitingForward } from './ordering.js';
import { FillBook, fillRange } from './gap-fill.js';
import type { HeldMessage, TopicFill } from './gap-fill.js';
import { HttpReject, getHeader } from '../../http/index.js';
import type { UpgradeRequest } from '../../http/index.js';
import { WebSocket } from '../../client/websocket.js';
import { ClientError } from '../../client/errors.js';
import { CloseCode } from '../../protocol/index.js';
import { ProtocolError } from '../../protocol/index.js';
import type { Keyring } from '../gossip/security.js';
import { LinkAuth, AUTH_STATUS, AuthFailure } from './auth.js';
import { MESH_AUTH_HEADER, MESH_DEFAULTS, MESH_PATH, MESH_SUBPROTOCOL } from './bus-config.js';
import type { MeshMembership } from './membership.js';
import { LogLimiter, defaultLog, newBusStats } from './stats.js';
import type { BusStats } from './stats.js';
import {
  LINE_QUERY,
  LinkRecord,
  PUBLISH_OVERHEAD,
  RESERVE_PREFIX,
  SYNCED_RECORD,
  encodeHello,
  encodeAck,
  encodeFillEnd,
  encodeFillRequest,
  encodeForward,
  encodeInterest,
  encodeOrdered,
  encodeOrigins,
  encodePublish,
  encodeTail,
  encodeTailRequest,
  orderedWithoutAck,
  parseAcceptorRecords,
  parsePublishes,
} from './mesh-wire.js';
import type { AcceptorRecordSink, FillRange, ForwardRecord, OrderedRecord, OrderingSink, TailAnswer } from './mesh-wire.js';

/** A catch-up under way: the frames of the answer (offsets first..), and who waits for it. */
interface CatchUp {
  peer: string;
  epoch: string;
  /** The client's position (its last message), and the first offset the answer holds (asked from the position itself, at least 1). */
  since: number;
  first: number;
  frames: Buffer[];
  bytes: number;
  /** Requests sent (each to the next peer), and answers that held none of it. */
  asked: number;
  nones: number;
  /** Told whether the answer came (true) or the catch-up was given up (false: too late, closed). */
  waiters: Array<(ok: boolean) => void>;
  timer: NodeJS.Timeout;
}

/** A subscribe waiting to learn where a topic's line stands (catchUp without a position). */
interface LineAsk {
  /** The owner asked, and when (0: to be asked again). */
  peer: string;
  sentAt: number;
  waiters: Array<(ok: boolean) => void>;
  timer: NodeJS.Timeout;
}

export type MeshLimits = { -readonly [K in keyof typeof MESH_DEFAULTS]: number };

export interface MeshBusOptions {
  /** Our id and the peers to link to. */
  membership: MeshMembership;
  /** The cluster keys, primary first (32 bytes each), or the gossip layer's Keyring (shared rotation). */
  keys: Keyring | readonly Uint8Array[];
  /** Cluster label bound into link authentication (use the gossip label). */
  label?: string;
  /** The path links are accepted on. Default MESH_PATH ('/cluster/bus'). */
  path?: string;
  /** TLS options for dialing wss:// peers (ca, cert, key...). */
  tls?: ConnectionOptions;
  /** Overrides of MESH_DEFAULTS. */
  limits?: Partial<MeshLimits>;
  /** Where log lines go. Default: stderr. */
  log?: (line: string) => void;
}

/** Counters of the mesh: the common BusStats and the mesh's own. */
export interface MeshStats extends BusStats {
  /** (message, peer) pairs not sent because the peer has no subscriber for the topic. */
  filtered: number;
  /** (message, peer) pairs not sent because no synced link to that peer was up. */
  noLink: number;
  /** Publishes not forwarded: payload over maxPublishBytes or topic over maxTopicBytes. */
  oversized: number;
  /** Gauge: inbound links (peers' publishes to us) open. */
  inboundLinks: number;
  /** Dial attempts that ended before the link was synced. */
  dialFailures: number;
  /** Our link requests that a peer refused for their credentials (401/403): a key mismatch. */
  authRefused: number;
  /** Peers that accepted our link but could not prove they hold the key. */
  peerAuthFailures: number;
  /** Links whose peer interest grew past maxPeerTopics (they forward every topic since). */
  interestOverflows: number;
  /** Established links that closed without a goodbye (reported to the failure detector). */
  linksLost: number;
  /** authFailures by reason. */
  authFailuresByReason: Record<AuthFailure, number>;
  /** History-topic messages this node ordered as their topic's owner. */
  ordered: number;
  /** Of those, delivered before a replica held them (no replica, its link down, its ack late, or over maxUnackedBytes). */
  unreplicated: number;
  /** Forwards this node got for a topic it does not own (the origin resends them to the owner). */
  misrouted: number;
  /** Forwards resent (not back ordered within forwardRetryMs, or the owner changed). */
  forwardRetries: number;
  /** Publishes to history topics dropped: not ordered within forwardTimeoutMs, or over maxPendingForwardBytes. */
  forwardsLost: number;
  /** Ordered messages that skipped offsets here (the local history restarted: older positions get 'trimmed'). */
  orderGaps: number;
  /** Ordered messages in another epoch than the local history's (it restarted in theirs). */
  epochChanges: number;
  /** Gauge: record bytes of publishes waiting to come back ordered. */
  pendingForwardBytes: number;
  /** Gaps in the ordered messages this node asked the owner or the replica to fill. */
  fills: number;
  /** Of those, the gaps that could not be filled (trimmed at the peer, another epoch, over a bound, too slow): applied with the skip. */
  fillsFailed: number;
  /** Fill requests this node answered for its peers. */
  fillsServed: number;
  /** Gauge: frame bytes held past gaps, waiting for the missing offsets. */
  reorderBytes: number;
  /** Topics this node came to own without a line of them, and asked its peers for the tail of their history before ordering. */
  tails: number;
  /** Of those, the ones no peer answered within fillTimeoutMs (the node then ordered from what it had). */
  tailsFailed: number;
  /** Tail requests this node got for a topic it owned in its view: it stopped ordering the topic until its view agreed. */
  ceded: number;
  /** Claims that did not hold: this node's view still disagreed after maxCedeMs, and it ordered again. */
  claimsExpired: number;
  /** Ordered messages at an offset held here with another message (two lines of one epoch met): subscribers told, the owner's line taken. */
  lineConflicts: number;
  /** Topics this node, their owner, moved to a new epoch because another line of theirs met its own. */
  epochForks: number;
}

/** What `links()` says about one outbound link. */
export interface LinkInfo {
  id: string;
  url: string;
  state: 'connecting' | 'open' | 'synced' | 'backoff';
  /** Topics of the peer's interest; -1 when the link forwards everything (over maxPeerTopics). */
  interestTopics: number;
  /** Bytes queued for the peer, not yet taken by the kernel. */
  bufferedBytes: number;
}

/** Per-connection state of an inbound link (conn.data). */
interface Inbound {
  peer: string;
  nonce: Buffer;
  keyIndex: number;
  /** A newer link from the same peer replaced this one: its data is discarded. */
  replaced: boolean;
}

/** Client close codes (WHATWG allows 1000 and 4000-4999 from a client). */
const CLOSE_PROTOCOL = 4002;
const CLOSE_PEER_AUTH = 4003;
const CLOSE_SILENT = 4008;

/** One outbound link: our publishes to one peer, its interest back. Flat state, one per peer. */
class OutLink implements AcceptorRecordSink {
  readonly id: string;
  readonly mesh: MeshBus;
  url: string;
  ws: WebSocket | null;
  /** The nonce of the request in flight: the acceptor's proof covers it. */
  nonce: Buffer | null;
  verified: boolean;
  synced: boolean;
  /** The peer's topics with subscribers; ignored while `all`. */
  readonly interest: Set<string>;
  all: boolean;
  /** Records of this tick, sent as one message at its end. */
  pending: Buffer[];
  pendingBytes: number;
  pendingMessages: number;
  /** Failed attempts since the last synced link: the backoff exponent. */
  attempts: number;
  everSynced: boolean;
  retry: NodeJS.Timeout | null;
  lastSeen: number;
  /** When the current link was dialled: one not synced three heartbeats later gives its dial slot back. */
  dialedAt: number;
  /** The peer left the membership: no more redials. */
  removed: boolean;
  /**
   * The peer was declared dead but this link still carries traffic: it stays until it closes
   * or goes silent, and is not redialled (a false suspicion under load costs no messages).
   */
  orphan: boolean;
  /** Why the current link failed, set by a record handler; the parse then stops. */
  failure: string | null;
  /** We started closing the current link (the peer moved): its end is no evidence about the peer. */
  closing: boolean;

  constructor(mesh: MeshBus, id: string, url: string) {
    this.mesh = mesh;
    this.id = id;
    this.url = url;
    this.ws = null;
    this.nonce = null;
    this.verified = false;
    this.synced = false;
    this.interest = new Set();
    this.all = false;
    this.pending = [];
    this.pendingBytes = 0;
    this.pendingMessages = 0;
    this.attempts = 0;
    this.everSynced = false;
    this.retry = null;
    this.lastSeen = 0;
    this.dialedAt = 0;
    this.removed = false;
    this.orphan = false;
    this.failure = null;
    this.closing = false;
  }

  onHello(proof: Buffer): void {
    if (this.failure !== null) return;
    if (this.verified) {
      this.failure = 'a second hello';
      return;
    }
    if (!this.mesh.auth.checkAcceptProof(proof, this.id, this.mesh.id, this.nonce!)) {
      this.failure = 'auth';
      return;
    }
    this.verified = true;
  }

  onAdd(topic: string): void {
    if (this.failure !== null) return;
    if (!this.verified) {
      this.failure = 'interest before hello';
      return;
    }
    if (this.all) return;
    if (this.interest.size >= this.mesh.limits.maxPeerTopics && !this.interest.has(topic)) {
      // Bounded either way: forwarding everything is correct (the peer's fan-out finds no
      // subscriber for what it does not want), only less frugal.
      this.all = true;
      this.interest.clear();
      this.mesh.stats.interestOverflows++;
      return;
    }
    this.interest.add(topic);
  }

  onRemove(topic: string): void {
    if (this.failure !== null) return;
    if (!this.verified) {
      this.failure = 'interest before hello';
      return;
    }
    if (!this.all) this.interest.delete(topic);
  }

  onSynced(): void {
    if (this.failure !== null) return;
    if (!this.verified) {
      this.failure = 'synced before hello';
      return;
    }
    if (this.synced) return;
    this.mesh.linkSynced(this);
  }

  /** Sends the records of this tick as one message. */
  flush(): void {
    const n = this.pending.length;
    if (n === 0) return;
    const batch = n === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.pendingMessages = 0;
    if (this.ws !== null && this.synced) this.ws.send(batch);
  }
}

/**
 * The mesh transport of the cluster bus.
 *
 * ```ts
 * declare const gossip: GossipNode, label: string;  // the node's gossip and its cluster label
 * declare const server: import('murmur-ws').Server, httpServer: import('node:http').Server;
 * const mesh = new MeshBus({ membership: gossipMembership(gossip), keys: gossip.keyring, label });
 * server.useBus(mesh);                                   // or new Server({ bus: mesh, ... })
 * httpServer.on('upgrade', (req, socket, head) => {      // or: await mesh.listen(port)
 *   if (req.url?.split('?')[0] === MESH_PATH) mesh.handleUpgrade(req, socket, head);
 * });
 * mesh.start();
 * // ... on shutdown, after the server drained:
 * await mesh.close();
 * ```
 */
export class MeshBus implements Bus {
  readonly id: string;
  readonly stats: MeshStats;
  readonly limits: MeshLimits;
  readonly auth: LinkAuth;
  readonly path: string;
  readonly #membership: MeshMembership;
  readonly #server: Server<Inbound>;
  readonly #links = new Map<string, OutLink>();
  readonly #inbound = new Map<string, Connection<Inbound>>();
  readonly #tls: ConnectionOptions | undefined;
  readonly #log: LogLimiter;
  #receiver: ((topic: string, data: Buffer, isBinary: boolean) => void) | null = null;
  #interest: BusInterest | null = null;
  /** Topics we told our inbound links we have subscribers for. */
  readonly #advertised = new Set<string>();
  /** Interest changes of this tick, sent as deltas at its end. */
  readonly #interestChanges = new Map<string, boolean>();
  #interestScheduled = false;
  #dirty: OutLink[] = [];
  #flushScheduled = false;
  #heartbeat: NodeJS.Timeout | null = null;
  #unwatch: (() => void) | null = null;
  #started = false;
  #startedAt = 0;
  #closed = false;
  #closing: Promise<void> | null = null;
  /** The topics of this process, when they order history topics through us. */
  #host: OrderingHost | null = null;
  /** This process as an origin of forwards: node id and an instance id (a restart is a new origin). */
  readonly origin: string;
  readonly #book: OrderBook;
  /** Ordered messages held past gaps while the missing offsets are asked for. */
  readonly #fills: FillBook;
  /** Topics whose new owner is asked for its copy of the last message held here once the link to it is up (#probeLine), by owner. */
  readonly #probes = new Map<string, Set<string>>();
  /** The comparisons asked and not answered yet, by peer: the offset asked per topic. */
  readonly #probing = new Map<string, Map<string, number>>();
  /** Histories being caught up for a recovery (catchUp), by topic: the answer collected so far. */
  readonly #catchUps = new Map<string, CatchUp>();
  /** Subscribes waiting to learn where a topic's line stands (catchUp without a position), by topic. */
  readonly #lineAsks = new Map<string, LineAsk>();
  /** Every member the bus knows, itself included: whom ownership is computed over. */
  #members: string[] = [];
  /** The members before the last change, and when it happened: a node that becomes an owner without having been the replica waits ownerHandoffMs. */
  #prevMembers: string[] = [];
  /** Links whose handshake is in flight (at most maxDialsInFlight), and those waiting their turn. */
  readonly #dialing = new Set<OutLink>();
  readonly #dialQueue = new Set<OutLink>();
  #membersChangedAt = 0;
  /** Whether this process ever saw a peer. */
  #hadPeers = false;
  #orderTimer: NodeJS.Timeout | null = null;
  /** The peer whose message is being parsed (the sender of ordering records), and its link to us when the message came on one (requests are answered on it). */
  #from = '';
  #fromConn: Connection<Inbound> | null = null;
  readonly #ordering: OrderingSink;
  readonly #deliver = (topic: string, data: Buffer, isBinary: boolean): void => {
    this.stats.messagesReceived++;
    this.#receiver?.(topic, data, isBinary);
  };
  readonly #flushLinks = (): void => {
    this.#flushScheduled = false;
    const dirty = this.#dirty;
    this.#dirty = [];
    for (let i = 0; i < dirty.length; i++) dirty[i]!.flush();
  };
  readonly #flushInterestTick = (): void => this.#flushInterest();

  /** @throws KeyringError for a bad key. */
  constructor(options: MeshBusOptions) {
    this.#membership = options.membership;
    this.id = options.membership.self;
    this.limits = { ...MESH_DEFAULTS, ...options.limits };
    this.path = options.path ?? MESH_PATH;
    this.#tls = options.tls;
    this.#log = new LogLimiter(options.log ?? defaultLog);
    this.auth = new LinkAuth(options.keys, { label: options.label, replayWindowMs: this.limits.replayWindowMs, maxNonces: this.limits.maxNonces });
    this.stats = {
      ...newBusStats(),
      filtered: 0,
      noLink: 0,
      oversized: 0,
      inboundLinks: 0,
      dialFailures: 0,
      authRefused: 0,
      peerAuthFailures: 0,
      interestOverflows: 0,
      linksLost: 0,
      ordered: 0,
      unreplicated: 0,
      misrouted: 0,
      forwardRetries: 0,
      forwardsLost: 0,
      orderGaps: 0,
      epochChanges: 0,
      pendingForwardBytes: 0,
      fills: 0,
      fillsFailed: 0,
      fillsServed: 0,
      reorderBytes: 0,
      tails: 0,
      tailsFailed: 0,
      ceded: 0,
      claimsExpired: 0,
      lineConflicts: 0,
      epochForks: 0,
      authFailuresByReason: { missing: 0, malformed: 0, 'wrong-node': 0, stale: 0, invalid: 0, replay: 0, busy: 0 },
    };
    this.origin = `${this.id}/${randomBytes(6).toString('base64url')}`;
    this.#book = new OrderBook(this.limits.maxOrderedTopics);
    this.#fills = new FillBook(this.limits.maxReorderBytes, this.limits.maxReorderTotalBytes, this.limits.maxFillingTopics);
    this.#members = [this.id];
    this.#prevMembers = this.#members;
    this.#ordering = {
      onForward: (r) => this.#onForward(r),
      onOrdered: (r) => this.#onOrdered(r),
      onAck: (topic, epoch, offset) => this.#onAck(topic, epoch, offset),
      onFillRequest: (r) => this.#onFillRequest(r),
      onFillEnd: (r) => this.#onFillEnd(r),
      onTailRequest: (topic) => this.#onTailRequest(topic),
      onTail: (r) => this.#onTail(r),
      onOrigins: (topic, origins) => this.#onOrigins(topic, origins),
    };
    const l = this.limits;
    // A dialer's message is a tick's batch (maxBatchBytes) or one large publish.
    const maxPayload = Math.max(l.maxBatchBytes, PUBLISH_OVERHEAD + l.maxTopicBytes + l.maxPublishBytes);
    this.#server = new Server<Inbound>({
      limits: {
        maxPayload,
        maxConnections: l.maxInboundLinks,
        maxHeadBytes: l.maxRequestHeadBytes,
        handshakeTimeoutMs: l.handshakeTimeoutMs,
        // Only interest records go to a dialer; one that does not read them is closed and
        // resyncs when it redials.
        maxBackpressure: 4 * 1024 * 1024,
        shutdownTimeoutMs: 2_000,
      },
      slowConsumer: 'close',
      // The process's young generation is the application's server's to give back (its own idleGc).
      idleGc: false,
      selectProtocol: (protocols) => (protocols.includes(MESH_SUBPROTOCOL) ? MESH_SUBPROTOCOL : undefined),
      handlers: {
        upgrade: (req, conn) => this.#onUpgrade(req, conn),
        open: (conn) => this.#onInboundOpen(conn),
        message: (conn, data, isBinary) => this.#onInboundMessage(conn, data, isBinary),
        close: (conn) => this.#onInboundClose(conn),
        error: (conn, err) => this.#onInboundError(conn, err),
      },
    });
  }

  // ---- Bus ------------------------------------------------------------------------------

  /** Forwards a local publish to every peer with subscribers for `topic`. */
  publish(topic: string, data: Buffer, isBinary: boolean): void {
    if (this.#closed || this.#links.size === 0) return;
    let record: Buffer | null = null;
    for (const link of this.#links.values()) {
      if (!link.synced) {
        this.stats.noLink++;
        continue;
      }
      if (!link.all && !link.interest.has(topic)) {
        this.stats.filtered++;
        continue;
      }
      if (record === null) {
        const topicBytes = Buffer.byteLength(topic);
        if (data.length > this.limits.maxPublishBytes || topicBytes > this.limits.maxTopicBytes || topicBytes === 0) {
          this.stats.oversized++;
          return;
        }
        record = encodePublish(topic, topicBytes, data, isBinary);
      }
      this.#enqueue(link, record);
    }
  }

  onMessage(receiver: (topic: string, data: Buffer, isBinary: boolean) => void): void {
    this.#receiver = receiver;
  }

  watchInterest(interest: BusInterest): void {
    this.#interest = interest;
    for (const t of this.#advertised) this.#interestChanges.set(t, false);
    for (const t of interest.topics()) this.#interestChanges.set(t, true);
    this.#scheduleInterest();
  }

  interestChanged(topic: string, interested: boolean): void {
    this.#interestChanges.set(topic, interested);
    this.#scheduleInterest();
  }

  // ---- ordering of history topics (docs/cluster.md) ---------------------------------------

  attachOrdering(host: OrderingHost): void {
    this.#host = host;
  }

  /**
   * A publish made here to a history topic: forwarded to its owner, kept until it comes back
   * ordered. Back here means held on two nodes: the owner delivers only once the replica acked
   * it (an owner without a replica: the owner and this node), so `done` is told then.
   */
  publishOrdered(topic: string, record: Buffer, except: object | null, done?: OrderedDone): void {
    if (this.#closed || this.#host === null) return done?.(null, 'unavailable');
    const book = this.#book;
    if (book.pendingBytes + record.length > this.limits.maxPendingForwardBytes || record.length > this.limits.maxPublishBytes) {
      this.stats.forwardsLost++;
      return done?.(null, 'busy');
    }
    const order = book.get(topic);
    const now = Date.now();
    const entry: PendingForward = { seq: order.nextSeq++, record, except, done: done ?? null, firstAt: now, sentAt: now };
    order.pending.push(entry);
    this.#pendingChanged(record.length);
    this.#forward(topic, order, [entry]);
  }

  /** The owner and the replica of a topic, as this node sees the membership now. */
  ownerOf(topic: string): [string | null, string | null] {
    return ownerAndReplica(topic, this.#members);
  }

  #pendingChanged(delta: number): void {
    this.#book.pendingBytes += delta;
    this.stats.pendingForwardBytes = this.#book.pendingBytes;
    if (delta > 0) this.#startOrderTimer();
  }

  /** Sends pending forwards of the topic (in their order: the owner takes them in order only) to the owner of the moment. */
  #forward(topic: string, order: TopicOrder, entries: readonly PendingForward[]): void {
    const [owner] = this.ownerOf(topic);
    const now = Date.now();
    if (owner === this.id) {
      // Ordering may deliver here at once, which takes entries off `pending`: `entries` is never `pending` itself.
      for (const p of entries) {
        p.sentAt = now;
        this.#order(topic, order, this.origin, p.seq, order.pending[0]?.seq ?? p.seq, null, p.record);
      }
      return;
    }
    const link = owner === null ? undefined : this.#links.get(owner);
    if (link === undefined || !link.synced) return; // resent by the timer, or when the link is up
    const known = this.#host!.position(topic) ?? { epoch: '', offset: 0 };
    for (const p of entries) {
      p.sentAt = now;
      const from = Math.min(order.pending[0]?.seq ?? p.seq, p.seq);
      this.#enqueue(link, encodeForward({ topic, origin: this.origin, seq: p.seq, known, from, record: p.record }));
    }
  }

  #onForward(r: ForwardRecord): void {
    const host = this.#host;
    if (host === null || !host.ordered(r.topic)) return;
    this.stats.messagesReceived++;
    if (this.ownerOf(r.topic)[0] !== this.id) {
      this.stats.misrouted++;
      return;
    }
    this.#order(r.topic, this.#book.get(r.topic), r.origin, r.seq, r.from, r.known, Buffer.from(r.record));
  }

  /** As the owner: gives the message the next offset, and sends it to the replica (or delivers it when there is none). */
  #order(topic: string, order: TopicOrder, origin: string, seq: number, from: number, known: { epoch: string; offset: number } | null, record: Buffer): void {
    if (!order.owned) {
      // Forwards wait (their origins resend them) until this node knows where the line stands.
      if (!this.#knowsLine(topic, order)) {
        // The origin resends from its oldest forward not back yet (`from`) on: a newer forward
        // that arrives first must not be taken (an origin not remembered starts anywhere). Only
        // what precedes `from` is done: noted as ordered, the forwards between would be taken
        // for duplicates (and, told so, the origin would let them go as published).
        if (!order.origins.has(origin)) order.noteOrigin(origin, Math.min(from, seq) - 1, this.limits.maxOrderedOrigins);
        this.stats.misrouted++;
        this.#keepWaiting(order, { origin, seq, from, known, record });
        return;
      }
      order.owned = true;
      // What came before this one goes first.
      this.#orderWaiting(topic, order);
    }
    if (this.#ceded(order)) {
      // Another node claimed the topic (it asked for our tail): its origins resend to it once views agree.
      this.stats.misrouted++;
      return;
    }
    order.resumeFrom(origin, Math.min(from, seq), this.limits.maxOrderedOrigins);
    const verdict = order.verdict(origin, seq);
    if (verdict === 'duplicate' && this.#fromConn !== null) {
      // Ordered before, but its origin never saw it back (the owner that delivered it died first):
      // the origin is told, or it would wait for it until forwardTimeoutMs.
      this.#reply(this.#fromConn, [encodeOrigins(topic, new Map([[origin, order.origins.get(origin)!]]))]);
    }
    if (verdict !== 'new') return;
    const host = this.#host!;
    const here = host.position(topic);
    if (here === null) return; // over the history bounds here: nothing can be ordered
    // Before the line's first message: the epoch reserved for it, which subscribers anywhere were given.
    const reserved = here.offset === 0 && order.reserved !== '' && order.reservedBy !== 'learned';
    if (order.unacked.length === 0) {
      order.epoch = reserved ? order.reserved : here.epoch;
      order.assigned = here.offset;
    }
    // A new owner that never held the topic continues the line its publishers saw (a position
    // before any message is no line: the reservation stands).
    if (known !== null && known.epoch !== '' && order.unacked.length === 0) {
      if (known.epoch === order.epoch ? known.offset > order.assigned : order.assigned === 0 && (known.offset > 0 || !reserved)) {
        order.epoch = known.epoch;
        order.assigned = known.offset;
      }
    }
    if (order.fork && order.unacked.length === 0) {
      order.fork = false;
      order.epoch = randomBytes(6).toString('base64url');
      order.assigned = 0;
      this.stats.epochForks++;
    }
    const offset = order.assigned + 1;
    const frame = host.frame(topic, { epoch: order.epoch, offset }, record);
    if (frame === null) return;
    order.assigned = offset;
    order.inLine = true;
    if (order.reserved !== '') order.unreserve();
    order.noteOrigin(origin, seq, this.limits.maxOrderedOrigins);
    this.stats.ordered++;
    const entry: Unacked = { offset, frame, origin, seq, at: Date.now(), record: null };
    const replica = this.ownerOf(topic)[1];
    const link = replica === null ? undefined : this.#links.get(replica);
    if (link !== undefined && link.synced && this.#book.unackedBytes + frame.length <= this.limits.maxUnackedBytes) {
      order.unacked.push(entry);
      this.#book.unackedBytes += frame.length;
      entry.record = encodeOrdered({ topic, epoch: order.epoch, offset, origin, seq, ackWanted: true, frame });
      this.#enqueue(link, entry.record);
      this.#startOrderTimer();
      return;
    }
    // No replica to wait for: what waits already goes first, in order.
    if (replica !== null) this.stats.unreplicated += order.unacked.length + 1;
    this.#release(topic, order, order.unacked.length, null);
    this.#deliverOrdered(topic, order.epoch, entry, null);
  }

  /**
   * Keeps a forward that came before this owner knows the topic's line, to order it as soon as
   * it does (a tail round trip) rather than when its origin resends it (forwardRetryMs): the
   * first publish to a new topic from another node would otherwise wait a whole resend period.
   * Within maxWaitingForwardBytes, all topics together; beyond it the origin's resend brings it.
   */
  #keepWaiting(order: TopicOrder, f: WaitingForward): void {
    const book = this.#book;
    if (book.waitingBytes + f.record.length > this.limits.maxWaitingForwardBytes) return;
    book.waitingBytes += f.record.length;
    (order.waiting ??= []).push(f);
    // The order timer asks for the tail once the handoff wait is over, if no forward does first.
    this.#startOrderTimer();
  }

  /** Orders the forwards that waited for the line (the owner knows it now), or lets them go (not the owner any more). */
  #orderWaiting(topic: string, order: TopicOrder): void {
    const waiting = order.waiting;
    if (waiting === null) return;
    order.waiting = null;
    for (const f of waiting) this.#book.waitingBytes -= f.record.length;
    if (this.ownerOf(topic)[0] !== this.id) return;
    // Not an answer to the link whose record is being handled: duplicates among them are not told
    // to it (their origins learn it when they resend).
    const fromConn = this.#fromConn;
    this.#fromConn = null;
    try {
      for (const f of waiting) this.#order(topic, order, f.origin, f.seq, f.from, f.known, f.record);
    } finally {
      this.#fromConn = fromConn;
    }
  }

  /**
   * Whether this node orders the topic now: a message of it from elsewhere is then a duplicate of
   * its line or another line (its subscribers are told, the next message starts a new epoch),
   * never applied over its own.
   */
  #keepsLine(topic: string, order: TopicOrder): boolean {
    return order.owned && order.lineKnown && this.ownerOf(topic)[0] === this.id && !this.#ceded(order);
  }

  /** Delivers the first `n` unacked messages of a topic (the replica holds them, or is given up on). */
  #release(topic: string, order: TopicOrder, n: number, replica: string | null): void {
    if (n === 0) return;
    const done = order.unacked.splice(0, n);
    for (const u of done) {
      this.#book.unackedBytes -= u.frame.length;
      this.#deliverOrdered(topic, order.epoch, u, replica);
    }
  }

  /** An ordered message to every other node (but `skip`, which has it) and to this one's subscribers. */
  #deliverOrdered(topic: string, epoch: string, u: Unacked, skip: string | null): void {
    const rec = u.record !== null ? orderedWithoutAck(u.record) : encodeOrdered({ topic, epoch, offset: u.offset, origin: u.origin, seq: u.seq, ackWanted: false, frame: u.frame });
    for (const link of this.#links.values()) if (link.synced && link.id !== skip) this.#enqueue(link, rec);
    this.#applyOrdered(topic, epoch, u.offset, u.origin, u.seq, u.frame, true);
  }

  /** Applies an ordered message here; a message of ours coming back confirms our forward. */
  #applyOrdered(topic: string, epoch: string, offset: number, origin: string, seq: number, frame: Buffer, own = false): void {
    const order = this.#book.get(topic);
    let except: object | null = null;
    let confirmed: PendingForward[] | null = null;
    if (origin === this.origin) {
      const c = order.confirm(seq);
      except = c.except;
      confirmed = c.done;
      if (c.freed > 0) this.#pendingChanged(-c.freed);
    }
    order.noteOrigin(origin, seq, this.limits.maxOrderedOrigins);
    if (order.reserved !== '') order.unreserve(); // the line has a message: positions are of it now
    const owner = this.ownerOf(topic)[0];
    const keep = !own && this.#keepsLine(topic, order);
    const here = this.#host!.position(topic);
    const held = here !== null && here.epoch === epoch && offset <= here.offset ? this.#host!.range(topic, offset, 1, Number.MAX_SAFE_INTEGER) : null;
    const r = this.#host!.apply(topic, { epoch, offset }, frame, except, origin === this.origin, keep);
    if (r === 'gap') this.stats.orderGaps++;
    else if (r === 'epoch') this.stats.epochChanges++;
    else if (r === 'conflict') {
      this.stats.lineConflicts++;
      if (keep) order.fork = true;
      else if (owner !== null && this.#from === owner && held !== null && held.first === offset && held.frames.length > 0) {
        // The owner's line replaces ours here; the owner is shown ours (it holds this offset), so
        // it starts a new epoch and the nodes that saw only its line are told too.
        const link = this.#links.get(owner);
        if (link?.synced === true) this.#enqueue(link, encodeOrdered({ topic, epoch, offset, origin: '', seq: 0, ackWanted: false, frame: held.frames[0]! }));
      }
    }
    // After the apply: a publisher subscribed to the topic gets its message before the reply.
    if (confirmed !== null) for (const p of confirmed) p.done?.(p.seq === seq ? { epoch, offset } : null, null);
  }

  #onOrdered(r: OrderedRecord): void {
    const host = this.#host;
    if (host === null || !host.ordered(r.topic)) return;
    this.stats.messagesReceived++;
    // The answer to a catch-up goes into the history's past, not to subscribers (unless a gap fill asked for the same).
    if (this.#collectCatchUp(r) && !this.#fills.topics.has(r.topic)) return;
    this.#receiveOrdered(r.topic, { offset: r.offset, origin: r.origin, seq: r.seq, frame: Buffer.from(r.frame) }, r.epoch);
    if (!r.ackWanted) return;
    this.#book.get(r.topic).inLine = true;
    // Acks are cumulative, and say what the history holds: a message held past a gap is acked once the gap is filled.
    const fill = this.#fills.topics.get(r.topic);
    if (fill !== undefined) fill.ackPeer = this.#from;
    const here = host.position(r.topic);
    if (here !== null && here.epoch === r.epoch) this.#ackLater(this.#from, r.topic, r.epoch, Math.min(here.offset, r.offset));
  }

  /** Acks go out once per topic per owner per tick. */
  #ackLater(peer: string, topic: string, epoch: string, offset: number): void {
    let due = this.#acksDue.get(peer);
    if (due === undefined) this.#acksDue.set(peer, (due = new Map()));
    due.set(topic, { epoch, offset });
    if (!this.#acksScheduled) {
      this.#acksScheduled = true;
      process.nextTick(this.#flushAcks);
    }
  }

  // ---- gap filling (docs/cluster.md, "Filling gaps") -------------------------------------

  /**
   * An ordered message from another node: applied at once when it is the next offset here (or
   * a duplicate, another epoch, or the first message of a history); held when offsets before it
   * are missing, while they are asked for.
   */
  #receiveOrdered(topic: string, m: HeldMessage, epoch: string): void {
    const here = this.#host!.position(topic);
    if (this.#keepsLine(topic, this.#book.get(topic))) {
      // Nothing beyond this node's own line comes from elsewhere: a duplicate, or another line.
      this.#applyOrdered(topic, epoch, m.offset, m.origin, m.seq, m.frame);
      return;
    }
    let fill = this.#fills.topics.get(topic);
    if (fill === undefined) {
      if (here === null || here.epoch !== epoch || here.offset === 0 || m.offset <= here.offset + 1) {
        this.#applyOrdered(topic, epoch, m.offset, m.origin, m.seq, m.frame);
        return;
      }
      const opened = this.#fills.open(topic, epoch, Date.now());
      if (opened === null) {
        this.#applyOrdered(topic, epoch, m.offset, m.origin, m.seq, m.frame); // too many gaps at once: the skip
        return;
      }
      fill = opened;
      this.stats.fills++;
      this.#startOrderTimer();
    } else if (here === null || epoch !== fill.epoch) {
      this.#giveUpFill(topic);
      this.#applyOrdered(topic, epoch, m.offset, m.origin, m.seq, m.frame);
      return;
    }
    if (m.offset > here!.offset + 1 && this.#fills.hold(fill, m) === 'full') {
      this.#giveUpFill(topic);
      this.#applyOrdered(topic, epoch, m.offset, m.origin, m.seq, m.frame);
      return;
    }
    if (m.offset <= here!.offset + 1) this.#applyOrdered(topic, epoch, m.offset, m.origin, m.seq, m.frame);
    this.#drainFill(topic, fill);
  }

  /** Applies what the fill holds from the next offset on; asks for the rest, or ends the fill when nothing is held. */
  #drainFill(topic: string, fill: TopicFill): void {
    const here = this.#fills.drain(topic, fill, () => this.#host!.position(topic), (m) => this.#applyOrdered(topic, fill.epoch, m.offset, m.origin, m.seq, m.frame));
    if (here === null) return this.#giveUpFill(topic);
    if (fill.ackPeer !== '') this.#ackLater(fill.ackPeer, topic, fill.epoch, here.offset);
    if (fill.held.length > 0 && here.offset + 1 > fill.askedTo) this.#askFill(topic, fill, here.offset + 1);
    this.stats.reorderBytes = this.#fills.bytes;
  }

  /** Asks for the offsets from `next` up to the first held: the sender of the gap's message, the owner or the replica, whichever has a link up (another at each retry). */
  #askFill(topic: string, fill: TopicFill, next: number): void {
    const range = fillRange(next, fill.firstHeld, this.limits.maxFillMessages);
    if (range === null) return;
    // From the last message held here on: the peer's copy of it says whether the gap continues
    // this line or another one of the epoch (a healed partition), which is then told, not mixed in.
    if (next > 1 && (this.#host!.historyLimits(topic) !== null)) range.first = next - 1;
    const [owner, replica] = this.ownerOf(topic);
    const candidates = this.#linkedPeers([this.#from, owner, replica]);
    fill.askedAt = Date.now();
    fill.askedTo = range.last;
    this.stats.reorderBytes = this.#fills.bytes;
    if (candidates.length === 0) return; // asked again by the timer
    const peer = candidates[fill.requests++ % candidates.length]!;
    fill.peer = peer;
    this.#enqueue(this.#links.get(peer)!, encodeFillRequest({ topic, epoch: fill.epoch, ...range }));
  }

  /** The gap cannot be filled: what was held is applied, with the skip (the history restarts; subscribers are told). */
  #giveUpFill(topic: string): void {
    const fill = this.#fills.topics.get(topic);
    if (fill === undefined) return;
    this.stats.fillsFailed++;
    for (const m of this.#fills.close(topic)) this.#applyOrdered(topic, fill.epoch, m.offset, m.origin, m.seq, m.frame);
    this.stats.reorderBytes = this.#fills.bytes;
  }

  /**
   * A peer asks for offsets it missed: the ones this history holds (bounded), then the end of
   * the answer, on the link the request came on (the asker's: up, whatever the state of ours to it).
   */
  #onFillRequest(r: FillRange): void {
    const host = this.#host;
    const conn = this.#fromConn;
    if (host === null || !host.ordered(r.topic) || conn === null) return;
    if (r.epoch === LINE_QUERY) return this.#answerLine(r.topic, conn);
    if (r.epoch.startsWith(RESERVE_PREFIX)) return this.#holdReservation(r.topic, r.epoch.slice(RESERVE_PREFIX.length), conn);
    this.stats.fillsServed++;
    const l = this.limits;
    // A line before its first message, of the epoch this node reserved as the owner or holds as the
    // replica (whatever its history holds: nothing of the line): the asker's epoch, with nothing in it.
    const order = this.#book.topics.get(r.topic);
    if (r.first === 1 && order !== undefined && order.reserved === r.epoch && order.reservedBy !== 'learned' && (host.known(r.topic)?.offset ?? 0) === 0) {
      this.#reply(conn, [encodeFillEnd({ topic: r.topic, epoch: r.epoch, first: 0, last: 0 })]);
      return;
    }
    const got = host.range(r.topic, r.first, Math.min(r.last - r.first + 1, l.maxFillMessages), l.maxFillBytes);
    if (got === null || got.epoch !== r.epoch) {
      this.#reply(conn, [encodeFillEnd({ topic: r.topic, epoch: got?.epoch ?? r.epoch, first: r.first, last: 0 })]);
      return;
    }
    // This history stands at the asker's position (its last message) without holding that message
    // (aged out, or a line taken from the owner's answer), or before the line's first message:
    // the answer is the line itself (first 0), so the asker's recovery succeeds with nothing to replay.
    const at = got.first - 1;
    if (got.frames.length === 0 && (at === r.first || (at === 0 && r.first === 1))) {
      this.#reply(conn, [encodeFillEnd({ topic: r.topic, epoch: got.epoch, first: 0, last: at })]);
      return;
    }
    const records: Buffer[] = [];
    for (let i = 0; i < got.frames.length; i++) {
      records.push(encodeOrdered({ topic: r.topic, epoch: got.epoch, offset: got.first + i, origin: '', seq: 0, ackWanted: false, frame: got.frames[i]! }));
    }
    let last = got.first + got.frames.length - 1;
    // The replica asks the owner for what it missed of the messages waiting for its ack (their
    // records were lost with a link): they are in no history yet, and only the replica may have
    // them before they are delivered (a replica that takes over continues from its history).
    if (order !== undefined && order.epoch === got.epoch && this.#from === this.ownerOf(r.topic)[1] && this.ownerOf(r.topic)[0] === this.id) {
      for (const u of order.unacked) {
        if (u.offset <= last) continue;
        if (u.offset !== last + 1 || u.offset > r.last || records.length >= l.maxFillMessages) break;
        records.push(encodeOrdered({ topic: r.topic, epoch: got.epoch, offset: u.offset, origin: u.origin, seq: u.seq, ackWanted: false, frame: u.frame }));
        last = u.offset;
      }
    }
    records.push(encodeFillEnd({ topic: r.topic, epoch: got.epoch, first: got.first, last }));
    this.#reply(conn, records);
  }

  /** Sends answers back on a peer's link to us, batched into messages of up to maxBatchBytes (the inbound link's own backpressure bounds them). */
  #reply(conn: Connection<Inbound>, records: readonly Buffer[]): void {
    if (!conn.isOpen || conn.data.replaced) return;
    let batch: Buffer[] = [];
    let bytes = 0;
    const send = (): void => {
      if (batch.length === 0) return;
      conn.send(batch.length === 1 ? batch[0]! : Buffer.concat(batch, bytes));
      this.stats.bytesSent += bytes;
      batch = [];
      bytes = 0;
    };
    for (const rec of records) {
      if (bytes > 0 && bytes + rec.length > this.limits.maxBatchBytes) send();
      batch.push(rec);
      bytes += rec.length;
    }
    send();
  }

  /**
   * A peer that owns `topic` without a line of it asks where the line stands: the last
   * ownerTailMessages of this history (within maxFillBytes, at least one), or none.
   */
  #onTailRequest(topic: string): void {
    const host = this.#host;
    const conn = this.#fromConn;
    if (host === null || !host.ordered(topic) || conn === null) return;
    this.stats.fillsServed++;
    const ceding = this.ownerOf(topic)[0] === this.id;
    if (ceding) this.#cede(topic, this.#from);
    const t = host.tail(topic, this.limits.ownerTailMessages);
    if (t === null || t.frames.length === 0) {
      // None held; the epoch reserved for the line's first message, if this node holds one, goes to the new owner.
      const order = this.#book.topics.get(topic);
      const reserved = order !== undefined && order.reservedBy !== 'learned' ? order.reserved : '';
      this.#reply(conn, [encodeTail({ topic, epoch: reserved, first: reserved === '' ? 0 : 1, frames: [] })]);
      if (ceding && reserved !== '') order!.unreserve();
      return;
    }
    let skip = 0;
    let bytes = 0;
    for (const f of t.frames) bytes += f.length;
    while (skip < t.frames.length - 1 && bytes > this.limits.maxFillBytes) bytes -= t.frames[skip++]!.length;
    // What each origin had ordered, first: the tail's frames do not say whose they are.
    const origins = this.#book.topics.get(topic)?.origins;
    const records = origins !== undefined && origins.size > 0 ? [encodeOrigins(topic, origins)] : [];
    records.push(encodeTail({ topic, epoch: t.epoch, first: t.first + skip, frames: t.frames.slice(skip) }));
    this.#reply(conn, records);
  }

  /**
   * A peer asks this node, the topic's owner in its view, for the topic's tail: the peer owns it
   * in its own view (it saw a membership change this node has not seen yet). This node stops
   * ordering the topic until its view agrees, and first delivers what waits for the replica's
   * ack, so the tail it answers holds everything it ordered: the two never order at once.
   */
  #cede(topic: string, claimant: string): void {
    const order = this.#book.get(topic);
    // A claimant whose claim outlived maxCedeMs is not believed again before our view changes,
    // and asking again does not make a claim last longer.
    if (order.cedeRefused === claimant || order.cededTo === claimant) return;
    order.cededTo = claimant;
    order.cededAt = Date.now();
    this.stats.ceded++;
    this.stats.unreplicated += order.unacked.length;
    this.#release(topic, order, order.unacked.length, null);
  }

  /**
   * Whether a claim on the topic holds: the claimant's link to us is still open (a claimant that
   * went gives the topic back) and our view has had maxCedeMs to come to agree with the
   * claimant's. A claim older than that is wrong (a claimant whose view is off) or hostile (a
   * peer that holds the key asking for tails to stop us): this node orders again, and if the
   * claimant ordered meanwhile, the two lines are found and told like any other.
   */
  #ceded(order: TopicOrder): boolean {
    if (order.cededTo === '') return false;
    const conn = this.#inbound.get(order.cededTo);
    if (conn !== undefined && conn.isOpen && !conn.data.replaced) {
      if (Date.now() - order.cededAt <= this.limits.maxCedeMs) return true;
      order.cedeRefused = order.cededTo;
      this.stats.claimsExpired++;
    }
    order.cededTo = '';
    return false;
  }

  /**
   * Whether this node, the owner of `topic`, knows where its line stands and may order. One that
   * did not hold the line (ownership moved here from a live node, or this node restarted) first
   * waits ownerHandoffMs after the membership change, so what the old owner ordered last reaches
   * it, then asks its peers for the tail of their history: ordering from nothing would start a
   * new epoch, and from a stale history would give two messages one offset.
   */
  #knowsLine(topic: string, order: TopicOrder): boolean {
    if (order.lineKnown) return true;
    // A replica that holds the owner's reservation holds the line too: before its first message (any
    // message delivered since would have been acked here, which forgets the reservation).
    const reservedHere = order.reservedBy === 'replica' && order.reserved !== '' && this.#wasOwnerOrReplica(topic) && (this.#host!.known(topic)?.offset ?? 0) === 0;
    if (this.#holdsLine(topic) || reservedHere || this.#ordersAlone()) {
      // The replica holds everything delivered. Alone: nobody to ask, once the peers are gone or
      // never came (a node just started, or not started yet, waits for its first view of the cluster).
      order.lineKnown = true;
      return true;
    }
    if (Date.now() < this.#membersChangedAt + this.limits.ownerHandoffMs) return false;
    if (order.tailSince === 0) {
      order.tailSince = Date.now();
      order.tailRequests = 0;
      order.tailNones = 0;
      this.stats.tails++;
      this.#askTail(topic, order);
      this.#startOrderTimer();
    }
    return false;
  }

  /** This node's history holds the topic's line: it was its owner or replica before the last change, and took part (ordered, or acked as the replica). */
  #holdsLine(topic: string): boolean {
    // Before its first view of the cluster a node was nobody's owner or replica, whatever it acked meanwhile.
    if (this.#membersChangedAt === 0) return false;
    return this.#book.topics.get(topic)?.inLine === true && this.#wasOwnerOrReplica(topic) && (this.#host!.position(topic)?.offset ?? 0) > 0;
  }

  /** Asks the next peer (the former owner and replica first) for its tail of `topic`. */
  #askTail(topic: string, order: TopicOrder): void {
    const now = Date.now();
    order.tailAskedAt = now;
    // The member that owns the topic wherever this node is not yet seen is asked first: its
    // answer is a claim that stops it ordering. Until its link is up (a node that just started
    // dials every peer at once), nobody else is asked, for half of fillTimeoutMs.
    const former = this.#formerOwner(topic);
    if (former !== null && this.#links.get(former)?.synced !== true && now - order.tailSince < this.limits.fillTimeoutMs / 2) return;
    const peers = this.#tailPeers(topic);
    if (peers.length === 0) return; // asked again by the timer
    const peer = peers[order.tailRequests++ % peers.length]!;
    order.tailPeer = peer;
    this.#enqueue(this.#links.get(peer)!, encodeTailRequest(topic));
  }

  /** The owner of `topic` among the other members: the one that orders it in a view without this node. */
  #formerOwner(topic: string): string | null {
    return ownerAndReplica(topic, this.#members.filter((m) => m !== this.id))[0];
  }

  #tailPeers(topic: string): string[] {
    const [po, pr] = ownerAndReplica(topic, this.#prevMembers);
    return this.#linkedPeers([this.#formerOwner(topic), po, pr, this.ownerOf(topic)[1], ...this.#members]);
  }

  /** The peers of `ids` (once each, in their order) whose link from us is up. */
  #linkedPeers(ids: ReadonlyArray<string | null>): string[] {
    return ids.filter((p, i, a): p is string => p !== null && p !== '' && p !== this.id && a.indexOf(p) === i && this.#links.get(p)?.synced === true);
  }

  /**
   * A peer's tail: it goes into the history here (in front, unseen by subscribers, when the
   * history is empty; the messages beyond it otherwise), and the line is known. A peer that holds
   * none: the next is asked, until every peer said so.
   */
  #onTail(r: TailAnswer): void {
    const order = this.#book.topics.get(r.topic);
    const host = this.#host;
    if (host === null || order === undefined || order.tailSince === 0 || this.#from !== order.tailPeer) return;
    if (r.frames.length === 0) {
      // None held there; an epoch with it is the one reserved for the line's first message: the line starts in it here.
      if (r.epoch !== '' && order.reservedBy !== 'owner' && (host.known(r.topic)?.offset ?? 0) === 0) order.reserve(r.epoch, 'owner');
      if (++order.tailNones < this.#tailPeers(r.topic).length) return this.#askTail(r.topic, order);
      return this.#lineSettled(r.topic, order);
    }
    const frames = r.frames.map((f) => Buffer.from(f));
    const here = host.position(r.topic);
    if (here !== null && here.offset === 0) host.backfill(r.topic, r.epoch, r.first, frames);
    else if (here !== null) {
      for (let i = 0; i < frames.length; i++) {
        if (r.epoch !== here.epoch || r.first + i > here.offset) this.#applyOrdered(r.topic, r.epoch, r.first + i, '', 0, frames[i]!);
      }
    }
    this.#lineSettled(r.topic, order);
  }

  /**
   * The origins' last ordered sequence numbers, from the peer asked for the tail: a forward its
   * origin resends (it did not see it back ordered before ownership moved) is then a duplicate
   * here, not a second copy of the message at a new offset.
   */
  #onOrigins(topic: string, origins: Array<[string, number]>): void {
    const order = this.#book.topics.get(topic);
    if (order === undefined) return;
    const fromTail = order.tailSince !== 0 && this.#from === order.tailPeer;
    for (const [origin, seq] of origins) {
      if (origin === this.origin) this.#confirmed(topic, order, seq);
      else if (fromTail) order.noteOrigin(origin, seq, this.limits.maxOrderedOrigins);
    }
  }

  /** Our forwards up to `seq` were ordered (the owner says so; their Ordered records did not come back here): their publishers are told, without a position. */
  #confirmed(topic: string, order: TopicOrder, seq: number): void {
    const c = order.confirm(seq);
    if (c.freed > 0) this.#pendingChanged(-c.freed);
    for (const p of c.done) p.done?.(null, null);
  }

  /** The owner knows the line now (or gave up asking): it orders, its own waiting publishes first. */
  #lineSettled(topic: string, order: TopicOrder): void {
    order.lineKnown = true;
    order.inLine = true;
    order.tailSince = 0;
    if (order.pending.length > 0 && this.ownerOf(topic)[0] === this.id) this.#forward(topic, order, order.pending.slice());
    this.#orderWaiting(topic, order);
  }

  /**
   * The end of an answer (its Ordered records came before it, on the same link): a gap still
   * open is asked for again when the answer stopped short, and given up when the peer does not
   * hold it (trimmed there, another epoch).
   */
  #onFillEnd(r: FillRange): void {
    if (this.#onLineAnswer(r)) return;
    // The line itself, as an answer nobody here waits for (a gap fill asked a node that stands at its
    // position without the message): what it says of the request, nothing held from there.
    if (r.first === 0) r = { ...r, first: r.last + 1 };
    // The end of a comparison's answer is not the end of a catch-up or a fill asked of the same peer.
    const probed = this.#probing.get(this.#from);
    if (probed?.get(r.topic) === r.first && r.last <= r.first) {
      probed.delete(r.topic);
      return;
    }
    const c = this.#catchUps.get(r.topic);
    if (c?.peer === this.#from) {
      // A peer that holds none of it (restarted too, or trimmed there): the next one is asked, until every one said so.
      if (c.frames.length === 0 && ++c.nones < this.#catchUpPeers(r.topic).length) this.#requestCatchUp(r.topic, c);
      else this.#endCatchUp(r.topic, true);
    }
    const fill = this.#fills.topics.get(r.topic);
    if (fill === undefined || this.#from !== fill.peer) return; // not ours, or an answer to an earlier request
    const here = this.#host?.position(r.topic) ?? null;
    if (here === null || here.epoch !== fill.epoch) return this.#giveUpFill(r.topic);
    const next = here.offset + 1;
    if (next >= fill.firstHeld) return this.#drainFill(r.topic, fill);
    // Trimmed there: the peer's history of this epoch starts after the next offset.
    if (r.epoch === fill.epoch && r.first > next) return this.#giveUpFill(r.topic);
    // Another epoch, or none of it yet (an owner whose messages still wait for an ack, a node
    // that restarted): asked again by the timer, of another peer, until fillTimeoutMs.
    if (r.epoch !== fill.epoch || r.last < r.first) return;
    this.#askFill(r.topic, fill, next);
  }

  /**
   * Fetches the messages after `since` from the topic's owner (or replica) into the history
   * here, before a recovery is served from it: one request per topic at a time, at most
   * maxFillMessages/maxFillBytes, given up after fillTimeoutMs (then false: the recovery cannot
   * be judged here). Never rejects. Without `since`: the history here takes the topic's line
   * (its epoch and last offset, or the epoch reserved for its first message), asked of its owner.
   */
  catchUp(topic: string, since: { epoch: string; offset: number } | null): Promise<boolean> | null {
    const host = this.#host;
    if (host === null || !host.ordered(topic)) return null;
    if (since === null) return this.#catchUpLine(topic);
    if (since.epoch === '' || !Number.isSafeInteger(since.offset) || since.offset < 0) return null;
    // A position before the line's first message, of the epoch this node reserved as the owner or
    // holds as the replica: nothing was delivered in it (this node would have acked it), so the
    // history here stands at it.
    const order = this.#book.topics.get(topic);
    if (since.offset === 0 && order !== undefined && order.reserved === since.epoch && order.reservedBy !== 'learned' && (host.known(topic)?.offset ?? 0) === 0) {
      this.#holdLineHere(topic, since.epoch, 0);
      return null;
    }
    if (this.#closed) return Promise.resolve(false);
    const running = this.#catchUps.get(topic);
    // A catch-up from a newer position, or of another epoch, does not bring this one's messages: this one runs after it.
    if (running !== undefined) {
      const covered = since.epoch === running.epoch && since.offset >= running.since;
      return new Promise((resolve) => running.waiters.push(covered ? resolve : () => void (this.catchUp(topic, since) ?? Promise.resolve(true)).then(resolve)));
    }
    if (this.#catchUps.size >= this.limits.maxFillingTopics) return Promise.resolve(false);
    // Alone for longer than a catch-up may wait: nobody to fetch from, this node's history is the line. Just started: the peers may not be known yet.
    if (this.#members.length === 1 && Date.now() - this.#startedAt > this.limits.fillTimeoutMs) return Promise.resolve(true);
    // From the client's last message on (not the one after it): a node whose history is empty
    // then holds the client's position even when nothing came after it, and the recovery
    // succeeds with nothing to replay instead of finding another epoch here.
    const first = Math.max(1, since.offset);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#endCatchUp(topic, false), this.limits.fillTimeoutMs);
      timer.unref();
      const c: CatchUp = { peer: '', epoch: since.epoch, since: since.offset, first, frames: [], bytes: 0, asked: 0, nones: 0, waiters: [resolve], timer };
      this.#catchUps.set(topic, c);
      this.#askCatchUp(topic, c);
    });
  }

  /** Sends a catch-up's request to the owner or the replica; a node just (re)started may not have its links yet: tried again shortly, within fillTimeoutMs. */
  #askCatchUp(topic: string, c: CatchUp): void {
    if (this.#catchUps.get(topic) !== c) return;
    const sent = this.#requestCatchUp(topic, c);
    // Asked again while no answer comes (the peer may not have the topic yet, or the request was lost with a link).
    setTimeout(() => this.#askCatchUp(topic, c), sent ? this.limits.fillTimeoutMs / 4 : 50).unref();
  }

  /** Sends a catch-up's request to the next peer (the owner, the replica, then the others); false when no link is up. */
  #requestCatchUp(topic: string, c: CatchUp): boolean {
    if (c.frames.length > 0) return true;
    const peers = this.#catchUpPeers(topic);
    if (peers.length === 0) return false;
    c.peer = peers[c.asked++ % peers.length]!;
    this.#enqueue(this.#links.get(c.peer)!, encodeFillRequest({ topic, epoch: c.epoch, first: c.first, last: c.first + this.limits.maxFillMessages - 1 }));
    return true;
  }

  #catchUpPeers(topic: string): string[] {
    const [owner, replica] = this.ownerOf(topic);
    return this.#linkedPeers([owner, replica, ...this.#members]);
  }

  /** Whether `r` is the next frame of a catch-up's answer (then kept, within maxFillBytes). */
  #collectCatchUp(r: OrderedRecord): boolean {
    const c = this.#catchUps.get(r.topic);
    if (c === undefined || this.#from !== c.peer || r.origin !== '' || r.epoch !== c.epoch) return false;
    // A peer whose history starts after the client's own last message (it joined the line
    // later) answers from the message after it: all the client needs.
    if (c.frames.length === 0 && c.first === c.since && r.offset === c.since + 1) c.first = r.offset;
    if (r.offset !== c.first + c.frames.length) return false;
    if (c.bytes + r.frame.length > this.limits.maxFillBytes && c.frames.length > 0) return false;
    c.frames.push(Buffer.from(r.frame));
    c.bytes += r.frame.length;
    return true;
  }

  /** A catch-up's answer is complete (its FillEnd came) or too late: what came goes into the history, and its waiters go on. */
  #endCatchUp(topic: string, complete: boolean): void {
    const c = this.#catchUps.get(topic);
    if (c === undefined) return;
    this.#catchUps.delete(topic);
    clearTimeout(c.timer);
    if (complete && c.frames.length > 0) this.#host?.backfill(topic, c.epoch, c.first, c.frames);
    for (const w of c.waiters) w(complete);
  }

  /**
   * A subscribe (or a history command) without a position, on a node whose history holds no
   * message of the topic: the position it is given must be the cluster's, or a client whose
   * node dies before the first message reaches it recovers elsewhere with an epoch nobody
   * orders, and is told `epoch-changed` although nothing changed. The owner is asked where the
   * line stands: its epoch and last offset, or, before the line's first message, the epoch it
   * reserved for it (held by its replica too, so the line starts in it if the owner dies first).
   * The history here takes it. Null when there is nothing to wait for.
   */
  #catchUpLine(topic: string): Promise<boolean> | null {
    if (this.#lineHeldHere(topic)) return null;
    if (this.#closed) return Promise.resolve(false);
    const running = this.#lineAsks.get(topic);
    if (running !== undefined) return new Promise((resolve) => running.waiters.push(resolve));
    if (this.#lineAsks.size >= this.limits.maxFillingTopics) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#endLineAsk(topic, false), this.limits.fillTimeoutMs);
      timer.unref();
      const ask: LineAsk = { peer: '', sentAt: 0, waiters: [resolve], timer };
      this.#lineAsks.set(topic, ask);
      this.#stepLineAsk(topic, ask);
    });
  }

  /** Whether the history here holds `topic`'s line (a message of it, or its reserved epoch), or this node orders alone: a position given here is the cluster's. */
  #lineHeldHere(topic: string): boolean {
    const known = this.#host!.known(topic);
    if (known !== null && known.offset > 0) return true;
    const order = this.#book.topics.get(topic);
    if (order !== undefined && known !== null && order.reserved === known.epoch) {
      const replica = this.ownerOf(topic)[1];
      if (order.reservedBy !== 'owner' || replica === null || order.reserveHeldBy === replica) return true;
    }
    return this.#ordersAlone();
  }

  /** Alone in the view once the peers are gone, or long enough after the start that none came: nobody to ask, this node's history is the line. */
  #ordersAlone(): boolean {
    return this.#members.length === 1 && (this.#hadPeers || (this.#started && Date.now() - this.#startedAt > this.limits.fillTimeoutMs));
  }

  /** Asks the owner where the line stands (again when it could not tell, or no answer came), or settles it here as the owner; every 50 ms until done or fillTimeoutMs. */
  #stepLineAsk(topic: string, ask: LineAsk): void {
    if (this.#lineAsks.get(topic) !== ask) return;
    if (this.#lineHeldHere(topic)) return this.#endLineAsk(topic, true);
    const owner = this.ownerOf(topic)[0];
    const now = Date.now();
    if (owner === this.id) {
      const epoch = this.#lineReservation(topic);
      if (epoch !== '') {
        this.#holdLineHere(topic, epoch, 0);
        return this.#endLineAsk(topic, true);
      }
    } else if (owner !== null && this.#links.get(owner)?.synced === true && (ask.peer !== owner || now - ask.sentAt > this.limits.fillTimeoutMs / 4)) {
      ask.peer = owner;
      ask.sentAt = now;
      this.#enqueue(this.#links.get(owner)!, encodeFillRequest({ topic, epoch: LINE_QUERY, first: 1, last: 1 }));
    }
    setTimeout(() => this.#stepLineAsk(topic, ask), 50).unref();
  }

  #endLineAsk(topic: string, ok: boolean): void {
    const ask = this.#lineAsks.get(topic);
    if (ask === undefined) return;
    this.#lineAsks.delete(topic);
    clearTimeout(ask.timer);
    for (const w of ask.waiters) w(ok);
  }

  /** The history here, holding no message of the topic, takes the line's position (the line's epoch; the last offset, with nothing held). */
  #holdLineHere(topic: string, epoch: string, last: number): void {
    const here = this.#host!.known(topic);
    if (here !== null && (here.offset > 0 || (here.epoch === epoch && last === 0))) return;
    this.#host!.backfill(topic, epoch, last + 1, []);
  }

  /**
   * As `topic`'s owner, before the line's first message: the epoch reserved for that message,
   * once this node knows the line (no peer holds a message of it) and the replica holds the
   * reservation (told, and acknowledged); '' until then (asked again). It is what subscribers
   * anywhere are given, and what the first message is ordered in, by this node or by the replica
   * if it takes over.
   */
  #lineReservation(topic: string): string {
    const order = this.#book.get(topic);
    if (!this.#knowsLine(topic, order) || order.unacked.length > 0) return '';
    if (order.reserved === '' || order.reservedBy === 'learned') {
      const here = this.#host!.known(topic);
      order.reserve(here !== null && here.offset === 0 && here.epoch !== order.reserved ? here.epoch : randomBytes(6).toString('base64url'), 'owner');
    }
    order.reservedBy = 'owner'; // a replica's, once it owns the topic
    const replica = this.ownerOf(topic)[1];
    if (replica === null || order.reserveHeldBy === replica) return order.reserved;
    const link = this.#links.get(replica);
    const now = Date.now();
    if (link?.synced === true && now - order.reserveSentAt > this.limits.fillTimeoutMs / 8) {
      order.reserveSentAt = now;
      this.#enqueue(link, encodeFillRequest({ topic, epoch: RESERVE_PREFIX + order.reserved, first: 1, last: 1 }));
    }
    return '';
  }

  /** A peer asks where `topic`'s line stands (LINE_QUERY): answered as its owner (first 0), or told this node cannot tell yet. */
  #answerLine(topic: string, conn: Connection<Inbound>): void {
    let epoch = LINE_QUERY;
    let last = 0;
    if (this.ownerOf(topic)[0] === this.id) {
      const here = this.#host!.known(topic);
      if (here === null || here.offset === 0) {
        const reserved = this.#lineReservation(topic);
        if (reserved !== '') epoch = reserved;
      } else if (this.#knowsLine(topic, this.#book.get(topic))) {
        epoch = here.epoch;
        last = here.offset;
      }
    }
    this.#reply(conn, [encodeFillEnd({ topic, epoch, first: 0, last })]);
  }

  /** The owner tells this node, its replica, the epoch it reserved for `topic`'s first message: kept (the line starts in it if this node takes over first), and acknowledged. */
  #holdReservation(topic: string, epoch: string, conn: Connection<Inbound>): void {
    const [owner, replica] = this.ownerOf(topic);
    const held = epoch !== '' && owner === this.#from && replica === this.id;
    if (held) {
      this.#book.get(topic).reserve(epoch, 'replica');
      // A history here that holds nothing (made by a publish forwarded from here) stands in the reserved epoch.
      if (this.#host!.known(topic)?.offset === 0) this.#holdLineHere(topic, epoch, 0);
    }
    this.#reply(conn, [encodeFillEnd({ topic, epoch: held ? RESERVE_PREFIX + epoch : LINE_QUERY, first: 0, last: 0 })]);
  }

  /**
   * Answers to a line query (a subscribe here), to a catch-up answered with the line itself, and
   * to a reservation (as the owner), and older builds' answers to the first and the last (they
   * cannot tell: the history here answers as it stands). True when `r` was one of them (a
   * line answer nobody waits for is not: it goes on as the answer to a fill).
   */
  #onLineAnswer(r: FillRange): boolean {
    const from = this.#from;
    const marked = r.epoch === LINE_QUERY || r.epoch.startsWith(RESERVE_PREFIX);
    const ask = this.#lineAsks.get(r.topic);
    if (ask !== undefined && ask.peer === from) {
      if (r.first === 0 && r.epoch === LINE_QUERY) {
        ask.sentAt = 0; // cannot tell yet: asked again
        return true;
      }
      if (r.first === 0 && !r.epoch.startsWith(RESERVE_PREFIX)) {
        const order = this.#book.get(r.topic);
        if (r.last === 0 && (order.reservedBy === '' || order.reservedBy === 'learned')) order.reserve(r.epoch, 'learned');
        this.#holdLineHere(r.topic, r.epoch, r.last);
        this.#endLineAsk(r.topic, true);
        return true;
      }
      if (r.first === 1 && r.last === 0 && (r.epoch === LINE_QUERY || this.#catchUps.get(r.topic)?.peer !== from)) {
        this.#endLineAsk(r.topic, true);
        return true;
      }
    }
    const c = this.#catchUps.get(r.topic);
    if (c !== undefined && c.peer === from && r.first === 0 && r.epoch === c.epoch && c.frames.length === 0 && r.last === c.since) {
      // The asker's position is the line's last one there: nothing to replay, and the history here stands at it.
      this.#holdLineHere(r.topic, r.epoch, r.last);
      this.#endCatchUp(r.topic, true);
      return true;
    }
    const order = this.#book.topics.get(r.topic);
    if (order !== undefined && order.reservedBy === 'owner' && from === this.ownerOf(r.topic)[1] && r.epoch === RESERVE_PREFIX + order.reserved) {
      // Held by the replica (first 0), or an older build's answer (first 1): it cannot hold it.
      order.reserveHeldBy = from;
      return true;
    }
    return marked;
  }

  /** A tail not answered within fillTimeoutMs is given up (the owner orders from what it has); a late answer is asked of another peer. */
  #tailTick(topic: string, order: TopicOrder, now: number): void {
    if (this.ownerOf(topic)[0] !== this.id) {
      order.tailSince = 0;
      return;
    }
    if (now - order.tailSince > this.limits.fillTimeoutMs) {
      this.stats.tailsFailed++;
      this.#lineSettled(topic, order);
    } else if (now - order.tailAskedAt > this.limits.fillTimeoutMs / 4) this.#askTail(topic, order);
  }

  /** Gives up fills that waited fillTimeoutMs; asks again (another peer) when an answer is late. */
  #fillTick(now: number): void {
    const l = this.limits;
    for (const topic of this.#fills.expired(now, l.fillTimeoutMs)) this.#giveUpFill(topic);
    for (const [topic, fill] of this.#fills.topics) {
      if (now - fill.askedAt > l.fillTimeoutMs / 4) this.#askFill(topic, fill, (this.#host!.position(topic)?.offset ?? 0) + 1);
    }
  }

  readonly #acksDue = new Map<string, Map<string, { epoch: string; offset: number }>>();
  #acksScheduled = false;
  readonly #flushAcks = (): void => {
    this.#acksScheduled = false;
    for (const [peer, due] of this.#acksDue) {
      // On the owner's link to us, which its Ordered records came on; ours to it may still be coming back.
      const conn = this.#inbound.get(peer);
      const link = this.#links.get(peer);
      const records = [...due].map(([topic, p]) => encodeAck(topic, p.epoch, p.offset));
      if (conn !== undefined && conn.isOpen && !conn.data.replaced) this.#reply(conn, records);
      else if (link !== undefined && link.synced) for (const rec of records) this.#enqueue(link, rec);
    }
    this.#acksDue.clear();
  };

  #onAck(topic: string, epoch: string, offset: number): void {
    const order = this.#book.topics.get(topic);
    if (order === undefined || order.epoch !== epoch) return;
    let n = 0;
    while (n < order.unacked.length && order.unacked[n]!.offset <= offset) n++;
    this.#release(topic, order, n, this.#from);
  }

  /**
   * Asks `peer` (the topic's new owner, or a member that appeared, asked by the owner) for its
   * copy of the last message held here: a line that went on without this node (the two sides of
   * a healed partition) shows as another message at that offset, which is then told to
   * subscribers instead of continued silently. Sent once the link is up; at most one per topic
   * and peer.
   */
  #probeLine(topic: string, peer: string): void {
    const here = this.#host!.position(topic);
    if (here === null || here.offset === 0) return;
    const link = this.#links.get(peer);
    if (link === undefined || !link.synced) {
      let due = this.#probes.get(peer);
      if (due === undefined) this.#probes.set(peer, (due = new Set()));
      due.add(topic);
      return;
    }
    let probing = this.#probing.get(peer);
    if (probing === undefined) this.#probing.set(peer, (probing = new Map()));
    probing.set(topic, here.offset);
    this.#enqueue(link, encodeFillRequest({ topic, epoch: here.epoch, first: here.offset, last: here.offset }));
  }

  /** After a membership change: forwards go to the new owners, and a node that became an owner re-sends its history's tail. */
  #ownersChanged(): void {
    if (this.#host === null) return;
    // Members that appeared (a join, or the other side of a healed partition): an owner asks them
    // for their copy of its last message, as the nodes whose topics changed owner ask the new one.
    const gained = this.#prevMembers.length === 0 ? [] : this.#members.filter((m) => !this.#prevMembers.includes(m));
    for (const [topic, order] of this.#book.topics) {
      const owner = this.ownerOf(topic)[0];
      const owns = owner === this.id;
      if (!owns && owner !== null && this.#prevMembers.length > 0 && ownerAndReplica(topic, this.#prevMembers)[0] !== owner) this.#probeLine(topic, owner);
      if (owns && order.owned) for (const m of gained) this.#probeLine(topic, m);
      if (owns && !order.owned && this.#holdsLine(topic)) {
        // The replica holds everything the old owner delivered: it continues at once.
        this.#takeOver(topic);
        order.owned = true;
        order.lineKnown = true;
      } else if (!owns) {
        // No longer ours: what waits for an ack is delivered rather than lost.
        this.stats.unreplicated += order.unacked.length;
        this.#release(topic, order, order.unacked.length, null);
        order.owned = false;
        order.lineKnown = false;
        order.tailSince = 0;
        order.cededTo = '';
        this.#orderWaiting(topic, order); // lets them go: their origins resend to the new owner
      }
      if (order.reservedBy === 'replica' && !owns && this.ownerOf(topic)[1] !== this.id) order.unreserve(); // another node is the replica now
      if (order.cedeRefused !== '') {
        // The members changed: a claimant's view may agree with ours now.
        order.cedeRefused = '';
      }
      if (order.pending.length > 0) {
        this.stats.forwardRetries += order.pending.length;
        this.#forward(topic, order, order.pending.slice());
      }
    }
  }

  /**
   * This node now owns `topic`: the messages it holds as the former replica may not have
   * reached every node (the old owner died before delivering them). It re-sends the tail of its
   * history that could be in that state; nodes drop what they have.
   */
  #takeOver(topic: string): void {
    const tail = this.#host!.tail(topic, this.limits.ownerTailMessages);
    if (tail === null || tail.frames.length === 0) return;
    for (let i = 0; i < tail.frames.length; i++) {
      const rec = encodeOrdered({ topic, epoch: tail.epoch, offset: tail.first + i, origin: '', seq: 0, ackWanted: false, frame: tail.frames[i]! });
      for (const link of this.#links.values()) if (link.synced) this.#enqueue(link, rec);
    }
  }

  #wasOwnerOrReplica(topic: string): boolean {
    const [o, r] = ownerAndReplica(topic, this.#prevMembers);
    return o === this.id || r === this.id;
  }

  #startOrderTimer(): void {
    if (this.#orderTimer !== null || this.#closed) return;
    const step = Math.max(10, Math.min(this.limits.forwardRetryMs, this.limits.ackTimeoutMs) / 4);
    this.#orderTimer = setInterval(() => this.#orderTick(), step);
    this.#orderTimer.unref();
  }

  /** Resends forwards not back in time, drops those too old, delivers what waited too long for an ack. */
  #orderTick(): void {
    const now = Date.now();
    const l = this.limits;
    let busy = this.#fills.topics.size > 0;
    if (busy) this.#fillTick(now);
    for (const [topic, order] of this.#book.topics) {
      if (order.idle) continue;
      busy = true;
      if (order.tailSince !== 0) this.#tailTick(topic, order, now);
      else if (order.waiting !== null && (this.ownerOf(topic)[0] !== this.id || order.lineKnown || this.#knowsLine(topic, order))) this.#orderWaiting(topic, order);
      const u = order.unacked[0];
      if (u !== undefined && now - u.at > l.ackTimeoutMs) {
        this.stats.unreplicated += order.unacked.length;
        this.#release(topic, order, order.unacked.length, null);
      }
      let lost = 0;
      while (order.pending.length > 0 && now - order.pending[0]!.firstAt > l.forwardTimeoutMs) {
        const p = order.pending.shift()!;
        lost += p.record.length;
        this.stats.forwardsLost++;
        p.done?.(null, 'unavailable');
      }
      if (lost > 0) this.#pendingChanged(-lost);
      // Only what has waited a resend period (the rest is still on its way), and only while
      // nothing comes back: an owner that makes progress is busy, and resending would add to it.
      const due = now - order.progressAt > l.forwardRetryMs ? order.pending.filter((p) => now - p.sentAt > l.forwardRetryMs) : [];
      if (due.length > 0) {
        this.stats.forwardRetries += due.length;
        this.#forward(topic, order, due);
      }
    }
    if (!busy && this.#orderTimer !== null) {
      clearInterval(this.#orderTimer);
      this.#orderTimer = null;
    }
  }

  // ---- lifecycle -------------------------------------------------------------------------

  /** Starts linking to the membership's peers (and following its changes). Idempotent. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#startedAt = Date.now();
    this.#unwatch = this.#membership.onChange(() => this.#syncPeers());
    this.#heartbeat = setInterval(() => this.#beat(), this.limits.heartbeatMs);
    this.#heartbeat.unref();
    this.#syncPeers();
  }

  /**
   * Accepts links on a listener of its own (standalone use and tests). Mounted on an HTTP
   * server, use handleUpgrade() instead.
   */
  listen(port = 0, host = '127.0.0.1'): Promise<AddressInfo> {
    return this.#server.listen(port, host);
  }

  /**
   * Takes a link request from a node:http server's 'upgrade' event for this.path:
   * `if (path === MESH_PATH) mesh.handleUpgrade(req, socket, head)`.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#server.handleUpgrade(req, socket, head);
  }

  /** Closes every link (and the own listener) and stops redialling. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    await this.settle();
    this.#closed = true;
    this.#unwatch?.();
    this.#unwatch = null;
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    if (this.#orderTimer !== null) clearInterval(this.#orderTimer);
    this.#orderTimer = null;
    for (const topic of [...this.#catchUps.keys()]) this.#endCatchUp(topic, false);
    for (const topic of [...this.#lineAsks.keys()]) this.#endLineAsk(topic, false);
    // What did not come back ordered while settling is not published: its publishers are told.
    for (const order of this.#book.topics.values()) {
      for (const p of order.pending.splice(0)) p.done?.(null, 'unavailable');
    }
    const closing: Promise<void>[] = [];
    for (const link of this.#links.values()) closing.push(this.#dropLink(link, 'shutting down'));
    this.#links.clear();
    closing.push(this.#server.close(2_000));
    await Promise.all(closing);
  }

  /**
   * Resolves (at most closeWaitMs later; never rejects) once the publishes this node forwarded
   * came back ordered and, as an owner, its replicas acked what it ordered: what a client was
   * told was published is not lost with a graceful stop, and a client that moves to another
   * node cannot overtake its earlier publishes. Resends go on meanwhile (the order timer).
   */
  settle(): Promise<void> {
    const deadline = Date.now() + this.limits.closeWaitMs;
    return new Promise((resolve) => {
      const check = (): void => {
        const busy = this.#book.pendingBytes > 0 || this.#book.unackedBytes > 0;
        const linked = [...this.#links.values()].some((l) => l.synced);
        if (!busy || !linked || Date.now() >= deadline) return resolve();
        setTimeout(check, 20).unref();
      };
      check();
    });
  }

  /** The outbound links, for operators and tests. */
  links(): LinkInfo[] {
    const out: LinkInfo[] = [];
    for (const l of this.#links.values()) {
      const state = l.synced ? 'synced' : l.ws === null ? 'backoff' : l.ws.readyState === WebSocket.OPEN ? 'open' : 'connecting';
      out.push({ id: l.id, url: l.url, state, interestTopics: l.all ? -1 : l.interest.size, bufferedBytes: (l.ws?.bufferedAmount ?? 0) + l.pendingBytes });
    }
    return out;
  }

  /** Ids of the peers whose links to us are open. */
  inboundPeers(): string[] {
    return [...this.#inbound.keys()];
  }

  /** The topics we told peers we have subscribers for. */
  advertisedTopics(): string[] {
    return [...this.#advertised];
  }

  // ---- outbound links ---------------------------------------------------------------------

  #syncPeers(): void {
    if (this.#closed) return;
    const want = new Map<string, string>();
    for (const p of this.#membership.peers()) if (p.id !== this.id) want.set(p.id, p.url);
    const members = [this.id, ...want.keys()];
    // Owners move only when the members do: gossip tells every load update of every member
    // (once a second each, from every member), and nothing of ownership changes with those.
    const moved = members.length !== this.#members.length || members.some((m, i) => m !== this.#members[i]);
    if (moved) {
      // A node that just started owned nothing before its first view of the cluster.
      this.#prevMembers = this.#membersChangedAt === 0 ? [] : this.#members;
      this.#members = members;
      this.#membersChangedAt = Date.now();
      if (members.length > 1) this.#hadPeers = true;
    }
    const now = Date.now();
    for (const [id, link] of this.#links) {
      const url = want.get(id);
      if (url === undefined) {
        const departed = this.#membership.departed?.(id) ?? true;
        if (!departed && link.synced && now - link.lastSeen < 2 * this.limits.heartbeatMs) {
          // Declared dead, yet its link answers: keep it until it closes or goes silent
          // (heartbeats). A crashed process's link closes at once anyway.
          link.orphan = true;
          continue;
        }
        this.#links.delete(id);
        void this.#dropLink(link, 'left the cluster');
        // Its publishes to us stop too: a departed member has no business here. A member
        // only declared dead keeps its inbound link until that closes or goes silent.
        if (departed) this.#inbound.get(id)?.close(CloseCode.GoingAway, 'left the cluster');
        continue;
      }
      link.orphan = false;
      if (url !== link.url) {
        link.url = url;
        link.attempts = 0;
        if (link.ws !== null) {
          link.closing = true;
          link.ws.close(CloseCode.Normal, 'peer moved');
        }
        else this.#scheduleDial(link);
      }
    }
    for (const [id, url] of want) {
      if (this.#links.has(id)) continue;
      const link = new OutLink(this, id, url);
      this.#links.set(id, link);
      this.#dial(link);
    }
    if (moved) this.#ownersChanged();
  }

  #dial(link: OutLink): void {
    link.retry = null;
    if (this.#closed || link.removed) return;
    if (this.#dialing.size >= this.limits.maxDialsInFlight) {
      // Its turn comes when a handshake in flight ends (#dialEnded).
      this.#dialQueue.add(link);
      return;
    }
    this.#dialing.add(link);
    const { header, nonce } = this.auth.sign(this.id, link.id);
    link.nonce = nonce;
    link.verified = false;
    link.failure = null;
    link.closing = false;
    let ws: WebSocket;
    try {
      ws = new WebSocket(link.url, [MESH_SUBPROTOCOL], {
        headers: { [MESH_AUTH_HEADER]: header },
        maxPayload: this.#dialerMaxPayload(),
        handshakeTimeoutMs: this.limits.handshakeTimeoutMs,
        // A peer that does not finish a close handshake within a second on a LAN is broken.
        closeTimeoutMs: 1_000,
        ...(this.#tls !== undefined ? { tls: this.#tls } : {}),
      });
    } catch (err) {
      this.stats.dialFailures++;
      this.#log.line(`url:${link.id}`, `[murmur] bus: cannot link to ${link.id} at ${link.url}: ${(err as Error).message}`);
      this.#dialEnded(link);
      this.#scheduleDial(link);
      return;
    }
    link.ws = ws;
    link.lastSeen = link.dialedAt = Date.now();
    ws.onmessage = (ev) => this.#onAcceptorMessage(link, ws, ev.data);
    ws.onerror = (ev) => this.#onDialError(link, ws, ev.error);
    ws.onclose = (ev) => this.#onLinkClosed(link, ws, ev.code, ev.reason);
    ws.addEventListener('pong', () => {
      if (link.ws === ws) link.lastSeen = Date.now();
    });
  }

  /**
   * What an acceptor may send us in one message: its interest, or an answer to our requests (a
   * tick's batch, a fill answer of maxFillBytes, or one message of the largest size), with room
   * for the records' heads.
   */
  #dialerMaxPayload(): number {
    const l = this.limits;
    return Math.max(l.maxInboundInterestBytes, l.maxBatchBytes, l.maxFillBytes, l.maxPublishBytes) + l.maxTopicBytes + 64 * 1024;
  }

  #onAcceptorMessage(link: OutLink, ws: WebSocket, data: unknown): void {
    if (link.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
    link.lastSeen = Date.now();
    let why: string | null;
    this.#from = link.id;
    this.#fromConn = null;
    if (!Buffer.isBuffer(data)) why = 'a text message';
    else why = parseAcceptorRecords(data, this.limits.maxTopicBytes, link, link.verified ? this.#ordering : null) ?? link.failure;
    if (why === null) return;
    if (why === 'auth') {
      this.stats.peerAuthFailures++;
      this.#log.line(`proof:${link.id}`, `[murmur] bus: ${link.id} at ${link.url} could not prove it holds the cluster key; link closed`);
      this.#failLink(link, ws, CLOSE_PEER_AUTH, why);
    } else {
      this.stats.protocolErrors++;
      this.#log.line(`proto:${link.id}`, `[murmur] bus: ${link.id} sent ${why}; link closed`);
      this.#failLink(link, ws, CLOSE_PROTOCOL, why);
    }
  }

  /**
   * Gives up on a link at once: it closes in the background (a hostile or frozen peer cannot
   * delay the redial by not answering our close) and its events no longer reach the link.
   */
  #failLink(link: OutLink, ws: WebSocket, code: number, why: string): void {
    if (link.orphan) this.#forget(link);
    link.failure ??= why;
    ws.close(code, why.slice(0, 100));
    this.#markDown(link);
    link.ws = null;
    this.#scheduleDial(link);
  }

  /** Called by a link when the peer's full interest set has arrived. */
  linkSynced(link: OutLink): void {
    this.#dialEnded(link);
    link.synced = true;
    link.attempts = 0;
    this.stats.linksUp++;
    if (link.everSynced) {
      this.stats.reconnects++;
      this.#log.always(`up:${link.id}`, `[murmur] bus: link to ${link.id} re-established`);
    }
    link.everSynced = true;
    const probes = this.#probes.get(link.id);
    if (probes !== undefined) {
      this.#probes.delete(link.id);
      for (const topic of probes) this.#probeLine(topic, link.id);
    }
    // Forwards that waited for the link to their owner go now, not at the next resend; and a
    // tail that waited for this link is asked now.
    for (const [topic, order] of this.#book.topics) {
      if (order.tailSince !== 0 && order.tailRequests === 0 && this.#formerOwner(topic) === link.id) this.#askTail(topic, order);
      if (order.pending.length > 0 && this.ownerOf(topic)[0] === link.id) this.#forward(topic, order, order.pending.slice());
    }
  }

  #onDialError(link: OutLink, ws: WebSocket, err: Error): void {
    if (link.ws !== ws) return;
    if (err instanceof ProtocolError) {
      // The acceptor broke RFC 6455 or sent more than maxInboundInterestBytes at once.
      this.stats.protocolErrors++;
      this.#log.line(`proto:${link.id}`, `[murmur] bus: ${link.id} broke the link protocol (${err.code}); link closed`);
      this.#failLink(link, ws, CLOSE_PROTOCOL, err.code);
    } else if (err instanceof ClientError && (err.status === 401 || err.status === 403)) {
      this.stats.authRefused++;
      this.#log.line(`refused:${link.id}`, `[murmur] bus: ${link.id} refused our link (${err.status}): the cluster keys or labels differ`);
    } else if (!link.synced) {
      this.#log.line(`dial:${link.id}`, `[murmur] bus: cannot link to ${link.id} at ${link.url}: ${err.message}`);
    }
  }

  #onLinkClosed(link: OutLink, ws: WebSocket, code: number, reason: string): void {
    if (link.ws !== ws) return;
    if (link.orphan) this.#forget(link);
    const wasSynced = link.synced;
    this.#markDown(link);
    link.ws = null;
    // No close frame on an established link we did not close: the peer's kernel closed the
    // connection, which is what a process that dies leaves behind (a graceful stop says
    // goodbye with a close frame first). The failure detector weighs it; it decides nothing.
    if (code === CloseCode.Abnormal && wasSynced && !link.closing && !this.#closed && !link.removed) {
      this.stats.linksLost++;
      this.#membership.linkLost?.(link.id);
    }
    if (!wasSynced && link.failure === null) this.stats.dialFailures++;
    else if (!this.#closed && !link.removed) this.#log.always(`down:${link.id}`, `[murmur] bus: link to ${link.id} lost (${code}${reason === '' ? '' : ` ${reason}`}); redialling`);
    if (!this.#closed && !link.removed) this.#scheduleDial(link);
  }

  /** An orphan link ended: the peer is out of the membership, so it is not redialled. */
  #forget(link: OutLink): void {
    link.orphan = false;
    link.removed = true;
    if (this.#links.get(link.id) === link) this.#links.delete(link.id);
  }

  /** The link carries nothing more: its interest is forgotten and its unsent batch counted as dropped. */
  #markDown(link: OutLink): void {
    this.#dialEnded(link);
    if (link.synced) this.stats.linksUp--;
    link.synced = false;
    link.verified = false;
    link.interest.clear();
    link.all = false;
    if (link.pendingMessages > 0) {
      this.stats.dropped += link.pendingMessages;
      this.stats.droppedBytes += link.pendingBytes;
    }
    link.pending = [];
    link.pendingBytes = 0;
    link.pendingMessages = 0;
  }

  /** A link's handshake is over (synced, failed, closed or dropped): the next waiting link is dialled. */
  #dialEnded(link: OutLink): void {
    this.#dialQueue.delete(link);
    if (!this.#dialing.delete(link)) return;
    for (const next of this.#dialQueue) {
      this.#dialQueue.delete(next);
      if (this.#closed || next.removed || next.ws !== null) continue;
      this.#dial(next);
      return;
    }
  }

  /** Exponential backoff with jitter (half fixed, half random), so restarted peers are not dialled in lockstep. */
  #scheduleDial(link: OutLink): void {
    if (link.retry !== null || this.#closed || link.removed) return;
    const base = Math.min(this.limits.reconnectMaxMs, this.limits.reconnectMinMs * 2 ** Math.min(link.attempts, 20));
    link.attempts++;
    const delay = base / 2 + Math.random() * (base / 2);
    link.retry = setTimeout(() => this.#dial(link), delay);
    link.retry.unref();
  }

  #dropLink(link: OutLink, reason: string): Promise<void> {
    link.removed = true;
    this.#probes.delete(link.id);
    this.#probing.delete(link.id);
    if (link.retry !== null) clearTimeout(link.retry);
    link.retry = null;
    const ws = link.ws;
    this.#markDown(link);
    link.ws = null;
    if (ws === null || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise<void>((resolve) => {
      ws.addEventListener('close', () => resolve());
      ws.close(CloseCode.Normal, reason);
    });
  }

  #enqueue(link: OutLink, record: Buffer): void {
    const ws = link.ws!;
    // The budget counts what the socket still holds plus this tick's batch.
    if (ws.bufferedAmount + link.pendingBytes + record.length > this.limits.maxLinkBufferBytes) {
      this.stats.dropped++;
      this.stats.droppedBytes += record.length;
      return;
    }
    if (link.pendingBytes > 0 && link.pendingBytes + record.length > this.limits.maxBatchBytes) link.flush();
    if (link.pending.length === 0) {
      this.#dirty.push(link);
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        process.nextTick(this.#flushLinks);
      }
    }
    link.pending.push(record);
    link.pendingBytes += record.length;
    link.pendingMessages++;
    this.stats.messagesSent++;
    this.stats.bytesSent += record.length;
  }

  /** Pings every link; one silent for three intervals is closed (a half-open TCP link) and redialled. */
  #beat(): void {
    const now = Date.now();
    for (const link of this.#links.values()) {
      const ws = link.ws;
      if (ws === null || ws.readyState !== WebSocket.OPEN) continue;
      if (now - link.lastSeen > 3 * this.limits.heartbeatMs) {
        this.#log.line(`silent:${link.id}`, `[murmur] bus: link to ${link.id} silent; redialling`);
        this.#failLink(link, ws, CLOSE_SILENT, 'silent');
        continue;
      }
      if (!link.synced && now - link.dialedAt > 3 * this.limits.heartbeatMs) {
        // Open but never synced (a peer that answers pings and sends no interest): it would hold a dial slot.
        this.#log.line(`unsynced:${link.id}`, `[murmur] bus: link to ${link.id} not synced; redialling`);
        this.#failLink(link, ws, CLOSE_SILENT, 'not synced');
        continue;
      }
      ws.ping();
    }
  }

  // ---- inbound links ----------------------------------------------------------------------

  #onUpgrade(req: UpgradeRequest, conn: Connection<Inbound>): HttpReject | undefined {
    if (req.path !== this.path) return new HttpReject(404, 'NOT_FOUND');
    if (this.#closed) return new HttpReject(503, 'BUS_CLOSED');
    if (!req.protocols.includes(MESH_SUBPROTOCOL)) return new HttpReject(400, 'BUS_PROTOCOL', {}, `expected subprotocol ${MESH_SUBPROTOCOL}`);
    const r = this.auth.verify(getHeader(req.head, MESH_AUTH_HEADER), this.id);
    if (!r.ok) {
      this.stats.authFailures++;
      this.stats.authFailuresByReason[r.reason]++;
      this.#log.line(`auth:${r.reason}`, `[murmur] bus: refused a link from ${conn.remoteAddress ?? '?'}: ${r.reason}`);
      return new HttpReject(AUTH_STATUS[r.reason], `BUS_AUTH_${r.reason.toUpperCase().replace('-', '_')}`);
    }
    conn.data = { peer: r.from, nonce: r.nonce, keyIndex: r.keyIndex, replaced: false };
    return undefined;
  }

  #onInboundOpen(conn: Connection<Inbound>): void {
    const st = conn.data;
    const prev = this.#inbound.get(st.peer);
    if (prev !== undefined) {
      // The newer link wins: the peer redialled because it thinks the old one is dead, so
      // nothing that still arrives on the old one may overtake what comes on the new one.
      prev.data.replaced = true;
      prev.close(CloseCode.GoingAway, 'replaced');
    }
    // Deltas of this tick go to the links that have the old set first; this one gets the
    // whole, current set.
    this.#flushInterest();
    this.#inbound.set(st.peer, conn);
    this.stats.inboundLinks = this.#inbound.size;
    conn.send(encodeHello(this.auth.acceptProof(st.keyIndex, this.id, st.peer, st.nonce)));
    for (const rec of encodeInterest(LinkRecord.InterestAdd, this.#advertised, 64 * 1024)) conn.send(rec);
    conn.send(SYNCED_RECORD);
  }

  #onInboundMessage(conn: Connection<Inbound>, data: Buffer, isBinary: boolean): void {
    if (conn.data.replaced) return;
    this.stats.bytesReceived += data.length;
    this.#from = conn.data.peer;
    this.#fromConn = conn;
    const why = isBinary ? parsePublishes(data, this.limits.maxTopicBytes, this.#deliver, this.#ordering) : 'a text message';
    if (why === null) return;
    this.stats.protocolErrors++;
    this.#log.line(`proto-in:${conn.data.peer}`, `[murmur] bus: ${conn.data.peer} sent ${why}; link closed`);
    conn.data.replaced = true; // discard the rest
    conn.close(CloseCode.ProtocolError, 'bus protocol error');
  }

  #onInboundError(conn: Connection<Inbound>, err: ProtocolError): void {
    this.stats.protocolErrors++;
    const peer = conn.data?.peer ?? '?';
    this.#log.line(`ws-in:${peer}`, `[murmur] bus: link from ${peer} failed: ${err.message}`);
  }

  #onInboundClose(conn: Connection<Inbound>): void {
    const st = conn.data;
    if (st === undefined) return;
    if (this.#inbound.get(st.peer) === conn) this.#inbound.delete(st.peer);
    this.stats.inboundLinks = this.#inbound.size;
  }

  #scheduleInterest(): void {
    if (this.#interestScheduled) return;
    this.#interestScheduled = true;
    process.nextTick(this.#flushInterestTick);
  }

  /** Sends this tick's net interest changes to every inbound link. */
  #flushInterest(): void {
    this.#interestScheduled = false;
    if (this.#interestChanges.size === 0) return;
    const add: string[] = [];
    const remove: string[] = [];
    for (const [topic, hint] of this.#interestChanges) {
      // The server's state now is the truth: a topic that came and went in one tick is no change.
      const now = this.#interest?.has(topic) ?? hint;
      if (now && !this.#advertised.has(topic)) {
        this.#advertised.add(topic);
        add.push(topic);
      } else if (!now && this.#advertised.delete(topic)) {
        remove.push(topic);
      }
    }
    this.#interestChanges.clear();
    if (add.length === 0 && remove.length === 0) return;
    const records = [...encodeInterest(LinkRecord.InterestAdd, add, 64 * 1024), ...encodeInterest(LinkRecord.InterestRemove, remove, 64 * 1024)];
    for (const conn of this.#inbound.values()) {
      if (!conn.isOpen || conn.data.replaced) continue;
      for (const rec of records) conn.send(rec);
    }
  }
}
