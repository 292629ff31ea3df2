#!/usr/bin/env node
// The availability window of a history topic on the mesh bus when its owner goes: how long a
// publish made on another node waits before subscribers get it (docs/cluster.md, "Availability
// window"). Three `murmur serve` nodes with the test suite's cluster harness (dist/test/lb: LAN
// gossip profile, crash detection from the mesh links); a publisher and a subscriber on the
// node that neither owns nor replicates the topic, --rate messages a second, each carrying its
// send time. Per trial the owner is sent SIGKILL (a crash) or SIGTERM (a deploy: it drains,
// closes its bus, leaves the gossip); the figures are the longest wait of a message published
// in the 10 s after it (send to delivery) and the longest silence the subscriber saw. The owner
// is started again between trials. Medians (and the worst) over --trials per mode.
//
// Usage: npm run build && node native-bench/cluster/availability.mjs [--trials 5] [--rate 100]
//   [--modes kill9,sigterm]
import { fileURLToPath } from 'node:url';

const lb = await import(fileURLToPath(new URL('../../dist/test/lb/lb.js', import.meta.url)));
const scenarios = await import(fileURLToPath(new URL('../../dist/test/lb/scenarios.js', import.meta.url)));
const { ownerAndReplica } = await import(fileURLToPath(new URL('../../dist/src/cluster/bus/ordering.js', import.meta.url)));
const { MurmurClient } = await import(fileURLToPath(new URL('../../dist/src/app/public/murmur-client.js', import.meta.url)));
const { WebSocket } = await import(fileURLToPath(new URL('../../dist/src/client/index.js', import.meta.url)));

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : args[i + 1];
};
const TRIALS = Number(opt('trials', 5));
const RATE = Number(opt('rate', 100));
const MODES = String(opt('modes', 'kill9,sigterm')).split(',');
const AFTER_MS = 10_000;

const client = (url) => new MurmurClient({ url, WebSocket, storage: null, requestTimeoutMs: 30_000, backoffBaseMs: 100, backoffMaxMs: 500 });
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function trial(cluster, mode, k) {
  const ids = cluster.nodes.map((n) => n.spec.id);
  const topic = `room:avail-${mode}-${k}-${Date.now()}`;
  const [ownerId, replicaId] = ownerAndReplica(topic, ids);
  const owner = cluster.nodes.find((n) => n.spec.id === ownerId);
  const other = cluster.nodes.find((n) => n.spec.id !== ownerId && n.spec.id !== replicaId);
  const url = `ws://127.0.0.1:${other.spec.port}/ws`;
  const sub = client(url);
  const pub = client(url);
  await lb.until(() => sub.state === 'open' && pub.state === 'open', 10_000, 'clients open');
  const got = [];
  sub.on('message', (m) => {
    if (m.topic === topic) got.push({ sent: m.data.t, at: Date.now() });
  });
  await sub.subscribe(topic);
  let running = true;
  const publishing = (async () => {
    for (let n = 0; running; n++) {
      void pub.publish(topic, { t: Date.now(), n }).catch(() => {});
      await lb.sleep(1000 / RATE);
    }
  })();
  await lb.sleep(2000);
  const at = Date.now();
  if (mode === 'kill9') await owner.kill9();
  else void owner.stop();
  await lb.sleep(AFTER_MS);
  running = false;
  await publishing;
  await lb.sleep(2000);
  const after = got.filter((g) => g.sent >= at && g.sent < at + AFTER_MS);
  const wait = Math.max(0, ...after.map((g) => g.at - g.sent));
  let silence = 0;
  const around = got.filter((g) => g.at >= at - 1000);
  for (let i = 1; i < around.length; i++) silence = Math.max(silence, around[i].at - around[i - 1].at);
  sub.close();
  pub.close();
  if (owner.child !== null) await owner.stop();
  await owner.start();
  await scenarios.untilWhole(cluster, `${owner.spec.id} rejoined`);
  return { waitMs: wait, silenceMs: silence, delivered: after.length };
}

const cluster = await lb.startCluster('mesh', 3);
const results = {};
try {
  for (const mode of MODES) {
    const runs = [];
    for (let k = 0; k < TRIALS; k++) {
      const r = await trial(cluster, mode, k);
      runs.push(r);
      console.error(`${mode} trial ${k + 1}: longest wait ${r.waitMs} ms, longest silence ${r.silenceMs} ms, ${r.delivered} messages`);
    }
    results[mode] = {
      trials: TRIALS,
      medianWaitMs: median(runs.map((r) => r.waitMs)),
      worstWaitMs: Math.max(...runs.map((r) => r.waitMs)),
      medianSilenceMs: median(runs.map((r) => r.silenceMs)),
      worstSilenceMs: Math.max(...runs.map((r) => r.silenceMs)),
    };
  }
} finally {
  await lb.stopAll();
}
console.log(JSON.stringify({ date: new Date().toISOString(), rate: RATE, results }, null, 2));
