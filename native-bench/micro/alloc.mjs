// Bytes allocated per parsed frame, murmur and ws, on the same inputs as frames.mjs.
//
//   node --expose-gc --single-threaded-gc --min-semi-space-size=16 --max-semi-space-size=16 \
//     native-bench/micro/alloc.mjs --group parse-small
//
// Method: warm the driver up (so the optimising compiler is done with it), then a minor gc(),
// read process.memoryUsage(), run a batch, read again. With a 16 MiB semi-space from the start
// (min = max) a batch that allocates under 6 MiB runs without a scavenge, so the heapUsed
// delta is everything it allocated, live or dead. A PerformanceObserver on
// 'gc' entries checks that no collection started inside a batch; such a batch is thrown away
// (and K shrinks if none is left). Batches of K and 2K runs alternate, 5 of each; bytes per
// run = (lowest 2K delta - lowest K delta) / K: stray allocations (a late code installation)
// only ever add, so the lowest delta is the cleanest, and the difference cancels what a batch
// costs once (reading the counters).
// --single-threaded-gc keeps a background sweeper from releasing earlier garbage while a
// batch runs, which would lower the delta. arrayBuffers (off-heap Buffer memory: pooled 8 KiB
// slabs and large buffers) is reported beside the heap bytes; it too only shrinks in a GC,
// so its delta is what the batch allocated off the heap.
import v8 from 'node:v8';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { PARSE_GROUPS, parseDrivers, verifyParse } from './cases.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i === -1 ? dflt : args[i + 1];
};
const group = opt('--group');
const warmMs = Number(opt('--warm-ms', 100));
const batchMs = Number(opt('--batch-ms', 10));
if (!PARSE_GROUPS[group]) {
  console.error(`usage: alloc.mjs --group ${Object.keys(PARSE_GROUPS).join('|')} [--warm-ms MS]`);
  process.exit(2);
}
if (typeof globalThis.gc !== 'function') {
  console.error('alloc.mjs: needs --expose-gc');
  process.exit(2);
}
const newSpace = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
if (newSpace.space_size < 16 * 1024 * 1024) {
  console.error('alloc.mjs: run with --min-semi-space-size=16 --max-semi-space-size=16 (the young generation must not fill up mid-batch)');
  process.exit(2);
}

/** Pairs of batches measured per driver. */
const ROUNDS = 5;

/**
 * Under this many bytes per batch the young generation (16 MiB semi-space) never fills. Not
 * larger: every scavenge hands fresh semi-space pages to the next batch, and on this VM
 * faulting in 64 MiB of them made each gc() cost ~25 ms.
 */
const BATCH_BYTES = 6 * 1024 * 1024;

const gcs = [];
const obs = new PerformanceObserver((list) => gcs.push(...list.getEntries()));
obs.observe({ entryTypes: ['gc'] });

/**
 * One batch of k runs: heap and arrayBuffers deltas, start and end time. A scavenge first
 * empties the young generation (a full GC would also work, at several times the cost).
 */
function batch(run, k) {
  gc({ type: 'minor' });
  const t0 = performance.now();
  const m0 = process.memoryUsage();
  for (let i = 0; i < k; i++) run();
  const m1 = process.memoryUsage();
  const t1 = performance.now();
  return { heap: m1.heapUsed - m0.heapUsed, ext: m1.arrayBuffers - m0.arrayBuffers, t0, t1 };
}

async function measureDriver(d) {
  // Warm up until the code is optimised, and learn the time per operation.
  const w0 = performance.now();
  let n = 0;
  while (performance.now() - w0 < warmMs || n < 50) {
    d.run();
    n++;
  }
  const perOpMs = (performance.now() - w0) / n;
  batch(d.run, 8); // the batch loop itself warms up too
  const probe = batch(d.run, 16);
  const perOp = Math.max(1, probe.heap / 16);
  // Bounded by memory (no scavenge: 2k runs stay under BATCH_BYTES) and by time (batchMs for k).
  let k = Math.max(4, Math.min(10000, Math.floor(BATCH_BYTES / 2 / perOp), Math.ceil(batchMs / perOpMs)));
  for (let attempt = 0; attempt < 4; attempt++) {
    // Batches of k and 2k runs, alternating (a minor GC before each; see batch()). Anything that allocates besides the driver (a
    // late code installation, an interrupt) only ever adds bytes, so the lowest delta of each
    // size is the cleanest; per run = (lowest 2k delta - lowest k delta) / k, which also
    // cancels what a batch costs once (reading the counters).
    // Two pairs first, discarded: the batch loop itself must be warm too.
    for (let r = 0; r < 2; r++) batch(d.run, k), batch(d.run, 2 * k);
    const pairs = [];
    for (let r = 0; r < ROUNDS; r++) pairs.push([batch(d.run, k), batch(d.run, 2 * k)]);
    await sleep(30); // gc entries are delivered asynchronously
    const dirty = (b) => gcs.some((g) => g.startTime >= b.t0 && g.startTime <= b.t1);
    const small = pairs.map((p) => p[0]).filter((b) => !dirty(b));
    const large = pairs.map((p) => p[1]).filter((b) => !dirty(b));
    if (small.length > 0 && large.length > 0) {
      const min = (list, key) => Math.min(...list.map((b) => b[key]));
      return {
        k,
        heap: (min(large, 'heap') - min(small, 'heap')) / k,
        ext: (min(large, 'ext') - min(small, 'ext')) / k,
        cleanBatches: small.length + large.length,
      };
    }
    k = Math.max(1, k >> 2);
  }
  return { k, heap: NaN, ext: NaN, cleanBatches: 0 };
}

for (const c of PARSE_GROUPS[group]()) {
  verifyParse(c, 'murmur');
  verifyParse(c, 'ws');
  for (const impl of ['copy', 'murmur', 'ws']) {
    const d = parseDrivers[impl](c);
    const r = await measureDriver(d);
    process.stdout.write(JSON.stringify({
      group, id: c.id, impl, frames: c.frames, k: r.k, cleanBatches: r.cleanBatches,
      heapPerOp: r.heap, extPerOp: r.ext, heapPerFrame: r.heap / c.frames, extPerFrame: r.ext / c.frames,
    }) + '\n');
  }
}
obs.disconnect();
