#!/usr/bin/env node
// The ready server at scale: `murmur serve --workers W` holding N authenticated users, each
// with its own token, subscribed to one of --rooms rooms, a tenth of them in their room's
// presence, and the first --big-room of them also in one big room. Clients are bare sockets in
// forked client processes (native-bench/serve-client.mjs), at most --per-client each, from
// source addresses 127.0.0.2 and up. While every user is held it measures:
//   1. user-space memory per user (RSS of serve's processes) and kernel memory per user
//      (Slab of /proc/meminfo; both ends are on this machine, so that is two sockets a user),
//   2. the handshake rate of the ramp (users connected, subscribed and joined per second),
//   3. publish-to-delivery latency p50/p99 for --rate publishes/s to random rooms over the HTTP
//      API, for --seconds seconds (clocks: CLOCK_MONOTONIC, the same in every process),
//   4. the time from one publish to its last delivery in the big room.
// Its clients do not reconnect, so serve runs with rebalancing and overload shedding off (a
// shed user would be counted as held and miss its deliveries); --serve-arg turns them back on.
// It stops short and says why when a user cannot be opened (the first error) or the ramp runs
// past --ramp-timeout. One JSON line at the end (and a human summary before it).
//
//   node native-bench/ramp/serve-ramp.mjs [-n 100000] [--workers 2] [--rooms 10000] [--big-room 10000]
//       [--rate 1000] [--seconds 10] [--per-client 15000] [--concurrency 200] [--ramp-timeout 600] [--settle 20]
//       [--serve-arg ARG]...
//
// A million on one machine: -n 1000000 --workers 14 --per-client 15000 (67 client processes,
// 63 source addresses), after `murmur tune --connections 1000000 --local-clients`.
import { fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { openServeClient } from '../serve-client.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.join(HERE, '..', '..');
const SECRET = 'ramp-secret-0123456789abcdef';
const API_KEY = 'ramp-api-key-0123456789';
const HOST = '127.0.0.1';
const USERS_PER_SOURCE = 16000; // well under the 28,232 ephemeral ports of one source address
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


/** A client process: opens users [from, to), reports progress, records deliveries. */
async function client(o) {
  const { mintToken } = await import(pathToFileURL(path.join(ROOT, 'dist/src/app/token.js')).href);
  const latencies = [];
  let bigAt = 0;
  let bigCount = 0;
  const sockets = [];
  const onText = (text) => {
    if (!text.startsWith('{"type":"message"')) return;
    const at = nowMs();
    const m = JSON.parse(text);
    if (m.topic === 'room:big') {
      bigCount++;
      bigAt = Math.max(bigAt, at);
    } else if (typeof m.data?.t === 'number') latencies.push(at - m.data.t);
  };
  const open = (i) => {
    const room = `room:${i % o.rooms}`;
    const token = mintToken(SECRET, { user: `user-${i}`, subscribe: ['room:*'], publish: [], presence: ['room:*'], ttlSeconds: 86400 });
    const commands = [`{"type":"subscribe","id":1,"topic":"${room}"}`];
    if (i % 10 === 0) commands.push(`{"type":"presence","action":"join","id":2,"topic":"${room}"}`);
    if (i < o.bigRoom) commands.push(`{"type":"subscribe","id":3,"topic":"room:big"}`);
    const src = Math.floor(i / USERS_PER_SOURCE);
    const localAddress = `127.0.${Math.floor(src / 250)}.${2 + (src % 250)}`;
    return openServeClient({ port: o.port, host: HOST, localAddress, path: `/ws?token=${token}`, commands, onText });
  };
  // A user that cannot be opened is counted with its reason; the process stops opening more
  // past max(10, 1%) of its users (what stopped it is then in `failed`).
  let next = o.from;
  let failures = 0;
  const reasons = {};
  let failed = null;
  const maxFailures = Math.max(10, Math.ceil((o.to - o.from) / 100));
  const runner = async () => {
    while (next < o.to && failed === null) {
      const i = next++;
      try {
        sockets.push(await open(i));
      } catch (err) {
        failures++;
        const why = String(err.message).slice(0, 60);
        reasons[why] = (reasons[why] ?? 0) + 1;
        if (failures > maxFailures) failed = `${failures} users of one client process could not be opened (${JSON.stringify(reasons)})`;
      }
    }
  };
  const progress = setInterval(() => process.send({ kind: 'progress', open: sockets.length }), 1000);
  await Promise.all(Array.from({ length: o.concurrency }, runner));
  clearInterval(progress);
  process.send({ kind: 'ramped', open: sockets.length, failed, failures, reasons });
  process.on('message', (m) => {
    if (m.kind === 'report') {
      process.send({ kind: 'report', latencies, bigAt, bigCount });
      latencies.length = 0;
    } else if (m.kind === 'stop') {
      for (const s of sockets) s.destroy();
      process.exit(0);
    }
  });
}

function parse() {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i === -1 ? dflt : Number(args[i + 1]);
  };
  const o = {
    users: opt('-n', 100000),
    workers: opt('--workers', 2),
    rooms: opt('--rooms', 10000),
    bigRoom: opt('--big-room', 10000),
    rate: opt('--rate', 1000),
    seconds: opt('--seconds', 10),
    perClient: opt('--per-client', 15000),
    concurrency: opt('--concurrency', 200),
    rampTimeout: opt('--ramp-timeout', 600),
    settle: opt('--settle', 20),
    serveArgs: args.flatMap((a, i) => (a === '--serve-arg' ? [args[i + 1]] : [])),
  };
  if (!(o.perClient >= 1 && o.perClient <= 18000)) throw new Error('--per-client: 1..18000 (a process holds at most 20,000 descriptors)');
  if (o.users / o.workers > 18000) throw new Error(`--workers: ${o.users} users need at least ${Math.ceil(o.users / 18000)} (a process holds at most 20,000 descriptors)`);
  o.bigRoom = Math.min(o.bigRoom, o.users);
  return o;
}

