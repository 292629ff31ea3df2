// The pure part of gap filling (src/cluster/bus/gap-fill.ts): the reorder buffer held past a
// gap, its bounds per topic and across topics, and the ranges asked for.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FillBook, fillRange } from '../../src/cluster/bus/gap-fill.js';

const msg = (offset: number, bytes = 10) => ({ offset, origin: 'o', seq: offset, frame: Buffer.alloc(bytes) });

test('reorder buffer: held in offset order whatever the arrival order; a repeated offset is a duplicate', () => {
  const book = new FillBook(1000, 1000, 10);
  const f = book.open('room:a', 'E', 0)!;
  for (const o of [7, 5, 9, 6]) assert.is(book.hold(f, msg(o)), 'held');
  assert.is(book.hold(f, msg(7)), 'duplicate');
  assert.is(f.firstHeld, 5);
  assert.is(book.bytes, 40);
  assert.equal(book.take(f, 6).map((m) => m.offset), [5, 6]);
  assert.is(f.bytes, 20);
  assert.equal(book.close('room:a').map((m) => m.offset), [7, 9]);
  assert.is(book.bytes, 0);
  assert.is(book.topics.size, 0);
  assert.is(f.firstHeld, Infinity);
});

test('reorder buffer: bounded per topic and across topics (full: the caller gives the fill up), and in topics filling at once', () => {
  const book = new FillBook(25, 40, 2);
  const a = book.open('a', 'E', 0)!;
  const b = book.open('b', 'E', 0)!;
  assert.is(book.open('c', 'E', 0), null, 'maxTopics filling already');
  assert.is(book.open('a', 'other', 0), a, 'an open fill is found again');
  assert.is(book.hold(a, msg(2)), 'held');
  assert.is(book.hold(a, msg(3)), 'held');
  assert.is(book.hold(a, msg(4)), 'full', 'over the topic bound');
  assert.is(book.hold(b, msg(2, 21)), 'full', 'over the total bound');
  assert.is(book.hold(b, msg(2, 15)), 'held');
  book.close('a');
  assert.is(book.hold(b, msg(3, 10)), 'held', 'room again once another topic let go');
  assert.is(book.bytes, 25);
});

test('expiry: a fill is given up fillTimeoutMs after its gap was seen, not after its last message', () => {
  const book = new FillBook(1000, 1000, 10);
  book.open('old', 'E', 1000);
  const young = book.open('young', 'E', 2500)!;
  book.hold(young, msg(3));
  assert.equal(book.expired(4001, 3000), ['old']);
  assert.equal(book.expired(5501, 3000), ['old', 'young']);
});

test('ranges asked for: from the next offset up to the first held, at most maxMessages at a time', () => {
  assert.equal(fillRange(4, 6, 1000), { first: 4, last: 5 });
  assert.equal(fillRange(4, 5000, 1000), { first: 4, last: 1003 });
  assert.is(fillRange(6, 6, 1000), null);
  assert.is(fillRange(4, Infinity, 10)!.last, 13);
});

test.run();
