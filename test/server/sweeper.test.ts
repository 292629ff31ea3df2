import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Sweeper } from '../../src/server/sweeper.js';
import type { SweepEntry } from '../../src/server/sweeper.js';

class Entry implements SweepEntry {
  sweepNext: SweepEntry | null = null;
  visits: number[] = [];
  constructor(private readonly stay: (now: number, e: Entry) => boolean = () => true) {}
  onSweep(now: number): boolean {
    this.visits.push(now);
    return this.stay(now, this);
  }
}

function sweeper(periodMs: number, tickMs: number, maxVisitsPerSecond = 1e9): Sweeper {
  return new Sweeper({ periodMs, tickMs, maxVisitsPerSecond, clock: () => 0 });
}

test('every entry is visited once per period, a slice per tick', () => {
  const s = sweeper(1000, 250);
  const es = Array.from({ length: 100 }, () => new Entry());
  for (const e of es) s.add(e);
  let now = 0;
  // one period: four ticks of a quarter each
  for (let i = 0; i < 4; i++) s.tick((now += 250));
  assert.ok(es.every((e) => e.visits.length === 1), 'one visit each after one period');
  assert.equal(es[0]!.visits, [250]);
  assert.equal(es[99]!.visits, [1000]);
  for (let i = 0; i < 40; i++) s.tick((now += 250));
  assert.ok(es.every((e) => e.visits.length === 11), `11 visits each after 11 periods: ${es.map((e) => e.visits.length)}`);
  // consecutive visits of one entry are one period apart
  const v = es[50]!.visits;
  for (let i = 1; i < v.length; i++) assert.is(v[i]! - v[i - 1]!, 1000);
});

test('an entry that returns false leaves the list: head, middle, tail and all', () => {
  const s = sweeper(100, 100);
  const leave = new Set<number>([0, 3, 4, 9]);
  const es = Array.from({ length: 10 }, (_, i) => new Entry(() => !leave.has(i)));
  for (const e of es) s.add(e);
  s.tick(100);
  assert.is(s.size, 6);
  const seen: SweepEntry[] = [];
  s.forEach((e) => seen.push(e));
  assert.equal(seen, es.filter((_, i) => !leave.has(i)));
  assert.ok(es.filter((_, i) => leave.has(i)).every((e) => e.sweepNext === null), 'a leaving entry keeps no link');
  // the tail left: an entry added now is still reached
  const late = new Entry();
  s.add(late);
  s.tick(200);
  assert.equal(late.visits, [200]);
  assert.equal(es[9]!.visits, [100]);
  for (let i = 0; i < 10; i++) leave.add(i);
  s.tick(300);
  assert.is(s.size, 1);
  s.tick(400);
  assert.equal(late.visits, [200, 300, 400]);
});

test('entries added during a visit go after the tail and are not lost, even when the visited entry leaves', () => {
  const s = sweeper(100, 100);
  const added: Entry[] = [];
  const spawner = new Entry(() => {
    if (added.length < 3) {
      const e = new Entry();
      added.push(e);
      s.add(e);
    }
    return false;
  });
  s.add(spawner);
  s.tick(100);
  // the spawner (also the tail) left after adding one: the list holds that one alone
  assert.is(added.length, 1);
  assert.is(s.size, 1);
  s.tick(200);
  s.tick(300);
  assert.equal(added[0]!.visits, [200, 300]);
  assert.equal(spawner.visits, [100]);
  const seen: SweepEntry[] = [];
  s.forEach((e) => seen.push(e));
  assert.equal(seen, [added[0]]);
});

test('after a stall one tick makes one whole pass, not more', () => {
  const s = sweeper(1000, 250);
  const es = Array.from({ length: 10 }, () => new Entry());
  for (const e of es) s.add(e);
  s.tick(60_000);
  assert.ok(es.every((e) => e.visits.length === 1));
});

test('the visit rate cap stretches the period instead of spending more time', () => {
  // 1,000 entries, 1 s period, but at most 400 visits a second: a pass takes 2.5 s
  const s = sweeper(1000, 250, 400);
  const es = Array.from({ length: 1000 }, () => new Entry());
  for (const e of es) s.add(e);
  let now = 0;
  let visits = 0;
  for (let i = 0; i < 8; i++) s.tick((now += 250));
  for (const e of es) visits += e.visits.length;
  assert.is(visits, 800);
  assert.is(es[799]!.visits.length, 1);
  assert.is(es[800]!.visits.length, 0);
});

test('nothing to do on an empty list, and size counts what is on it', () => {
  const s = sweeper(100, 100);
  s.tick(100);
  assert.is(s.size, 0);
  const e = new Entry((now) => now < 300);
  s.add(e);
  assert.is(s.size, 1);
  for (let t = 200; t <= 500; t += 100) s.tick(t);
  assert.equal(e.visits, [200, 300]);
  assert.is(s.size, 0);
});

test('forFirst: from the oldest entry on, until n accepted, without copying; entries added meanwhile go after the tail', () => {
  const s = sweeper(1000, 250);
  const es = Array.from({ length: 10 }, () => new Entry());
  for (const e of es) s.add(e);
  const seen: SweepEntry[] = [];
  // the callback skips every other entry (a connection not open) and adds one (a new connection)
  const late = new Entry();
  const n = s.forFirst(3, (e) => {
    seen.push(e);
    if (e === es[0]) s.add(late);
    return es.indexOf(e as Entry) % 2 === 0;
  });
  assert.is(n, 3);
  assert.equal(seen, es.slice(0, 5), 'walked 0-4: three accepted (0, 2, 4)');
  assert.is(s.forFirst(100, () => true), 11, 'the late entry is at the end');
  assert.is(s.forFirst(0, () => true), 0);
});

test.run();
