// Cluster presence over the gossip simulator (the same SwimNode the UDP runtime drives,
// virtual time, seeded loss): 3 nodes x 5,000 entries with churn on a lossy network,
// partition and heal, restarts with a new epoch, a crash and a graceful leave. Every bound is
// computed from the configured timings and asserted in virtual time.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FAST_LOCAL_CONFIG, DEFAULT_LAN_CONFIG, type GossipConfig } from '../../src/cluster/gossip/gossip-config.js';
import { suspicionTimeout } from '../../src/cluster/gossip/math.js';
import { seededRandom } from '../../src/cluster/gossip/math.js';
import type { ClusterPresence } from '../../src/cluster/presence/store.js';
import type { PresenceChange } from '../../src/cluster/presence/types.js';
import { SimPresence, askOnline, entry, topicsOf, union, view } from './presence-helpers.js';

const CONFIG = { ...DEFAULT_LAN_CONFIG, ...FAST_LOCAL_CONFIG } as GossipConfig;
const P = CONFIG.probeIntervalMs;
const G = CONFIG.gossipIntervalMs;

/** Each store's view rebuilt from its own change events: what a watcher would have seen. */
function trackEvents(p: ClusterPresence): Set<string> {
  const s = new Set<string>();
  p.onChange((c: PresenceChange) => {
    if (!('topic' in c)) return;
    const k = `${c.topic} ${c.entry.conn}`;
    if (c.kind === 'leave') s.delete(k);
    else s.add(k);
  });
  return s;
}

function keysOf(p: ClusterPresence, topics: readonly string[]): string[] {
  const out: string[] = [];
  for (const t of topics) for (const e of p.list(t)) out.push(`${t} ${e.conn}`);
  return out.sort();
}

function converged(stores: readonly ClusterPresence[]): boolean {
  const topics = topicsOf(stores);
  const want = union(stores);
  return stores.every((p) => view(p, topics).join('\n') === want.join('\n'));
}

/** Builds n nodes joined through n0 with converged membership. */
function cluster(n: number, seed: number, loss = 0): SimPresence {
  const sim = new SimPresence({ seed, loss, encryption: false, keepEvents: false, config: CONFIG });
  for (let i = 0; i < n; i++) sim.add(`n${i}`, 1000 + i);
  for (let i = 1; i < n; i++) sim.net.join(`n${i}`, ['n0']);
  const t = sim.runUntil(() => [...sim.nodes.values()].every((x) => x.host.node.liveCount === n), 10_000);
  if (t < 0) throw new Error('membership did not converge');
  return sim;
}

