#!/usr/bin/env node
// murmur comparison harness: starts each server in a fresh process pinned to core 0, drives it
// with native-bench/build/loadgen pinned to core 1, and reports medians and ratios to ws.
// Usage and the meaning of every figure: native-bench/README.md.
//   node native-bench/run.mjs [--servers murmur,ws,bare] [--scenarios memory,echo] [--runs 3]
//                             [--connections 10000[,19000]] [--duration 5] [--write-docs] ...
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLoadgen, LOADGEN } from './loadgen-build.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');

// ---------------------------------------------------------------- servers (BENCH-CONTRACT)
// runtime: 'node' (started as `node --expose-gc ENTRY ARGS`) or 'bun' (`BUN ENTRY ARGS`).
// modes: which contract modes the server has (murmur's broadcast is detected at start-up, see
// murmurBroadcast()); memoryMode: the mode for the memory, handshakes and http scenarios
// (default echo when available, else hold).
const SERVERS = {
  murmur: {
    runtime: 'node',
    entry: 'dist/src/cli/main.js',
    // --mode only for broadcast: the echo command stays exactly `murmur echo --port P --host H`
    // mode 'serve': the real server (`murmur serve`) for the serve-http scenario, API key SERVE_API_KEY
    args: (port, host, mode) =>
      mode === 'serve'
        ? ['serve', '--port', String(port), '--host', host, '--api-key', SERVE_API_KEY]
        : ['echo', '--port', String(port), '--host', host, ...(mode === 'broadcast' ? ['--mode', 'broadcast'] : [])],
    modes: ['echo'], // + 'broadcast' when `echo --help` lists it and a probe start succeeds
    stats: true,
    missing: 'murmur: not built (dist/src/cli/main.js missing; run npm run build)',
  },
  ws: {
    runtime: 'node',
    entry: 'native-bench/servers/ws-server.mjs',
    args: (port, host, mode) => ['--port', String(port), '--host', host, '--mode', mode],
    modes: ['echo', 'broadcast'],
    stats: true,
  },
  bun: {
    runtime: 'bun',
    entry: 'native-bench/servers/bun-server.js',
    args: (port, host, mode) => ['--port', String(port), '--host', host, '--mode', mode],
    modes: ['echo', 'broadcast'],
    stats: true, // SIGUSR2 handled; Bun.gc(true) instead of --expose-gc
  },
  uws: {
    runtime: 'node',
    entry: 'native-bench/servers/uws-server.mjs',
    args: (port, host, mode) => ['--port', String(port), '--host', host, '--mode', mode],
    modes: ['echo', 'broadcast'],
    stats: true,
  },
  bare: {
    runtime: 'node',
    entry: 'native-bench/servers/bare-net-server.mjs',
    args: (port, host, mode) => ['--port', String(port), '--host', host, '--mode', mode],
    modes: ['hold', 'echo'],
    memoryMode: 'hold', // the memory floor: no frame parser attached
    stats: true,
  },
};
const SCENARIOS = ['memory', 'echo', 'handshakes', 'broadcast', 'http', 'serve-http'];
const SERVE_API_KEY = 'k';
// serve-http: autocannon against `murmur serve`'s own HTTP endpoints (murmur only)
const SERVE_CASES = {
  healthz: { path: '/healthz', method: 'GET' },
  publish: {
    path: '/api/publish',
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': SERVE_API_KEY },
    body: '{"topic":"room:lobby","data":{"text":"hi"}}',
  },
};
const BUN_CANDIDATES = [path.join(HERE, 'node_modules', 'bun', 'bin', 'bun.exe'), path.join(HERE, 'node_modules', '.bin', 'bun')];
const AUTOCANNON = path.join(HERE, 'node_modules', 'autocannon');

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
  'bcast-cases': '10000x100x64,10000x1x64',
  'bcast-connections': 1000,
  'bcast-messages': 100,
  'bcast-size': 64,
  'hs-connections': 5000,
  'hs-rounds': 5,
  'hs-time': 10,
  'hs-concurrency': 500,
  'http-cases': 'keepalive,close',
  'http-connections': 100,
  'http-duration': 0,
  'serve-cases': 'healthz,publish',
  'serve-connections': 50,
  'serve-duration': 10,
  verify: false,
  pin: true,
  'same-core': false,
  baseline: '',
  'write-docs': false,
  out: '',
  concurrency: 500,
};

