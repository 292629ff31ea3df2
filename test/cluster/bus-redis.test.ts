// The Redis bus against a real redis-server (Debian package redis-server) on a free loopback
// port: three nodes, exactly-once delivery in publisher order, a channel subscribed only
// while a node has subscribers, and a Redis restart the bus recovers from.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createClient } from 'redis';
import { RedisBus } from '../../src/cluster/bus/redis.js';
import type { Server } from '../../src/server/server.js';
import { Subscriber, busServer, sleep, until } from './bus-helpers.js';
import { Redis, freePort, redisServerBinary } from './redis-server.js';

interface RedisNode {
  id: string;
  server: Server;
  port: number;
  bus: RedisBus;
  logs: string[];
}

async function startNode(id: string, url: string, sharded: 'auto' | boolean = 'auto'): Promise<RedisNode> {
  const logs: string[] = [];
  const bus = await RedisBus.connect({ url, sharded, log: (l) => logs.push(l), reconnectMinMs: 50, reconnectMaxMs: 300 });
  const server = busServer(bus);
  const port = (await server.listen(0, '127.0.0.1')).port;
  return { id, server, port, bus, logs };
}

async function stopNodes(nodes: RedisNode[], subs: Subscriber[]): Promise<void> {
  for (const s of subs) await s.close();
  for (const n of nodes) {
    await n.server.close(1000);
    await n.bus.close();
  }
}

const bin = redisServerBinary();
let redis: Redis;
let url = '';

test.before(async () => {
  redis = new Redis(bin, await freePort());
  await redis.start();
  url = `redis://127.0.0.1:${redis.port}`;
});

test.after(async () => {
  await redis.stop();
});

test('3 nodes over Redis: every publish reaches the subscribers of every node exactly once, in publisher order', async () => {
  const nodes = [await startNode('a', url), await startNode('b', url), await startNode('c', url)];
  const subs: Subscriber[] = [];
  try {
    for (const n of nodes) assert.ok(n.bus.sharded, 'redis 7 has sharded pub/sub');
    for (const n of nodes) {
      const s = await Subscriber.connect(n.port);
      await s.command('sub:room');
      subs.push(s);
    }
    await until(() => nodes.every((n) => n.bus.subscribedTopics().includes('room')), 5000, 'every node subscribed to the channel');
    const N = 200;
    for (let i = 0; i < N; i++) {
      for (const n of nodes) n.server.publish('room', `${n.id}:${i}`);
      if (i % 50 === 49) await sleep(1);
    }
    await until(() => subs.every((s) => s.received.length >= 3 * N), 10_000, `${3 * N} messages at every subscriber`);
    await sleep(150);
    for (const [k, s] of subs.entries()) {
      assert.is(s.received.length, 3 * N, `subscriber on ${nodes[k]!.id}: exactly ${3 * N}`);
      const next = new Map<string, number>();
      for (const m of s.received) {
        const [from, seq] = m.split(':');
        assert.is(Number(seq), next.get(from!) ?? 0, `${from}'s messages in order, once`);
        next.set(from!, Number(seq) + 1);
      }
    }
    for (const n of nodes) {
      assert.is(n.bus.stats.messagesSent, N);
      assert.is(n.bus.stats.messagesReceived, 2 * N, `${n.id} received the others' publishes`);
      assert.is(n.bus.stats.echoes, N, `${n.id} ignored its own publishes coming back`);
      assert.is(n.bus.stats.dropped, 0);
      assert.is(n.server.pubsub.published, 3 * N, 'received messages are fanned out locally, never republished');
    }
  } finally {
    await stopNodes(nodes, subs);
  }
});

