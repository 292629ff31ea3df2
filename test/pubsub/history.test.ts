import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { WebSocket as WsClient } from 'ws';
import { TopicHistory } from '../../src/pubsub/history.js';
import { startServer } from '../helpers/server.js';
import { until } from '../helpers/net.js';

const f = (s: string) => Buffer.from(s);
const opts = (o: Partial<{ maxMessages: number; maxBytes: number; maxAgeMs: number }> = {}) => ({ maxMessages: 100, maxBytes: 1 << 20, maxAgeMs: 0, ...o });
const texts = (r: ReturnType<TopicHistory['recover']>) => (r.recovered ? r.frames.map((b) => b.toString()) : r.reason);

test('offsets grow by one per message; recovery returns what came after a position, in order', () => {
  const h = new TopicHistory(opts(), 'E1');
  assert.is(h.append(f('a'), 0), 1);
  assert.is(h.append(f('b'), 0), 2);
  assert.is(h.append(f('c'), 0), 3);
  assert.equal(texts(h.recover({ epoch: 'E1', offset: 1 }, 0)), ['b', 'c']);
  assert.equal(texts(h.recover({ epoch: 'E1', offset: 3 }, 0)), []);
  assert.equal(texts(h.recover({ epoch: 'E1', offset: 0 }, 0)), ['a', 'b', 'c']);
});

test('bounded by count, bytes and age; a trimmed position is reported, never half-served', () => {
  const byCount = new TopicHistory(opts({ maxMessages: 3 }), 'E');
  for (const s of ['1', '2', '3', '4', '5']) byCount.append(f(s), 0);
  assert.is(byCount.size, 3);
  assert.equal(texts(byCount.recover({ epoch: 'E', offset: 2 }, 0)), ['3', '4', '5']);
  assert.equal(texts(byCount.recover({ epoch: 'E', offset: 1 }, 0)), 'trimmed');

  const byBytes = new TopicHistory(opts({ maxBytes: 10 }), 'E');
  for (const s of ['aaaa', 'bbbb', 'cccc']) byBytes.append(f(s), 0);
  assert.is(byBytes.byteSize, 8);
  assert.equal(texts(byBytes.recover({ epoch: 'E', offset: 1 }, 0)), ['bbbb', 'cccc']);
  assert.equal(texts(byBytes.recover({ epoch: 'E', offset: 0 }, 0)), 'trimmed');

  const byAge = new TopicHistory(opts({ maxAgeMs: 1000 }), 'E');
  byAge.append(f('old'), 0);
  byAge.append(f('new'), 1500);
  assert.equal(texts(byAge.recover({ epoch: 'E', offset: 1 }, 1600)), ['new']);
  assert.equal(texts(byAge.recover({ epoch: 'E', offset: 0 }, 1600)), 'trimmed');
});

test('another epoch or an offset from the future cannot be recovered', () => {
  const h = new TopicHistory(opts(), 'NEW');
  h.append(f('x'), 0);
  assert.equal(texts(h.recover({ epoch: 'OLD', offset: 0 }, 0)), 'epoch-changed');
  assert.equal(texts(h.recover({ epoch: 'NEW', offset: 5 }, 0)), 'future');
  assert.equal(texts(h.recover({ epoch: 'NEW', offset: -1 }, 0)), 'future');
  assert.equal(texts(h.recover({ epoch: 'NEW', offset: 1.5 }, 0)), 'future');
});

