import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pushPullInterval, remainingSuspicionTime, retransmitLimit, suspicionTimeout, seededRandom, shuffle, pickRandom, insertAll } from '../../src/cluster/gossip/math.js';
import { Suspicion } from '../../src/cluster/gossip/suspicion.js';
import { Awareness } from '../../src/cluster/gossip/awareness.js';
import { resolveConfig, DEFAULT_LAN_CONFIG, GossipConfigError } from '../../src/cluster/gossip/gossip-config.js';

// Pure timing math, as table tests (memberlist util_test.go / suspicion_test.go).

test('suspicionTimeout scales with log10 of the cluster size, never below one period multiple', () => {
  const rows: [number, number][] = [
    [0, 4000],
    [1, 4000],
    [5, 4000],
    [10, 4000],
    [50, 6795],
    [100, 8000],
    [1000, 12000],
    [10000, 16000],
  ];
  for (const [n, want] of rows) assert.is(suspicionTimeout(4, n, 1000), want, `n=${n}`);
});

test('retransmitLimit is mult * ceil(log10(n + 1))', () => {
  const rows: [number, number][] = [[0, 0], [1, 3], [9, 3], [10, 6], [99, 6], [100, 9], [1000, 12], [10000, 15]];
  for (const [n, want] of rows) assert.is(retransmitLimit(3, n), want, `n=${n}`);
});

test('pushPullInterval grows one step per doubling past 32 nodes', () => {
  const rows: [number, number][] = [[1, 30], [32, 30], [33, 60], [64, 60], [65, 90], [128, 90], [129, 120], [1000, 180], [10000, 300]];
  for (const [n, want] of rows) assert.is(pushPullInterval(30, n), want, `n=${n}`);
});

test('remainingSuspicionTime falls from max toward min as confirmations arrive', () => {
  // n, k, elapsed, min, max, want (ms): max - log(n+1)/log(k+1) * (max - min), minus elapsed.
  const rows: [number, number, number, number, number, number][] = [
    [0, 3, 0, 2000, 30000, 30000],
    [1, 3, 2000, 2000, 30000, 14000],
    [2, 3, 3000, 2000, 30000, 4810],
    [3, 3, 4000, 2000, 30000, -2000],
    [4, 3, 5000, 2000, 30000, -3000],
    [5, 3, 10000, 2000, 30000, -8000],
  ];
  for (const [n, k, elapsed, min, max, want] of rows) assert.is(remainingSuspicionTime(n, k, elapsed, min, max), want, `n=${n}`);
});

test('a Suspicion counts each confirming member once and never the accuser', () => {
  const s = new Suspicion('a', 3, 2000, 30000, 1000);
  assert.is(s.deadline, 31000);
  assert.not.ok(s.confirm('a'), 'the accuser is not a confirmation');
  assert.ok(s.confirm('b'));
  assert.not.ok(s.confirm('b'), 'duplicate');
  assert.is(s.deadline, 1000 + 16000);
  assert.ok(s.confirm('c'));
  assert.ok(s.confirm('d'));
  assert.is(s.deadline, 1000 + 2000);
  assert.not.ok(s.confirm('e'), 'k reached: the timeout cannot shrink further');
});

test('a Suspicion with k < 1 starts at the minimum', () => {
  assert.is(new Suspicion('a', 0, 2000, 30000, 0).deadline, 2000);
});

test('Awareness is clamped to [0, max - 1] and scales timeouts by score + 1', () => {
  const a = new Awareness(8);
  assert.is(a.applyDelta(-1), 0);
  assert.is(a.scale(100), 100);
  assert.is(a.applyDelta(3), 3);
  assert.is(a.scale(100), 400);
  assert.is(a.applyDelta(100), 7);
  assert.is(a.scale(100), 800);
  const off = new Awareness(1);
  assert.is(off.applyDelta(5), 0, 'max multiplier 1 turns local health off');
});

test('seeded shuffles and picks are deterministic and picks are distinct', () => {
  const a = [1, 2, 3, 4, 5, 6, 7, 8];
  const b = [...a];
  shuffle(a, seededRandom(9));
  shuffle(b, seededRandom(9));
  assert.equal(a, b);
  assert.equal([...a].sort(), [1, 2, 3, 4, 5, 6, 7, 8]);
  const picks = pickRandom(a, 3, seededRandom(1), (x) => x % 2 === 0);
  assert.is(picks.length, 3);
  assert.is(new Set(picks).size, 3);
  assert.ok(picks.every((x) => x % 2 === 0));
  assert.equal(pickRandom([1, 3], 2, seededRandom(1), (x) => x === 3), [3], 'a small list is scanned to the end');
});

test('resolveConfig fills LAN defaults and refuses inconsistent timings', () => {
  assert.is(resolveConfig().probeIntervalMs, DEFAULT_LAN_CONFIG.probeIntervalMs);
  assert.throws(() => resolveConfig({ probeTimeoutMs: 1000, probeIntervalMs: 1000 }), (e: unknown) => e instanceof GossipConfigError && e.code === 'GOSSIP_ERR_CONFIG');
  assert.throws(() => resolveConfig({ maxPacketBytes: 100 }), (e: unknown) => e instanceof GossipConfigError);
  assert.throws(() => resolveConfig({ gossipIntervalMs: 0 }), (e: unknown) => e instanceof GossipConfigError);
});

test('insertAll gives the list one-by-one splices would give, and refuses a position out of range', () => {
  const rnd = seededRandom(7);
  for (let round = 0; round < 500; round++) {
    const list = Array.from({ length: Math.floor(rnd() * 20) }, (_, i) => `l${i}`);
    const items = Array.from({ length: Math.floor(rnd() * 20) }, (_, i) => `i${i}`);
    const positions: number[] = [];
    const slow = list.slice();
    for (const item of items) {
      const p = Math.floor(rnd() * (slow.length + 1));
      positions.push(p);
      slow.splice(p, 0, item);
    }
    assert.equal(insertAll(list, items, positions), slow);
  }
  assert.throws(() => insertAll(['a'], ['b'], [2]), RangeError);
  assert.throws(() => insertAll([], ['b'], [-1]), RangeError);
});

test.run();
