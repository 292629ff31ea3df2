// The shedding policy with numbers: the rebalancing view (margin, hysteresis, the shared
// view's totals, newcomers, draining and overloaded members), the overload state, the rate
// budget, the load summary on the wire; then a simulated cluster behind a least-connections
// balancer (stale views, churn) that must converge without oscillating.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { OverloadState, ShedBudget, rebalanceView } from '../../src/app/shed-policy.js';
import type { PeerLoad, ShedSettings } from '../../src/app/shed-policy.js';
import { loadFromWire, loadToWire } from '../../src/app/load.js';
import type { LoadSample, LoadSummary } from '../../src/app/load.js';
import { encodeNodeMeta, loadOfMeta } from '../../src/app/cluster.js';
import { DEFAULT_APP_CONFIG } from '../../src/app/config.js';
import { shedSettings } from '../../src/app/shed.js';

const S: ShedSettings = shedSettings({ ...DEFAULT_APP_CONFIG });
const T0 = 100_000;

function load(connections: number, extra: Partial<LoadSummary> = {}): LoadSummary {
  return { connections, lagMs: 1, cpuPercent: 10, rssMiB: 80, memoryLimitMiB: 8000, overloaded: false, draining: false, ...extra };
}

function peer(id: string, connections: number, extra: Partial<LoadSummary> = {}, since = 0): PeerLoad {
  return { id, load: load(connections, extra), since };
}

test('three nodes of 1,000 and a newcomer: each sheds down to the mean, and the sheds add up to what the newcomer lacks', () => {
  const all = [1000, 1000, 1000, 0];
  let shed = 0;
  for (let i = 0; i < 3; i++) {
    const peers = all.map((c, j) => peer(`n${j}`, c)).filter((_, j) => j !== i);
    const v = rebalanceView(all[i]!, peers, S, false, T0);
    assert.is(v.mean, 750);
    assert.is(v.nodes, 4);
    assert.is(v.excess, 250);
    shed += v.excess;
  }
  assert.is(shed, 750, 'the newcomer lacks 750');
  // the newcomer itself sheds nothing
  assert.is(rebalanceView(0, [peer('a', 1000), peer('b', 1000), peer('c', 1000)], S, false, T0).excess, 0);
});

test('hysteresis: a node starts only above the margin, and once shedding goes on down to the mean', () => {
  const peers = [peer('b', 700), peer('c', 700), peer('d', 700)];
  // mean of 820 + 3 x 700 = 730; 10% above is 803, but 820 - 730 = 90 ≥ 73: starts
  assert.is(rebalanceView(820, peers, S, false, T0).excess, 90);
  // 790: 790 - 722.5 = 67.5 < 72.25, within the margin: does not start
  assert.is(rebalanceView(790, peers, S, false, T0).excess, 0);
  // ... but a node already shedding continues to the mean
  assert.is(rebalanceView(790, peers, S, true, T0).excess, 67);
  // and stops at it
  assert.is(rebalanceView(700, peers, S, true, T0).excess, 0);
});

test('small excesses are noise: below rebalanceMinExcess nothing moves, whatever the ratio', () => {
  assert.is(rebalanceView(30, [peer('b', 10), peer('c', 10)], S, false, T0).excess, 0); // 30 vs mean 16.7: 80% over, 13 connections
  assert.is(rebalanceView(60, [peer('b', 10), peer('c', 10)], S, false, T0).excess, 33);
});

test('a newcomer counts only after the join delay (the balancer has not let it in before)', () => {
  const peers = [peer('b', 1000), peer('c', 1000), peer('d', 0, {}, T0 - 1000)];
  assert.is(rebalanceView(1000, peers, S, false, T0).excess, 0);
  assert.is(rebalanceView(1000, peers, S, false, T0 - 1000 + S.joinDelayMs).excess, 250);
});

test('a member without a load summary blocks rebalancing; with nobody else taking traffic there is nothing to do', () => {
  const v = rebalanceView(1000, [peer('b', 0), { id: 'old', load: null, since: 0 }], S, false, T0);
  assert.is(v.excess, 0);
  assert.match(v.blocked, /old gossips no load/);
  assert.is(rebalanceView(1000, [], S, false, T0).excess, 0);
  assert.is(rebalanceView(1000, [peer('b', 0, { overloaded: true })], S, false, T0).excess, 0);
});