test('range: the frames from an offset on, bounded in messages and bytes (at least one); trimmed ones skipped, past the end none', () => {
  const h = new TopicHistory({ maxMessages: 4, maxBytes: 1 << 20, maxAgeMs: 0 }, 'A');
  for (let i = 1; i <= 6; i++) h.append(Buffer.alloc(i, i), 0); // keeps 3..6 (wrapped in the ring)
  const offsets = (r: { first: number; frames: Buffer[] }) => r.frames.map((b, i) => `${r.first + i}:${b[0]}`);
  assert.equal(offsets(h.range(4, 10, 1 << 20)), ['4:4', '5:5', '6:6']);
  assert.equal(offsets(h.range(1, 10, 1 << 20)), ['3:3', '4:4', '5:5', '6:6'], 'older ones are trimmed: first says where it starts');
  assert.equal(offsets(h.range(3, 2, 1 << 20)), ['3:3', '4:4']);
  assert.equal(offsets(h.range(3, 10, 8)), ['3:3', '4:4']);
  assert.equal(offsets(h.range(6, 10, 1)), ['6:6'], 'at least one, whatever maxBytes');
  assert.equal(h.range(7, 10, 1 << 20), { first: 7, frames: [] });
  assert.equal(h.range(99, 10, 1 << 20), { first: 7, frames: [] });
});

test('backfill: older messages of the epoch go in front when they reach the oldest kept; a history holding nothing takes them in their epoch; bounds hold', () => {
  const h = new TopicHistory({ maxMessages: 4, maxBytes: 1 << 20, maxAgeMs: 0 }, 'fresh');
  const b = (i: number) => Buffer.from([i]);
  assert.is(h.backfill('E', 3, [b(3), b(4)], 0), true, 'empty: takes the line');
  assert.equal(h.position, { epoch: 'E', offset: 4 });
  h.append(b(5), 0);
  assert.is(h.backfill('X', 1, [b(1), b(2)], 0), false, 'another epoch');
  assert.is(h.backfill('E', 1, [b(1)], 0), false, 'does not reach the oldest kept (3)');
  assert.is(h.backfill('E', 3, [b(3)], 0), false, 'nothing older than what is kept');
  assert.is(h.backfill('E', 1, [b(1), b(2), b(3)], 0), true, 'overlap with what is kept is skipped');
  assert.equal(h.range(1, 10, 1 << 20).frames.map((f) => f[0]), [2, 3, 4, 5], 'maxMessages 4: the oldest went');
  assert.equal(h.position, { epoch: 'E', offset: 5 });
});

test('restart: a history given its positions from elsewhere starts again at a position, empty; tail gives the last frames', () => {
  const h = new TopicHistory({ maxMessages: 10, maxBytes: 1 << 20, maxAgeMs: 0 }, 'A');
  for (let i = 1; i <= 4; i++) h.append(Buffer.from([i]), 0);
  assert.equal(h.tail(2), { first: 3, frames: [Buffer.from([3]), Buffer.from([4])] });
  assert.equal(h.tail(99).first, 1);
  h.restart({ epoch: 'B', offset: 41 });
  assert.is(h.size, 0);
  assert.equal(h.position, { epoch: 'B', offset: 41 });
  assert.is(h.append(Buffer.from([42]), 0), 42);
  assert.equal(h.recover({ epoch: 'B', offset: 41 }, 0).recovered, true);
  assert.is(h.recover({ epoch: 'B', offset: 40 }, 0).recovered, false);
  assert.is(h.recover({ epoch: 'A', offset: 4 }, 0).recovered, false);
});

test('the ring grows past its first capacity and keeps order', () => {
  const h = new TopicHistory(opts({ maxMessages: 5000 }), 'E');
  for (let i = 1; i <= 3000; i++) h.append(f(String(i)), 0);
  const r = h.recover({ epoch: 'E', offset: 2990 }, 0);
  assert.equal(texts(r), ['2991', '2992', '2993', '2994', '2995', '2996', '2997', '2998', '2999', '3000']);
});

