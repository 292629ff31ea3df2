// History topics under churn with real processes (docs/cluster.md, "Joins, restarts and what is
// not finished"): four `murmur serve` nodes on each bus (mesh, Redis) behind HAProxy, clients through the
// balancer subscribed to six history topics, a steady publisher per topic (through HAProxy: they
// land on every node), and while they publish: a fifth node joins, one is killed with SIGKILL,
// another is stopped with SIGTERM for good, and the killed one comes back. Ownership of the
// topics moves at each change. Every client ends with every acknowledged message of every topic
// exactly once, in its publisher's order, or was told to resync that topic; never a silent
// gap, duplicate or reordering.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startCluster, stopAll, LbClient, until, sleep, tagged, checkStream, hasEvery } from './lb.js';
import type { BusKind, Cluster, Node } from './lb.js';
import { SteadyPublisher } from './history-stream.js';

const CLIENTS = 40;
const TOPICS = Array.from({ length: 6 }, (_, i) => `room:churn-${i}`);
/** Messages a second per topic. */
const RATE = 15;
/** Publishing goes on this long after each change, so every change moves ownership under load. */
const BETWEEN_MS = 2_000;
/** How long the clients of a node that went may take to be connected again (HAProxy's checks, backoff, a loaded machine). */
const MOVE_MS = 20_000;
const SETTLE_MS = 20_000;

test.after(stopAll);

/** Until every running node sees exactly the running nodes alive. */
async function untilViews(cluster: Cluster, what: string): Promise<void> {
  const running = () => cluster.nodes.filter((n) => n.child !== null);
  await until(async () => {
    for (const node of running()) if ((await node.members()).filter((m) => m.state === 'alive').length !== running().length) return false;
    return true;
  }, 15_000, what);
}

async function startAndJoin(cluster: Cluster, node: Node): Promise<void> {
  await node.start();
  await until(async () => (await node.readyz()) === 200, 10_000, `${node.spec.id} ready`);
  await untilViews(cluster, `${node.spec.id} joined`);
}

async function churn(bus: BusKind): Promise<void> {
  const cluster = await startCluster(bus, 4, { spare: 1 });
  const [n1, , n3, n4, n5] = cluster.nodes as [Node, Node, Node, Node, Node];
  const clients: LbClient[] = [];
  for (let i = 0; i < CLIENTS; i++) clients.push(new LbClient(i, cluster.url));
  await until(() => clients.every((c) => c.open), 20_000, `${CLIENTS} clients open through HAProxy`);
  await Promise.all(clients.map((c) => Promise.all(TOPICS.map((t) => c.client.subscribe(t)))));
  const publishers = TOPICS.map((t, i) => new SteadyPublisher(cluster.url, t, i, RATE));
  const log: string[] = [];
  try {
    await until(() => clients.every((c) => TOPICS.every((t) => tagged(c.received, t).length > 0)), 20_000, 'every client has a message of every topic');
    log.push(`join ${n5.spec.id}`);
    await startAndJoin(cluster, n5);
    await sleep(BETWEEN_MS);
    log.push(`kill -9 ${n3.spec.id}`);
    await n3.kill9();
    await until(() => clients.every((c) => c.open), MOVE_MS, `the clients of ${n3.spec.id} moved`);
    await untilViews(cluster, `${n3.spec.id} is dead to every node`);
    await sleep(BETWEEN_MS);
    log.push(`SIGTERM ${n1.spec.id} for good`);
    await n1.stop();
    await until(() => clients.every((c) => c.open), MOVE_MS, `the clients of ${n1.spec.id} moved`);
    await sleep(BETWEEN_MS);
    log.push(`${n3.spec.id} returns`);
    await startAndJoin(cluster, n3);
    await sleep(BETWEEN_MS);
  } finally {
    for (const p of publishers) await p.stop();
  }
  try {
    const want = (i: number) => publishers[i]!.acked;
    const told = (c: LbClient, topic: string) => c.resyncs.some((r) => r.topic === topic);
    await until(() => clients.every((c) => c.open && TOPICS.every((t, i) => told(c, t) || hasEvery(tagged(c.received, t), want(i)))), SETTLE_MS, 'every client has every message').catch(() => undefined);
    const resyncs = clients.reduce((a, c) => a + c.resyncs.length, 0);
    console.log(`  ${log.join('; ')} (${n4.spec.id} stayed); ${TOPICS.map((t, i) => `${want(i).size}`).join('+')} acknowledged; ${resyncs} resyncs`);
    for (const c of clients) {
      for (let i = 0; i < TOPICS.length; i++) {
        const topic = TOPICS[i]!;
        if (told(c, topic)) continue;
        const problem = checkStream(tagged(c.received, topic).filter((m) => m.p === i), want(i));
        assert.is(problem, null, `client ${c.index} (${c.opens.length} connections), ${topic}: ${problem}, never told to resync`);
      }
    }
  } finally {
    for (const c of clients) c.client.close();
    await stopAll();
  }
}

// Over Redis nobody owns a topic (Redis orders): the same churn checks that a node's arrival or
// departure costs its clients nothing either.
for (const bus of ['mesh', 'redis'] as const) {
  test(`${bus}: a node joins, one is killed, one stops for good and the killed one returns while six history topics are published to from every node: every message once and in order, or told`, async () => {
    await churn(bus);
  });
}

test.run();
