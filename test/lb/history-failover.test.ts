// History that survives a node (docs/cluster.md, "Cluster-wide positions"): three `murmur
// serve` processes on the mesh bus behind HAProxy, subscribers through the balancer, one
// publisher on a node that neither owns nor replicates the topic, 200 messages a second. The
// topic's owner is killed with SIGKILL mid-stream: its subscribers reconnect elsewhere with
// their last position and every subscriber ends with every message exactly once, in order,
// without being told to resync. Then the same with the node of some subscribers that is not
// the owner, SIGTERM of the owner, and a rolling restart of every node (the publisher through
// HAProxy too).
import { test } from 'uvu';
import { startCluster, stopAll } from './lb.js';
import { direct, run } from './history-stream.js';
import { restartInTurn } from './scenarios.js';

test.after(stopAll);

test('mesh: kill -9 of the owner of a busy history topic mid-stream loses and repeats nothing, no resync', async () => {
  const cluster = await startCluster('mesh', 3);
  await run(cluster, 'room:owner-dies', direct((_o, _r, other) => other), (owner) => owner.kill9());
});

test('mesh: kill -9 of a subscriber\'s node (not the owner) mid-stream: its subscribers recover elsewhere, no resync', async () => {
  await stopAll();
  const cluster = await startCluster('mesh', 3);
  await run(cluster, 'room:sub-node-dies', direct((owner) => owner), (_o, _r, other) => other.kill9());
});

test('mesh: SIGTERM of the owner mid-stream (a deploy): the replica continues the epoch, no loss, no resync', async () => {
  await stopAll();
  const cluster = await startCluster('mesh', 3);
  await run(cluster, 'room:owner-drains', direct((_o, _r, other) => other), (owner) => owner.stop());
});

test('mesh: a rolling restart (each node SIGTERMed and started again in turn) under steady publishing: every message once, in order, no resync', async () => {
  await stopAll();
  const cluster = await startCluster('mesh', 3);
  // The publisher goes through HAProxy too: its node is restarted as well.
  await run(cluster, 'room:rolling', () => cluster.url, () => restartInTurn(cluster));
});

test.run();
