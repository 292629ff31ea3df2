#!/usr/bin/env node
// Deterministic simulation of murmur's gossip membership (the same SwimNode the UDP runtime
// drives, on a simulated network with virtual time). Build first: npx tsc -p tsconfig.json
//
//   node native-bench/sim/run.mjs                      sizes 10,100,1000; false positives at n=100
//   node native-bench/sim/run.mjs --sizes=10,100,2000 --trials=3 --fp-size=100 --fp-seconds=300
//   node native-bench/sim/run.mjs --skip-fp | --skip-convergence | --skip-slow
//   node native-bench/sim/run.mjs --slow-delay=1000,3000 --slow-count=5
//
// Prints two tables (convergence, false positives). Every number is virtual time, so the
// result does not depend on the machine; the same --seed gives the same table.
import { SimNetwork } from '../../dist/src/cluster/gossip/simnet.js';
import { DEFAULT_LAN_CONFIG } from '../../dist/src/cluster/gossip/gossip-config.js';
import { seededRandom } from '../../dist/src/cluster/gossip/math.js';

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k, v ?? 'true'];
  }),
);
const sizes = (args.sizes ?? '10,100,1000').split(',').map(Number);
const trials = Number(args.trials ?? 5);
const seed = Number(args.seed ?? 1);
const fpSize = Number(args['fp-size'] ?? 100);
const fpSeconds = Number(args['fp-seconds'] ?? 300);
const fpLosses = (args['fp-loss'] ?? '1,5,10,25').split(',').map(Number);
const slowDelays = (args['slow-delay'] ?? '1000').split(',').map(Number);
const slowCount = Number(args['slow-count'] ?? 5);

const LAN = { ...DEFAULT_LAN_CONFIG };
const P = LAN.probeIntervalMs;
// A LAN: 0.5-1.5 ms one way.
const NET = { latencyMs: 0.5, jitterMs: 1, encryption: false, keepEvents: false };

const VARIANTS = {
  swim: { awarenessMaxMultiplier: 1, suspicionMaxTimeoutMult: 1, nacks: false },
  lhm: { awarenessMaxMultiplier: 8, suspicionMaxTimeoutMult: 1, nacks: true },
  lifeguard: {},
};

const fmt = (x, d = 1) => (x < 0 || !Number.isFinite(x) ? 'n/a' : x.toFixed(d));
const wall = () => performance.now();

function buildCluster(n, extra = {}) {
  const net = new SimNetwork({ seed, config: { ...LAN, ...extra.config }, ...NET, ...extra.net });
  for (let i = 0; i < n; i++) net.addNode(`n${i}`);
  net.preloadAll();
  return net;
}

function totalBytes(net) {
  return net.stats.bytesSent + net.stats.streamBytes;
}

