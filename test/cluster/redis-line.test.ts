// Positions on the Redis bus are the cluster's, wherever a client subscribes: `murmur serve`
// nodes (in one process) on one redis-server. A node that never heard a topic answers a subscribe
// with the topic's cluster-wide position, also before its first message; a recovery it cannot
// judge (Redis stalled) is answered CATCHING_UP, which the clients retry, never `epoch-changed`
// while the epoch did not change. And the catch-up under it: positions of two epochs at once.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FAST_LOCAL_CONFIG } from '../../src/cluster/gossip/gossip-config.js';
import { createClient } from 'redis';
import { RedisBus } from '../../src/cluster/bus/redis.js';
import { ORDER_SCRIPT, historyKeys } from '../../src/cluster/bus/redis-history.js';
import { encodeBusRecord } from '../../src/pubsub/bus-record.js';
import { FrameRecorder as Recorder } from '../helpers/recorder.js';
import { Server } from '../../src/server/server.js';
import { MurmurClient } from '../../src/app/public/murmur-client.js';
import type { WebSocketConstructor } from '../../src/app/public/murmur-client.js';
import { WebSocket } from '../../src/client/index.js';
import { TestClient, testApp, closeAll, type Json } from '../app/helpers.js';
import { KEY_A, waitFor } from './helpers.js';
import { until } from './bus-helpers.js';
import { Redis, freePort, redisServerBinary } from './redis-server.js';

const bin = redisServerBinary();
let redis: Redis;
let url = '';

test.before(async () => {
  redis = new Redis(bin, await freePort());
  await redis.start();
  url = `redis://127.0.0.1:${redis.port}`;
});
test.after.each(async () => {
  redis.child?.kill('SIGCONT');
  await closeAll();
});
test.after(() => redis.stop());

const open = { anonymous: { subscribe: ['*'], publish: ['*'], presence: ['*'] }, apiKey: 'k', historyTopics: ['room:*'] };

/** Two `murmur serve` apps joined by gossip, on the Redis bus. */
async function twoNodes() {
  const cluster = (id: string, seeds: string[]) => ({ nodeId: id, port: 0, seeds, keys: [KEY_A], label: 'line', gossip: FAST_LOCAL_CONFIG, bus: 'redis' as const, redisUrl: url });
  const a = await testApp({ ...open, cluster: cluster('a', []) });
  const b = await testApp({ ...open, cluster: cluster('b', [a.app.cluster!.node.address]) });
  assert.ok((await waitFor(() => [a, b].every((x) => x.app.cluster!.members().filter((m) => m.state === 'alive').length === 2), 5000)) >= 0, 'two members');
  return [a, b] as const;
}

/** Publishes `n` messages to `topic` through `c`, each acknowledged (Redis holds it); the last reply. */
async function publish(c: TestClient, topic: string, n: number): Promise<Json> {
  let last: Json = {};
  for (let i = 1; i <= n; i++) last = await c.request({ type: 'publish', topic, data: { i } });
  return last;
}

test('a publisher on a node where nobody subscribes to its room (no history of it held there) creates the room once: more publishes than maxNewTopicsPerMinute are all acknowledged', async () => {
  const [a] = await twoNodes();
  const pub = await TestClient.connect(a.ws);
  const last = await publish(pub, 'room:only-published', 80);
  assert.is(last.offset, 80, JSON.stringify(last));
  assert.is(pub.closed, null);
});

test('a subscribe on a node that never heard a quiet topic answers its cluster-wide position: a recovery from it on another node is not epoch-changed', async () => {
  const [a, b] = await twoNodes();
  const pub = await TestClient.connect(a.ws);
  const last = await publish(pub, 'room:quiet', 3);
  assert.is(last.offset, 3);
  const onB = await TestClient.connect(b.ws);
  const sub = await onB.request({ type: 'subscribe', topic: 'room:quiet' });
  assert.equal(sub.position, { epoch: last.epoch, offset: 3 }, 'the position of the cluster, not one of the node own');
  onB.ws.close();
  const onA = await TestClient.connect(a.ws);
  const again = await onA.request({ type: 'subscribe', topic: 'room:quiet', since: sub.position });
  assert.is(again.recovered, true, JSON.stringify(again));
  assert.is(again.replayed ?? 0, 0);
});

