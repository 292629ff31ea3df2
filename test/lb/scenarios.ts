/**
 * The scenarios every bus transport must pass behind HAProxy: exactly-once delivery to 300
 * clients spread over three nodes, a node killed with SIGKILL, and a rolling restart.
 * The bounds asserted here follow from the test's settings (see the constants).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startCluster, stopAll, LbClient, loud, tagged, checkExactlyOnce, checkNoDuplicates, until, sleep, httpPost, httpGet, API_KEY } from './lb.js';
import type { BusKind, Cluster, Node } from './lb.js';

export const ROOM = 'room:lb';
export const CLIENTS = 300;
export const PER_CLIENT = 20;

/**
 * How long a client of a killed node may stay disconnected: HAProxy marks a node down after
 * two failed checks 100-200 ms apart, and meanwhile redispatches refused connections; the
 * client's backoff is random(0, min(2 s, 200 ms x 2^n)) per attempt. 15 s covers many
 * attempts on a loaded test machine (measured: about 0.2 s on a quiet one).
 */
export const RECONNECT_BOUND_MS = 15_000;
/**
 * The longest disconnection in a rolling restart: the node drains (readyz 503 for 1 s so
 * HAProxy takes it out), closes with 1012 and retry-after=1, so the client waits 1-2 s and
 * reconnects through HAProxy to a node that is up (measured: 0.3-0.6 s on a quiet machine,
 * up to 5 s on a loaded one, when a reconnect lands on the draining node and waits again).
 */
export const RESTART_GAP_BOUND_MS = 10_000;
/**
 * From kill -9 to presence on the survivors listing exactly the connected clients: failure
 * detection with the LAN timings (docs/cluster.md: about 2 probe periods + the suspicion
 * timeout, 6 s expected, under 10 s at 3 nodes) plus the reconnected clients' joins.
 */
export const PRESENCE_BOUND_MS = 15_000;

export async function connectClients(cluster: Cluster, n = CLIENTS): Promise<LbClient[]> {
  const clients: LbClient[] = [];
  for (let i = 0; i < n; i++) clients.push(new LbClient(i, cluster.url));
  await until(() => clients.every((c) => c.open), 20_000, `${n} clients open through HAProxy`);
  await Promise.all(clients.map((c) => c.client.subscribe(ROOM)));
  await Promise.all(clients.map((c) => c.client.join(ROOM, { i: c.index })));
  return clients;
}

export function closeClients(clients: LbClient[]): void {
  for (const c of clients) c.client.close();
}

/** Open connections per node, from each node's /metrics. */
export async function connectionsPerNode(nodes: Node[]): Promise<number[]> {
  const out: number[] = [];
  for (const node of nodes) {
    if (node.child === null) {
      out.push(0);
      continue;
    }
    const r = await httpGet(`${node.http}/metrics`);
    const m = /^murmur_connections (\d+)$/m.exec(r.body);
    out.push(m === null ? -1 : Number(m[1]));
  }
  return out;
}

let probeSeq = 0;

/**
 * Waits until a message published on each live node reaches every client: topic interest has
 * spread over the bus. Probes carry {probe} and are ignored by the checks.
 */
export async function barrier(nodes: Node[], clients: LbClient[]): Promise<void> {
  const live = nodes.filter((n) => n.child !== null);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const id = ++probeSeq;
    for (const node of live) {
      const r = await httpPost(`${node.http}/api/publish`, JSON.stringify({ topic: ROOM, data: { probe: id, node: node.spec.id } }), { authorization: `Bearer ${API_KEY}` });
      assert.is(r.status, 200, `publish on ${node.spec.id}: ${r.body}`);
    }
    const seen = (c: LbClient) => c.received.filter((m) => (m.data as { probe?: number } | null)?.probe === id).length;
    const ok = await until(() => clients.every((c) => seen(c) >= live.length), 1500, 'probe').then(() => true, () => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`probes did not reach every client: ${clients.filter((c) => seen(c) < live.length).length} missing`);
  }
}

