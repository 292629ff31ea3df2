#!/usr/bin/env node
// murmur comparison harness: starts each server in a fresh process pinned to core 0, drives it
// with native-bench/build/loadgen pinned to core 1, and reports medians and ratios to ws.
// Usage and the meaning of every figure: native-bench/README.md.
//   node native-bench/run.mjs [--servers murmur,ws,bare] [--scenarios memory,echo] [--runs 3]
//                             [--connections 10000[,19000]] [--duration 5] [--write-docs] ...
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const LOADGEN_SRC = path.join(HERE, 'loadgen.c');
const LOADGEN = path.join(HERE, 'build', 'loadgen');

// ---------------------------------------------------------------- servers (BENCH-CONTRACT)
// modes: which contract modes the server has; memory uses echo when available, else hold.
const SERVERS = {
  murmur: {
    entry: 'dist/src/cli/main.js',
    args: (port, host) => ['echo', '--port', String(port), '--host', host],
    modes: ['echo'], // broadcast: add here once murmur has a broadcast entry point
    stats: true,
    missing: 'murmur: not built (dist/src/cli/main.js missing; run npm run build)',
  },
  ws: {
    entry: 'native-bench/servers/ws-server.mjs',
    args: (port, host, mode) => ['--port', String(port), '--host', host, '--mode', mode],
    modes: ['echo', 'broadcast'],
    stats: true,
  },
  bare: {
    entry: 'native-bench/servers/bare-net-server.mjs',
    args: (port, host, mode) => ['--port', String(port), '--host', host, '--mode', mode],
    modes: ['hold'],
    stats: true,
  },
};

// ---------------------------------------------------------------- options
const DEFAULTS = {
  servers: 'murmur,ws,bare',
  scenarios: 'memory,echo',
  runs: 3,
  connections: '10000',
  host: '127.0.0.1',
  duration: 5,
  warmup: 1,
  settle: 2,
  warm: 200,
  'echo-cases': '1x1x32,1x1x16384,100x16x32,100x16x16384',
  'bcast-connections': 1000,
  'bcast-messages': 100,
  'bcast-size': 64,
  verify: false,
  pin: true,
  'write-docs': false,
  out: '',
  concurrency: 500,
};

function parseArgs(argv) {
  const o = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (a === '-h' || a === '--help') usage(0);
    if (!a.startsWith('--')) usage(2, `unexpected argument ${a}`);
    a = a.slice(2);
    let val;
    const eq = a.indexOf('=');
    if (eq >= 0) (val = a.slice(eq + 1)), (a = a.slice(0, eq));
    if (a.startsWith('no-') && typeof DEFAULTS[a.slice(3)] === 'boolean') {
      o[a.slice(3)] = false;
      continue;
    }
    if (!(a in DEFAULTS)) usage(2, `unknown option --${a}`);
    if (typeof DEFAULTS[a] === 'boolean') {
      o[a] = val === undefined ? true : val !== 'false';
      continue;
    }
    if (val === undefined) {
      if (i + 1 >= argv.length) usage(2, `--${a} needs a value`);
      val = argv[++i];
    }
    if (typeof DEFAULTS[a] === 'number') {
      const n = Number(val);
      if (!Number.isFinite(n) || n < 0) usage(2, `--${a} needs a number`);
      o[a] = n;
    } else o[a] = val;
  }
  o.servers = o.servers.split(',').filter(Boolean);
  o.scenarios = o.scenarios.split(',').filter(Boolean);
  o.connections = String(o.connections).split(',').map(Number);
  o.runs = Math.max(1, Math.floor(o.runs));
  for (const s of o.servers) if (!SERVERS[s]) usage(2, `unknown server ${s} (have ${Object.keys(SERVERS).join(', ')})`);
  for (const s of o.scenarios)
    if (!['memory', 'echo', 'broadcast'].includes(s)) usage(2, `unknown scenario ${s} (memory, echo, broadcast)`);
  for (const n of o.connections)
    if (!Number.isInteger(n) || n < 1 || n > 19000)
      usage(2, '--connections: 1..19000 each (one server process holds at most 20,000 descriptors)');
  o.echoCases = o['echo-cases'].split(',').map((c) => {
    const [conns, window, size] = c.split('x').map(Number);
    if (![conns, window, size].every((n) => Number.isInteger(n) && n > 0)) usage(2, `bad echo case ${c} (CONNSxWINDOWxSIZE)`);
    return { conns, window, size };
  });
  if (!/^127\.\d+\.\d+\.\d+$/.test(o.host)) usage(2, '--host must be a 127.0.0.0/8 address');
  return o;
}

