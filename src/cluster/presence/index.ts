// The cluster presence layer's public surface. Only re-exports live here.
export { ClusterPresence, DEFAULT_CLUSTER_PRESENCE_LIMITS, replicationTiming } from './store.js';
export type { ClusterPresenceLimits, ClusterPresenceOptions, PresenceCounters, PresenceHost, ReplicationTiming } from './store.js';
export { PresenceReplicator } from './runtime.js';
export { PayloadKind, OpKind, decodeBroadcast, decodeState } from './presence-wire.js';
export type { Delta, VersionNotice, State, Digest, Op, WireLimits } from './presence-wire.js';
export type { JoinResult, OnlineResult, PresenceChange, PresenceEntry, PresenceLimits, PresenceMeta, PresenceStore } from './types.js';
