#!/usr/bin/env node
// The ready server at scale: `murmur serve --workers W` holding N authenticated users, each
// with its own token, subscribed to one of --rooms rooms, a tenth of them in their room's
// presence, and the first --big-room of them also in one big room. The clients are the native
// load generator (--clients native, the default: native-bench/loadgen.c --scenario serve, its
// worker processes of up to 19,000 users each, tokens minted in C, grown in steps of --step
// users) or forked Node processes of bare sockets (--clients node: serve-client.mjs, at most
// --per-client each; ~9 KiB and much CPU per user), from source addresses 127.0.0.2 and up.
// While every user is held it measures:
//   1. user-space memory per user (RSS of serve's processes) and kernel memory per user
//      (Slab of /proc/meminfo; both ends are on this machine, so that is two sockets a user),
//      and the clients' RSS per user,
//   2. the handshake rate of the ramp (users connected, subscribed and joined per second),
//   3. publish-to-delivery latency p50/p99 for --rate publishes/s to random rooms over the HTTP
//      API, for --seconds seconds (clocks: CLOCK_MONOTONIC, the same in every process), from
//      --publishers processes, after one message to every room (unless --cold-rooms),
//   4. the time from one publish to its last delivery in the big room.
// Its clients do not reconnect, so serve runs with rebalancing and overload shedding off (a
// shed user would be counted as held and miss its deliveries); --serve-arg turns them back on.
// It stops short and says why at the first step in which a user failed (native: with the
// failure reasons and the error codes of refused commands; node: past 1% of a client process's
// users), when serve exits, when MemAvailable falls under --margin-gib, or past --ramp-timeout.
// One JSON line at the end (and a human summary before it; --out FILE keeps it too).
//
//   node native-bench/ramp/serve-ramp.mjs [-n 100000] [--workers 2] [--rooms 10000] [--big-room 10000]
//       [--clients native|node] [--step N] [--step-timeout 300] [--rate 1000] [--seconds 10]
//       [--publishers 1] [--cold-rooms] [--per-client 15000] [--concurrency C] [--ramp-timeout 600]
//       [--settle 20] [--margin-gib 2] [--node PATH] [--out FILE] [--serve-arg ARG]...
//
// A million on one machine (native-bench/README.md, "The ready server"): after `murmur tune
// --connections 1000000 --local-clients`, -n 1000000 --workers 60 on Node 24 (--node), whose
// workers each bind the port with SO_REUSEPORT so the kernel spreads users evenly.
import { execFileSync, fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildLoadgen, LOADGEN } from '../loadgen-build.mjs';
import { openServeClient } from '../serve-client.mjs';
import { childPids, readProcMem } from './lib.mjs';

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
      bigAt = bigCount = 0;
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
  const str = (name, dflt) => {
    const i = args.indexOf(name);
    return i === -1 ? dflt : args[i + 1];
  };
  const o = {
    clients: str('--clients', 'native'),
    node: str('--node', process.execPath),
    out: str('--out', null),
    users: opt('-n', 100000),
    workers: opt('--workers', 2),
    rooms: opt('--rooms', 10000),
    bigRoom: opt('--big-room', 10000),
    rate: opt('--rate', 1000),
    seconds: opt('--seconds', 10),
    perClient: opt('--per-client', 15000),
    concurrency: opt('--concurrency', NaN),
    step: opt('--step', NaN),
    stepTimeout: opt('--step-timeout', 300),
    publishers: opt('--publishers', 1),
    marginGiB: opt('--margin-gib', 2),
    coldRooms: args.includes('--cold-rooms'),
    rampTimeout: opt('--ramp-timeout', 600),
    settle: opt('--settle', 20),
    serveArgs: args.flatMap((a, i) => (a === '--serve-arg' ? [args[i + 1]] : [])),
  };
  if (o.clients !== 'native' && o.clients !== 'node') throw new Error('--clients: native or node');
  // Native: handshakes in flight, at most 150 per worker (under the listen backlog of 511), 1,000
  // in all; a Node client process keeps 200 each.
  if (Number.isNaN(o.concurrency)) o.concurrency = o.clients === 'native' ? Math.min(1000, 150 * o.workers) : 200;
  if (Number.isNaN(o.step)) o.step = Math.min(50000, Math.max(1000, Math.ceil(o.users / 10)));
  if (!(o.publishers >= 1 && o.publishers <= 16)) throw new Error('--publishers: 1..16');
  o.nodeVersion = execFileSync(o.node, ['--version'], { encoding: 'utf8' }).trim();
  // Before Node 22.12 serve's workers accept from one shared socket, and a busy machine lets one
  // take ~20 % more than its share (src/server/supervisor.ts, reusePortSupported).
  const [major, minor] = o.nodeVersion.slice(1).split('.').map(Number);
  if (!(major >= 23 || (major === 22 && minor >= 12)) && o.workers > 1 && (o.users / o.workers) * 1.2 > 19500) {
    console.error(`serve-ramp: warning: serve on Node ${o.nodeVersion} shares one accepting socket between its workers; ${Math.round(o.users / o.workers)} users a worker may put one past its 20,000 descriptors (use --node with Node >= 22.12, or more --workers)`);
  }
  if (!(o.perClient >= 1 && o.perClient <= 18000)) throw new Error('--per-client: 1..18000 (a process holds at most 20,000 descriptors)');
  if (o.users / o.workers > 18000) throw new Error(`--workers: ${o.users} users need at least ${Math.ceil(o.users / 18000)} (a process holds at most 20,000 descriptors)`);
  o.bigRoom = Math.min(o.bigRoom, o.users);
  return o;
}

