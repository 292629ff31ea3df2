// Real processes: five `murmur serve` nodes (the compiled CLI) on 127.0.0.1 with the fast
// gossip profile form a cluster; WebSocket clients join presence through the app protocol on
// every node, with a watcher per node. Then: churn, kill -9 of one node (every survivor
// declares it dead and drops its presence, its watchers get the leave events, within the
// bound computed from the timings), and SIGTERM of another (gone everywhere within a few
// gossip rounds). Every child process is killed by its PID in the end, pass or fail.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { FAST_LOCAL_CONFIG, DEFAULT_LAN_CONFIG } from '../../src/cluster/gossip/gossip-config.js';
import { suspicionTimeout } from '../../src/cluster/gossip/math.js';
import { TestClient, http, type Json } from '../app/helpers.js';
import { sleep, waitFor } from './helpers.js';
import { CLUSTER_KEY as KEY, SERVE_MAIN as MAIN, nodeApi as api, pollAll, serveNode, trackChild, type ServeNode as Node } from './serve-helpers.js';

const CONFIG = { ...DEFAULT_LAN_CONFIG, ...FAST_LOCAL_CONFIG };
const P = CONFIG.probeIntervalMs;
const G = CONFIG.gossipIntervalMs;
/** Real timers and five node processes on a shared 2-core machine: event-loop delay, not protocol time. */
const PROCESS_SLACK = 1500;

const serve = (id: string, seeds: string[]): Promise<Node> => serveNode(id, seeds, ['--gossip-profile', 'local']);

const alive = (j: Json) => (j.members as Json[]).filter((m) => m.state === 'alive').map((m) => m.id as string).sort();
const conns = (j: Json) => (j.members as Json[]).map((m) => m.conn as string).sort();

