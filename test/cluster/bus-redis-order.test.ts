// History topics ordered by Redis (docs/cluster.md, "With the Redis bus"), against a real
// redis-server: one position for a message on every node, a gap filled from Redis, a gap
// Redis no longer holds told as a resync, a recovery on a node that never heard the topic,
// a broken Redis reply, and Redis losing its data (another epoch, told).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createClient } from 'redis';
import { connect, createServer as createNetServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { RedisBus } from '../../src/cluster/bus/redis.js';
import { ORDER_SCRIPT, historyKeys } from '../../src/cluster/bus/redis-history.js';
import { Server } from '../../src/server/server.js';
import { encodeBusRecord } from '../../src/pubsub/bus-record.js';
import type { HistoryOptions } from '../../src/pubsub/history.js';
import { FrameRecorder as Recorder } from '../helpers/recorder.js';
import { sleep, until } from './bus-helpers.js';
import { Redis, freePort, redisServerBinary } from './redis-server.js';

const PREFIX = 'murmur:bus:';
const HISTORY: HistoryOptions = { maxMessages: 1000, maxBytes: 1024 * 1024, maxAgeMs: 0 };

interface Node {
  server: Server;
  bus: RedisBus;
}

async function node(history: HistoryOptions = HISTORY, limits: { orderTimeoutMs?: number } = {}): Promise<Node> {
  const bus = await RedisBus.connect({ url, log: () => {}, reconnectMinMs: 50, reconnectMaxMs: 300, limits: { fillTimeoutMs: 1_000, ...limits } });
  const server = new Server({ bus, history: (t) => (t.startsWith('room:') ? history : undefined), handlers: {} });
  server.pubsub.onRestart = (_t, position, reason) => `resync ${reason} ${position.offset}`;
  return { server, bus };
}

async function stop(...nodes: Node[]): Promise<void> {
  for (const n of nodes) {
    await n.server.close(100);
    await n.bus.close();
  }
}

/** Subscribes a recorder to `topic` on `n` and waits until the node hears the topic's channel. */
async function listen(n: Node, topic: string): Promise<Recorder> {
  const r = new Recorder();
  n.server.pubsub.subscribe(r, topic);
  await until(() => n.bus.subscribedTopics().includes(topic), 5000, `channel of ${topic} subscribed`);
  return r;
}

/** Publishes m1..mN on `n`, which listens to `topic`, and waits until it got them back; the topic's epoch. */
async function publishHeard(n: Node, topic: string, count: number): Promise<{ recorder: Recorder; epoch: string }> {
  const recorder = await listen(n, topic);
  for (let i = 1; i <= count; i++) n.server.publish(topic, `m${i}`);
  await until(() => recorder.payloads.length === count, 5000, `${count} on the publishing node`);
  return { recorder, epoch: n.server.pubsub.position(topic)!.epoch };
}

/** Orders messages in Redis as a node would, but publishes them where nobody listens: every node misses them. */
async function orderUnheard(topic: string, texts: string[], history: HistoryOptions = HISTORY): Promise<void> {
  const [meta, list] = historyKeys(PREFIX, topic);
  await admin.sendCommand(['EVAL', ORDER_SCRIPT, '2', meta, list, `${PREFIX}$nowhere`, 'e'.repeat(16), Buffer.alloc(12), String(history.maxMessages), String(history.maxBytes), '86400000', String(Date.now()), '0', '1', ...texts.map((t) => encodeBusRecord(null, t, false))]);
}

const bin = redisServerBinary();
let redis: Redis;
let url = '';
let admin: ReturnType<typeof createClient>;

test.before(async () => {
  redis = new Redis(bin, await freePort());
  await redis.start();
  url = `redis://127.0.0.1:${redis.port}`;
  admin = createClient({ url });
  admin.on('error', () => {});
  await admin.connect();
});

test.after(async () => {
  await admin.close();
  await redis.stop();
});

test('history topic over Redis: every node delivers every message once, in one order, at the same position', async () => {
  const nodes = [await node(), await node(), await node()];
  try {
    const subs = await Promise.all(nodes.map((n) => listen(n, 'room:one')));
    const N = 100;
    for (let i = 0; i < N; i++) {
      for (const [k, n] of nodes.entries()) n.server.publish('room:one', `${k}:${i}`);
      if (i % 25 === 24) await sleep(1);
    }
    await until(() => subs.every((s) => s.payloads.length >= 3 * N), 10_000, `${3 * N} messages everywhere`);
    await sleep(100);
    for (const s of subs) assert.equal(s.payloads, subs[0]!.payloads, 'the same messages in the same order on every node');
    assert.is(new Set(subs[0]!.payloads).size, 3 * N, 'each once');
    const positions = nodes.map((n) => n.server.pubsub.position('room:one'));
    assert.is(positions[0]!.offset, 3 * N);
    for (const p of positions) assert.equal(p, positions[0], 'one position space');
    for (const n of nodes) {
      assert.is(n.bus.stats.ordered, N);
      assert.is(n.bus.stats.fillsFailed, 0);
      assert.is(n.bus.stats.orderGaps, 0);
    }
  } finally {
    await stop(...nodes);
  }
});

/**
 * A loopback proxy to Redis that hands each chunk of Redis's answers over `delayMs` after it
 * came, one chunk at a time: replies to commands sent a few milliseconds apart arrive apart.
 */
async function slowAnswers(port: number, delayMs: number): Promise<{ url: string; close: () => void }> {
  const sockets: Socket[] = [];
  const proxy = createNetServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    sockets.push(client, upstream);
    client.pipe(upstream);
    upstream.on('data', (d: Buffer) => setTimeout(() => client.write(d), delayMs));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    url: `redis://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      proxy.close();
    },
  };
}

test('one node\'s publishes keep their order through a Redis that does not have the scripts cached yet (regression: calls sent again by text were overtaken)', async () => {
  await admin.sendCommand(['SCRIPT', 'FLUSH']);
  const slow = await slowAnswers(redis.port, 20);
  const a = { bus: await RedisBus.connect({ url: slow.url, log: () => {} }) } as Node;
  a.server = new Server({ bus: a.bus, history: () => HISTORY, handlers: {} });
  const b = await node();
  try {
    const sub = await listen(b, 'room:fresh');
    const N = 20;
    for (let i = 0; i < N; i++) {
      a.server.publish('room:fresh', `m${i}`);
      await sleep(5); // one script call each, their answers 20 ms late
    }
    await until(() => sub.payloads.length === N, 5000, `${N} on b`);
    assert.equal(sub.payloads, Array.from({ length: N }, (_, i) => `m${i}`));
  } finally {
    await stop(a, b);
    slow.close();
  }
});

test('a gap in the ordered stream (messages a node did not hear) is filled from Redis: every message once, in order, no resync', async () => {
  const [a, b] = [await node(), await node()];
  try {
    const sub = await listen(b, 'room:gap');
    a.server.publish('room:gap', 'first');
    await until(() => sub.payloads.length === 1, 5000, 'first');
    await orderUnheard('room:gap', ['m1', 'm2', 'm3', 'm4', 'm5']);
    a.server.publish('room:gap', 'after');
    await until(() => sub.payloads.length === 7, 5000, 'the missed ones and after');
    assert.equal(sub.payloads, ['first', 'm1', 'm2', 'm3', 'm4', 'm5', 'after']);
    assert.is(b.bus.stats.fills, 1);
    assert.is(b.bus.stats.fillsFailed, 0);
    assert.is(b.bus.stats.orderGaps, 0);
    assert.is(b.server.pubsub.position('room:gap')!.offset, 7);
  } finally {
    await stop(a, b);
  }
});

test('a gap Redis no longer holds (trimmed) is told to subscribers as a resync before what follows, never skipped silently', async () => {
  const small: HistoryOptions = { maxMessages: 4, maxBytes: 1024 * 1024, maxAgeMs: 0 };
  const [a, b] = [await node(small), await node(small)];
  try {
    const sub = await listen(b, 'room:trim');
    a.server.publish('room:trim', 'first');
    await until(() => sub.payloads.length === 1, 5000, 'first');
    await orderUnheard('room:trim', Array.from({ length: 10 }, (_, i) => `m${i + 1}`), small);
    a.server.publish('room:trim', 'after');
    await until(() => sub.payloads.includes('after'), 5000, 'after');
    // Redis kept m8..m10 and after (4 messages): m1..m7 are gone, which b's subscriber is told.
    assert.equal(sub.payloads, ['first', 'resync gap 8', 'm8', 'm9', 'm10', 'after']);
    assert.is(b.bus.stats.orderGaps, 1);
    assert.is(b.server.pubsub.position('room:trim')!.offset, 12);
  } finally {
    await stop(a, b);
  }
});

test('recovery on a node that never heard the topic: read from Redis into its history, then live messages follow, each once, in order', async () => {
  const [a, c] = [await node(), await node()];
  try {
    const { recorder: onA, epoch } = await publishHeard(a, 'room:rec', 20);
    const since = { epoch, offset: 5 };
    // As serve does for a client that subscribes with its last position: catch up, subscribe, recover.
    await c.server.pubsub.catchUp('room:rec', since);
    assert.is(c.bus.stats.catchUps, 1);
    // Published while c does not hear the topic yet: read from Redis once c listens.
    for (let i = 21; i <= 23; i++) a.server.publish('room:rec', `m${i}`);
    await until(() => onA.payloads.length === 23, 5000, '23 on a');
    const sub = new Recorder();
    c.server.pubsub.subscribe(sub, 'room:rec');
    const r = c.server.pubsub.recover(sub, 'room:rec', since);
    assert.ok(r?.recovered, JSON.stringify(r));
    await until(() => c.bus.subscribedTopics().includes('room:rec'), 5000, 'c listens');
    // m21..m23 come without waiting for another publish: c reads them once it listens.
    await until(() => sub.payloads.length === 18, 5000, 'm6..m23 on c');
    for (let i = 24; i <= 30; i++) a.server.publish('room:rec', `m${i}`);
    await until(() => sub.payloads.length >= 25, 5000, 'm6..m30 on c');
    await sleep(100);
    assert.equal(sub.payloads, Array.from({ length: 25 }, (_, i) => `m${i + 6}`));
    assert.equal(c.server.pubsub.position('room:rec'), a.server.pubsub.position('room:rec'));
  } finally {
    await stop(a, c);
  }
});

test('a node that stops hearing a topic drops its history there: a later recovery reads Redis, not a stale past', async () => {
  const [a, b] = [await node(), await node()];
  try {
    const sub = await listen(b, 'room:stale');
    for (let i = 1; i <= 5; i++) a.server.publish('room:stale', `m${i}`);
    await until(() => sub.payloads.length === 5, 5000, '5 on b');
    const since = b.server.pubsub.position('room:stale')!;
    b.server.pubsub.unsubscribe(sub, 'room:stale');
    await until(() => !b.bus.subscribedTopics().includes('room:stale'), 5000, 'b stops listening');
    assert.is(b.server.pubsub.historyOf('room:stale'), null, 'no stale history left on b');
    for (let i = 6; i <= 8; i++) a.server.publish('room:stale', `m${i}`);
    await sleep(100);
    await b.server.pubsub.catchUp('room:stale', since);
    const again = new Recorder();
    b.server.pubsub.subscribe(again, 'room:stale');
    assert.ok(b.server.pubsub.recover(again, 'room:stale', since)?.recovered);
    assert.equal(again.payloads, ['m6', 'm7', 'm8']);
  } finally {
    await stop(a, b);
  }
});

test('a broken Redis (garbage on the channel, a corrupt kept message) is counted and told, never a crash', async () => {
  const [a, b] = [await node(), await node()];
  try {
    const sub = await listen(b, 'room:bad');
    a.server.publish('room:bad', 'first');
    await until(() => sub.payloads.length === 1, 5000, 'first');
    const garbage = [Buffer.from([2]), Buffer.concat([Buffer.from([2]), Buffer.alloc(13)]), Buffer.concat([Buffer.from([2]), Buffer.alloc(12), Buffer.from([1, 0x65]), Buffer.alloc(8, 0xff)])];
    for (const g of garbage) await admin.sendCommand(['SPUBLISH', `${PREFIX}room:bad`, g]);
    await until(() => b.bus.stats.protocolErrors === garbage.length, 5000, 'garbage counted');
    // Two unheard messages, the first of them corrupted in Redis: the gap cannot be filled whole.
    await orderUnheard('room:bad', ['lost', 'kept']);
    const [, list] = historyKeys(PREFIX, 'room:bad');
    await admin.sendCommand(['LSET', list, '1', 'not an entry']);
    a.server.publish('room:bad', 'after');
    await until(() => sub.payloads.includes('after'), 5000, 'after');
    assert.equal(sub.payloads, ['first', 'resync gap 3', 'after']);
    assert.ok(b.bus.stats.protocolErrors > garbage.length, 'the corrupt reply counted');
    assert.is(b.bus.stats.fillsFailed, 1);
  } finally {
    await stop(a, b);
  }
});

test('Redis loses its data (restarted without persistence): the next message starts another epoch, which subscribers are told', async () => {
  const [a, b] = [await node(), await node()];
  try {
    const sub = await listen(b, 'room:lost');
    a.server.publish('room:lost', 'before');
    await until(() => sub.payloads.length === 1, 5000, 'before');
    const epoch = b.server.pubsub.position('room:lost')!.epoch;
    await redis.kill();
    await redis.start();
    await until(() => a.bus.stats.linksUp === 2 && b.bus.stats.linksUp === 2 && b.bus.subscribedTopics().includes('room:lost'), 10_000, 'reconnected');
    let i = 0;
    await until(
      () => {
        if (sub.payloads.some((p) => p.startsWith('after'))) return true;
        a.server.publish('room:lost', `after${i++}`);
        return false;
      },
      10_000,
      'delivery after the restart',
    );
    assert.is(sub.payloads[1], 'resync epoch 0');
    assert.is.not(b.server.pubsub.position('room:lost')!.epoch, epoch);
    assert.is(b.bus.stats.epochChanges, 1);
  } finally {
    await stop(a, b);
  }
});

test('catch-ups for two positions at once on a node that never heard the topic: the older one is read too (the newer one does not bring it)', async () => {
  const [n1, n2] = [await node(), await node()];
  try {
    const { epoch } = await publishHeard(n1, 'room:two-positions', 5);
    await Promise.all([n2.server.pubsub.catchUp('room:two-positions', { epoch, offset: 4 }), n2.server.pubsub.catchUp('room:two-positions', { epoch, offset: 1 })]);
    const r = n2.server.pubsub.historyOf('room:two-positions')!.recover({ epoch, offset: 1 }, Date.now());
    assert.ok(r.recovered, `recovered from the older position (${JSON.stringify(r)})`);
    assert.is(r.recovered && r.messages, 4);
  } finally {
    await stop(n1, n2);
  }
});

test('a recovery at the last message of a quiet topic, on a node that never heard it: recovered with nothing to replay, not epoch-changed', async () => {
  const [n1, n2] = [await node(), await node()];
  try {
    const { epoch } = await publishHeard(n1, 'room:quiet', 3);
    await n2.server.pubsub.catchUp('room:quiet', { epoch, offset: 3 });
    const r = n2.server.pubsub.historyOf('room:quiet')!.recover({ epoch, offset: 3 }, Date.now());
    assert.ok(r.recovered, `recovered (${JSON.stringify(r)})`);
    assert.is(r.recovered && r.messages, 0);
  } finally {
    await stop(n1, n2);
  }
});

test('a publish to a history topic is told its position once the script stored it, and unavailable when Redis stalls past orderTimeoutMs', async () => {
  const n = await node(HISTORY, { orderTimeoutMs: 300 });
  try {
    const told: string[] = [];
    const tell = (position: { epoch: string; offset: number } | null, failure: string | null): void => void told.push(failure ?? `${position?.offset}`);
    for (let i = 0; i < 3; i++) n.server.pubsub.publish('room:told', `m${i}`, false, null, null, tell);
    await until(() => told.length === 3, 5000, 'three told');
    assert.equal(told, ['1', '2', '3']);
    const [meta] = historyKeys(PREFIX, 'room:told');
    assert.is(await admin.hGet(meta, 'offset'), '3', 'stored in Redis when told');
    // Redis busy for a second (connected, answering nothing): the publisher is told, not left hanging.
    await admin.sendCommand(['CLIENT', 'PAUSE', '1000', 'ALL']);
    n.server.pubsub.publish('room:told', 'late', false, null, null, tell);
    await until(() => told.length === 4, 5000, 'the stalled publish told');
    assert.is(told[3], 'unavailable');
    await sleep(1000); // the pause ends: the bus goes on
  } finally {
    await stop(n);
  }
});

test.run();