function convergence(n) {
  const started = wall();
  const net = buildCluster(n);
  net.run(5 * P); // staggered timers settle
  // Steady state: probes, acks, push-pull; no news.
  const window = n >= 1000 ? 60_000 : 120_000;
  const udp0 = net.stats.bytesSent;
  const tcp0 = net.stats.streamBytes;
  net.run(window);
  const udpBps = ((net.stats.bytesSent - udp0) * 8) / n / (window / 1000);
  const tcpBps = ((net.stats.streamBytes - tcp0) * 8) / n / (window / 1000);

  // Join: a new node joins through one seed; when does every node know it?
  const knows = new Set();
  let victim = null;
  let firstSuspect = -1;
  const dead = new Set();
  let t0 = 0;
  net.onEvent = (host, e) => {
    if (e.member.name === 'joiner' && (e.type === 'join' || e.type === 'alive')) knows.add(host.name);
    if (victim !== null && e.member.name === victim) {
      if (e.type === 'suspect' && firstSuspect < 0) firstSuspect = net.now - t0;
      if (e.type === 'dead') dead.add(host.name);
    }
  };
  const bytesBefore = totalBytes(net);
  const timeBefore = net.now;
  net.addNode('joiner');
  net.join('joiner', ['n0']);
  t0 = net.now;
  const joiner = net.host('joiner');
  const tJoin = net.runUntil(() => knows.size === n && joiner.node.liveCount === n + 1, 120_000, 20);

  // Deaths: crash a member, measure first suspicion and "dead everywhere".
  const rnd = seededRandom(seed + n);
  const detect = [];
  const full = [];
  for (let t = 0; t < trials; t++) {
    let name;
    do name = `n${1 + Math.floor(rnd() * (n - 1))}`;
    while (!net.host(name).up);
    victim = name;
    firstSuspect = -1;
    dead.clear();
    net.run(5 * P); // let the previous trial's news settle
    t0 = net.now;
    net.crash(name);
    const others = net.upHosts().length;
    const tDead = net.runUntil(() => dead.size === others, 600_000, 50);
    detect.push(firstSuspect);
    full.push(tDead);
  }
  const avgBps = ((totalBytes(net) - bytesBefore) * 8) / n / ((net.now - timeBefore) / 1000);
  const mean = (xs) => (xs.some((x) => x < 0) ? -1 : xs.reduce((s, x) => s + x, 0) / xs.length);
  return {
    n,
    joinPeriods: tJoin / P,
    detectPeriods: mean(detect) / P,
    deadPeriods: mean(full) / P,
    udpKbps: udpBps / 1000,
    tcpKbps: tcpBps / 1000,
    busyKbps: avgBps / 1000,
    wallS: (wall() - started) / 1000,
    heapMB: process.memoryUsage().heapUsed / 1e6,
  };
}

function falsePositives(n, lossPct, variant) {
  const started = wall();
  const net = buildCluster(n, { config: VARIANTS[variant], net: { loss: lossPct / 100 } });
  const deadEpisodes = new Set();
  const suspectEpisodes = new Set();
  let deadEvents = 0;
  net.onEvent = (_host, e) => {
    // Nobody crashes in this run: every suspicion and every death is a false positive.
    if (e.type === 'dead') {
      deadEvents++;
      deadEpisodes.add(`${e.member.name}@${e.member.incarnation}`);
    }
    if (e.type === 'suspect') suspectEpisodes.add(`${e.member.name}@${e.member.incarnation}`);
  };
  net.run(fpSeconds * 1000);
  const maxAwareness = Math.max(...net.upHosts().map((h) => h.node.awareness));
  return { lossPct, variant, deaths: deadEpisodes.size, deadEvents, suspicions: suspectEpisodes.size, maxAwareness, wallS: (wall() - started) / 1000 };
}

/**
 * Lifeguard's setting: a few members are slow to process what they receive (a starved CPU),
 * everything else is healthy. Counts suspicions and deaths of *healthy* members.
 */
function slowMembers(n, delayMs, variant) {
  const started = wall();
  const net = buildCluster(n, { config: VARIANTS[variant] });
  const slow = new Set();
  for (let i = 0; i < slowCount; i++) {
    slow.add(`n${i}`);
    net.host(`n${i}`).delayIn = delayMs;
  }
  const suspected = new Set();
  const died = new Set();
  net.onEvent = (_host, e) => {
    if (slow.has(e.member.name)) return;
    const key = `${e.member.name}@${e.member.incarnation}`;
    if (e.type === 'suspect') suspected.add(key);
    if (e.type === 'dead') died.add(key);
  };
  net.run(fpSeconds * 1000);
  const score = Math.max(...[...slow].map((s) => net.host(s).node.awareness));
  return { suspicions: suspected.size, deaths: died.size, score, wallS: (wall() - started) / 1000 };
}

function table(headers, rows) {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => '| ' + cells.map((c, i) => String(c).padStart(w[i])).join(' | ') + ' |';
  console.log(line(headers));
  console.log('|' + w.map((x) => '-'.repeat(x + 2)).join('|') + '|');
  for (const r of rows) console.log(line(r));
}