function usage(code, msg) {
  if (msg) process.stderr.write(`run.mjs: ${msg}\n`);
  process.stderr.write(`usage: node native-bench/run.mjs [options]
  --servers LIST         ${Object.keys(SERVERS).join(',')} (default ${DEFAULTS.servers})
  --scenarios LIST       memory,echo,broadcast (default ${DEFAULTS.scenarios})
  --runs R               runs per figure, median reported (3)
  --connections N[,N2]   memory: idle connections (10000); 19000 at most
  --duration D           echo: measured seconds per case (5)
  --warmup W             echo: seconds before measuring (1)
  --echo-cases LIST      CONNSxWINDOWxSIZE,... (${DEFAULTS['echo-cases']})
  --verify               echo: loadgen checks every echoed byte
  --settle S             memory: seconds to settle before reading (2)
  --warm N               memory: connections opened and closed after the fresh baseline, for the
                         marginal figure (200; 0 = skip)
  --bcast-connections N  broadcast: subscribers (1000); --bcast-messages M (100); --bcast-size S (64)
  --concurrency C        pending handshakes during ramps (500)
  --no-pin               do not pin with taskset
  --host H               loopback address to listen on (127.0.0.1)
  --out FILE             results JSON (native-bench/results/<date>.json)
  --write-docs           append a dated section to docs/benchmarks.md
`);
  process.exit(code);
}

// ---------------------------------------------------------------- helpers
// One source address per 5,000 connections: with a single 127.0.0.1 source the kernel's
// ephemeral-port search slows the ramp to ~2-3k/s near 19,000 connections (measured), which
// would make handshakes/s a figure of the client, not of the server.
const srcIps = (n) => String(Math.max(1, Math.ceil(n / 5000)));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);

