// The million-socket ramp: the parts that decide, without processes or sockets, so that
// selftest.mjs can check them against a fake /proc. ramp.mjs does the running.
//   parseArgs   options and their defaults
//   readSystem  /proc and /proc/sys figures the ramp watches (any root: a fake tree in tests)
//   makePlan    server workers, load-generator workers, source addresses, per-worker cap
//   predictLimits  which limit the target would meet before starting, and what --tune may set
//   nextStep    how far the next step may go (memory, descriptors, conntrack, time, per-worker cap)
//   stepVerdict whether a finished step met a hard limit, and which
//   summarise   per-connection figures, rates and the projection for larger machines
//   svgChart    memory against connections, one SVG, no dependency
import fs from 'node:fs';
import path from 'node:path';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** Descriptors a server worker needs besides its connections: stdio, IPC, epoll, listener, libuv. */
export const WORKER_FD_MARGIN = 500;
/** The load generator's largest worker (loadgen.c MAX_PER_WORKER) and worker count (MAX_WORKERS). */
export const LOADGEN_PER_WORKER = 19000;
export const LOADGEN_MAX_WORKERS = 128;
/**
 * Bytes one held connection costs the machine before anything is measured (both ends on this
 * machine): kernel ~9 KiB (two sockets), murmur ~1.5 KiB, the load generator ~0.4 KiB, rounded
 * up. The first step replaces it with the measured MemAvailable drop per connection.
 */
export const ASSUMED_BYTES_PER_CONNECTION = 12 * KiB;

export const DEFAULTS = {
  server: 'echo',
  target: 1_000_000,
  step: 50_000,
  'per-worker': 18_000,
  workers: 0,
  'worker-cap': 0,
  'margin-gib': 3,
  'max-time': 1800,
  'step-timeout': 300,
  concurrency: 1000,
  'per-src-ip': 5000,
  broadcast: '1x64',
  ping: true,
  settle: 2,
  node: '',
  'node-args': '',
  'server-args': '',
  transport: 'auto',
  host: '127.0.0.1',
  nice: 10,
  tune: false,
  out: '',
  chart: '',
  'dry-run': false,
  redraw: '',
  proc: '/proc',
  quiet: false,
};

const HELP = `usage: node native-bench/ramp/ramp.mjs [options]
Ramps idle WebSocket connections to \`murmur echo --workers W\` up to --target, step by step,
measuring memory per connection (user space and kernel), then broadcasts one message to every
connection and pings every connection. Stops at the first hard limit and names it.

  --server S          echo | serve: \`murmur echo --mode broadcast\` or \`murmur serve\` (anonymous
                      clients on /ws; no broadcast and no ping-all phase) as the server (echo)
  --target N          connections to reach (1000000)
  --step N            connections added per step (50000; a tenth of targets under 500000);
                      memory is measured after each
  --per-worker N      connections planned per server worker: workers = ceil(target / N) (18000)
  --workers W         server workers (overrides --per-worker)
  --worker-cap N      --max-connections of each worker: beyond it upgrades get 503 instead of a
                      worker running out of descriptors (default: descriptor limit - ${WORKER_FD_MARGIN})
  --margin-gib G      stop ramping before MemAvailable falls under G GiB (3)
  --max-time S        the whole run, teardown included, in seconds (1800)
  --step-timeout S    one step's ramp (300)
  --concurrency C     handshakes pending at once, all load-generator workers together (1000;
                      at most 150 per server worker, under its listen backlog of 511)
  --per-src-ip N      connections per source address 127.0.0.x (5000)
  --broadcast MxS     while all are connected: publish M messages of S bytes to every connection
                      (1x64; none to skip)
  --no-ping           skip the ping to every connection
  --settle S          seconds between a step's end and its measurement (2)
  --node PATH         Node for the server (default tools/node24 when installed: reusePort spreads
                      connections evenly; else this Node)
  --node-args "..."   extra Node/V8 flags for the server processes
  --server-args "..." extra arguments of \`murmur echo\` / \`murmur serve\` (e.g. "--no-idle-gc")
  --transport T       auto | lean | socket (MURMUR_TRANSPORT; auto)
  --host H            server address (127.0.0.1)
  --nice N            run server and load generator at this niceness (10; others share the machine)
  --tune              apply the kernel settings the target needs (only those), restore them at the end
  --out FILE          result JSON (native-bench/results/ramp-<date>[-k].json)
  --chart FILE|none   SVG chart (docs/images/ramp-<target/1000>k.svg)
  --dry-run           print the plan and the limits the target would meet; start nothing
  --redraw FILE       draw the chart of an earlier result JSON again (to --chart); start nothing
  --proc DIR          read /proc from DIR (tests)
  --quiet             no progress lines
`;

export class UsageError extends Error {}

