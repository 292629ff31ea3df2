// ClusterPresence on a scripted network (no gossip, no clock): local semantics as the
// single-process store, replication by deltas, reordering, gaps repaired by pulls, restarts
// with a new epoch, dead and left nodes, bursts, oversized changes and per-node bounds.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterPresence } from '../../src/cluster/presence/store.js';
import { encodeDelta, encodeOnlineAsk, encodeSet, encodeState, encodeVersion } from '../../src/cluster/presence/presence-wire.js';
import type { OnlineResult, PresenceChange } from '../../src/cluster/presence/types.js';
import { ScriptedNet, askOnline, entry, union, view } from './presence-helpers.js';

const kinds = (cs: PresenceChange[] | undefined) => (cs ?? []).map((c) => ('topic' in c ? `${c.kind} ${c.topic} ${c.entry.conn}` : `${c.kind} ${c.user}`));

test('local: join, update, leave, bounds and online/offline behave as the single-process store', () => {
  const p = new ClusterPresence({ name: 'a', epoch: 1, limits: { maxMembers: 2, maxMetaBytes: 20, maxTopicsPerConn: 2 } });
  const log: PresenceChange[] = [];
  p.onChange((c) => log.push(c));
  p.connect('ada', 'c1');
  p.connect('ada', 'c2');
  assert.is(p.join('t', entry('ada', 'c1', { n: 1 })), 'joined');
  assert.is(p.join('t', entry('ada', 'c1', { n: 2 })), 'updated');
  assert.is(p.join('t', entry('bob', 'c3')), 'joined');
  assert.is(p.join('t', entry('cat', 'c4')), 'full');
  assert.is(p.join('u', entry('ada', 'c1', { x: 'y'.repeat(30) })), 'meta-too-large');
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.is(p.join('u', entry('ada', 'c1', cyclic)), 'meta-too-large');
  assert.is(p.join('u', entry('ada', 'c1')), 'joined');
  assert.is(p.join('v', entry('ada', 'c1')), 'too-many-topics');
  assert.equal(p.list('t').map((e) => [e.conn, e.meta]), [
    ['c1', { n: 2 }],
    ['c3', null],
  ]);
  assert.is(p.count('t'), 2);
  assert.ok(p.isOnline('ada'));
  p.disconnect('ada', 'c1');
  assert.ok(p.isOnline('ada'), 'still online through c2');
  assert.is(p.count('u'), 0, 'disconnect left every topic');
  p.disconnect('ada', 'c2');
  assert.not.ok(p.isOnline('ada'));
  assert.equal(kinds(log), ['online ada', 'join t c1', 'update t c1', 'join t c3', 'join u c1', 'leave t c1', 'leave u c1', 'offline ada']);
  assert.equal(p.stats(), { topics: 1, entries: 1, users: 0 });
});

test('replication: a node\'s changes reach another with the same events, and answers cover the cluster', () => {
  const net = new ScriptedNet();
  const a = net.add('a');
  const b = net.add('b');
  a.connect('ada', 'a.1');
  a.join('room', entry('ada', 'a.1', { name: 'Ada' }, 5));
  b.connect('bob', 'b.1');
  b.join('room', entry('bob', 'b.1'));
  net.deliver();
  for (const p of [a, b]) {
    assert.equal(view(p, ['room']), ['room a.1 ada {"name":"Ada"}', 'room b.1 bob null']);
    assert.equal(askOnline(p, ['ada', 'bob', 'cat'], () => net.deliver()), ['ada', 'bob']);
    assert.is(p.count('room'), 2);
  }
  // Users are held where they connect: b emits online/offline for its own only.
  assert.equal(kinds(net.changes.get('b')), ['online bob', 'join room b.1', 'join room a.1']);
  assert.equal(b.usersOf('a'), [], 'b holds none of a\'s users');
  assert.is(b.list('room').find((e) => e.conn === 'a.1')?.since, 5);
  a.join('room', entry('ada', 'a.1', { name: 'Ada L.' }));
  a.disconnect('ada', 'a.1');
  net.deliver();
  assert.equal(view(b, ['room']), ['room b.1 bob null']);
  assert.equal(askOnline(b, ['ada', 'bob'], () => net.deliver()), ['bob']);
  assert.equal(kinds(net.changes.get('b')).slice(3), ['update room a.1', 'leave room a.1']);
  assert.is(a.counters.pulls + b.counters.pulls, 0, 'no repair needed');
});

