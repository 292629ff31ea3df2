import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomLoss } from '../../src/cluster/gossip/faults.js';
import type { MemberInfo } from '../../src/cluster/gossip/transport.js';
import { seededRandom } from '../../src/cluster/gossip/math.js';
import { sleep, stopAll, udpCluster, waitFor } from './helpers.js';

// 10 nodes on real UDP, every datagram lost with probability 10% (so pings and acks alike),
// for a bounded time: suspicions happen, refutations answer them, nobody is declared dead.

const RUN_MS = 12_000;

test('10% random loss both ways on 10 nodes: no live node is ever declared dead', async () => {
  const nodes = await udpCluster(10, 'x', {}, (i) => ({ faults: randomLoss(0.1, seededRandom(100 + i)) }));
  const deaths: string[] = [];
  for (const n of nodes) n.on('dead', (m: MemberInfo) => deaths.push(`${n.name} declared ${m.name} dead`));
  try {
    assert.ok((await waitFor(() => nodes.every((n) => n.liveMembers().length === 10), 5000)) >= 0, 'formed despite loss');
    await sleep(RUN_MS);
    const drops = nodes.reduce((s, n) => s + n.counters.faultDrops, 0);
    const sent = nodes.reduce((s, n) => s + n.counters.packetsSent, 0);
    const suspicions = nodes.reduce((s, n) => s + n.counters.suspicions, 0);
    const refutations = nodes.reduce((s, n) => s + n.counters.refutations, 0);
    assert.ok(drops / sent > 0.07 && drops / sent < 0.13, `loss rate ${(drops / sent).toFixed(3)}`);
    assert.equal(deaths, []);
    assert.ok(nodes.every((n) => n.liveMembers().length === 10));
    console.log(`  ${sent} packets, ${drops} lost, ${suspicions} suspicions, ${refutations} refutations, 0 deaths`);
  } finally {
    await stopAll(nodes);
  }
});

test.run();
