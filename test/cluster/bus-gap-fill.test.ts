// Gap filling on the mesh bus (docs/cluster.md, "Filling gaps"): a node that missed ordered
// messages while the owner's link to it was down asks for them and applies them in order; a gap
// that cannot be filled is applied with the skip, and the topic's subscribers are told.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MeshLimits } from '../../src/cluster/bus/mesh.js';
import { ownerAndReplica } from '../../src/cluster/bus/ordering.js';
import { FrameRecorder as Recorder } from '../helpers/recorder.js';
import type { HistoryOptions } from '../../src/pubsub/history.js';
import { KEY_A, historyNode, until } from './bus-helpers.js';
import type { HistoryNode } from './bus-helpers.js';
import { LinkAuth } from '../../src/cluster/bus/auth.js';
import { MESH_AUTH_HEADER, MESH_SUBPROTOCOL } from '../../src/cluster/bus/bus-config.js';
import { encodeForward, parseAcceptorRecords } from '../../src/cluster/bus/mesh-wire.js';
import type { OrderingSink } from '../../src/cluster/bus/mesh-wire.js';
import { WebSocket } from '../../src/client/websocket.js';
import { encodeBusRecord } from '../../src/pubsub/bus-record.js';


type Node = HistoryNode;
const node = historyNode;

/** Two nodes, `a` owning the returned topic; `b`'s subscriber records what it gets. */
async function pair(history: HistoryOptions, limits: Partial<MeshLimits> = {}): Promise<{ a: Node; b: Node; topic: string; sub: Recorder }> {
  const a = await node('A', history, limits);
  const b = await node('B', history, limits);
  let i = 0;
  while (ownerAndReplica(`room:${i}`, ['A', 'B'])[0] !== 'A') i++;
  const topic = `room:${i}`;
  a.membership.set([{ id: 'B', url: b.url }]);
  b.membership.set([{ id: 'A', url: a.url }]);
  a.mesh.start();
  b.mesh.start();
  await until(() => [a, b].every((n) => n.mesh.links().every((l) => l.state === 'synced') && n.mesh.links().length === 1), 5000, 'links up');
  const sub = new Recorder();
  b.server.pubsub.subscribe(sub, topic);
  b.server.pubsub.onRestart = (_t, position, reason) => `resync ${reason} ${position.offset}`;
  return { a, b, topic, sub };
}

/** Cuts a's link to b (b's link to a stays up), publishes `during` on a, and links a to b again. */
async function cutWhile(a: Node, b: Node, topic: string, during: string[]): Promise<void> {
  a.membership.set([]);
  await until(() => a.mesh.links().length === 0, 5000, "a's link to b closed");
  for (const m of during) a.server.publish(topic, m);
  a.membership.set([{ id: 'B', url: b.url }]);
  await until(() => a.mesh.links()[0]?.state === 'synced', 5000, "a's link to b back");
}

async function stop(...nodes: Node[]): Promise<void> {
  for (const n of nodes) {
    await n.mesh.close();
    await n.server.close(1000);
  }
}

const HISTORY = { maxMessages: 100, maxBytes: 1 << 20, maxAgeMs: 0 };