test("a draining member's connections count in the total (they are all coming), an overloaded member is left out", () => {
  // b drains 600: a and c will share them: mean (900 + 600 + 300) / 2 = 900, a is at it
  assert.is(rebalanceView(900, [peer('b', 600, { draining: true }), peer('c', 300)], S, false, T0).excess, 0);
  // an overloaded member neither counts nor receives: a and c alone, mean 600
  const v = rebalanceView(900, [peer('b', 5000, { overloaded: true }), peer('c', 300)], S, false, T0);
  assert.is(v.mean, 600);
  assert.is(v.excess, 300);
});

test("a suspect member (it may be dead, its clients on their way) counts like a draining one: its connections in the total, not the node", () => {
  // b was killed: until it is declared dead, a and c must not shed toward its stale count
  assert.is(rebalanceView(300, [{ ...peer('b', 200), suspect: true }, peer('c', 300)], S, false, T0).excess, 0);
  assert.is(rebalanceView(300, [peer('b', 200), peer('c', 300)], S, false, T0).excess, 33, 'alive, it would pull the mean down');
});

test('ShedBudget: over any interval T a node sheds at most rate x connections x (T + 1 s)', () => {
  const b = new ShedBudget(0);
  let shed = 0;
  const times: number[] = [];
  for (let t = 0; t <= 60_000; t += 250 + Math.floor(Math.random() * 125)) {
    const n = b.take(t, 1000, 0.01, 1_000_000);
    for (let i = 0; i < n; i++) times.push(t);
    shed += n;
  }
  assert.ok(shed >= 580 && shed <= 610, `60 s at 10/s: ${shed}`);
  for (let i = 0; i < times.length; i++) {
    let j = i;
    while (j < times.length && times[j]! - times[i]! < 1000) j++;
    assert.ok(j - i <= 20, `${j - i} sheds within 1 s of ${times[i]} ms`);
  }
  // a long pause between two steps (a blocked event loop) saves one second of tokens, not ten
  assert.is(new ShedBudget(0).take(10_000, 1000, 0.01, 1_000_000), 10);
  // a node of a few connections still sheds one a second, never more than it wants
  const small = new ShedBudget(0);
  assert.is(small.take(1000, 10, 0.01, 5), 1);
  assert.is(small.take(1100, 10, 0.01, 5), 0);
  assert.is(new ShedBudget(0).take(5000, 1000, 0.01, 3), 3);
});

function sample(lagMs: number, extra: Partial<LoadSample> = {}): LoadSample {
  return { lagMs, cpuPercent: 50, rssBytes: 100e6, heapUsedBytes: 50e6, heapLimitBytes: 4e9, ...extra };
}

test('OverloadState: two slow windows running make a node overloaded, one does not; three good ones end it', () => {
  const s = { ...S, lagMs: 200 };
  const o = new OverloadState();
  assert.is(o.update(sample(900), 8e9, s), false, 'one slow window (a GC pause) is not overload');
  assert.is(o.update(sample(10), 8e9, s), false);
  assert.is(o.update(sample(300), 8e9, s), false);
  assert.is(o.update(sample(300), 8e9, s), true);
  assert.ok(o.overloaded && o.hot);
  assert.match(o.why, /event-loop delay p99 300 ms > 200 ms/);
  assert.is(o.update(sample(100), 8e9, s), false);
  assert.ok(o.overloaded && !o.hot, 'still overloaded, not shedding');
  assert.is(o.update(sample(100), 8e9, s), false);
  assert.is(o.update(sample(300), 8e9, s), false, 'a slow window starts the count again');
  for (let i = 0; i < 2; i++) assert.is(o.update(sample(50), 8e9, s), false);
  assert.is(o.update(sample(50), 8e9, s), true);
  assert.not.ok(o.overloaded);
});

test('OverloadState: memory over its share of the limit (RSS, or V8 heap) is overload at once; 0 turns a threshold off', () => {
  const o = new OverloadState();
  assert.is(o.update(sample(0, { rssBytes: 7.3e9 }), 8e9, S), true);
  assert.match(o.why, /memory: rss/);
  const h = new OverloadState();
  assert.is(h.update(sample(0, { heapUsedBytes: 3.7e9 }), 8e9, S), true);
  const off = new OverloadState();
  for (let i = 0; i < 5; i++) off.update(sample(10_000, { rssBytes: 8e9 }), 8e9, { ...S, lagMs: 0, memoryFraction: 0 });
  assert.not.ok(off.overloaded);
});

