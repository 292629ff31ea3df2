#!/usr/bin/env node
// The cluster bus, mesh against redis, in one run: 3 node processes on this machine, each a
// murmur Server with its bus and one local subscriber to topic "bench" (a Subscriber object
// in the server's Topics: what is measured is bus + fan-out up to the subscriber's write,
// not a client's socket). Every node publishes; delivered = messages handed to a subscriber
// on another node than the publisher's.
//
//  - throughput: every node publishes as fast as it can (bursts of --burst per event-loop
//    turn) for --duration s; messages/s delivered cluster-wide (sum over the 3 nodes of
//    messages from the 2 others), and how many the bus dropped (link or Redis budget).
//    Also the CPU time of the three processes in that window per message delivered on another
//    node (process.cpuUsage), steadier than msgs/s when the machine is shared.
//  - latency: every node publishes --rate messages/s for --duration s; publish-to-delivery
//    latency on another node (process.hrtime, the same monotonic clock in every process),
//    p50 and p99.
//
// Medians of --runs runs, transports interleaved run by run. Redis: redis-server (Debian
// package redis-server) on a free loopback port, --save '' --appendonly no, restarted per run.
// Usage: npm run build && node native-bench/cluster/bus-bench.mjs [--runs 5] [--duration 3]
//   [--size 128] [--rate 2000] [--burst 64] [--transports mesh,redis] [--json out.json]
// Transport `mesh-history`: the mesh with "bench" keeping a history, so its messages are
// ordered cluster-wide by the topic's owner and replicated before delivery (docs/cluster.md);
// its "dropped" adds the publishes the ordering gave up on (forwardsLost).
// Transport `redis-history`: Redis with "bench" keeping a history, so its messages are ordered,
// kept and published by one script call per tick (docs/cluster.md, "With the Redis bus"); it
// also reports what one kept message costs in Redis (MEMORY USAGE of the topic's list / LLEN).
import { fork, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const self = fileURLToPath(import.meta.url);

if (process.argv[2] === '--node') await runNode();
else await main();

// ---------------------------------------------------------------- parent

async function main() {
  const args = process.argv.slice(2);
  const opt = (name, def) => {
    const i = args.indexOf(`--${name}`);
    return i === -1 ? def : args[i + 1];
  };
  const runs = Number(opt('runs', 5));
  const duration = Number(opt('duration', 3));
  const size = Number(opt('size', 128));
  const rate = Number(opt('rate', 2000));
  const burst = Number(opt('burst', 64));
  const transports = String(opt('transports', 'mesh,redis')).split(',');
  const jsonOut = opt('json', null);
  const redisBin = transports.some((t) => t.startsWith('redis')) ? findRedis() : null;

  const results = Object.fromEntries(transports.map((t) => [t, []]));
  for (let r = 0; r < runs; r++) {
    for (const t of transports) {
      const res = await oneRun(t, { duration, size, rate, burst, redisBin });
      results[t].push(res);
      console.log(`run ${r + 1}/${runs} ${t}: ${fmt(res.throughput)} msg/s delivered (dropped ${res.dropped}), ${Math.round(res.cpuPerMessage)} ns CPU/msg, latency at ${3 * rate} msg/s: p50 ${res.p50.toFixed(3)} ms, p99 ${res.p99.toFixed(3)} ms (${res.latencySamples} samples)`);
    }
  }
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  console.log(`\nmedians of ${runs} runs; ${cpus().length} CPUs, Node ${process.version}, payload ${size} B, 3 nodes`);
  console.log('| figure | ' + transports.join(' | ') + ' |');
  console.log('|---|' + transports.map(() => '---:').join('|') + '|');
  const row = (label, f) => console.log(`| ${label} | ${transports.map((t) => f(results[t])).join(' | ')} |`);
  row('messages/s delivered cluster-wide, publishers flat out (higher is better)', (rs) => fmt(median(rs.map((x) => x.throughput))));
  row('  dropped by the bus in that window (link/Redis byte budget)', (rs) => String(median(rs.map((x) => x.dropped))));
  row('  CPU of the 3 processes per message delivered on another node (lower is better)', (rs) => `${Math.round(median(rs.map((x) => x.cpuPerMessage)))} ns`);
  row(`p50 publish-to-delivery on another node at ${3 * rate} msg/s (lower is better)`, (rs) => `${median(rs.map((x) => x.p50)).toFixed(3)} ms`);
  row(`p99 publish-to-delivery on another node at ${3 * rate} msg/s (lower is better)`, (rs) => `${median(rs.map((x) => x.p99)).toFixed(3)} ms`);
  if (transports.includes('redis-history')) row('Redis memory per kept history message (MEMORY USAGE / LLEN)', (rs) => (rs[0].redisBytesPerMessage === undefined ? '' : `${Math.round(median(rs.map((x) => x.redisBytesPerMessage)))} B`));
  if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ date: new Date().toISOString(), runs, duration, size, rate, burst, results }, null, 2));
}