test('over the wire: a client that comes back recovers what it missed before new messages', async () => {
  const { server, url } = await startServer({
    history: (topic) => (topic.startsWith('room:') ? { maxMessages: 100, maxBytes: 1 << 20, maxAgeMs: 60_000 } : undefined),
    handlers: {
      message(conn, data) {
        const cmd = JSON.parse(data.toString()) as { sub: string; epoch?: string; offset?: number };
        if (cmd.epoch === undefined) {
          conn.subscribe(cmd.sub);
          const h = server.pubsub.history(cmd.sub)!;
          conn.send(JSON.stringify({ position: h.position }));
        } else {
          const { recovery } = conn.subscribeFrom(cmd.sub, { epoch: cmd.epoch, offset: cmd.offset! });
          conn.send(JSON.stringify({ recovery }));
        }
      },
    },
  });
  const first = new WsClient(url);
  await once(first, 'open');
  first.send(JSON.stringify({ sub: 'room:1' }));
  const [pos] = (await once(first, 'message')) as [Buffer];
  const { position } = JSON.parse(pos.toString()) as { position: { epoch: string; offset: number } };
  server.publish('room:1', 'm1');
  await once(first, 'message');
  first.close();
  await once(first, 'close');
  await until(() => server.subscriberCount('room:1') === 0, 2000, 'unsubscribed');
  // Published while nobody listens: kept by the history.
  server.publish('room:1', 'm2');
  server.publish('room:1', 'm3');

  const back = new WsClient(url);
  await once(back, 'open');
  const got: string[] = [];
  back.on('message', (d) => got.push(d.toString()));
  back.send(JSON.stringify({ sub: 'room:1', epoch: position.epoch, offset: position.offset + 1 }));
  await until(() => got.length === 3, 2000, 'recovered messages and reply');
  server.publish('room:1', 'm4');
  await until(() => got.length === 4, 2000, 'new message');
  assert.equal(got.slice(0, 2), ['m2', 'm3']);
  assert.equal(JSON.parse(got[2]!), { recovery: { recovered: true, messages: 2, position: { epoch: position.epoch, offset: 3 } } });
  assert.is(got[3], 'm4');

  // A position from another epoch is refused explicitly.
  back.send(JSON.stringify({ sub: 'room:2', epoch: 'not-this-one', offset: 0 }));
  await until(() => got.length === 5, 2000, 'epoch reply');
  assert.is((JSON.parse(got[4]!) as { recovery: { reason: string } }).recovery.reason, 'epoch-changed');
  back.close();
  await server.close();
});

test('a history costs what it holds: one message holds a ring of 8 slots, not one sized for maxMessages', () => {
  const h = new TopicHistory(opts({ maxMessages: 1000 }));
  assert.is(h.capacity, 0, 'nothing allocated before the first message');
  h.append(f('x'.repeat(40)), 0);
  assert.is(h.capacity, 8);
  assert.ok(h.heldBytes < 1024, `one small message is held in under 1 KiB (${h.heldBytes})`);
  for (let i = 0; i < 1500; i++) h.append(f('y'), 0);
  assert.is(h.capacity, 1000, 'grows by doubling, never beyond maxMessages');
  assert.is(h.size, 1000);
  assert.equal(texts(h.recover({ epoch: h.epoch, offset: 1500 }, 0)), ['y']);
});

test('a ring left mostly empty by expiry gives its slots back; an empty one holds none', () => {
  const h = new TopicHistory(opts({ maxMessages: 1000, maxAgeMs: 10 }));
  for (let i = 0; i < 500; i++) h.append(f(String(i)), 0);
  for (let i = 500; i < 510; i++) h.append(f(String(i)), 100);
  const before = h.heldBytes;
  h.expire(105);
  assert.is(h.size, 10);
  assert.ok(h.capacity <= 64, `capacity ${h.capacity} after expiry left 10 messages`);
  assert.ok(h.heldBytes < before);
  assert.equal(texts(h.recover({ epoch: h.epoch, offset: 505 }, 105)), ['505', '506', '507', '508', '509']);
  h.expire(1000);
  assert.is(h.capacity, 0);
  assert.is(h.append(f('z'), 1000), 511, 'offsets continue after the ring was given back');
  // A message too big to keep pushes out the others and leaves no ring behind either.
  const small = new TopicHistory(opts({ maxBytes: 10 }));
  small.append(f('abc'), 0);
  small.append(f('x'.repeat(11)), 0);
  assert.is(small.size, 0);
  assert.is(small.capacity, 0);
});

test.run();
