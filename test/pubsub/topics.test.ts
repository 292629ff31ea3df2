import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { WebSocket as WsClient } from 'ws';
import { Topics } from '../../src/pubsub/topics.js';
import type { Subscriber, Topic } from '../../src/pubsub/topics.js';
import { startServer } from '../helpers/server.js';
import { rawWebSocket, until, delay } from '../helpers/net.js';
import type { Connection } from '../../src/server/connection.js';

class FakeSub implements Subscriber {
  topics: Topic[] | null = null;
  writes: Array<{ bytes: Buffer; messages: number }> = [];
  sendEncoded(frames: Buffer, messages: number): void {
    this.writes.push({ bytes: frames, messages });
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('a tick of publishes reaches each subscriber as one write of the same bytes', async () => {
  const t = new Topics(256, 10);
  const subs = [new FakeSub(), new FakeSub(), new FakeSub()];
  for (const s of subs) assert.is(t.subscribe(s, 'room'), 'subscribed');
  for (let i = 0; i < 100; i++) assert.is(t.publish('room', Buffer.from([i]), true, null), 3);
  assert.equal(subs[0]!.writes, []); // nothing before the end of the tick
  await tick();
  for (const s of subs) {
    assert.is(s.writes.length, 1);
    assert.is(s.writes[0]!.messages, 100);
    assert.is(s.writes[0]!.bytes.length, 100 * 3); // 2-byte header + 1-byte payload each
  }
  // Encoded once: every subscriber got the very same buffer.
  assert.ok(subs[0]!.writes[0]!.bytes === subs[1]!.writes[0]!.bytes);
  assert.is(t.deliveries, 300);
});

test('publish skipping the sender: the sender gets everything but its own messages', async () => {
  const t = new Topics(256, 10);
  const a = new FakeSub();
  const b = new FakeSub();
  t.subscribe(a, 'x');
  t.subscribe(b, 'x');
  t.publish('x', 'from-a', false, a);
  t.publish('x', 'from-b', false, b);
  t.publish('x', 'server', false, null);
  await tick();
  const text = (s: FakeSub) => s.writes.map((w) => w.bytes.toString('latin1')).join('');
  assert.is(text(a), '\x81\x06from-b\x81\x06server');
  assert.is(text(b), '\x81\x06from-a\x81\x06server');
});

test('unsubscribe, unsubscribeAll and empty topics going away', async () => {
  const t = new Topics(256, 10);
  const a = new FakeSub();
  t.subscribe(a, 'one');
  t.subscribe(a, 'two');
  assert.is(t.subscribe(a, 'two'), 'already');
  assert.is(t.subscriberCount('two'), 1);
  assert.ok(t.unsubscribe(a, 'one'));
  assert.not.ok(t.unsubscribe(a, 'one'));
  assert.is(t.topics.size, 1);
  t.unsubscribeAll(a);
  assert.is(a.topics, null);
  assert.is(t.topics.size, 0);
  assert.is(t.publish('two', 'nobody', false, null), 0);
});

test('limits: topic name length and subscriptions per connection', () => {
  const t = new Topics(8, 2);
  const a = new FakeSub();
  assert.is(t.subscribe(a, '123456789'), 'topic-too-long');
  assert.is(t.subscribe(a, 'ééééé'), 'topic-too-long'); // 10 bytes in UTF-8
  assert.is(t.subscribe(a, 'a'), 'subscribed');
  assert.is(t.subscribe(a, 'b'), 'subscribed');
  assert.is(t.subscribe(a, 'c'), 'too-many');
});

test('a subscription made mid-tick does not receive what was published before it', async () => {
  const t = new Topics(256, 10);
  const a = new FakeSub();
  const late = new FakeSub();
  t.subscribe(a, 'x');
  t.publish('x', 'early', false, null);
  t.subscribe(late, 'x');
  t.publish('x', 'later', false, null);
  await tick();
  assert.is(late.writes.map((w) => w.bytes.toString('latin1')).join(''), '\x81\x05later');
  assert.is(a.writes.map((w) => w.bytes.toString('latin1')).join(''), '\x81\x05early\x81\x05later');
});

test('over the wire: published and direct messages keep their order; conn.publish skips the sender', async () => {
  const { server, url } = await startServer({
    handlers: {
      open: (c) => void c.subscribe('room'),
      message(conn, data) {
        const s = data.toString();
        if (s === 'go') {
          server.publish('room', 'p1');
          conn.send('direct');
          server.publish('room', 'p2');
        } else conn.publish('room', s);
      },
    },
  });
  const a = new WsClient(url);
  const b = new WsClient(url);
  await Promise.all([once(a, 'open'), once(b, 'open')]);
  await until(() => server.subscriberCount('room') === 2, 2000, 'subscriptions');
  const gotA: string[] = [];
  const gotB: string[] = [];
  a.on('message', (d) => gotA.push(d.toString()));
  b.on('message', (d) => gotB.push(d.toString()));
  a.send('go');
  await until(() => gotA.length === 3 && gotB.length === 2, 2000, 'messages');
  assert.equal(gotA, ['p1', 'direct', 'p2']);
  assert.equal(gotB, ['p1', 'p2']);
  b.send('hello from b');
  await until(() => gotA.length === 4, 2000, 'relay');
  await delay(50);
  assert.is(gotA[3], 'hello from b');
  assert.is(gotB.length, 2); // not echoed to its sender
  a.close();
  b.close();
  await server.close();
  assert.is(server.pubsub.topics.size, 0); // closed connections left their topics
});

test('one slow subscriber neither delays the others nor grows past its budget', async () => {
  const budget = 128 * 1024;
  const conns: Connection[] = [];
  const { server, port, url } = await startServer({
    handlers: { open: (c) => void (c.subscribe('feed'), conns.push(c)) },
    limits: { maxBackpressure: budget },
  });
  const slow = await rawWebSocket(port);
  slow.socket.pause(); // never reads
  const fast = new WsClient(url);
  await once(fast, 'open');
  await until(() => server.subscriberCount('feed') === 2, 2000, 'subscriptions');
  let fastGot = 0;
  fast.on('message', () => fastGot++);
  const payload = Buffer.alloc(4096, 1);
  const rounds = 200;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < 10; i++) server.publish('feed', payload);
    await delay(2);
  }
  await until(() => fastGot === rounds * 10, 10_000, 'fast subscriber gets everything');
  const slowConn = conns.find((c) => c.remoteAddress !== undefined && c.bufferedAmount > 0);
  assert.ok(slowConn !== undefined);
  assert.ok(slowConn!.bufferedAmount <= budget + 10 * (payload.length + 4), `slow buffered ${slowConn!.bufferedAmount}`);
  assert.ok(server.stats.droppedMessages > 0);
  slow.destroy();
  fast.close();
  await server.close();
});

