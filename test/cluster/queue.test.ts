import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BroadcastQueue } from '../../src/cluster/gossip/queue.js';

const rec = (tag: string, size = 10) => Buffer.alloc(size, tag.charCodeAt(0));
const tags = (out: Uint8Array[]) => out.map((b) => String.fromCharCode(b[0] as number)).join('');

test('least-sent first, newest first among equals', () => {
  const q = new BroadcastQueue();
  q.enqueue(rec('a'));
  q.enqueue(rec('b'));
  q.enqueue(rec('c'));
  assert.is(tags(q.take(20, 10)), 'cb', 'newest two fit');
  assert.is(tags(q.take(20, 10)), 'ac', 'a was never sent: it goes first, then the newest of those sent once');
  assert.is(tags(q.take(100, 10)), 'bac');
});

test('a broadcast leaves the queue after `limit` transmits and reports it', () => {
  const q = new BroadcastQueue();
  const done: boolean[] = [];
  q.enqueue(rec('a'), null, (sent) => done.push(sent));
  for (let i = 0; i < 3; i++) assert.is(tags(q.take(100, 3)), 'a');
  assert.is(q.size, 0);
  assert.equal(done, [true]);
  assert.is(q.take(100, 3).length, 0);
});

test('a named broadcast replaces the queued one of the same name (newer news about a member)', () => {
  const q = new BroadcastQueue();
  const done: boolean[] = [];
  q.enqueue(rec('s'), 'node-x', (sent) => done.push(sent));
  q.enqueue(rec('o'), 'node-y');
  q.enqueue(rec('a'), 'node-x');
  assert.is(q.size, 2);
  assert.equal(done, [false]);
  assert.is(tags(q.take(100, 5)), 'ao');
  assert.ok(q.has('node-x'));
});

test('packing fills the budget with whatever fits', () => {
  const q = new BroadcastQueue();
  q.enqueue(rec('a', 5));
  q.enqueue(rec('b', 50));
  q.enqueue(rec('c', 8));
  assert.is(tags(q.take(20, 5)), 'ca', 'b is too big for this packet, the smaller ones still go');
  assert.is(tags(q.take(60, 5)), 'bc', 'the unsent one first, then what still fits');
});

test('a full queue drops its most-sent broadcast and counts it', () => {
  const q = new BroadcastQueue(2);
  q.enqueue(rec('a'));
  q.take(100, 10); // a sent once
  q.enqueue(rec('b'));
  q.enqueue(rec('c'));
  assert.is(q.size, 2);
  assert.is(q.dropped, 1);
  assert.is(tags(q.take(100, 10)), 'cb');
});

test('re-placed broadcasts keep id order inside a bucket', () => {
  const q = new BroadcastQueue();
  for (const t of 'abcdef') q.enqueue(rec(t));
  q.take(30, 10); // f e d sent once
  q.take(30, 10); // c b a sent once
  assert.is(tags(q.take(30, 10)), 'fed', 'newest first again in bucket 1');
});

test('clear reports every pending broadcast as not sent', () => {
  const q = new BroadcastQueue();
  const done: boolean[] = [];
  q.enqueue(rec('a'), 'x', (s) => done.push(s));
  q.enqueue(rec('b'), null, (s) => done.push(s));
  q.clear();
  assert.equal(done, [false, false]);
  assert.is(q.size, 0);
  assert.not.ok(q.has('x'));
});

test.run();