test('3 nodes x 5,000 entries with churn on a 5% lossy network: every view equals the union of the owners\' entries', () => {
  const sim = cluster(3, 21, 0.05);
  const stores = sim.up();
  const tracked = stores.map(trackEvents);
  const r = seededRandom(5);
  const topics = Array.from({ length: 50 }, (_, i) => `room:${i}`);
  // 5,000 entries per node: 2,500 connections in 2 topics each.
  for (const p of stores) {
    for (let c = 0; c < 2500; c++) {
      const conn = `${p.name}.${c}`;
      p.connect(`user-${c % 800}`, conn);
      p.join(topics[c % 50]!, entry(`user-${c % 800}`, conn, { name: `User ${c}` }));
      p.join(topics[(c * 7 + 3) % 50]!, entry(`user-${c % 800}`, conn, null));
    }
  }
  assert.ok(stores.every((p) => p.replicationStats().localEntries === 5000));
  // Churn for 3 s of virtual time: joins, leaves, meta updates and disconnects on every node.
  let next = 2500;
  for (let step = 0; step < 60; step++) {
    for (const p of stores) {
      for (let k = 0; k < 15; k++) {
        const x = r();
        const c = Math.floor(r() * next);
        const conn = `${p.name}.${c}`;
        const topic = topics[Math.floor(r() * topics.length)]!;
        if (x < 0.35) {
          p.connect(`user-${next % 800}`, `${p.name}.${next}`);
          p.join(topic, entry(`user-${next % 800}`, `${p.name}.${next}`, { n: next }));
          next++;
        } else if (x < 0.6) p.leave(topic, conn);
        else if (x < 0.85) p.join(topic, entry(`user-${c % 800}`, conn, { step }));
        else p.disconnect(`user-${c % 800}`, conn);
      }
    }
    sim.run(50);
  }
  // Every lost delta is found (a later delta's gap, a peer's digest, or the periodic
  // push-pull) and pulled: within two push-pull periods plus the repair delays.
  const bound = 2 * CONFIG.pushPullIntervalMs + sim.timing.repairDelayMs + 2 * sim.timing.pullRetryMs;
  const t = sim.runUntil(() => converged(stores), bound);
  const counts = stores.map((p) => p.stats().entries);
  assert.ok(t >= 0, `not converged within ${bound} ms: ${counts}`);
  const all = topicsOf(stores);
  for (let i = 0; i < stores.length; i++) assert.equal([...tracked[i]!].sort(), keysOf(stores[i]!, all), `events of ${stores[i]!.name} agree with its view`);
  for (const p of stores) {
    const expected = ['user-1', 'user-799'].filter((u) => stores.some((q) => q.usersOf(q.name).includes(u)));
    assert.equal(askOnline(p, ['user-1', 'user-799'], () => sim.run(sim.timing.askTimeoutMs + G)), expected);
  }
  const pulls = stores.reduce((a, p) => a + p.counters.pulls, 0);
  assert.ok(pulls > 0, 'the 5,000-entry bursts went over pulls');
  assert.ok(stores.every((p) => p.counters.deltasApplied > 0), 'churn went over deltas');
  assert.ok(sim.net.stats.maxPacketBytes <= CONFIG.maxPacketBytes);
});

test('partition then heal: each side drops the other\'s entries, and all views converge within the stated bound after the heal', () => {
  const sim = cluster(5, 7);
  const stores = sim.up();
  for (const p of stores) {
    p.connect(`u-${p.name}`, `${p.name}.1`);
    p.join('room', entry(`u-${p.name}`, `${p.name}.1`));
  }
  sim.runUntil(() => converged(stores), 2000);
  assert.ok(converged(stores));
  const left = ['n0', 'n1'];
  const right = ['n2', 'n3', 'n4'];
  sim.net.partition([left, right]);
  // Long enough for each side to declare the other dead (n * P + the maximum suspicion).
  sim.run(5 * P + 6 * suspicionTimeout(4, 5, P) + 20 * G);
  for (const n of left) assert.equal(keysOf(sim.get(n), ['room']), ['room n0.1', 'room n1.1'], `${n} sees only its side`);
  for (const n of right) assert.equal(keysOf(sim.get(n), ['room']), ['room n2.1', 'room n3.1', 'room n4.1']);
  // Both sides keep changing while apart.
  sim.get('n1').join('room', entry('u-n1', 'n1.2'));
  sim.get('n3').leave('room', 'n3.1');
  sim.get('n4').join('room', entry('u-n4', 'n4.1', { away: true }));
  sim.run(500);
  sim.net.heal();
  // Membership re-forms within reconnect + push-pull (docs/cluster.md); then each node pulls
  // every comeback after at most the join jitter, and a lost pull is retried.
  const bound = CONFIG.reconnectIntervalMs + CONFIG.pushPullIntervalMs + sim.timing.joinPullJitterMs + sim.timing.pullRetryMs + 10 * G;
  const t = sim.runUntil(() => converged(stores), bound);
  assert.ok(t >= 0, `not converged within ${bound} ms after the heal`);
  assert.equal(keysOf(sim.get('n0'), ['room']), ['room n0.1', 'room n1.1', 'room n1.2', 'room n2.1', 'room n4.1']);
  assert.equal(sim.get('n0').list('room').find((e) => e.conn === 'n4.1')?.meta, { away: true });
});