/** Options from argv: `--name value`, `--name=value`, `--flag`, `--no-flag`. Throws UsageError. */
export function parseArgs(argv) {
  const o = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (a === '-h' || a === '--help') throw new UsageError(HELP);
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument ${a}\n${HELP}`);
    a = a.slice(2);
    let val;
    const eq = a.indexOf('=');
    if (eq >= 0) (val = a.slice(eq + 1)), (a = a.slice(0, eq));
    if (a.startsWith('no-') && typeof DEFAULTS[a.slice(3)] === 'boolean') {
      o[a.slice(3)] = false;
      continue;
    }
    if (!(a in DEFAULTS)) throw new UsageError(`unknown option --${a}\n${HELP}`);
    if (typeof DEFAULTS[a] === 'boolean') {
      o[a] = val === undefined ? true : val !== 'false';
      continue;
    }
    if (val === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`--${a} needs a value`);
      val = argv[++i];
    }
    if (typeof DEFAULTS[a] === 'number') {
      const n = Number(String(val).replace(/_/g, ''));
      if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${a} needs a number >= 0, not ${val}`);
      o[a] = n;
    } else o[a] = val;
  }
  // default steps: 50,000, or a tenth of a smaller target (a chart needs points)
  if (!argv.some((a) => a === '--step' || a.startsWith('--step='))) o.step = o.target >= 500_000 ? 50_000 : Math.max(1000, Math.ceil(o.target / 10));
  const whole = ['target', 'step', 'per-worker', 'workers', 'worker-cap', 'concurrency', 'per-src-ip', 'nice'];
  for (const k of whole) if (!Number.isInteger(o[k])) throw new UsageError(`--${k} must be a whole number`);
  if (o.target < 1) throw new UsageError('--target must be at least 1');
  if (o.target > LOADGEN_PER_WORKER * LOADGEN_MAX_WORKERS)
    throw new UsageError(`--target: ${LOADGEN_PER_WORKER * LOADGEN_MAX_WORKERS} at most (the load generator's ${LOADGEN_MAX_WORKERS} workers of ${LOADGEN_PER_WORKER})`);
  if (o.step < 1) throw new UsageError('--step must be at least 1');
  if (o['per-worker'] < 1) throw new UsageError('--per-worker must be at least 1');
  if (o['per-src-ip'] < 1 || o['per-src-ip'] > 60000) throw new UsageError('--per-src-ip must be 1..60000');
  if (o.concurrency < 1) throw new UsageError('--concurrency must be at least 1');
  if (o['max-time'] < 60) throw new UsageError('--max-time: 60 s at least');
  if (o['step-timeout'] < 5) throw new UsageError('--step-timeout: 5 s at least');
  if (o.nice > 19) throw new UsageError('--nice must be 0..19');
  if (!['auto', 'lean', 'socket'].includes(o.transport)) throw new UsageError('--transport must be auto, lean or socket');
  if (!/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(o.host)) throw new UsageError('--host must be a 127.0.0.0/8 address (the load generator is loopback only)');
  if (!['echo', 'serve'].includes(o.server)) throw new UsageError('--server must be echo or serve');
  // serve has neither echo's `pub M S` broadcast nor its `pingall K`: the ramp only
  if (o.server === 'serve') (o.broadcast = 'none'), (o.ping = false);
  if (o.broadcast === 'none' || o.broadcast === '') o.broadcastCase = null;
  else {
    const m = /^(\d+)x(\d+)$/.exec(o.broadcast);
    if (m === null) throw new UsageError(`--broadcast must be MxS (messages x bytes) or none, not ${o.broadcast}`);
    const messages = Number(m[1]);
    const size = Number(m[2]);
    if (messages < 1 || messages > 1000 || size > 65536) throw new UsageError('--broadcast: 1..1000 messages of at most 65536 bytes');
    o.broadcastCase = { messages, size };
  }
  return o;
}

// ---------------------------------------------------------------- reading /proc

function readText(root, rel) {
  try {
    return fs.readFileSync(path.join(root, rel), 'utf8');
  } catch {
    return undefined;
  }
}

function readNums(root, rel) {
  const s = readText(root, rel);
  if (s === undefined) return undefined;
  const n = s.trim().split(/\s+/).map(Number);
  return n.every(Number.isFinite) ? n : undefined;
}

/** /proc/meminfo as bytes by key. */
export function parseMeminfo(text) {
  const out = {};
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\w+(?:\(\w+\))?):\s+(\d+)(?: kB)?/.exec(line);
    if (m) out[m[1]] = Number(m[2]) * (line.endsWith('kB') ? 1024 : 1);
  }
  return out;
}

/** /proc/net/sockstat: TCP inuse/orphan/tw/alloc and mem (pages), sockets used. */
export function parseSockstat(text) {
  const out = { socketsUsed: null, tcpInuse: null, tcpOrphan: null, tcpTw: null, tcpAlloc: null, tcpMemPages: null };
  const s = text ?? '';
  const used = /sockets: used (\d+)/.exec(s);
  if (used) out.socketsUsed = Number(used[1]);
  const m = /TCP: inuse (\d+) orphan (\d+) tw (\d+) alloc (\d+) mem (\d+)/.exec(s);
  if (m) [out.tcpInuse, out.tcpOrphan, out.tcpTw, out.tcpAlloc, out.tcpMemPages] = m.slice(1).map(Number);
  return out;
}

/** /proc/slabinfo: per cache, { objects (active), size (bytes per object) }. */
export function parseSlabinfo(text) {
  const out = {};
  for (const line of (text ?? '').split('\n')) {
    if (line.startsWith('slabinfo') || line.startsWith('#')) continue;
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    const objects = Number(f[1]);
    const size = Number(f[3]);
    if (Number.isFinite(objects) && Number.isFinite(size)) out[f[0]] = { objects, size };
  }
  return out;
}

/** /proc/net/netstat or /proc/net/snmp: { 'TcpExt.ListenOverflows': n, 'Tcp.RetransSegs': n, ... }. */
export function parseNetstat(...texts) {
  const out = {};
  for (const text of texts) {
    const lines = (text ?? '').split('\n');
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const h = lines[i].split(/\s+/);
      const v = lines[i + 1].split(/\s+/);
      if (h[0] !== v[0] || !h[0].endsWith(':')) continue;
      const pre = h[0].slice(0, -1);
      for (let j = 1; j < h.length; j++) if (h[j]) out[`${pre}.${h[j]}`] = Number(v[j]);
    }
  }
  return out;
}

/** The hard RLIMIT_NOFILE of a process from /proc/PID/limits text. */
export function parseNofile(text) {
  const line = (text ?? '').split('\n').find((l) => l.startsWith('Max open files'));
  if (!line) return null;
  const p = line.slice('Max open files'.length).trim().split(/\s+/);
  const num = (v) => (v === 'unlimited' ? Infinity : Number(v));
  return { soft: num(p[0]), hard: num(p[1]) };
}

