#!/usr/bin/env node
// Micro-benchmarks of murmur's protocol layer against ws 8 (frame parsing, unmasking, UTF-8,
// encoding, handshake) plus a C reference. Every group runs in a fresh `node` process, so one
// group's JIT state (inline caches, optimised code, heap shape) does not bleed into another.
// Usage and the meaning of every figure: native-bench/README.md, "Micro-benchmarks".
//   node native-bench/micro/run.mjs [--quick] [--json] [--runs R] [--time-ms MS] [--groups a,b]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BENCH = path.resolve(HERE, '..');
const ROOT = path.resolve(BENCH, '..');
const CREF_SRC = path.join(HERE, 'cref.c');
const CREF = path.join(BENCH, 'build', 'cref');

const PARSE_GROUPS = ['parse-small', 'parse-medium', 'parse-large', 'parse-many', 'parse-split', 'parse-fragmented'];
const FN_GROUPS = ['unmask', 'utf8', 'encode', 'handshake'];

const HELP = `usage: node native-bench/micro/run.mjs [options]

  --quick          a fast look: 1 run, short samples, quick C reference (~30 s)
  --runs R         timing runs; each runs every group in a fresh process (default 3; quick 1)
  --time-ms MS     mitata's minimum measuring time per benchmark (default 120; quick 60)
  --groups LIST    only these groups (${[...PARSE_GROUPS, ...FN_GROUPS].join(',')})
  --no-alloc       skip the allocation measurement
  --no-malloc-tuning  glibc's default trimming for the benchmark processes (noisier; see README)
  --json           also write native-bench/results/micro-<date>.json (-2, -3... on the same day)
  --out FILE       write the JSON here instead (implies --json)

Prints one markdown table (case | murmur | ws | ratio | alloc B/frame...) and the C-reference
table on stdout; progress on stderr.`;

function parseArgs(argv) {
  const o = { quick: false, runs: null, timeMs: null, groups: null, alloc: true, mallocTuning: true, json: false, out: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) die(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--runs') o.runs = Number(val());
    else if (a === '--time-ms') o.timeMs = Number(val());
    else if (a === '--groups') o.groups = val().split(',');
    else if (a === '--no-alloc') o.alloc = false;
    else if (a === '--no-malloc-tuning') o.mallocTuning = false;
    else if (a === '--json') o.json = true;
    else if (a === '--out') (o.out = val()), (o.json = true);
    else if (a === '--help' || a === '-h') {
      console.log(HELP);
      process.exit(0);
    } else die(`unknown option ${a} (see --help)`);
  }
  o.runs ??= o.quick ? 1 : 3;
  o.timeMs ??= o.quick ? 60 : 120;
  if (!(o.runs >= 1) || !(o.timeMs > 0)) die('--runs and --time-ms must be positive');
  const all = [...PARSE_GROUPS, ...FN_GROUPS];
  o.groups ??= all;
  for (const g of o.groups) if (!all.includes(g)) die(`unknown group ${g}`);
  return o;
}

function die(msg) {
  console.error(`micro/run.mjs: ${msg}`);
  process.exit(2);
}

const log = (msg) => process.stderr.write(`${msg}\n`);

// ---------------------------------------------------------------- setup

function ensureBuilt() {
  if (fs.existsSync(path.join(ROOT, 'dist/src/protocol/frame-parser.js'))) return;
  log('dist/ missing: npx tsc -p tsconfig.json');
  const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'inherit', timeout: 300_000 });
  if (r.status !== 0) die('the TypeScript build failed');
}

function buildCref() {
  const stale = !fs.existsSync(CREF) || fs.statSync(CREF).mtimeMs < fs.statSync(CREF_SRC).mtimeMs;
  if (!stale) return;
  fs.mkdirSync(path.dirname(CREF), { recursive: true });
  log(`building ${path.relative(ROOT, CREF)} (gcc -O2)`);
  const r = spawnSync('gcc', ['-O2', '-Wall', '-o', CREF, CREF_SRC], { stdio: 'inherit', timeout: 60_000 });
  if (r.status !== 0) die('gcc failed to build cref');
}