test('beyond maxHistoryTopics the least recently used unsubscribed history is evicted; a subscribed one never is', () => {
  const policy = () => ({ maxMessages: 10, maxBytes: 1 << 20, maxAgeMs: 0 });
  const t = new Topics(256, 10, policy, 3);
  const sub = new FakeSub();
  t.subscribe(sub, 'kept');
  t.publish('kept', 'k', false, null);
  t.publish('a', 'a', false, null);
  t.publish('b', 'b', false, null);
  assert.is(t.historyTopicCount, 3);
  t.publish('a', 'a2', false, null); // a is now more recent than b
  t.publish('c', 'c', false, null);
  assert.is(t.historyTopicCount, 3);
  assert.ok(!t.topics.has('b'), 'b, the least recently used idle one, went');
  assert.ok(t.topics.has('a') && t.topics.has('c') && t.topics.has('kept'));
  assert.is(t.historyEvictions, 1);
  // Subscribed topics are never evicted: with only "kept" and one idle topic left to take...
  t.subscribe(sub, 'a');
  t.subscribe(sub, 'c');
  assert.is(t.publish('d', 'd', false, null), 0);
  assert.ok(!t.topics.has('d'), 'no room and nothing idle to evict: no history, and no empty topic left behind');
  assert.is(t.history('e'), undefined);
  assert.ok(!t.topics.has('e'));
  assert.is(t.history('kept')!.size, 1);
  // An unsubscribed topic with history becomes evictable again.
  t.unsubscribe(sub, 'a');
  t.publish('d', 'd', false, null);
  assert.ok(t.topics.has('d') && !t.topics.has('a'));
});