test('reordered deltas wait in the buffer and apply in version order, without a pull', () => {
  const net = new ScriptedNet();
  const a = net.add('a');
  const b = net.add('b');
  net.advance(1000); // the join pulls are done
  net.pulls = [];
  for (let i = 0; i < 5; i++) {
    a.join('t', entry('u', `c${i}`));
    a.flush(); // one delta per change
  }
  net.deliver((q) => [...q].reverse());
  assert.equal(view(b, ['t']), union([a, b]));
  assert.is(b.counters.deltasApplied, 5);
  net.advance(b.timing.repairDelayMs + 1);
  assert.equal(net.pulls, [], 'the gap filled before the repair delay');
});

test('a lost delta is repaired by a pull from its owner after the repair delay', () => {
  const net = new ScriptedNet();
  const a = net.add('a');
  const b = net.add('b');
  net.advance(1000);
  net.pulls = [];
  a.join('t', entry('u', 'c1'));
  a.flush();
  net.queue = []; // lost
  a.join('t', entry('u', 'c2'));
  net.deliver();
  assert.equal(view(b, ['t']), [], 'c2 waits behind the gap');
  assert.is(b.versionOf('a')?.seen, 2);
  net.advance(b.timing.repairDelayMs - 1);
  assert.equal(net.pulls, []);
  net.advance(2);
  assert.equal(net.pulls, ['b<-a']);
  assert.equal(view(b, ['t']), ['t c1 u null', 't c2 u null']);
  assert.equal(b.versionOf('a'), { epoch: 1000, version: 2, seen: 2, live: true });
});

test('a lost last delta is found through the digest of a third node and pulled from the owner', () => {
  const net = new ScriptedNet();
  const a = net.add('a');
  const b = net.add('b');
  const c = net.add('c');
  net.advance(1000);
  a.join('t', entry('u', 'c1'));
  // Only b hears it (and b's rebroadcast does not reach c either).
  net.deliver((q) => q.filter((m) => m.to !== 'c'));
  assert.equal(view(c, ['t']), []);
  net.pulls = [];
  net.get('b').delegate.mergeRemoteState?.(c.delegate.localState?.(false) ?? new Uint8Array(), false);
  c.delegate.mergeRemoteState?.(b.delegate.localState?.(false) ?? new Uint8Array(), false); // b's digest: a is at 1
  net.advance(c.timing.repairDelayMs + 1);
  assert.equal(net.pulls, ['c<-a']);
  assert.equal(view(c, ['t']), ['t c1 u null']);
});

test('a restarted node (new epoch) replaces its old entries at once; the old life\'s late deltas are ignored', () => {
  const net = new ScriptedNet();
  const a = net.add('a', { epoch: 1000 });
  const b = net.add('b');
  a.connect('ada', 'a.1');
  a.join('t', entry('ada', 'a.1'));
  a.flush();
  const late = net.queue.map((m) => m.payload);
  net.deliver();
  assert.equal(view(b, ['t']), ['t a.1 ada null']);
  // The process restarts under the same name, before anyone declared the old one dead.
  const a2 = net.add('a', { epoch: 2000 });
  net.deliver();
  assert.equal(view(b, ['t']), [], 'the new life announced itself: the old entries are gone');
  assert.equal(askOnline(b, ['ada'], () => net.deliver()), []);
  assert.equal(kinds(net.changes.get('b')).slice(-1), ['leave t a.1']);
  for (const payload of late) b.delegate.notifyMessage?.(payload);
  assert.equal(view(b, ['t']), [], 'not resurrected by late deltas of the old life');
  assert.ok(b.counters.deltasStale >= 1);
  a2.join('t', entry('ada', 'a.9'));
  net.deliver();
  assert.equal(view(b, ['t']), ['t a.9 ada null']);
  assert.is(b.versionOf('a')?.epoch, 2000);
});

