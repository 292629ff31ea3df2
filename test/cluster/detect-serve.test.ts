// Failure detection with real processes: ten `murmur serve` nodes on 127.0.0.1 with the LAN
// gossip profile and the mesh bus, two presence entries per node. A node paused with SIGSTOP
// for 3 s is never declared dead (its links stay open; SWIM's suspicion outlasts the pause
// and it refutes). A node killed with SIGKILL leaves its links closed without a goodbye:
// every survivor suspects it on that evidence at once and drops its users from presence.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_LAN_CONFIG } from '../../src/cluster/gossip/gossip-config.js';
import { suspicionTimeout } from '../../src/cluster/gossip/math.js';
import { TestClient, type Json } from '../app/helpers.js';
import { sleep } from './helpers.js';
import { killAll, membersIn, nodeApi, nodeMetrics, pollAll, serveNode, type ServeNode } from './serve-helpers.js';

const N = 10;
const P = DEFAULT_LAN_CONFIG.probeIntervalMs;
const S = suspicionTimeout(DEFAULT_LAN_CONFIG.suspicionMult, N, P);
const TOPIC = 'room:detect';
const total = (j: Json) => j.count as number;

test('10 serve nodes, LAN profile: SIGSTOP for 3 s kills nobody; kill -9 is seen on its closed links and its users leave presence everywhere', async () => {
  const nodes: ServeNode[] = [];
  const clients: TestClient[] = [];
  try {
    const extra = ['--gossip-profile', 'lan', '--anon-presence', 'room:*'];
    nodes.push(await serveNode('d0', [], extra, 30_000));
    nodes.push(...(await Promise.all(Array.from({ length: N - 1 }, (_, i) => serveNode(`d${i + 1}`, [nodes[0]!.gossip], extra, 30_000)))));
    const ids = nodes.map((n) => n.id).sort().join();
    assert.ok((await pollAll(nodes, (a) => a.every((j) => membersIn(j, 'alive').join() === ids), '/api/cluster/members', 30_000)) >= 0, 'the cluster formed');
    for (const n of nodes) {
      for (let i = 0; i < 2; i++) {
        const c = await TestClient.connect(`ws://127.0.0.1:${n.port}/ws`);
        clients.push(c);
        assert.is((await c.request({ type: 'presence', action: 'join', topic: TOPIC, meta: { node: n.id, i } })).joined, 'joined');
      }
    }
    const path = `/api/presence?topic=${TOPIC}`;
    assert.ok((await pollAll(nodes, (a) => a.every((j) => total(j) === 2 * N), path, 30_000)) >= 0, 'every entry on every node');
    // The bus links between every pair are up, so a crash has links to close.
    await sleep(2 * P);

    // ---- SIGSTOP for 3 s: suspected perhaps, refuted, never dead; nothing leaves presence.
    const paused = nodes[N - 1]!;
    const others = nodes.filter((n) => n !== paused);
    paused.proc.kill('SIGSTOP');
    const resumeAt = performance.now() + 3_000;
    let resumed = false;
    // Watch past the pause for as long as a suspicion raised during it could still expire.
    const watchUntil = performance.now() + 3_000 + 6 * S;
    while (performance.now() < watchUntil) {
      if (!resumed && performance.now() >= resumeAt) {
        paused.proc.kill('SIGCONT');
        resumed = true;
      }
      const views = await Promise.all(others.map((n) => nodeApi(n, '/api/cluster/members')));
      for (const [i, v] of views.entries()) assert.not.ok(membersIn(v, 'dead').includes(paused.id), `${others[i]!.id} declared the paused node dead`);
      const counts = await Promise.all(others.map((n) => nodeApi(n, path)));
      assert.ok(counts.every((j) => total(j) === 2 * N), 'no entry left presence during the pause');
      await sleep(100);
    }
    const after = await Promise.all(nodes.map((n) => nodeApi(n, '/api/cluster/members')));
    assert.ok(after.every((j) => membersIn(j, 'alive').join() === ids), 'all alive after the pause');
    for (const n of nodes) assert.match(await nodeMetrics(n), /murmur_gossip_deaths_total 0\n/, `${n.id} declared nobody dead`);

    // ---- kill -9: every survivor takes the closed links as evidence and drops the users.
    const victim = nodes[4]!;
    const survivors = nodes.filter((n) => n !== victim);
    const t0 = performance.now();
    victim.proc.kill('SIGKILL');
    // Generous: SWIM's own bound at this size (n P + 6 S + 10 gossip rounds) plus process slack.
    const bound = N * P + 6 * S + 10 * DEFAULT_LAN_CONFIG.gossipIntervalMs + 5_000;
    const gone = await pollAll(survivors, (a) => a.every((j) => total(j) === 2 * (N - 1)), path, bound);
    assert.ok(gone >= 0, `the victim's users left presence on every survivor within ${bound} ms`);
    for (const n of survivors) {
      const m = await nodeMetrics(n);
      assert.match(m, /murmur_gossip_link_suspicions_total [1-9]/, `${n.id} suspected the victim on its closed link`);
    }
    process.stdout.write(`  kill -9 of 1 of ${N}: users gone from every survivor's presence after ${(performance.now() - t0).toFixed(0)} ms (polled ${gone.toFixed(0)} ms; minimum SWIM suspicion alone ${S} ms)\n`);
  } finally {
    for (const c of clients) c.close();
    await killAll(nodes);
  }
});

test.run();
