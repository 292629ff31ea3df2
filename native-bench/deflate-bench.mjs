#!/usr/bin/env node
// permessage-deflate, murmur against ws and uWebSockets.js with compression on (ws's defaults;
// uWS's shared compressor, every send and publish asking for compression), each server in a
// fresh process started with --expose-gc; every memory figure is read after a forced full GC
// (the STATS line of BENCH-CONTRACT; /proc when a server does not answer it):
//   - RSS per idle connection, with deflate negotiated and without (two server processes, in
//     alternating order from run to run), and what the RSS delta is made of: V8's young
//     generation (new_space, a per-process cost that grows with allocation), the rest of the JS
//     heap, external memory (ArrayBuffers and other off-heap memory V8 is told about), and the
//     remainder (malloc'd native memory, glibc's free lists, code);
//   - the same after every connection has sent and received one 1 KiB JSON message
//     (compressed when negotiated);
//   - server CPU per echo of a 1 KiB JSON message, plain and compressed (utime + stime from
//     /proc), over 50 of the connections;
//   - deliveries per second of a broadcast to every connection (all negotiated deflate): the
//     servers' `pub M S` (M binary messages of S = 1,024 bytes) from one of them.
// Every frame a client reads is counted, and those with RSV1 set (compressed): a rival that
// does not really compress shows it. The clients are raw sockets in this process (one upgrade,
// prebuilt masked frames), so what they cost is not in the server's figures.
//
// Runs: each run measures every server, in an order rotated from run to run (servers alternate
// on a machine whose load changes); the tables give the median of the runs and the range.
//   node native-bench/deflate-bench.mjs [--servers murmur,ws,uws] [--connections 10000] [--runs 3]
//     [--echoes 10000] [--broadcast 20] [--phases memory,echo,broadcast] [--settle S]
//     [--node-flag=--max-semi-space-size=1 ...] [--env MALLOC_ARENA_MAX=1 ...] [--murmur DIR]
// --node-flag and --env apply to every server process (to see what a V8 or glibc setting
// changes); --malloc-probe (needs gdb): after the figures with one message, glibc's malloc_stats()
// and malloc_trim(0) are called inside the server, to tell memory malloc holds free from memory in
// use, and the RSS is read again; --one-batch K sends the one message from K connections at a
// time; --halves sends it from the first half of the connections, reads the figures, then from
// the second half, and prints what the second half's message added per connection; --murmur runs the murmur of another checkout (its dist/) beside this one's as
// `murmur@DIR`.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { deflateRawSync, constants } from 'node:zlib';
import { frame, openMany } from './raw-ws-client.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    servers: { type: 'string', default: 'murmur,ws,uws' },
    connections: { type: 'string', default: '10000' },
    runs: { type: 'string', default: '3' },
    echoes: { type: 'string', default: '10000' },
    broadcast: { type: 'string', default: '20' },
    phases: { type: 'string', default: 'memory,echo,broadcast' },
    'node-flag': { type: 'string', multiple: true, default: [] },
    env: { type: 'string', multiple: true, default: [] },
    murmur: { type: 'string' },
    'one-batch': { type: 'string', default: '0' },
    'malloc-probe': { type: 'boolean', default: false },
    halves: { type: 'boolean', default: false },
    settle: { type: 'string', default: '0.5' },
  },
});
const SERVERS = args.servers.split(',');
if (args.murmur !== undefined) SERVERS.push(`murmur@${path.resolve(args.murmur)}`);
const N = Number(args.connections);
const RUNS = Number(args.runs);
const ECHOES = Number(args.echoes);
const BCAST = Number(args.broadcast);
/** The one message per connection goes from this many connections at a time (0: all at once). */
const ONE_BATCH = Number(args['one-batch']);
const PHASES = new Set(args.phases.split(','));
const EXTRA_ENV = Object.fromEntries(args.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
if (!(N >= 1 && N <= 19000)) throw new Error('--connections: 1..19000 (the clients are in this process)');

const murmurArgs = (root) => (port, mode) => [path.join(root, 'dist/src/cli/main.js'), 'echo', '--port', String(port), '--host', '127.0.0.1', '--ping-interval', '0', '--idle-timeout', '0', '--mode', mode];
function entry(name) {
  if (name.startsWith('murmur@')) return murmurArgs(name.slice(7));
  const entries = {
    murmur: murmurArgs(ROOT),
    ws: (port, mode) => [path.join(ROOT, 'native-bench/servers/ws-server.mjs'), '--port', String(port), '--host', '127.0.0.1', '--mode', mode],
    uws: (port, mode) => [path.join(ROOT, 'native-bench/servers/uws-server.mjs'), '--port', String(port), '--host', '127.0.0.1', '--mode', mode],
  };
  if (!(name in entries)) throw new Error(`unknown server ${name}`);
  return entries[name];
}

/** A 1 KiB JSON chat message (the text padded to make the whole exactly 1,024 bytes). */
const MSG = (() => {
  const m = { type: 'message', topic: 'room:general', position: { epoch: 'k3j2', offset: 41234 }, data: { name: 'alice', text: '', ts: 1765000000000 } };
  const words = 'the deploy went fine and the dashboards look green; ping me if you see anything odd in the metrics '.repeat(20);
  m.data.text = words.slice(0, 1024 - JSON.stringify(m).length);
  return Buffer.from(JSON.stringify(m));
})();
const Z = (() => {
  const out = deflateRawSync(MSG, { finishFlush: constants.Z_SYNC_FLUSH });
  return out.subarray(0, out.length - 4);
})();
const PLAIN_FRAME = frame(MSG, false);
const Z_FRAME = frame(Z, true);
const echoFrame = (c) => (c.deflate ? Z_FRAME : PLAIN_FRAME);

const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

function start(name, mode) {
  return new Promise((resolve, reject) => {
    const [script, ...rest] = entry(name)(0, mode);
    const child = spawn(process.execPath, ['--expose-gc', ...args['node-flag'], script, ...rest], {
      cwd: ROOT,
      env: { ...process.env, ...EXTRA_ENV, MURMUR_BENCH_DEFLATE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /LISTENING (\d+)/.exec(out);
      if (m) resolve({ child, port: Number(m[1]), lines: () => out });
    });
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      children.delete(child);
      reject(new Error(`${name} exited ${code}: ${out}`));
    });
    setTimeout(() => reject(new Error(`${name}: no LISTENING in 15 s: ${out}`)), 15_000).unref();
  });
}