test('a dead node\'s entries disappear with leave and offline events; late deltas do not bring them back; a comeback is pulled', () => {
  const net = new ScriptedNet();
  const a = net.add('a');
  const b = net.add('b');
  const c = net.add('c');
  a.connect('ada', 'a.1');
  a.join('t', entry('ada', 'a.1'));
  a.join('u', entry('ada', 'a.1'));
  c.connect('ada', 'c.1'); // ada is online elsewhere too
  net.deliver();
  a.join('v', entry('ada', 'a.1'));
  a.flush();
  const late = net.queue.filter((m) => m.to === 'b').map((m) => m.payload);
  net.queue = [];
  net.setMember('a', 'dead');
  assert.equal(view(b, ['t', 'u', 'v']), []);
  assert.equal(askOnline(b, ['ada'], () => net.deliver()), ['ada'], 'still online on c');
  assert.equal(kinds(net.changes.get('b')).slice(-2), ['leave t a.1', 'leave u a.1']);
  for (const payload of late) b.delegate.notifyMessage?.(payload);
  assert.equal(view(b, ['t', 'u', 'v']), [], 'a delta of a dead node is ignored');
  // A false positive: it refutes and is alive again; its entries come back by a pull.
  net.pulls = [];
  net.setMember('a', 'alive');
  net.advance(b.timing.joinPullJitterMs + 1);
  assert.ok(net.pulls.includes('b<-a') || net.pulls.includes('a<-b'), net.pulls.join());
  assert.equal(view(b, ['t', 'u', 'v']), ['t a.1 ada null', 'u a.1 ada null', 'v a.1 ada null']);
  c.disconnect('ada', 'c.1');
  net.setMember('a', 'left');
  net.deliver();
  assert.equal(askOnline(b, ['ada'], () => net.deliver()), []);
});

test('a node back from a false dead: an old copy of its first delta is not applied on top of nothing', () => {
  const net = new ScriptedNet();
  const a = net.add('a');
  const b = net.add('b');
  net.advance(1000);
  a.join('t', entry('u', 'c1'));
  a.flush();
  const first = net.queue.find((m) => m.to === 'b')!.payload;
  net.deliver();
  a.leave('t', 'c1');
  a.join('t', entry('u', 'c2'));
  net.deliver();
  net.setMember('a', 'dead');
  net.setMember('a', 'alive');
  const log = net.changes.get('b')!;
  log.length = 0;
  b.delegate.notifyMessage?.(first); // still circulating somewhere
  assert.equal(view(b, ['t']), [], 'held back until the full state arrives');
  net.advance(b.timing.joinPullJitterMs + 1);
  assert.equal(view(b, ['t']), ['t c2 u null']);
  assert.equal(kinds(log), ['join t c2'], 'no join and leave of c1 on the way');
});

test('a burst larger than burstBytes goes out as a version notice and peers pull the full state', () => {
  const net = new ScriptedNet();
  const a = net.add('a');
  const b = net.add('b');
  net.advance(1000);
  net.pulls = [];
  for (let i = 0; i < 3000; i++) a.join(`t${i % 7}`, entry(`u${i}`, `c${i}`, { i }));
  net.deliver();
  assert.is(a.counters.noticesSent, 2, 'the startup notice and the burst notice');
  assert.is(net.queue.length, 0);
  net.advance(b.timing.repairDelayMs + 1);
  assert.equal(net.pulls, ['b<-a']);
  const topics = Array.from({ length: 7 }, (_, i) => `t${i}`);
  assert.is(view(b, topics).length, 3000);
  assert.equal(view(b, topics), union([a, b]));
});

