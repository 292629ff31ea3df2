// Positions on the mesh bus are the cluster's from a topic's first subscribe (docs/cluster.md,
// "Recovery"): a node that holds no message of an ordered topic asks its owner where the line
// stands before it gives a subscriber a position; before the line's first message that is the
// epoch the owner reserved for it, which its replica holds too. A client whose node dies before
// the first message reaches it then recovers anywhere without a false `epoch-changed`.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ownerAndReplica } from '../../src/cluster/bus/ordering.js';
import type { StreamPosition } from '../../src/pubsub/history.js';
import { historyNode, until } from './bus-helpers.js';
import type { HistoryNode as Node } from './bus-helpers.js';

const HISTORY = { maxMessages: 100, maxBytes: 1 << 20, maxAgeMs: 0 };

/** A topic owned by `owner` with `replica` its replica among `ids`, and among `ids` and D (a node that joins later). */
function topicOf(ids: string[], owner: string, replica: string): string {
  let i = 0;
  const is = (members: string[]) => ownerAndReplica(`room:${i}`, members).join() === `${owner},${replica}`;
  while (!is(ids) || !is([...ids, 'D'])) i++;
  return `room:${i}`;
}

/** Runs `check` with D, a node that joins `nodes` after they started; D stops after it. */
async function withJoiner(nodes: Node[], check: (d: Node) => Promise<void>): Promise<void> {
  const d = await historyNode('D', HISTORY);
  try {
    link(...nodes, d);
    await up(...nodes, d);
    await check(d);
  } finally {
    await stop(d);
  }
}

function link(...nodes: Node[]): void {
  for (const n of nodes) n.membership.set(nodes.filter((o) => o !== n).map((o) => ({ id: o.id, url: o.url })));
}

async function up(...nodes: Node[]): Promise<void> {
  for (const n of nodes) n.mesh.start();
  await until(() => nodes.every((n) => n.mesh.links().length === nodes.length - 1 && n.mesh.links().every((l) => l.state === 'synced')), 5000, 'links up');
}

async function stop(...nodes: Node[]): Promise<void> {
  for (const n of nodes) {
    await n.mesh.close();
    await n.server.close(1000);
  }
}

/** Three linked nodes A (the topic's owner), B (its replica) and C. */
async function three(): Promise<{ a: Node; b: Node; c: Node; topic: string }> {
  const topic = topicOf(['A', 'B', 'C'], 'A', 'B');
  const a = await historyNode('A', HISTORY);
  const b = await historyNode('B', HISTORY);
  const c = await historyNode('C', HISTORY);
  link(a, b, c);
  await up(a, b, c);
  return { a, b, c, topic };
}

/** The position a subscribe on `n` is given: after the line is settled there (as `murmur serve` does). */
async function subscribePosition(n: Node, topic: string): Promise<StreamPosition> {
  assert.is(await (n.server.pubsub.catchUp(topic, null) ?? Promise.resolve(true)), true, 'the line is learned');
  return n.server.pubsub.position(topic)!;
}

test('a subscribe before a topic\'s first message is given the same position on every node', async () => {
  const { a, b, c, topic } = await three();
  try {
    const onC = await subscribePosition(c, topic);
    assert.is(onC.offset, 0);
    assert.equal(await subscribePosition(b, topic), onC, 'the replica gives the same position');
    assert.equal(await subscribePosition(a, topic), onC, 'the owner gives the same position');
  } finally {
    await stop(a, b, c);
  }
});

test('the first message comes in the epoch subscribers were given, also when it is published on a node that holds no history of the topic', async () => {
  const { a, b, c, topic } = await three();
  try {
    const given = await subscribePosition(c, topic);
    assert.is(b.server.pubsub.historyOf(topic), null, 'B holds no history of the topic');
    b.server.publish(topic, 'm1');
    await until(() => a.server.pubsub.position(topic)?.offset === 1, 5000, 'm1 at the owner');
    assert.equal(a.server.pubsub.position(topic), { epoch: given.epoch, offset: 1 });
  } finally {
    await stop(a, b, c);
  }
});

test('the owner dies before the first message: its replica orders it in the epoch subscribers were given, and a recovery from the position before it replays it', async () => {
  const { a, b, c, topic } = await three();
  try {
    const given = await subscribePosition(c, topic);
    assert.is(given.offset, 0);
    // A goes (a crash as its peers see it: gone from the membership, links closed).
    b.membership.set([{ id: 'C', url: c.url }]);
    c.membership.set([{ id: 'B', url: b.url }]);
    await stop(a);
    assert.is(b.mesh.ownerOf(topic)[0], 'B');
    c.server.publish(topic, 'm1');
    await until(() => b.server.pubsub.position(topic)?.offset === 1, 10_000, 'm1 ordered by the replica');
    assert.equal(b.server.pubsub.position(topic), { epoch: given.epoch, offset: 1 }, 'the reserved epoch, not one of the replica own');
    // A client given that position on C recovers on B (C died too): m1 is replayed, no epoch-changed.
    const r = b.server.pubsub.historyOf(topic)!.recover(given, Date.now());
    assert.ok(r.recovered, JSON.stringify(r));
    assert.is(r.recovered && r.messages, 1);
  } finally {
    await stop(b, c);
  }
});