/** Everything the ramp watches on the machine, one reading. Missing files give nulls. */
export function readSystem(root = '/proc') {
  const mem = parseMeminfo(readText(root, 'meminfo'));
  const fileNr = readNums(root, 'sys/fs/file-nr');
  const ct = readNums(root, 'sys/net/netfilter/nf_conntrack_count');
  const ctMax = readNums(root, 'sys/net/netfilter/nf_conntrack_max');
  const range = readNums(root, 'sys/net/ipv4/ip_local_port_range');
  const load = (readText(root, 'loadavg') ?? '').trim().split(/\s+/).slice(0, 3).map(Number);
  const one = (rel) => readNums(root, rel)?.[0] ?? null;
  return {
    t: Date.now(),
    memTotal: mem.MemTotal ?? null,
    memAvailable: mem.MemAvailable ?? null,
    memFree: mem.MemFree ?? null,
    slab: mem.Slab ?? null,
    sReclaimable: mem.SReclaimable ?? null,
    sUnreclaim: mem.SUnreclaim ?? null,
    pageTables: mem.PageTables ?? null,
    kernelStack: mem.KernelStack ?? null,
    percpu: mem.Percpu ?? null,
    anonPages: mem.AnonPages ?? null,
    sockstat: parseSockstat(readText(root, 'net/sockstat')),
    fileNr: fileNr ? fileNr[0] : null,
    fileMax: one('sys/fs/file-max'),
    nrOpen: one('sys/fs/nr_open'),
    conntrack: ct && ctMax ? { count: ct[0], max: ctMax[0] } : null,
    portRange: range && range.length >= 2 ? [range[0], range[1]] : null,
    tcpMem: readNums(root, 'sys/net/ipv4/tcp_mem') ?? null,
    somaxconn: one('sys/net/core/somaxconn'),
    synBacklog: one('sys/net/ipv4/tcp_max_syn_backlog'),
    pidMax: one('sys/kernel/pid_max'),
    nofile: parseNofile(readText(root, 'self/limits')),
    loadavg: load.length === 3 && load.every(Number.isFinite) ? load : null,
  };
}

/** Process memory from /proc/PID/status: VmRSS, RssAnon, RssFile in bytes, or null when gone. */
export function readProcMem(pid, root = '/proc') {
  const s = readText(root, `${pid}/status`);
  if (s === undefined) return null;
  const kb = (k) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

/** CPU seconds (user + system) of a process from /proc/PID/stat, or 0 when gone. */
export function procCpuSeconds(pid, root = '/proc', hz = 100) {
  const s = readText(root, `${pid}/stat`);
  if (s === undefined) return 0;
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / hz; // fields 14 and 15
}

/** The machine's CPU time by kind from /proc/stat's first line, in seconds (USER_HZ 100). */
export function machineCpu(root = '/proc', hz = 100) {
  const line = (readText(root, 'stat') ?? '').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = v.map((x) => (Number.isFinite(x) ? x / hz : 0));
  return { user, nice, system, idle, iowait, irq, softirq, steal };
}

/** b - a for every key of machineCpu(). */
export function cpuDelta(a, b) {
  const out = {};
  for (const k of Object.keys(b)) out[k] = +((b[k] ?? 0) - (a[k] ?? 0)).toFixed(2);
  return out;
}

/** Start time (clock ticks since boot) of a process, to tell it from a later one with its PID. */
export function procStartTime(pid, root = '/proc') {
  const s = readText(root, `${pid}/stat`);
  if (s === undefined) return null;
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return f[19] ?? null; // field 22
}

/** Child PIDs of a process (CONFIG_PROC_CHILDREN), else a scan of /proc/<pid>/stat. */
export function childPids(pid, root = '/proc') {
  const direct = readText(root, `${pid}/task/${pid}/children`);
  if (direct !== undefined) return direct.trim().split(/\s+/).filter(Boolean).map(Number);
  const out = [];
  for (const d of fs.readdirSync(root)) {
    if (!/^\d+$/.test(d)) continue;
    const s = readText(root, `${d}/stat`);
    if (s === undefined) continue;
    const ppid = Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === pid) out.push(Number(d));
  }
  return out;
}

// ---------------------------------------------------------------- the server's command

/** The bench secret and API key `murmur serve` gets in its environment (serve needs neither for anonymous clients; the API for a look at /metrics). */
export const SERVE_ENV = { MURMUR_SECRET: 'ramp-secret-0123456789abcdef', MURMUR_API_KEY: 'ramp-api-key-0123456789' };

/**
 * `murmur serve`'s arguments for the ramp: the same port, host and per-worker cap as echo's;
 * per-address caps off (the clients come from a few loopback addresses), and rebalancing and
 * overload shedding off (the load generator does not reconnect: a shed client would be lost to
 * the count, and the ramp guards the machine's memory itself). Anonymous clients on /ws.
 */
export function serveArgs(opts, plan) {
  return [
    'serve',
    '--workers', String(plan.serverWorkers),
    '--port', '0',
    '--host', opts.host,
    '--max-connections', String(plan.workerCap),
    '--max-connections-per-address', '0',
    '--max-handshakes-per-address', '0',
    '--rebalance=off',
    '--overload-lag-ms', '0',
    '--overload-memory', '0',
  ];
}

/** How workers share the port on a Node version ('v20.11.1'): the supervisor's rule (reusePortSupported). */
export function distributionOf(version) {
  const m = /^v?(\d+)\.(\d+)/.exec(version ?? '');
  if (m === null) return null;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major >= 23 || (major === 22 && minor >= 12) ? 'reuseport' : 'shared-socket';
}

// ---------------------------------------------------------------- the plan

/** The listen backlog of a murmur server (ServerOptions.backlog's default): the accept queue of one listening socket. */
export const LISTEN_BACKLOG = 511;

/**
 * distribution: how the workers share the port ('reuseport': a socket and an accept queue per
 * worker; 'shared-socket': one socket, one queue, for all of them; null: unknown, as reuseport).
 */
export function makePlan(opts, sys, distribution = null) {
  const hard = sys.nofile?.hard ?? 20000;
  const fdCap = Number.isFinite(hard) ? hard - WORKER_FD_MARGIN : 1_000_000;
  const cap = opts['worker-cap'] > 0 ? Math.min(opts['worker-cap'], fdCap) : Math.min(fdCap, 1_000_000);
  const perWorker = Math.min(opts['per-worker'], cap);
  const workers = opts.workers > 0 ? opts.workers : Math.max(1, Math.ceil(opts.target / perWorker));
  const loadgenWorkers = Math.ceil(opts.target / LOADGEN_PER_WORKER);
  const srcIps = Math.max(1, Math.ceil(opts.target / opts['per-src-ip']));
  // Handshakes in flight land in the workers' accept queues (listen backlog 511 each): keep
  // well under it, or SYNs are dropped and retried a second later (ListenOverflows). Workers
  // on one shared socket (Node before 22.12) share one queue, whatever their number.
  const perQueue = distribution === 'shared-socket' ? Math.floor(LISTEN_BACKLOG * 0.8) : workers * 150;
  const concurrency = Math.max(1, Math.min(opts.concurrency, perQueue));
  return {
    serverWorkers: workers,
    distribution,
    concurrency,
    workerCap: cap,
    plannedPerWorker: Math.ceil(opts.target / workers),
    descriptorLimit: Number.isFinite(hard) ? hard : null,
    loadgenWorkers,
    srcIps,
    processes: workers + 1 + loadgenWorkers + 1,
  };
}

