#!/usr/bin/env node
// A user's view of a node dying (docs/cluster.md, "Cluster-wide positions"): three `murmur serve`
// nodes (the test suite's cluster harness: LAN gossip profile), a subscriber on one node speaking
// the raw protocol (no client library: every duplicate and every skip counts), a publisher on
// another at --rate messages a second, each publish's acknowledgement kept. The subscriber's
// node is sent SIGKILL (kill9) or SIGTERM (sigterm); --delay ms after its socket closed the
// subscriber connects to the third node and subscribes with its last position. Cases: `mid`
// (mid-stream, after --after messages), `first` (right after the subscribe, before any message:
// its position is the one the subscribe gave). A fresh topic per trial (so its owner varies).
// Counted per trial: acknowledged messages never received (lost), received twice (duplicated),
// out of order, and recoveries refused or resync notices (resync); the publisher's error replies
// are printed (CLOSED: its own node closed it). The killed node is started again between trials.
//
// Usage: npm run build && node native-bench/cluster/user-failover.mjs [--buses mesh,redis]
//   [--modes kill9,sigterm] [--cases mid,first] [--trials 3] [--rate 200] [--delay 300] [--after 100]
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const lb = await import(fileURLToPath(new URL('../../dist/test/lb/lb.js', import.meta.url)));
const { WebSocket } = await import(fileURLToPath(new URL('../../dist/src/client/index.js', import.meta.url)));

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : args[i + 1];
};
const BUSES = String(opt('buses', 'mesh,redis')).split(',');
const MODES = String(opt('modes', 'kill9,sigterm')).split(',');
const CASES = String(opt('cases', 'mid,first')).split(',');
const TRIALS = Number(opt('trials', 3));
const RATE = Number(opt('rate', 200));
const DELAY = Number(opt('delay', 300));
const AFTER = Number(opt('after', 100));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A raw protocol connection: requests by id, every server message kept in order. */
function connect(node) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${node.spec.port}/ws`);
    const c = { ws, seq: 0, waiting: new Map(), onMessage: () => {}, closed: false };
    ws.onmessage = (ev) => {
      const m = JSON.parse(String(ev.data));
      if ((m.type === 'reply' || m.type === 'error') && c.waiting.has(m.id)) {
        c.waiting.get(m.id)(m);
        c.waiting.delete(m.id);
      } else c.onMessage(m);
    };
    ws.onclose = () => {
      c.closed = true;
      for (const w of c.waiting.values()) w({ type: 'error', code: 'CLOSED' });
      c.waiting.clear();
    };
    ws.onerror = () => reject(new Error(`connect to ${node.spec.id} failed`));
    ws.onopen = () => resolve(c);
  });
}

function request(c, cmd) {
  return new Promise((resolve) => {
    if (c.closed) return resolve({ type: 'error', code: 'CLOSED' });
    const id = ++c.seq;
    c.waiting.set(id, resolve);
    c.ws.send(JSON.stringify({ ...cmd, id }));
  });
}

/** Subscribes, answering CATCHING_UP by asking again (as murmur's clients do). */
async function subscribe(c, cmd) {
  for (let i = 0; ; i++) {
    const r = await request(c, { type: 'subscribe', ...cmd });
    if (r.type !== 'error' || r.code !== 'CATCHING_UP' || i >= 20) return r;
    await sleep(100 + Math.random() * 100);
  }
}

async function settled(cluster) {
  await lb.until(async () => {
    for (const n of cluster.nodes) if (n.child === null || (await n.members()).filter((m) => m.state === 'alive').length !== cluster.nodes.length) return false;
    return true;
  }, 30_000, 'all nodes alive');
}

let trials = 0;

async function trial(cluster, mode, kase) {
  const nodes = cluster.nodes;
  // The subscriber's node goes round the three (with a fresh topic each time, the killed node is the topic's owner, replica or neither).
  const s = trials++ % 3;
  const p = (s + 1) % 3;
  const r = (s + 2) % 3;
  const topic = `room:user-${randomBytes(4).toString('hex')}`;
  const sub = await connect(nodes[s]);
  const got = [];
  const epochs = new Set();
  let resyncs = 0;
  let position = null;
  const onMessage = (m) => {
    if (m.topic !== topic) return;
    if (m.type === 'message') {
      got.push(m.data.n);
      position = { epoch: m.epoch, offset: m.offset };
      epochs.add(m.epoch);
    } else if (m.type === 'resync') resyncs++;
  };
  sub.onMessage = onMessage;
  const first = await subscribe(sub, { topic });
  if (first.type !== 'reply') throw new Error(`subscribe: ${JSON.stringify(first)}`);
  position = first.position;
  const pub = await connect(nodes[p]);
  const acked = new Set();
  const errors = new Map();
  let n = 0;
  let publishing = true;
  const publisher = (async () => {
    const gap = 1000 / RATE;
    const start = performance.now();
    while (publishing) {
      const k = ++n;
      void request(pub, { type: "publish", topic, data: { n: k } }).then((rep) => (rep.type === "reply" ? acked.add(k) : errors.set(rep.code, (errors.get(rep.code) ?? 0) + 1)));
      const next = start + k * gap;
      await sleep(Math.max(0, next - performance.now()));
    }
  })();
  if (kase === "mid") await lb.until(() => got.length >= AFTER, 10_000, "messages before the failure").catch((e) => { throw new Error(`${e.message}: ${got.length} received, ${acked.size} of ${n} acknowledged, errors ${JSON.stringify([...errors])}`); });
  const before = got.length;
  const closed = new Promise((res) => sub.ws.addEventListener('close', res));
  const victim = nodes[s];
  const stopping = mode === 'kill9' ? victim.kill9() : victim.stop();
  await closed;
  await sleep(DELAY);
  const since = position;
  const sub2 = await connect(nodes[r]);
  sub2.onMessage = onMessage;
  const again = await subscribe(sub2, { topic, since });
  await sleep(3000);
  publishing = false;
  await publisher;
  await sleep(2000);
  await stopping;
  const seen = new Set(got);
  let lost = 0;
  for (const k of acked) if (!seen.has(k)) lost++;
  let outOfOrder = 0;
  for (let i = 1; i < got.length; i++) if (got[i] <= got[i - 1]) outOfOrder++;
  sub2.ws.close();
  pub.ws.close();
  await victim.start();
  await settled(cluster);
  return {
    case: kase,
    mode,
    killed: victim.spec.id,
    reconnectedTo: nodes[r].spec.id,
    since,
    beforeFailure: before,
    acked: acked.size,
    received: got.length,
    lost,
    duplicated: got.length - seen.size,
    outOfOrder,
    recovered: again.recovered ?? null,
    reason: again.reason ?? (again.type === 'error' ? again.code : null),
    replayed: again.replayed ?? 0,
    resyncs,
    epochs: [...epochs],
    publishErrors: Object.fromEntries(errors),
  };
}

const results = [];
try {
  for (const bus of BUSES) {
    const cluster = await lb.startCluster(bus, 3);
    try {
      for (const mode of MODES) {
        for (const kase of CASES) {
          for (let t = 0; t < TRIALS; t++) {
            const res = { bus, ...(await trial(cluster, mode, kase)) };
            results.push(res);
            const ok = res.lost === 0 && res.duplicated === 0 && res.outOfOrder === 0 && res.recovered === true && res.resyncs === 0;
            console.log(`${ok ? 'ok  ' : 'FAIL'} ${bus} ${mode} ${kase}: killed ${res.killed} after ${res.beforeFailure} messages, reconnected to ${res.reconnectedTo} from offset ${res.since?.offset}: recovered ${res.recovered}${res.reason ? ` (${res.reason})` : ''}, replayed ${res.replayed}; ${res.acked} acknowledged, ${res.received} received, ${res.lost} lost, ${res.duplicated} duplicated, ${res.outOfOrder} out of order, ${res.resyncs} resync${Object.keys(res.publishErrors).length > 0 ? `; publisher errors ${JSON.stringify(res.publishErrors)}` : ''}`);
          }
        }
      }
    } finally {
      await lb.stopAll();
    }
  }
} finally {
  await lb.stopAll();
}
const bad = results.filter((r) => !(r.lost === 0 && r.duplicated === 0 && r.outOfOrder === 0 && r.recovered === true && r.resyncs === 0));
console.log(JSON.stringify({ date: new Date().toISOString(), trials: results.length, failed: bad.length, rate: RATE, delayMs: DELAY, results }));
process.exit(bad.length === 0 ? 0 : 1);
