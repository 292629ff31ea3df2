// The public surface of murmur. Only re-exports live here.
export { Server } from './server/server.js';
export type { ServerStats } from './server/server.js';
export { Connection, ConnState } from './server/connection.js';
export { SendResult } from './server/options.js';
export type { Handlers, Handoff, ServerOptions, SlowConsumerPolicy } from './server/options.js';
export { DEFAULT_LIMITS } from './limits.js';
export type { Limits } from './limits.js';
export { HttpReject, reject, REJECT_STATUS } from './http/index.js';
export type { RejectReason, UpgradeRequest, RequestHead } from './http/index.js';
export { ProtocolError, ProtocolErrorCode, CloseCode, Opcode } from './protocol/index.js';
export * from './client/index.js';
export { Topics, Topic } from './pubsub/topics.js';
export type { SubscribeResult, HistoryPolicy } from './pubsub/topics.js';
export { TopicHistory } from './pubsub/history.js';
export type { HistoryOptions, StreamPosition, RecoveryInfo } from './pubsub/history.js';
export type { Bus, BusDelivery, BusInterestFeed, BusInterest } from './pubsub/bus.js';
export type { TransportKind } from './transport/transport.js';
