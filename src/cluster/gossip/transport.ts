/**
 * The seams of the gossip state machine: what it sends through, what it tells the
 * application, and what the application (the presence layer) plugs into it.
 */

/**
 * Where the state machine's bytes go. Addresses are opaque strings ("host:port" over UDP,
 * a node name in the simulator). Both calls are fire-and-forget and must not throw.
 */
export interface GossipTransport {
  /** Send one datagram, best effort (it may be lost, duplicated or reordered). */
  sendPacket(to: string, packet: Uint8Array): void;
  /**
   * Reliable request/response exchange (TCP over UDP deployments): deliver `frame` to the
   * peer's `receiveStream`, and hand the reply it returns, if any, to our own
   * `receiveStream`. A failed exchange is simply dropped.
   */
  sendStream(to: string, frame: Uint8Array): void;
}

/**
 * Hooks for a layer that replicates its own state over the membership gossip (presence).
 * Every callback is synchronous and must not throw; buffers passed in are copies the
 * delegate may keep.
 */
export interface GossipDelegate {
  /** A piggybacked application broadcast (queued with `broadcast()` on another node) arrived. */
  notifyMessage?(payload: Uint8Array): void;
  /** Full local state for a push-pull exchange (anti-entropy, join). Bounded by maxStreamBytes. */
  localState?(join: boolean): Uint8Array;
  /** Merge a peer's full state received in push-pull. */
  mergeRemoteState?(state: Uint8Array, join: boolean): void;
  /** A peer's query (its `query()`): the answer to send back, or null for none. Bounded by maxStreamBytes. */
  answerQuery?(payload: Uint8Array): Uint8Array | null;
  /** The answer to one of our queries arrived. */
  queryAnswered?(payload: Uint8Array): void;
}

/** Member states as the application sees them. */
export const MemberState = { Alive: 'alive', Suspect: 'suspect', Dead: 'dead', Left: 'left' } as const;
export type MemberState = (typeof MemberState)[keyof typeof MemberState];

/** A snapshot of one member. */
export interface MemberInfo {
  readonly name: string;
  readonly addr: string;
  readonly meta: Uint8Array;
  readonly incarnation: number;
  readonly state: MemberState;
}

/**
 * Membership events. `join`: a member appeared (or came back after dead/left with a new
 * incarnation); `suspect`: it stopped answering and may be dead; `alive`: a suspected member
 * refuted; `dead`: it was declared failed; `leave`: it left gracefully; `update`: its
 * address or metadata changed.
 */
export const MembershipEventType = { Join: 'join', Suspect: 'suspect', Alive: 'alive', Dead: 'dead', Leave: 'leave', Update: 'update' } as const;
export type MembershipEventType = (typeof MembershipEventType)[keyof typeof MembershipEventType];

export interface MembershipEvent {
  readonly type: MembershipEventType;
  readonly member: MemberInfo;
  /** Clock of the state machine when it happened (ms). */
  readonly at: number;
}

/** Counters for metrics. Monotonic, except `awareness` (the current local-health score). */
export interface GossipCounters {
  packetsSent: number;
  packetsReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** Failed authentication (another key, tampering). */
  rejectedAuth: number;
  /** Another cluster label. */
  rejectedLabel: number;
  /** Another wire version (a node of an incompatible release). */
  rejectedVersion: number;
  /** Truncated, or a record that does not decode. */
  rejectedMalformed: number;
  streamsSent: number;
  streamsReceived: number;
  probes: number;
  indirectProbes: number;
  probeFailures: number;
  nacksSent: number;
  suspicions: number;
  /** Suspicions started or shortened because a link to the member closed without a goodbye or its gossip port was refused. */
  linkSuspicions: number;
  refutations: number;
  deaths: number;
  /** Members not admitted because maxMembers was reached. */
  membersRejected: number;
  /** Ping-req relays refused because maxPendingRelays was reached. */
  relaysRejected: number;
  /** Application broadcasts dropped from a full queue. */
  broadcastsDropped: number;
  awareness: number;
}
