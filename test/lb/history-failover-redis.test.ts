// History that survives a node on the Redis bus (docs/cluster.md, "With the Redis bus"): three
// `murmur serve` processes with `--bus redis` behind HAProxy, subscribers through the balancer,
// one publisher on one node, 200 messages a second. Redis orders and keeps the topic's messages,
// so a node that goes (SIGKILL or SIGTERM) loses nothing: its subscribers reconnect elsewhere
// with their last position and every subscriber ends with every message exactly once, in order,
// at one position on every node, without being told to resync.
import { test } from 'uvu';
import { startCluster, stopAll } from './lb.js';
import type { Node } from './lb.js';
import { direct, run } from './history-stream.js';

test.after(stopAll);

// On Redis no node owns a topic: the three roles only name three distinct nodes.
const publisherOn = direct((first) => first);

test('redis: kill -9 of a subscriber\'s node mid-stream: its subscribers recover elsewhere, nothing lost or repeated, no resync', async () => {
  const cluster = await startCluster('redis', 3);
  await run(cluster, 'room:redis-sub-node-dies', publisherOn, (_p, _q, other) => other.kill9());
});

test('redis: SIGTERM of a subscriber\'s node mid-stream (a deploy): the same', async () => {
  await stopAll();
  const cluster = await startCluster('redis', 3);
  await run(cluster, 'room:redis-sub-node-drains', publisherOn, (_p, second) => second.stop());
});

test('redis: kill -9 of the publisher\'s node mid-stream: what it acknowledged reaches every subscriber, once, in order, no resync', async () => {
  await stopAll();
  const cluster = await startCluster('redis', 3);
  // The publisher is on the first node, and on a live one after each reconnect.
  const firstLive = (first: Node, second: Node, third: Node) => () => `ws://127.0.0.1:${[first, second, third].find((n) => n.child !== null)!.spec.port}/ws`;
  await run(cluster, 'room:redis-publisher-node-dies', firstLive, (first) => first.kill9());
});

test.run();