function cpuTimes() {
  const out = {};
  for (const line of fs.readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const v = m[2].trim().split(/\s+/).map(Number);
    out[m[1]] = { idle: v[3] + (v[4] || 0), total: v.reduce((a, b) => a + b, 0) };
  }
  return out;
}

/** Busy share of each CPU over `ms` while none of our benchmark processes runs: other people's load. */
function backgroundLoad(ms = 500) {
  const a = cpuTimes();
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  const b = cpuTimes();
  const busy = {};
  for (const k of Object.keys(b)) {
    const dt = b[k].total - (a[k]?.total ?? 0);
    busy[k] = dt > 0 ? 1 - (b[k].idle - a[k].idle) / dt : 0;
  }
  return busy;
}

/**
 * glibc settings for the benchmark processes: never give freed heap memory back to the kernel
 * and serve allocations up to 32 MiB from the heap, not from fresh mmaps. On this VM a page
 * fault costs ~10 us per 4 KiB page, and with glibc's defaults every large Buffer allocated
 * after a GC faulted its pages in again: the rows that allocate per message (fragmented,
 * spanning frames) came out 20 us or 230 us depending on the process. This keeps them steady;
 * the alloc columns still show what those rows allocate. --no-malloc-tuning turns it off.
 */
const MALLOC_ENV = { MALLOC_TRIM_THRESHOLD_: '4294967295', MALLOC_MMAP_THRESHOLD_: '33554432', MALLOC_TOP_PAD_: '67108864' };