test('moderate batches are split into datagram-sized deltas', () => {
  const net = new ScriptedNet();
  net.maxPayloadBytes = 400;
  const a = net.add('a');
  const b = net.add('b');
  net.advance(1000);
  const sizes: number[] = [];
  for (let i = 0; i < 60; i++) a.join('room', entry(`user-${i}`, `conn-${i}`, { name: `User number ${i}` }));
  a.flush();
  for (const m of net.queue) sizes.push(m.payload.length);
  assert.ok(a.counters.deltasSent >= 6, `${a.counters.deltasSent} deltas`);
  assert.ok(Math.max(...sizes) <= 400, `largest ${Math.max(...sizes)}`);
  net.deliver();
  assert.is(b.count('room'), 60);
  assert.is(b.counters.pulls, 0);
});

test('a change too large for a datagram is not broadcast; peers get it by pulling', () => {
  const net = new ScriptedNet();
  net.maxPayloadBytes = 200;
  const a = net.add('a', { limits: { maxMetaBytes: 400 } });
  const b = net.add('b', { limits: { maxMetaBytes: 400 } });
  net.advance(1000);
  net.pulls = [];
  a.join('t', entry('u', 'c1', { bio: 'x'.repeat(300) }));
  a.join('t', entry('v', 'c2'));
  net.deliver();
  assert.is(a.counters.oversizeOps, 1);
  net.advance(b.timing.repairDelayMs + 1);
  assert.equal(net.pulls, ['b<-a']);
  assert.equal(view(b, ['t']), union([a, b]));
});

test('per-node bounds: entries and users beyond the limits are refused and counted, never stored', () => {
  const net = new ScriptedNet();
  const a = net.add('a', { limits: { maxEntriesPerNode: 10, maxUsersPerNode: 3 } });
  const b = net.add('b', { limits: { maxEntriesPerNode: 5, maxUsersPerNode: 2 } });
  for (let i = 0; i < 12; i++) {
    a.connect(`u${i}`, `c${i}`);
    a.join('t', entry(`u${i}`, `c${i}`));
  }
  assert.is(a.count('t'), 10, 'local joins beyond maxEntriesPerNode are full');
  assert.ok(a.isOnline('u11'), 'users are counted where they connect, whatever maxUsersPerNode');
  net.deliver();
  assert.is(b.count('t'), 5, 'b holds at most its own bound of a\'s entries');
  assert.is(b.usersOf('a').length, 0, 'users are never replicated');
  assert.ok(b.counters.limitDrops > 0);
  // A full state over b's bound is refused as a whole.
  const before = b.counters.statesDropped;
  const big = encodeState('a', 1000, 99, [], [['t', Array.from({ length: 6 }, (_, i) => entry('u', `x${i}`))]], []);
  b.delegate.mergeRemoteState?.(big, false);
  assert.is(b.counters.statesDropped, before + 1);
});

test('maxStateBytes: local joins that would grow the full state past it are full; leaves make room again', () => {
  const p = new ClusterPresence({ name: 'a', epoch: 1, limits: { maxStateBytes: 400, maxMembers: 1000 } });
  let joined = 0;
  for (let i = 0; i < 50; i++) if (p.join('room', entry(`user-${i}`, `conn-${i}`, { n: i })) === 'joined') joined++;
  assert.ok(joined > 3 && joined < 50, `${joined} joined`);
  assert.is(p.join('room', entry('late', 'conn-late')), 'full');
  assert.ok(p.replicationStats().stateBytes <= 400);
  p.leave('room', 'conn-0');
  assert.is(p.join('room', entry('late', 'conn-late')), 'joined');
  assert.ok(p.replicationStats().stateBytes <= 400);
  // What the budget counts is what the state encodes to.
  const encoded = p.delegate.localState?.(false) ?? new Uint8Array();
  assert.ok(encoded.length <= 400, `${encoded.length} bytes encoded`);
});

test('deltas and states of a node that is not a member are ignored; our own echoes are ignored', () => {
  const net = new ScriptedNet();
  const b = net.add('b');
  const ghost = encodeDelta('ghost', 5, 0, [encodeSet('t', entry('g', 'g.1'), null)]);
  b.delegate.notifyMessage?.(ghost);
  b.delegate.mergeRemoteState?.(encodeState('ghost', 5, 1, ['g'], [['t', [entry('g', 'g.1')]]], []), false);
  assert.is(b.count('t'), 0);
  assert.not.ok(b.isOnline('g'));
  const echo = encodeDelta('b', 1000, 0, [encodeSet('t', entry('x', 'x.1'), null)]);
  b.delegate.notifyMessage?.(echo);
  b.delegate.notifyMessage?.(encodeVersion('b', 99999, 5));
  assert.is(b.count('t'), 0);
  assert.is(b.versionOf('b')?.epoch, 1000);
});