function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function freePort(host) {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function readRss(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function readKernel() {
  const k = { tcp_inuse: null, tcp_mem_bytes: null, slab_bytes: null };
  try {
    const m = /TCP: inuse (\d+) .*?mem (\d+)/.exec(fs.readFileSync('/proc/net/sockstat', 'utf8'));
    if (m) (k.tcp_inuse = Number(m[1])), (k.tcp_mem_bytes = Number(m[2]) * 4096);
  } catch {}
  try {
    const m = /^Slab:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    if (m) k.slab_bytes = Number(m[1]) * 1024;
  } catch {}
  return k;
}

let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {}

/** CPU seconds (user + system) a process has used, from /proc/PID/stat. */
function procCpu(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / clkTck; // fields 14 and 15: utime, stime
  } catch {
    return null;
  }
}

function cpuTimes() {
  const out = {};
  for (const line of fs.readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const v = m[2].trim().split(/\s+/).map(Number);
    const idle = v[3] + (v[4] || 0);
    out[m[1]] = { idle, total: v.reduce((a, b) => a + b, 0) };
  }
  return out;
}

/** Busy share of each CPU over ms while none of our processes runs: other users' load. */
async function backgroundLoad(ms = 500) {
  const a = cpuTimes();
  await sleep(ms);
  const b = cpuTimes();
  const busy = {};
  for (const k of Object.keys(b)) {
    const dt = b[k].total - (a[k]?.total ?? 0);
    busy[`cpu${k}`] = dt > 0 ? Math.round((1 - (b[k].idle - a[k].idle) / dt) * 100) : null;
  }
  return busy;
}

const loadSeen = [];
async function checkQuiet(what) {
  const busy = await backgroundLoad();
  loadSeen.push({ what, busy });
  const worst = Math.max(...Object.values(busy).filter((x) => x != null));
  if (worst > 15) log(`warning: background load before ${what}: ${JSON.stringify(busy)} (% busy)`);
  return busy;
}

/** Line reader over a stream; waitFor(re, ms) resolves with the first matching line not yet consumed. */
function lineWatcher(stream, tee) {
  const lines = [];
  const waiters = [];
  let buf = '';
  let ended = false;
  stream.setEncoding('utf8');
  stream.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (tee) tee(line);
      lines.push(line);
      if (lines.length > 2000) lines.shift();
      for (const w of [...waiters]) w.check();
    }
    if (buf.length > 1 << 20) buf = '';
  });
  stream.on('end', () => {
    ended = true;
    for (const w of [...waiters]) w.check();
  });
  return {
    lines,
    tail: (n = 10) => lines.slice(-n).join('\n'),
    waitFor(re, ms, what = String(re)) {
      return new Promise((resolve, reject) => {
        const w = {
          check() {
            const idx = lines.findIndex((l) => re.test(l));
            if (idx >= 0) {
              const [line] = lines.splice(idx, 1);
              done();
              resolve(line);
            } else if (ended) {
              done();
              reject(new Error(`stream ended before ${what}`));
            }
          },
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timeout after ${ms} ms waiting for ${what}`));
        }, ms);
        const done = () => {
          clearTimeout(timer);
          const i = waiters.indexOf(w);
          if (i >= 0) waiters.splice(i, 1);
        };
        waiters.push(w);
        w.check();
      });
    },
  };
}

function exited(child) {
  return child.exitCode !== null || child.signalCode !== null;
}

async function waitExit(child, ms) {
  if (exited(child)) return true;
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** SIGTERM, then SIGKILL after 3 s, by PID. */
async function stopProcess(child) {
  if (!child || exited(child)) return;
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {}
  if (await waitExit(child, 3000)) return;
  try {
    process.kill(child.pid, 'SIGKILL');
  } catch {}
  await waitExit(child, 3000);
}

const live = new Set(); // processes we started, killed on exit by PID
function track(child) {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}
function killAll() {
  for (const c of live) {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {}
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

// ---------------------------------------------------------------- pinning and the load generator
function pinningPlan(wantPin) {
  if (!wantPin) return { pin: false, note: 'pinning disabled (--no-pin)' };
  const hasTaskset = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
  if (!hasTaskset) return { pin: false, note: 'taskset missing: server and load generator not pinned' };
  const cpus = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
  if (cpus < 2) return { pin: false, note: `only ${cpus} CPU: not pinned` };
  return { pin: true, note: 'server on CPU 0 (taskset -c 0), load generator and harness on CPU 1 (taskset -c 1)' };
}

function pinned(pin, cpu, cmd, args) {
  return pin ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args];
}

function buildLoadgen() {
  const srcTime = fs.statSync(LOADGEN_SRC).mtimeMs;
  let binTime = 0;
  try {
    binTime = fs.statSync(LOADGEN).mtimeMs;
  } catch {}
  if (binTime >= srcTime) return;
  fs.mkdirSync(path.dirname(LOADGEN), { recursive: true });
  log('building native-bench/build/loadgen');
  execFileSync('gcc', ['-O2', '-Wall', '-o', LOADGEN, LOADGEN_SRC], { stdio: 'inherit' });
}

/**
 * Runs the load generator. With hold=true it resolves after READY with {ready, finish()} so the
 * caller can measure while the connections are open; finish() sends "stop" and returns the JSON.
 */
async function loadgen(ctx, args, { hold = false, limitMs }) {
  const [cmd, argv] = pinned(ctx.pin, 1, LOADGEN, args);
  const child = track(spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] }));
  child.stdin.on('error', () => {});
  const out = lineWatcher(child.stdout);
  const err = lineWatcher(child.stderr, ctx.verbose ? (l) => process.stderr.write(`  ${l}\n`) : undefined);
  const result = async (ms) => {
    try {
      const line = await out.waitFor(/^\{/, ms, 'loadgen result');
      await waitExit(child, 5000);
      return JSON.parse(line);
    } catch (e) {
      await stopProcess(child);
      throw new Error(`loadgen: ${e.message}\n${err.tail(5)}`);
    }
  };
  if (!hold) return result(limitMs);
  try {
    const ready = await err.waitFor(/^READY /, limitMs, 'loadgen READY');
    return {
      ready,
      finish: async () => {
        child.stdin.write('stop\n');
        return result(30000);
      },
      abort: () => stopProcess(child),
    };
  } catch (e) {
    await stopProcess(child);
    throw new Error(`loadgen: ${e.message}\n${err.tail(5)}`);
  }
}

// ---------------------------------------------------------------- server lifecycle
async function startServer(ctx, name, mode) {
  const s = SERVERS[name];
  const port = await freePort(ctx.host);
  const nodeArgs = ['--expose-gc', path.join(ROOT, s.entry), ...s.args(port, ctx.host, mode)];
  const [cmd, argv] = pinned(ctx.pin, 0, process.execPath, nodeArgs);
  const child = track(spawn(cmd, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
  const out = lineWatcher(child.stdout);
  const err = lineWatcher(child.stderr);
  try {
    const line = await out.waitFor(/LISTENING \d+/, 15000, 'LISTENING');
    const listenPort = Number(/LISTENING (\d+)/.exec(line)[1]);
    return { name, child, pid: child.pid, port: listenPort, out, err, stats: s.stats };
  } catch (e) {
    await stopProcess(child);
    throw new Error(`${name}: failed to start: ${e.message}\n${err.tail(5)}`);
  }
}

/** Forces a GC in the server and returns process.memoryUsage(), or null without stats support. */
async function serverStats(srv) {
  if (!srv.stats || exited(srv.child)) return null;
  process.kill(srv.pid, 'SIGUSR2');
  try {
    const line = await srv.out.waitFor(/^STATS /, 10000, 'STATS');
    return JSON.parse(line.slice(6));
  } catch (e) {
    if (exited(srv.child)) throw new Error(`${srv.name} died on SIGUSR2 (no STATS support?)`);
    throw e;
  }
}

// ---------------------------------------------------------------- scenarios
// A figure: { key, scenario, label, unit, better, values: {server: [per run]} }
const figures = new Map();
const raw = [];

function record(scenario, key, label, unit, better, server, value) {
  if (!figures.has(key)) figures.set(key, { key, scenario, label, unit, better, values: {} });
  const f = figures.get(key);
  (f.values[server] ??= []).push(value);
}

async function memoryRun(ctx, name, n, run) {
  const mode = SERVERS[name].modes.includes('echo') ? 'echo' : 'hold';
  const srv = await startServer(ctx, name, mode);
  let lg;
  try {
    const common = ['--host', ctx.host, '--port', String(srv.port), '--scenario', 'hold', '--concurrency', String(ctx.concurrency), '--timeout', '15', '--quiet'];
    // baseline of the fresh process: the contract's figure is (after - this) / N
    await sleep(ctx.settle * 1000);
    const statsBefore = await serverStats(srv);
    await sleep(200);
    const rssBefore = readRss(srv.pid);
    // then a few connections opened and closed, so one-time costs (lazy module and crypto
    // initialisation, first-compiled code) land in a second baseline: (after - it) / N is
    // the marginal cost of a connection
    let rssWarm = null;
    if (ctx.warm > 0) {
      await loadgen(ctx, [...common, '-c', String(ctx.warm), '--duration', '0.5'], { limitMs: 60000 });
      await sleep(ctx.settle * 1000);
      await serverStats(srv);
      await sleep(200);
      rssWarm = readRss(srv.pid);
    }
    const kBefore = readKernel();
    lg = await loadgen(ctx, [...common, '-c', String(n), '--src-ips', srcIps(n), '--duration', '900', '--stdin-eof-stop'], { hold: true, limitMs: 300000 });
    await sleep(ctx.settle * 1000);
    const statsAfter = await serverStats(srv);
    await sleep(200);
    const rssAfter = readRss(srv.pid);
    const kAfter = readKernel();
    const res = await lg.finish();
    lg = null;
    const held = res.connections;
    if (!held) throw new Error(`${name}: no connection was established (${JSON.stringify(res.fail_reasons)})`);
    if (exited(srv.child)) throw new Error(`${name}: server exited during the memory run`);
    const per = (a, b) => (a != null && b != null ? (b - a) / held : null);
    const tag = `memory N=${n}`;
    record('memory', `${tag}/rss`, `${tag}: RSS per connection`, 'B', 'lower', name, per(rssBefore, rssAfter));
    if (rssWarm != null)
      record('memory', `${tag}/rss-marginal`, `${tag}: RSS per connection, one-time costs excluded`, 'B', 'lower', name, per(rssWarm, rssAfter));
    if (statsBefore && statsAfter) {
      record('memory', `${tag}/heap`, `${tag}: JS heap used per connection`, 'B', 'lower', name, per(statsBefore.heapUsed, statsAfter.heapUsed));
      record('memory', `${tag}/external`, `${tag}: external + array buffers per connection`, 'B', 'lower', name,
        per(statsBefore.external + statsBefore.arrayBuffers, statsAfter.external + statsAfter.arrayBuffers));
    }
    record('memory', `${tag}/slab`, `${tag}: kernel Slab per connection (both ends)`, 'B', 'lower', name, per(kBefore.slab_bytes, kAfter.slab_bytes));
    record('memory', `${tag}/tcpmem`, `${tag}: kernel TCP buffer memory per connection (sockstat mem)`, 'B', 'lower', name, per(kBefore.tcp_mem_bytes, kAfter.tcp_mem_bytes));
    record('memory', `${tag}/failed`, `${tag}: failed handshakes`, 'count', 'lower', name, res.failed);
    record('memory', `${tag}/hs`, `${tag}: handshakes per second during the ramp`, '/s', 'higher', name, res.handshakes_per_s);
    const entry = {
      scenario: 'memory', server: name, run, n, held, rssBefore, rssWarm, rssAfter, statsBefore, statsAfter,
      kernelBefore: kBefore, kernelAfter: kAfter, tcpInuseDelta: kAfter.tcp_inuse - kBefore.tcp_inuse, loadgen: res,
    };
    raw.push(entry);
    log(`${name} memory N=${n} run ${run}: held ${held}, RSS/conn ${fmtBytes(per(rssBefore, rssAfter))}` +
      (rssWarm != null ? ` (marginal ${fmtBytes(per(rssWarm, rssAfter))})` : '') +
      (statsBefore ? `, heap/conn ${fmtBytes(per(statsBefore.heapUsed, statsAfter.heapUsed))}` : '') +
      `, slab/conn ${fmtBytes(per(kBefore.slab_bytes, kAfter.slab_bytes))}, tcp inuse +${entry.tcpInuseDelta}`);
  } finally {
    if (lg) await lg.abort();
    await stopProcess(srv.child);
  }
}

async function echoRun(ctx, name, run) {
  const srv = await startServer(ctx, name, 'echo');
  try {
    for (const { conns, window, size } of ctx.echoCases) {
      const args = ['--host', ctx.host, '--port', String(srv.port), '--scenario', 'echo', '-c', String(conns), '--window', String(window),
        '--size', String(size), '--duration', String(ctx.duration), '--warmup', String(ctx.warmup), '--timeout', '15', '--quiet'];
      if (ctx.verify) args.push('--verify');
      const limit = (ctx.duration + ctx.warmup + 60) * 1000;
      const cpu0 = procCpu(srv.pid);
      const res = await loadgen(ctx, args, { limitMs: limit });
      const cpu1 = procCpu(srv.pid);
      const cpuPerMsg = cpu0 != null && cpu1 != null && res.round_trips_total > 0 ? ((cpu1 - cpu0) * 1e6) / res.round_trips_total : null;
      if (exited(srv.child)) throw new Error(`${name}: server exited during echo`);
      const tag = `echo ${conns} conn x window ${window}, ${size} B`;
      const ok = res.connections === conns;
      record('echo', `${tag}/mps`, `${tag}: msgs/s`, 'msg/s', 'higher', name, ok ? res.msgs_per_s : null);
      record('echo', `${tag}/p99`, `${tag}: p99 latency`, 'us', 'lower', name, ok ? res.p99_us : null);
      record('echo', `${tag}/cpu`, `${tag}: server CPU per message`, 'us', 'lower', name, ok ? cpuPerMsg : null);
      raw.push({ scenario: 'echo', server: name, run, conns, window, size, serverCpuUsPerMsg: cpuPerMsg, loadgen: res });
      const bad = res.verify_errors || res.protocol_errors || res.dropped || !ok;
      log(`${name} ${tag} run ${run}: ${res.msgs_per_s} msg/s, p50 ${res.p50_us} us, p99 ${res.p99_us} us, server CPU ${cpuPerMsg?.toFixed(2)} us/msg` +
        (bad ? ` [connected ${res.connections}/${conns}, verify errors ${res.verify_errors}, protocol errors ${res.protocol_errors}, dropped ${res.dropped}]` : ''));
    }
  } finally {
    await stopProcess(srv.child);
  }
}

async function broadcastRun(ctx, name, run) {
  const srv = await startServer(ctx, name, 'broadcast');
  try {
    const n = ctx['bcast-connections'], m = ctx['bcast-messages'], s = ctx['bcast-size'];
    const args = ['--host', ctx.host, '--port', String(srv.port), '--scenario', 'subscribe', '-c', String(n), '--messages', String(m),
      '--size', String(s), '--timeout', '120', '--verify', '--quiet'];
    const res = await loadgen(ctx, args, { limitMs: 400000 });
    const tag = `broadcast ${n} subscribers x ${m} msgs, ${s} B`;
    const ok = res.complete_conns === n;
    record('broadcast', `${tag}/dps`, `${tag}: deliveries/s`, 'msg/s', 'higher', name, ok ? res.deliveries_per_s : null);
    record('broadcast', `${tag}/span`, `${tag}: publish to last delivery`, 's', 'lower', name, ok ? res.fanout_s : null);
    raw.push({ scenario: 'broadcast', server: name, run, n, m, s, loadgen: res });
    log(`${name} ${tag} run ${run}: ${res.deliveries_per_s} deliveries/s over ${res.fanout_s} s` +
      (ok ? '' : ` [complete ${res.complete_conns}/${n}, deliveries ${res.deliveries}/${res.expected_deliveries}]`));
  } finally {
    await stopProcess(srv.child);
  }
}

// ---------------------------------------------------------------- report
function fmtBytes(b) {
  if (b == null) return 'n/a';
  return Math.abs(b) >= 1024 ? `${(b / 1024).toFixed(2)} KiB` : `${Math.round(b)} B`;
}

function fmt(v, unit) {
  if (v == null) return 'n/a';
  if (unit === 'B') return fmtBytes(v);
  if (unit === 'msg/s' || unit === '/s') return v >= 1e6 ? `${(v / 1e6).toFixed(2)} M` : v >= 1e4 ? `${(v / 1e3).toFixed(1)} k` : `${Math.round(v)}`;
  if (unit === 'us') return v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : v < 10 ? `${v.toFixed(2)} µs` : `${v.toFixed(0)} µs`;
  if (unit === 's') return `${v.toFixed(3)} s`;
  return String(Math.round(v * 100) / 100);
}

function summarize(servers) {
  const rows = [];
  for (const f of figures.values()) {
    const med = {};
    for (const s of servers) med[s] = f.values[s] ? median(f.values[s]) : undefined;
    const base = med.ws;
    const ratio = {};
    for (const s of servers)
      // no ratio for counts or against a near-zero base (e.g. ws's 0 B of external memory)
      ratio[s] = med[s] != null && base != null && Math.abs(base) > (f.unit === 'B' ? 16 : 0) && f.unit !== 'count' ? med[s] / base : null;
    rows.push({ ...f, median: med, ratio_to_ws: ratio });
  }
  return rows;
}

function markdown(rows, servers, meta) {
  const out = [];
  out.push(`| figure | ${servers.join(' | ')} |`);
  out.push(`|---|${servers.map(() => '---:').join('|')}|`);
  for (const r of rows) {
    const cells = servers.map((s) => {
      if (r.median[s] === undefined) return '—';
      const v = fmt(r.median[s], r.unit);
      return r.ratio_to_ws[s] != null && s !== 'ws' ? `${v} (${r.ratio_to_ws[s].toFixed(2)}× ws)` : v;
    });
    out.push(`| ${r.label} (${r.better} is better) | ${cells.join(' | ')} |`);
  }
  out.push('');
  out.push(`Medians of ${meta.runs} run(s); ${meta.pinning}. Node ${meta.node}, ${meta.cpus} CPU, Linux ${meta.kernel}.`);
  for (const n of meta.notes) out.push(`- ${n}`);
  return out.join('\n');
}

function resultsPath(explicit) {
  if (explicit) return path.resolve(explicit);
  const dir = path.join(HERE, 'results');
  fs.mkdirSync(dir, { recursive: true });
  const date = new Date().toISOString().slice(0, 10);
  let p = path.join(dir, `${date}.json`);
  for (let i = 2; fs.existsSync(p); i++) p = path.join(dir, `${date}-${i}.json`);
  return p;
}

// ---------------------------------------------------------------- main
async function main() {
  const o = parseArgs(process.argv.slice(2));
  const plan = pinningPlan(o.pin);
  const ctx = { ...o, pin: plan.pin, verbose: false };
  const notes = [];
  const cpus = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
  buildLoadgen();
  if (plan.pin) spawnSync('taskset', ['-apc', '1', String(process.pid)], { stdio: 'ignore' });

  const servers = [];
  for (const s of o.servers) {
    if (!fs.existsSync(path.join(ROOT, SERVERS[s].entry))) {
      const msg = SERVERS[s].missing ?? `${s}: ${SERVERS[s].entry} missing`;
      log(msg);
      notes.push(msg);
    } else servers.push(s);
  }
  if (!servers.length) {
    log('no server to measure');
    process.exit(1);
  }
  const errors = [];
  for (const scenario of o.scenarios) {
    const mode = scenario === 'broadcast' ? 'broadcast' : scenario === 'echo' ? 'echo' : null;
    const eligible = servers.filter((s) => !mode || SERVERS[s].modes.includes(mode));
    for (const s of servers)
      if (!eligible.includes(s)) notes.push(`${s}: no ${mode} mode, skipped in ${scenario}`);
    const sizes = scenario === 'memory' ? o.connections : [null];
    for (const n of sizes) {
      for (let run = 1; run <= o.runs; run++) {
        for (const s of eligible) {
          // interleaved: murmur, ws, bare, murmur, ws, bare, ...
          try {
            await checkQuiet(`${s} ${scenario} run ${run}`);
            if (scenario === 'memory') await memoryRun(ctx, s, n, run);
            else if (scenario === 'echo') await echoRun(ctx, s, run);
            else await broadcastRun(ctx, s, run);
          } catch (e) {
            log(`ERROR ${s} ${scenario} run ${run}: ${e.message}`);
            errors.push({ server: s, scenario, run, error: e.message });
          }
        }
      }
    }
  }

  const noisy = loadSeen.filter((l) => Math.max(...Object.values(l.busy).filter((x) => x != null)) > 15);
  if (noisy.length)
    notes.push(`background load (other processes) above 15% of a CPU before ${noisy.length} of ${loadSeen.length} runs: throughput and latency are suspect; server CPU per message is the sturdier figure`);
  const meta = {
    date: new Date().toISOString(),
    node: process.versions.node,
    cpus,
    cpuModel: os.cpus()[0]?.model,
    kernel: os.release(),
    runs: o.runs,
    pinning: plan.note,
    notes: [...new Set(notes)],
    command: `node native-bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
  };
  const rows = summarize(servers);
  const md = markdown(rows, servers, meta);
  const file = resultsPath(o.out);
  const opts = { ...o };
  delete opts.echoCases;
  fs.writeFileSync(file, `${JSON.stringify({ meta, options: opts, servers, figures: rows, errors, backgroundLoad: loadSeen, raw }, null, 2)}\n`);
  process.stdout.write(`${md}\n`);
  log(`results: ${path.relative(ROOT, file)}`);
  if (errors.length) log(`${errors.length} error(s); see the JSON`);
  if (o['write-docs']) {
    const docs = path.join(ROOT, 'docs', 'benchmarks.md');
    const section = `\n## ${meta.date.slice(0, 10)}\n\n\`${meta.command}\`\n\n${md}\n`;
    if (!fs.existsSync(docs)) fs.writeFileSync(docs, '# Benchmarks\n');
    fs.appendFileSync(docs, section);
    log('appended to docs/benchmarks.md');
  }
  process.exitCode = errors.length ? 1 : 0;
}

main().catch((e) => {
  log(e.stack || String(e));
  killAll();
  process.exit(1);
});
