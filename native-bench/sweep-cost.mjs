#!/usr/bin/env node
// What the deadline sweep costs per visit: a Sweeper over N entries shaped like a connection's
// deadline check (state bits, a timestamp, the ping and idle compares), driven by a fake clock
// through ten periods. Entries are allocated back to back, so real connections (interleaved with
// their handles on the heap) miss the cache more often. Needs `npm run build`.
//
//   node native-bench/sweep-cost.mjs [N ...]      (default: 20000 1000000)
import { Sweeper } from '../dist/src/server/sweeper.js';

class Entry {
  constructor() {
    this.sweepNext = null;
    this.flags = 1 << 16; // "open"
    this.mark = 0;
  }
  onSweep(now) {
    const since = now - this.mark;
    if (((this.flags >>> 16) & 3) === 1) {
      if (since >= 75_000) return false;
      if (since >= 30_000 && (this.flags & 1) === 0) this.flags |= 1;
    }
    return true;
  }
}

const sizes = process.argv.slice(2).map(Number);
for (const n of sizes.length > 0 ? sizes : [20_000, 1_000_000]) {
  const s = new Sweeper({ periodMs: 1000, tickMs: 250, maxVisitsPerSecond: Number.MAX_SAFE_INTEGER, clock: () => 0 });
  for (let i = 0; i < n; i++) s.add(new Entry());
  let now = 0;
  for (let i = 0; i < 8; i++) s.tick((now += 250)); // warm-up: two periods
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 40; i++) s.tick((now += 250)); // ten periods
  const ns = Number(process.hrtime.bigint() - t0);
  console.log(`${n} entries: ${(ns / (n * 10)).toFixed(1)} ns per visit, ${(ns / 10 / 1e6).toFixed(2)} ms of CPU per second (1 s period)`);
}