/** TCP sockets in use on the machine (/proc/net/sockstat): 2 a user here; others' runs move it too. */
const tcpInuse = () => Number(/TCP: inuse (\d+)/.exec(fs.readFileSync('/proc/net/sockstat', 'utf8'))?.[1] ?? 0);
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

/**
 * The Node clients (--clients node): forked processes of --per-client users each, bare sockets
 * of serve-client.mjs. ~9 KiB of client RSS and much CPU per user: a shared machine runs out of
 * CPU near 60,000 users.
 */
function nodeClients(o, port, children) {
  const state = [];
  const latencies = [];
  let big = 0;
  let bigLastMs = 0;
  const report = () => Promise.all(children.map((c) => new Promise((resolve) => {
    c.once('message', resolve);
    c.send({ kind: 'report' });
  })));
  return {
    async ramp(t0) {
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
      const reasons = {};
      for (const x of state) for (const [k, v] of Object.entries(x.reasons ?? {})) reasons[k] = (reasons[k] ?? 0) + v;
      return {
        held: state.reduce((s, x) => s + x.open, 0),
        stopped: stopped ?? state.find((x) => x.failed !== null)?.failed ?? null,
        failures: state.reduce((s, x) => s + (x.failures ?? 0), 0),
        reasons,
        steps: [],
      };
    },
    rss: () => children.reduce((s, c) => s + rssOf(c.pid), 0),
    async mark() {
      await report(); // starts the counts afresh
      latencies.length = 0;
      big = bigLastMs = 0;
    },
    async deliveries() {
      const got = await report();
      for (const r of got) latencies.push(...r.latencies);
      latencies.sort((a, b) => a - b);
      big += got.reduce((s, r) => s + r.bigCount, 0);
      bigLastMs = Math.max(bigLastMs, ...got.map((r) => r.bigAt));
      return { count: latencies.length, p50: pct(latencies, 0.5), p99: pct(latencies, 0.99), big, bigLastMs };
    },
    async stop() {
      for (const c of children) c.send({ kind: 'stop' });
      await sleep(500);
    },
  };
}

/**
 * The native clients (--clients native, the default): one load generator (native-bench/loadgen.c,
 * --scenario serve --stepped) whose worker processes hold up to 19,000 users each; tokens minted
 * in C; grown in steps of --step users, each step reported; it stops at the first step in which
 * a user failed, naming the reasons and the error codes.
 */