test('ordered messages missed while the owner\'s link was down are filled: every message once, in order, no skip, no resync', async () => {
  const { a, b, topic, sub } = await pair(HISTORY);
  try {
    for (const m of ['m1', 'm2', 'm3']) a.server.publish(topic, m);
    await until(() => sub.payloads.length === 3, 5000, 'm1..m3 at b');
    await cutWhile(a, b, topic, ['m4', 'm5']);
    a.server.publish(topic, 'm6');
    a.server.publish(topic, 'm7');
    await until(() => sub.payloads.length >= 7, 5000, 'm4..m7 at b');
    assert.equal(sub.payloads, ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7']);
    const s = b.mesh.stats;
    assert.equal({ fills: s.fills, fillsFailed: s.fillsFailed, orderGaps: s.orderGaps, reorderBytes: s.reorderBytes }, { fills: 1, fillsFailed: 0, orderGaps: 0, reorderBytes: 0 });
    assert.is(a.mesh.stats.fillsServed, 1);
    // b's history is whole: a client that saw m2 recovers m3..m7 there.
    const h = b.server.pubsub.historyOf(topic)!;
    assert.is(h.recover({ epoch: h.epoch, offset: 2 }, Date.now()).recovered && h.size, 7);
  } finally {
    await stop(a, b);
  }
});

test('a gap the owner holds only in part (older ones trimmed there): what it holds is applied, the skip is told to subscribers before it', async () => {
  const { a, b, topic, sub } = await pair({ maxMessages: 2, maxBytes: 1 << 20, maxAgeMs: 0 });
  try {
    a.server.publish(topic, 'm1');
    await until(() => sub.payloads.length === 1, 5000, 'm1 at b');
    await cutWhile(a, b, topic, ['m2', 'm3', 'm4', 'm5']); // a keeps m4, m5 only
    a.server.publish(topic, 'm6');
    await until(() => sub.payloads.includes('m6'), 5000, 'm6 at b');
    assert.equal(sub.payloads, ['m1', 'resync gap 3', 'm4', 'm5', 'm6']);
    assert.equal({ fills: b.mesh.stats.fills, fillsFailed: b.mesh.stats.fillsFailed, orderGaps: b.mesh.stats.orderGaps }, { fills: 1, fillsFailed: 1, orderGaps: 1 });
  } finally {
    await stop(a, b);
  }
});

test('a node whose history started late (restarted) catches up from the owner before a recovery, once its link is up: older messages go into its history, not to its subscribers', async () => {
  const { a, b, topic, sub } = await pair(HISTORY);
  try {
    await cutWhile(a, b, topic, ['m1', 'm2', 'm3', 'm4']); // b has no history of the topic yet
    const epoch = a.server.pubsub.position(topic)!.epoch;
    a.server.publish(topic, 'm5');
    await until(() => sub.payloads.length === 1, 5000, 'm5 at b');
    const h = b.server.pubsub.historyOf(topic)!;
    assert.is(h.recover({ epoch, offset: 1 }, Date.now()).recovered, false, 'b started at m5');
    // b's own link to a is still coming back (a dropped it with the membership): the catch-up waits for it.
    await b.server.pubsub.catchUp(topic, { epoch, offset: 1 });
    const r = h.recover({ epoch, offset: 1 }, Date.now());
    assert.ok(r.recovered);
    assert.is(r.recovered && r.messages, 4);
    assert.equal(sub.payloads, ['m5'], 'the catch-up went to the history only');
    assert.is(b.mesh.stats.fills, 0);
    // A position of an epoch the owner does not have: nothing to fetch, the recovery fails as before (bounded).
    await b.server.pubsub.catchUp(topic, { epoch: 'gone', offset: 3 });
    assert.is(h.recover({ epoch: 'gone', offset: 3 }, Date.now()).recovered, false);
  } finally {
    await stop(a, b);
  }
});

test('a restarted owner holds no line of its topic: it fetches the tail before ordering, so a publish made on it continues the epoch (no epoch-changed)', async () => {
  const { a, b, topic, sub } = await pair(HISTORY);
  let a2: Node | null = null;
  try {
    for (const m of ['m1', 'm2', 'm3']) a.server.publish(topic, m);
    await until(() => sub.payloads.length === 3, 5000, 'm1..m3 at b');
    const epoch = b.server.pubsub.position(topic)!.epoch;
    // a stops (a deploy): b, its replica, continues the epoch.
    b.membership.set([]);
    await stop(a);
    b.server.publish(topic, 'm4');
    await until(() => sub.payloads.length === 4, 10_000, 'm4 ordered by b');
    // a comes back, empty, and owns the topic again; the first publish is made on it.
    a2 = await node('A', HISTORY);
    a2.membership.set([{ id: 'B', url: b.url }]);
    b.membership.set([{ id: 'A', url: a2.url }]);
    a2.mesh.start();
    await until(() => [a2!, b].every((n) => n.mesh.links()[0]?.state === 'synced'), 5000, 'links up');
    a2.server.publish(topic, 'm5');
    await until(() => sub.payloads.length >= 5, 10_000, 'm5 at b');
    assert.equal(sub.payloads, ['m1', 'm2', 'm3', 'm4', 'm5']);
    // The replica may deliver m5 before its owner applies it (after the replica's ack).
    await until(() => a2!.server.pubsub.position(topic)?.offset === 5, 5000, 'm5 applied at a2');
    assert.equal(a2.server.pubsub.position(topic), { epoch, offset: 5 });
    assert.is(a2.mesh.stats.tails, 1);
    // The tail went into a2's history, in front: a client that saw m2 recovers m3..m5 there.
    const r = a2.server.pubsub.historyOf(topic)!.recover({ epoch, offset: 2 }, Date.now());
    assert.is(r.recovered && r.messages, 3);
  } finally {
    await stop(b, ...(a2 === null ? [] : [a2]));
  }
});

test('a publish to a history topic is told its position once it came back ordered (the owner and its replica hold it); one not ordered within forwardTimeoutMs is told unavailable, one over maxPendingForwardBytes busy', async () => {
  const { a, b, topic } = await pair(HISTORY, { forwardTimeoutMs: 1500, forwardRetryMs: 100, ownerHandoffMs: 50, maxPendingForwardBytes: 200 });
  try {
    const outcomes: string[] = [];
    const told = (what: string) => (position: { epoch: string; offset: number } | null, failure: string | null) => {
      outcomes.push(`${what}: ${failure ?? `${position?.offset} here ${b.server.pubsub.position(topic)?.offset}`}`);
    };
    b.server.pubsub.publish(topic, 'm1', false, null, null, told('m1'));
    await until(() => outcomes.length === 1, 5000, 'm1 told');
    // b is the replica: told once its history holds the message, which the owner ordered (and delivers on b's ack).
    assert.equal(outcomes, ['m1: 1 here 1']);
    await until(() => a.server.pubsub.position(topic)?.offset === 1, 5000, 'm1 at the owner');
    b.server.pubsub.publish(topic, 'x'.repeat(300), false, null, null, told('big'));
    assert.equal(outcomes[1], 'big: busy', 'over maxPendingForwardBytes: told at once');
    // The owner goes, and b still counts it a member: its forward waits, then is given up.
    await a.mesh.close();
    b.server.pubsub.publish(topic, 'm2', false, null, null, told('m2'));
    await until(() => outcomes.length === 3, 5000, 'm2 told');
    assert.equal(outcomes[2], 'm2: unavailable');
    // A bus that closed tells at once.
    await b.mesh.close();
    b.server.pubsub.publish(topic, 'm3', false, null, null, told('m3'));
    assert.equal(outcomes[3], 'm3: unavailable');
  } finally {
    await stop(a, b);
  }
});

test('the first publishes to a new history topic from a node that does not own it are ordered as soon as the owner knows the line, not when they are resent', async () => {
  // A resend period longer than the test: only the owner keeping the forwards orders them in time.
  const { a, b, topic, sub } = await pair(HISTORY, { forwardRetryMs: 60_000 });
  try {
    const told: Array<number | null> = [];
    for (const m of ['m1', 'm2', 'm3']) b.server.pubsub.publish(topic, m, false, null, null, (p) => told.push(p?.offset ?? null));
    await until(() => told.length === 3, 10_000, 'the three publishes told');
    assert.equal(told, [1, 2, 3]);
    await until(() => sub.payloads.length === 3, 5000, 'delivered on b');
    assert.equal(sub.payloads, ['m1', 'm2', 'm3']);
    assert.is(a.server.pubsub.position(topic)?.offset, 3);
    assert.is(a.mesh.stats.forwardRetries, 0);
    assert.is(b.mesh.stats.forwardRetries, 0, 'nothing resent');
  } finally {
    await stop(a, b);
  }
});

test('forwards beyond maxWaitingForwardBytes are not kept by an owner that does not know the line yet: their origin resends them', async () => {
  const { a, b, topic, sub } = await pair(HISTORY, { forwardRetryMs: 300, maxWaitingForwardBytes: 1 });
  try {
    const told: Array<number | null> = [];
    for (const m of ['m1', 'm2']) b.server.pubsub.publish(topic, m, false, null, null, (p) => told.push(p?.offset ?? null));
    await until(() => told.length === 2, 10_000, 'the two publishes told');
    assert.equal(told, [1, 2]);
    await until(() => sub.payloads.length === 2, 5000, 'delivered on b');
    assert.ok(b.mesh.stats.forwardRetries > 0, 'resent by their origin');
  } finally {
    await stop(a, b);
  }
});

test('a replica that missed messages still waiting for its ack gets them from the owner (they are in no history yet): no resync', async () => {
  // The owner's link to the replica holds little (records beyond it are dropped) and the owner waits long for acks.
  const { a, b, topic, sub } = await pair(HISTORY, { maxLinkBufferBytes: 2048, ackTimeoutMs: 10_000 });
  try {
    a.server.publish(topic, 'm0');
    await until(() => sub.payloads.length === 1, 5000, 'm0 at b');
    const big = (i: number) => `m${i} ${'x'.repeat(110)}`; // under 126 bytes: the recorder reads short frames
    for (let i = 1; i <= 20; i++) a.server.publish(topic, big(i)); // one tick: most of their records to b are dropped
    await until(() => a.mesh.stats.dropped > 0, 5000, 'records to the replica dropped');
    await new Promise((r) => setTimeout(r, 50));
    a.server.publish(topic, big(21)); // the replica sees the gap, and asks the owner
    await until(() => sub.payloads.length >= 22 || b.mesh.stats.fillsFailed > 0, 5000, 'm1..m21 at b');
    assert.is(b.mesh.stats.fillsFailed, 0, 'no gap given up');
    assert.equal(sub.payloads, ['m0', ...Array.from({ length: 21 }, (_, i) => big(i + 1))]);
    assert.is(a.mesh.stats.unreplicated, 0, 'the replica acked them');
  } finally {
    await stop(a, b);
  }
});

/**
 * An origin of forwards written by hand (node id C, not a member): it sends Forward records on
 * its own link to `url` and records the Origins answers it gets back.
 */
async function fakeOrigin(to: string, url: string): Promise<{ forward(topic: string, seq: number, text: string, from?: number): void; origins: string[]; close(): void }> {
  const origins: string[] = [];
  const ws = new WebSocket(url, [MESH_SUBPROTOCOL], { headers: { [MESH_AUTH_HEADER]: new LinkAuth([KEY_A]).sign('C', to).header } });
  const none = (): void => {};
  const sink: OrderingSink = { onForward: none, onOrdered: none, onAck: none, onFillRequest: none, onFillEnd: none, onTailRequest: none, onTail: none, onOrigins: (topic, o) => origins.push(...o.map(([origin, seq]) => `${topic} ${origin}#${seq}`)) };
  ws.onmessage = (ev) => void parseAcceptorRecords(ev.data as Buffer, 1024, { onHello: none, onAdd: none, onRemove: none, onSynced: none }, sink);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = (ev) => reject(ev.error);
  });
  return {
    forward: (topic, seq, text, from = seq) => ws.send(encodeForward({ topic, origin: 'C/1', seq, known: { epoch: '', offset: 0 }, from, record: encodeBusRecord(null, text) })),
    origins,
    close: () => ws.close(),
  };
}

