#!/usr/bin/env node
// What a connection holds on the JS heap, object by object: starts `murmur echo` with
// --heapsnapshot-signal, takes a heap snapshot, opens N idle connections with the load
// generator, takes another, and prints the difference grouped by constructor (self sizes),
// per connection. Needs `npm run build` (dist/) and the load generator (built on first use).
//
//   node native-bench/heap-diff.mjs [--connections 19000] [--top 20]
//   MURMUR_TRANSPORT=socket node native-bench/heap-diff.mjs
//
// Snapshots go to a temporary folder that is removed at the end.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLoadgen, LOADGEN } from './loadgen-build.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(HERE);
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const N = opt('--connections', 19000);
const TOP = opt('--top', 20);
if (!Number.isInteger(N) || N < 1 || N > 19000) throw new Error('--connections: 1..19000 (one server process)');
const entry = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
if (!fs.existsSync(entry)) throw new Error('dist/src/cli/main.js missing: run npm run build');
buildLoadgen((line) => console.error(line));
const loadgen = LOADGEN;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'murmur-heap-'));
const children = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Waits for a line matching re on a child's output, up to ms. */
function waitFor(stream, re, ms, what) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    stream.on('data', (d) => {
      buf += d;
      const m = re.exec(buf);
      if (m) {
        clearTimeout(t);
        resolve(m);
      }
    });
  });
}

const srv = spawn(process.execPath, ['--heapsnapshot-signal=SIGUSR1', entry, 'echo', '--port', '0', '--host', '127.0.0.1'], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
children.push(srv);
const port = Number((await waitFor(srv.stdout, /LISTENING (\d+)/, 10000, 'LISTENING'))[1]);
await sleep(1500);

/** Signals the server and waits until the new snapshot file stops growing. */
async function snapshot() {
  const before = new Set(fs.readdirSync(dir));
  srv.kill('SIGUSR1');
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    await sleep(300);
    const f = fs.readdirSync(dir).find((x) => !before.has(x) && x.endsWith('.heapsnapshot'));
    if (f === undefined) continue;
    const p = path.join(dir, f);
    let size = -1;
    for (;;) {
      await sleep(500);
      const s = fs.statSync(p).size;
      if (s === size && s > 0) return p;
      size = s;
    }
  }
  throw new Error('no heap snapshot within 120 s');
}

/** Self sizes and counts by node type and constructor name. */
function summarise(file) {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  const fields = j.snapshot.meta.node_fields;
  const types = j.snapshot.meta.node_types[0];
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const byName = new Map();
  for (let i = 0; i < j.nodes.length; i += fields.length) {
    const type = types[j.nodes[i + iType]];
    // objects and native objects by constructor; code, strings and the rest by type
    const key = type === 'object' || type === 'native' || type === 'hidden' || type === 'array' ? `${type} ${j.strings[j.nodes[i + iName]]}`.slice(0, 70) : type;
    const e = byName.get(key) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += j.nodes[i + iSize];
    byName.set(key, e);
  }
  return byName;
}

const a = await snapshot();
const lg = spawn(loadgen, ['--host', '127.0.0.1', '--port', String(port), '--scenario', 'hold', '-c', String(N), '--src-ips', String(Math.ceil(N / 20000) + 1), '--duration', '0', '--quiet', '--stdin-eof-stop'], { stdio: ['pipe', 'ignore', 'pipe'] });
children.push(lg);
const ready = await waitFor(lg.stderr, /READY connected=(\d+)/, 120_000, 'the load generator');
await sleep(2000);
const b = await snapshot();
lg.stdin.end('stop\n');
const A = summarise(a);
const B = summarise(b);
const rows = [];
for (const [k, v] of B) {
  const u = A.get(k) ?? { count: 0, bytes: 0 };
  if (v.bytes !== u.bytes) rows.push({ what: k, count: v.count - u.count, bytes: v.bytes - u.bytes });
}
rows.sort((x, y) => y.bytes - x.bytes);
const held = Number(ready[1]);
// "synthetic" and native entries are node's C++ objects as the snapshot reports them: not JS heap
const heap = rows.filter((r) => !r.what.startsWith('native ') && r.what !== 'synthetic').reduce((s, r) => s + r.bytes, 0);
console.log(`${held} connections held; JS heap objects added: ${(heap / held).toFixed(1)} B per connection`);
console.log(`${'what'.padEnd(72)}${'count'.padStart(9)}${'bytes'.padStart(12)}${'per conn'.padStart(10)}`);
for (const r of rows.slice(0, TOP)) {
  console.log(`${r.what.padEnd(72)}${String(r.count).padStart(9)}${String(r.bytes).padStart(12)}${(r.bytes / held).toFixed(1).padStart(10)}`);
}
srv.kill('SIGTERM');
process.exit(0);