test('5 serve processes: membership, presence across nodes with churn, kill -9 and SIGTERM within their bounds', async () => {
  const nodes: Node[] = [];
  const clients: TestClient[] = [];
  try {
    // ---- formation: all see all within 2 s of start
    const t0 = performance.now();
    nodes.push(await serve('s0', []));
    const rest = await Promise.all([1, 2, 3, 4].map((i) => serve(`s${i}`, [nodes[0]!.gossip])));
    nodes.push(...rest);
    const started = performance.now();
    const ids = nodes.map((n) => n.id).sort();
    const formed = await pollAll(nodes, (a) => a.every((j) => alive(j).join() === ids.join()), '/api/cluster/members', 2000);
    assert.ok(formed >= 0, `not all alive everywhere within 2 s of the last start`);
    const members = await api(nodes[1]!, '/api/cluster/members');
    assert.is(members.self, 's1');
    const s3 = (members.members as Json[]).find((m) => m.id === 's3')!;
    assert.is(s3.http, `127.0.0.1:${nodes[3]!.port}`, 'the http address of the member meta');
    assert.match(s3.address, /^127\.0\.0\.1:\d+$/);
    assert.ok(Number.isSafeInteger(s3.incarnation) && s3.incarnation > 0);
    process.stdout.write(`  formed ${formed.toFixed(0)} ms after the last node started (${(started - t0).toFixed(0)} ms to start five processes)\n`);

    // ---- presence: 3 clients per node in room:lobby, one watcher per node
    const watchers: TestClient[] = [];
    for (const n of nodes) {
      const w = await TestClient.connect(`ws://127.0.0.1:${n.port}/ws`);
      const sub = await w.request({ type: 'subscribe', topic: 'room:lobby', presence: true });
      assert.ok(Array.isArray(sub.members));
      watchers.push(w);
      clients.push(w);
    }
    const byNode = new Map<string, TestClient[]>();
    for (const n of nodes) {
      const list: TestClient[] = [];
      for (let i = 0; i < 3; i++) {
        const c = await TestClient.connect(`ws://127.0.0.1:${n.port}/ws`);
        const r = await c.request({ type: 'presence', action: 'join', topic: 'room:lobby', meta: { node: n.id, i } });
        assert.is(r.joined, 'joined');
        list.push(c);
        clients.push(c);
      }
      byNode.set(n.id, list);
    }
    const all = [...byNode.values()].flat().map((c) => c.welcome!.conn as string).sort();
    let t = await pollAll(nodes, (a) => a.every((j) => conns(j).join() === all.join()), '/api/presence?topic=room:lobby', 3000);
    assert.ok(t >= 0, 'every node lists the 15 entries');
    const ada = (byNode.get('s2')![0]!.welcome!.user as string);
    for (const n of nodes) assert.is((await api(n, `/api/presence?user=${encodeURIComponent(ada)}`)).online, true, `online anywhere, asked on ${n.id}`);
    // Watchers hear joins of other nodes' clients.
    for (const w of watchers) {
      const seen = new Set<string>();
      while (seen.size < 15) {
        const ev = await w.next((m) => m.type === 'presence' && m.event === 'join', 3000);
        seen.add(ev.member.conn as string);
      }
    }

    // ---- churn: leaves, re-joins with new meta, new topics, a disconnect
    for (const [id, list] of byNode) {
      await list[0]!.request({ type: 'presence', action: 'leave', topic: 'room:lobby' });
      await list[1]!.request({ type: 'presence', action: 'join', topic: 'room:lobby', meta: { node: id, updated: true } });
      await list[2]!.request({ type: 'presence', action: 'join', topic: 'room:other', meta: null });
    }
    const gone = byNode.get('s1')![1]!;
    gone.close();
    await gone.waitClosed();
    const want = [...byNode.values()].flatMap((l) => l.slice(1)).filter((c) => c !== gone).map((c) => c.welcome!.conn as string).sort();
    t = await pollAll(nodes, (a) => a.every((j) => conns(j).join() === want.join()), '/api/presence?topic=room:lobby', 3000);
    assert.ok(t >= 0, 'every node converged on the churned lobby');
    const lobby = await api(nodes[4]!, '/api/presence?topic=room:lobby');
    const s0member = (lobby.members as Json[]).find((m) => m.conn === byNode.get('s0')![1]!.welcome!.conn)!;
    assert.equal(s0member.meta, { node: 's0', updated: true });
    assert.is((await api(nodes[0]!, '/api/presence?topic=room:other')).count, 5);

    // ---- kill -9 of s3
    for (const w of watchers) w.inbox.length = 0;
    const victim = nodes[3]!;
    const victimConns = new Set(byNode.get('s3')!.slice(1).map((c) => c.welcome!.conn as string));
    const survivors = nodes.filter((n) => n !== victim);
    const n = 5;
    // Some survivor probes it within one round-robin pass plus the period in progress (n P);
    // the unconfirmed suspicion lasts at most 6 x its minimum; the verdict spreads in a few
    // gossip rounds; the entries go with the verdict, in the same call.
    const bound = n * P + 6 * suspicionTimeout(CONFIG.suspicionMult, n, P) + 10 * G;
    const killedAt = performance.now();
    victim.proc.kill('SIGKILL');
    const leftAt = await Promise.all(
      survivors.map(async (s) => {
        const w = watchers[nodes.indexOf(s)]!;
        const seen = new Set<string>();
        while (seen.size < victimConns.size) {
          const ev = await w.next((m) => m.type === 'presence' && m.event === 'leave' && victimConns.has(m.member.conn), bound + PROCESS_SLACK + 1000);
          seen.add(ev.member.conn as string);
        }
        return performance.now() - killedAt;
      }),
    );
    const slowest = Math.max(...leftAt);
    process.stdout.write(`  kill -9: leave events on every survivor after ${leftAt.map((x) => x.toFixed(0)).join(', ')} ms (bound ${bound} + ${PROCESS_SLACK} slack)\n`);
    assert.ok(slowest <= bound + PROCESS_SLACK, `leave events after ${slowest.toFixed(0)} ms, bound ${bound} + ${PROCESS_SLACK}`);
    // Its closed bus links start the suspicion at once; it still lasts the link floor.
    assert.ok(Math.min(...leftAt) >= CONFIG.linkSuspicionMs, 'not before the link suspicion timeout');
    for (const s of survivors) {
      const m = (await api(s, '/api/cluster/members')).members as Json[];
      assert.is(m.find((x) => x.id === 's3')?.state, 'dead', `${s.id} declares s3 dead`);
      const l = await api(s, '/api/presence?topic=room:lobby');
      assert.not.ok(conns(l).some((c) => victimConns.has(c)), `${s.id} dropped s3's entries`);
    }
    const metrics = (await http(`http://127.0.0.1:${nodes[0]!.port}/metrics`)).body;
    assert.match(metrics, /murmur_cluster_members\{state="dead"\} 1/);
    assert.match(metrics, /murmur_cluster_presence_entries\{origin="remote"\} \d+/);
    assert.match(metrics, /murmur_presence_deltas_total\{event="received"\} [1-9]/);
    assert.match(metrics, /murmur_gossip_probes_total [1-9]/);

    // ---- SIGTERM of s4: graceful
    const leaver = nodes[4]!;
    const leaverConns = new Set(byNode.get('s4')!.slice(1).map((c) => c.welcome!.conn as string));
    const remaining = survivors.filter((s) => s !== leaver);
    const termAt = performance.now();
    leaver.proc.kill('SIGTERM');
    const termBound = 5 * G + PROCESS_SLACK;
    const goneAt = await Promise.all(
      remaining.map(async (s) => {
        const w = watchers[nodes.indexOf(s)]!;
        const seen = new Set<string>();
        while (seen.size < leaverConns.size) {
          const ev = await w.next((m) => m.type === 'presence' && m.event === 'leave' && leaverConns.has(m.member.conn), termBound + 2000);
          seen.add(ev.member.conn as string);
        }
        return performance.now() - termAt;
      }),
    );
    process.stdout.write(`  SIGTERM: leave events on every other node after ${goneAt.map((x) => x.toFixed(0)).join(', ')} ms (bound ${termBound})\n`);
    assert.ok(Math.max(...goneAt) <= termBound, `gone after ${Math.max(...goneAt).toFixed(0)} ms`);
    const exited = await waitFor(() => leaver.exited, 5000);
    assert.ok(exited >= 0 && leaver.proc.exitCode === 0, `exit code ${leaver.proc.exitCode}`);
    assert.match(leaver.out, /STOPPED/);
    t = await pollAll(remaining, (a) => a.every((j) => (j.members as Json[]).find((m) => m.id === 's4')?.state === 'left'), '/api/cluster/members', 5 * G + PROCESS_SLACK);
    assert.ok(t >= 0, 's4 is left everywhere');
  } finally {
    for (const c of clients) c.close();
    for (const n of nodes) if (!n.exited && n.proc.pid !== undefined) n.proc.kill('SIGKILL');
    await waitFor(() => nodes.every((n) => n.exited), 5000);
  }
});