test('a restarted node is not confused with its old incarnation, before or after the old one was declared dead', () => {
  const sim = cluster(4, 9);
  const [n0, , n2] = sim.up() as [ClusterPresence, ClusterPresence, ClusterPresence];
  const old = sim.get('n3');
  old.connect('ada', 'old.1');
  old.join('room', entry('ada', 'old.1', { life: 1 }));
  old.join('lobby', entry('ada', 'old.1'));
  sim.runUntil(() => n0.count('room') === 1 && n2.count('lobby') === 1, 2000);
  // Quick restart under the same name: the old process vanishes, the new one (new epoch and
  // incarnation) rejoins before anyone declared the old one dead.
  sim.net.crash('n3');
  const fresh = sim.add('n3', 5000).presence;
  sim.net.join('n3', ['n0']);
  fresh.connect('bob', 'new.1');
  fresh.join('room', entry('bob', 'new.1', { life: 2 }));
  const t = sim.runUntil(() => [n0, n2].every((p) => keysOf(p, ['room', 'lobby']).join() === 'room new.1'), 2000);
  assert.ok(t >= 0, `the new life replaced the old one: ${keysOf(n0, ['room', 'lobby'])}`);
  assert.equal(askOnline(n0, ['ada', 'bob'], () => sim.run(sim.timing.askTimeoutMs + G)), ['bob']);
  assert.is(n0.versionOf('n3')?.epoch, 5000);
  sim.run(3000);
  assert.equal(keysOf(n0, ['room', 'lobby']), ['room new.1'], 'still only the new life');

  // Now a crash that is declared dead everywhere, then a restart.
  sim.net.crash('n3');
  const deadBound = 4 * P + 6 * suspicionTimeout(4, 4, P) + 20 * G;
  assert.ok(sim.runUntil(() => [n0, n2].every((p) => p.count('room') === 0), deadBound) >= 0, 'dead node dropped');
  const third = sim.add('n3', 9000).presence;
  sim.net.join('n3', ['n2']);
  third.join('room', entry('cat', 'third.1'));
  assert.ok(sim.runUntil(() => [n0, n2].every((p) => keysOf(p, ['room']).join() === 'room third.1'), 3000) >= 0);
  assert.is(n2.versionOf('n3')?.epoch, 9000);
});

test('kill -9 in the simulator: every survivor drops the entries within the detection bound, with a leave event each', () => {
  const sim = cluster(5, 13);
  const stores = sim.up();
  const victim = sim.get('n4');
  for (let i = 0; i < 20; i++) victim.join(`t${i % 4}`, entry(`v${i}`, `n4.${i}`));
  sim.runUntil(() => stores.every((p) => p.stats().entries === 20), 2000);
  const leaves = new Map<string, number>();
  const t0 = sim.net.now;
  let lastLeave = 0;
  for (const p of stores) if (p !== victim) p.onChange((c) => c.kind === 'leave' && (leaves.set(p.name, (leaves.get(p.name) ?? 0) + 1), (lastLeave = sim.net.now - t0)));
  sim.net.crash('n4');
  const n = 5;
  const bound = n * P + 6 * suspicionTimeout(4, n, P) + 10 * G;
  const t = sim.runUntil(() => stores.filter((p) => p !== victim).every((p) => p.stats().entries === 0), bound + 2000);
  assert.ok(t >= 0 && t <= bound, `dropped everywhere after ${t} ms, bound ${bound}`);
  assert.ok(lastLeave <= bound);
  for (const p of stores) if (p !== victim) assert.is(leaves.get(p.name), 20, `${p.name} emitted a leave per entry`);
});

test('a graceful leave drops the entries everywhere within a few gossip rounds', () => {
  const sim = cluster(5, 17);
  const stores = sim.up();
  const leaver = sim.get('n2');
  for (let i = 0; i < 10; i++) leaver.join('room', entry(`l${i}`, `n2.${i}`));
  sim.runUntil(() => stores.every((p) => p.count('room') === 10), 2000);
  const t0 = sim.net.now;
  sim.net.leave('n2');
  const others = stores.filter((p) => p !== leaver);
  const bound = 5 * G;
  const t = sim.runUntil(() => others.every((p) => p.count('room') === 0), bound + 1000, 1);
  assert.ok(t >= 0 && t <= bound, `gone after ${t} ms (bound ${bound}), started at ${t0}`);
});

test.run();