function fmt(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)} k` : String(Math.round(n));
}

function findRedis() {
  for (const p of ['/usr/bin/redis-server', '/usr/local/bin/redis-server', 'redis-server']) {
    if (spawnSync(p, ['--version']).status === 0) return p;
  }
  console.error('MISSING: redis-server (Debian package redis-server: apt-get install -y redis-server); or pass --transports mesh');
  process.exit(1);
}

async function freePort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

async function startRedis(bin) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'murmur-bench-redis-'));
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error('redis-server did not start')), 10_000);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('Ready to accept connections')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Bytes Redis uses per kept message of topic "bench" (its list, exactly: MEMORY USAGE ... SAMPLES 0). */
async function keptMessageBytes(url) {
  const { createClient } = await import('redis');
  const c = createClient({ url });
  await c.connect();
  try {
    const key = 'murmur:bus:{bench}:h';
    const n = Number(await c.sendCommand(['LLEN', key]));
    const bytes = Number(await c.sendCommand(['MEMORY', 'USAGE', key, 'SAMPLES', '0']));
    return n === 0 ? NaN : bytes / n;
  } finally {
    await c.close();
  }
}

function ask(child, msg, reply, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`node did not answer ${msg.cmd}`)), timeoutMs);
    const on = (m) => {
      if (m.reply !== reply) return;
      clearTimeout(t);
      child.off('message', on);
      resolve(m);
    };
    child.on('message', on);
    child.send(msg);
  });
}

async function oneRun(transport, o) {
  const redis = transport.startsWith('redis') ? await startRedis(o.redisBin) : null;
  const base = transport.replace(/-history$/, '');
  const ids = ['n0', 'n1', 'n2'];
  const children = ids.map((id, i) => fork(self, ['--node'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  try {
    const started = await Promise.all(children.map((c, i) => ask(c, { cmd: 'start', id: ids[i], index: i, transport: base, history: transport !== base, redisUrl: redis?.url, size: o.size }, 'started')));
    const peers = started.map((s, i) => ({ id: ids[i], url: `ws://127.0.0.1:${s.meshPort}/cluster/bus` }));
    await Promise.all(children.map((c) => ask(c, { cmd: 'link', peers }, 'linked')));
    // Warm-up, then the two phases; every node runs them at the same time.
    await Promise.all(children.map((c) => ask(c, { cmd: 'phase', mode: 'flat', ms: 500, burst: o.burst }, 'done')));
    const flat = await Promise.all(children.map((c) => ask(c, { cmd: 'phase', mode: 'flat', ms: o.duration * 1000, burst: o.burst }, 'done')));
    // Let queues drain before the paced phase (with history: until every publish came back ordered).
    await new Promise((r) => setTimeout(r, 300));
    await Promise.all(children.map((c) => ask(c, { cmd: 'drain' }, 'drained', 60_000)));
    const paced = await Promise.all(children.map((c) => ask(c, { cmd: 'phase', mode: 'paced', ms: o.duration * 1000, rate: o.rate }, 'done')));
    const delivered = flat.reduce((s, x) => s + x.remoteDelivered, 0);
    const lat = paced.flatMap((x) => x.latencies).sort((a, b) => a - b);
    const q = (p) => (lat.length === 0 ? NaN : lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]);
    const redisBytesPerMessage = transport === 'redis-history' ? await keptMessageBytes(redis.url) : undefined;
    return {
      redisBytesPerMessage,
      throughput: delivered / o.duration,
      // CPU of all three processes in the flat-out window per message delivered on another
      // node: steadier than msgs/s on a shared machine, where the processes' share of the
      // cores varies run to run.
      cpuPerMessage: (flat.reduce((s, x) => s + x.cpuUs, 0) * 1000) / Math.max(1, delivered),
      dropped: flat.reduce((s, x) => s + x.dropped, 0),
      p50: q(0.5),
      p99: q(0.99),
      latencySamples: lat.length,
    };
  } finally {
    await Promise.all(children.map((c) => ask(c, { cmd: 'stop' }, 'stopped', 10_000).catch(() => c.kill('SIGKILL'))));
    if (redis) await redis.stop();
  }
}

// ---------------------------------------------------------------- one node