console.log(`murmur gossip simulator — LAN defaults (probe ${P} ms, gossip ${LAN.gossipIntervalMs} ms x ${LAN.gossipNodes}, retransmit ${LAN.retransmitMult}, suspicion ${LAN.suspicionMult}/${LAN.suspicionMaxTimeoutMult}), seed ${seed}\n`);

if (args['skip-convergence'] !== 'true') {
  const rows = [];
  for (const n of sizes) {
    const r = convergence(n);
    rows.push([
      r.n,
      `${fmt(r.joinPeriods, 2)} (${fmt(r.joinPeriods * P / 1000, 2)} s)`,
      fmt(r.detectPeriods, 2),
      `${fmt(r.deadPeriods, 1)} (${fmt(r.deadPeriods * P / 1000, 1)} s)`,
      fmt(r.udpKbps, 2),
      fmt(r.tcpKbps, 2),
      fmt(r.busyKbps, 2),
      fmt(r.wallS, 1),
    ]);
    process.stderr.write(`  n=${n} done in ${fmt(r.wallS)} s, heap ${fmt(r.heapMB, 0)} MB\n`);
  }
  console.log(`Convergence (periods of ${P} ms; deaths: mean of ${trials} crashes)\n`);
  table(['nodes', 'join known by all', 'first suspicion', 'dead known by all', 'idle kbit/s/node (UDP)', 'idle kbit/s/node (push-pull)', 'kbit/s/node during join+deaths', 'wall s'], rows);
  console.log('');
}

if (args['skip-fp'] !== 'true') {
  const rows = [];
  for (const loss of fpLosses) {
    const r = Object.fromEntries(Object.keys(VARIANTS).map((v) => [v, falsePositives(fpSize, loss, v)]));
    rows.push([
      `${loss}%`,
      `${r.swim.deaths} / ${r.swim.suspicions}`,
      `${r.lhm.deaths} / ${r.lhm.suspicions}`,
      `${r.lifeguard.deaths} / ${r.lifeguard.suspicions}`,
      r.lifeguard.maxAwareness,
      fmt(r.swim.wallS + r.lhm.wallS + r.lifeguard.wallS, 1),
    ]);
    process.stderr.write(`  loss ${loss}% done\n`);
  }
  console.log(`False positives: ${fpSize} live nodes, ${fpSeconds} s, uniform loss on every datagram (no node fails, so every death is false).`);
  console.log('Cells: members falsely declared dead / suspicions raised (distinct member+incarnation).\n');
  table(['loss', 'SWIM', 'SWIM + local health', 'Lifeguard (local health + dynamic suspicion)', 'max health score', 'wall s'], rows);
  console.log('');
}

if (args['skip-slow'] !== 'true') {
  const rows = [];
  for (const delay of slowDelays) {
    const r = Object.fromEntries(Object.keys(VARIANTS).map((v) => [v, slowMembers(fpSize, delay, v)]));
    const ratio = r.lifeguard.suspicions > 0 ? `${fmt(r.swim.suspicions / r.lifeguard.suspicions, 0)}x` : 'n/a';
    rows.push([
      `${delay / 2}-${(delay * 3) / 2} ms`,
      `${r.swim.deaths} / ${r.swim.suspicions}`,
      `${r.lhm.deaths} / ${r.lhm.suspicions}`,
      `${r.lifeguard.deaths} / ${r.lifeguard.suspicions}`,
      ratio,
      r.lifeguard.score,
      fmt(r.swim.wallS + r.lhm.wallS + r.lifeguard.wallS, 1),
    ]);
    process.stderr.write(`  slow ${delay} ms done\n`);
  }
  console.log(`Slow members: ${slowCount} of ${fpSize} nodes handle every packet late (uniform in the range shown), ${fpSeconds} s, no loss.`);
  console.log('Cells: healthy members falsely declared dead / healthy members suspected (distinct member+incarnation).\n');
  table(['processing delay', 'SWIM', 'SWIM + local health', 'Lifeguard', 'SWIM / Lifeguard suspicions', 'slow nodes health score', 'wall s'], rows);
}
