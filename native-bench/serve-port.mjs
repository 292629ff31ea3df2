#!/usr/bin/env node
// `murmur serve` against `murmur echo` on the same machine, in the same run: user-space RSS per
// idle WebSocket while the load generator holds N connections, and the handshake rate of the
// ramp with the server's CPU time per handshake (user and system, from /proc). With --http, also autocannon against serve's GET /healthz with keep-alive and with
// `Connection: close`, and one `Connection: close` request at a time (latency of a fresh
// connection, free of the client's TIME_WAIT stalls). A measurement, not a test.
//
//   node native-bench/serve-port.mjs [--murmur DIR] [-n 10000] [--runs 1] [--settle 2] [--http] [--node-flag F]...
//        [--kinds echo,serve] [--serve-arg A]...
//
// --serve-arg A (repeatable): one more argument for `murmur serve`, e.g. `--serve-arg
// --cluster-key --serve-arg <key>` to measure a one-node cluster. --kinds: which servers run.
//
// --settle S: seconds between the load generator's READY and the RSS reading (2). From 5 s on,
// the reading comes after the quiet-time GC has given V8's young generation back (--idle-gc).
//
// --murmur DIR: the murmur checkout whose dist/ is measured (default: this one), so a build of
// an older commit can be measured beside this one with the same script and load generator.
import { execFileSync, spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLoadgen, LOADGEN } from './loadgen-build.mjs';
import { cpuMs, rssBytes } from './proc-stats.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i === -1 ? dflt : args[i + 1];
};
const ROOT = path.resolve(opt('--murmur', path.join(HERE, '..')));
const N = Number(opt('-n', 10000));
const RUNS = Number(opt('--runs', 1));
const SETTLE_S = Number(opt('--settle', 2));
const HOST = '127.0.0.1';
// --node-flag F (repeatable): a flag for the node that runs both servers, e.g. --max-semi-space-size=1
const NODE_FLAGS = args.flatMap((a, i) => (a === '--node-flag' ? [args[i + 1]] : []));
const SERVE_ARGS = args.flatMap((a, i) => (a === '--serve-arg' ? [args[i + 1]] : []));
const KINDS = opt('--kinds', 'echo,serve').split(',');
if (!(N >= 1 && N <= 19000)) throw new Error('-n: 1..19000 (a process holds at most 20,000 descriptors)');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, HOST, () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/** Lines of a stream, with a wait for the first that matches. */
function watch(stream) {
  let text = '';
  const waiters = [];
  stream.on('data', (d) => {
    text += d;
    for (const w of waiters.splice(0)) w();
  });
  return {
    async waitFor(re, ms, what) {
      const end = Date.now() + ms;
      for (;;) {
        const m = text.split('\n').find((l) => re.test(l));
        if (m !== undefined) return m;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${text.slice(-500)}`);
        await new Promise((r) => {
          waiters.push(r);
          setTimeout(r, 200);
        });
      }
    },
  };
}

async function startMurmur(kind) {
  const port = await freePort();
  const cli = path.join(ROOT, 'dist/src/cli/main.js');
  const argv = kind === 'serve'
    ? [cli, 'serve', '--port', String(port), '--host', HOST, '--api-key', 'bench-key-0123456789', '--max-connections', '0', '--max-connections-per-address', '0', ...SERVE_ARGS]
    : [cli, 'echo', '--port', String(port), '--host', HOST];
  const child = spawn(process.execPath, [...NODE_FLAGS, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = watch(child.stdout);
  await out.waitFor(/LISTENING \d+/, 15000, `${kind} LISTENING`);
  return { child, port };
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 15000).unref();
  });
}

/** Holds n connections with the load generator; returns RSS per connection and the ramp's handshakes/s. */
async function memory(kind) {
  const { child, port } = await startMurmur(kind);
  try {
    const path_ = kind === 'serve' ? '/ws' : '/';
    const base = ['--host', HOST, '--port', String(port), '--path', path_, '--scenario', 'hold', '--timeout', '15', '--quiet'];
    // A few connections first, so one-time costs fall before the baseline.
    await runLoadgen([...base, '-c', '50', '--duration', '0.5']);
    await sleep(1000);
    const before = rssBytes(child.pid);
    const cpu0 = cpuMs(child.pid);
    const lg = spawn(LOADGEN, [...base, '-c', String(N), '--src-ips', String(Math.ceil(N / 20000)), '--duration', '900', '--stdin-eof-stop'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const err = watch(lg.stderr);
    const out = watch(lg.stdout);
    await err.waitFor(/^READY /, 300000, 'loadgen READY');
    const cpu1 = cpuMs(child.pid);
    await sleep(SETTLE_S * 1000);
    const after = rssBytes(child.pid);
    const gc = await idleGcFigures(kind, port, child);
    lg.stdin.write('stop\n');
    const res = JSON.parse(await out.waitFor(/^\{/, 60000, 'loadgen result'));
    // The server's CPU per handshake of the ramp (µs): a steadier figure than the rate on a shared machine.
    const cpu = { user: ((cpu1.user - cpu0.user) * 1000) / res.connections, sys: ((cpu1.sys - cpu0.sys) * 1000) / res.connections };
    return { held: res.connections, rssPerConn: (after - before) / res.connections, handshakesPerS: res.handshakes_per_s, cpu, failed: res.failed, gc };
  } finally {
    await stop(child);
  }
}

/** What the quiet-time GC did so far: serve's /metrics, echo's STATS line (SIGUSR2). */
async function idleGcFigures(kind, port, child) {
  if (kind === 'serve') {
    const body = await (await fetch(`http://${HOST}:${port}/metrics`)).text();
    const m = (re) => Number(re.exec(body)?.[1] ?? NaN);
    const shrunk = m(/^murmur_idle_gc_total\{outcome="shrunk"\} (\S+)$/m);
    if (Number.isNaN(shrunk)) return null;
    const declined = m(/^murmur_idle_gc_total\{outcome="declined"\} (\S+)$/m);
    return { reductions: shrunk + declined, declined, maxPauseMs: m(/^murmur_idle_gc_pause_seconds\{which="max"\} (\S+)$/m) * 1000 };
  }
  const out = watch(child.stdout);
  child.kill('SIGUSR2');
  const line = await out.waitFor(/^STATS /, 10000, 'STATS');
  const g = JSON.parse(line.slice(6)).idleGc;
  return g === undefined ? null : { reductions: g.reductions, declined: g.declined, maxPauseMs: g.maxPauseMs };
}

async function runLoadgen(argv) {
  const lg = spawn(LOADGEN, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = watch(lg.stdout);
  return JSON.parse(await out.waitFor(/^\{/, 60000, 'loadgen result'));
}

/** autocannon against serve's GET /healthz, 50 connections, 10 s, with keep-alive or Connection: close. */
async function http(close) {
  const { default: autocannon } = await import(path.join(HERE, 'node_modules/autocannon/autocannon.js'));
  const { child, port } = await startMurmur('serve');
  try {
    const run = (seconds) => autocannon({ url: `http://${HOST}:${port}/healthz`, connections: 50, duration: seconds, headers: close ? { connection: 'close' } : {} });
    await run(2); // warm-up
    const r = await run(10);
    return { rps: r.requests.average, p99ms: r.latency.p99, non2xx: r.non2xx, errors: r.errors };
  } finally {
    await stop(child);
  }
}

/** One `Connection: close` request at a time on a fresh connection, `count` in a row: latency percentiles in ms. */
async function sequentialClose(count) {
  const { child, port } = await startMurmur('serve');
  try {
    const one = () =>
      new Promise((resolve, reject) => {
        const t0 = process.hrtime.bigint();
        const c = connect(port, HOST, () => c.write('GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'));
        c.on('data', () => {});
        c.on('error', reject);
        c.on('close', () => resolve(Number(process.hrtime.bigint() - t0) / 1e6));
      });
    const times = [];
    for (let i = 0; i < count; i++) times.push(await one());
    times.sort((a, b) => a - b);
    const at = (q) => times[Math.min(count - 1, Math.floor(q * count))].toFixed(3);
    return { median: at(0.5), p90: at(0.9), p99: at(0.99) };
  } finally {
    await stop(child);
  }
}

buildLoadgen((l) => console.error(l));
const rev = (() => {
  try {
    return execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return ROOT;
  }
})();
console.log(`murmur at ${rev}; N=${N}; node ${process.version}${NODE_FLAGS.length > 0 ? ` ${NODE_FLAGS.join(' ')}` : ''}${SERVE_ARGS.length > 0 ? `; serve ${SERVE_ARGS.join(' ')}` : ''}`);
for (let run = 1; run <= RUNS; run++) {
  for (const kind of KINDS) {
    const m = await memory(kind);
    const gc = m.gc === null ? '' : `, idle GC ${m.gc.reductions} (declined ${m.gc.declined}, longest pause ${m.gc.maxPauseMs.toFixed(1)} ms)`;
    console.log(`${kind} run ${run}: held ${m.held} (failed ${m.failed}), RSS/idle WebSocket ${(m.rssPerConn / 1024).toFixed(2)} KiB, handshakes/s ${m.handshakesPerS}, CPU/handshake ${(m.cpu.user + m.cpu.sys).toFixed(0)} µs (user ${m.cpu.user.toFixed(0)}, sys ${m.cpu.sys.toFixed(0)})${gc}`);
  }
  if (args.includes('--http')) {
    for (const close of [false, true]) {
      const h = await http(close);
      console.log(`serve GET /healthz ${close ? 'Connection: close' : 'keep-alive'} run ${run}: ${Math.round(h.rps)} req/s, p99 ${h.p99ms} ms, non-2xx ${h.non2xx}, errors ${h.errors}`);
    }
    const q = await sequentialClose(1500);
    console.log(`serve GET /healthz Connection: close, one at a time, 1500 in a row, run ${run}: median ${q.median} ms, p90 ${q.p90} ms, p99 ${q.p99} ms`);
  }
}