/**
 * The limits the target would meet, from one reading before anything starts. Each row:
 * { limit, ok, have, need, detail, tune?: { key, value } } — `tune` only where a sysctl
 * fixes it and only when it is needed.
 */
export function predictLimits(opts, sys, plan) {
  const n = opts.target;
  const rows = [];
  const fmtN = (x) => (x == null ? 'unknown' : Math.round(x).toLocaleString('en-US'));
  // one process's descriptors: a worker holds its share plus handshakes in flight
  const perWorkerNeed = plan.plannedPerWorker + WORKER_FD_MARGIN;
  rows.push({
    limit: 'descriptors per process',
    ok: plan.descriptorLimit == null || perWorkerNeed <= plan.descriptorLimit,
    have: plan.descriptorLimit,
    need: perWorkerNeed,
    detail: `${plan.serverWorkers} server workers of ~${fmtN(plan.plannedPerWorker)} (cap ${fmtN(plan.workerCap)} each), ${plan.loadgenWorkers} load-generator workers of <= ${LOADGEN_PER_WORKER}; the hard limit is ${fmtN(plan.descriptorLimit)}`,
  });
  // the whole machine's descriptors: both ends of every connection are here
  if (sys.fileMax != null) {
    const need = (sys.fileNr ?? 0) + 2 * n + 20 * plan.processes + 4096;
    rows.push({
      limit: 'fs.file-max',
      ok: need <= sys.fileMax,
      have: sys.fileMax,
      need,
      detail: `2 descriptors per connection (both ends) + ${fmtN(sys.fileNr)} already open`,
      tune: need <= sys.fileMax ? undefined : { key: 'fs.file-max', value: String(Math.ceil(need * 1.1)) },
    });
  }
  // connection tracking: one entry per connection when the firewall tracks loopback
  if (sys.conntrack != null) {
    const tracking = sys.conntrack.count > 0;
    const need = sys.conntrack.count + Math.ceil(n * 1.05);
    rows.push({
      limit: 'net.netfilter.nf_conntrack_max',
      ok: !tracking || need <= sys.conntrack.max,
      have: sys.conntrack.max,
      need: tracking ? need : 0,
      detail: tracking
        ? `${fmtN(sys.conntrack.count)} entries in use: connections are tracked, one entry each`
        : 'nf_conntrack is loaded but tracks nothing now (count 0); checked again after the first step',
      tune: tracking && need > sys.conntrack.max ? { key: 'net.netfilter.nf_conntrack_max', value: String(Math.ceil(need * 1.1)) } : undefined,
    });
  }
  // 4-tuples: every source address has the ephemeral range towards the one server address
  if (sys.portRange) {
    const ports = sys.portRange[1] - sys.portRange[0] + 1;
    rows.push({
      limit: 'ports (4-tuples)',
      ok: plan.srcIps * ports >= n,
      have: plan.srcIps * ports,
      need: n,
      detail: `${plan.srcIps} source addresses x ${fmtN(ports)} ephemeral ports towards ${opts.host}; ${opts['per-src-ip']} per address keeps the kernel's port search short`,
    });
  }
  // memory: MemAvailable above the margin, at the assumed cost per connection
  if (sys.memAvailable != null) {
    const usable = sys.memAvailable - opts['margin-gib'] * GiB - plan.serverWorkers * 25 * MiB;
    const fits = Math.max(0, Math.floor(usable / ASSUMED_BYTES_PER_CONNECTION));
    rows.push({
      limit: 'memory',
      ok: fits >= n,
      have: fits,
      need: n,
      detail: `MemAvailable ${(sys.memAvailable / GiB).toFixed(1)} GiB - ${opts['margin-gib']} GiB margin - ${plan.serverWorkers} workers x ~25 MiB, at ~${ASSUMED_BYTES_PER_CONNECTION / KiB} KiB per connection (both ends) before measuring`,
    });
  }
  // TCP buffer memory during the broadcast and the ping: each socket holding a queued frame is
  // charged at least one page against tcp_mem until its peer reads it
  if (sys.tcpMem && (opts.broadcastCase || opts.ping)) {
    const hardPages = sys.tcpMem[2];
    rows.push({
      limit: 'net.ipv4.tcp_mem (during broadcast and ping)',
      ok: n <= hardPages,
      have: hardPages,
      need: n,
      detail: `pages: a frame queued on a socket is charged a whole page until read; ${fmtN(n)} sockets at once would need ${fmtN(n)} pages (pressure starts at ${fmtN(sys.tcpMem[1])}); the load generator reads as the server writes, so the peak is usually far lower`,
      tune: n > hardPages ? { key: 'net.ipv4.tcp_mem', value: `${sys.tcpMem[0]} ${Math.max(sys.tcpMem[1], n)} ${Math.ceil(n * 1.5)}` } : undefined,
    });
  }
  if (sys.pidMax != null) {
    rows.push({ limit: 'kernel.pid_max', ok: plan.processes + 500 < sys.pidMax, have: sys.pidMax, need: plan.processes, detail: 'processes started (threads not counted)' });
  }
  return rows;
}

// ---------------------------------------------------------------- during the ramp

/**
 * How many connections in all the next step may reach, or a stop. Input:
 * { opts, plan, held, sys (now), base (reading before the ramp), costPerConn (bytes of
 *   MemAvailable per connection measured so far, or null), elapsedS, stepTimeS (last step's
 *   duration, or null), maxWorkerConns (the fullest worker now), reserveS (time kept for the
 *   broadcast, the ping and the teardown) }
 * Output: { target } or { stop: { limit, detail } }.
 */