/** Every client publishes `perClient` messages {p, n} in order (each waits for its reply). */
export async function publishAll(clients: LbClient[], perClient: number, base = 0): Promise<void> {
  await Promise.all(
    clients.map(async (c) => {
      for (let n = 0; n < perClient; n++) await c.client.publish(ROOM, { p: c.index, n: base + n });
    }),
  );
}

export async function exactlyOnce(cluster: Cluster, clients: LbClient[]): Promise<void> {
  const perNode = await connectionsPerNode(cluster.nodes);
  // round-robin spreads the clients: every node has some
  for (const [i, n] of perNode.entries()) assert.ok(n >= CLIENTS / 6, `node ${i + 1} holds ${n} of ${CLIENTS} clients: ${perNode.join(', ')}`);
  await barrier(cluster.nodes, clients);
  for (const c of clients) c.received.length = 0;
  await publishAll(clients, PER_CLIENT).catch(async (err: unknown) => {
    throw new Error(`a publish failed: ${JSON.stringify(err)}\n${await diagnose(cluster, clients, PER_CLIENT)}`);
  });
  const total = CLIENTS * PER_CLIENT;
  await until(() => clients.every((c) => tagged(c.received, ROOM).length >= total), 60_000, `every client receives ${total} messages`).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await diagnose(cluster, clients, PER_CLIENT)}`);
  });
  await sleep(300); // a duplicate would arrive right behind
  for (const c of clients) {
    const problem = checkExactlyOnce(tagged(c.received, ROOM), CLIENTS, PER_CLIENT);
    assert.is(problem, null, `client ${c.index}: ${problem}`);
  }
}

/** Clients of the node that dies, by their welcome's conn id at the time. */
async function clientsOn(node: Node, clients: LbClient[]): Promise<LbClient[]> {
  // A node lists its own entries first (then every other node's), so the first member's conn id
  // carries the node's own prefix.
  const prefix = (await node.presence(ROOM))[0]?.conn.split('.')[0];
  return clients.filter((c) => prefix !== undefined && c.conn.startsWith(`${prefix}.`));
}

export async function nodeFailure(cluster: Cluster, clients: LbClient[]): Promise<{ reconnectMs: number; presenceMs: number }> {
  const victim = cluster.nodes[1]!;
  const survivors = cluster.nodes.filter((n) => n !== victim);
  const conns = await clientsOn(victim, clients);
  const oldConns = new Set(conns.map((c) => c.conn));
  assert.ok(conns.length > 0, 'the victim holds clients');
  await victim.kill9();
  const reconnectMs = await until(() => conns.every((c) => c.open && !oldConns.has(c.conn)), RECONNECT_BOUND_MS, `clients of the killed node reconnect within ${RECONNECT_BOUND_MS} ms`).catch((err: Error) => {
    const stuck = conns.filter((c) => !(c.open && !oldConns.has(c.conn)));
    const about = stuck.slice(0, 5).map((c) => `client ${c.index}: state ${c.client.state}, conn ${c.conn}, closes ${JSON.stringify(c.closes.map((x) => x.code))}, opens ${c.opens.length}, errors ${JSON.stringify(c.errors.slice(-3))}`);
    throw new Error(`${err.message}: ${stuck.length} of ${conns.length} not back\n${about.join('\n')}`);
  });
  // presence on the survivors: the dead node's entries gone, the reconnected clients present
  const want = new Set(clients.map((c) => c.conn));
  const presenceMs = await until(async () => {
    for (const node of survivors) {
      const members = (await node.presence(ROOM)).map((m) => m.conn);
      if (members.length !== clients.length || !members.every((m) => want.has(m))) return false;
    }
    return true;
  }, PRESENCE_BOUND_MS, 'presence on every survivor shows exactly the connected clients');
  // every moved client resubscribed with its position: positions are cluster-wide on both buses
  // (ordered by an owner on the mesh, by Redis over Redis) and it recovered there
  for (const c of conns) {
    const told = c.resyncs.some((r) => r.topic === ROOM);
    assert.ok(!told, `client ${c.index} was told to resync (${cluster.bus}): ${JSON.stringify(c.resyncs)}`);
  }
  for (const c of clients) if (!conns.includes(c)) assert.is(c.closes.length, 0, `client ${c.index} of a survivor was disconnected`);
  // delivery still exactly once among the survivors
  await barrier(cluster.nodes, clients);
  for (const c of clients) c.received.length = 0;
  await publishAll(clients, 5, 1000);
  await until(() => clients.every((c) => tagged(c.received, ROOM).length >= CLIENTS * 5), 60_000, 'delivery after the failure').catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await diagnose(cluster, clients, 5)}`);
  });
  await sleep(300);
  for (const c of clients) {
    const got = tagged(c.received, ROOM).map((m) => ({ p: m.p, n: m.n - 1000 }));
    assert.is(checkExactlyOnce(got, CLIENTS, 5), null, `client ${c.index} after the failure`);
  }
  return { reconnectMs: Math.round(reconnectMs), presenceMs: Math.round(presenceMs) };
}

