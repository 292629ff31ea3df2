// History that survives a node (docs/cluster.md, "Cluster-wide positions"): three `murmur
// serve` processes on the mesh bus behind HAProxy, subscribers through the balancer, one
// publisher on a node that neither owns nor replicates the topic, 200 messages a second. The
// topic's owner is killed with SIGKILL mid-stream: its subscribers reconnect elsewhere with
// their last position and every subscriber ends with every message exactly once, in order,
// without being told to resync. Then the same with the node of some subscribers that is not
// the owner.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startCluster, stopAll, LbClient, until, sleep, tagged, checkExactlyOnce, Node } from './lb.js';
import type { Cluster } from './lb.js';
import { MurmurClient } from '../../src/app/public/murmur-client.js';
import type { WebSocketConstructor } from '../../src/app/public/murmur-client.js';
import { WebSocket } from '../../src/client/index.js';
import { ownerAndReplica } from '../../src/cluster/bus/ordering.js';

const SUBSCRIBERS = 30;
const RATE = 200;
const MESSAGES = 800;
/**
 * From the kill to the last message: LAN failure detection (about 6 s, under 10 s at 3 nodes,
 * docs/cluster.md) plus a resend period, plus the rest of the stream; generous for a loaded machine.
 */
const SETTLE_MS = 30_000;

test.after(stopAll);

/** A publisher connected straight to one node: message n = {p: 0, n}, RATE a second. */
async function publishStream(node: Node, topic: string, onHalf: () => Promise<void>): Promise<void> {
  const pub = new MurmurClient({ url: `ws://127.0.0.1:${node.spec.port}/ws`, WebSocket: WebSocket as unknown as WebSocketConstructor, storage: null, requestTimeoutMs: 10_000 });
  await until(() => pub.state === 'open', 10_000, 'the publisher is connected');
  const start = performance.now();
  for (let n = 0; n < MESSAGES; n++) {
    void pub.publish(topic, { p: 0, n });
    if (n === MESSAGES / 4) await onHalf();
    const due = start + ((n + 1) * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
  }
  await sleep(500);
  pub.close();
}

async function run(cluster: Cluster, topic: string, victim: (owner: Node, replica: Node, other: Node) => Node, publisherOn: (owner: Node, replica: Node, other: Node) => Node): Promise<void> {
  const ids = cluster.nodes.map((n) => n.spec.id);
  const [ownerId, replicaId] = ownerAndReplica(topic, ids);
  const owner = cluster.nodes.find((n) => n.spec.id === ownerId)!;
  const replica = cluster.nodes.find((n) => n.spec.id === replicaId)!;
  const other = cluster.nodes.find((n) => n !== owner && n !== replica)!;
  const killed = victim(owner, replica, other);

  const subs: LbClient[] = [];
  for (let i = 0; i < SUBSCRIBERS; i++) subs.push(new LbClient(i, cluster.url));
  await until(() => subs.every((c) => c.open), 20_000, 'subscribers open through HAProxy');
  await Promise.all(subs.map((c) => c.client.subscribe(topic)));

  await publishStream(publisherOn(owner, replica, other), topic, async () => {
    await killed.kill9();
  });
  await until(() => subs.every((c) => tagged(c.received, topic).length >= MESSAGES), SETTLE_MS, 'every subscriber has every message').catch(() => undefined);

  const moved = subs.filter((c) => c.opens.length > 1).length;
  assert.ok(moved > 0, 'some subscribers were on the killed node and reconnected elsewhere');
  for (const c of subs) {
    const problem = checkExactlyOnce(tagged(c.received, topic), 1, MESSAGES);
    assert.is(problem, null, `subscriber ${c.index} (${c.opens.length} connections): ${problem}`);
    assert.equal(c.resyncs, [], `subscriber ${c.index} was told to resync`);
  }
  // One position space: every message has the same {epoch, offset} for every subscriber.
  const first = new Map<number, string>();
  for (const c of subs) {
    for (const m of c.received) {
      if (m.topic !== topic) continue;
      const key = `${m.epoch}/${m.offset}`;
      const n = (m.data as { n: number }).n;
      const seen = first.get(n);
      if (seen === undefined) first.set(n, key);
      else assert.is(key, seen, `message ${n} has one position on every node`);
    }
  }
  for (const c of subs) c.client.close();
}

test('mesh: kill -9 of the owner of a busy history topic mid-stream loses and repeats nothing, no resync', async () => {
  const cluster = await startCluster('mesh', 3);
  await run(cluster, 'room:owner-dies', (owner) => owner, (_o, _r, other) => other);
});

test('mesh: kill -9 of a subscriber\'s node (not the owner) mid-stream: its subscribers recover elsewhere, no resync', async () => {
  await stopAll();
  const cluster = await startCluster('mesh', 3);
  await run(cluster, 'room:sub-node-dies', (_o, _r, other) => other, (owner) => owner);
});

test.run();
