// The gossip membership layer's public surface. Only re-exports live here.
export { SwimNode } from './state.js';
export type { SwimNodeOptions, StreamResult, PreloadEntry } from './state.js';
export { GossipNode, GossipJoinError, parseAddr } from './node.js';
export type { GossipNodeOptions, RuntimeCounters } from './node.js';
export { DEFAULT_LAN_CONFIG, FAST_LOCAL_CONFIG, GossipConfigError, resolveConfig } from './gossip-config.js';
export type { GossipConfig } from './gossip-config.js';
export { Keyring, KeyringError, AesGcmSealer, generateKey, Channel, OpenFailure } from './security.js';
export type { PacketSealer, OpenResult } from './security.js';
export { MemberState, MembershipEventType } from './transport.js';
export type { GossipTransport, GossipDelegate, MemberInfo, MembershipEvent, GossipCounters } from './transport.js';
export { MessageType, WireState, WIRE_VERSION, WireError } from './gossip-wire.js';
export { randomLoss, PartitionFaults } from './faults.js';
export type { FaultInjector } from './faults.js';
export { SimNetwork, SimHost, SimulatedSealer } from './simnet.js';
export type { SimNetworkOptions, SimNodeOptions, SimStats } from './simnet.js';