const meminfo = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/meminfo', 'utf8'))[1]) * 1024;
const rssOf = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
function treeRss(pid) {
  let sum = rssOf(pid);
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    const kids = fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
    for (const k of kids === '' ? [] : kids.split(' ')) sum += treeRss(Number(k));
  }
  return sum;
}
/**
 * Presence and replication figures of every worker from /metrics, summed over the workers
 * (`online` per worker as well): what the cluster of workers holds and sends for its users.
 */
async function presenceFigures(port) {
  const text = await new Promise((resolve) => {
    http.get({ host: HOST, port, path: '/metrics' }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve(b));
    }).on('error', () => resolve(''));
  });
  const sum = (family, labels = '') => {
    let total = 0;
    for (const line of text.split('\n')) {
      if (!(line.startsWith(`${family}{`) || line.startsWith(`${family} `)) || !line.includes(labels)) continue;
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return total;
  };
  const perWorker = [];
  for (const line of text.split('\n')) if (line.startsWith('murmur_online_users{')) perWorker.push(Number(line.slice(line.lastIndexOf(' ') + 1)));
  return {
    online_users_per_worker: perWorker,
    heap_used: sum('nodejs_heap_used_bytes'),
    presence_state_bytes: sum('murmur_cluster_presence_state_bytes'),
    remote_entries: sum('murmur_cluster_presence_entries', 'origin="remote"'),
    deltas_sent: sum('murmur_presence_deltas_total', 'event="sent"'),
    states_merged: sum('murmur_presence_states_total', 'event="merged"'),
    pulls: sum('murmur_presence_pulls_total'),
    gossip_bytes_sent: sum('murmur_gossip_bytes_total', 'direction="sent"'),
    gossip_streams_sent: sum('murmur_gossip_streams_total', 'direction="sent"'),
  };
}

/** CPU time (user + system, ms) of a process and its descendants: the work the ramp cost serve, whatever the machine's load. */
function treeCpuMs(pid) {
  let sum = 0;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    sum += ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ 100)
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      const kids = fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
      for (const k of kids === '' ? [] : kids.split(' ')) sum += treeCpuMs(Number(k));
    }
  } catch {
    // a process that exited meanwhile
  }
  return sum;
}

const pct = (sorted, q) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]);

