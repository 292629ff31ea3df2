/**
 * Every tunable of the gossip layer, in one place, each with the reason for its value.
 * The LAN defaults follow memberlist's DefaultLANConfig; tests and the simulator start
 * from them and override what they need.
 */
export interface GossipConfig {
  /** Protocol period: one member is probed per period. */
  probeIntervalMs: number;
  /** How long a direct ping waits for its ack before indirect probes go out. */
  probeTimeoutMs: number;
  /** Members asked to ping-req a silent target (SWIM's k). */
  indirectChecks: number;
  /** Suspicion timeout = suspicionMult * max(1, log10(n)) * probeInterval (the minimum). */
  suspicionMult: number;
  /** The timeout starts at this multiple of the minimum and falls with confirmations (1 = fixed, plain SWIM). */
  suspicionMaxTimeoutMult: number;
  /**
   * A suspicion started by a link that closed without a goodbye or a refused gossip port (a
   * crashed process: the kernel closed its sockets) ends after this long once k peers confirm it; alone,
   * it waits the ordinary minimum suspicion timeout. Stretched by local health.
   */
  linkSuspicionMs: number;
  /**
   * Suspects whose gossip port is asked at once on a connected UDP socket (a host whose
   * process died answers ICMP port unreachable, counted as a lost link); 0 = off.
   */
  maxPortChecks: number;
  /**
   * Liveness links each member dials: to the members that follow it on a ring of the names'
   * hashes. A link closed without a goodbye counts as a lost link (linkSuspicionMs); 0 = off
   * (inbound links are still accepted).
   */
  watchLinks: number;
  /** A ping goes both ways on each liveness link this often; a link silent for 3 of them is closed, which is no evidence. */
  watchHeartbeatMs: number;
  /** Inbound liveness links held, all addresses together; more are refused as busy. */
  maxWatchLinksIn: number;
  /** Inbound liveness links held from one IP address; more are refused as busy. */
  maxWatchLinksInPerAddress: number;
  /** Local health can stretch our probe period up to this factor (1 = extension off). */
  awarenessMaxMultiplier: number;
  /** Ask ping-req relays to answer "no ack" (nack), the evidence local health is based on. */
  nacks: boolean;
  /** Dissemination rounds outside probes. */
  gossipIntervalMs: number;
  /** Members each dissemination round sends to. */
  gossipNodes: number;
  /** Keep gossiping to a member this long after it was declared dead, so a live one can refute. */
  gossipToTheDeadMs: number;
  /** A broadcast is sent retransmitMult * ceil(log10(n + 1)) times. */
  retransmitMult: number;
  /** Full-state exchange with one random member over a stream (0 = off). Scaled up past 32 nodes. */
  pushPullIntervalMs: number;
  /** Push-pull with one random dead (not left) member, so the two sides of a healed partition find each other again (0 = off). */
  reconnectIntervalMs: number;
  /** A dead member's record is kept this long, so a stale `alive` cannot resurrect it. */
  deadMemberTtlMs: number;
  /** A left member's record is kept this long, for the same reason. */
  leftMemberTtlMs: number;
  /** A stream exchange (connect, request, reply) must finish within this time. */
  streamTimeoutMs: number;
  /** An inbound stream must authenticate its head (a few hundred bytes) within this time of being accepted. */
  streamHeadTimeoutMs: number;
  /** Inbound streams not yet authenticated, all addresses together; a new one closes the oldest. */
  maxPendingStreams: number;
  /** Inbound streams not yet authenticated from one IP address; more are refused at once. */
  maxPendingStreamsPerAddress: number;
  /** Frame bytes announced by all authenticated inbound streams still arriving; a stream past it is refused as busy. */
  maxStreamBufferBytes: number;
  /** Largest datagram sent, encryption overhead included. 1400 fits a 1500-byte Ethernet MTU with IP/UDP headers and room for tunnels. */
  maxPacketBytes: number;
  /** Largest stream frame accepted; checked before buffering. */
  maxStreamBytes: number;
  /** Members (tombstones included) one node tracks; beyond it the oldest tombstone is evicted or the newcomer dropped. */
  maxMembers: number;
  /** Bytes of node metadata carried in `alive`. */
  maxMetaBytes: number;
  /** Application broadcasts waiting to be piggybacked; beyond it the most-sent one is dropped. */
  maxUserQueueDepth: number;
  /** Ping-req relays in flight for others; further requests are dropped. */
  maxPendingRelays: number;
}