/** Quick handoffs and fills, for tests where a node joins an owner that is alone. */
const JOIN_LIMITS = { ownerHandoffMs: 50, fillTimeoutMs: 200, forwardRetryMs: 100 };

/** B alone, past fillTimeoutMs (it may start a line), subscribed to a topic that A will own once it joins. */
async function aloneB(): Promise<{ b: Node; sub: Recorder; topic: string }> {
  let i = 0;
  while (ownerAndReplica(`room:${i}`, ['A', 'B'])[0] !== 'A') i++;
  const topic = `room:${i}`;
  const b = await node('B', HISTORY, JOIN_LIMITS);
  b.mesh.start();
  const sub = new Recorder();
  b.server.pubsub.subscribe(sub, topic);
  await new Promise((r) => setTimeout(r, 300));
  return { b, sub, topic };
}

test('a publish ordered by an owner that never delivered it back to its origin is not ordered again by the next owner when the origin resends it (the tail says which origins it holds)', async () => {
  // B alone orders the topic; origin C's publish is ordered there, and the Ordered record never reaches C (B has no link to it).
  const { b, sub, topic } = await aloneB();
  const toB = await fakeOrigin('B', b.url);
  let a: Node | null = null;
  try {
    toB.forward(topic, 1, 'm1');
    await until(() => sub.payloads.length === 1, 5000, 'm1 ordered by b');
    // A joins and owns the topic: it takes the line from B's tail, then C resends its forward to it.
    a = await joinerOf(b);
    // The first resend makes A ask for the tail (refused meanwhile); the next one comes once A holds the line.
    const toA = await fakeOrigin('A', a.url);
    await new Promise((r) => setTimeout(r, 100)); // past ownerHandoffMs
    toA.forward(topic, 1, 'm1');
    await until(() => a!.server.pubsub.position(topic)?.offset === 1 && a!.mesh.stats.tails === 1, 5000, "b's tail at a");
    await new Promise((r) => setTimeout(r, 50));
    toA.forward(topic, 1, 'm1');
    toA.forward(topic, 2, 'm2');
    await until(() => sub.payloads.includes('m2'), 5000, 'm2 at b');
    assert.equal(sub.payloads, ['m1', 'm2'], 'm1 once');
    assert.equal(b.server.pubsub.position(topic)?.offset, 2);
    // ... and C is told that its resent forward was ordered already (it would wait for it until forwardTimeoutMs).
    await until(() => toA.origins.length > 0, 5000, 'a tells c that its forward was ordered already');
    assert.equal(toA.origins, [`${topic} C/1#1`]);
    toA.close();
  } finally {
    toB.close();
    await stop(b, ...(a === null ? [] : [a]));
  }
});