async function driver() {
  const o = parse();
  const serve = spawn(
    process.execPath,
    [path.join(ROOT, 'dist/src/cli/main.js'), 'serve', '--port', '0', '--host', HOST, '--workers', String(o.workers), '--max-connections-per-address', '0', '--max-handshakes-per-address', '0', '--rebalance=off', '--overload-lag-ms', '0', ...o.serveArgs],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, MURMUR_SECRET: SECRET, MURMUR_API_KEY: API_KEY } },
  );
  const children = [];
  const cleanup = () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    if (serve.exitCode === null) serve.kill('SIGTERM');
  };
  process.on('exit', cleanup);
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));
  const port = await new Promise((resolve, reject) => {
    let text = '';
    const t = setTimeout(() => reject(new Error('serve did not print LISTENING')), 30000);
    serve.stdout.on('data', (d) => {
      text += d;
      const m = /LISTENING (\d+)/.exec(text);
      if (m !== null) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
  });
  await sleep(1000);
  const base = { rss: treeRss(serve.pid), slab: meminfo('Slab'), available: meminfo('MemAvailable') };
  const presence0 = await presenceFigures(port);
  const cpu0 = treeCpuMs(serve.pid);

  // 2. The ramp.
  const t0 = nowMs();
  const state = [];
  for (let from = 0, k = 0; from < o.users; from += o.perClient, k++) {
    const c = fork(fileURLToPath(import.meta.url), ['--client', JSON.stringify({ port, from, to: Math.min(o.users, from + o.perClient), rooms: o.rooms, bigRoom: o.bigRoom, concurrency: o.concurrency })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(c);
    state[k] = { open: 0, done: false, failed: null };
    c.on('message', (m) => {
      if (m.kind === 'progress') state[k].open = m.open;
      if (m.kind === 'ramped') Object.assign(state[k], { open: m.open, done: true, failed: m.failed, failures: m.failures, reasons: m.reasons });
    });
  }
  let stopped = null;
  for (;;) {
    await sleep(1000);
    const open = state.reduce((s, x) => s + x.open, 0);
    if (state.every((x) => x.done)) break;
    if (nowMs() - t0 > o.rampTimeout * 1000) {
      stopped = `the ramp ran past --ramp-timeout (${o.rampTimeout} s) at ${open} users`;
      break;
    }
  }
  const rampS = (nowMs() - t0) / 1000;
  const rampCpuMs = treeCpuMs(serve.pid) - cpu0;
  const held = state.reduce((s, x) => s + x.open, 0);
  stopped ??= state.find((x) => x.failed !== null)?.failed ?? null;
  const failures = state.reduce((s, x) => s + (x.failures ?? 0), 0);
  const reasons = {};
  for (const x of state) for (const [k, v] of Object.entries(x.reasons ?? {})) reasons[k] = (reasons[k] ?? 0) + v;
  console.error(`ramp: ${held} of ${o.users} users in ${rampS.toFixed(1)} s${stopped === null ? '' : `; stopped: ${stopped}`}`);

  // 1. Memory, after serve's 15 s sweep let go of the throttles of users at rest.
  const settleCpu0 = treeCpuMs(serve.pid);
  const settle0 = nowMs();
  await sleep(o.settle * 1000);
  const settleCpuPerS = (treeCpuMs(serve.pid) - settleCpu0) / ((nowMs() - settle0) / 1000);
  const at = { rss: treeRss(serve.pid), slab: meminfo('Slab'), available: meminfo('MemAvailable') };
  const clientsRss = children.reduce((s, c) => s + rssOf(c.pid), 0);
  const presence1 = await presenceFigures(port);
  const rampAndSettleS = (nowMs() - t0) / 1000;

  // 3. Publishes to random rooms over the HTTP API, at --rate for --seconds.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  const publish = (topic, data) =>
    new Promise((resolve) => {
      const body = JSON.stringify({ topic, data });
      const req = http.request({ host: HOST, port, path: '/api/publish', method: 'POST', agent, headers: { 'content-type': 'application/json', 'x-api-key': API_KEY, 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      });
      req.on('error', () => resolve(0));
      req.end(body);
    });
  const report = () => Promise.all(children.map((c) => new Promise((resolve) => {
    c.once('message', resolve);
    c.send({ kind: 'report' });
  })));
  await report(); // starts the counts afresh
  const total = Math.round(o.rate * o.seconds);
  const p0 = nowMs();
  const pending = [];
  let refused = 0;
  for (let i = 0; i < total; i++) {
    const due = p0 + (i * 1000) / o.rate;
    const wait = due - nowMs();
    if (wait > 1) await sleep(wait);
    pending.push(publish(`room:${Math.floor(Math.random() * o.rooms)}`, { t: nowMs() }).then((s) => void (s !== 200 && refused++)));
  }
  await Promise.all(pending);
  const publishS = (nowMs() - p0) / 1000;
  // Deliveries until they stop coming (a second that brings none, after at least 2 s; at most
  // 15 s): the first publish to a history topic of a cluster that has just formed waits for its
  // owner to take the topic over (docs/cluster.md, "Joins, restarts"), late but not lost.
  const lat = [];
  for (let waited = 0; waited < 15_000; waited += 1000) {
    await sleep(1000);
    const got = (await report()).flatMap((r) => r.latencies);
    lat.push(...got);
    if (got.length === 0 && waited >= 1000) break;
  }
  lat.sort((a, b) => a - b);

  // 4. One message to the big room.
  const b0 = nowMs();
  await publish('room:big', { big: true });
  await sleep(Math.max(3000, o.bigRoom / 1000));
  const big = await report();
  const bigCount = big.reduce((s, r) => s + r.bigCount, 0);
  const bigLast = Math.max(...big.map((r) => r.bigAt));

  const kernelPerUser = (at.slab - base.slab) / held;
  const result = {
    users: o.users,
    held,
    failures,
    failure_reasons: reasons,
    stopped,
    workers: o.workers,
    rooms: o.rooms,
    node: process.version,
    ramp_s: rampS,
    handshakes_per_s: held / rampS,
    serve_cpu_ms_per_user: rampCpuMs / held,
    // Users held, idle: what holding them costs serve's processes (gossip, anti-entropy, sweeps).
    serve_idle_cpu_ms_per_s: settleCpuPerS,
    serve_rss_per_user: (at.rss - base.rss) / held,
    kernel_slab_per_user_both_ends: kernelPerUser,
    client_rss_per_user: clientsRss / held,
    mem_available_used_per_user: (base.available - at.available) / held,
    publishes: total,
    publish_rate: total / publishS,
    publishes_refused: refused,
    deliveries: lat.length,
    latency_p50_ms: pct(lat, 0.5),
    latency_p99_ms: pct(lat, 0.99),
    big_room: o.bigRoom,
    big_room_delivered: bigCount,
    big_room_ms: bigCount > 0 ? bigLast - b0 : null,
    // Over the ramp and the settle, all workers together.
    presence: {
      seconds: rampAndSettleS,
      online_users_per_worker: presence1.online_users_per_worker,
      heap_used_per_user: (presence1.heap_used - presence0.heap_used) / held,
      state_bytes: presence1.presence_state_bytes,
      remote_entries: presence1.remote_entries,
      deltas_sent: presence1.deltas_sent - presence0.deltas_sent,
      states_merged: presence1.states_merged - presence0.states_merged,
      pulls: presence1.pulls - presence0.pulls,
      gossip_bytes_sent: presence1.gossip_bytes_sent - presence0.gossip_bytes_sent,
      gossip_streams_sent: presence1.gossip_streams_sent - presence0.gossip_streams_sent,
    },
  };
  // Clients on other machines: the server keeps one socket a user (half the slab measured here)
  // and its own user space; what this machine's MemAvailable would hold then.
  const serverPerUser = result.serve_rss_per_user + kernelPerUser / 2;
  result.projected_users_clients_elsewhere = Math.floor(base.available / serverPerUser);
  const k = (b) => `${(b / 1024).toFixed(2)} KiB`;
  console.error(
    [
      `held ${held} users (${o.workers} workers, ${o.rooms} rooms, a tenth in presence); ${failures} could not be opened${failures > 0 ? ` ${JSON.stringify(reasons)}` : ''}${stopped === null ? '' : `; stopped: ${stopped}`}`,
      `1. serve RSS ${k(result.serve_rss_per_user)} per user; kernel slab ${k(kernelPerUser)} per user (both ends); clients ${k(result.client_rss_per_user)} per user`,
      `2. handshakes ${Math.round(result.handshakes_per_s)}/s over the ramp (${rampS.toFixed(1)} s); serve's CPU ${result.serve_cpu_ms_per_user.toFixed(3)} ms per user; holding them idle ${result.serve_idle_cpu_ms_per_s.toFixed(0)} ms CPU/s`,
      `3. ${total} publishes at ${Math.round(result.publish_rate)}/s (${refused} refused): ${lat.length} deliveries, p50 ${result.latency_p50_ms?.toFixed(2)} ms, p99 ${result.latency_p99_ms?.toFixed(2)} ms`,
      `presence over the ramp and settle: users per worker ${result.presence.online_users_per_worker.join(' / ')}; JS heap used ${k(result.presence.heap_used_per_user)} per user (all workers); full states ${result.presence.state_bytes} B (all workers), ${result.presence.states_merged} merged; ${result.presence.deltas_sent} deltas, ${result.presence.pulls} pulls; gossip ${result.presence.gossip_bytes_sent} B in datagrams, ${result.presence.gossip_streams_sent} streams`,
      `4. one message to a room of ${o.bigRoom}: ${bigCount} delivered, last after ${result.big_room_ms?.toFixed(1)} ms`,
      `projection with the clients on other machines: ~${result.projected_users_clients_elsewhere} users in this machine's MemAvailable (${k(serverPerUser)} per user)`,
    ].join('\n'),
  );
  console.log(JSON.stringify(result));
  for (const c of children) c.send({ kind: 'stop' });
  await sleep(500);
  process.exit(0);
}

if (process.argv[2] === '--client') await client(JSON.parse(process.argv[3]));
else await driver();