export const DEFAULT_LAN_CONFIG: Readonly<GossipConfig> = Object.freeze({
  /** 1 s: one probe a second per node is ~100 bytes/s of failure detection, whatever the cluster size. */
  probeIntervalMs: 1000,
  /** 500 ms: generous for a LAN round trip, and leaves half the period for the indirect probes. */
  probeTimeoutMs: 500,
  /** 3: with 3 relays a single lossy path rarely produces a suspicion. */
  indirectChecks: 3,
  /** 4: 4 s at 10 nodes, 8 s at 100, 12 s at 1,000 before any confirmation shortens it. */
  suspicionMult: 4,
  /** 6: an unconfirmed suspicion waits up to 6x the minimum, confirmed ones converge to the minimum. */
  suspicionMaxTimeoutMult: 6,
  /** 1 s: a live suspect hears the accusation directly and answers in one round trip, so it has about a thousand LAN round trips to refute. */
  linkSuspicionMs: 1000,
  /** 16: one short-lived socket per suspect for one probe timeout; a crash makes one suspect, a partition many, and the rest wait for SWIM. */
  maxPortChecks: 16,
  /** 4: each member is watched by the 4 before it on the ring, so a crash has 4 accusers, 2 more than the confirmations (suspicionMult - 2) a link suspicion needs, for 4 idle sockets per member at any cluster size. */
  watchLinks: 4,
  /** 5 s: a 64-byte ping per link each way; a half-open link is closed after 15 s, as the mesh closes a silent link. */
  watchHeartbeatMs: 5000,
  /** 64: a member holds about watchLinks inbound links; 64 leaves room for views that disagree while membership changes. */
  maxWatchLinksIn: 64,
  /** 16: several members per host (workers, one machine's test cluster) each link to us; one address cannot take every slot. */
  maxWatchLinksInPerAddress: 16,
  /** 8: a badly degraded node probes at most every 8 s instead of flooding suspicions. */
  awarenessMaxMultiplier: 8,
  nacks: true,
  /** 200 ms: news reaches 1,000 nodes in about 2 s with fan-out 3. */
  gossipIntervalMs: 200,
  /** 3: fan-out; more costs bandwidth for little speed. */
  gossipNodes: 3,
  /** 30 s: long enough for a falsely declared member to hear it and refute. */
  gossipToTheDeadMs: 30_000,
  /** 4: 4 sends per log10 step of cluster size; measured to converge well in the simulator. */
  retransmitMult: 4,
  /** 30 s: anti-entropy is a safety net behind gossip, not its main path. */
  pushPullIntervalMs: 30_000,
  /** 30 s: a healed partition re-forms within about this long (Serf's reconnect interval). */
  reconnectIntervalMs: 30_000,
  /** 1 h: keeps resurrection impossible for any realistic gossip delay; bounded by maxMembers. */
  deadMemberTtlMs: 3_600_000,
  /** 1 h: same as dead members. */
  leftMemberTtlMs: 3_600_000,
  /** 10 s: a full state of thousands of members crosses a LAN in far less. */
  streamTimeoutMs: 10_000,
  /** 2 s: a genuine peer sends its head with its first segment; a LAN round trip is well under a millisecond. */
  streamHeadTimeoutMs: 2_000,
  /** 64: joins and anti-entropy open a few streams a second; 64 heads are 19 KiB at most. */
  maxPendingStreams: 64,
  /** 8: one host opens one push-pull at a time; 8 leaves room for NAT and several nodes per host, and one address cannot take every slot. */
  maxPendingStreamsPerAddress: 8,
  /** 64 MiB: four full 16 MiB states at once, whatever the number of streams. */
  maxStreamBufferBytes: 64 * 1024 * 1024,
  maxPacketBytes: 1400,
  /** 16 MiB: ~100,000 members with metadata; a hostile peer cannot make us buffer more. */
  maxStreamBytes: 16 * 1024 * 1024,
  /** 65,536 members: ~10 MB of state at most. */
  maxMembers: 65_536,
  /** 512 bytes, as memberlist's MetaMaxSize: room for addresses and tags, small enough to piggyback. */
  maxMetaBytes: 512,
  /** 4,096 application broadcasts: a burst of presence changes, bounded. */
  maxUserQueueDepth: 4096,
  /** 1,024 relays: far above k * (probes per period) in any healthy cluster. */
  maxPendingRelays: 1024,
});

