// Timing of one group of micro-benchmarks with mitata, murmur and ws side by side on the same
// inputs. run.mjs starts one process per group (so the JIT state of one group does not carry
// into another) and reads the JSON lines this prints on stdout.
//
//   node --expose-gc native-bench/micro/frames.mjs --group parse-small [--time-ms 150] [--rounds 2]
//   node native-bench/micro/frames.mjs --list | --meta
//
// Every figure is per operation, in nanoseconds: per round, mitata's median (p50) over its
// samples; reported, the median over rounds (and each round's p50, for per-round ratios).
// Nothing here asserts a time.
import { measure } from 'mitata';
import { PARSE_GROUPS, FN_GROUPS, parseDrivers, verifyParse, verifyFn, verifyUnmask, bufferutilUnmaskCases, WS_VERSION, WS_UNMASK_KIND, HAS_BUFFERUTIL } from './cases.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i === -1 ? dflt : args[i + 1];
};

if (args.includes('--meta')) {
  console.log(JSON.stringify({ wsVersion: WS_VERSION, wsUnmask: WS_UNMASK_KIND, bufferutil: HAS_BUFFERUTIL }));
  process.exit(0);
}
if (args.includes('--list')) {
  console.log([...Object.keys(PARSE_GROUPS), ...Object.keys(FN_GROUPS), 'bufferutil'].join('\n'));
  process.exit(0);
}

const group = opt('--group');
const timeMs = Number(opt('--time-ms', 500));
if (!group) {
  console.error('usage: frames.mjs --group NAME [--time-ms MS] | --list');
  process.exit(2);
}
if (typeof globalThis.gc !== 'function') console.error('frames.mjs: run with --expose-gc (mitata collects garbage after each warm-up)');

const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

/** Calls fn for about ns nanoseconds; returns nanoseconds per call. */
function loopFor(fn, ns) {
  let n = 0;
  const t0 = process.hrtime.bigint();
  let el = 0;
  do {
    fn();
    n++;
    el = Number(process.hrtime.bigint() - t0);
  } while (el < ns);
  return el / n;
}

/**
 * Warms fn up until its time per call has settled: rounds of ~5 ms, until the last four agree
 * within 12 % (at least 40 ms, at most warmMaxNs). Tiering up is slow on a busy machine: a
 * 1 KiB encode took ~90 ms to go from 20 us to 0.6 us per call. And a case that follows a
 * smaller one in the same process often deoptimises code the smaller one optimised (a loop
 * that never ran had no type feedback). Without this the first round times baseline code.
 * Returns the settled nanoseconds per call.
 */
function warm(fn, warmMaxNs) {
  const t0 = process.hrtime.bigint();
  const rounds = [];
  for (;;) {
    rounds.push(loopFor(fn, 5e6));
    const el = Number(process.hrtime.bigint() - t0);
    if (rounds.length >= 4 && el >= 40e6) {
      const last = rounds.slice(-4);
      if (Math.max(...last) <= 1.12 * Math.min(...last)) return Math.min(...last);
    }
    if (el >= warmMaxNs) return Math.min(...rounds.slice(-4));
  }
}

/**
 * Before the first case of a process: every function of the group for 20 ms (mixed traffic,
 * as a server sees it), then a discarded mitata measurement of the first case. The first
 * measurements of a fresh process were bimodal (a 10-byte header write at 60 ns in a quarter
 * of the samples and 250 ns in the rest) where the same case measured later was not.
 */
async function prewarm(pairs) {
  if (args.includes('--no-prewarm')) return;
  for (const fns of pairs) for (const fn of fns) loopFor(fn, 20e6);
  for (const fn of pairs[0]) await measure(fn, { min_cpu_time: (timeMs / 2) * 1e6, gc: false });
}

/**
 * Rounds per benchmark: murmur, ws (and the copy baseline) take turns, each round timing each
 * once. Not more by default: every mitata measure() call costs ~70 ms here on top of its
 * sampling time (it allocates a fresh 8 MB sample array, which this VM faults in slowly).
 */
const ROUNDS = Number(opt('--rounds', 2));

const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