test('a subscribe before the topic\'s first message gets the cluster\'s epoch: recovering from it on another node replays what came since', async () => {
  const [a, b] = await twoNodes();
  const onB = await TestClient.connect(b.ws);
  const sub = await onB.request({ type: 'subscribe', topic: 'room:fresh' });
  const position = sub.position as { epoch: string; offset: number };
  assert.is(position.offset, 0);
  assert.ok(position.epoch.length > 0);
  onB.ws.close();
  const pub = await TestClient.connect(a.ws);
  const last = await publish(pub, 'room:fresh', 2);
  assert.is(last.epoch, position.epoch, 'the first publish continues the line the subscriber was given');
  const onA = await TestClient.connect(a.ws);
  const again = await onA.request({ type: 'subscribe', topic: 'room:fresh', since: position });
  assert.is(again.recovered, true, JSON.stringify(again));
  assert.is(again.replayed, 2);
});

test('Redis stalls while a node that never heard the topic gets a recovery: CATCHING_UP (not epoch-changed), and the murmur client retries until it recovers', async () => {
  const [a, b] = await twoNodes();
  const pub = await TestClient.connect(a.ws);
  const last = await publish(pub, 'room:stall', 5);
  const since = { epoch: last.epoch as string, offset: 2 };
  redis.child!.kill('SIGSTOP');
  const onB = await TestClient.connect(b.ws);
  // Redis does not answer within the bus's fillTimeoutMs (3 s): the node cannot tell where the topic stands.
  const refused = await onB.request({ type: 'subscribe', topic: 'room:stall', since }, 10_000);
  assert.is(refused.type, 'error', JSON.stringify(refused));
  assert.is(refused.code, 'CATCHING_UP');
  // The browser client, with the same position stored: it asks again with backoff, and recovers once Redis answers.
  const stored = new Map<string, string>([['murmur:pos:room:stall', JSON.stringify(since)]]);
  const storage = { getItem: (k: string) => stored.get(k) ?? null, setItem: (k: string, v: string) => void stored.set(k, v), removeItem: (k: string) => void stored.delete(k) };
  const client = new MurmurClient({ url: b.ws, WebSocket: WebSocket as unknown as WebSocketConstructor, storage, backoffBaseMs: 100, backoffMaxMs: 400, requestTimeoutMs: 10_000 });
  const resyncs: string[] = [];
  const got: number[] = [];
  client.on('resync', (r) => resyncs.push(r.reason));
  client.on('message', (m) => got.push((m.data as { i: number }).i));
  try {
    const subscribed = client.subscribe('room:stall');
    setTimeout(() => redis.child?.kill('SIGCONT'), 4_000).unref();
    const reply = await subscribed;
    assert.is(reply.recovered, true, JSON.stringify(reply));
    await until(() => got.length === 3, 5000, 'the three missed messages');
    assert.equal(got, [3, 4, 5]);
    assert.equal(resyncs, []);
  } finally {
    client.close();
  }
});

/** A plain Redis client, to act on Redis behind the nodes' backs. */
async function adminClient() {
  const admin = createClient({ url });
  admin.on('error', () => {});
  await admin.connect();
  return admin;
}

/** Two RedisBus nodes (library Servers) with a channel prefix of their own, history on every topic. */
async function busPair(prefix: string) {
  const history = { maxMessages: 100, maxBytes: 1 << 20, maxAgeMs: 0 };
  const buses = [await RedisBus.connect({ url, log: () => {}, channelPrefix: prefix }), await RedisBus.connect({ url, log: () => {}, channelPrefix: prefix })];
  const servers = buses.map((bus) => new Server({ bus, history: () => history, handlers: {} }));
  const stop = async () => {
    for (const s of servers) await s.close(100);
    for (const b of buses) await b.close();
  };
  return { servers: servers as [Server, Server], buses, stop };
}

