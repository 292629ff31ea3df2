import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PartitionFaults } from '../../src/cluster/gossip/faults.js';
import { GossipNode } from '../../src/cluster/gossip/node.js';
import { FAST, sleep, stopAll, udpCluster, waitFor } from './helpers.js';

// A partition on real sockets, longer than the suspicion timeout, then healed. Each side
// declares the other dead and stops probing it; only the periodic reconnect push-pull with
// a dead member crosses, and the refutations it provokes re-form the cluster.

const P = FAST.probeIntervalMs!;
const TIMER_SLACK = 500;

test('a partition longer than the suspicion timeout, healed: the cluster re-forms within the bound', async () => {
  const faults = Array.from({ length: 6 }, () => new PartitionFaults());
  const nodes = await udpCluster(6, 'q', {}, (i) => ({ faults: faults[i] }));
  try {
    assert.ok((await waitFor(() => nodes.every((n) => n.liveMembers().length === 6), 2000)) >= 0);
    const sideA = nodes.slice(0, 3);
    const sideB = nodes.slice(3);
    const block = (from: GossipNode[], to: GossipNode[]) => {
      for (const n of from) for (const o of to) faults[nodes.indexOf(n)]!.blocked.add(o.address);
    };
    block(sideA, sideB);
    block(sideB, sideA);
    const minSuspicion = 4 * P; // n = 6: log10(6) < 1
    const splitBound = 6 * P + 6 * minSuspicion + 1000;
    const split = await waitFor(() => nodes.every((n) => n.liveMembers().length === 3), splitBound);
    assert.ok(split >= 0, 'each side declared the other dead');
    await sleep(FAST.gossipToTheDeadMs! + 200); // longer than gossip-to-the-dead: only reconnects can cross
    for (const f of faults) f.blocked.clear();
    // Bound: a reconnect attempt from some node (one interval), then a push-pull round for
    // the news to reach everyone, plus the refutation gossip.
    const bound = FAST.reconnectIntervalMs! + FAST.pushPullIntervalMs! + TIMER_SLACK;
    const t = await waitFor(() => nodes.every((n) => n.liveMembers().length === 6), bound);
    assert.ok(t >= 0, `re-formed within ${bound} ms`);
    console.log(`  split after ${split.toFixed(0)} ms, re-formed ${t.toFixed(0)} ms after healing (bound ${bound})`);
  } finally {
    await stopAll(nodes);
  }
});

test.run();
