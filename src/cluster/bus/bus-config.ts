/**
 * Every default of the cluster bus, in one place, each with the reason for its value.
 */

/** The path the mesh accepts links on (mount it on the node's HTTP server). */
export const MESH_PATH = '/cluster/bus';

/** The WebSocket subprotocol of a mesh link; its number is the link protocol's version. */
export const MESH_SUBPROTOCOL = 'murmur-bus.1';

/** The request header that carries a link's credentials. */
export const MESH_AUTH_HEADER = 'murmur-bus-auth';

export const MESH_DEFAULTS = {
  /** Largest publish forwarded to a peer, payload bytes. 1 MiB: 16 x murmur serve's largest message; bigger ones stay local and are counted. */
  maxPublishBytes: 1024 * 1024,
  /** Bytes of one topic name on a link. 1 KiB: 4 x the server's default maxTopicLength, so every topic a server accepts fits. */
  maxTopicBytes: 1024,
  /** Bytes one outbound link may hold unsent (queued in the process) before publishes to that peer are dropped. 8 MiB: a second of a busy 64 Mbit/s link, bounded for tens of peers. */
  maxLinkBufferBytes: 8 * 1024 * 1024,
  /** Publishes of one tick to one peer are sent as one WebSocket message up to this size. 256 KiB: a few syscalls' worth, small enough not to stall other links. */
  maxBatchBytes: 256 * 1024,
  /** Topics of a peer's interest kept per link; beyond it the link forwards everything and the peer filters. 100,000 names: ~10 MB worst case per peer. */
  maxPeerTopics: 100_000,
  /** Inbound links accepted at once. 1,024: far above any mesh that makes sense; bounds a flood of authenticated sockets. */
  maxInboundLinks: 1024,
  /** Largest message a peer's acceptor side may send us (interest records). 1 MiB: thousands of topic names per record. */
  maxInboundInterestBytes: 1024 * 1024,
  /** Bytes of a link request's head on the mesh's own listener, read before the credentials are checked. 4 KiB: a link request is about 400 bytes (request line, Host, upgrade headers, credentials), with room for a proxy's headers; 1,024 strangers' requests hold 4 MiB at most. */
  maxRequestHeadBytes: 4 * 1024,
  /** Time to complete a link's opening handshake, either side. 5 s: loopback and LAN need milliseconds. */
  handshakeTimeoutMs: 5_000,
  /** How far a link request's timestamp may be from our clock (both ways), and how long its nonce is remembered. 30 s tolerates NTP-synced clocks. */
  replayWindowMs: 30_000,
  /** Nonces remembered within the replay window. 10,000 authenticated links in 30 s is far above any real churn; past it new links are refused (503) until old nonces expire. */
  maxNonces: 10_000,
  /** Link handshakes this node has in flight at once; more wait their turn. 8: a node that joins a cluster of many (a machine's 56 workers) dials 55 peers, and on a loaded machine 55 handshakes at once outlast handshakeTimeoutMs and are all dialled again. */
  maxDialsInFlight: 8,
  /** First reconnect delay after a link drops. 100 ms: a peer restarting on the same port is back within a few tries. */
  reconnectMinMs: 100,
  /** Reconnect delay cap. 5 s: a peer that comes back is linked within seconds; a dead one costs one attempt per 5 s until gossip drops it. */
  reconnectMaxMs: 5_000,
  /** Ping interval of outbound links; a link silent for 3 intervals is closed and redialled. 5 s finds a half-open TCP link within 15 s. */
  heartbeatMs: 5_000,
  /** Record bytes of the publishes to history topics a node keeps until they come back ordered; beyond it new ones are dropped and counted. 16 MiB: seconds of a busy node's publishes while ownership moves. */
  maxPendingForwardBytes: 16 * 1024 * 1024,
  /** Record bytes of the forwards an owner keeps, all topics together, while it finds out where a topic's line stands (a new topic, or one whose ownership moved): ordered as soon as it knows, instead of when their origins resend (forwardRetryMs). Beyond it they are dropped and resent. 4 MiB: a tail round trip's worth of a busy cluster's publishes. */
  maxWaitingForwardBytes: 4 * 1024 * 1024,
  /** Frame bytes an owner holds waiting for replicas' acks, all topics together; beyond it messages are delivered unreplicated and counted. 16 MiB: far above a LAN round trip's worth. */
  maxUnackedBytes: 16 * 1024 * 1024,
  /** Ordered topics whose state (origins' sequence numbers, pending forwards) a node keeps. 10,000: the library's maxHistoryTopics. */
  maxOrderedTopics: 10_000,
  /** Origins whose last sequence number a node remembers per ordered topic. 64: every node of a large cluster and its recent restarts. */
  maxOrderedOrigins: 64,
  /** A forwarded publish not back ordered after this long is resent to the owner of the moment. 1 s: ten LAN round trips. */
  forwardRetryMs: 1_000,
  /** A forwarded publish not back ordered after this long is dropped and counted. 30 s: SWIM's LAN failure detection (up to ~10 s at small clusters) plus many resends. */
  forwardTimeoutMs: 30_000,
  /** How long close() waits for this node's forwarded publishes to come back ordered (and, as an owner, for its replicas' acks) before it drops the links. 5 s: a handoff (ownerHandoffMs), a tail round trip and a resend (forwardRetryMs), with room; a deploy loses nothing its clients were told was published. */
  closeWaitMs: 5_000,
  /** How long an owner waits for the replica's ack before delivering unreplicated. 1 s: a replica that slow is likely dying. */
  ackTimeoutMs: 1_000,
  /** A node that becomes a topic's owner from a live one (a join) waits this long before ordering, so the old owner's last messages reach it first. 1 s: gossip spreads a join to every node of a LAN cluster well within it. */
  ownerHandoffMs: 1_000,
  /** How long a claim on a topic (a peer that owns it in its view asked for its tail) stops this node ordering it while its own view still disagrees. 10 s: gossip spreads a membership change across a LAN cluster in a second or two; a claim that outlives that is wrong or hostile. */
  maxCedeMs: 10_000,
  /** Messages of its history a node sends to a peer that becomes a topic's owner without a line of it (and that a replica re-sends when it takes over). 64: a few ticks of a busy topic, the messages that can be in flight at a handoff. */
  ownerTailMessages: 64,
  /** How long a node holds ordered messages past a gap while it asks the owner or the replica for the missing ones; then it applies them with the skip (its subscribers are told). 3 s: many LAN round trips, and a stall subscribers can bear. */
  fillTimeoutMs: 3_000,
  /** Messages one fill answer carries at most (a bigger gap is asked for again from where the answer stopped). 1,000: a history's default length. */
  maxFillMessages: 1_000,
  /** Frame bytes one fill answer carries at most (but at least one message). 1 MiB: a history's default size, under maxLinkBufferBytes. */
  maxFillBytes: 1024 * 1024,
  /** Frame bytes held past a gap for one topic; beyond it the fill is given up. 4 MiB: seconds of a busy topic. */
  maxReorderBytes: 4 * 1024 * 1024,
  /** Frame bytes held past gaps by all topics together; beyond it the fill that needs more is given up. 32 MiB: a few busy topics at once, bounded whatever the number of topics. */
  maxReorderTotalBytes: 32 * 1024 * 1024,
  /** Topics filling at once; a gap in one more is applied with the skip at once. 1,000: a node that missed that much lost its link for long, and is better told. */
  maxFillingTopics: 1_000,
} as const;