test('serve: a second process with a node id already held exits with code 3; the first logs the conflict and keeps the id', async () => {
  const nodes: Node[] = [];
  try {
    nodes.push(await serve('seed', []));
    const first = await serve('twin', [nodes[0]!.gossip]);
    nodes.push(first);
    assert.ok((await pollAll([nodes[0]!], (a) => alive(a[0]!).includes('twin'), '/api/cluster/members', 5000)) >= 0, 'the first twin joined');
    const second = await serve('twin', [nodes[0]!.gossip]);
    nodes.push(second);
    assert.ok((await waitFor(() => second.exited, 10_000)) >= 0, `the second twin is still running: ${second.out}`);
    assert.is(second.proc.exitCode, 3);
    assert.match(second.out, `node id twin is already held by a live process at ${first.gossip}`);
    assert.ok((await waitFor(() => first.out.includes('node id twin is also claimed by a process at'), 5000)) >= 0, first.out);
    const members = (await api(nodes[0]!, '/api/cluster/members')).members as Json[];
    assert.ok((await pollAll([nodes[0]!], (a) => (a[0]!.members as Json[]).some((m) => m.id === 'twin' && m.address === first.gossip && m.state === 'alive'), '/api/cluster/members', 5000)) >= 0, JSON.stringify(members));
  } finally {
    for (const n of nodes) if (!n.exited && n.proc.pid !== undefined) n.proc.kill('SIGKILL');
    await waitFor(() => nodes.every((n) => n.exited), 5000);
  }
});

test('serve: seeds without a key is a usage error; a bad key is refused with how to make one', async () => {
  const run = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ code: number | null; err: string }>((resolve) => {
      const e: NodeJS.ProcessEnv = { ...process.env, ...env };
      if (env.MURMUR_CLUSTER_KEY === undefined) delete e.MURMUR_CLUSTER_KEY;
      const p = trackChild(spawn(process.execPath, [MAIN, 'serve', '--port', '0', ...args], { env: e, stdio: ['ignore', 'ignore', 'pipe'] }));
      let err = '';
      p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      p.on('exit', (code) => resolve({ code, err }));
    });
  const a = await run(['--seeds', '127.0.0.1:7946']);
  assert.is(a.code, 2);
  assert.match(a.err, /--seeds needs a cluster key/);
  const b = await run(['--cluster-key', 'not-a-key']);
  assert.is(b.code, 2);
  assert.match(b.err, /openssl rand -base64 32/);
  const c = await run(['--host', '0.0.0.0', '--gossip-port', '0'], { MURMUR_CLUSTER_KEY: KEY });
  assert.is(c.code, 2);
  assert.match(c.err, /--advertise-host/);
});

test.run();
