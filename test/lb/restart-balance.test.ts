// A rolling restart behind HAProxy (leastconn) leaves the node restarted last nearly empty;
// rebalancing brings every node back to 25% +/- 5% within 60 s of the last restart, with
// reconnections under the shed rate's bound afterwards, and no message lost or delivered twice. Then
// the short variant of the churn benchmark (native-bench/cluster/rebalance.mjs): balanced
// nodes under random churn shed (almost) nothing.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startCluster, stopAll, until, sleep, LbClient, loudly } from './lb.js';
import type { Cluster } from './lb.js';
import { closeClients, restartInTurn } from './scenarios.js';
import { connectMany, untilBalanced, untilShedStops, reconnectsPerSecond, shedTotals, Publisher, deliveryFigures, settle, shares, ROOM } from './balance.js';

const CLIENTS = Number(process.env.MURMUR_REBALANCE_CLIENTS ?? 3000);
const BALANCE_BOUND_MS = 60_000;
/** As in scaleout.test.ts: 2.5% of the connections a second, and one per node. */
const RECONNECTS_PER_SECOND_BOUND = Math.ceil(0.025 * CLIENTS) + 4;

const t = suite('rolling restart behind HAProxy (leastconn): the node restarted last takes its share again');
let cluster: Cluster;
let clients: LbClient[] = [];

t.before(loudly(async () => {
  cluster = await startCluster('mesh', 4, { balance: 'leastconn', args: ['--rebalance'] });
  clients = await connectMany(cluster, CLIENTS);
}));

t.after(async () => {
  closeClients(clients);
  await stopAll();
});

t('after a rolling restart of 4 nodes: 25% +/- 5% each within 60 s of the last restart, no message lost or duplicated', async () => {
  const publisher = new Publisher(cluster, 250);
  // a real restart takes longer than the clients' retry-after: they are all elsewhere when the node is back
  await restartInTurn(cluster, (node) => until(() => clients.every((c) => c.open), 20_000, `the clients of ${node.spec.id} moved`).then(() => undefined));
  const lastRestart = Date.now();
  const right = await shares(cluster.nodes);
  await until(() => clients.every((c) => c.open), 20_000, 'every client back after the restarts');
  const shedBefore = (await shedTotals(cluster.nodes)).rebalance;
  const ms = await untilBalanced(cluster.nodes, clients, BALANCE_BOUND_MS);
  await publisher.stop();
  await settle(clients);
  const rc = reconnectsPerSecond(clients, lastRestart + 3000); // the last drain's own reconnects (retry-after=1: 1-2 s) left out
  const shed = (await shedTotals(cluster.nodes)).rebalance;
  const d = deliveryFigures(clients, publisher);
  const after = await shares(cluster.nodes);
  console.log(
    `  ${CLIENTS} clients, after a rolling restart (${right.counts.join(', ')} right after): balanced in ${Math.round(ms / 100) / 10} s (${after.counts.join(', ')}); ` +
      `${shed} shed in all (${shed - shedBefore} after the last restart), at most ${rc.max} reconnections/s after it (bound ${RECONNECTS_PER_SECOND_BOUND}); ${publisher.sent} messages: ${d.duplicated} duplicated, ${d.lost} lost by ${d.clientsWithLoss} clients`,
  );
  assert.ok(right.counts[3]! < CLIENTS * 0.1, `the node restarted last holds ${right.counts[3]}`);
  assert.ok(shed - shedBefore >= CLIENTS * 0.15, `${shed - shedBefore} shed to fill it`);
  assert.is(d.duplicated, 0, 'no message twice');
  // Positions are cluster-wide: clients moved by the restarts and by rebalancing recover what they missed.
  assert.is(d.lost, 0, `no message lost (${d.clientsWithLoss} clients lost some)`);
  assert.ok(rc.max <= RECONNECTS_PER_SECOND_BOUND, `${rc.max} reconnections in one second (bound ${RECONNECTS_PER_SECOND_BOUND})`);
});

t('balanced nodes under random churn (20 clients a second for 20 s): rebalancing sheds next to nothing', async () => {
  await untilShedStops(cluster.nodes);
  const before = (await shedTotals(cluster.nodes)).rebalance;
  let next = clients.length;
  for (let step = 0; step < 80; step++) {
    for (let i = 0; i < 5; i++) {
      const k = Math.floor(Math.random() * clients.length);
      clients[k]!.client.close();
      const c = new LbClient(next++, cluster.url);
      void c.client.subscribe(ROOM).catch(() => {});
      clients[k] = c;
    }
    await sleep(250);
  }
  await until(() => clients.every((c) => c.open), 20_000, 'the newcomers connected');
  const shed = (await shedTotals(cluster.nodes)).rebalance - before;
  const s = await shares(cluster.nodes);
  console.log(`  churn: 400 clients replaced in 20 s, ${shed} shed by rebalancing; connections per node ${s.counts.join(', ')}`);
  assert.ok(shed <= CLIENTS * 0.01, `${shed} shed under churn on balanced nodes`);
});

t.run();