test('a catch-up is answered on the asking node\'s own link: the answering node needs no link back to it (a restarted node its peers have not redialled yet)', async () => {
  const { a, b, topic } = await pair(HISTORY);
  try {
    const epoch = a.server.pubsub.position(topic)?.epoch ?? '';
    // a's link to b goes and stays away; b's link to a stays up.
    a.membership.set([]);
    await until(() => a.mesh.links().length === 0 && b.mesh.inboundPeers().length === 0, 5000, "a's link to b closed");
    for (const m of ['m1', 'm2', 'm3']) a.server.publish(topic, m);
    const at = a.server.pubsub.position(topic)!;
    assert.is(at.offset, 3);
    assert.is(b.server.pubsub.historyOf(topic)?.size ?? 0, 0, 'b missed m1..m3');
    await b.server.pubsub.catchUp(topic, { epoch: at.epoch, offset: 0 });
    assert.is(b.server.pubsub.historyOf(topic)?.size, 3, 'm1..m3 fetched into b\'s history');
    assert.ok(epoch === '' || epoch === at.epoch);
  } finally {
    await stop(a, b);
  }
});

/** A node A that joins `b` (alone until then) and owns the topic from now on; linked both ways. */
async function joinerOf(b: Node): Promise<Node> {
  const a = await node('A', HISTORY, JOIN_LIMITS);
  a.membership.set([{ id: 'B', url: b.url }]);
  b.membership.set([{ id: 'A', url: a.url }]);
  a.mesh.start();
  await until(() => a.mesh.links()[0]?.state === 'synced', 5000, 'a linked to b');
  return a;
}

