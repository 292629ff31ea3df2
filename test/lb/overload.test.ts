// Overload behind HAProxy: one of three nodes gets a CPU hog that grows with its sockets
// (test/lb/hog.ts). It becomes overloaded: /readyz 503 (HAProxy takes it out), upgrades
// answered 503 OVERLOADED, connections shed with 1013 at the bounded rate until its
// event-loop delay is under the threshold; the other nodes absorb its users; then it takes
// traffic again. Rebalancing is off here: this is overload protection alone.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import { startCluster, stopAll, until, httpGet, loudly } from './lb.js';
import type { Cluster, LbClient } from './lb.js';
import { closeClients } from './scenarios.js';
import { connectMany, shares, shedTotals } from './balance.js';

const CLIENTS = 600;
const HOG = fileURLToPath(new URL('./hog.js', import.meta.url));
/** 400 us per socket every 100 ms: 200 sockets keep the loop 80% busy (delay p99 about 80 ms), 100 sockets 40%. */
const HOG_US_PER_SOCKET = 400;
const LAG_MS = 50;

const t = suite('overload behind HAProxy: a node with a busy event loop sheds until it recovers');
let cluster: Cluster;
let clients: LbClient[] = [];

t.before(loudly(async () => {
  cluster = await startCluster('mesh', 3, { balance: 'leastconn', args: ['--rebalance=off', '--overload-lag-ms', String(LAG_MS), '--shed-rate', '10'] });
  const hot = cluster.nodes[1]!;
  await hot.stop();
  hot.execArgv = ['--import', HOG];
  hot.env = { MURMUR_TEST_HOG_US_PER_SOCKET: String(HOG_US_PER_SOCKET) };
  await hot.start();
  await until(async () => (await hot.readyz()) === 200, 10_000, 'the hog node ready');
  clients = await connectMany(cluster, CLIENTS, 200);
}));

t.after(async () => {
  closeClients(clients);
  await stopAll();
});

t('the hot node stops taking upgrades, sheds with 1013 until its delay is under the threshold, the others absorb its users, and it takes traffic again', async () => {
  const hot = cluster.nodes[1]!;
  const before = await shares(cluster.nodes);
  assert.ok(before.counts[1]! >= CLIENTS / 4, `the hot node holds ${before.counts[1]} before`);
  hot.child!.kill('SIGUSR2');
  const startedAt = Date.now();
  await until(async () => (await hot.readyz()) === 503, 20_000, 'the hot node says it is not ready');
  const refused = await httpGet(`${hot.http}/ws`, { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' });
  assert.is(refused.status, 503, 'an upgrade straight to the hot node is refused');
  // recovers by shedding: ready again, holding fewer
  await until(async () => (await hot.readyz()) === 200, 60_000, 'the hot node recovers');
  const recoveredMs = Date.now() - startedAt;
  await until(() => clients.every((c) => c.open), 30_000, 'every shed client reconnected elsewhere');
  const after = await shares(cluster.nodes);
  const shed = await shedTotals(cluster.nodes);
  const metrics = (await httpGet(`${hot.http}/metrics`)).body;
  const lag = Number(/^murmur_event_loop_lag_p99_seconds ([\d.]+)$/m.exec(metrics)?.[1]) * 1000;
  console.log(`  overloaded node: ${before.counts[1]} -> ${after.counts[1]} connections, ${shed.overload} shed with 1013, ready again after ${Math.round(recoveredMs / 100) / 10} s with event-loop delay p99 ${lag} ms; others ${before.counts.join(', ')} -> ${after.counts.join(', ')}`);
  assert.ok(shed.overload > 0 && shed.rebalance === 0);
  assert.ok(after.counts[1]! < before.counts[1]!, 'the hot node holds fewer');
  assert.is(after.counts.reduce((a, b) => a + b, 0), CLIENTS, 'every client is connected somewhere');
  assert.ok(after.counts[0]! > before.counts[0]! && after.counts[2]! > before.counts[2]!, 'the others absorbed its users');
  assert.match(metrics, /^murmur_overloaded 0$/m);
  assert.match(metrics, /^murmur_overloads_total [1-9]/m);
  for (const c of clients) for (const x of c.closes) assert.is(x.code, 1013, `client ${c.index}: ${JSON.stringify(c.closes)}`);
  // the rate: 10% of at most 200 connections a second, one second of tokens held
  assert.ok(shed.overload <= 20 * (recoveredMs / 1000 + 1), `${shed.overload} shed in ${recoveredMs} ms`);
  hot.child!.kill('SIGUSR2'); // the hog stops
});

t.run();
