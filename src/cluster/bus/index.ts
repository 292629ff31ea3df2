// The cluster bus's public surface. Only re-exports live here.
export { MeshBus } from './mesh.js';
export type { MeshBusOptions, MeshStats, MeshLimits, LinkInfo } from './mesh.js';
export { RedisBus, RedisBusError } from './redis.js';
export type { RedisBusOptions, RedisStats, RedisOrderLimits } from './redis.js';
export { StaticMembership, gossipMembership, httpAddressFromMeta, linkUrl, META_HTTP_KEY } from './membership.js';
export type { MeshMembership, MeshPeer, GossipMembershipOptions } from './membership.js';
export { LinkAuth, AuthFailure, AUTH_STATUS } from './auth.js';
export type { LinkAuthOptions, VerifyResult } from './auth.js';
export { MESH_PATH, MESH_SUBPROTOCOL, MESH_AUTH_HEADER, MESH_DEFAULTS, REDIS_DEFAULTS } from './bus-config.js';
export type { BusStats } from './stats.js';
export type { Bus, BusInterest } from '../../pubsub/bus.js';