/** A new node C linked to `b` only (b, linked to `a`, links to it too): it can ask nobody else. */
async function newcomerOf(a: Node, b: Node): Promise<Node> {
  const c = await node('C', HISTORY);
  c.membership.set([{ id: 'B', url: b.url }]);
  b.membership.set([{ id: 'A', url: a.url }, { id: 'C', url: c.url }]);
  c.mesh.start();
  await until(() => c.mesh.links()[0]?.state === 'synced', 5000, 'c linked to b');
  return c;
}

test('a forward an owner refuses before it holds the line marks only what precedes the origin\'s oldest unconfirmed forward as done: the older ones are ordered when resent, not taken for duplicates', async () => {
  const { b, sub, topic } = await aloneB();
  b.server.publish(topic, 'm0');
  await until(() => sub.payloads.length === 1, 5000, 'm0 ordered by b');
  let a: Node | null = null;
  try {
    a = await joinerOf(b);
    const toA = await fakeOrigin('A', a.url);
    await new Promise((r) => setTimeout(r, 100)); // past ownerHandoffMs
    // C's forwards 1..3 are all unconfirmed; only 3 is resent first (its retry came due), and A refuses it while it asks for the tail.
    toA.forward(topic, 3, 'm3', 1);
    await until(() => a!.mesh.stats.tails === 1 && a!.server.pubsub.position(topic)?.offset === 1, 5000, "b's tail at a");
    await new Promise((r) => setTimeout(r, 50));
    for (let s = 1; s <= 3; s++) toA.forward(topic, s, `m${s}`, 1);
    await until(() => sub.payloads.length >= 4, 5000, 'm1..m3 at b');
    assert.equal(sub.payloads, ['m0', 'm1', 'm2', 'm3']);
    assert.equal(toA.origins, [], 'none of them was taken for a duplicate');
    toA.close();
  } finally {
    await stop(b, ...(a === null ? [] : [a]));
  }
});