test('the owner dies before the first message while its replica publishes: a recovery from the reserved position on another node succeeds before the death is seen, and the replica orders at once when it takes over (it holds the line)', async () => {
  const { a, b, c } = await three();
  // Owned by A with B its replica while A is a member (with D too), then by B.
  let i = 0;
  const owners = (members: string[]) => ownerAndReplica(`room:${i}`, members).join();
  while (owners(['A', 'B', 'C']) !== 'A,B' || owners(['A', 'B', 'C', 'D']) !== 'A,B' || owners(['B', 'C', 'D'])[0] !== 'B') i++;
  const topic = `room:${i}`;
  try {
    const given = await subscribePosition(c, topic);
    // A dies; B and C still count it as a member (not detected yet). B publishes: the forward
    // waits for the dead owner, and B's history of the topic (made by the publish) holds nothing.
    await a.mesh.close();
    await until(() => b.mesh.links().every((l) => l.id !== 'A' || l.state !== 'synced'), 5000, "B's link to A down");
    b.server.publish(topic, 'm1');
    assert.is(b.server.pubsub.position(topic)?.offset ?? 0, 0);
    const d = await historyNode('D', HISTORY);
    try {
      link(b, c, d);
      d.membership.set([a, b, c].map((o) => ({ id: o.id, url: o.url })));
      d.mesh.start();
      await until(() => d.mesh.links().filter((l) => l.state === 'synced').length === 2, 5000, "D's links to B and C");
      assert.is(await d.server.pubsub.catchUp(topic, given), true);
      const r = d.server.pubsub.historyOf(topic)?.recover(given, Date.now());
      assert.ok(r?.recovered, JSON.stringify(r));
      // The death is seen: B, the replica, owns the topic and orders m1 in the reserved epoch without asking for a tail.
      for (const n of [b, c, d]) n.membership.set([b, c, d].filter((o) => o !== n).map((o) => ({ id: o.id, url: o.url })));
      await until(() => b.server.pubsub.position(topic)?.offset === 1, 5000, 'm1 ordered by B');
      assert.equal(b.server.pubsub.position(topic), { epoch: given.epoch, offset: 1 });
      assert.is(b.mesh.stats.tails, 0, 'the replica held the line: no tail asked');
    } finally {
      await stop(d);
    }
  } finally {
    await stop(b, c);
    await a.server.close(1000);
  }
});

test('a subscribe on a node that never heard a topic with messages is given the line\'s last position; a recovery from it there replays nothing', async () => {
  const { a, b, c, topic } = await three();
  try {
    for (const m of ['m1', 'm2', 'm3']) a.server.publish(topic, m);
    await until(() => b.server.pubsub.position(topic)?.offset === 3, 5000, 'm1..m3 at the replica');
    const line = a.server.pubsub.position(topic)!;
    await withJoiner([a, b, c], async (d) => {
      assert.is(d.server.pubsub.historyOf(topic), null, 'D never heard the topic');
      const onD = await subscribePosition(d, topic);
      assert.equal(onD, line);
      const r = d.server.pubsub.historyOf(topic)!.recover(onD, Date.now());
      assert.ok(r.recovered);
      assert.is(r.recovered && r.messages, 0);
    });
  } finally {
    await stop(a, b, c);
  }
});

test('a recovery from the position before the first message, on a node that holds nothing of the topic, succeeds: with nothing, then with what came', async () => {
  const { a, b, c, topic } = await three();
  try {
    const given = await subscribePosition(c, topic);
    // On B, the replica, which holds the reservation only (no history of the topic): nothing to wait for.
    assert.is(b.server.pubsub.catchUp(topic, given), null);
    const r = b.server.pubsub.historyOf(topic)?.recover(given, Date.now());
    assert.ok(r?.recovered, JSON.stringify(r));
    for (const m of ['m1', 'm2']) a.server.publish(topic, m);
    await until(() => a.server.pubsub.position(topic)?.offset === 2, 5000, 'm1, m2 ordered');
    // A fourth node, new: fetches them from the owner.
    await withJoiner([a, b, c], async (d) => {
      assert.is(await d.server.pubsub.catchUp(topic, given), true);
      const fetched = d.server.pubsub.historyOf(topic)?.recover(given, Date.now());
      assert.ok(fetched?.recovered, JSON.stringify(fetched));
      assert.is(fetched.recovered && fetched.messages, 2);
    });
  } finally {
    await stop(a, b, c);
  }
});

test('a subscribe whose owner cannot be asked (its link is down) is not given a position of the node\'s own: the catch-up fails within fillTimeoutMs', async () => {
  const topic = topicOf(['A', 'B'], 'A', 'B');
  const a = await historyNode('A', HISTORY);
  const b = await historyNode('B', HISTORY, { fillTimeoutMs: 400 });
  try {
    link(a, b);
    await up(a, b);
    // B keeps A as a member, but A's listener refuses it from now on: B's link to A is down.
    await a.mesh.close();
    await until(() => b.mesh.links().every((l) => l.state !== 'synced'), 5000, 'link down');
    const t0 = Date.now();
    assert.is(await b.server.pubsub.catchUp(topic, null), false);
    assert.ok(Date.now() - t0 < 2000);
  } finally {
    await stop(b);
    await a.server.close(1000);
  }
});

test.run();