/**
 * Times the functions of one case against each other with mitata.
 *
 * First each gets a full GC and a warm-up. The GC comes first because optimised code holds weak
 * references to objects it specialised on (the verification run's handler, an earlier driver):
 * when they die V8 throws that code away, and it should be re-optimised during the warm-up,
 * not during the measurement. Then ROUNDS rounds, in which each function is measured by mitata
 * for timeMs / ROUNDS, in turns (the order alternates between rounds). On a shared machine the
 * speed changes in phases of a few hundred ms (another tenant on the sibling CPU); taking turns
 * puts murmur and ws in the same phases, and run.mjs takes the ratio round by round.
 * Batches are sized to ~200 us per sample so fast and slow operations get similar sample counts.
 */
async function timeCase(fns) {
  const names = Object.keys(fns);
  const batch = {};
  for (const name of names) {
    globalThis.gc?.();
    const per = warm(fns[name], Math.max(100e6, timeMs * 1.5e6));
    batch[name] = Math.max(4, Math.min(4096, 4 * Math.round(200e3 / per / 4)));
  }
  const rounds = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? names : [...names].reverse();
    for (const name of order) {
      // gc: false: no forced collection per round (one ran before the warm-up); collections
      // that happen while sampling are part of what allocating costs.
      const st = await measure(fns[name], { min_cpu_time: (timeMs / ROUNDS) * 1e6, batch_samples: batch[name], min_samples: 12, gc: false });
      rounds[name].push({ p50: st.p50, p25: st.p25, p75: st.p75, samples: st.samples.length });
    }
  }
  const out = {};
  for (const name of names) {
    const rs = rounds[name];
    out[name] = {
      p50: median(rs.map((x) => x.p50)),
      p25: median(rs.map((x) => x.p25)),
      p75: median(rs.map((x) => x.p75)),
      rounds: rs.map((x) => x.p50),
      samples: rs.reduce((a, x) => a + x.samples, 0),
      batch: batch[name],
    };
  }
  return out;
}

if (PARSE_GROUPS[group]) {
  const cases = PARSE_GROUPS[group]();
  for (const c of cases) {
    verifyParse(c, 'murmur');
    verifyParse(c, 'ws');
  }
  await prewarm(cases.map((c) => [parseDrivers.murmur(c).run, parseDrivers.ws(c).run]));
  for (const [i, c] of cases.entries()) {
    // Alternate who goes first between cases too.
    const order = i % 2 === 0 ? ['copy', 'murmur', 'ws'] : ['copy', 'ws', 'murmur'];
    const drivers = Object.fromEntries(order.map((impl) => [impl, parseDrivers[impl](c)]));
    const t = await timeCase(Object.fromEntries(order.map((impl) => [impl, drivers[impl].run])));
    for (const impl of order) {
      const st = drivers[impl].state;
      if (st && (st.error || st.messages === 0)) throw new Error(`${impl} ${c.id}: ${st.error?.message ?? 'no messages'}`);
      emit({ group, id: c.id, label: c.label, impl, payloadBytes: c.payloadBytes, frames: c.frames, chunks: c.chunks.length, ...t[impl] });
    }
  }
} else if (FN_GROUPS[group]) {
  if (group === 'unmask') verifyUnmask();
  const cases = FN_GROUPS[group]();
  for (const c of cases) verifyFn(c);
  await prewarm(cases.map((c) => [c.murmur, c.ws]));
  for (const [i, c] of cases.entries()) {
    const order = i % 2 === 0 ? ['murmur', 'ws'] : ['ws', 'murmur'];
    const t = await timeCase(Object.fromEntries(order.map((impl) => [impl, c[impl]])));
    for (const impl of order) emit({ group, id: c.id, label: c.label, impl, rival: c.rival, bytes: c.bytes, ...t[impl] });
  }
} else if (group === 'bufferutil') {
  for (const c of bufferutilUnmaskCases()) {
    const t = await timeCase({ bufferutil: c.run });
    emit({ group, id: c.id, impl: 'bufferutil', bytes: c.bytes, ...t.bufferutil });
  }
} else {
  console.error(`frames.mjs: unknown group ${group} (see --list)`);
  process.exit(2);
}