test('a catch-up answered by a node whose history starts just after the client\'s last message (it joined the line later) fills the history in front: the client recovers, no trimmed', async () => {
  const { a, b, topic } = await pair(HISTORY);
  const restarted: Node[] = [];
  try {
    for (const m of ['m1', 'm2', 'm3']) a.server.publish(topic, m);
    await until(() => b.server.pubsub.position(topic)?.offset === 3, 5000, 'm1..m3 at b');
    const epoch = b.server.pubsub.position(topic)!.epoch;
    // b restarts: its history starts at m4.
    a.membership.set([]);
    await stop(b);
    const b2 = await node('B', HISTORY);
    restarted.push(b2);
    a.membership.set([{ id: 'B', url: b2.url }]);
    b2.membership.set([{ id: 'A', url: a.url }]);
    b2.mesh.start();
    await until(() => [a, b2].every((n) => n.mesh.links()[0]?.state === 'synced'), 5000, 'links up');
    for (const m of ['m4', 'm5']) a.server.publish(topic, m);
    await until(() => b2.server.pubsub.position(topic)?.offset === 5, 5000, 'm4, m5 at b2');
    assert.is(b2.server.pubsub.historyOf(topic)!.firstOffset, 4);
    // A restarted node caught up for a client at m5 (it holds m5 only), then for one whose last message is m3, from b2 only.
    const c = await newcomerOf(a, b2);
    restarted.push(c);
    await c.server.pubsub.catchUp(topic, { epoch, offset: 5 });
    assert.equal(c.server.pubsub.position(topic), { epoch, offset: 5 });
    await c.server.pubsub.catchUp(topic, { epoch, offset: 3 });
    const r = c.server.pubsub.historyOf(topic)!.recover({ epoch, offset: 3 }, Date.now());
    assert.ok(r.recovered, `recovered (${JSON.stringify(r)})`);
    assert.is(r.recovered && r.messages, 2);
  } finally {
    await stop(a, ...restarted);
  }
});

/**
 * Runs `check` on a newcomer `c` of a pair whose topic holds m1..m5 in `epoch` (c holds none of
 * it: a node that just started, which a recovering client lands on).
 */