test('duplicates (rebroadcast copies) apply once and are not passed on again', () => {
  const net = new ScriptedNet();
  const a = net.add('a');
  const b = net.add('b');
  net.add('c');
  net.deliver();
  a.join('t', entry('u', 'c1'));
  a.flush();
  const copy = net.queue.find((m) => m.to === 'b')!.payload;
  net.deliver();
  const before = b.counters.rebroadcasts;
  b.delegate.notifyMessage?.(copy);
  b.delegate.notifyMessage?.(copy);
  assert.is(b.count('t'), 1);
  assert.is(b.counters.rebroadcasts, before);
  assert.ok(b.counters.deltasDuplicate >= 2);
  assert.equal(kinds(net.changes.get('b')).filter((k) => k.startsWith('join')), ['join t c1']);
});

test('a full state replaces a node\'s entries, emitting only the differences', () => {
  const net = new ScriptedNet();
  const a = net.add('a');
  const b = net.add('b');
  a.join('t', entry('u1', 'c1', { v: 1 }));
  a.join('t', entry('u2', 'c2'));
  net.deliver();
  const log = net.changes.get('b')!;
  log.length = 0;
  b.delegate.mergeRemoteState?.(
    encodeState('a', 1000, 50, [], [['t', [entry('u1', 'c1', { v: 2 }), entry('u3', 'c3')]]], []),
    false,
  );
  assert.equal(kinds(log), ['leave t c2', 'update t c1', 'join t c3']);
  assert.is(b.versionOf('a')?.version, 50);
});

test('tombstones expire and are bounded by maxOwners', () => {
  const net = new ScriptedNet();
  const b = net.add('b', { limits: { maxOwners: 3 } });
  for (const n of ['x', 'y', 'z']) net.add(n);
  assert.ok(b.versionOf('x') !== undefined);
  net.setMember('x', 'dead');
  net.add('w'); // evicts x's tombstone
  assert.is(b.versionOf('x'), undefined);
  assert.ok(b.versionOf('w') !== undefined);
  net.setMember('y', 'left');
  net.advance(b.timing.tombstoneTtlMs + 1);
  assert.is(b.versionOf('y'), undefined);
});


test('online asks: users stay on their node; the asks of one turn share one round per node; a node that does not answer makes the answer partial', () => {
  const net = new ScriptedNet();
  const a = net.add('a');
  const b = net.add('b');
  const c = net.add('c');
  b.connect('bob', 'b.1');
  c.connect('cat', 'c.1');
  net.deliver();
  assert.equal([a.usersOf('b'), a.usersOf('c'), a.stats().users], [[], [], 0], 'a holds no user of the others');
  // Known here: answered at once, nobody asked.
  a.connect('ada', 'a.1');
  let now: string[] | null = null;
  a.askOnline(['ada'], (r) => (now = r === 'busy' ? ['busy'] : [...r.online]));
  assert.equal(now, ['ada']);
  assert.is(net.queries.length, 0);
  // Three callers in one turn: one round, one ask to each other node.
  const answers: string[][] = [];
  for (const users of [['bob'], ['cat', 'bob'], ['nobody']]) a.askOnline(users, (r) => answers.push(r === 'busy' ? ['busy'] : [...r.online].sort()));
  a.flush();
  assert.equal(net.queries.map((q) => q.to).sort(), ['b', 'c']);
  net.deliver();
  assert.equal(answers, [['bob'], ['bob', 'cat'], []]);
  assert.is(a.counters.askRounds, 1);
  assert.is(b.counters.asksAnswered + c.counters.asksAnswered, 2);
  // c stalls: after askTimeoutMs the answer is what b said, marked partial.
  net.deaf.add('c');
  let late: OnlineResult | null = null;
  a.askOnline(['bob', 'cat'], (r) => (late = r));
  net.deliver();
  assert.is(late, null, 'waits for c');
  net.advance(a.timing.askTimeoutMs);
  assert.equal(late, { online: new Set(['bob']), partial: true });
  assert.is(a.counters.askTimeouts, 1);
  // A node that dies is not waited for, and its users are gone.
  net.deaf.delete('c');
  let afterDeath: OnlineResult | null = null;
  a.askOnline(['bob', 'cat'], (r) => (afterDeath = r));
  a.flush();
  net.setMember('c', 'dead');
  net.deliver();
  assert.equal(afterDeath, { online: new Set(['bob']), partial: false });
});

