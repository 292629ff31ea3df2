// Heap snapshots of a child process started with --heapsnapshot-signal=SIGUSR1 (its cwd is
// where they land), and their difference grouped by constructor, per connection. Shared by
// heap-diff.mjs (murmur echo / serve, idle) and serve-users.mjs (serve users with tokens).
import fs from 'node:fs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Signals `child` and waits until the new snapshot file in `dir` stops growing; its path. */
export async function snapshot(child, dir) {
  const before = new Set(fs.readdirSync(dir));
  child.kill('SIGUSR1');
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    await sleep(300);
    const f = fs.readdirSync(dir).find((x) => !before.has(x) && x.endsWith('.heapsnapshot'));
    if (f === undefined) continue;
    const p = `${dir}/${f}`;
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
export function summarise(file) {
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

/** Prints what snapshot `b` holds beyond snapshot `a`, per connection of `held`, the `top` largest rows. */
export function printDiff(a, b, held, top) {
  const A = summarise(a);
  const B = summarise(b);
  const rows = [];
  for (const [k, v] of B) {
    const u = A.get(k) ?? { count: 0, bytes: 0 };
    if (v.bytes !== u.bytes) rows.push({ what: k, count: v.count - u.count, bytes: v.bytes - u.bytes });
  }
  rows.sort((x, y) => y.bytes - x.bytes);
  // "synthetic" and native entries are node's C++ objects as the snapshot reports them: not JS heap
  const heap = rows.filter((r) => !r.what.startsWith('native ') && r.what !== 'synthetic').reduce((s, r) => s + r.bytes, 0);
  console.log(`${held} connections held; JS heap objects added: ${(heap / held).toFixed(1)} B per connection`);
  console.log(`${'what'.padEnd(72)}${'count'.padStart(9)}${'bytes'.padStart(12)}${'per conn'.padStart(10)}`);
  for (const r of rows.slice(0, top)) {
    console.log(`${r.what.padEnd(72)}${String(r.count).padStart(9)}${String(r.bytes).padStart(12)}${(r.bytes / held).toFixed(1).padStart(10)}`);
  }
}
