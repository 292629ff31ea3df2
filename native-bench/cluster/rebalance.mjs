#!/usr/bin/env node
// Rebalancing and overload figures of `murmur serve` behind HAProxy (leastconn), with the
// cluster harness of the test suite (dist/test/lb: real node processes, HAProxy, MurmurClients).
//
//  - scale-out: 3 nodes hold --clients clients while a publisher posts 4 messages a second;
//    1, 2 and 4 nodes are added at once; time until every node holds 1/n +/- 5%, the
//    clients' reconnections (total and the busiest second), and the publisher's messages each
//    client lost or got twice.
//  - churn: 4 balanced nodes, --churn clients a second leave and others arrive, for --minutes;
//    connections shed by rebalancing (should stay near zero) and every node's event-loop delay
//    p99 (one-second windows) under this load: the measurement behind --overload-lag-ms.
//  - flood: 16 publishers post to the room of every client as fast as the API answers for
//    10 s; the event-loop delay p99 of a saturated node.
//
// Usage: npm run build && node native-bench/cluster/rebalance.mjs [--clients 3000]
//   [--adds 1,2,4] [--minutes 5] [--churn 10] [--phases scaleout,churn,flood] [--bus mesh|redis]
// (--bus redis starts a redis-server for the run, as the test suite's Redis cluster does)
import { fileURLToPath } from 'node:url';

const lb = await import(fileURLToPath(new URL('../../dist/test/lb/lb.js', import.meta.url)));
const bal = await import(fileURLToPath(new URL('../../dist/test/lb/balance.js', import.meta.url)));

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : args[i + 1];
};
const CLIENTS = Number(opt('clients', 3000));
const ADDS = String(opt('adds', '1,2,4')).split(',').map(Number);
const MINUTES = Number(opt('minutes', 5));
const CHURN = Number(opt('churn', 10));
const PHASES = String(opt('phases', 'scaleout,churn,flood')).split(',');
const BUS = String(opt('bus', 'mesh'));

const lagOf = async (node) => {
  const body = (await lb.httpGet(`${node.http}/metrics`)).body;
  const m = /^murmur_event_loop_lag_p99_seconds ([\d.e-]+)$/m.exec(body);
  return m === null ? NaN : Number(m[1]) * 1000;
};

async function scaleOut(adds) {
  const cluster = await lb.startCluster(BUS, 3, { balance: 'leastconn', spare: adds, args: ['--rebalance'] });
  const clients = await bal.connectMany(cluster, CLIENTS);
  try {
    const publisher = new bal.Publisher(cluster, 250);
    const start = Date.now();
    await Promise.all(cluster.nodes.slice(3).map((n) => n.start()));
    const ms = await bal.untilBalanced(cluster.nodes, clients, 300_000);
    const balancedAt = Date.now();
    await bal.untilShedStops(cluster.nodes);
    const stoppedS = Math.round((Date.now() - balancedAt - 3000) / 100) / 10;
    await publisher.stop();
    await bal.settle(clients);
    const rc = bal.reconnectsPerSecond(clients, start);
    const shed = await bal.shedTotals(cluster.nodes);
    const d = bal.deliveryFigures(clients, publisher);
    const s = await bal.shares(cluster.nodes);
    return { adds, nodes: 3 + adds, clients: CLIENTS, balancedS: Math.round(ms / 100) / 10, shedStopsAfterS: stoppedS, counts: s.counts, shed: shed.rebalance, reconnections: rc.total, maxReconnectsPerS: rc.max, messages: publisher.sent, duplicated: d.duplicated, lost: d.lost, clientsWithLoss: d.clientsWithLoss };
  } finally {
    for (const c of clients) c.client.close();
    await lb.stopAll();
  }
}

async function churnAndFlood() {
  const cluster = await lb.startCluster(BUS, 4, { balance: 'leastconn', args: ['--rebalance'] });
  let clients = await bal.connectMany(cluster, CLIENTS);
  const out = {};
  try {
    if (PHASES.includes('churn')) {
      await bal.untilBalanced(cluster.nodes, clients, 60_000);
      const shedBefore = (await bal.shedTotals(cluster.nodes)).rebalance;
      const lags = [];
      const end = Date.now() + MINUTES * 60_000;
      let next = clients.length;
      let churned = 0;
      let lastLag = 0;
      while (Date.now() < end) {
        for (let i = 0; i < CHURN / 4; i++) {
          const k = Math.floor(Math.random() * clients.length);
          clients[k].client.close();
          const c = new lb.LbClient(next++, cluster.url);
          void c.client.subscribe(bal.ROOM).catch(() => {});
          clients[k] = c;
          churned++;
        }
        if (Date.now() - lastLag >= 1000) {
          lastLag = Date.now();
          for (const n of cluster.nodes) lags.push(await lagOf(n));
        }
        await lb.sleep(250);
      }
      const shed = (await bal.shedTotals(cluster.nodes)).rebalance - shedBefore;
      lags.sort((a, b) => a - b);
      const s = await bal.shares(cluster.nodes);
      out.churn = { minutes: MINUTES, churnPerS: CHURN, churned, shed, counts: s.counts, lagP50Ms: lags[Math.floor(lags.length / 2)], lagP99Ms: lags[Math.floor(lags.length * 0.99)], lagMaxMs: lags[lags.length - 1] };
      console.log(JSON.stringify({ churn: out.churn }));
    }
    if (PHASES.includes('flood')) {
      await lb.until(() => clients.every((c) => c.open), 30_000, 'clients open');
      const url = `http://127.0.0.1:${cluster.lbPort}/api/publish`;
      let posted = 0;
      let running = true;
      const lags = [];
      const workers = Array.from({ length: 16 }, async () => {
        while (running) {
          await lb.httpPost(url, JSON.stringify({ topic: bal.ROOM, data: { flood: posted++ } }), { authorization: `Bearer ${lb.API_KEY}` });
        }
      });
      const end = Date.now() + 10_000;
      while (Date.now() < end) {
        await lb.sleep(1000);
        for (const n of cluster.nodes) lags.push(await lagOf(n));
      }
      running = false;
      await Promise.all(workers);
      lags.sort((a, b) => a - b);
      out.flood = { seconds: 10, posted, deliveries: posted * clients.length, lagP50Ms: lags[Math.floor(lags.length / 2)], lagMaxMs: lags[lags.length - 1] };
      console.log(JSON.stringify({ flood: out.flood }));
    }
  } finally {
    for (const c of clients) c.client.close();
    await lb.stopAll();
  }
  return out;
}

const results = { date: new Date().toISOString(), clients: CLIENTS, scaleOut: [] };
if (PHASES.includes('scaleout')) {
  for (const k of ADDS) {
    const r = await scaleOut(k);
    console.log(JSON.stringify(r));
    results.scaleOut.push(r);
  }
}
if (PHASES.includes('churn') || PHASES.includes('flood')) Object.assign(results, await churnAndFlood());
console.log(JSON.stringify(results, null, 2));
process.exit(0);