test('online asks are bounded: callers waiting (busy), nodes asked at once, users per ask; a peer\'s oversized ask is dropped', () => {
  const net = new ScriptedNet();
  const limits = { maxPendingAsks: 3, maxAskStreams: 2, maxAskUsers: 4 };
  const a = net.add('a', { limits });
  for (const n of ['b', 'c', 'd', 'e']) net.add(n, { limits }).connect(`u-${n}`, `${n}.1`);
  net.deliver();
  const got: OnlineResult[] = [];
  for (let i = 0; i < 5; i++) a.askOnline([`u-${'bcde'[i % 4]}`], (r) => got.push(r));
  assert.equal(got, ['busy', 'busy'], 'callers beyond maxPendingAsks are refused at once');
  assert.is(a.counters.asksRefused, 2);
  assert.throws(() => a.askOnline(['1', '2', '3', '4', '5'], () => {}), RangeError);
  a.flush();
  assert.is(net.queries.length, 2, 'at most maxAskStreams nodes asked at once');
  net.deliver();
  assert.equal(got.slice(2).map((r) => (r === 'busy' ? 'busy' : [...r.online])), [['u-b'], ['u-c'], ['u-d']]);
  // A hostile ask of more users than maxAskUsers is dropped unanswered, counted.
  const b = net.get('b');
  assert.is(b.delegate.answerQuery?.(encodeOnlineAsk('a', 1, ['1', '2', '3', '4', '5'])), null);
  assert.is(b.counters.asksDropped, 1);
});

test('joins of many nodes at once: at most maxPullsPerTick pulls start per tick, every node is pulled, and a pull never answered is retried less and less often', () => {
  let now = 0;
  const pulls: { at: number; peer: string }[] = [];
  const p = new ClusterPresence({ name: 'me', epoch: 1, clock: () => now, random: () => 0.5, timing: { joinPullJitterMs: 0, pullRetryMs: 1000, maxPullsPerTick: 4 } });
  p.attach({
    broadcast: () => {},
    maxPayloadBytes: 1300,
    // Started, never answered: a peer too loaded to send its state back.
    syncWith: (peer) => {
      pulls.push({ at: now, peer });
      return true;
    },
    query: () => true,
    isLive: () => true,
  });
  for (let i = 0; i < 20; i++) p.onMember('join', `n${i}`);
  for (let tick = 0; tick < 5; tick++) {
    p.tick(now);
    assert.ok(pulls.filter((x) => x.at === now).length <= 4, `tick ${tick}: at most 4 pulls`);
    now += 100;
  }
  assert.is(new Set(pulls.map((x) => x.peer)).size, 20, 'every joined node pulled within five ticks');
  // Sixty seconds on: each node's retries back off (1 s twice, then 2, 4 and 8 s, jittered to
  // half here): about ten pulls of each, not sixty.
  while (now < 60_000) {
    p.tick(now);
    now += 100;
  }
  const ofN0 = pulls.filter((x) => x.peer === 'n0').map((x) => x.at);
  assert.ok(ofN0.length >= 5 && ofN0.length <= 16, `n0 pulled ${ofN0.length} times in 60 s`);
  const gaps = ofN0.slice(1).map((t, i) => t - ofN0[i]!);
  assert.ok(gaps[gaps.length - 1]! >= 3_900, `the last retries wait about 4 s or more (gaps ${gaps.join(', ')})`);
});

test.run();
