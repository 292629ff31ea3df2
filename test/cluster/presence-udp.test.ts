// Cluster presence over real UDP and TCP on 127.0.0.1: three GossipNodes in this process,
// each with a ClusterPresence driven by the runtime (PresenceReplicator), fast timings.
// 5,000 entries per node, then churn while running; after convergence every view equals the
// union of the owners' entries. Bounds are the configured timings plus TIMER_SLACK for real
// timers on a shared machine.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GossipNode } from '../../src/cluster/gossip/node.js';
import { DEFAULT_LAN_CONFIG, type GossipConfig } from '../../src/cluster/gossip/gossip-config.js';
import { seededRandom } from '../../src/cluster/gossip/math.js';
import { ClusterPresence, replicationTiming } from '../../src/cluster/presence/store.js';
import { PresenceReplicator } from '../../src/cluster/presence/runtime.js';
import type { OnlineResult } from '../../src/cluster/presence/types.js';
import { FAST, KEY_A, sleep, waitFor } from './helpers.js';
import { entry, topicsOf, union, view } from './presence-helpers.js';

const CONFIG = { ...DEFAULT_LAN_CONFIG, ...FAST } as GossipConfig;
const TIMER_SLACK = 1000;
/** The longest the convergence wait may be pushed back by membership changes. */
const MAX_WAIT_MS = 60_000;

interface Node {
  gossip: GossipNode;
  presence: ClusterPresence;
  replicator: PresenceReplicator;
}

async function start(n: number, prefix: string): Promise<Node[]> {
  const nodes: Node[] = [];
  for (let i = 0; i < n; i++) {
    const presence = new ClusterPresence({ name: `${prefix}${i}`, timing: replicationTiming(CONFIG) });
    const gossip = new GossipNode({ name: `${prefix}${i}`, keys: [KEY_A], config: FAST, delegate: presence.delegate });
    await gossip.start();
    const replicator = new PresenceReplicator(presence, gossip);
    replicator.start();
    nodes.push({ gossip, presence, replicator });
  }
  for (let i = 1; i < n; i++) await nodes[i]!.gossip.join([nodes[0]!.gossip.address]);
  const t = await waitFor(() => nodes.every((x) => x.gossip.liveMembers().length === n), 3000);
  if (t < 0) throw new Error('membership did not converge');
  return nodes;
}

async function stopAll(nodes: Node[]): Promise<void> {
  for (const n of nodes) n.replicator.stop();
  await Promise.all(nodes.map((n) => n.gossip.stop()));
}

/**
 * Every view equals the union of the owners' entries. The entry counts are compared first
 * (cheap): the full comparison sorts some 45,000 lines, and polled often it would take the
 * event loop from the replication it waits for.
 */
function converged(stores: readonly ClusterPresence[]): boolean {
  let owned = 0;
  for (const p of stores) for (const es of p.entriesOf(p.name).values()) owned += es.length;
  if (!stores.every((p) => p.stats().entries === owned)) return false;
  const topics = topicsOf(stores);
  const want = union(stores).join('\n');
  return stores.every((p) => view(p, topics).join('\n') === want);
}

/**
 * How long after the last change every view holds every entry (docs/cluster.md, "Timings"):
 * the last delta of a node may be lost (a full queue, a burst sent as a version notice); the
 * next periodic push-pull anywhere carries the digest that shows the gap (pushPullIntervalMs),
 * the node behind pulls after repairDelayMs, and the pull's full state arrives within one
 * stream timeout. On a loaded machine that pull may time out once and be retried after
 * pullRetryMs: one more retry and stream timeout. A peer falsely declared dead and back is
 * pulled within joinPullJitterMs of its return. TIMER_SLACK covers timers firing late.
 */
function convergenceBoundMs(g: GossipConfig): number {
  const timing = replicationTiming(g);
  const pull = g.streamTimeoutMs;
  return g.pushPullIntervalMs + timing.repairDelayMs + timing.joinPullJitterMs + pull + (timing.pullRetryMs + pull) + TIMER_SLACK;
}

/**
 * Membership changes after the start: on a starved machine the fast timings may declare a
 * peer dead (its entries are dropped everywhere) and see it come back (it is pulled again).
 * The convergence bound counts from the last of them.
 */
const flaps = { count: 0, last: 0 };

function watchMembership(nodes: Node[]): void {
  for (const n of nodes) {
    for (const type of ['dead', 'alive', 'join', 'leave'] as const) {
      n.gossip.on(type, () => {
        flaps.count++;
        flaps.last = performance.now();
      });
    }
  }
}

/**
 * Polls until every view converged, up to `bound` after the later of `from` and the last
 * membership change (and never more than MAX_WAIT_MS after `from`, so the test is bounded).
 */