function stop(s) {
  s.child.kill('SIGKILL');
  children.delete(s.child);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** --settle S: seconds of quiet before the idle and after-one readings (0.5 s by default; murmur's quiet-time GC acts after ~6 s). */
const SETTLE_MS = Math.round(Number(args.settle) * 1000);

/** The server's memory after a forced GC: RSS, JS heap spaces, external. */
async function stats(s) {
  const before = (s.lines().match(/STATS /g) ?? []).length;
  // Signals sent in the first moments of a loaded machine were seen to go unanswered: ask again;
  // a server that never answers (uWS under load) is read from /proc instead (RSS, no GC first).
  for (let i = 0; i < 750; i++) {
    if (i % 150 === 0) s.child.kill('SIGUSR2');
    const all = s.lines().split('\n').filter((l) => l.startsWith('STATS '));
    if (all.length > before) {
      const st = JSON.parse(all[before].slice(6));
      const spaces = st.spaces ?? {};
      const young = spaces.new_space ?? NaN;
      const heap = Object.values(spaces).reduce((a, b) => a + b, 0);
      return { rss: st.rss, heapUsed: st.heapUsed, young, heapRest: heap - young, external: st.external, brk: brkHeap(s.child.pid), gc: st.gc !== false };
    }
    await sleep(20);
  }
  if (s.child.exitCode !== null || s.child.signalCode !== null) throw new Error(`server exited (${s.child.exitCode ?? s.child.signalCode}): ${s.lines().slice(-600)}`);
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${s.child.pid}/status`, 'utf8'))[1]) * 1024;
  return { rss, heapUsed: NaN, young: NaN, heapRest: NaN, external: NaN, brk: brkHeap(s.child.pid), gc: false };
}

/** Resident bytes of the process's [heap] mapping: glibc's main malloc arena (the main thread's mallocs below the mmap threshold). */
function brkHeap(pid) {
  const m = /\[heap\]\n(?:.*\n)*?Rss:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/smaps`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * Calls malloc_stats() and malloc_trim(0) in the server through gdb: malloc's main arena (bytes
 * it holds, bytes in use) per connection, and the RSS per connection once free memory is trimmed.
 */
async function mallocProbe(s, st0) {
  const from = s.lines().length;
  const r = spawnSync('gdb', ['-p', String(s.child.pid), '-batch', '-ex', 'call (void)malloc_stats()', '-ex', 'call (int)malloc_trim(0)'], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`gdb: ${r.stderr}`);
  await sleep(300); // malloc_stats' lines, written to the server's stderr, reach the pipe
  const text = s.lines().slice(from);
  const m = /Arena 0:\s*system bytes\s*=\s*(\d+)\s*in use bytes\s*=\s*(\d+)/.exec(text);
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${s.child.pid}/status`, 'utf8'))[1]) * 1024;
  return { arenaHeld: m ? Number(m[1]) / N : NaN, arenaInUse: m ? Number(m[2]) / N : NaN, trimmedRss: (rss - st0.rss) / N };
}

const sum = (clients, key) => clients.reduce((n, c) => n + c[key], 0);
/** Per connection: (b - a) / N for every field of a stats reading. */
const perConn = (a, b, n = N) => Object.fromEntries(['rss', 'heapUsed', 'young', 'heapRest', 'external', 'brk'].map((k) => [k, (b[k] - a[k]) / n]));

/** One server process, clients offering deflate or not: idle and after-one memory, then CPU per echo. */
async function memoryAndEcho(name, offer) {
  const s = await start(name, 'echo');
  const out = {};
  try {
    const st0 = await stats(s);
    // Half, then the other half: the second half's cost per connection leaves out what the
    // first connections pay once for the process (code compiled, tables, a young generation
    // grown by the handshakes).
    const half = Math.floor(N / 2);
    const clients = await openMany(s.port, half, offer);
    await sleep(500);
    const stHalf = await stats(s);
    clients.push(...(await openMany(s.port, N - half, offer)));
    out.negotiated = clients.filter((c) => c.deflate).length;
    await sleep(SETTLE_MS);
    const st1 = await stats(s);
    out.idle = perConn(st0, st1);
    out.marginal = perConn(stHalf, st1, N - half);
    out.gc = st0.gc;
    if (PHASES.has('memory')) {
      const f0 = sum(clients, 'frames');
      const z0 = sum(clients, 'compressed');
      const batch = ONE_BATCH > 0 ? ONE_BATCH : clients.length;
      const oneEach = async (list) => {
        for (let i = 0; i < list.length; i += batch) await Promise.all(list.slice(i, i + batch).map((c) => c.echo(echoFrame(c))));
      };
      if (args.halves) {
        // The first half's message, a reading (forced GC), then the second half's: what the
        // second half adds is a connection's own cost of one message, the process's one-time
        // growth (young generation, malloc's high-water mark of garbage) having been paid.
        await oneEach(clients.slice(0, half));
        await sleep(500);
        const stMid = await stats(s);
        await oneEach(clients.slice(half));
        await sleep(500);
        out.oneMarginal = perConn(stMid, await stats(s), N - half);
      } else await oneEach(clients);
      out.oneCompressed = `${sum(clients, 'compressed') - z0}/${sum(clients, 'frames') - f0}`;
      await sleep(SETTLE_MS);
      out.afterOne = perConn(st0, await stats(s));
      if (args['malloc-probe']) Object.assign(out, await mallocProbe(s, st0));
    }
    if (PHASES.has('echo')) {
      // 50 connections, round trips in sequence on each.
      const users = clients.slice(0, 50);
      const per = Math.ceil(ECHOES / users.length);
      const cpu0 = cpuSeconds(s.child.pid);
      const t0 = process.hrtime.bigint();
      await Promise.all(
        users.map(async (c) => {
          for (let i = 0; i < per; i++) await c.echo(echoFrame(c));
        }),
      );
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      out.cpuUs = ((cpuSeconds(s.child.pid) - cpu0) / (per * users.length)) * 1e6;
      out.echoPerS = (per * users.length) / wall;
    }
    for (const c of clients) c.sock.destroy();
  } finally {
    stop(s);
  }
  return out;
}

/** Every connection (all offer deflate) in one topic; `pub BCAST 1024` from one of them; deliveries/s until all are in. */
async function broadcast(name) {
  const s = await start(name, 'broadcast');
  try {
    const clients = await openMany(s.port, N, true);
    await sleep(200);
    const cpu0 = cpuSeconds(s.child.pid);
    const t0 = process.hrtime.bigint();
    clients[0].sock.write(frame(Buffer.from(`pub ${BCAST} 1024`), false));
    const want = N * BCAST;
    for (let i = 0; i < 12000 && sum(clients, 'frames') < want; i++) await sleep(10);
    const got = sum(clients, 'frames');
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    for (const c of clients) c.sock.destroy();
    return { perS: got / wall, cpuUs: ((cpuSeconds(s.child.pid) - cpu0) / Math.max(1, got)) * 1e6, complete: got === want, compressed: `${sum(clients, 'compressed')}/${got}` };
  } finally {
    stop(s);
  }
}

const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const B = (bytes) => (Number.isFinite(bytes) ? `${Math.round(bytes)} B` : '—');
/** "median (min..max)" of a field over the runs, formatted by fmt. */
const mr = (xs, fmt) => {
  const v = xs.filter((x) => Number.isFinite(x));
  if (v.length === 0) return '—';
  return v.length === 1 ? fmt(v[0]) : `${fmt(median(v))} (${fmt(Math.min(...v))}..${fmt(Math.max(...v))})`;
};
const pct = (x) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;

const runs = Object.fromEntries(SERVERS.map((n) => [n, []]));
const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
console.log(`permessage-deflate: ${N} connections, ${RUNS} runs, ${ECHOES} echoes of a ${MSG.length}-byte JSON message (${Z.length} bytes compressed); node ${process.version}; node flags [${args['node-flag'].join(' ')}], env [${args.env.join(' ')}]`);
for (let r = 0; r < RUNS; r++) {
  const order = SERVERS.map((_, i) => SERVERS[(i + r) % SERVERS.length]);
  for (const name of order) {
    const row = {};
    try {
      const offers = r % 2 === 0 ? [false, true] : [true, false];
      if (PHASES.has('memory') || PHASES.has('echo')) for (const offer of offers) row[offer ? 'deflate' : 'plain'] = await memoryAndEcho(name, offer);
      if (PHASES.has('broadcast')) row.bcast = await broadcast(name);
      runs[name].push(row);
      console.error(`run ${r + 1} ${name} (load ${load()}): ${JSON.stringify(row)}`);
    } catch (err) {
      console.error(`run ${r + 1} ${name}: failed: ${err.stack}`);
    }
  }
}

const col = (name, f) => runs[name].map(f);
if (PHASES.has('memory')) {
  console.log(`\nRSS per connection (after a forced GC), median of ${RUNS} (range); deflate: ${N} clients offering \`permessage-deflate; client_max_window_bits\`\n`);
  console.log('| server | negotiated | idle, without | idle, with | with / without (per-run ratios) | JS heap idle, without / with | after one message, without | after one message, with | compressed replies |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const name of SERVERS) {
    if (runs[name].length === 0) continue;
    const ratios = col(name, (r) => r.deflate.idle.rss / r.plain.idle.rss - 1);
    console.log(
      `| ${name} | ${runs[name][0].deflate.negotiated}/${N} | ${mr(col(name, (r) => r.plain.idle.rss), B)} | ${mr(col(name, (r) => r.deflate.idle.rss), B)} | ${pct(median(ratios))} (${ratios.map(pct).join(', ')}) | ${mr(col(name, (r) => r.plain.idle.heapUsed), B)} / ${mr(col(name, (r) => r.deflate.idle.heapUsed), B)} | ${mr(col(name, (r) => r.plain.afterOne.rss), B)} | ${mr(col(name, (r) => r.deflate.afterOne.rss), B)} | ${runs[name][0].deflate.oneCompressed} |`,
    );
  }
  console.log(`\nThe second half: what each of the last ${N - Math.floor(N / 2)} idle connections added (medians, range)\n`);
  console.log('| server | RSS, without | RSS, with | with / without (per-run ratios) | JS heap, without / with |');
  console.log('|---|---|---|---|---|');
  for (const name of SERVERS) {
    if (runs[name].length === 0) continue;
    const ratios = col(name, (r) => r.deflate.marginal.rss / r.plain.marginal.rss - 1);
    console.log(`| ${name} | ${mr(col(name, (r) => r.plain.marginal.rss), B)} | ${mr(col(name, (r) => r.deflate.marginal.rss), B)} | ${pct(median(ratios))} (${ratios.map(pct).join(', ')}) | ${mr(col(name, (r) => r.plain.marginal.heapUsed), B)} / ${mr(col(name, (r) => r.deflate.marginal.heapUsed), B)} |`);
  }
  console.log('\nWhere the RSS per connection goes (medians; young: V8 new_space; heap: the other V8 spaces; external: off-heap memory V8 knows; rest: RSS minus those; of which malloc: the growth of the main malloc arena, the [heap] mapping)\n');
  console.log('| server | state | RSS | young | heap | external | rest | of which malloc |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const name of SERVERS) {
    for (const [key, label] of [['plain', 'without'], ['deflate', 'with']]) {
      for (const [phase, plabel] of [['idle', 'idle'], ['afterOne', 'after one message']]) {
        if (runs[name].length === 0 || runs[name][0][key][phase] === undefined) continue;
        const m = (f) => median(col(name, (r) => r[key][phase][f]));
        const rest = median(col(name, (r) => r[key][phase].rss - r[key][phase].young - r[key][phase].heapRest - r[key][phase].external));
        console.log(`| ${name} | ${plabel}, ${label} deflate | ${B(m('rss'))} | ${B(m('young'))} | ${B(m('heapRest'))} | ${B(m('external'))} | ${B(rest)} | ${B(m('brk'))} |`);
      }
    }
  }
}
if (args.halves) {
  console.log(`\nWhat one message added to each of the last ${N - Math.floor(N / 2)} connections, after the first half's (medians, range)\n`);
  console.log('| server | RSS, without deflate | with | young, without / with | JS heap, without / with | malloc arena, without / with |');
  console.log('|---|---|---|---|---|---|');
  for (const name of SERVERS) {
    if (runs[name].length === 0) continue;
    const f = (key, k) => mr(col(name, (r) => r[key].oneMarginal[k]), B);
    console.log(`| ${name} | ${f('plain', 'rss')} | ${f('deflate', 'rss')} | ${f('plain', 'young')} / ${f('deflate', 'young')} | ${f('plain', 'heapUsed')} / ${f('deflate', 'heapUsed')} | ${f('plain', 'brk')} / ${f('deflate', 'brk')} |`);
  }
}
if (args['malloc-probe']) {
  console.log('\nmalloc after one message (medians, per connection): main arena held / in use, and RSS after malloc_trim(0)\n');
  console.log('| server | state | arena held | arena in use | RSS after trim |');
  console.log('|---|---|---|---|---|');
  for (const name of SERVERS) {
    for (const [key, label] of [['plain', 'without'], ['deflate', 'with']]) {
      if (runs[name].length === 0) continue;
      const m = (f) => median(col(name, (r) => r[key][f]));
      console.log(`| ${name} | after one message, ${label} deflate | ${B(m('arenaHeld'))} | ${B(m('arenaInUse'))} | ${B(m('trimmedRss'))} |`);
    }
  }
}
if (PHASES.has('echo')) {
  console.log(`\nEcho of the 1 KiB JSON message, ${ECHOES} round trips over 50 connections, median of ${RUNS} (range)\n`);
  console.log('| server | server CPU per echo, plain | compressed | echoes/s, plain | compressed |');
  console.log('|---|---|---|---|---|');
  for (const name of SERVERS) {
    if (runs[name].length === 0) continue;
    const us = (x) => `${x.toFixed(1)} µs`;
    const k = (x) => `${(x / 1000).toFixed(1)} k`;
    console.log(`| ${name} | ${mr(col(name, (r) => r.plain.cpuUs), us)} | ${mr(col(name, (r) => r.deflate.cpuUs), us)} | ${mr(col(name, (r) => r.plain.echoPerS), k)} | ${mr(col(name, (r) => r.deflate.echoPerS), k)} |`);
  }
}
if (PHASES.has('broadcast')) {
  console.log(`\nCompressed broadcast: ${N} subscribers (all negotiated deflate), \`pub ${BCAST} 1024\`, median of ${RUNS} (range)\n`);
  console.log('| server | deliveries/s | server CPU per delivery | compressed frames received (last run) |');
  console.log('|---|---|---|---|');
  for (const name of SERVERS) {
    if (runs[name].length === 0) continue;
    const done = runs[name].every((r) => r.bcast.complete) ? '' : ' (a run incomplete)';
    console.log(`| ${name} | ${mr(col(name, (r) => r.bcast.perS), (x) => `${(x / 1000).toFixed(1)} k`)}${done} | ${mr(col(name, (r) => r.bcast.cpuUs), (x) => `${x.toFixed(2)} µs`)} | ${runs[name].at(-1).bcast.compressed} |`);
  }
}