export const REDIS_DEFAULTS = {
  /** Channel of topic T is prefix + T: several clusters (or apps) can share one Redis. */
  channelPrefix: 'murmur:bus:',
  /** Publish bytes in flight to Redis before new publishes are dropped. 8 MiB, as a mesh link. */
  maxPendingBytes: 8 * 1024 * 1024,
  /** Largest publish sent to Redis. 1 MiB, as the mesh. */
  maxPublishBytes: 1024 * 1024,
  /** Reconnect delays after Redis goes away. */
  reconnectMinMs: 100,
  reconnectMaxMs: 5_000,
  /** Time to connect to Redis at start and on each reconnect. */
  connectTimeoutMs: 5_000,
  /** A history topic's keys in Redis (its epoch, offset and kept messages) expire after it has been idle this long. 24 h: far beyond any reconnect; bounds what abandoned topics hold in Redis (a client back later resyncs). */
  historyTtlMs: 24 * 60 * 60 * 1000,
  /** Messages of one tick to one history topic ordered by one script call. 256: one call per tick for busy topics, a bounded script. */
  maxScriptRecords: 256,
  /** How long a node holds ordered messages past a gap while it reads the missing ones from Redis, and how long a catch-up before a recovery waits; then the held ones are applied with the skip (subscribers are told). 3 s, as the mesh. */
  fillTimeoutMs: MESH_DEFAULTS.fillTimeoutMs,
  /** Messages one read from Redis returns at most (a bigger gap is read again from where it stopped). 1,000: a history's default length. */
  maxFillMessages: MESH_DEFAULTS.maxFillMessages,
  /** Bytes one read from Redis returns at most (but at least one message). 1 MiB: a history's default size. */
  maxFillBytes: MESH_DEFAULTS.maxFillBytes,
  /** Frame bytes held past a gap for one topic; beyond it the gap is given up. 4 MiB, as the mesh. */
  maxReorderBytes: MESH_DEFAULTS.maxReorderBytes,
  /** Frame bytes held past gaps by all topics together. 32 MiB, as the mesh. */
  maxReorderTotalBytes: MESH_DEFAULTS.maxReorderTotalBytes,
  /** Topics filling from Redis (or catching up) at once; a gap in one more is applied with the skip at once. 1,000, as the mesh. */
  maxFillingTopics: MESH_DEFAULTS.maxFillingTopics,
  /** Publishes to history topics whose "skip this subscriber" is remembered until they come back from Redis; beyond it the oldest is forgotten (its publisher gets its own message). 65,536: seconds of a busy node. */
  maxPendingExcepts: 65_536,
  /** How long a publish to a history topic waits for the script's answer before its publisher is told UNAVAILABLE (a Redis that is connected but stalls). 30 s, as the mesh's forwardTimeoutMs. */
  orderTimeoutMs: MESH_DEFAULTS.forwardTimeoutMs,
} as const;
