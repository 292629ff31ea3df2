#!/usr/bin/env node
// Dead-node presence removal in the gossip simulator: the same SwimNode and ClusterPresence
// the servers run, on a simulated LAN (0.5-1.5 ms one way), virtual time, LAN defaults.
// Build first: npx tsc -p tsconfig.json
//
//   node native-bench/sim/presence.mjs                        10 nodes, 25 crashes (seeds 1..25)
//   node native-bench/sim/presence.mjs --nodes=10 --trials=50 --entries=200 --loss=1
//
// Each trial: a formed cluster of n nodes, every node with `entries` presence entries,
// replicated everywhere; one node crashes (kill -9: no leave). Measured, in virtual time from
// the crash: the first suspicion anywhere, and the moment the victim's entries are gone on
// every survivor (its last leave event there). Prints the median, p90 and max over trials.
import { SimNetwork } from '../../dist/src/cluster/gossip/simnet.js';
import { DEFAULT_LAN_CONFIG } from '../../dist/src/cluster/gossip/gossip-config.js';
import { suspicionTimeout } from '../../dist/src/cluster/gossip/math.js';
import { ClusterPresence, replicationTiming } from '../../dist/src/cluster/presence/store.js';

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k, v ?? 'true'];
  }),
);
const n = Number(args.nodes ?? 10);
const trials = Number(args.trials ?? 25);
const perNode = Number(args.entries ?? 100);
const loss = Number(args.loss ?? 0) / 100;
const LAN = { ...DEFAULT_LAN_CONFIG };
const P = LAN.probeIntervalMs;
const timing = replicationTiming(LAN);

function trial(seed) {
  const net = new SimNetwork({ seed, config: LAN, latencyMs: 0.5, jitterMs: 1, loss, encryption: false, keepEvents: false });
  const stores = new Map();
  for (let i = 0; i < n; i++) {
    const name = `n${i}`;
    const p = new ClusterPresence({ name, epoch: 1000 + i, clock: () => net.now, timing });
    stores.set(name, p);
    const host = net.addNode(name, { delegate: p.delegate });
    const node = host.node;
    const live = (peer) => {
      const m = node.member(peer);
      return m !== undefined && (m.state === 'alive' || m.state === 'suspect');
    };
    p.attach({
      broadcast: (payload, key) => node.broadcast(payload, key),
      maxPayloadBytes: node.maxBroadcastBytes,
      syncWith: (peer) => live(peer) && node.syncWith(node.member(peer).addr),
      isLive: live,
    });
  }
  net.preloadAll();
  net.onEvent = (host, e) => stores.get(host.name).onMember(e.type, e.member.name);
  const drive = () => {
    for (const [name, p] of stores) {
      if (!net.host(name).up) continue;
      p.flush();
      p.tick(net.now);
      net.poke(name);
    }
  };
  const runUntil = (done, maxMs, step = 10) => {
    const start = net.now;
    while (net.now - start < maxMs) {
      drive();
      if (done()) return net.now - start;
      net.run(step);
    }
    return -1;
  };
  net.run(5 * P);
  for (const [name, p] of stores) for (let k = 0; k < perNode; k++) p.join(`room:${k % 10}`, { user: `${name}-u${k}`, conn: `${name}.${k}`, meta: { k }, since: 0 });
  const total = n * perNode;
  if (runUntil(() => [...stores.values()].every((p) => p.stats().entries === total), 60_000) < 0) throw new Error(`seed ${seed}: presence did not converge`);
  net.run(3 * P);

  const victim = `n${1 + (seed % (n - 1))}`;
  const survivors = [...stores.entries()].filter(([name]) => name !== victim);
  let firstSuspect = -1;
  const lastLeave = new Map();
  const left = new Map(survivors.map(([name]) => [name, 0]));
  const t0 = net.now;
  const prevOnEvent = net.onEvent;
  net.onEvent = (host, e) => {
    if (e.member.name === victim && e.type === 'suspect' && firstSuspect < 0) firstSuspect = net.now - t0;
    prevOnEvent(host, e);
  };
  for (const [name, p] of survivors) {
    p.onChange((c) => {
      if (c.kind === 'leave' && c.entry.conn.startsWith(`${victim}.`)) {
        left.set(name, left.get(name) + 1);
        if (left.get(name) === perNode) lastLeave.set(name, net.now - t0);
      }
    });
  }
  net.crash(victim);
  const t = runUntil(() => lastLeave.size === survivors.length, 600_000);
  if (t < 0) throw new Error(`seed ${seed}: entries not removed everywhere`);
  return { firstSuspect, removedEverywhere: Math.max(...lastLeave.values()), removedFirst: Math.min(...lastLeave.values()) };
}

const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))];
};
const started = performance.now();
const rows = [];
for (let s = 1; s <= trials; s++) rows.push(trial(s));
const S = suspicionTimeout(LAN.suspicionMult, n, P);
const bound = n * P + LAN.suspicionMaxTimeoutMult * S + 10 * LAN.gossipIntervalMs;
const f = (ms) => `${(ms / 1000).toFixed(2)} s`;
console.log(`murmur presence, dead-node removal in the simulator: ${n} nodes, ${perNode} entries each, LAN defaults (probe ${P} ms, suspicion ${LAN.suspicionMult} x max(1, log10 n) x probe = ${S} ms min, up to x${LAN.suspicionMaxTimeoutMult}), loss ${loss * 100}%, ${trials} crashes`);
console.log('');
console.log('| from kill -9 to | median | p90 | max |');
console.log('|---|---|---|---|');
for (const [label, key] of [
  ['first suspicion anywhere', 'firstSuspect'],
  ['entries gone on the first survivor', 'removedFirst'],
  ['entries gone on every survivor', 'removedEverywhere'],
]) {
  const xs = rows.map((r) => r[key]);
  console.log(`| ${label} | ${f(q(xs, 0.5))} | ${f(q(xs, 0.9))} | ${f(Math.max(...xs))} |`);
}
console.log('');
console.log(`bound (n P + ${LAN.suspicionMaxTimeoutMult} S + 10 gossip rounds): ${f(bound)}; wall ${((performance.now() - started) / 1000).toFixed(1)} s`);