async function waitForConvergence(stores: readonly ClusterPresence[], from: number, bound: number): Promise<{ ok: boolean; ms: number }> {
  for (;;) {
    if (converged(stores)) return { ok: true, ms: performance.now() - from };
    const now = performance.now();
    if (now > Math.max(from, flaps.last) + bound || now > from + MAX_WAIT_MS) return { ok: false, ms: now - from };
    await sleep(100);
  }
}

test('3 nodes x 5,000 entries with churn over UDP loopback: every view equals the union of the owners\' entries', async () => {
  const nodes = await start(3, 'p');
  watchMembership(nodes);
  const stores = nodes.map((n) => n.presence);
  try {
    const r = seededRandom(3);
    const topics = Array.from({ length: 40 }, (_, i) => `room:${i}`);
    for (const p of stores) {
      for (let c = 0; c < 5000; c++) {
        const conn = `${p.name}.${c}`;
        p.connect(`user-${c % 1000}`, conn);
        p.join(topics[c % 40]!, entry(`user-${c % 1000}`, conn, { c }));
      }
    }
    // Churn while the bulk is still replicating: 40 changes per node every 20 ms for 2 s.
    let next = 5000;
    for (let step = 0; step < 100; step++) {
      for (const p of stores) {
        for (let k = 0; k < 40; k++) {
          const x = r();
          const c = Math.floor(r() * next);
          const topic = topics[Math.floor(r() * topics.length)]!;
          if (x < 0.35) {
            p.connect(`user-${next % 1000}`, `${p.name}.${next}`);
            p.join(topic, entry(`user-${next % 1000}`, `${p.name}.${next}`, { c: next }));
            next++;
          } else if (x < 0.6) p.leave(topic, `${p.name}.${c}`);
          else if (x < 0.85) p.join(topic, entry(`user-${c % 1000}`, `${p.name}.${c}`, { step }));
          else p.disconnect(`user-${c % 1000}`, `${p.name}.${c}`);
        }
      }
      await sleep(20);
    }
    const churnEnd = performance.now();
    const bound = convergenceBoundMs(CONFIG);
    const t = await waitForConvergence(stores, churnEnd, bound);
    assert.ok(t.ok, `not converged ${bound} ms after the churn and the last of ${flaps.count} membership changes: ${stores.map((p) => p.stats().entries)} of ${union(stores).length}`);
    if (process.env.MURMUR_TEST_VERBOSE) console.log(`converged ${t.ms.toFixed(0)} ms after the churn (bound ${bound} ms after the last of it and of ${flaps.count} membership changes)`);
    const entries = stores[0]!.stats().entries;
    assert.ok(entries > 15_000, `${entries} entries`);
    for (const p of stores) {
      const expected = ['user-0', 'user-999'].filter((u) => stores.some((q) => q.usersOf(q.name).includes(u)));
      const answer = await new Promise<OnlineResult>((resolve) => p.askOnline(['user-0', 'user-999'], resolve));
      assert.equal(answer === 'busy' ? 'busy' : [...answer.online].sort(), expected, `${p.name} asks the others`);
    }
    const pulls = stores.reduce((a, p) => a + p.counters.pulls, 0);
    const deltas = stores.reduce((a, p) => a + p.counters.deltasApplied, 0);
    assert.ok(pulls > 0 && deltas > 0, `pulls ${pulls}, deltas ${deltas}`);
  } finally {
    await stopAll(nodes);
  }
});

test('over UDP: a stopped node\'s entries disappear from the survivors once it is declared dead; a leave removes them at once', async () => {
  const nodes = await start(4, 'q');
  try {
    const [a, b, c, d] = nodes as [Node, Node, Node, Node];
    for (let i = 0; i < 50; i++) c.presence.join('room', entry(`c${i}`, `q2.${i}`));
    for (let i = 0; i < 30; i++) d.presence.join('room', entry(`d${i}`, `q3.${i}`));
    assert.ok((await waitFor(() => [a, b].every((x) => x.presence.count('room') === 80), 3000)) >= 0);
    c.replicator.stop();
    await c.gossip.stop(); // no leave: looks like a crash
    const P = CONFIG.probeIntervalMs;
    const n = 4;
    const bound = n * P + 6 * 4 * Math.max(1, Math.log10(n)) * P + 10 * CONFIG.gossipIntervalMs + TIMER_SLACK;
    const t = await waitFor(() => [a, b, d].every((x) => x.presence.count('room') === 30), bound);
    assert.ok(t >= 0, `not dropped within ${bound} ms`);
    d.replicator.stop();
    const t0 = performance.now();
    await d.gossip.leave();
    const t2 = await waitFor(() => [a, b].every((x) => x.presence.count('room') === 0), 5 * CONFIG.gossipIntervalMs + TIMER_SLACK, 2);
    assert.ok(t2 >= 0, `left node's entries still there after ${(performance.now() - t0).toFixed(0)} ms`);
  } finally {
    await stopAll(nodes);
  }
});

test.run();