export function nextStep(x) {
  const { opts, plan, held, sys, base } = x;
  const left = opts.target - held;
  if (left <= 0) return { stop: { limit: 'target', detail: `${held.toLocaleString('en-US')} connections: the target` } };
  let step = Math.min(opts.step, left);
  const why = [];
  // memory: MemAvailable must stay above the margin after the step
  const cost = x.costPerConn && x.costPerConn > 0 ? x.costPerConn : ASSUMED_BYTES_PER_CONNECTION;
  if (sys.memAvailable != null) {
    const room = sys.memAvailable - opts['margin-gib'] * GiB;
    const fits = Math.floor(room / (cost * 1.1));
    if (fits < step) {
      why.push(`memory: ${(room / GiB).toFixed(2)} GiB above the margin fits ~${Math.max(0, fits).toLocaleString('en-US')} more at ${(cost / KiB).toFixed(1)} KiB each`);
      step = fits;
    }
    if (step < Math.min(1000, left)) {
      return {
        stop: {
          limit: 'memory',
          detail: `MemAvailable ${(sys.memAvailable / GiB).toFixed(2)} GiB, margin ${opts['margin-gib']} GiB: ${(cost / KiB).toFixed(1)} KiB per connection leaves room for ${Math.max(0, fits).toLocaleString('en-US')} more`,
        },
      };
    }
  }
  // the machine's descriptors
  if (sys.fileMax != null && sys.fileNr != null) {
    const room = Math.floor((sys.fileMax - sys.fileNr - 2048) / 2);
    if (room < step) {
      if (room < Math.min(1000, left)) return { stop: { limit: 'fs.file-max', detail: `${sys.fileNr.toLocaleString('en-US')} of ${sys.fileMax.toLocaleString('en-US')} descriptors in use; each connection takes 2 (both ends here)` } };
      why.push(`fs.file-max leaves room for ${room}`);
      step = room;
    }
  }
  // connection tracking, when it tracks these connections
  if (sys.conntrack && base?.conntrack && sys.conntrack.count - base.conntrack.count > held / 2 && held > 0) {
    const room = sys.conntrack.max - sys.conntrack.count - 1000;
    if (room < step) {
      if (room < Math.min(1000, left)) return { stop: { limit: 'net.netfilter.nf_conntrack_max', detail: `${sys.conntrack.count} of ${sys.conntrack.max} conntrack entries: loopback connections are tracked, one entry each` } };
      why.push(`nf_conntrack_max leaves room for ${room}`);
      step = room;
    }
  }
  // one worker's cap (an uneven spread fills one worker first)
  if (x.maxWorkerConns != null && plan.workerCap) {
    const share = Math.ceil((held + step) / plan.serverWorkers);
    const spread = held > 0 ? x.maxWorkerConns / Math.max(1, held / plan.serverWorkers) : 1;
    const expectMax = Math.ceil(share * Math.max(1, spread) * 1.02);
    if (expectMax > plan.workerCap && held > 0) {
      const fits = Math.floor(((plan.workerCap / (Math.max(1, spread) * 1.02)) * plan.serverWorkers) - held);
      if (fits < Math.min(1000, left)) {
        return { stop: { limit: 'descriptors per process', detail: `the fullest server worker holds ${x.maxWorkerConns} (cap ${plan.workerCap}, descriptor limit ${plan.descriptorLimit}); the kernel spreads new connections ${spread.toFixed(2)}x the average onto it` } };
      }
      why.push(`the fullest worker would pass its cap of ${plan.workerCap}`);
      step = Math.min(step, fits);
    }
  }
  // time: a step of this size must fit before the reserve
  if (x.elapsedS != null) {
    const leftS = opts['max-time'] - x.elapsedS - (x.reserveS ?? 0);
    const perConnS = x.stepTimeS && x.lastStep ? x.stepTimeS / x.lastStep : 1 / 2000;
    if (leftS < 10) return { stop: { limit: 'time', detail: `${Math.round(x.elapsedS)} s of --max-time ${opts['max-time']} s used; ${Math.round(x.reserveS ?? 0)} s kept for the broadcast, the ping and the teardown` } };
    const fits = Math.floor(leftS / perConnS / 1.5);
    if (fits < step) {
      if (fits < Math.min(1000, left)) return { stop: { limit: 'time', detail: `--max-time ${opts['max-time']} s: ${Math.round(leftS)} s left fit ~${fits} more at the last step's rate` } };
      why.push(`--max-time leaves time for ${fits}`);
      step = fits;
    }
  }
  return { target: held + step, limitedBy: why };
}

/** The limit a failure reason of the load generator points at. */
export const FAILURE_LIMITS = {
  no_port: 'ports (no free 4-tuple: EADDRNOTAVAIL)',
  file_max: 'fs.file-max (ENFILE)',
  fd_limit: 'descriptors per process (EMFILE in the load generator)',
  no_memory: 'kernel memory (ENOMEM/ENOBUFS)',
  status: 'server refused upgrades (503: a worker at its --max-connections cap)',
  ramp_timeout: 'time (the step did not finish within --step-timeout)',
  timeout: 'handshake timeouts',
  connect: 'connect() failed',
  eof: 'server closed during the handshake',
  accept: 'bad handshake answers',
  socket: 'socket() failed',
  response_too_big: 'bad handshake answers',
};

/**
 * Whether a finished step met a hard limit. Input:
 * { opts, step (the load generator's step event), sys, base, netDelta (TcpExt/Tcp counter
 *   deltas over the step), workersDead (server workers that exited), memHalt (the memory guard
 *   stopped the step), timeHalt }
 * Output: null, or { limit, detail }.
 */