async function onNewcomerOfFive(check: (c: Node, topic: string, epoch: string) => Promise<void>): Promise<void> {
  const { a, b, topic } = await pair(HISTORY);
  const restarted: Node[] = [];
  try {
    for (const m of ['m1', 'm2', 'm3', 'm4', 'm5']) a.server.publish(topic, m);
    await until(() => b.server.pubsub.position(topic)?.offset === 5, 5000, 'm1..m5 at b');
    const c = await newcomerOf(a, b);
    restarted.push(c);
    await check(c, topic, b.server.pubsub.position(topic)!.epoch);
  } finally {
    await stop(a, b, ...restarted);
  }
}

test('catch-ups for two positions at once: the older one is fetched too (the newer one does not bring it)', async () => {
  await onNewcomerOfFive(async (c, topic, epoch) => {
    await Promise.all([c.server.pubsub.catchUp(topic, { epoch, offset: 4 }), c.server.pubsub.catchUp(topic, { epoch, offset: 1 })]);
    const r = c.server.pubsub.historyOf(topic)!.recover({ epoch, offset: 1 }, Date.now());
    assert.ok(r.recovered, `recovered from the older position (${JSON.stringify(r)})`);
    assert.is(r.recovered && r.messages, 4);
  });
});

test('catch-ups from positions of two epochs at once: one of an epoch nobody holds does not end the current one\'s early', async () => {
  await onNewcomerOfFive(async (c, topic, epoch) => {
    const [old, current] = await Promise.all([c.server.pubsub.catchUp(topic, { epoch: 'gone-epoch', offset: 0 }), c.server.pubsub.catchUp(topic, { epoch, offset: 2 })]);
    const r = c.server.pubsub.historyOf(topic)!.recover({ epoch, offset: 2 }, Date.now());
    assert.ok(r.recovered, `recovered from the current epoch's position (${JSON.stringify(r)})`);
    assert.is(r.recovered && r.messages, 3);
    assert.equal([old, current], [true, true], 'both answered');
  });
});

test('a catch-up asks the next node when one holds none of the topic (the owner restarted too)', async () => {
  const ids = ['A', 'B', 'C'];
  let i = 0;
  while (ownerAndReplica(`room:${i}`, ids).join() !== 'A,B') i++;
  const topic = `room:${i}`;
  const link = (...nodes: Node[]) => {
    for (const n of nodes) n.membership.set(nodes.filter((o) => o !== n).map((o) => ({ id: o.id, url: o.url })));
  };
  const up = (...nodes: Node[]) => until(() => nodes.every((n) => n.mesh.links().length === nodes.length - 1 && n.mesh.links().every((l) => l.state === 'synced')), 5000, 'links up');
  const a = await node('A', HISTORY);
  const b = await node('B', HISTORY);
  const c = await node('C', HISTORY);
  const restarted: Node[] = [];
  try {
    link(a, b, c);
    for (const n of [a, b, c]) n.mesh.start();
    await up(a, b, c);
    for (const m of ['m1', 'm2', 'm3']) b.server.publish(topic, m);
    await until(() => c.server.pubsub.historyOf(topic)?.size === 3, 5000, 'm1..m3 everywhere');
    const epoch = c.server.pubsub.position(topic)!.epoch;
    // The owner and the third node come back empty; only b, the replica, holds the topic.
    b.membership.set([]);
    await stop(a, c);
    const a2 = await node('A', HISTORY);
    const c2 = await node('C', HISTORY);
    restarted.push(a2, c2);
    link(a2, b, c2);
    for (const n of [a2, c2]) n.mesh.start();
    await up(a2, b, c2);
    await c2.server.pubsub.catchUp(topic, { epoch, offset: 0 });
    assert.is(a2.server.pubsub.historyOf(topic)?.size ?? 0, 0, 'the owner holds none of it');
    assert.is(c2.server.pubsub.historyOf(topic)?.size, 3, 'fetched from the replica');
  } finally {
    await stop(b, ...restarted);
  }
});

test.run();