test('the load summary on the wire: round trip, and anything malformed reads as none', () => {
  const l = load(1234, { lagMs: 17, overloaded: true });
  assert.equal(loadFromWire(JSON.parse(JSON.stringify(loadToWire(l)))), l);
  for (const bad of [null, 1, 'x', [], {}, { ...loadToWire(l), c: -1 }, { ...loadToWire(l), c: 1.5 }, { ...loadToWire(l), lag: 1e12 }, { ...loadToWire(l), o: '1' }]) {
    assert.is(loadFromWire(bad), null, JSON.stringify(bad));
  }
  const meta = encodeNodeMeta('127.0.0.1:8080', 1, l);
  assert.ok(meta.length < 200, `meta of ${meta.length} bytes`);
  assert.equal(loadOfMeta(meta), l);
  assert.is(loadOfMeta(encodeNodeMeta('127.0.0.1:8080', 1)), null);
  assert.is(loadOfMeta(Buffer.from('{"load":{"c":1e400}}')), null);
  assert.is(loadOfMeta(Buffer.from('not json')), null);
  assert.is(loadOfMeta(new Uint8Array(0)), null);
});

/**
 * A cluster behind a least-connections balancer, one step per 250 ms: every node sees the
 * others' counts as they were `staleSteps` ago (gossip), sheds what the policy and its budget
 * allow, and shed clients come back after up to 0.5 s to the node with the fewest connections.
 * `churn` clients a second leave at random and arrive through the balancer.
 */
function simulate(counts: number[], seconds: number, churn: number, staleSteps = 8, joinedAt: number[] = counts.map(() => -1e9)) {
  const n = counts.length;
  const history: number[][] = [];
  const budgets = counts.map(() => new ShedBudget(0));
  const shedding = counts.map(() => false);
  const inFlight: Array<{ at: number }> = [];
  let shed = 0;
  let maxPerSecond = 0;
  const perSecond: number[] = [];
  const arrive = () => {
    let best = 0;
    for (let i = 1; i < n; i++) if (counts[i]! < counts[best]!) best = i;
    counts[best]!++;
  };
  for (let step = 0; step < seconds * 4; step++) {
    const now = step * 250;
    history.push([...counts]);
    const seen = history[Math.max(0, history.length - 1 - staleSteps)]!;
    let shedNow = 0;
    for (let i = 0; i < n; i++) {
      const peers = seen.map((c, j) => ({ id: `n${j}`, load: load(c), since: joinedAt[j]! })).filter((_, j) => j !== i && joinedAt[j]! <= now);
      if (joinedAt[i]! > now) continue;
      const v = rebalanceView(counts[i]!, peers, S, shedding[i]!, now);
      shedding[i] = v.excess > 0;
      const k = budgets[i]!.take(now, counts[i]!, S.rate, v.excess);
      counts[i]! -= k;
      shedNow += k;
      for (let j = 0; j < k; j++) inFlight.push({ at: now + Math.random() * 500 });
    }
    shed += shedNow;
    const sec = Math.floor(now / 1000);
    perSecond[sec] = (perSecond[sec] ?? 0) + shedNow;
    maxPerSecond = Math.max(maxPerSecond, perSecond[sec]!);
    for (let j = inFlight.length - 1; j >= 0; j--) {
      if (inFlight[j]!.at <= now) {
        inFlight.splice(j, 1);
        arrive();
      }
    }
    for (let c = 0; c < churn / 4; c++) {
      const total = counts.reduce((a, b) => a + b, 0);
      let r = Math.random() * total;
      let i = 0;
      while (r >= counts[i]! && i < n - 1) r -= counts[i++]!;
      counts[i]!--;
      arrive();
    }
  }
  return { counts, shed, maxPerSecond };
}

test('simulated: 3 nodes of 1,000 and a 4th added converge to 25% +/- 5% within 60 s, at most 1% of the connections a second', () => {
  const r = simulate([1000, 1000, 1000, 0], 60, 5);
  const total = r.counts.reduce((a, b) => a + b, 0);
  for (const c of r.counts) assert.ok(Math.abs(c / total - 0.25) <= 0.05, `shares ${r.counts.join(', ')}`);
  assert.ok(r.shed <= 800, `${r.shed} sheds for a deficit of 750`);
  // three nodes of 1,000 at 1%/s, each with one second of tokens at most
  assert.ok(r.maxPerSecond <= 60, `${r.maxPerSecond} sheds in one second`);
});

test('simulated: balanced nodes under random churn for 5 minutes shed (almost) nothing', () => {
  const r = simulate([750, 750, 750, 750], 300, 20);
  assert.ok(r.shed <= 30, `${r.shed} sheds in 5 minutes of churn`);
});

test.run();
