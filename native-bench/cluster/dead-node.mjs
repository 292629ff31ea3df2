#!/usr/bin/env node
// Dead-node presence removal with real processes: `nodes` `murmur serve` processes on
// 127.0.0.1 form a cluster (LAN gossip defaults unless --profile=local) over the mesh bus
// (or --bus=redis, with a redis-server this script starts on a free port), every node holds
// `entries` presence entries of its own WebSocket clients in room:bench. Each trial kills one
// node with SIGKILL and measures, from the kill, when its entries are gone on every survivor
// through the public HTTP API: GET /api/presence on each survivor, polled every 25 ms, until
// the count dropped by the victim's entries. The killed node is then restarted under the same id (a new epoch) and its clients rejoin
// before the next trial. Build first: npx tsc -p tsconfig.json
//
//   node native-bench/cluster/dead-node.mjs                     10 nodes, 20 entries each, 20 kills
//   node native-bench/cluster/dead-node.mjs --nodes=10 --trials=11 --entries=50 --profile=lan --bus=redis
//
// Prints a table (median, p90, max) and writes nothing else; every process it starts is
// killed by its PID on exit.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { WebSocket } from '../../dist/src/client/index.js';
import { DEFAULT_LAN_CONFIG, FAST_LOCAL_CONFIG } from '../../dist/src/cluster/gossip/gossip-config.js';
import { suspicionTimeout } from '../../dist/src/cluster/gossip/math.js';

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k, v ?? 'true'];
  }),
);
const N = Number(args.nodes ?? 10);
const TRIALS = Number(args.trials ?? 20);
const BUS = args.bus ?? 'mesh';
const ENTRIES = Number(args.entries ?? 20);
const PROFILE = args.profile ?? 'lan';
const MAIN = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
const KEY = randomBytes(32).toString('base64');
const API = randomBytes(8).toString('hex');
const TOPIC = 'room:bench';
const CONFIG = PROFILE === 'local' ? { ...DEFAULT_LAN_CONFIG, ...FAST_LOCAL_CONFIG } : { ...DEFAULT_LAN_CONFIG };

const procs = new Set();
let redisUrl = null;
const cleanup = () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function serve(id, seeds) {
  const a = [MAIN, 'serve', '--port', '0', '--gossip-port', '0', '--gossip-profile', PROFILE, '--node-id', id, '--api-key', API, '--anon-presence', 'room:*'];
  if (seeds.length > 0) a.push('--seeds', seeds.join(','));
  a.push('--bus', BUS);
  if (redisUrl !== null) a.push('--redis-url', redisUrl);
  const proc = spawn(process.execPath, a, { env: { ...process.env, MURMUR_CLUSTER_KEY: KEY }, stdio: ['ignore', 'pipe', 'pipe'] });
  procs.add(proc);
  proc.on('exit', () => procs.delete(proc));
  let out = '';
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${id} did not start: ${out}`)), 60_000);
    proc.stdout.on('data', (d) => {
      out += d;
      const l = /^LISTENING (\d+)/m.exec(out);
      const c = /^CLUSTER (\S+) (\S+)/m.exec(out);
      if (l && c) {
        clearTimeout(t);
        resolve({ id, proc, port: Number(l[1]), gossip: c[2] });
      }
    });
    proc.stderr.on('data', (d) => (out += d));
  });
}

function api(port, path) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { 'X-Api-Key': API }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(JSON.parse(body)));
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(pred, timeoutMs, what) {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (await pred()) return performance.now() - t0;
    await sleep(50);
  }
  throw new Error(`timeout: ${what}`);
}

/** A protocol client: connects, waits for the welcome, sends commands, hands events to onEvent. */
function client(port, onEvent = () => {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    let seq = 0;
    const waiting = new Map();
    const c = {
      ws,
      conn: '',
      request(cmd) {
        const id = ++seq;
        ws.send(JSON.stringify({ ...cmd, id }));
        return new Promise((res) => waiting.set(id, res));
      },
      close() {
        if (ws.readyState <= 1) ws.close();
      },
    };
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === 'welcome') {
        c.conn = m.conn;
        resolve(c);
      } else if ((m.type === 'reply' || m.type === 'error') && waiting.has(m.id)) {
        waiting.get(m.id)(m);
        waiting.delete(m.id);
      } else onEvent(m);
    };
    ws.onerror = () => reject(new Error('client error'));
  });
}

async function populate(node) {
  node.clients = [];
  for (let i = 0; i < ENTRIES; i++) {
    const c = await client(node.port);
    const r = await c.request({ type: 'presence', action: 'join', topic: TOPIC, meta: { node: node.id, i } });
    if (r.joined !== 'joined') throw new Error(`join refused: ${JSON.stringify(r)}`);
    node.clients.push(c);
  }
}

/** A private redis-server on a free port, killed on exit like the nodes. */
async function startRedis() {
  const { createServer } = await import('node:net');
  const port = await new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const p = srv.address().port;
      srv.close(() => resolve(p));
    });
  });
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.add(proc);
  proc.on('exit', () => procs.delete(proc));
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('redis-server did not start')), 10_000);
    proc.stdout.on('data', (d) => {
      if (/Ready to accept connections/.test(String(d))) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  return `redis://127.0.0.1:${port}`;
}
if (BUS === 'redis') redisUrl = await startRedis();

