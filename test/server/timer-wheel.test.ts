import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TimerWheel } from '../../src/server/timer-wheel.js';
import type { WheelEntry } from '../../src/server/timer-wheel.js';

class Entry implements WheelEntry {
  wheelNext: WheelEntry | null = null;
  wheelPrev: WheelEntry | null = null;
  wheelDue = -1;
  fired: number[] = [];
  constructor(private readonly again: (now: number) => number = () => -1) {}
  onWheel(now: number): number {
    this.fired.push(now);
    return this.again(now);
  }
}

test('fires an entry once its due time has passed, not before', () => {
  let now = 0;
  const w = new TimerWheel(100, 8, () => now);
  const e = new Entry();
  w.schedule(e, 350);
  w.tick((now = 300));
  assert.equal(e.fired, []);
  w.tick((now = 400));
  assert.equal(e.fired, [400]);
  assert.is(w.size, 0);
});

test('due times beyond one turn of the wheel wait for their round', () => {
  let now = 0;
  const w = new TimerWheel(100, 4, () => now); // one turn = 400 ms
  const e = new Entry();
  w.schedule(e, 1000);
  for (now = 100; now < 1000; now += 100) w.tick(now);
  assert.equal(e.fired, []);
  w.tick((now = 1000));
  assert.equal(e.fired, [1000]);
});

test('cancel unlinks from the middle, head and tail of a slot', () => {
  let now = 0;
  const w = new TimerWheel(100, 4, () => now);
  const a = new Entry();
  const b = new Entry();
  const c = new Entry();
  for (const e of [a, b, c]) w.schedule(e, 150);
  w.cancel(b);
  w.cancel(c);
  assert.is(w.size, 1);
  w.tick((now = 200));
  assert.equal(a.fired, [200]);
  assert.equal(b.fired, []);
  assert.equal(c.fired, []);
});

test('an entry returning a next due time is rescheduled (heartbeat)', () => {
  let now = 0;
  const w = new TimerWheel(100, 8, () => now);
  const e = new Entry((n) => (n < 1000 ? n + 300 : -1));
  w.schedule(e, 300);
  for (now = 100; now <= 1500; now += 100) w.tick(now);
  assert.equal(e.fired, [300, 600, 900, 1200]);
});

test('a due time in the past fires on the next tick, never in the slot being processed', () => {
  let now = 1000;
  const w = new TimerWheel(100, 8, () => now);
  let count = 0;
  const e = new Entry(() => (++count < 3 ? 0 : -1)); // always "already due"
  w.schedule(e, 0);
  w.tick((now = 1100));
  assert.is(count, 1);
  w.tick((now = 1200));
  assert.is(count, 2);
});

test('a stalled clock catches up in one turn and fires everything due', () => {
  let now = 0;
  const w = new TimerWheel(100, 8, () => now);
  const es = Array.from({ length: 50 }, (_, i) => new Entry());
  es.forEach((e, i) => w.schedule(e, 100 + i * 37));
  w.tick((now = 100_000));
  assert.ok(es.every((e) => e.fired.length === 1));
  assert.is(w.size, 0);
});

test('forEach visits every scheduled entry', () => {
  let now = 0;
  const w = new TimerWheel(100, 8, () => now);
  const es = Array.from({ length: 20 }, () => new Entry());
  es.forEach((e, i) => w.schedule(e, i * 250));
  const seen = new Set<WheelEntry>();
  w.forEach((e) => seen.add(e));
  assert.is(seen.size, 20);
});

test.run();
