#!/usr/bin/env node
// One large cluster, a reduced scenario set, with wall time and memory reported as it goes:
// the convergence scenarios of run.mjs (idle window, one join, crashes) for sizes where the
// full run.mjs would take too long. Build first: npx tsc -p tsconfig.json
//
//   node --max-old-space-size=20000 native-bench/sim/big.mjs --n=10000 --idle=20 --trials=2
//
// Aborts (exit 3) if the machine's MemAvailable falls under --min-free-gib (default 3).
import fs from 'node:fs';
import { SimNetwork } from '../../dist/src/cluster/gossip/simnet.js';
import { DEFAULT_LAN_CONFIG } from '../../dist/src/cluster/gossip/gossip-config.js';
import { pushPullInterval, seededRandom } from '../../dist/src/cluster/gossip/math.js';

const args = Object.fromEntries(process.argv.slice(2).map((a) => { const [k, v] = a.replace(/^--/, '').split('='); return [k, v ?? 'true']; }));
const n = Number(args.n ?? 5000);
const idleS = Number(args.idle ?? 20);
const trials = Number(args.trials ?? 1);
const seed = Number(args.seed ?? 1);
const minFreeGiB = Number(args['min-free-gib'] ?? 3);
const loss = Number(args.loss ?? 0) / 100;
const LAN = { ...DEFAULT_LAN_CONFIG };
const P = LAN.probeIntervalMs;
const t00 = performance.now();

function memAvailGiB() {
  const m = /MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) / 2 ** 20 : Infinity;
}
function log(what) {
  const heap = process.memoryUsage().heapUsed / 2 ** 30;
  process.stderr.write(`[${((performance.now() - t00) / 1000).toFixed(0)} s wall] ${what} | heap ${heap.toFixed(2)} GiB, MemAvailable ${memAvailGiB().toFixed(1)} GiB\n`);
}
let checks = 0;
function guard() {
  if (++checks % 20 !== 0) return;
  if (memAvailGiB() < minFreeGiB) { log(`ABORT: MemAvailable under ${minFreeGiB} GiB`); process.exit(3); }
}
// Run in 1 s slices so the memory guard and the progress log see the run.
function runGuarded(net, ms) {
  const end = net.now + ms;
  while (net.now < end) { net.run(Math.min(1000, end - net.now)); guard(); checks = 19; guard(); }
}

const net = new SimNetwork({ seed, config: LAN, latencyMs: 0.5, jitterMs: 1, encryption: false, keepEvents: false, loss });
for (let i = 0; i < n; i++) net.addNode(`n${i}`);
net.preloadAll();
log(`n=${n} preloaded (${(process.memoryUsage().heapUsed / n / n).toFixed(0)} B of heap per member record)`);
runGuarded(net, 5 * P);
const udp0 = net.stats.bytesSent, tcp0 = net.stats.streamBytes, streams0 = net.stats.streams, idle0 = performance.now();
runGuarded(net, idleS * 1000);
const udpK = ((net.stats.bytesSent - udp0) * 8) / n / idleS / 1000;
const tcpK = ((net.stats.streamBytes - tcp0) * 8) / n / idleS / 1000;
// Every node's first push-pull falls in the first (unscaled) interval after start, so a
// short window right after start overstates push-pull. The steady state is one exchange
// (request + reply) per node per scaled interval.
const exchangeBytes = (net.stats.streamBytes - tcp0) / Math.max(1, net.stats.streams - streams0);
const ppInterval = pushPullInterval(LAN.pushPullIntervalMs, n);
const steadyPpK = (exchangeBytes * 8) / (ppInterval / 1000) / 1000;
log(`idle ${idleS} s virtual in ${((performance.now() - idle0) / 1000).toFixed(0)} s wall: UDP ${udpK.toFixed(2)} kbit/s/node, push-pull ${tcpK.toFixed(2)} kbit/s/node in this window; steady push-pull ${steadyPpK.toFixed(2)} kbit/s/node (${exchangeBytes.toFixed(0)} B per exchange every ${ppInterval / 1000} s)`);

const knows = new Set();
let victim = null, firstSuspect = -1, t0 = 0;
const dead = new Set();
net.onEvent = (host, e) => {
  if (e.member.name === 'joiner' && (e.type === 'join' || e.type === 'alive')) knows.add(host.name);
  if (victim !== null && e.member.name === victim) {
    if (e.type === 'suspect' && firstSuspect < 0) firstSuspect = net.now - t0;
    if (e.type === 'dead') dead.add(host.name);
  }
};
const bytesBefore = net.stats.bytesSent + net.stats.streamBytes, timeBefore = net.now;
net.addNode('joiner');
net.join('joiner', ['n0']);
t0 = net.now;
const joiner = net.host('joiner');
const tJoin = net.runUntil(() => { guard(); return knows.size === n && joiner.node.liveCount === n + 1; }, 120_000, 20);
log(`join known by all: ${(tJoin / P).toFixed(2)} periods`);

const rnd = seededRandom(seed + n);
const detect = [], full = [];
for (let t = 0; t < trials; t++) {
  let name;
  do name = `n${1 + Math.floor(rnd() * (n - 1))}`; while (!net.host(name).up);
  victim = name; firstSuspect = -1; dead.clear();
  runGuarded(net, 5 * P);
  t0 = net.now;
  net.crash(name);
  const others = net.upHosts().length;
  const tDead = net.runUntil(() => { guard(); return dead.size === others; }, 600_000, 50);
  detect.push(firstSuspect); full.push(tDead);
  log(`crash ${t + 1} (${name}): first suspicion ${(firstSuspect / P).toFixed(2)} periods, dead known by all ${(tDead / P).toFixed(1)} periods`);
}
const busyK = ((net.stats.bytesSent + net.stats.streamBytes - bytesBefore) * 8) / n / ((net.now - timeBefore) / 1000) / 1000;
const mean = (xs) => xs.reduce((s, x) => s + x, 0) / xs.length;
console.log(JSON.stringify({ n, seed, idleS, trials, joinPeriods: tJoin / P, detectPeriods: detect.map((x) => x / P), deadPeriods: full.map((x) => x / P), meanDetect: mean(detect) / P, meanDead: mean(full) / P, idleUdpKbps: udpK, idlePushPullKbps: tcpK, exchangeBytes, ppIntervalS: ppInterval / 1000, steadyPushPullKbps: steadyPpK, busyKbps: busyK, wallS: (performance.now() - t00) / 1000, heapGiB: process.memoryUsage().heapUsed / 2 ** 30 }));