function parseArgs(argv) {
  const o = { ...DEFAULTS };
  const given = new Set();
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
    given.add(a);
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
  if (o.baseline !== '') {
    const entry = path.resolve(o.baseline, 'dist/src/cli/main.js');
    SERVERS.base = { ...SERVERS.murmur, entry, modes: [...SERVERS.murmur.modes], missing: `base: ${entry} missing (build that checkout)` };
    if (!o.servers.includes('base')) o.servers.splice(o.servers.indexOf('murmur') + 1, 0, 'base');
  }
  o.scenarios = o.scenarios.split(',').filter(Boolean);
  o.connections = String(o.connections).split(',').map(Number);
  o.runs = Math.max(1, Math.floor(o.runs));
  for (const s of o.servers) if (!SERVERS[s]) usage(2, `unknown server ${s} (have ${Object.keys(SERVERS).join(', ')})`);
  for (const s of o.scenarios) if (!SCENARIOS.includes(s)) usage(2, `unknown scenario ${s} (${SCENARIOS.join(', ')})`);
  for (const n of o.connections)
    if (!Number.isInteger(n) || n < 1 || n > 19000)
      usage(2, '--connections: 1..19000 each (one server process holds at most 20,000 descriptors)');
  o.echoCases = o['echo-cases'].split(',').map((c) => {
    const [conns, window, size] = c.split('x').map(Number);
    if (![conns, window, size].every((n) => Number.isInteger(n) && n > 0)) usage(2, `bad echo case ${c} (CONNSxWINDOWxSIZE)`);
    return { conns, window, size };
  });
  // --bcast-connections/--bcast-messages/--bcast-size (the older flags) make one case of their own
  if (['bcast-connections', 'bcast-messages', 'bcast-size'].some((k) => given.has(k)) && !given.has('bcast-cases'))
    o['bcast-cases'] = `${o['bcast-connections']}x${o['bcast-messages']}x${o['bcast-size']}`;
  o.bcastCases = o['bcast-cases'].split(',').map((c) => {
    const [conns, messages, size, topics = 0, ...rest] = c.split('x').map(Number);
    if (rest.length || ![conns, messages, size].every((n) => Number.isInteger(n) && n > 0) || !Number.isInteger(topics) || topics < 0 || topics > 1e6)
      usage(2, `bad broadcast case ${c} (SUBSCRIBERSxMESSAGESxSIZE[xTOPICS])`);
    if (conns > 19000) usage(2, 'broadcast: 19,000 subscribers at most (one server process holds at most 20,000 descriptors)');
    return { conns, messages, size, topics };
  });
  o.serveCases = o['serve-cases'].split(',').filter(Boolean);
  for (const c of o.serveCases) if (!SERVE_CASES[c]) usage(2, `bad serve-http case ${c} (${Object.keys(SERVE_CASES).join(', ')})`);
  if (o['serve-connections'] < 1 || o['serve-connections'] > 1000) usage(2, '--serve-connections: 1..1000');
  o.httpCases = o['http-cases'].split(',').filter(Boolean);
  for (const c of o.httpCases) if (!['keepalive', 'close'].includes(c)) usage(2, `bad http case ${c} (keepalive, close)`);
  if (o['hs-connections'] < 1 || o['hs-connections'] > 19000) usage(2, '--hs-connections: 1..19000');
  if (o['http-connections'] < 1 || o['http-connections'] > 1000) usage(2, '--http-connections: 1..1000');
  if (!o['http-duration']) o['http-duration'] = o.duration;
  if (!/^127\.\d+\.\d+\.\d+$/.test(o.host)) usage(2, '--host must be a 127.0.0.0/8 address');
  return o;
}