test('a node holding a topic\'s line before its first message, with subscribers, gets a recovery from further on: its subscribers get what they missed, in order', async () => {
  const { servers: [, s2], buses, stop } = await busPair('line-zero:');
  const admin = await adminClient();
  try {
    assert.is(await s2.pubsub.catchUp('room:zero', null), true);
    const epoch = s2.pubsub.position('room:zero')!.epoch;
    assert.equal(s2.pubsub.position('room:zero'), { epoch, offset: 0 }, 'the line, before its first message');
    const sub = new Recorder();
    s2.pubsub.subscribe(sub, 'room:zero');
    await until(() => buses[1]!.subscribedTopics().includes('room:zero'), 5000, 'the channel heard');
    // Ordered in Redis but published where nobody listens: s2 misses them live.
    const [meta, list] = historyKeys('line-zero:', 'room:zero');
    await admin.sendCommand(['EVAL', ORDER_SCRIPT, '2', meta, list, 'line-zero:$nowhere', 'f'.repeat(16), Buffer.alloc(12), '100', String(1 << 20), '86400000', String(Date.now()), '0', '1', ...['m1', 'm2', 'm3'].map((t) => encodeBusRecord(null, t, false))]);
    // A client that got m1, m2 elsewhere recovers here.
    assert.is(await s2.pubsub.catchUp('room:zero', { epoch, offset: 2 }), true);
    await until(() => sub.payloads.length >= 3, 5000, 'm1..m3 to the subscriber here');
    assert.equal(sub.payloads, ['m1', 'm2', 'm3']);
  } finally {
    await Promise.all([admin.close(), stop()]);
  }
});

test('a history of an older epoch that nothing here hears gives way to a recovery in the current one (Redis lost the topic\'s keys meanwhile): recovered, not epoch-changed', async () => {
  const { servers: [s1, s2], stop } = await busPair('stale-epoch:');
  const admin = await adminClient();
  try {
    const ordered = async (texts: string[]): Promise<string> => {
      let epoch = '';
      let told = 0;
      for (const t of texts) s1.pubsub.publish('room:stale', t, false, null, null, (p) => ((epoch = p!.epoch), told++));
      await until(() => told === texts.length, 5000, 'ordered');
      return epoch;
    };
    const old = await ordered(['o1', 'o2']);
    // A client recovered here, then went: s2 keeps the topic's history, and does not hear it.
    assert.is(await s2.pubsub.catchUp('room:stale', { epoch: old, offset: 1 }), true);
    assert.is(s2.pubsub.position('room:stale')!.epoch, old);
    await admin.sendCommand(['DEL', ...historyKeys('stale-epoch:', 'room:stale')]);
    const current = await ordered(['n1', 'n2', 'n3']);
    assert.is.not(current, old);
    assert.is(await s2.pubsub.catchUp('room:stale', { epoch: current, offset: 1 }), true);
    const r = s2.pubsub.historyOf('room:stale')!.recover({ epoch: current, offset: 1 }, Date.now());
    assert.ok(r.recovered, `recovered (${JSON.stringify(r)})`);
    assert.is(r.recovered && r.messages, 2);
  } finally {
    await Promise.all([admin.close(), stop()]);
  }
});

test('catch-ups from positions of two epochs at once on a node that never heard the topic: the one of the current epoch is read too', async () => {
  const { servers: [s1, s2], stop } = await busPair('two-epochs:');
  try {
    let epoch = '';
    let told = 0;
    for (let i = 1; i <= 4; i++) s1.pubsub.publish('room:epochs', `m${i}`, false, null, null, (p) => ((epoch = p!.epoch), told++));
    await until(() => told === 4, 5000, 'four ordered');
    // A client back from an epoch Redis no longer has (or a node's own), and one of the current epoch.
    const [old, current] = await Promise.all([s2.pubsub.catchUp('room:epochs', { epoch: 'gone-epoch', offset: 0 }), s2.pubsub.catchUp('room:epochs', { epoch, offset: 2 })]);
    const r = s2.pubsub.historyOf('room:epochs')!.recover({ epoch, offset: 2 }, Date.now());
    assert.ok(r.recovered, `recovered (${JSON.stringify(r)})`);
    assert.is(r.recovered && r.messages, 2);
    assert.equal([old, current], [true, true], 'both learned what Redis holds');
  } finally {
    await stop();
  }
});

test.run();
