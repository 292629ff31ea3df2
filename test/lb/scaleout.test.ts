// Scale-out behind HAProxy (leastconn): three nodes hold 3,000 clients, a fourth is started;
// the three shed their excess over the cluster mean at 1% a second (1012, retry-after=0, oldest
// first) and within 60 s every node holds 25% +/- 5%. Reconnections per second stay under the
// bound the shed rate gives; no client gets a message twice or misses one (a moved client
// recovers on its new node: positions hold across nodes on the mesh bus).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startCluster, stopAll, httpGet, API_KEY, loudly } from './lb.js';
import type { Cluster, LbClient } from './lb.js';
import { closeClients } from './scenarios.js';
import { connectMany, untilBalanced, untilShedStops, reconnectsPerSecond, shedTotals, Publisher, deliveryFigures, settle, shares } from './balance.js';

/** 3,000 as the plan's scale; MURMUR_REBALANCE_CLIENTS lowers it on a machine that cannot hold them. */
const CLIENTS = Number(process.env.MURMUR_REBALANCE_CLIENTS ?? 3000);
const BALANCE_BOUND_MS = 60_000;
/** 1% (the default --shed-rate) of every connection a second, the budget's one second of tokens, and up to 0.5 s of client jitter moving reconnects into the same second: 2.5%, and one per node. */
const RECONNECTS_PER_SECOND_BOUND = Math.ceil(0.025 * CLIENTS) + 4;

const t = suite('scale-out behind HAProxy (leastconn): a 4th node takes its share');
let cluster: Cluster;
let clients: LbClient[] = [];

t.before(loudly(async () => {
  cluster = await startCluster('mesh', 3, { balance: 'leastconn', spare: 1, args: ['--rebalance'] });
  clients = await connectMany(cluster, CLIENTS);
}));

t.after(async () => {
  closeClients(clients);
  await stopAll();
});

t('a 4th node: every node holds 25% +/- 5% within 60 s, reconnections under the bound, no message lost or duplicated', async () => {
  // leastconn spreads the clients evenly, unless a health check flapped under load while they
  // connected (a node briefly down gets none): then rebalancing evens the three out first.
  const before = await shares(cluster.nodes);
  if (!before.shares.every((s) => Math.abs(s - 1 / 3) <= 0.05)) {
    console.log(`  leastconn spread the clients ${before.counts.join(', ')}: rebalancing evens them out first`);
    await untilBalanced(cluster.nodes, clients, BALANCE_BOUND_MS);
    await untilShedStops(cluster.nodes);
  }
  const shed0 = await shedTotals(cluster.nodes);
  const publisher = new Publisher(cluster, 250);
  const start = Date.now();
  await cluster.nodes[3]!.start();
  const ms = await untilBalanced(cluster.nodes, clients, BALANCE_BOUND_MS);
  await publisher.stop();
  // the shedding nodes stop once at the mean
  await untilShedStops(cluster.nodes);
  await settle(clients);
  const rc = reconnectsPerSecond(clients, start);
  const shedAll = await shedTotals(cluster.nodes);
  const shed = { rebalance: shedAll.rebalance - shed0.rebalance, overload: shedAll.overload - shed0.overload };
  const d = deliveryFigures(clients, publisher);
  const after = await shares(cluster.nodes);
  console.log(
    `  ${CLIENTS} clients, 3 -> 4 nodes: balanced in ${Math.round(ms / 100) / 10} s (${after.counts.join(', ')}); ${shed.rebalance} shed, ${rc.total} reconnections, at most ${rc.max}/s (bound ${RECONNECTS_PER_SECOND_BOUND}); ` +
      `${publisher.sent} messages: ${d.duplicated} duplicated, ${d.lost} lost by ${d.clientsWithLoss} clients`,
  );
  // every member's load summary, as /api/cluster/members and /metrics show it on node 1
  const api = await httpGet(`${cluster.nodes[0]!.http}/api/cluster/members`, { authorization: `Bearer ${API_KEY}` });
  const members = (JSON.parse(api.body) as { members: Array<{ id: string; state: string; load: { connections: number; lagMs: number; overloaded: boolean } | null }> }).members;
  for (const [i, node] of cluster.nodes.entries()) {
    const m = members.find((x) => x.id === node.spec.id);
    assert.ok(m?.load !== null && m?.load !== undefined, `${node.spec.id} gossips its load: ${api.body}`);
    assert.ok(Math.abs(m.load.connections - after.counts[i]!) <= CLIENTS * 0.05, `${node.spec.id}: gossiped ${m.load.connections}, holds ${after.counts[i]}`);
  }
  const metrics = (await httpGet(`${cluster.nodes[0]!.http}/metrics`)).body;
  assert.is((metrics.match(/^murmur_cluster_member_connections\{member="node\d"\} \d+$/gm) ?? []).length, 4, 'one figure per member in /metrics');
  assert.ok(ms <= BALANCE_BOUND_MS);
  assert.is(d.duplicated, 0, 'no message twice');
  // Positions hold across nodes (mesh bus): a moved client recovers on its new node.
  assert.is(d.lost, 0, `no message lost (${d.clientsWithLoss} clients lost some)`);
  assert.ok(rc.max <= RECONNECTS_PER_SECOND_BOUND, `${rc.max} reconnections in one second (bound ${RECONNECTS_PER_SECOND_BOUND})`);
  assert.ok(shed.rebalance >= CLIENTS / 4 - CLIENTS * 0.05, `${shed.rebalance} shed to fill a node of ${CLIENTS / 4}`);
  assert.ok(shed.rebalance <= CLIENTS / 4 + CLIENTS * 0.1, `${shed.rebalance} shed: more than the newcomer lacked`);
  const closes = clients.reduce((a, c) => a + c.closes.length, 0);
  const opens = clients.reduce((a, c) => a + c.opens.length, 0);
  console.log(`  client closes ${closes}, opens ${opens}, reconnections since the start ${rc.total}`);
  // every reconnection is a shed client coming back (the last few shed may still be on their way)
  assert.ok(rc.total <= shed.rebalance && rc.total >= shed.rebalance * 0.9, `${rc.total} reconnections for ${shed.rebalance} shed`);
  for (const c of clients) assert.ok(c.closes.every((x) => x.code === 1012), `client ${c.index} closed with ${JSON.stringify(c.closes)}`);
});

t.run();