/** Runs a child; returns its stdout JSON lines. Killed by PID after `timeoutMs` (spawnSync's timeout). */
function runJsonLines(cmd, args, timeoutMs) {
  const env = o.mallocTuning ? { ...process.env, ...MALLOC_ENV } : process.env;
  const r = spawnSync(cmd, args, { cwd: ROOT, env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' });
  if (r.error) die(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) die(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}\n${r.stderr}`);
  if (r.stderr.trim()) log(r.stderr.trim());
  return r.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}

function git(args) {
  const r = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 ? r.stdout.trim() : null;
}

// ---------------------------------------------------------------- formatting

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function fmtTime(ns) {
  if (!Number.isFinite(ns)) return 'n/a';
  if (ns < 1000) return `${ns.toFixed(ns < 10 ? 2 : ns < 100 ? 1 : 0)} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(ns < 1e4 ? 2 : 1)} µs`;
  return `${(ns / 1e6).toFixed(2)} ms`;
}

function fmtRate(bytesPerS) {
  if (!Number.isFinite(bytesPerS) || bytesPerS <= 0) return 'n/a';
  if (bytesPerS >= 1e9) return `${(bytesPerS / 1e9).toFixed(bytesPerS >= 1e10 ? 1 : 2)} GB/s`;
  return `${(bytesPerS / 1e6).toFixed(0)} MB/s`;
}

function fmtBytes(b) {
  if (!Number.isFinite(b)) return 'n/a';
  const r = Math.abs(b) < 0.5 ? 0 : b;
  if (Math.abs(r) < 1024) return `${Math.round(r)}`;
  if (Math.abs(r) < 1024 * 1024) return `${(r / 1024).toFixed(1)} KiB`;
  return `${(r / 1024 / 1024).toFixed(2)} MiB`;
}

/** Time, plus bytes/s when the operation carries at least 1 KiB of payload. */
function cell(ns, bytes) {
  if (!Number.isFinite(ns)) return 'n/a';
  if (ns <= 0) return `≤ 0 (below noise)`;
  return bytes >= 1024 ? `${fmtTime(ns)} · ${fmtRate((bytes / ns) * 1e9)}` : fmtTime(ns);
}

function fmtAlloc(a) {
  if (!a) return '–';
  if (!Number.isFinite(a.heapPerFrame)) return 'n/a';
  const heap = fmtBytes(a.heapPerFrame);
  return a.extPerFrame >= 1 ? `${heap} + ${fmtBytes(a.extPerFrame)} off-heap` : heap;
}

// ---------------------------------------------------------------- main

const o = parseArgs(process.argv.slice(2));
const started = Date.now();
ensureBuilt();
buildCref();

const meta = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
  cpuModel: os.cpus()[0]?.model ?? null,
  kernel: os.release(),
  murmurCommit: git(['rev-parse', '--short', 'HEAD']),
  // Others edit src/ while benchmarks run: record whether dist/ may not match the commit.
  srcDirty: (git(['status', '--porcelain', '--', 'src']) ?? '') !== '',
  distBuilt: new Date(fs.statSync(path.join(ROOT, 'dist/src/protocol/frame-parser.js')).mtimeMs).toISOString(),
};

const frames = path.join(HERE, 'frames.mjs');
const wsMeta = runJsonLines(process.execPath, [frames, '--meta'], 60_000)[0];
meta.ws = wsMeta;
const allocScript = path.join(HERE, 'alloc.mjs');
const timingGroups = o.groups;
const loads = [];
const runs = [];
/** The C reference once per run too, so it sees the same machine as the JS figures. */
const crefRuns = [];

for (let r = 0; r < o.runs; r++) {
  const load = backgroundLoad(o.quick ? 200 : 500);
  loads.push({ run: r + 1, busy: load });
  const busiest = Math.max(...Object.values(load));
  if (busiest > 0.15) log(`warning: before run ${r + 1} a CPU was ${(busiest * 100).toFixed(0)} % busy with other work: timings are suspect`);
  const lines = [];
  for (const g of timingGroups) {
    const t0 = Date.now();
    lines.push(...runJsonLines(process.execPath, ['--expose-gc', frames, '--group', g, '--time-ms', String(o.timeMs)], 300_000));
    log(`run ${r + 1}/${o.runs} ${g}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  runs.push(lines);
  crefRuns.push(runJsonLines(CREF, o.quick ? ['--quick'] : [], 60_000));
}

let bufferutil = [];
if (timingGroups.includes('unmask')) {
  bufferutil = runJsonLines(process.execPath, ['--expose-gc', frames, '--group', 'bufferutil', '--time-ms', String(o.timeMs)], 120_000);
}

const alloc = [];
if (o.alloc) {
  for (const g of timingGroups.filter((x) => PARSE_GROUPS.includes(x))) {
    const t0 = Date.now();
    alloc.push(...runJsonLines(process.execPath, [
      '--expose-gc', '--single-threaded-gc', '--min-semi-space-size=16', '--max-semi-space-size=16',
      allocScript, '--group', g, '--warm-ms', o.quick ? '50' : '100', '--batch-ms', o.quick ? '5' : '10',
    ], 300_000));
    log(`alloc ${g}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
}

// Per op and size: the median over runs.
const cref = crefRuns[0].map((first) => {
  const all = crefRuns.map((lines) => lines.find((x) => x.op === first.op && x.bytes === first.bytes));
  const ns = median(all.map((x) => x.ns_per_op));
  return { op: first.op, bytes: first.bytes, ns_per_op: ns, bytes_per_s: (first.bytes / ns) * 1e9, runs: all.map((x) => x.ns_per_op) };
});

// ---------------------------------------------------------------- aggregate

/** Per case: ids in first-seen order, with every run's figures. */
const cases = new Map();
for (const [ri, lines] of runs.entries()) {
  for (const l of lines) {
    let c = cases.get(l.id);
    if (!c) {
      c = { id: l.id, group: l.group, label: l.label, rival: l.rival ?? null, bytes: l.payloadBytes ?? l.bytes ?? 0, frames: l.frames ?? null, runs: [] };
      cases.set(l.id, c);
    }
    (c.runs[ri] ??= {})[l.impl] = l;
  }
}

const rows = [];
for (const c of cases.values()) {
  const isParse = PARSE_GROUPS.includes(c.group);
  // Every (run, round) pair: parse times net of the copy timed in the same round, and the
  // ratio ws/murmur of that round (the two were measured back to back). Figures are medians
  // over all pairs of all runs; with 2 rounds a per-run median would be a mean.
  const pairs = [];
  for (const r of c.runs.filter(Boolean)) {
    r.murmur.rounds.forEach((m, k) => {
      const cp = isParse ? r.copy.rounds[k] : 0;
      const w = r.ws.rounds[k];
      pairs.push({ murmur: m - cp, ws: w - cp, copy: cp, ratio: (w - cp) / (m - cp) });
    });
  }
  const a = (impl) => alloc.find((x) => x.id === c.id && x.impl === impl);
  rows.push({
    id: c.id,
    group: c.group,
    label: c.label,
    rival: c.rival,
    bytes: c.bytes,
    frames: c.frames,
    murmurNs: median(pairs.map((p) => p.murmur)),
    wsNs: median(pairs.map((p) => p.ws)),
    copyNs: isParse ? median(pairs.map((p) => p.copy)) : null,
    ratio: median(pairs.map((p) => p.ratio)),
    // Spread of the per-round ratios: a wide one means the row is not to be trusted.
    ratioRange: [Math.min(...pairs.map((p) => p.ratio)), Math.max(...pairs.map((p) => p.ratio))],
    rounds: pairs,
    murmurAlloc: a('murmur') ?? null,
    wsAlloc: a('ws') ?? null,
    copyAlloc: a('copy') ?? null,
  });
}

// ---------------------------------------------------------------- tables

const rivals = [];
const table = [
  '| case | murmur | ws | ratio | murmur alloc B/frame | ws alloc B/frame | input copy (subtracted) |',
  '|---|---|---|---|---|---|---|',
];
for (const r of rows) {
  let label = r.label;
  if (r.rival) {
    let k = rivals.indexOf(r.rival);
    if (k === -1) k = rivals.push(r.rival) - 1;
    label += ` [${k + 1}]`;
  }
  const isParse = r.copyNs !== null;
  const unstable = r.ratioRange[1] > 2 * r.ratioRange[0];
  const ratio = Number.isFinite(r.ratio) && r.ratio > 0 ? `${unstable ? '~' : ''}${r.ratio.toFixed(2)}` : 'n/a';
  table.push(`| ${label} | ${cell(r.murmurNs, r.bytes)} | ${cell(r.wsNs, r.bytes)} | ${ratio} | ` +
    `${isParse ? fmtAlloc(r.murmurAlloc) : '–'} | ${isParse ? fmtAlloc(r.wsAlloc) : '–'} | ${isParse ? fmtTime(r.copyNs) : '–'} |`);
}

const cOf = (op, n) => cref.find((x) => x.op === op && x.bytes === n);
const rowOf = (id) => rows.find((r) => r.id === id);
const cTable = [
  '| size | C unmask (64-bit words) | C memcpy | murmur unmaskInPlace | % of C unmask | ws unmask (JS) | % of C unmask | bufferutil (native addon) |',
  '|---|---|---|---|---|---|---|---|',
];
const pct = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${((a / b) * 100).toFixed(a / b < 0.1 ? 1 : 0)} %` : 'n/a');
for (const n of [2, 20, 125, 1024, 16384, 65536, 1048576]) {
  const cu = cOf('unmask', n);
  const cm = cOf('memcpy', n);
  const u = rowOf(`unmask-${n}`);
  const bu = bufferutil.find((x) => x.bytes === n);
  const rate = (ns) => (n / ns) * 1e9;
  const size = n >= 1048576 ? '1 MiB' : n >= 1024 ? `${n / 1024} KiB` : `${n} B`;
  cTable.push(`| ${size} | ${cu ? fmtRate(cu.bytes_per_s) : 'n/a'} | ${cm ? fmtRate(cm.bytes_per_s) : 'n/a'} | ` +
    `${u ? fmtRate(rate(u.murmurNs)) : 'n/a'} | ${u && cu ? pct(rate(u.murmurNs), cu.bytes_per_s) : 'n/a'} | ` +
    `${u ? fmtRate(rate(u.wsNs)) : 'n/a'} | ${u && cu ? pct(rate(u.wsNs), cu.bytes_per_s) : 'n/a'} | ${bu ? fmtRate(rate(bu.p50)) : 'n/a'} |`);
}
const big = rowOf('parse-binary-1048576');
const cu1 = cOf('unmask', 1048576);
const cm1 = cOf('memcpy', 1048576);
if (big && cu1) {
  const m = (big.bytes / big.murmurNs) * 1e9;
  const w = (big.bytes / big.wsNs) * 1e9;
  cTable.push(`| parser, binary 1 MiB frame (net of copy) | ${fmtRate(cu1.bytes_per_s)} | ${cm1 ? fmtRate(cm1.bytes_per_s) : 'n/a'} | ` +
    `${fmtRate(m)} (FrameParser) | ${pct(m, cu1.bytes_per_s)} | ${fmtRate(w)} (Receiver) | ${pct(w, cu1.bytes_per_s)} | – |`);
}

const busiest = Math.max(...loads.flatMap((l) => Object.values(l.busy)));
const notes = [
  `${o.runs} run(s), each group in a fresh node process; in each, ${o.timeMs} ms of mitata samples per benchmark in 2 rounds taken in turns with the rival. ` +
    `Times: median over all rounds of mitata's median. ratio = ws time / murmur time per round, median over all rounds: > 1 means murmur is faster. ` +
    `Rows marked ~ had per-round ratios more than 2x apart: noise, not a result.`,
  'Parse rows: time per operation (all chunks of the row) net of copying the input into fresh buffers (both parsers unmask in place); ' +
    'that copy is the last column. GB/s = 10^9 payload bytes per second.',
  'Alloc: JS heap bytes allocated per frame (a fragmented message counts each fragment), "+ off-heap" for Buffer memory outside the heap; ' +
    'measured in a separate process per group, batches without a scavenge (see README).',
  ...rivals.map((r, i) => `[${i + 1}] the ws column is ${r}.`),
  o.mallocTuning
    ? 'Benchmark processes ran with glibc trimming off (MALLOC_TRIM_THRESHOLD_ etc.): freed Buffer memory is reused instead of faulted in again (see README).'
    : 'Benchmark processes ran with glibc defaults (--no-malloc-tuning): rows that allocate large Buffers include page faults.',
  `ws ${wsMeta.wsVersion} is the root devDependency, loaded by path; its unmask here is ${wsMeta.wsUnmask === 'js' ? 'the JS byte loop (no bufferutil on that path)' : wsMeta.wsUnmask}. ` +
    'native-bench/servers/ws-server.mjs resolves native-bench/node_modules/ws (8.13) with bufferutil instead: see the C-reference table.',
  `Node ${meta.node}, ${meta.cpus} CPU (${meta.cpuModel ?? 'unknown'}), Linux ${meta.kernel}; murmur ${meta.murmurCommit ?? '?'}${meta.srcDirty ? ' with uncommitted src/ changes' : ''}, dist built ${meta.distBuilt}. ` +
    `Background load before the runs: busiest CPU ${(busiest * 100).toFixed(0)} %${busiest > 0.15 ? ' (a shared, busy machine: trust ratios over absolute times)' : ''}.`,
];

const out = [table.join('\n'), '', ...notes.map((n) => `- ${n}`), '', cTable.join('\n'), '',
  '- C: native-bench/micro/cref.c, gcc -O2, run after each timing run; median of 31 samples, then over runs. JS columns from the unmask rows above (aligned buffers, cache-warm).'].join('\n');
console.log(out);

if (o.json) {
  let file = o.out ? path.resolve(o.out) : null;
  if (!file) {
    const dir = path.join(BENCH, 'results');
    fs.mkdirSync(dir, { recursive: true });
    const date = new Date().toISOString().slice(0, 10);
    file = path.join(dir, `micro-${date}.json`);
    for (let i = 2; fs.existsSync(file); i++) file = path.join(dir, `micro-${date}-${i}.json`);
  }
  const record = { meta, options: o, loads, rows, cref, bufferutil, alloc, runs, markdown: out };
  fs.writeFileSync(file, JSON.stringify(record, null, 1) + '\n');
  log(`results: ${path.relative(ROOT, file)}`);
}
log(`total ${((Date.now() - started) / 1000).toFixed(0)} s`);
