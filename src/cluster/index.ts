// The cluster's public surface (gossip membership, replicated presence, the cross-node bus),
// imported as `murmur-ws/cluster`. Only re-exports live here.
export * from './gossip/index.js';
export * from './presence/index.js';
export * from './bus/index.js';