async function nativeClients(o, port, children, serve) {
  buildLoadgen((m) => console.error(m));
  const srcIps = Math.ceil(o.users / USERS_PER_SOURCE);
  const argv = [
    '--port', String(port), '--host', HOST, '--scenario', 'serve', '--stepped', '-c', String(o.users),
    '--rooms', String(o.rooms), '--big-room', String(o.bigRoom), '--src-first', '1', '--src-ips', String(srcIps),
    '--concurrency', String(o.concurrency), '--timeout', '30', '--ramp-timeout', String(o.stepTimeout),
    '--duration', String(o.rampTimeout + 900), '--stdin-eof-stop',
  ];
  const lg = spawn(LOADGEN, argv, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, MURMUR_SECRET: SECRET } });
  children.push(lg);
  lg.stdin.on('error', () => {});
  const queue = [];
  const errTail = [];
  let ready = false;
  let wake = () => {};
  const lines = (stream, fn) => {
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (d) => {
      const parts = (rest + d).split('\n');
      rest = parts.pop();
      for (const l of parts) fn(l);
      wake();
    });
  };
  lines(lg.stdout, (l) => {
    if (l.startsWith('{"event"')) queue.push(JSON.parse(l));
  });
  lines(lg.stderr, (l) => {
    if (l.startsWith('READY')) ready = true;
    else if (!l.startsWith('[loadgen]')) errTail.push(l), errTail.length > 10 && errTail.shift();
  });
  lg.on('exit', () => wake());
  /** The next JSON event of a kind, within ms. */
  const next = async (kind, ms) => {
    const end = nowMs() + ms;
    for (;;) {
      const i = queue.findIndex((e) => e.event === kind);
      if (i >= 0) return queue.splice(i, 1)[0];
      if (lg.exitCode !== null || lg.signalCode !== null) throw new Error(`the load generator exited: ${errTail.join(' | ')}`);
      if (nowMs() > end) throw new Error(`no ${kind} from the load generator within ${ms} ms`);
      await new Promise((r) => {
        wake = r;
        setTimeout(r, 200);
      });
    }
  };
  const send = (line) => lg.stdin.write(`${line}\n`);
  for (const end = nowMs() + 30000; !ready; await sleep(50)) {
    if (lg.exitCode !== null || nowMs() > end) throw new Error(`the load generator did not start: ${errTail.join(' | ')}`);
  }
  const pids = [lg.pid, ...childPids(lg.pid)];
  const rssNow = () => pids.reduce((s, p) => s + (readProcMem(p)?.rss ?? 0), 0);
  const rss0 = rssNow();
  const deliveries = async () => {
    send('deliveries');
    const e = await next('deliveries', 10000);
    return { count: e.deliveries, p50: e.p50_ms, p99: e.p99_ms, big: e.big, bigLastMs: e.big_last_ns / 1e6 };
  };
  return {
    loadgenWorkers: pids.length - 1,
    srcIps,
    async ramp(t0, base) {
      const steps = [];
      let stopped = null;
      let last = { connected: 0, failed: 0, step_fail_reasons: {}, error_codes: {} };
      for (let target = Math.min(o.step, o.users); ; target = Math.min(o.users, target + o.step)) {
        const s0 = nowMs();
        send(`grow ${target}`);
        const ev = await next('step', (o.stepTimeout + 60) * 1000);
        const m = { rss: treeRss(serve.pid), slab: meminfo('Slab'), available: meminfo('MemAvailable') };
        const per = (x) => (ev.connected > 0 ? x / ev.connected : null);
        const step = {
          target,
          held: ev.connected,
          failed: ev.failed,
          step_s: +((nowMs() - s0) / 1000).toFixed(2),
          handshakes_per_s: ev.handshakes_per_s,
          serve_rss_per_user: per(m.rss - base.rss),
          kernel_slab_per_user_both_ends: per(m.slab - base.slab),
          loadgen_rss_per_user: per(rssNow() - rss0),
          mem_available: m.available,
          fail_reasons: ev.step_fail_reasons,
          error_codes: ev.error_codes,
        };
        steps.push(step);
        last = ev;
        const k = (b) => `${(b / 1024).toFixed(2)} KiB`;
        console.error(`[serve-ramp] step to ${target}: ${ev.connected} held, ${ev.failed} failed, ${ev.handshakes_per_s}/s; serve ${k(step.serve_rss_per_user)}, slab ${k(step.kernel_slab_per_user_both_ends)}, load generator ${k(step.loadgen_rss_per_user)} per user; MemAvailable ${(m.available / 2 ** 30).toFixed(1)} GiB`);
        if (ev.failed > 0) stopped = `step to ${target}: ${ev.failed} users failed ${JSON.stringify(ev.step_fail_reasons)}, error codes ${JSON.stringify(ev.error_codes)}`;
        else if (serve.exitCode !== null) stopped = `murmur serve exited (${serve.exitCode})`;
        else if (m.available < o.marginGiB * 2 ** 30) stopped = `MemAvailable under --margin-gib (${o.marginGiB} GiB)`;
        else if (nowMs() - t0 > o.rampTimeout * 1000 && target < o.users) stopped = `the ramp ran past --ramp-timeout (${o.rampTimeout} s) at ${ev.connected} users`;
        if (stopped !== null || target >= o.users) break;
      }
      return { held: last.connected, stopped, failures: last.failed, reasons: { ...last.step_fail_reasons, ...(Object.keys(last.error_codes ?? {}).length > 0 ? { error_codes: last.error_codes } : {}) }, steps };
    },
    rss: () => rssNow() - rss0,
    rssTotal: rssNow,
    async mark() {
      send('mark');
      await deliveries(); // answered after the mark: every worker counts afresh
    },
    deliveries,
    async stop() {
      send('stop');
      for (const end = nowMs() + 60000; lg.exitCode === null && lg.signalCode === null && nowMs() < end; ) await sleep(200);
    },
  };
}