function usage(code, msg) {
  if (msg) process.stderr.write(`run.mjs: ${msg}\n`);
  process.stderr.write(`usage: node native-bench/run.mjs [options]
  --servers LIST         ${Object.keys(SERVERS).join(',')} (default ${DEFAULTS.servers})
  --scenarios LIST       ${SCENARIOS.join(',')} (default ${DEFAULTS.scenarios})
  --runs R               runs per figure, median reported (3)
  --connections N[,N2]   memory: idle connections (10000); 19000 at most
  --duration D           echo: measured seconds per case (5)
  --warmup W             echo: seconds before measuring (1)
  --echo-cases LIST      CONNSxWINDOWxSIZE,... (${DEFAULTS['echo-cases']})
  --verify               echo: loadgen checks every echoed byte
  --settle S             memory: seconds to settle before reading (2)
  --warm N               memory: connections opened and closed after the fresh baseline, for the
                         marginal figure (200; 0 = skip)
  --bcast-cases LIST     broadcast: SUBSCRIBERSxMESSAGESxSIZE[xTOPICS],... (${DEFAULTS['bcast-cases']});
                         xTOPICS: connection i sends "sub <i % TOPICS>", then "pubt M S" (M to every topic)
  --bcast-connections N  (older form of one case) subscribers; --bcast-messages M; --bcast-size S
  --hs-connections N     handshakes: connections opened per round, then closed (5000)
  --hs-rounds R          handshakes: measured rounds per run, after one warm-up round (5)
  --hs-time T            handshakes: stop starting rounds after T seconds (10)
  --hs-concurrency C     handshakes: handshakes pending at once (500; below the 511 listen
                         backlog of Node's servers, so a full accept queue never costs a SYN retry)
  --http-cases LIST      http: keepalive,close (both): autocannon GET / without upgrade, the client
                         keeping connections alive / sending Connection: close
  --http-connections N   http: autocannon connections (100)
  --http-duration D      http: measured seconds (default --duration), after --warmup s unmeasured
  --serve-cases LIST     serve-http: healthz,publish (both): autocannon against \`murmur serve\` (murmur only):
                         GET /healthz; POST /api/publish with X-Api-Key, {"topic":"room:lobby","data":{"text":"hi"}}
  --serve-connections N  serve-http: autocannon connections, keep-alive (50)
  --serve-duration D     serve-http: measured seconds per case (10), after --warmup s unmeasured
  --concurrency C        pending handshakes during ramps (500)
  --no-pin               do not pin with taskset
  --baseline DIR         also run the murmur of another checkout (DIR/dist, built) as server \`base\`,
                         interleaved with this one: before/after figures of a change in one run
  --same-core            the load generator on CPU 0 with the server: the two take turns on one
                         core, so msgs/s shows the fixed cost of each message, not wake-up latency
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
  return procUserCpu(pid, 'both');
}

/** Seconds of CPU a process used: in user space ('user'), or user plus kernel ('both'). */
function procUserCpu(pid, which = 'user') {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    // fields 14 and 15: utime, stime
    return (which === 'user' ? Number(f[11]) : Number(f[11]) + Number(f[12])) / clkTck;
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


/**
 * Runs the load generator. With hold=true it resolves after READY with {ready, finish()} so the
 * caller can measure while the connections are open; finish() sends "stop" and returns the JSON.
 */
async function loadgen(ctx, args, { hold = false, limitMs }) {
  const [cmd, argv] = pinned(ctx.pin, ctx['same-core'] ? 0 : 1, LOADGEN, args);
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
/** The exact command line of a server (before pinning). */
function serverCommand(ctx, name, port, mode) {
  const s = SERVERS[name];
  const entry = path.resolve(ROOT, s.entry);
  if (s.runtime === 'bun') return [ctx.bun, [entry, ...s.args(port, ctx.host, mode)]];
  return [process.execPath, ['--expose-gc', entry, ...s.args(port, ctx.host, mode)]];
}

async function startServer(ctx, name, mode, { pin = ctx.pin } = {}) {
  const s = SERVERS[name];
  const port = await freePort(ctx.host);
  const [cmd0, args0] = serverCommand(ctx, name, port, mode);
  const [cmd, argv] = pinned(pin, 0, cmd0, args0);
  const child = track(spawn(cmd, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
  const out = lineWatcher(child.stdout);
  const err = lineWatcher(child.stderr);
  try {
    const line = await out.waitFor(/LISTENING \d+/, 15000, 'LISTENING');
    const listenPort = Number(/LISTENING (\d+)/.exec(line)[1]);
    // anything after the port (murmur: "transport=lean|socket") goes into the results
    const extra = line.replace(/^.*LISTENING \d+\s*/, '').trim();
    if (extra) (listenInfo[name] ??= new Set()).add(extra);
    const srv = { name, mode, child, pid: child.pid, port: listenPort, out, err, stats: s.stats };
    srv.fdBase = fdCount(srv.pid);
    return srv;
  } catch (e) {
    await stopProcess(child);
    const why = exited(child) ? `exited with ${child.exitCode ?? child.signalCode}` : e.message;
    throw new Error(`${name}: failed to start in ${mode} mode: ${why}\n${err.tail(5)}`);
  }
}

const listenInfo = {};

function fdCount(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

/** Waits (bounded) until the server has closed what the last load generator left: its descriptor
 * count is back near the count it had when it started listening. */
async function waitServerIdle(srv, ms = 15000) {
  if (srv.fdBase == null) return sleep(500);
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    const n = fdCount(srv.pid);
    if (n == null || n <= srv.fdBase + 32) return true;
    await sleep(100);
  }
  log(`${srv.name}: still ${fdCount(srv.pid)} descriptors open ${ms / 1000} s after the load generator ended (started with ${srv.fdBase})`);
  return false;
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

/** The mode a server runs in for memory, handshakes and http. */
function idleMode(name) {
  const s = SERVERS[name];
  return s.memoryMode ?? (s.modes.includes('echo') ? 'echo' : 'hold');
}

async function memoryRun(ctx, name, n, run) {
  const mode = idleMode(name);
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
      // V8's young generation grows with what survives its scavenges during the ramp (every
      // long-lived object passes through it) and is given back only by a later memory-reducing
      // GC: a heuristic of the engine, not a cost of a connection. Shown apart for Node servers.
      const youngBefore = statsBefore.spaces?.new_space;
      const youngAfter = statsAfter.spaces?.new_space;
      if (typeof youngBefore === 'number' && typeof youngAfter === 'number') {
        record('memory', `${tag}/young`, `${tag}: V8 young generation (new space) growth per connection`, 'B', 'lower', name, per(youngBefore, youngAfter));
        record('memory', `${tag}/rss-old`, `${tag}: RSS per connection, V8 young generation excluded`, 'B', 'lower', name,
          per(rssBefore - youngBefore, rssAfter - youngAfter));
      }
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
      const user0 = procUserCpu(srv.pid);
      const res = await loadgen(ctx, args, { limitMs: limit });
      const cpu1 = procCpu(srv.pid);
      const user1 = procUserCpu(srv.pid);
      const cpuPerMsg = cpu0 != null && cpu1 != null && res.round_trips_total > 0 ? ((cpu1 - cpu0) * 1e6) / res.round_trips_total : null;
      // The part the server's own code spends; the rest is the kernel's (syscalls, loopback TCP).
      const userPerMsg = user0 != null && user1 != null && res.round_trips_total > 0 ? ((user1 - user0) * 1e6) / res.round_trips_total : null;
      if (exited(srv.child)) throw new Error(`${name}: server exited during echo`);
      const tag = `echo ${conns} conn x window ${window}, ${size} B`;
      const ok = res.connections === conns;
      record('echo', `${tag}/mps`, `${tag}: msgs/s`, 'msg/s', 'higher', name, ok ? res.msgs_per_s : null);
      record('echo', `${tag}/p99`, `${tag}: p99 latency`, 'us', 'lower', name, ok ? res.p99_us : null);
      record('echo', `${tag}/cpu`, `${tag}: server CPU per message`, 'us', 'lower', name, ok ? cpuPerMsg : null);
      record('echo', `${tag}/user`, `${tag}: server CPU per message in user space (the rest is the kernel's)`, 'us', 'lower', name, ok ? userPerMsg : null);
      raw.push({ scenario: 'echo', server: name, run, conns, window, size, serverCpuUsPerMsg: cpuPerMsg, serverUserCpuUsPerMsg: userPerMsg, loadgen: res });
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
    for (const [i, { conns: n, messages: m, size: s, topics: nt }] of ctx.bcastCases.entries()) {
      if (i > 0) await waitServerIdle(srv);
      const args = ['--host', ctx.host, '--port', String(srv.port), '--scenario', 'subscribe', '-c', String(n), '--messages', String(m),
        '--size', String(s), '--src-ips', srcIps(n), '--concurrency', String(ctx.concurrency), '--timeout', '120', '--verify', '--quiet'];
      if (nt) args.push('--topics', String(nt));
      const cpu0 = procCpu(srv.pid);
      const res = await loadgen(ctx, args, { limitMs: 400000 });
      const cpu1 = procCpu(srv.pid);
      if (exited(srv.child)) throw new Error(`${name}: server exited during broadcast`);
      const tag = nt
        ? `broadcast ${nt} topics x ${Math.round(n / nt)} subscribers (${n}), ${m} msg${m > 1 ? 's' : ''} of ${s} B to every topic`
        : m === 1 ? `broadcast 1 msg of ${s} B to ${n} subscribers` : `broadcast ${n} subscribers x ${m} msgs, ${s} B`;
      const ok = res.complete_conns === n && !res.verify_errors;
      // server CPU over the whole case (ramp, fan-out, close) per delivery: an upper bound of the
      // publish cost, comparable between servers since all do the same ramp
      const cpuPer = cpu0 != null && cpu1 != null && res.deliveries > 0 ? ((cpu1 - cpu0) * 1e6) / res.deliveries : null;
      if (m > 1) record('broadcast', `${tag}/dps`, `${tag}: deliveries/s`, 'msg/s', 'higher', name, ok ? res.deliveries_per_s : null);
      record('broadcast', `${tag}/span`, `${tag}: publish to last delivery`, 'us', 'lower', name, ok ? res.fanout_s * 1e6 : null);
      if (m > 1) record('broadcast', `${tag}/cpu`, `${tag}: server CPU per delivery (whole case, ramp included)`, 'us', 'lower', name, ok ? cpuPer : null);
      raw.push({ scenario: 'broadcast', server: name, run, n, m, s, topics: nt, serverCpuUsPerDelivery: cpuPer, loadgen: res });
      log(`${name} ${tag} run ${run}: ${res.deliveries_per_s} deliveries/s over ${res.fanout_s} s` +
        (ok ? '' : ` [complete ${res.complete_conns}/${n}, deliveries ${res.deliveries}/${res.expected_deliveries}, verify errors ${res.verify_errors}, failed ${res.failed}]`));
    }
  } finally {
    await stopProcess(srv.child);
  }
}

/**
 * handshakes: rounds of --hs-connections connections opened as fast as the server takes them
 * (--hs-concurrency pending at once), then all closed by the client (TCP FIN, no close frame)
 * when the load generator exits; the next round starts once the server has closed its side.
 * One warm-up round, then rounds until --hs-rounds or --hs-time. handshakes/s = connections
 * opened / ramp time, over the measured rounds.
 */
async function handshakesRun(ctx, name, run) {
  const srv = await startServer(ctx, name, idleMode(name));
  try {
    const n = ctx['hs-connections'];
    // 4 source addresses whatever N is: rounds reuse ports still in TIME_WAIT on the client side
    const args = ['--host', ctx.host, '--port', String(srv.port), '--scenario', 'hold', '-c', String(n), '--src-ips', '4',
      '--concurrency', String(ctx['hs-concurrency']), '--duration', '0.001', '--timeout', '15', '--quiet'];
    let opened = 0, failed = 0, rampS = 0, cpu = 0, rounds = 0;
    const perRound = [];
    const t0 = Date.now();
    for (let round = 0; round <= ctx['hs-rounds']; round++) {
      if (round > 1 && Date.now() - t0 > ctx['hs-time'] * 1000) break;
      const cpu0 = procCpu(srv.pid);
      const res = await loadgen(ctx, args, { limitMs: 180000 });
      await waitServerIdle(srv); // the closes are processed here, not during the next ramp
      const cpu1 = procCpu(srv.pid);
      if (exited(srv.child)) throw new Error(`${name}: server exited during handshakes`);
      perRound.push({ round, connections: res.connections, failed: res.failed, fail_reasons: res.fail_reasons, ramp_s: res.ramp_s, handshakes_per_s: res.handshakes_per_s, server_cpu_s: cpu1 - cpu0 });
      if (round === 0) continue; // warm-up
      rounds++;
      opened += res.connections;
      failed += res.failed;
      rampS += res.ramp_s;
      cpu += cpu1 - cpu0;
    }
    const tag = `handshakes ${n} per round, ${ctx['hs-concurrency']} pending`;
    const hs = rampS > 0 ? opened / rampS : null;
    record('handshakes', `${tag}/rate`, `${tag}: handshakes/s`, '/s', 'higher', name, failed ? null : hs);
    record('handshakes', `${tag}/cpu`, `${tag}: server CPU per connection (handshake + close)`, 'us', 'lower', name, opened ? (cpu * 1e6) / opened : null);
    record('handshakes', `${tag}/failed`, `${tag}: failed handshakes`, 'count', 'lower', name, failed);
    raw.push({ scenario: 'handshakes', server: name, run, n, rounds, opened, failed, rampS, serverCpuS: cpu, perRound });
    log(`${name} ${tag} run ${run}: ${hs?.toFixed(0)} handshakes/s over ${rounds} rounds, failed ${failed}, server CPU ${opened ? ((cpu * 1e6) / opened).toFixed(1) : 'n/a'} us/connection`);
  } finally {
    await stopProcess(srv.child);
  }
}

/** Status line and Connection header of a plain GET / (no upgrade), over a fresh connection. */
function httpProbe(host, port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, host);
    let buf = '';
    const done = (r) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ error: 'timeout' }), 5000);
    sock.setEncoding('latin1');
    sock.on('connect', () => sock.write(`GET / HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`));
    sock.on('data', (d) => {
      buf += d;
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.slice(0, end);
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? '?';
      const conn = /\r\nconnection:\s*([^\r]*)/i.exec(head)?.[1]?.trim().toLowerCase() ?? '';
      done({ status: Number(status), connection: conn || '(none)', closes: conn === 'close' });
    });
    sock.on('error', (e) => done({ error: e.message }));
    sock.on('end', () => done(buf ? { error: `closed after ${buf.length} bytes without a full head` } : { error: 'closed without an answer' }));
  });
}