test('beyond maxHistoryBytes held by all histories the least recently used unsubscribed ones go; the ledger is their sum', () => {
  const policy = () => ({ maxMessages: 1000, maxBytes: 1 << 20, maxAgeMs: 0 });
  const t = new Topics(256, 10, policy, Infinity, 64 * 1024);
  const sub = new FakeSub();
  t.subscribe(sub, 'kept');
  const kb = 'x'.repeat(1024);
  for (let i = 0; i < 40; i++) t.publish('kept', kb, false, null);
  for (let k = 0; k < 50; k++) for (let i = 0; i < 4; i++) t.publish(`idle-${k}`, kb, false, null);
  const sum = (): number => {
    let n = 0;
    for (const topic of t.topics.values()) if (topic.history !== null) n += topic.history.heldBytes + 400 + topic.name.length;
    return n;
  };
  assert.ok(t.historyLedger.held <= 64 * 1024, `held ${t.historyLedger.held}`);
  assert.is(t.historyLedger.held, sum());
  assert.is(t.history('kept')!.size, 40, 'the subscribed topic keeps everything');
  assert.ok(t.topics.has('idle-49') && !t.topics.has('idle-0'), 'the oldest idle ones went first');
  t.unsubscribe(sub, 'kept');
  t.sweepHistory(Date.now());
  assert.is(t.historyLedger.held, sum());
});

test('sweepHistory drops unsubscribed topics whose messages all aged out', () => {
  const t = new Topics(256, 10, () => ({ maxMessages: 10, maxBytes: 1 << 20, maxAgeMs: 1000 }));
  t.publish('old', 'x', false, null);
  const sub = new FakeSub();
  t.subscribe(sub, 'watched');
  t.publish('watched', 'y', false, null);
  t.sweepHistory(Date.now() + 5000);
  assert.ok(!t.topics.has('old'));
  assert.ok(t.topics.has('watched'));
  assert.is(t.historyTopicCount, 1);
});

test('the counts a metrics scrape reads are kept as topics, subscriptions and histories change', async () => {
  const t = new Topics(256, 50, (name) => (name.startsWith('h:') ? { maxMessages: 5, maxBytes: 1 << 20, maxAgeMs: 0 } : undefined), 8);
  const subs = Array.from({ length: 6 }, () => new FakeSub());
  let seed = 7;
  const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
  const names = ['a', 'b', '$p:a', 'h:1', 'h:2', 'h:3', 'h:4', 'h:5', 'h:6', 'h:7', 'h:8', 'h:9', 'h:10'];
  for (let i = 0; i < 3_000; i++) {
    const sub = subs[rnd(subs.length)]!;
    const name = names[rnd(names.length)]!;
    const op = rnd(5);
    if (op === 0) t.subscribe(sub, name);
    else if (op === 1) t.unsubscribe(sub, name);
    else if (op === 2) t.publish(name, `m${i}`, false, null);
    else if (op === 3 && rnd(10) === 0) t.unsubscribeAll(sub);
    else t.history(name);
    if (i % 50 === 0) await tick();
    if (i % 100 === 0) {
      let subscriptions = 0;
      let publicTopics = 0;
      let historyTopics = 0;
      let historyMessages = 0;
      for (const topic of t.topics.values()) {
        subscriptions += topic.subscribers.size;
        if (!topic.name.startsWith('$')) publicTopics++;
        if (topic.history !== null) {
          historyTopics++;
          historyMessages += topic.history.size;
        }
      }
      assert.equal(
        [t.subscriptionCount, t.publicTopicCount, t.historyTopicCount, t.historyLedger.messages],
        [subscriptions, publicTopics, historyTopics, historyMessages],
        `after ${i} operations`,
      );
    }
  }
});

test.run();