export function stepVerdict(x) {
  const { step, sys } = x;
  if (x.workersDead > 0) return { limit: 'server worker exited', detail: `${x.workersDead} server worker(s) exited during the step` };
  if (x.memHalt) return { limit: 'memory', detail: `MemAvailable fell to ${(sys.memAvailable / GiB).toFixed(2)} GiB, under the ${x.opts['margin-gib']} GiB margin, during the step` };
  const reasons = step?.step_fail_reasons ?? {};
  const failed = Object.values(reasons).reduce((a, b) => a + b, 0);
  const tolerated = Math.max(10, Math.floor((step?.step_connected ?? 0) * 0.001));
  if (failed > tolerated) {
    const [top] = Object.entries(reasons).sort((a, b) => b[1] - a[1]);
    let limit = FAILURE_LIMITS[top[0]] ?? `handshake failures (${top[0]})`;
    // timeouts have several causes: name the one the kernel counted
    if (['timeout', 'ramp_timeout', 'connect', 'eof'].includes(top[0])) {
      if (sys.conntrack && sys.conntrack.count >= sys.conntrack.max * 0.98) limit = 'net.netfilter.nf_conntrack_max (table full: new connections dropped)';
      else if ((x.netDelta?.['TcpExt.ListenOverflows'] ?? 0) > failed / 2) limit = `accept backlog (${x.netDelta['TcpExt.ListenOverflows']} listen overflows)`;
      else if (sys.fileMax != null && sys.fileNr != null && sys.fileNr > sys.fileMax * 0.98) limit = 'fs.file-max';
    }
    const list = Object.entries(reasons).map(([k, v]) => `${k} ${v}`).join(', ');
    return { limit, detail: `${failed} of ${(step.step_connected ?? 0) + failed} handshakes of the step failed (${list})` };
  }
  if (x.timeHalt) return { limit: 'time', detail: 'the step was stopped by --step-timeout or --max-time' };
  return null;
}

/**
 * Whether a phase with every connection open (the broadcast, the ping) met a kernel limit:
 * TCP buffer memory over tcp_mem's hard limit, or the kernel's own memory-pressure counters.
 * phase: { tcpMemPeakBytes, net: counter deltas }; tcpMem: the three sysctl values (pages).
 */
export function phaseLimit(name, phase, tcpMem) {
  if (!phase || phase.error) return null;
  const pages = Math.round((phase.tcpMemPeakBytes ?? 0) / 4096);
  const pressures = phase.net?.['TcpExt.TCPMemoryPressures'] ?? 0;
  const aborts = phase.net?.['TcpExt.TCPAbortOnMemory'] ?? 0;
  const over = tcpMem && pages > tcpMem[2];
  const pressured = tcpMem && pages > tcpMem[1];
  if (!over && !pressured && !pressures && !aborts) return null;
  return {
    phase: name,
    limit: 'net.ipv4.tcp_mem',
    detail: `TCP buffers peaked at ${pages.toLocaleString('en-US')} pages (tcp_mem ${tcpMem ? tcpMem.join(' ') : '?'}): ${over ? 'over the hard limit' : pressured ? 'over the pressure threshold' : 'within it'}; the kernel counted ${pressures} memory-pressure episode(s) and ${aborts} connection(s) aborted for memory`,
  };
}

// ---------------------------------------------------------------- results

const sum = (xs) => xs.reduce((a, b) => a + b, 0);

/**
 * Per-connection figures from the baseline and a step measurement. A measurement:
 * { held, sys, slab (per cache bytes), workers: [{ pid, rss, anon, heapUsed, heapTotal,
 *   external, arrayBuffers, connections }], primary: { rss, anon }, loadgen: { rss, anon } }
 */
export function perConnection(base, m) {
  const n = m.held;
  if (!n) return null;
  const byPid = new Map(base.workers.map((w) => [w.pid, w]));
  const d = (k) => sum(m.workers.map((w) => (w[k] ?? 0) - (byPid.get(w.pid)?.[k] ?? 0)));
  const out = {
    connections: n,
    serverRss: d('rss') / n,
    serverAnon: d('anon') / n,
    heapUsed: d('heapUsed') / n,
    v8Physical: d('v8Physical') / n,
    young: d('young') / n,
    outsideV8: d('outsideV8') / n,
    external: d('external') / n,
    loadgenRss: (m.loadgen.rss - base.loadgen.rss) / n,
    kernelSlab: (m.sys.slab - base.sys.slab) / n,
    kernelSlabPerSocket: (m.sys.slab - base.sys.slab) / (2 * n),
    kernelSlabUnreclaimable: ((m.sys.sUnreclaim ?? 0) - (base.sys.sUnreclaim ?? 0)) / n,
    tcpBuffers: ((m.sys.sockstat.tcpMemPages ?? 0) - (base.sys.sockstat.tcpMemPages ?? 0)) * 4096 / n,
    pageTables: ((m.sys.pageTables ?? 0) - (base.sys.pageTables ?? 0)) / n,
    memAvailableDrop: (base.sys.memAvailable - m.sys.memAvailable) / n,
  };
  out.explained = out.serverRss + out.loadgenRss + out.kernelSlab + out.pageTables;
  if (base.slab && m.slab) {
    const caches = [];
    const objs = (name) => (m.slab[name]?.objects ?? 0) - (base.slab[name]?.objects ?? 0);
    for (const [name, c] of Object.entries(m.slab)) {
      const delta = c.objects * c.size - (base.slab[name] ? base.slab[name].objects * base.slab[name].size : 0);
      if (delta / n >= 16) caches.push({ cache: name, bytesPerConnection: Math.round(delta / n), objectsPerConnection: +(objs(name) / n).toFixed(2), objectSize: c.size });
    }
    caches.sort((a, b) => b.bytesPerConnection - a.bytesPerConnection);
    out.slabCaches = caches.slice(0, 12);
    // /proc/PID/fd/N entries: an inode (proc_inode_cache) and a dentry each, made when something
    // lists a process's descriptors. Not a cost of the socket: reclaimable, and absent where
    // nothing walks /proc (on this VM an agent of the sandbox seems to).
    const procInodes = objs('proc_inode_cache');
    if (procInodes > 0 && m.slab.proc_inode_cache) {
      out.procFdEntries = (procInodes * (m.slab.proc_inode_cache.size + (m.slab.dentry?.size ?? 0))) / n;
      out.kernelSlabWithoutProcFd = out.kernelSlab - out.procFdEntries;
    }
  }
  return out;
}