const nodes = [];
const started = performance.now();
nodes.push(await serve('n0', []));
const seeds = [nodes[0].gossip];
nodes.push(...(await Promise.all(Array.from({ length: N - 1 }, (_, i) => serve(`n${i + 1}`, seeds)))));
await until(async () => (await Promise.all(nodes.map((n) => api(n.port, '/api/cluster/members')))).every((j) => j.members.filter((m) => m.state === 'alive').length === N), 30_000, 'membership');
process.stderr.write(`${N} nodes up and joined in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);

for (const node of nodes) await populate(node);
const total = N * ENTRIES;
await until(async () => (await Promise.all(nodes.map((n) => api(n.port, `/api/presence?topic=${TOPIC}`)))).every((j) => j.count === total), 30_000, 'presence everywhere');
process.stderr.write(`${total} entries on every node\n`);

const results = [];
for (let t = 0; t < TRIALS; t++) {
  const victim = nodes[1 + (t % (N - 1))];
  await sleep(3 * CONFIG.probeIntervalMs); // the previous restart's news settles
  const t0 = performance.now();
  victim.proc.kill('SIGKILL');
  const survivors = nodes.filter((n) => n !== victim);
  // The public API: each survivor's presence count, polled until it lost the victim's entries.
  const apiTimes = await Promise.all(
    survivors.map(async (n) => {
      for (;;) {
        const j = await api(n.port, `/api/presence?topic=${TOPIC}`);
        if (j.count <= total - ENTRIES) return performance.now() - t0;
        if (performance.now() - t0 > 120_000) throw new Error(`timeout: removal on ${n.id}`);
        await sleep(25);
      }
    }),
  );
  results.push({ everywhere: Math.max(...apiTimes), first: Math.min(...apiTimes) });
  process.stderr.write(`trial ${t + 1}: ${victim.id} gone from every survivor's /api/presence after ${(Math.max(...apiTimes) / 1000).toFixed(2)} s (first ${(Math.min(...apiTimes) / 1000).toFixed(2)} s)\n`);
  // Restart under the same id: a new epoch; its clients rejoin.
  for (const c of victim.clients) c.close();
  const fresh = await serve(victim.id, seeds);
  Object.assign(victim, fresh);
  await populate(victim);
  await until(async () => (await Promise.all(nodes.map((n) => api(n.port, `/api/presence?topic=${TOPIC}`)))).every((j) => j.count === total), 60_000, 'presence after the restart');
}

const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))];
};
const f = (ms) => `${(ms / 1000).toFixed(2)} s`;
const P = CONFIG.probeIntervalMs;
const S = suspicionTimeout(CONFIG.suspicionMult, N, P);
console.log(`murmur presence, dead-node removal with real processes: ${N} murmur serve nodes on 127.0.0.1, bus ${BUS}, ${ENTRIES} entries each, gossip profile ${PROFILE} (probe ${P} ms, minimum suspicion ${S} ms, link suspicion ${CONFIG.linkSuspicionMs ?? '-'} ms), ${TRIALS} kill -9`);
console.log('');
console.log('| from kill -9 to | median | p90 | max |');
console.log('|---|---|---|---|');
for (const [label, key] of [
  ['entries gone from the first survivor\'s /api/presence', 'first'],
  ['entries gone from every survivor\'s /api/presence', 'everywhere'],
]) {
  const xs = results.map((r) => r[key]);
  console.log(`| ${label} | ${f(q(xs, 0.5))} | ${f(q(xs, 0.9))} | ${f(Math.max(...xs))} |`);
}
console.log('');
console.log(`bound (n P + ${CONFIG.suspicionMaxTimeoutMult} S + 10 gossip rounds): ${f(N * P + CONFIG.suspicionMaxTimeoutMult * S + 10 * CONFIG.gossipIntervalMs)}`);
for (const n of nodes) for (const c of n.clients) c.close();
cleanup();
process.exit(0);
