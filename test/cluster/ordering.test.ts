// The pure parts of cluster-wide ordering (src/cluster/bus/ordering.ts): who owns a topic,
// which forwards an owner takes, what an origin lets go when its messages come back ordered.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { OrderBook, TopicOrder, ownerAndReplica } from '../../src/cluster/bus/ordering.js';

const ids = ['node1', 'node2', 'node3', 'node4', 'node5'];
const topics = Array.from({ length: 2000 }, (_, i) => `room:${i}`);

test('ownership: the same owner and replica whatever the order of the members', () => {
  for (const t of topics.slice(0, 200)) {
    const a = ownerAndReplica(t, ids);
    const b = ownerAndReplica(t, [...ids].reverse());
    assert.equal(a, b);
    assert.ok(a[0] !== null && a[1] !== null && a[0] !== a[1]);
  }
  assert.equal(ownerAndReplica('room:x', ['solo']), ['solo', null]);
  assert.equal(ownerAndReplica('room:x', []), [null, null]);
});

test('ownership: when the owner leaves, its replica owns the topic (the replica takeover needs no election)', () => {
  for (const t of topics) {
    const [owner, replica] = ownerAndReplica(t, ids);
    assert.is(ownerAndReplica(t, ids.filter((i) => i !== owner))[0], replica, t);
  }
});

test('ownership: a member that joins takes only topics it scores highest on; the others keep their owner', () => {
  const before = new Map(topics.map((t) => [t, ownerAndReplica(t, ids)[0]]));
  let moved = 0;
  for (const t of topics) {
    const now = ownerAndReplica(t, [...ids, 'node6'])[0];
    if (now !== before.get(t)) {
      assert.is(now, 'node6');
      moved++;
    }
  }
  // About a sixth move; each of the five keeps a share (not a statement of speed).
  assert.ok(moved > topics.length / 12 && moved < topics.length / 3, `${moved} moved`);
  const share = new Map<string, number>();
  for (const o of before.values()) share.set(o!, (share.get(o!) ?? 0) + 1);
  for (const id of ids) assert.ok((share.get(id) ?? 0) > topics.length / 10, `${id}: ${share.get(id)}`);
});

test('forwards: an origin\'s numbers are taken in order; repeats are duplicates, a gap waits for a resend', () => {
  const o = new TopicOrder();
  assert.is(o.verdict('a/1', 7), 'new'); // an origin not remembered starts anywhere
  o.noteOrigin('a/1', 7, 64);
  assert.is(o.verdict('a/1', 7), 'duplicate');
  assert.is(o.verdict('a/1', 3), 'duplicate');
  assert.is(o.verdict('a/1', 9), 'out-of-order');
  assert.is(o.verdict('a/1', 8), 'new');
  o.noteOrigin('a/1', 5, 64); // never goes back
  assert.is(o.origins.get('a/1'), 7);
  o.noteOrigin('', 1, 64); // a re-sent tail has no origin
  assert.is(o.origins.has(''), false);
});

test('an owner that refused older forwards (not the owner yet) does not take a newer one first: the origin says where it resumes', () => {
  // The origin forwarded 0..428 while this node did not think itself the owner; once it is,
  // the origin's newest publish (429) may arrive before the resends of the older ones. Taken
  // as it came, it made 0..428 duplicates, and their publishers had been told they succeeded.
  const o = new TopicOrder();
  o.resumeFrom('a/1', 0, 64); // forward 429 says: nothing before 0 is done
  assert.is(o.verdict('a/1', 429), 'out-of-order');
  assert.is(o.verdict('a/1', 0), 'new');
  // An origin whose earlier numbers were ordered by a previous owner this node did not hear:
  // it jumps to where the origin stands (never back).
  const p = new TopicOrder();
  p.noteOrigin('a/1', 3, 64);
  p.resumeFrom('a/1', 11, 64);
  assert.is(p.verdict('a/1', 11), 'new');
  p.resumeFrom('a/1', 2, 64);
  assert.is(p.origins.get('a/1'), 10);
});

test('forwards: at most maxOrderedOrigins origins per topic, the least recently updated forgotten', () => {
  const o = new TopicOrder();
  for (let i = 0; i < 10; i++) o.noteOrigin(`n${i}`, 1, 4);
  assert.equal([...o.origins.keys()], ['n6', 'n7', 'n8', 'n9']);
  o.noteOrigin('n6', 2, 4);
  o.noteOrigin('n10', 1, 4);
  assert.equal([...o.origins.keys()], ['n8', 'n9', 'n6', 'n10']);
});

test('confirm: a message back ordered lets go of it and every earlier one, and gives back its except', () => {
  const o = new TopicOrder();
  const me = {};
  for (let s = 1; s <= 4; s++) o.pending.push({ seq: s, record: Buffer.alloc(10), except: s === 3 ? me : null, done: null, firstAt: 0, sentAt: 0 });
  const c = o.confirm(3);
  assert.is(c.except, me);
  assert.is(c.freed, 30);
  assert.equal(o.pending.map((p) => p.seq), [4]);
  assert.equal(c.done.map((p) => p.seq), [1, 2, 3], 'the forwards let go, for their publishers to be told');
  assert.equal(o.confirm(2), { except: null, freed: 0, done: [] });
  assert.ok(!o.idle);
  o.confirm(4);
  assert.ok(o.idle);
});

test('book: bounded; only idle topics are forgotten', () => {
  const book = new OrderBook(3);
  const busy = book.get('a');
  busy.pending.push({ seq: 1, record: Buffer.alloc(1), except: null, done: null, firstAt: 0, sentAt: 0 });
  book.get('b');
  book.get('c');
  book.get('d'); // over the bound: 'b', the least recently used idle one, goes; 'a' is busy
  assert.equal([...book.topics.keys()].sort(), ['a', 'c', 'd']);
  assert.is(book.get('a'), busy);
});

test.run();