/** Runs autocannon in a child process (pinned like the load generator); resolves with its result. */
async function autocannonRun(ctx, port, { seconds, close, path: urlPath = '/', method, headers, body, connections = ctx['http-connections'] }) {
  const spec = JSON.stringify({ url: `http://${ctx.host}:${port}${urlPath}`, connections, duration: seconds, close, method, headers, body });
  const [cmd, argv] = pinned(ctx.pin, 1, process.execPath, [path.join(HERE, 'run.mjs'), '--autocannon-child', spec]);
  const child = track(spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const out = lineWatcher(child.stdout);
  const err = lineWatcher(child.stderr);
  try {
    const line = await out.waitFor(/^\{/, (seconds + 60) * 1000, 'autocannon result');
    await waitExit(child, 5000);
    return JSON.parse(line);
  } catch (e) {
    await stopProcess(child);
    throw new Error(`autocannon: ${e.message}\n${err.tail(5)}`);
  }
}

/**
 * Child mode: one autocannon run, result as one JSON line. Servers that answer with
 * Connection: close (murmur, bare) would otherwise be mismeasured by autocannon 9.0.0: it
 * writes the next request into the socket the server is closing, and its request queue then
 * pairs every later response with a stale request (latency grows without bound); its
 * reconnectRate option, the documented way to reconnect, counts no response at all. The
 * setupClient hook below makes a client wait for the close when the response said it would
 * close (http-parser-js's shouldKeepAlive, or the request's own Connection: close), after which
 * autocannon reconnects and sends the next request on the new connection. A server that kept the
 * connection open anyway would show up as timeouts.
 */
async function autocannonChild(specJson) {
  const { createRequire } = await import('node:module');
  const spec = JSON.parse(specJson);
  const autocannon = createRequire(import.meta.url)(AUTOCANNON);
  const opts = {
    url: spec.url,
    ...(spec.method ? { method: spec.method } : {}),
    ...(spec.headers ? { headers: spec.headers } : {}),
    ...(spec.body != null ? { body: spec.body } : {}),
    connections: spec.connections,
    pipelining: 1,
    duration: spec.duration,
    timeout: 10,
    setupClient(client) {
      if (spec.close) {
        // autocannon always writes "Connection: keep-alive"; a second Connection header would be
        // ambiguous (uWS reads the first), so the request's own one is rewritten
        const get = client.getRequestBuffer;
        let lastIn = null, lastOut = null;
        client.getRequestBuffer = function (...a) {
          const b = get.apply(this, a);
          if (b !== lastIn) {
            lastIn = b;
            lastOut = Buffer.from(b.toString('latin1').replace('\r\nConnection: keep-alive\r\n', '\r\nConnection: close\r\n'), 'latin1');
          }
          return lastOut;
        };
      }
      let closeAfter = false;
      client.on('headers', (info) => {
        // the server closes after this response: it said so, or the request asked it to (Bun and
        // uWS close on a request's Connection: close without saying so in the response)
        closeAfter = spec.close || (info && info.shouldKeepAlive === false);
      });
      const doRequest = client._doRequest;
      client._doRequest = function (...a) {
        if (closeAfter) {
          closeAfter = false; // the server closes: 'end' reconnects and sends from there
          return undefined;
        }
        return doRequest.apply(this, a);
      };
    },
  };
  const r = await new Promise((resolve, reject) => autocannon(opts, (e, res) => (e ? reject(e) : resolve(res))));
  const keep = {
    requests_per_s: r.requests.average,
    requests_total: r.requests.total,
    requests_sent: r.requests.sent,
    duration_s: r.duration,
    latency_ms: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max, mean: r.latency.average },
    non2xx: r.non2xx,
    status: { '1xx': r['1xx'], '2xx': r['2xx'], '3xx': r['3xx'], '4xx': r['4xx'], '5xx': r['5xx'] },
    errors: r.errors,
    timeouts: r.timeouts,
    mismatches: r.mismatches,
    resets: r.resets,
    connections: r.connections,
  };
  process.stdout.write(`${JSON.stringify(keep)}\n`);
}

/**
 * http: autocannon, GET / without upgrade, --http-connections connections, pipelining 1.
 * keepalive: the client keeps connections alive (servers that answer Connection: close get a
 * new connection per request anyway); close: the client sends Connection: close, so every
 * server closes and every request is a new TCP connection.
 */
async function httpRun(ctx, name, run) {
  const srv = await startServer(ctx, name, idleMode(name));
  try {
    const probe = await httpProbe(ctx.host, srv.port);
    httpAnswers[name] = probe;
    for (const c of ctx.httpCases) {
      const close = c === 'close';
      if (ctx.warmup > 0) await autocannonRun(ctx, srv.port, { seconds: Math.max(1, Math.round(ctx.warmup)), close });
      await waitServerIdle(srv);
      const cpu0 = procCpu(srv.pid);
      const res = await autocannonRun(ctx, srv.port, { seconds: ctx['http-duration'], close });
      const cpu1 = procCpu(srv.pid);
      if (exited(srv.child)) throw new Error(`${name}: server exited during http`);
      await waitServerIdle(srv);
      const tag = `http GET / without upgrade, ${ctx['http-connections']} conns, client ${close ? 'sends Connection: close' : 'keep-alive'}`;
      const ok = res.requests_total > 0;
      const cpuPer = cpu0 != null && cpu1 != null && ok ? ((cpu1 - cpu0) * 1e6) / res.requests_total : null;
      record('http', `${tag}/rps`, `${tag}: requests/s`, '/s', 'higher', name, ok ? res.requests_per_s : null);
      record('http', `${tag}/p99`, `${tag}: p99 latency`, 'us', 'lower', name, ok ? res.latency_ms.p99 * 1000 : null);
      record('http', `${tag}/cpu`, `${tag}: server CPU per request`, 'us', 'lower', name, cpuPer);
      record('http', `${tag}/errors`, `${tag}: errors + timeouts`, 'count', 'lower', name, res.errors + res.timeouts);
      raw.push({ scenario: 'http', server: name, run, case: c, answer: probe, serverCpuUsPerRequest: cpuPer, autocannon: res });
      log(`${name} http ${c} run ${run}: ${res.requests_per_s} req/s, p99 ${res.latency_ms.p99} ms, server CPU ${cpuPer?.toFixed(1)} us/req, ` +
        `errors ${res.errors}, timeouts ${res.timeouts} (answer ${probe.status ?? probe.error}${probe.closes ? ', closes' : ''})`);
    }
  } finally {
    await stopProcess(srv.child);
  }
}
const httpAnswers = {};

/**
 * serve-http: `murmur serve --api-key k` (the real server: pub/sub with history and presence, the
 * HTTP API), autocannon keep-alive, --serve-connections connections, pipelining 1, per case
 * --warmup s unmeasured then --serve-duration s measured. healthz: GET /healthz; publish:
 * POST /api/publish (X-Api-Key, JSON body to room:lobby, no subscriber: history only).
 */
async function serveHttpRun(ctx, name, run) {
  const srv = await startServer(ctx, name, 'serve');
  try {
    for (const c of ctx.serveCases) {
      const spec = { ...SERVE_CASES[c], connections: ctx['serve-connections'], close: false };
      if (ctx.warmup > 0) await autocannonRun(ctx, srv.port, { ...spec, seconds: Math.max(1, Math.round(ctx.warmup)) });
      await waitServerIdle(srv);
      const cpu0 = procCpu(srv.pid);
      const res = await autocannonRun(ctx, srv.port, { ...spec, seconds: ctx['serve-duration'] });
      const cpu1 = procCpu(srv.pid);
      if (exited(srv.child)) throw new Error(`${name}: server exited during serve-http`);
      const tag = `serve-http ${spec.method} ${spec.path}, ${spec.connections} conns keep-alive`;
      const ok = res.requests_total > 0 && !res.non2xx;
      const cpuPer = cpu0 != null && cpu1 != null && res.requests_total > 0 ? ((cpu1 - cpu0) * 1e6) / res.requests_total : null;
      record('serve-http', `${tag}/rps`, `${tag}: requests/s`, '/s', 'higher', name, ok ? res.requests_per_s : null);
      record('serve-http', `${tag}/p99`, `${tag}: p99 latency`, 'us', 'lower', name, ok ? res.latency_ms.p99 * 1000 : null);
      record('serve-http', `${tag}/cpu`, `${tag}: server CPU per request`, 'us', 'lower', name, cpuPer);
      record('serve-http', `${tag}/errors`, `${tag}: non-2xx + errors + timeouts`, 'count', 'lower', name, res.non2xx + res.errors + res.timeouts);
      raw.push({ scenario: 'serve-http', server: name, run, case: c, serverCpuUsPerRequest: cpuPer, autocannon: res });
      log(`${name} serve-http ${c} run ${run}: ${res.requests_per_s} req/s, p99 ${res.latency_ms.p99} ms, server CPU ${cpuPer?.toFixed(1)} us/req, ` +
        `non-2xx ${res.non2xx} ${JSON.stringify(res.status)}, errors ${res.errors}, timeouts ${res.timeouts}`);
    }
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
  if (unit === 'us' && v >= 1e6) return `${(v / 1e6).toFixed(2)} s`;
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
  const v = meta.versions ?? {};
  out.push(`Medians of ${meta.runs} run(s), servers interleaved within each run; ratios are median / ws median; ${meta.pinning}. ` +
    `Node ${meta.node}, ws ${v.ws}, Bun ${v.bun ?? 'n/a'}, uWS.js ${v.uws ?? 'n/a'}, autocannon ${v.autocannon ?? 'n/a'}; ${meta.cpus} CPU, Linux ${meta.kernel}.`);
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

// ---------------------------------------------------------------- availability and versions
/** The bun binary, if present and it runs: { path, version } or { error }. */
function findBun() {
  for (const p of BUN_CANDIDATES) {
    if (!fs.existsSync(p)) continue;
    const r = spawnSync(p, ['--version'], { encoding: 'utf8', timeout: 15000 });
    const v = (r.stdout || '').trim();
    if (r.status === 0 && /^\d+\.\d+\.\d+/.test(v)) return { path: p, version: v };
    return { error: `${path.relative(ROOT, p)} does not run (${r.error?.message ?? `status ${r.status}: ${(r.stderr || r.stdout || '').trim().split('\n')[0]}`})` };
  }
  return { error: 'native-bench/node_modules/bun/bin/bun.exe missing (npm run bench:deps)' };
}

/**
 * murmur's broadcast mode lives on the same `murmur echo` command (`--mode broadcast`). It is used
 * when `echo --help` lists broadcast as a value of --mode (a description that only announces it,
 * "broadcast comes with pub/sub", does not count); the preflight then checks it really works.
 */
function murmurHelpListsBroadcast() {
  const r = spawnSync(process.execPath, [path.join(ROOT, SERVERS.murmur.entry), 'echo', '--help'], { encoding: 'utf8', timeout: 15000 });
  const text = `${r.stdout || ''}\n${r.stderr || ''}`;
  const line = (text.split('\n').find((l) => /--mode\b/.test(l)) ?? '').trim();
  const listed = /\bbroadcast\b/i.test(line) && !/broadcast\s+(comes|will|is (not|coming)|later|soon)|not (yet )?(supported|available)|coming/i.test(line);
  return { listed, line };
}

/**
 * Starts a server once in a mode and checks the contract in a few hundred milliseconds: echo
 * returns verified bytes, broadcast reaches every subscriber, hold accepts, STATS answers.
 * Returns null when all is well, else the reason.
 */
async function preflight(ctx, name, mode) {
  let srv;
  try {
    srv = await startServer(ctx, name, mode);
  } catch (e) {
    return e.message.split('\n').filter(Boolean).slice(0, 3).join(' | ');
  }
  try {
    const base = ['--host', ctx.host, '--port', String(srv.port), '--timeout', '10', '--quiet'];
    if (mode === 'echo') {
      const r = await loadgen(ctx, [...base, '--scenario', 'echo', '-c', '2', '--window', '4', '--size', '200', '--duration', '0.3', '--warmup', '0', '--verify'], { limitMs: 30000 });
      if (r.connections !== 2 || !r.round_trips_total || r.verify_errors || r.protocol_errors)
        return `echo check failed: ${JSON.stringify({ connections: r.connections, fail_reasons: r.fail_reasons, round_trips: r.round_trips_total, verify_errors: r.verify_errors, protocol_errors: r.protocol_errors })}`;
    } else if (mode === 'broadcast') {
      const r = await loadgen(ctx, [...base, '--scenario', 'subscribe', '-c', '3', '--messages', '2', '--size', '16', '--verify'], { limitMs: 30000 });
      if (r.complete_conns !== 3 || r.verify_errors)
        return `broadcast check failed: ${JSON.stringify({ connections: r.connections, fail_reasons: r.fail_reasons, complete: r.complete_conns, deliveries: r.deliveries, verify_errors: r.verify_errors })}`;
      if (ctx.bcastCases.some((c) => c.topics)) {
        // the many-topics extension: sub K acknowledged, pubt reaches every topic's subscribers
        const t = await loadgen(ctx, [...base, '--scenario', 'subscribe', '-c', '4', '--topics', '2', '--messages', '2', '--size', '16', '--verify'], { limitMs: 30000 });
        if (t.complete_conns !== 4 || t.verify_errors || t.deliveries !== 8)
          return `broadcast topics check (sub K / pubt M S) failed: ${JSON.stringify({ connections: t.connections, complete: t.complete_conns, deliveries: t.deliveries, verify_errors: t.verify_errors })}`;
      }
    } else {
      const r = await loadgen(ctx, [...base, '--scenario', 'hold', '-c', '2', '--duration', '0.2'], { limitMs: 30000 });
      if (r.connections !== 2) return `hold check failed: ${JSON.stringify(r.fail_reasons)}`;
    }
    if (srv.stats) {
      const st = await serverStats(srv);
      if (!st || typeof st.rss !== 'number') return 'no STATS line on SIGUSR2';
    }
    if (exited(srv.child)) return `exited during the check\n${srv.err.tail(3)}`;
    return null;
  } catch (e) {
    return e.message.split('\n').filter(Boolean).slice(0, 3).join(' | ');
  } finally {
    await stopProcess(srv.child);
  }
}

function pkgVersion(p) {
  try {
    return JSON.parse(fs.readFileSync(p, 'utf8')).version;
  } catch {
    return null;
  }
}

/** A fingerprint of murmur's build (names, sizes, mtimes under dist/src): others may rebuild meanwhile. */
function distFingerprint() {
  const h = createHash('sha1');
  const walk = (d) => {
    let ents;
    try {
      ents = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of ents.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.js')) {
        const st = fs.statSync(p);
        h.update(`${path.relative(ROOT, p)} ${st.size} ${st.mtimeMs}\n`);
      }
    }
  };
  walk(path.join(ROOT, 'dist', 'src'));
  return h.digest('hex').slice(0, 12);
}

function versions(bun) {
  let commit = null;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {}
  return {
    node: process.versions.node,
    murmur: pkgVersion(path.join(ROOT, 'package.json')),
    murmurCommit: commit,
    ws: pkgVersion(path.join(HERE, 'node_modules', 'ws', 'package.json')),
    bun: bun.version ?? null,
    uws: pkgVersion(path.join(HERE, 'node_modules', '@trufflesuite', 'uws-js-unofficial', 'package.json')),
    autocannon: pkgVersion(path.join(AUTOCANNON, 'package.json')),
    bufferutil: pkgVersion(path.join(HERE, 'node_modules', 'bufferutil', 'package.json')),
  };
}

function scenarioMode(scenario, name) {
  if (scenario === 'serve-http') return 'serve';
  if (scenario === 'echo') return 'echo';
  if (scenario === 'broadcast') return 'broadcast';
  return idleMode(name);
}

// ---------------------------------------------------------------- main
async function main() {
  const o = parseArgs(process.argv.slice(2));
  const plan = pinningPlan(o.pin);
  if (plan.pin && o['same-core']) plan.note = 'server and load generator on CPU 0 (taskset -c 0, --same-core), harness on CPU 1';
  const ctx = { ...o, pin: plan.pin, verbose: false };
  const notes = [];
  const cpus = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
  buildLoadgen(log);
  if (plan.pin) spawnSync('taskset', ['-apc', '1', String(process.pid)], { stdio: 'ignore' });

  const skip = (msg) => {
    log(msg);
    notes.push(msg);
  };
  const bun = findBun();
  ctx.bun = bun.path;
  const ver = versions(bun);
  const fpStart = distFingerprint();

  // which server can run in which mode: present, then a quick contract check per needed mode
  const servers = [];
  const available = {};
  for (const s of o.servers) {
    if (!fs.existsSync(path.resolve(ROOT, SERVERS[s].entry))) {
      skip(SERVERS[s].missing ?? `${s}: ${SERVERS[s].entry} missing`);
      continue;
    }
    if (SERVERS[s].runtime === 'bun' && !bun.path) {
      skip(`bun: skipped: ${bun.error}`);
      continue;
    }
    if (s === 'murmur' && o.scenarios.includes('broadcast')) {
      const h = murmurHelpListsBroadcast();
      if (h.listed) SERVERS.murmur.modes = [...new Set([...SERVERS.murmur.modes, 'broadcast'])];
      if (h.listed && SERVERS.base) SERVERS.base.modes = [...new Set([...SERVERS.base.modes, 'broadcast'])];
      else skip(`murmur: \`murmur echo --help\` does not list broadcast as a --mode value ("${h.line}"): skipped in broadcast`);
    }
    const needed = [...new Set(o.scenarios.map((sc) => scenarioMode(sc, s)).filter((m) => SERVERS[s].modes.includes(m)))];
    available[s] = [];
    for (const m of needed) {
      const why = await preflight(ctx, s, m);
      if (why) skip(`${s}: ${m} mode does not work, skipped there: ${why}`);
      else available[s].push(m);
    }
    if (available[s].length || (s === 'murmur' && o.scenarios.includes('serve-http'))) servers.push(s);
  }
  if (!servers.length) {
    log('no server to measure');
    process.exit(1);
  }
  log(`measuring ${servers.map((s) => `${s} (${available[s].join(', ')})`).join(', ')}`);
  const errors = [];
  for (const scenario of o.scenarios) {
    // serve-http measures `murmur serve` (murmur's real server); the rivals have no counterpart
    const eligible = scenario === 'serve-http' ? servers.filter((s) => s === 'murmur') : servers.filter((s) => available[s].includes(scenarioMode(scenario, s)));
    if (scenario === 'serve-http' && !eligible.length) notes.push('serve-http: murmur not measured (only murmur has `murmur serve`)');
    for (const s of servers)
      if (scenario !== 'serve-http' && !eligible.includes(s) && !SERVERS[s].modes.includes(scenarioMode(scenario, s)))
        notes.push(`${s}: no ${scenarioMode(scenario, s)} mode, skipped in ${scenario}`);
    const sizes = scenario === 'memory' ? o.connections : [null];
    for (const n of sizes) {
      for (let run = 1; run <= o.runs; run++) {
        for (const s of eligible) {
          // interleaved: murmur, ws, bun, uws, bare, murmur, ws, ...
          try {
            await checkQuiet(`${s} ${scenario} run ${run}`);
            if (scenario === 'memory') await memoryRun(ctx, s, n, run);
            else if (scenario === 'echo') await echoRun(ctx, s, run);
            else if (scenario === 'handshakes') await handshakesRun(ctx, s, run);
            else if (scenario === 'http') await httpRun(ctx, s, run);
            else if (scenario === 'serve-http') await serveHttpRun(ctx, s, run);
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
  else notes.push(`background load: no CPU above 15% busy before any of the ${loadSeen.length} runs`);
  if (o.scenarios.includes('http') && Object.keys(httpAnswers).length) {
    notes.push(`http: GET / without upgrade is answered ${Object.entries(httpAnswers)
      .map(([s, a]) => `${s} ${a.status ?? a.error}${a.closes ? ' + Connection: close' : ''}`)
      .join(', ')}. A server that closes gets a new TCP connection per request even from the keep-alive client ` +
      '(autocannon reconnects; the harness makes it wait for the close instead of writing into the closing socket, see README), ' +
      `so its keep-alive row measures accept + request + close. autocannon is one Node process on CPU 1: the fastest servers may be measured at the client's limit; server CPU per request is not.`);
  }
  if (o.scenarios.includes('echo') && servers.includes('bare'))
    notes.push('bare echo: the least a frame echo can do on net.Socket (unmask in place, write the frame back; no validation, no events per message): a floor, not a WebSocket server');
  for (const [s, v] of Object.entries(listenInfo)) notes.push(`${s} reported on start: ${[...v].join('; ')}`);
  const fpEnd = distFingerprint();
  if (fpEnd !== fpStart && servers.includes('murmur'))
    notes.push(`murmur's dist/src changed during this invocation (fingerprint ${fpStart} -> ${fpEnd}): someone rebuilt it; murmur figures mix two builds`);
  const meta = {
    date: new Date().toISOString(),
    node: process.versions.node,
    cpus,
    cpuModel: os.cpus()[0]?.model,
    memTotalGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    runs: o.runs,
    pinning: plan.note,
    versions: ver,
    distFingerprint: { start: fpStart, end: fpEnd },
    serverModes: available,
    listenInfo: Object.fromEntries(Object.entries(listenInfo).map(([k, v]) => [k, [...v]])),
    notes: [...new Set(notes)],
    command: `node native-bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
  };
  const rows = summarize(servers);
  const md = markdown(rows, servers, meta);
  const file = resultsPath(o.out);
  meta.results = path.relative(ROOT, file);
  const opts = { ...o };
  delete opts.echoCases;
  delete opts.bcastCases;
  delete opts.httpCases;
  delete opts.serveCases;
  fs.writeFileSync(file, `${JSON.stringify({ meta, options: opts, servers, figures: rows, errors, httpAnswers, backgroundLoad: loadSeen, raw }, null, 2)}\n`);
  process.stdout.write(`${md}\n`);
  log(`results: ${path.relative(ROOT, file)}`);
  if (errors.length) log(`${errors.length} error(s); see the JSON`);
  if (o['write-docs']) {
    const docs = path.join(ROOT, 'docs', 'benchmarks.md');
    const v = meta.versions;
    const section = [
      '',
      `## ${meta.date.slice(0, 10)}`,
      '',
      `\`${meta.command}\` (raw data: \`${meta.results}\`)`,
      '',
      `Machine: ${meta.cpuModel ?? 'unknown CPU'}, ${meta.cpus} CPU (shared with other sessions), ${meta.memTotalGiB} GiB, Linux ${meta.kernel}. ` +
        `Versions: murmur ${v.murmur}${v.murmurCommit ? ` (${v.murmurCommit} + working tree, dist ${fpStart})` : ''}, Node ${v.node}, ws ${v.ws} (bufferutil ${v.bufferutil}), ` +
        `Bun ${v.bun ?? 'n/a'}, uWebSockets.js ${v.uws ?? 'n/a'} (@trufflesuite/uws-js-unofficial), autocannon ${v.autocannon ?? 'n/a'}.`,
      '',
      md,
      '',
    ].join('\n');
    if (!fs.existsSync(docs)) fs.writeFileSync(docs, '# Benchmarks\n');
    fs.appendFileSync(docs, section);
    log('appended to docs/benchmarks.md');
  }
  process.exitCode = errors.length ? 1 : 0;
}

if (process.argv[2] === '--autocannon-child') {
  autocannonChild(process.argv[3]).catch((e) => {
    process.stderr.write(`autocannon child: ${e.stack || e}\n`);
    process.exit(1);
  });
} else {
  main().catch((e) => {
    log(e.stack || String(e));
    killAll();
    process.exit(1);
  });
}