/**
 * Publishes `count` messages over POST /api/publish from this process, the k-th at startAt + k x
 * every ms (CLOCK_MONOTONIC), each stamped {t: the time it was sent, ms}: to random rooms, or with
 * `warm` to rooms first, first + stride, ... and room:big after the last (one message each,
 * unstamped). Up to 512 requests in
 * flight: the first publish to a history topic of a cluster waits for its owner (~1 s), and a
 * smaller pool would cap the rate at pool / 1 s.
 */
async function publishLoop({ port, rooms, count, every, startAt, warm = false, first = 0, stride = 1 }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const pending = [];
  let refused = 0;
  for (let i = 0; i < count; i++) {
    const wait = startAt + i * every - nowMs();
    if (wait > 1) await sleep(wait);
    const k = first + i * stride;
    const topic = warm ? (k < rooms ? `room:${k}` : 'room:big') : `room:${Math.floor(Math.random() * rooms)}`;
    pending.push(publish(port, agent, topic, warm ? { warm: true } : { t: nowMs() }).then((s) => void (s !== 200 && refused++)));
  }
  await Promise.all(pending);
  agent.destroy();
  return { sent: count, refused, end: nowMs() };
}

function publish(port, agent, topic, data) {
  return new Promise((resolve) => {
    const body = JSON.stringify({ topic, data });
    const req = http.request({ host: HOST, port, path: '/api/publish', method: 'POST', agent, headers: { 'content-type': 'application/json', 'x-api-key': API_KEY, 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

/**
 * --rate publishes/s for --seconds (with `warm`: one to every room) in this process, or
 * interleaved over --publishers forked ones.
 */
async function publishAll(o, port, warm = false) {
  const total = warm ? o.rooms + 1 : Math.round(o.rate * o.seconds);
  const every = 1000 / o.rate;
  const startAt = nowMs() + (o.publishers > 1 ? 500 : 0);
  const shares = Array.from({ length: o.publishers }, (_, k) => ({ port, rooms: o.rooms, count: Math.floor((total - k + o.publishers - 1) / o.publishers), every: every * o.publishers, startAt: startAt + k * every, warm, first: k, stride: o.publishers }));
  const results = o.publishers === 1
    ? [await publishLoop(shares[0])]
    : await Promise.all(shares.map((share) => new Promise((resolve, reject) => {
      const c = fork(fileURLToPath(import.meta.url), ['--publisher', JSON.stringify(share)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      c.once('message', resolve);
      c.once('exit', (code) => reject(new Error(`a publisher process exited (${code})`)));
    })));
  const end = Math.max(...results.map((r) => r.end));
  return { total, refused: results.reduce((s, r) => s + r.refused, 0), seconds: (end - startAt) / 1000 };
}

async function driver() {
  const o = parse();
  const serve = spawn(
    o.node,
    [path.join(ROOT, 'dist/src/cli/main.js'), 'serve', '--port', '0', '--host', HOST, '--workers', String(o.workers), '--max-connections-per-address', '0', '--max-handshakes-per-address', '0', '--rebalance=off', '--overload-lag-ms', '0', ...o.serveArgs],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, MURMUR_SECRET: SECRET, MURMUR_API_KEY: API_KEY } },
  );
  const children = [];
  const cleanup = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (serve.exitCode === null) serve.kill('SIGTERM');
  };
  process.on('exit', cleanup);
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));
  const port = await new Promise((resolve, reject) => {
    let text = '';
    // Workers start one after another: 60 of them take ~30 s on two busy CPUs.
    const t = setTimeout(() => reject(new Error('serve did not print LISTENING')), 30000 + 1000 * o.workers);
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
  const clients = o.clients === 'native' ? await nativeClients(o, port, children, serve) : nodeClients(o, port, children);
  const base = { rss: treeRss(serve.pid), slab: meminfo('Slab'), available: meminfo('MemAvailable'), tcp: tcpInuse() };
  const presence0 = await presenceFigures(port);
  const cpu0 = treeCpuMs(serve.pid);
  const load0 = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);

  // 2. The ramp.
  const t0 = nowMs();
  const { held, stopped, failures, reasons, steps } = await clients.ramp(t0, base);
  const rampS = (nowMs() - t0) / 1000;
  const rampCpuMs = treeCpuMs(serve.pid) - cpu0;
  console.error(`ramp: ${held} of ${o.users} users in ${rampS.toFixed(1)} s${stopped === null ? '' : `; stopped: ${stopped}`}`);

  // 1. Memory, after serve's 15 s sweep let go of the throttles of users at rest.
  const settleCpu0 = treeCpuMs(serve.pid);
  const settle0 = nowMs();
  await sleep(o.settle * 1000);
  const settleCpuPerS = (treeCpuMs(serve.pid) - settleCpu0) / ((nowMs() - settle0) / 1000);
  const at = { rss: treeRss(serve.pid), slab: meminfo('Slab'), available: meminfo('MemAvailable'), tcp: tcpInuse() };
  const clientsRss = clients.rss();
  // The load generator's connection table (304 B a connection) is touched for all N at its start,
  // so its growth above leaves it out; its whole RSS includes it.
  const loadgenRssTotal = clients.rssTotal?.() ?? null;
  const presence1 = await presenceFigures(port);
  const rampAndSettleS = (nowMs() - t0) / 1000;

  // 3. Publishes to random rooms over the HTTP API, at --rate for --seconds. First (unless
  // --cold-rooms) one message to every room and to room:big: the measured publishes then find
  // every topic ordered, as in a server that has been running (steady state), rather than first
  // publishes, each waiting ~1 s for its topic's owner to learn the topic's line
  // (docs/cluster.md, "Joins, restarts").
  const warmed = o.coldRooms ? null : await publishAll(o, port, true);
  if (warmed !== null) await sleep(3000);
  await clients.mark();
  const pub = await publishAll(o, port);
  // Deliveries until they stop coming (a second that brings none, after at least 2 s; at most
  // 15 s): the first publish to a history topic of a cluster that has just formed waits for its
  // owner to take the topic over (docs/cluster.md, "Joins, restarts"), late but not lost.
  let got = { count: 0, p50: NaN, p99: NaN };
  for (let waited = 0; waited < 15_000; waited += 1000) {
    await sleep(1000);
    const before = got.count;
    got = await clients.deliveries();
    if (got.count === before && waited >= 1000) break;
  }

  // 4. One message to the big room.
  const bigExpected = Math.min(o.bigRoom, held);
  const b0 = nowMs();
  const bigAgent = new http.Agent({ keepAlive: false });
  await publish(port, bigAgent, 'room:big', { big: true });
  let big = { big: 0, bigLastMs: 0 };
  for (const end = nowMs() + Math.max(3000, o.bigRoom / 100); nowMs() < end; ) {
    await sleep(Math.max(500, o.bigRoom / 1000));
    big = await clients.deliveries();
    if (big.big >= bigExpected && o.clients === 'native') break;
  }
  const load1 = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);

  const kernelPerUser = (at.slab - base.slab) / held;
  const result = {
    users: o.users,
    held,
    failures,
    failure_reasons: reasons,
    stopped,
    clients: o.clients,
    workers: o.workers,
    rooms: o.rooms,
    node: process.version,
    serve_node: o.nodeVersion,
    loadavg: { before: load0, after: load1 },
    ramp_s: rampS,
    handshakes_per_s: held / rampS,
    serve_cpu_ms_per_user: rampCpuMs / held,
    // Users held, idle: what holding them costs serve's processes (gossip, anti-entropy, sweeps).
    serve_idle_cpu_ms_per_s: settleCpuPerS,
    serve_rss_per_user: (at.rss - base.rss) / held,
    kernel_slab_per_user_both_ends: kernelPerUser,
    // Slab and sockets are the machine's: another process opening or closing sockets meanwhile
    // moves them. The TCP sockets that appeared should be 2 a user (+ the publishers' few).
    tcp_sockets_added: at.tcp - base.tcp,
    slab_suspect: Math.abs(at.tcp - base.tcp - 2 * held) > Math.max(100, 0.02 * held),
    client_rss_per_user: clientsRss / held,
    mem_available_used_per_user: (base.available - at.available) / held,
    publishes: pub.total,
    publishers: o.publishers,
    publish_rate: pub.total / pub.seconds,
    publishes_refused: pub.refused,
    warm_rooms: warmed === null ? null : { publishes: warmed.total, refused: warmed.refused, seconds: warmed.seconds },
    deliveries: got.count,
    latency_p50_ms: got.p50,
    latency_p99_ms: got.p99,
    big_room: o.bigRoom,
    big_room_delivered: big.big,
    big_room_ms: big.big > 0 ? big.bigLastMs - b0 : null,
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
    ...(o.clients === 'native' ? { loadgen_rss_total_per_user: loadgenRssTotal / held, loadgen_workers: clients.loadgenWorkers, source_addresses: clients.srcIps, step: o.step, steps } : {}),
  };
  // Clients on other machines: the server keeps one socket a user (half the slab measured here)
  // and its own user space; what this machine's MemAvailable would hold then.
  const serverPerUser = result.serve_rss_per_user + kernelPerUser / 2;
  result.projected_users_clients_elsewhere = Math.floor(base.available / serverPerUser);
  const k = (b) => `${(b / 1024).toFixed(2)} KiB`;
  console.error(
    [
      `held ${held} users (${o.workers} workers, ${o.rooms} rooms, a tenth in presence; ${o.clients} clients); ${failures} could not be opened${failures > 0 ? ` ${JSON.stringify(reasons)}` : ''}${stopped === null ? '' : `; stopped: ${stopped}`}`,
      `1. serve RSS ${k(result.serve_rss_per_user)} per user; kernel slab ${k(kernelPerUser)} per user (both ends${result.slab_suspect ? `; suspect: ${result.tcp_sockets_added} TCP sockets appeared on the machine for ${2 * held}` : ''}); clients ${k(result.client_rss_per_user)} per user`,
      `2. handshakes ${Math.round(result.handshakes_per_s)}/s over the ramp (${rampS.toFixed(1)} s); serve's CPU ${result.serve_cpu_ms_per_user.toFixed(3)} ms per user; holding them idle ${result.serve_idle_cpu_ms_per_s.toFixed(0)} ms CPU/s`,
      `3. ${pub.total} publishes at ${Math.round(result.publish_rate)}/s from ${o.publishers} process(es) (${pub.refused} refused): ${got.count} deliveries, p50 ${result.latency_p50_ms?.toFixed(2)} ms, p99 ${result.latency_p99_ms?.toFixed(2)} ms`,
      `presence over the ramp and settle: users per worker ${result.presence.online_users_per_worker.join(' / ')}; JS heap used ${k(result.presence.heap_used_per_user)} per user (all workers); full states ${result.presence.state_bytes} B (all workers), ${result.presence.states_merged} merged; ${result.presence.deltas_sent} deltas, ${result.presence.pulls} pulls; gossip ${result.presence.gossip_bytes_sent} B in datagrams, ${result.presence.gossip_streams_sent} streams`,
      `4. one message to a room of ${o.bigRoom}: ${big.big} delivered, last after ${result.big_room_ms?.toFixed(1)} ms`,
      `projection with the clients on other machines: ~${result.projected_users_clients_elsewhere} users in this machine's MemAvailable (${k(serverPerUser)} per user)`,
    ].join('\n'),
  );
  if (o.out !== null) fs.writeFileSync(o.out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result));
  await clients.stop();
  process.exit(0);
}

if (process.argv[2] === '--client') await client(JSON.parse(process.argv[3]));
else if (process.argv[2] === '--publisher') process.send(await publishLoop(JSON.parse(process.argv[3])), () => process.exit(0));
else await driver();
