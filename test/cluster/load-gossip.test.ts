// The load summary a member carries in gossip: published at most once a second (only on a
// change worth telling, and at least every 10 s), read back by the other members, shown by
// members() and offered to the shedding policy by peerLoads().
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AppCluster, LOAD_MIN_INTERVAL_MS, LOAD_REFRESH_MS } from '../../src/app/cluster.js';
import { FAST_LOCAL_CONFIG } from '../../src/cluster/gossip/gossip-config.js';
import type { LoadSummary } from '../../src/app/load.js';

const KEY = Buffer.alloc(32, 7);
const started: AppCluster[] = [];

test.after.each(async () => {
  await Promise.all(started.splice(0).map((c) => c.stop()));
});

async function node(id: string, seeds: string[] = []): Promise<AppCluster> {
  const c = new AppCluster({ nodeId: id, port: 0, keys: [KEY], seeds, gossip: FAST_LOCAL_CONFIG }, '127.0.0.1', {});
  started.push(c);
  await c.start(8080);
  return c;
}

function load(connections: number, extra: Partial<LoadSummary> = {}): LoadSummary {
  return { connections, lagMs: 3, cpuPercent: 20, rssMiB: 90, memoryLimitMiB: 4000, overloaded: false, draining: false, ...extra };
}

test('publishLoad: at most once per interval, only for a change worth telling, and a refresh while nothing changes', async () => {
  const c = await node('a');
  const inc = () => c.node.machine.member('a')!.incarnation;
  const i0 = inc();
  c.publishLoad(load(1000), 10_000);
  assert.is(inc(), i0 + 1, 'the first summary goes out');
  c.publishLoad(load(2000), 10_000 + LOAD_MIN_INTERVAL_MS - 1);
  assert.is(inc(), i0 + 1, 'not twice within the interval, however large the change');
  c.publishLoad(load(1010), 10_000 + LOAD_MIN_INTERVAL_MS);
  assert.is(inc(), i0 + 1, '1% moved: not worth an alive message');
  c.publishLoad(load(1030), 10_000 + LOAD_MIN_INTERVAL_MS);
  assert.is(inc(), i0 + 2, '3% moved');
  c.publishLoad(load(1030, { overloaded: true }), 10_000 + 2 * LOAD_MIN_INTERVAL_MS);
  assert.is(inc(), i0 + 3, 'a state change goes out');
  c.publishLoad(load(1030, { overloaded: true }), 10_000 + 3 * LOAD_MIN_INTERVAL_MS);
  assert.is(inc(), i0 + 3);
  c.publishLoad(load(1030, { overloaded: true }), 10_000 + 2 * LOAD_MIN_INTERVAL_MS + LOAD_REFRESH_MS);
  assert.is(inc(), i0 + 4, 'refreshed after LOAD_REFRESH_MS');
  const self = c.members().find((m) => m.id === 'a')!;
  assert.equal(self.load, load(1030, { overloaded: true }));
  assert.is(self.http, '127.0.0.1:8080', 'the HTTP address stays in the meta');
});

test('another member reads the summary: members() and peerLoads() carry it, with when the member joined', async () => {
  const a = await node('a');
  const b = await node('b', [a.node.address]);
  a.publishLoad(load(1234, { lagMs: 17 }), 50_000);
  const deadline = Date.now() + 10_000;
  while (b.members().find((m) => m.id === 'a')?.load?.connections !== 1234) {
    if (Date.now() > deadline) throw new Error(`b never saw a's load: ${JSON.stringify(b.members())}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const peers = b.peerLoads(performance.now());
  assert.is(peers.length, 1);
  assert.is(peers[0]!.id, 'a');
  assert.equal(peers[0]!.load, load(1234, { lagMs: 17 }));
  assert.ok(peers[0]!.since <= performance.now() && peers[0]!.since > performance.now() - 20_000);
});

test.run();
