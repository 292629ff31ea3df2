import { test } from 'uvu';
import * as assert from 'uvu/assert';

// The package's public surface, listed: what each entry point of package.json exports, and
// what a Server and a Connection offer. Adding or removing a name fails here until the list
// (and the docs) say so. A Server is a façade; what its connections need lives in its core.

const ENTRY_POINTS: Record<string, string[]> = {
  'murmur-ws': [
    'ClientError', 'ClientErrorCode', 'CloseCode', 'CloseEvent', 'ConnState', 'Connection', 'DEFAULT_LIMITS', 'ErrorEvent', 'HttpReject', 'MessageEvent',
    'Opcode', 'ProtocolError', 'ProtocolErrorCode', 'REJECT_STATUS', 'SendResult', 'Server', 'Topic', 'TopicHistory', 'Topics', 'WebSocket', 'reject',
  ],
  'murmur-ws/app': ['App', 'CLIENT_PATH', 'WS_PATH', 'startApp'],
  'murmur-ws/workers': ['AppWorkers', 'MAX_WORKERS', 'PEER_HEADERS_TIMEOUT_MS', 'PEER_MAX_CONNECTIONS', 'WorkerStartError', 'startAppWorkers'],
  'murmur-ws/cluster': [
    'AUTH_STATUS', 'AesGcmSealer', 'AuthFailure', 'Channel', 'ClusterPresence', 'DEFAULT_CLUSTER_PRESENCE_LIMITS', 'DEFAULT_LAN_CONFIG', 'FAST_LOCAL_CONFIG',
    'GossipConfigError', 'GossipJoinError', 'GossipNode', 'Keyring', 'KeyringError', 'LinkAuth', 'MESH_AUTH_HEADER', 'MESH_DEFAULTS', 'MESH_PATH',
    'MESH_SUBPROTOCOL', 'META_HTTP_KEY', 'MemberState', 'MembershipEventType', 'MeshBus', 'MessageType', 'OpKind', 'OpenFailure', 'PartitionFaults',
    'PayloadKind', 'PresenceReplicator', 'REDIS_DEFAULTS', 'RedisBus', 'RedisBusError', 'SimHost', 'SimNetwork', 'SimulatedSealer', 'StaticMembership',
    'SwimNode', 'WIRE_VERSION', 'WireError', 'WireState', 'decodeBroadcast', 'decodeState', 'generateKey', 'gossipMembership', 'httpAddressFromMeta',
    'linkUrl', 'parseAddr', 'randomLoss', 'replicationTiming', 'resolveConfig',
  ],
  'murmur-ws/client': ['MurmurClient'],
  'murmur-ws/ws': ['WebSocket', 'WebSocketServer', 'createWebSocketStream', 'default'],
};

/** What an application may call on a Server: nothing a connection needs from it. */
const SERVER_MEMBERS = [
  'address', 'bus', 'close', 'forEachConnection', 'handleUpgrade', 'handoff', 'handshakeCount', 'limits', 'listen', 'listeningHandle', 'openCount',
  'publish', 'pubsub', 'socketCount', 'stats', 'subscriberCount', 'transportKind', 'useBus', 'whenIdle',
];

/** What an application may call on a Connection. */
const CONNECTION_PUBLIC = [
  'bufferedAmount', 'close', 'closeCode', 'closeReason', 'isOpen', 'isSubscribed', 'ping', 'protocol', 'publish', 'remoteAddress', 'send', 'sendEncoded',
  'server', 'state', 'subscribe', 'subscribeFrom', 'terminate', 'transport', 'unsubscribe',
];

/**
 * On the prototype for the hot path (one hidden class, no call through another object), typed
 * private or called only by the server's core, its transport, parser, sweeper and topics.
 */
const CONNECTION_INTERNAL = [
  'accept', 'activity', 'admit', 'admitted', 'beginClosing', 'cachedPeer', 'complete', 'compression', 'cork', 'dropOwedPong', 'ext', 'failMessage', 'flush', 'forgetPeer', 'handOff',
  'handshakeOver', 'onClose', 'onHead', 'onMessage', 'onPing', 'onPong', 'onProtocolError', 'onSweep', 'onTransportClose', 'onTransportData',
  'onTransportDrain', 'onTransportEnd', 'overBudget', 'owePong', 'payPong', 'readOwn', 'reader', 'reject', 'sendClose', 'setState', 'startFromUpgrade',
  'startHandshake', 'topics', 'writeControl', 'written',
  // a large compressed message inflated in slices (bounded-inflate.ts)
  'chunkArrived', 'deliver', 'deliverInflated', 'giveBack', 'holdRead', 'inflated', 'mayRead', 'stopInflating', 'suspendFor',
];

/** Own enumerable string keys and prototype names, without the constructor: what a user can reach (#private and symbol keys are not). */
function membersOf(cls: { prototype: object }, instance?: object): string[] {
  const names = new Set<string>(instance === undefined ? [] : Object.keys(instance));
  for (const k of Object.getOwnPropertyNames(cls.prototype)) if (k !== 'constructor') names.add(k);
  return [...names].sort();
}

for (const [name, expected] of Object.entries(ENTRY_POINTS)) {
  test(`${name} exports exactly its listed names`, async () => {
    const mod = (await import(name)) as Record<string, unknown>;
    assert.equal(Object.keys(mod).sort(), [...expected].sort());
  });
}

test('Server offers exactly its listed members, none of its connections\' internals', async () => {
  const { Server } = await import('murmur-ws');
  const server = new Server({ handlers: {} });
  assert.equal(membersOf(Server, server), [...SERVER_MEMBERS].sort());
  for (const internal of ['adopt', 'adoptHandle', 'scheduleFlush', 'flushAll', 'connectionOpened', 'connectionClosed', 'rejected', 'reportError', 'spareParser', 'sweeper', 'admission', 'owedPongs']) {
    assert.not.ok(internal in server, `${internal} is not on the façade`);
  }
});

test('Connection offers exactly its listed members', async () => {
  const { Connection } = await import('murmur-ws');
  assert.equal(membersOf(Connection), [...CONNECTION_PUBLIC, ...CONNECTION_INTERNAL].sort());
});

test.run();