test('a node subscribes to the channel of a topic only while it has subscribers to it', async () => {
  const nodes = [await startNode('a', url), await startNode('b', url), await startNode('c', url)];
  const [a, b, c] = nodes as [RedisNode, RedisNode, RedisNode];
  const subs: Subscriber[] = [];
  const admin = createClient({ url });
  admin.on('error', () => {});
  await admin.connect();
  const numsub = async (topic: string): Promise<number> => {
    const r = (await admin.sendCommand(['PUBSUB', 'SHARDNUMSUB', `murmur:bus:${topic}`])) as unknown[];
    return Number(r[1]);
  };
  try {
    const sb = await Subscriber.connect(b.port);
    await sb.command('sub:t');
    const sc = await Subscriber.connect(c.port);
    subs.push(sb, sc);
    await until(() => b.bus.subscribedTopics().includes('t'), 5000, 'b subscribed');
    assert.is(await numsub('t'), 1, 'only b listens on the channel');
    assert.equal(c.bus.subscribedTopics(), []);
    for (let i = 0; i < 20; i++) a.server.publish('t', `m${i}`);
    await until(() => sb.received.length === 20, 5000, 'b gets 20');
    await sleep(100);
    assert.is(c.bus.stats.messagesReceived, 0, 'c got nothing from Redis');
    assert.is(a.bus.stats.messagesReceived, 0);

    await sc.command('sub:t');
    await until(() => c.bus.subscribedTopics().includes('t'), 5000, 'c subscribed');
    assert.is(await numsub('t'), 2);
    a.server.publish('t', 'now-c-too');
    await until(() => sc.received.length === 1, 5000, 'c gets it');
    await sc.command('unsub:t');
    await until(() => !c.bus.subscribedTopics().includes('t'), 5000, 'c unsubscribed');
    assert.is(await numsub('t'), 1);
    assert.is(c.bus.stats.subscribes, 1);
    assert.is(c.bus.stats.unsubscribes, 1);
    assert.is(c.bus.stats.channels, 0);
    // A subscriber that comes and goes within one tick costs no command at all.
    const before = c.bus.stats.subscribes;
    const sub = { topics: null, sendEncoded: () => {} };
    c.server.pubsub.subscribe(sub, 'flicker2');
    c.server.pubsub.unsubscribe(sub, 'flicker2');
    await sleep(100);
    assert.is(c.bus.stats.subscribes, before);
    // Whatever else reaches the channel (another program, a hostile client) is ignored whole and counted.
    const garbage = [Buffer.alloc(0), Buffer.from([1]), Buffer.from([9, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 1, 0x61]), Buffer.concat([Buffer.from([1, 8]), Buffer.alloc(8), Buffer.from([0, 0, 0, 0, 9, 0x61])]), Buffer.concat([Buffer.from([1, 8]), Buffer.alloc(8), Buffer.from([4, 0, 0, 0, 1, 0x61])])];
    const delivered = sb.received.length;
    for (const g of garbage) await admin.sendCommand(['SPUBLISH', 'murmur:bus:t', g]);
    await until(() => b.bus.stats.protocolErrors === garbage.length, 5000, 'every malformed message counted');
    a.server.publish('t', 'still-fine');
    await until(() => sb.received.length === delivered + 1, 5000, 'b still delivers');
    assert.is(sb.received.at(-1), 'still-fine');
  } finally {
    await admin.close();
    await stopNodes(nodes, subs);
  }
});

test('classic PUBLISH/SUBSCRIBE when sharded pub/sub is off', async () => {
  const nodes = [await startNode('a', url, false), await startNode('b', url, false)];
  const subs: Subscriber[] = [];
  try {
    assert.not.ok(nodes[0]!.bus.sharded);
    const s = await Subscriber.connect(nodes[1]!.port);
    await s.command('sub:c');
    subs.push(s);
    await until(() => nodes[1]!.bus.subscribedTopics().includes('c'), 5000, 'subscribed');
    nodes[0]!.server.publish('c', 'classic');
    await until(() => s.received.length === 1, 5000, 'delivered');
  } finally {
    await stopNodes(nodes, subs);
  }
});

test('Redis restarts: the bus says so, reconnects, subscribes again and delivers again', async () => {
  const nodes = [await startNode('a', url), await startNode('b', url)];
  const [a, b] = nodes as [RedisNode, RedisNode];
  const subs: Subscriber[] = [];
  try {
    const sb = await Subscriber.connect(b.port);
    await sb.command('sub:r');
    subs.push(sb);
    await until(() => b.bus.subscribedTopics().includes('r'), 5000, 'b subscribed');
    a.server.publish('r', 'before');
    await until(() => sb.received.length === 1, 5000, 'first delivery');

    await redis.kill();
    await until(() => a.bus.stats.linksUp === 0 && b.bus.stats.linksUp === 0, 5000, 'both buses see Redis gone');
    assert.ok(b.logs.some((l) => l.includes('connection lost; reconnecting')), b.logs.join('\n'));
    a.server.publish('r', 'during'); // nowhere to go: dropped and counted, not queued
    assert.ok(a.bus.stats.dropped >= 1);
    await sleep(300);

    await redis.start();
    await until(() => a.bus.stats.linksUp === 2 && b.bus.stats.linksUp === 2, 10_000, 'both buses reconnected');
    assert.ok(a.bus.stats.reconnects >= 2 && b.bus.stats.reconnects >= 2, 'publisher and subscriber connections reconnected');
    assert.ok(b.logs.some((l) => l.includes('reconnected')));
    // The channel is subscribed again on the new server; publish until one arrives (the
    // resubscription races the first publishes), then check nothing was duplicated.
    let i = 0;
    await until(
      () => {
        if (sb.received.some((m) => m.startsWith('after'))) return true;
        a.server.publish('r', `after${i++}`);
        return false;
      },
      10_000,
      'delivery after the restart',
    );
    await sleep(100);
    const after = sb.received.filter((m) => m.startsWith('after'));
    assert.equal(after, [...new Set(after)], 'no duplicates');
    assert.not.ok(sb.received.includes('during'));
    assert.ok(b.bus.subscribedTopics().includes('r'));
  } finally {
    await stopNodes(nodes, subs);
  }
});

test('connect gives up with a clear error when Redis does not answer', async () => {
  const port = await freePort();
  const t0 = Date.now();
  try {
    await RedisBus.connect({ url: `redis://127.0.0.1:${port}`, startTimeoutMs: 500, log: () => {} });
    assert.unreachable('connected to nothing');
  } catch (err) {
    assert.is((err as { code?: string }).code, 'BUS_ERR_REDIS');
    assert.match((err as Error).message, /did not answer within 500 ms/);
  }
  assert.ok(Date.now() - t0 < 3000);
});

test.run();