/** The compact record of one step for the JSON and the chart. */
export function stepRecord(base, m, ev) {
  const pc = perConnection(base, m);
  const conns = m.workers.map((w) => w.connections ?? 0);
  return {
    target: ev?.target ?? m.held,
    held: m.held,
    serverConnections: sum(conns),
    perWorker: conns.length ? { min: Math.min(...conns), max: Math.max(...conns), workers: conns.length } : null,
    // per worker: connections, RSS, V8's resident heap and young generation, anonymous memory outside V8
    workers: [...m.workers].sort((a, b) => a.pid - b.pid).map((w) => ({ pid: w.pid, connections: w.connections ?? 0, rss: w.rss, v8Physical: w.v8Physical ?? null, young: w.young ?? null, outsideV8: w.outsideV8 ?? null })),
    failed: ev?.failed ?? 0,
    stepFailReasons: ev?.step_fail_reasons ?? {},
    stepSeconds: ev?.step_s ?? null,
    stepConnected: ev?.step_connected ?? null,
    handshakesPerSecond: ev?.handshakes_per_s ?? null,
    memory: {
      serverRssDelta: sum(m.workers.map((w) => w.rss)) - sum(base.workers.map((w) => w.rss)),
      serverRssTotal: sum(m.workers.map((w) => w.rss)) + (m.primary?.rss ?? 0),
      serverAnonTotal: sum(m.workers.map((w) => w.anon)) + (m.primary?.anon ?? 0),
      heapUsedTotal: sum(m.workers.map((w) => w.heapUsed ?? 0)),
      loadgenRssDelta: m.loadgen.rss - base.loadgen.rss,
      kernelSlabDelta: m.sys.slab - base.sys.slab,
      tcpBufferBytes: (m.sys.sockstat.tcpMemPages ?? 0) * 4096,
      memAvailable: m.sys.memAvailable,
      memAvailableDrop: base.sys.memAvailable - m.sys.memAvailable,
    },
    kernel: {
      tcpInuse: m.sys.sockstat.tcpInuse,
      fileNr: m.sys.fileNr,
      conntrack: m.sys.conntrack?.count ?? null,
    },
    perConnection: pc,
  };
}