async function runNode() {
  const { Server } = await import(`${root}dist/src/server/server.js`);
  const { MeshBus } = await import(`${root}dist/src/cluster/bus/mesh.js`);
  const { RedisBus } = await import(`${root}dist/src/cluster/bus/redis.js`);
  const { StaticMembership } = await import(`${root}dist/src/cluster/bus/membership.js`);
  const KEY = Buffer.alloc(32, 0x5a);
  let server, bus, membership, index = 0, size = 128;
  // Latency and counting, in the subscriber: frames are unmasked server frames, payload
  // [origin u8][send time u64 ns][padding].
  let counting = false;
  let lastDeliveryAt = 0;
  let remoteDelivered = 0;
  let latencies = [];
  const subscriber = {
    topics: null,
    sendEncoded(frames, messages) {
      lastDeliveryAt = performance.now();
      if (!counting) return 'written';
      const now = process.hrtime.bigint();
      let o = 0;
      for (let m = 0; m < messages; m++) {
        let len = frames[o + 1] & 0x7f;
        let h = 2;
        if (len === 126) {
          len = frames.readUInt16BE(o + 2);
          h = 4;
        } else if (len === 127) {
          len = Number(frames.readBigUInt64BE(o + 2));
          h = 10;
        }
        const p = o + h;
        if (frames[p] !== index) {
          remoteDelivered++;
          if (latencies !== null && latencies.length < 500_000) latencies.push(Number(now - frames.readBigUInt64BE(p + 1)) / 1e6);
        }
        o = p + len;
      }
      return 'written';
    },
  };
  const payload = () => {
    const b = Buffer.alloc(size);
    b[0] = index;
    b.writeBigUInt64BE(process.hrtime.bigint(), 1);
    return b;
  };
  process.on('message', async (m) => {
    if (m.cmd === 'start') {
      index = m.index;
      size = m.size;
      let meshPort = 0;
      if (m.transport === 'mesh') {
        membership = new StaticMembership(m.id);
        bus = new MeshBus({ membership, keys: [KEY], log: () => {} });
        meshPort = (await bus.listen(0, '127.0.0.1')).port;
      } else {
        bus = await RedisBus.connect({ url: m.redisUrl, log: () => {} });
      }
      const history = m.history ? () => ({ maxMessages: 1000, maxBytes: 1 << 20, maxAgeMs: 0 }) : undefined;
      server = new Server({ bus, handlers: {}, ...(history ? { history } : {}) });
      server.pubsub.subscribe(subscriber, 'bench');
      process.send({ reply: 'started', meshPort });
    } else if (m.cmd === 'link') {
      if (membership) {
        membership.set(m.peers);
        bus.start();
        const deadline = Date.now() + 10_000;
        while (!(bus.stats.linksUp === 2 && bus.links().every((l) => l.interestTopics === 1)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      } else {
        const deadline = Date.now() + 10_000;
        while (!bus.subscribedTopics().includes('bench') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      }
      process.send({ reply: 'linked' });
    } else if (m.cmd === 'phase') {
      remoteDelivered = 0;
      latencies = m.mode === 'paced' ? [] : null;
      const lost = () => bus.stats.dropped + (bus.stats.forwardsLost ?? 0);
      const dropped0 = lost();
      const cpu0 = process.cpuUsage();
      counting = true;
      const end = performance.now() + m.ms;
      if (m.mode === 'flat') {
        // Flat out: a burst per turn of the event loop, so receiving and sending interleave.
        await new Promise((resolve) => {
          const step = () => {
            if (performance.now() >= end) return resolve();
            for (let i = 0; i < m.burst; i++) server.publish('bench', payload());
            setImmediate(step);
          };
          step();
        });
      } else {
        // Paced: every millisecond, the messages due by then.
        const start = performance.now();
        let sent = 0;
        await new Promise((resolve) => {
          const timer = setInterval(() => {
            const now = performance.now();
            if (now >= end) {
              clearInterval(timer);
              return resolve();
            }
            const due = Math.floor(((now - start) / 1000) * m.rate);
            for (; sent < due; sent++) server.publish('bench', payload());
          }, 1);
        });
      }
      // Messages in flight when the window closes are not counted.
      counting = false;
      const cpu = process.cpuUsage(cpu0);
      process.send({ reply: 'done', remoteDelivered, dropped: lost() - dropped0, cpuUs: cpu.user + cpu.system, latencies: latencies ?? [] });
    } else if (m.cmd === 'drain') {
      const deadline = Date.now() + 55_000;
      while ((bus.stats.pendingForwardBytes ?? bus.pendingBytes ?? 0) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      // Until the backlog of the flat-out phase has reached the subscriber (Redis's output buffers too).
      while (performance.now() - lastDeliveryAt < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 200));
      process.send({ reply: 'drained' });
    } else if (m.cmd === 'stop') {
      await server?.close(500);
      await bus?.close();
      process.send({ reply: 'stopped' });
      process.disconnect();
    }
  });
}