/**
 * SIGTERM each node in turn and start it again, while a publisher posts numbered messages
 * through HAProxy: no client is disconnected longer than the bound, no message is delivered twice.
 */
export async function rollingRestart(cluster: Cluster, clients: LbClient[]): Promise<{ longestGapMs: number; published: number; failed: number }> {
  // a node killed earlier comes back first: the restart starts from a whole cluster
  for (const node of cluster.nodes) if (node.child === null) await node.start();
  await untilWhole(cluster, 'the killed node is back');
  await until(() => clients.every((c) => c.open), RESTART_GAP_BOUND_MS, 'every client connected');
  for (const c of clients) c.longestGapMs = 0;
  for (const c of clients) c.received.length = 0;
  let seq = 0;
  let publishing = true;
  const lb = `http://127.0.0.1:${cluster.lbPort}/api/publish`;
  let failed = 0;
  const publisher = (async () => {
    while (publishing && seq < 3000) {
      // A number is never posted twice: a post whose answer was lost (its node drained or
      // HAProxy cut the session) may still have been published, and retrying it would make
      // the duplicate this test looks for.
      const r = await httpPost(lb, JSON.stringify({ topic: ROOM, data: { p: CLIENTS, n: seq++ } }), { authorization: `Bearer ${API_KEY}` });
      if (r.status !== 200) failed++;
      await sleep(20);
    }
  })();
  try {
    await restartInTurn(cluster);
    await until(() => clients.every((c) => c.open), RESTART_GAP_BOUND_MS, 'every client connected after the restarts');
  } finally {
    publishing = false;
    await publisher;
  }
  await sleep(500);
  let longest = 0;
  for (const c of clients) {
    longest = Math.max(longest, c.longestGapMs);
    const mine = tagged(c.received, ROOM).filter((m) => m.p === CLIENTS);
    assert.is(checkNoDuplicates(mine), null, `client ${c.index} during the rolling restart`);
  }
  assert.ok(longest <= RESTART_GAP_BOUND_MS, `a client stayed disconnected ${Math.round(longest)} ms (bound ${RESTART_GAP_BOUND_MS})`);
  // afterwards, everything is delivered exactly once again
  await barrier(cluster.nodes, clients);
  for (const c of clients) c.received.length = 0;
  await publishAll(clients, 3, 2000);
  await until(() => clients.every((c) => tagged(c.received, ROOM).length >= CLIENTS * 3), 60_000, 'delivery after the rolling restart').catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await diagnose(cluster, clients, 3)}`);
  });
  await sleep(300);
  for (const c of clients) {
    const got = tagged(c.received, ROOM).map((m) => ({ p: m.p, n: m.n - 2000 }));
    assert.is(checkExactlyOnce(got, CLIENTS, 3), null, `client ${c.index} after the rolling restart`);
  }
  return { longestGapMs: Math.round(longest), published: seq, failed };
}

/** What went missing, by publisher's node and receiver's node, and each node's bus figures. */
async function diagnose(cluster: Cluster, clients: LbClient[], perClient: number): Promise<string> {
  const nodeOf = (c: LbClient) => c.conn.split('.')[0] ?? '?';
  const missing = new Map<string, number>();
  for (const r of clients) {
    const got = new Map<number, number>();
    for (const m of tagged(r.received, ROOM)) got.set(m.p, (got.get(m.p) ?? 0) + 1);
    for (const p of clients) {
      const n = got.get(p.index) ?? 0;
      if (n !== perClient) {
        const k = `${nodeOf(p)} -> ${nodeOf(r)} (${n < perClient ? 'missing' : 'extra'})`;
        missing.set(k, (missing.get(k) ?? 0) + Math.abs(perClient - n));
      }
    }
  }
  const lines = [...missing].map(([k, v]) => `  ${k}: ${v}`);
  for (const node of cluster.nodes) {
    if (node.child === null) continue;
    const m = await httpGet(`${node.http}/metrics`);
    lines.push(`  ${node.spec.id} log:\n${node.log().split('\n').slice(-15).map((l) => `    ${l}`).join('\n')}`);
    lines.push(`  ${node.spec.id}: ${m.body.split('\n').filter((l) => /^murmur_(bus|remote|dropped|slow|connections |published)/.test(l)).join(' | ')}`);
  }
  return lines.join('\n');
}

/**
 * A rolling restart: each node in turn is sent SIGTERM (it drains), started again, and waited
 * for until it is ready and every node sees every node alive. `stopped` runs while a node is
 * down (e.g. wait for its clients to move).
 */
export async function restartInTurn(cluster: Cluster, stopped?: (node: Node) => Promise<void>): Promise<void> {
  for (const node of cluster.nodes) await restartNode(cluster, node, stopped);
}

/** One node of restartInTurn. */
export async function restartNode(cluster: Cluster, node: Node, stopped?: (node: Node) => Promise<void>): Promise<void> {
  await node.stop();
  await stopped?.(node);
  await node.start();
  await until(async () => (await node.readyz()) === 200, 10_000, `${node.spec.id} ready again`);
  await untilWhole(cluster, `${node.spec.id} rejoined the cluster`);
}

/** Until every node sees every node alive (and so links to it). */
export async function untilWhole(cluster: Cluster, what: string): Promise<void> {
  await until(async () => {
    for (const node of cluster.nodes) if ((await node.members()).filter((m) => m.state === 'alive').length !== cluster.nodes.length) return false;
    return true;
  }, 15_000, what);
}

/** The three scenarios against three nodes behind HAProxy, with one bus transport. */
export function runLbSuite(bus: BusKind): void {
  const t = suite(`cluster behind HAProxy, ${bus} bus`);
  let cluster: Cluster;
  let clients: LbClient[] = [];
  t.before(async () => {
    cluster = await loud(startCluster(bus));
    clients = await loud(connectClients(cluster));
  });
  t.after(async () => {
    closeClients(clients);
    await stopAll();
  });
  t('300 clients x 20 messages: every client gets every message once, in publisher order', async () => {
    await loud(exactlyOnce(cluster, clients));
  });
  t('kill -9 a node: its clients reconnect through HAProxy, presence drops its entries, they recover where they were', async () => {
    const r = await loud(nodeFailure(cluster, clients));
    console.log(`  ${bus}: clients of the killed node reconnected in ${r.reconnectMs} ms; presence correct on survivors after ${r.presenceMs} ms`);
  });
  t('rolling restart: no client disconnected past the bound, no message delivered twice', async () => {
    const r = await loud(rollingRestart(cluster, clients));
    console.log(`  ${bus}: longest disconnection ${r.longestGapMs} ms; ${r.published} messages posted through HAProxy during the restart (${r.failed} answered with an error)`);
  });
  t.run();
}