const median = (xs) => {
  const s = xs.filter((x) => x != null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  const i = Math.floor(s.length / 2);
  return s.length % 2 ? s[i] : (s[i - 1] + s[i]) / 2;
};

/**
 * The run's summary: { held, stop, perConnection (at the last step), handshakes (overall and
 * median step rate), broadcast, ping, projection }.
 */
export function summarise(run) {
  const steps = run.steps ?? [];
  const last = steps[steps.length - 1] ?? null;
  const timed = steps.filter((s) => s.stepSeconds && s.stepConnected);
  const hsOverall = timed.length ? sum(timed.map((s) => s.stepConnected)) / sum(timed.map((s) => s.stepSeconds)) : null;
  const pc = last?.perConnection ?? null;
  return {
    held: last?.held ?? 0,
    target: run.options?.target ?? null,
    stop: run.stop ?? null,
    perConnection: pc,
    handshakes: { overallPerSecond: hsOverall, medianStepPerSecond: median(timed.map((s) => s.handshakesPerSecond)) },
    broadcast: run.broadcast ?? null,
    ping: run.ping ?? null,
    phaseLimits: run.phaseLimits ?? [],
    projection: pc ? project(pc, run) : null,
  };
}

/**
 * What larger machines would hold at the measured costs: with the clients elsewhere (the server
 * machine pays one socket's kernel memory and murmur's user space per connection) and, as here,
 * with both ends on one machine. Reserve: 2 GiB for the system plus every server process's own
 * baseline (one per 19,000 connections when a process may hold 20,000 descriptors).
 */
export function project(pc, run) {
  // anonymous memory only: the Node binary's pages are shared by every worker
  const workerBase = run.baseline?.workerBaselineAnon ?? run.baseline?.workerBaseline ?? 30 * MiB;
  // the kernel's share without /proc/PID/fd entries (an artefact of something listing descriptors)
  const kernelPerSocket = (pc.kernelSlabWithoutProcFd ?? pc.kernelSlab) / 2;
  const serverOnly = kernelPerSocket + Math.max(pc.serverRss, 0);
  const bothEnds = Math.max(pc.memAvailableDrop, pc.explained);
  const rows = [];
  for (const ram of [24, 64, 128, 256, 512]) {
    const usable = ram * GiB - 2 * GiB;
    // processes of 19,000 connections each: each adds its baseline
    const per = (cost) => Math.floor(usable / (cost + workerBase / 19000));
    rows.push({ ramGiB: ram, serverOnly: per(serverOnly), bothEnds: per(bothEnds) });
  }
  return {
    kernelBytesPerSocket: Math.round(kernelPerSocket),
    bytesPerConnectionServerOnly: Math.round(serverOnly),
    bytesPerConnectionBothEnds: Math.round(bothEnds),
    workerBaselineBytes: Math.round(workerBase),
    machines: rows,
    millionNeeds: {
      serverOnlyGiB: (1e6 * serverOnly + Math.ceil(1e6 / 19000) * workerBase) / GiB,
      bothEndsGiB: (1e6 * bothEnds + Math.ceil(1e6 / 19000) * workerBase) / GiB,
    },
  };
}

// ---------------------------------------------------------------- the chart

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceStep(max, ticks) {
  const raw = max / ticks;
  const p = 10 ** Math.floor(Math.log10(raw || 1));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

/**
 * Memory against connections held, one line per series, a point per step (SVG 1.1 text).
 * steps: stepRecord()s; title, subtitle: strings.
 */
export function svgChart(steps, { title = 'Memory against connections', subtitle = '' } = {}) {
  const W = 760;
  const H = 440;
  const L = 70;
  const R = 20;
  const T = 58;
  const B = 96;
  const pts = [{ held: 0, memory: { kernelSlabDelta: 0, serverRssDelta: 0, loadgenRssDelta: 0, memAvailableDrop: 0 } }, ...steps];
  const series = [
    { key: 'memAvailableDrop', label: 'MemAvailable drop (counts reclaimable slab as free)', color: '#555555', dash: '6 4' },
    { key: 'kernelSlabDelta', label: 'kernel slab (both ends of every connection)', color: '#d9822b' },
    { key: 'serverRssDelta', label: 'murmur workers, user space (RSS)', color: '#2b6cd9' },
    { key: 'loadgenRssDelta', label: 'load generator, user space (RSS growth)', color: '#3a9e4f' },
  ];
  const maxX = Math.max(1, ...pts.map((p) => p.held));
  const maxY = Math.max(0.001, ...pts.flatMap((p) => series.map((s) => (p.memory[s.key] ?? 0) / GiB)));
  const xStep = niceStep(maxX, 5);
  const yStep = niceStep(maxY, 5);
  const xMax = Math.ceil(maxX / xStep) * xStep;
  const yMax = Math.ceil(maxY / yStep) * yStep;
  const px = (v) => L + (v / xMax) * (W - L - R);
  const py = (v) => H - B - (v / yMax) * (H - T - B);
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${L}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`);
  if (subtitle) out.push(`<text x="${L}" y="40" fill="#555555">${esc(subtitle)}</text>`);
  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    const y = py(v).toFixed(1);
    out.push(`<line x1="${L}" y1="${y}" x2="${W - R}" y2="${y}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${L - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${+v.toFixed(2)}</text>`);
  }
  for (let v = 0; v <= xMax + 1e-9; v += xStep) {
    const x = px(v).toFixed(1);
    out.push(`<line x1="${x}" y1="${T}" x2="${x}" y2="${H - B}" stroke="#f0f0f0"/>`);
    const label = v >= 1e6 ? `${+(v / 1e6).toFixed(2)} M` : v >= 1e3 ? `${+(v / 1e3).toFixed(1)} k` : String(v);
    out.push(`<text x="${x}" y="${H - B + 18}" text-anchor="middle">${label}</text>`);
  }
  out.push(`<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333333"/>`);
  out.push(`<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333333"/>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - B + 38}" text-anchor="middle">connections held</text>`);
  out.push(`<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">GiB above the baseline</text>`);
  for (const s of series) {
    const d = pts.map((p, i) => `${i ? 'L' : 'M'}${px(p.held).toFixed(1)} ${py((p.memory[s.key] ?? 0) / GiB).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    for (const p of pts.slice(1)) out.push(`<circle cx="${px(p.held).toFixed(1)}" cy="${py((p.memory[s.key] ?? 0) / GiB).toFixed(1)}" r="2.5" fill="${s.color}"/>`);
  }
  series.forEach((s, i) => {
    const x = L + (i % 2) * 330;
    const y = H - 34 + Math.floor(i / 2) * 18;
    out.push(`<line x1="${x}" y1="${y}" x2="${x + 24}" y2="${y}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    out.push(`<text x="${x + 30}" y="${y}" dominant-baseline="middle">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------- formatting

export function fmtBytes(b) {
  if (b == null || !Number.isFinite(b)) return 'n/a';
  const a = Math.abs(b);
  if (a >= GiB) return `${(b / GiB).toFixed(2)} GiB`;
  if (a >= MiB) return `${(b / MiB).toFixed(1)} MiB`;
  if (a >= KiB) return `${(b / KiB).toFixed(2)} KiB`;
  return `${Math.round(b)} B`;
}

export function fmtCount(n) {
  return n == null || !Number.isFinite(n) ? 'n/a' : Math.round(n).toLocaleString('en-US');
}

/** Results file: native-bench/results/ramp-<date>.json, then -2, -3... */
export function resultsPath(dir, date = new Date().toISOString().slice(0, 10)) {
  let p = path.join(dir, `ramp-${date}.json`);
  for (let i = 2; fs.existsSync(p); i++) p = path.join(dir, `ramp-${date}-${i}.json`);
  return p;
}

// ---------------------------------------------------------------- serve against echo

/** The figures of one ramp that the comparison sets side by side (from its result JSON). */
export function rampFigures(run) {
  const s = run.summary ?? summarise(run);
  const last = run.steps?.[run.steps.length - 1] ?? null;
  const pw = last?.perWorker ?? null;
  return {
    server: run.server?.kind ?? run.options?.server ?? 'echo',
    node: run.versions?.serverNode ?? null,
    distribution: run.server?.distribution ?? null,
    held: s.held,
    rssPerConnection: s.perConnection?.serverRss ?? null,
    heapPerConnection: s.perConnection?.heapUsed ?? null,
    handshakesPerSecond: s.handshakes?.overallPerSecond ?? null,
    medianStepHandshakesPerSecond: s.handshakes?.medianStepPerSecond ?? null,
    // the fullest worker against the average: 1 is an even spread
    spread: pw && last.serverConnections ? +(pw.max / (last.serverConnections / pw.workers)).toFixed(3) : null,
    stop: s.stop?.limit ?? null,
  };
}

/**
 * Serve against echo, per Node version: the median of each figure over the rounds and the two
 * ratios the comparison is about (serve / echo): RSS per idle connection (lower is better; the
 * goal is at most 1.15) and handshakes per second over the ramp (the goal is at least 0.9).
 * figures: rampFigures()s of every run.
 */
export function compareFigures(figures) {
  const byNode = new Map();
  for (const f of figures) {
    const k = f.node ?? '?';
    if (!byNode.has(k)) byNode.set(k, { echo: [], serve: [] });
    byNode.get(k)[f.server]?.push(f);
  }
  const out = [];
  for (const [node, { echo, serve }] of byNode) {
    const med = (runs, key) => median(runs.map((r) => r[key]));
    const side = (runs) => ({
      runs: runs.length,
      held: med(runs, 'held'),
      rssPerConnection: med(runs, 'rssPerConnection'),
      heapPerConnection: med(runs, 'heapPerConnection'),
      handshakesPerSecond: med(runs, 'handshakesPerSecond'),
      medianStepHandshakesPerSecond: med(runs, 'medianStepHandshakesPerSecond'),
      spread: med(runs, 'spread'),
    });
    const e = side(echo);
    const s = side(serve);
    const ratio = (a, b) => (a != null && b ? +(a / b).toFixed(3) : null);
    out.push({
      node,
      distribution: (echo[0] ?? serve[0])?.distribution ?? null,
      echo: e,
      serve: s,
      rssRatio: ratio(s.rssPerConnection, e.rssPerConnection),
      handshakeRatio: ratio(s.handshakesPerSecond, e.handshakesPerSecond),
    });
  }
  return out;
}