/**
 * Timings about ten times faster than the LAN defaults, for tests on loopback and for
 * local development (memberlist's DefaultLocalConfig plays the same role).
 */
export const FAST_LOCAL_CONFIG: Readonly<Partial<GossipConfig>> = Object.freeze({
  probeIntervalMs: 150,
  probeTimeoutMs: 60,
  linkSuspicionMs: 150,
  gossipIntervalMs: 30,
  gossipToTheDeadMs: 3_000,
  pushPullIntervalMs: 1_500,
  reconnectIntervalMs: 1_000,
  deadMemberTtlMs: 60_000,
  leftMemberTtlMs: 60_000,
  streamTimeoutMs: 2_000,
  streamHeadTimeoutMs: 1_000,
});

/**
 * The private cluster of one machine's workers (`murmur serve --workers N`): loopback round
 * trips, so short timeouts, but no test-speed gossip. A worker that dies is seen at once by its
 * supervisor and by the links its peers had to it (link suspicion), so probing every second is
 * enough; gossiping every 30 ms (FAST_LOCAL_CONFIG) made 14 idle workers burn a quarter of a
 * core in timers and datagrams with no connection at all.
 */
export const WORKERS_CONFIG: Readonly<Partial<GossipConfig>> = Object.freeze({
  probeIntervalMs: 1000,
  probeTimeoutMs: 100,
  linkSuspicionMs: 250,
  gossipIntervalMs: 100,
  gossipToTheDeadMs: 5_000,
  pushPullIntervalMs: 10_000,
  reconnectIntervalMs: 2_000,
  deadMemberTtlMs: 60_000,
  leftMemberTtlMs: 60_000,
  streamTimeoutMs: 2_000,
  streamHeadTimeoutMs: 1_000,
});

/** Error thrown by `resolveConfig` for an inconsistent configuration. */
export class GossipConfigError extends Error {
  readonly code = 'GOSSIP_ERR_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'GossipConfigError';
  }
}

/**
 * Defaults merged with `overrides`, checked for consistency.
 * @throws GossipConfigError when a value is out of range (e.g. probe timeout >= interval).
 */
export function resolveConfig(overrides: Partial<GossipConfig> = {}): GossipConfig {
  const c: GossipConfig = { ...DEFAULT_LAN_CONFIG, ...overrides };
  const positive: (keyof GossipConfig)[] = ['probeIntervalMs', 'probeTimeoutMs', 'gossipIntervalMs', 'suspicionMult', 'suspicionMaxTimeoutMult', 'linkSuspicionMs', 'awarenessMaxMultiplier', 'retransmitMult', 'streamTimeoutMs', 'maxStreamBytes', 'maxMembers', 'streamHeadTimeoutMs', 'maxPendingStreams', 'maxPendingStreamsPerAddress', 'maxStreamBufferBytes', 'watchHeartbeatMs', 'maxWatchLinksIn', 'maxWatchLinksInPerAddress'];
  for (const key of positive) {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new GossipConfigError(`${key} must be a positive number, got ${String(v)}`);
  }
  if (c.probeTimeoutMs >= c.probeIntervalMs) throw new GossipConfigError('probeTimeoutMs must be below probeIntervalMs');
  if (c.maxPacketBytes < 512 || c.maxPacketBytes > 65_000) throw new GossipConfigError('maxPacketBytes must be within 512..65000');
  if (c.maxMetaBytes < 0 || c.maxMetaBytes > 65_535) throw new GossipConfigError('maxMetaBytes must be within 0..65535');
  if (c.indirectChecks < 0 || c.gossipNodes < 0 || c.maxPortChecks < 0) throw new GossipConfigError('indirectChecks, gossipNodes and maxPortChecks must not be negative');
  if (!Number.isInteger(c.watchLinks) || c.watchLinks < 0) throw new GossipConfigError(`watchLinks must be a whole number >= 0, got ${String(c.watchLinks)}`);
  return c;
}
