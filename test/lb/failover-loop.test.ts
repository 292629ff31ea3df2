// Failover, again and again: 300 clients through HAProxy subscribed to several history topics,
// a steady publisher per topic (through HAProxy too), and rounds of node failures: kill -9 of a
// node (the owner of the busiest topic in the first round), SIGTERM of another, then a rolling
// restart of every node. Every client ends with every message it was promised exactly once, in
// order, without being told to resync. Written once for every bus that orders history topics;
// what depends on the bus is in BUSES. A publish's reply comes once the message is held on two
// nodes (or Redis), so every acknowledged message is promised, whatever node died when; one
// whose reply never came may appear once, anywhere.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startCluster, stopAll, LbClient, until, tagged, checkStream, hasEvery, httpGet } from './lb.js';
import type { BusKind, Cluster, Node } from './lb.js';
import { restartNode, restartInTurn, untilWhole } from './scenarios.js';
import { SteadyPublisher } from './history-stream.js';
import { ownerAndReplica } from '../../src/cluster/bus/ordering.js';

/** The buses under test, and what the test needs to know of each: the node that orders a topic. */
interface BusCase {
  bus: BusKind;
  ownerOf(topic: string, ids: string[]): string | null;
}
const BUSES: BusCase[] = [
  { bus: 'mesh', ownerOf: (topic, ids) => ownerAndReplica(topic, ids)[0] },
  // Redis orders: no node owns a topic, any node may be the one killed first.
  { bus: 'redis', ownerOf: () => null },
];

const CLIENTS = 300;
/** Messages a second per topic: the first is the busiest. 60 a second to 300 clients: 18,000 deliveries a second on a 2-core machine shared with others. */
const TOPICS = [
  { name: 'room:loop-busy', rate: 40 },
  { name: 'room:loop-b', rate: 10 },
  { name: 'room:loop-c', rate: 10 },
];
/** Each round kills one node, stops another and restarts all in turn: about 10 s on a quiet machine, several times that on a loaded one. */
const ROUNDS = 3;
/** From the last restart to every client holding every message: a resend period and catch-ups, with room for a loaded machine. */
const SETTLE_MS = 30_000;
/** How long the clients of a node that went may take to be connected again (HAProxy's checks, the clients' backoff, a loaded machine). */
const MOVE_MS = 20_000;

test.after(stopAll);

/** kill -9 of `node`; once its clients are connected elsewhere, it is started again and rejoins. */
async function crashAndRestart(cluster: Cluster, node: Node, clients: LbClient[]): Promise<void> {
  await node.kill9();
  await until(() => clients.every((c) => c.open), MOVE_MS, `the clients of ${node.spec.id} moved`);
  await node.start();
  await until(async () => (await node.readyz()) === 200, 10_000, `${node.spec.id} ready again`);
  await untilWhole(cluster, `${node.spec.id} rejoined the cluster`);
}

async function failoverLoop(bc: BusCase): Promise<void> {
  const cluster = await startCluster(bc.bus, 3);
  const ids = cluster.nodes.map((n) => n.spec.id);
  const pick = (not: Node | null) => {
    const others = cluster.nodes.filter((n) => n !== not);
    return others[Math.floor(Math.random() * others.length)]!;
  };
  const clients: LbClient[] = [];
  for (let i = 0; i < CLIENTS; i++) clients.push(new LbClient(i, cluster.url));
  await until(() => clients.every((c) => c.open), 30_000, `${CLIENTS} clients open through HAProxy`);
  await Promise.all(clients.map((c) => Promise.all(TOPICS.map((t) => c.client.subscribe(t.name)))));

  const publishers = TOPICS.map((t, i) => new SteadyPublisher(cluster.url, t.name, i, t.rate));
  const log: string[] = [];
  try {
    // The first node dies right after the clients subscribed, before most of them got anything:
    // the positions their subscribes were given are the cluster's (on the mesh, the epoch the
    // topic's owner reserved for its first message, held by its replica too), never a node's own.
    for (let round = 0; round < ROUNDS; round++) {
      const owner = bc.ownerOf(TOPICS[0]!.name, ids);
      const victim = round === 0 && owner !== null ? cluster.nodes.find((n) => n.spec.id === owner)! : pick(null);
      log.push(`round ${round + 1}: kill -9 ${victim.spec.id}${victim.spec.id === owner ? ' (owner of the busiest topic)' : ''}`);
      await crashAndRestart(cluster, victim, clients);
      const stopped = pick(victim);
      log.push(`SIGTERM ${stopped.spec.id}`);
      await restartNode(cluster, stopped);
      log.push('rolling restart');
      await restartInTurn(cluster);
    }
  } finally {
    for (const p of publishers) await p.stop();
  }

  const want = (i: number) => publishers[i]!.acked;
  try {
    await until(() => clients.every((c) => c.open && TOPICS.every((t, i) => hasEvery(tagged(c.received, t.name), want(i)))), SETTLE_MS, 'every client has every message').catch(() => undefined);
    console.log(`  ${bc.bus}: ${log.join('; ')}; ${TOPICS.map((t, i) => `${t.name} ${publishers[i]!.acked.size} acknowledged`).join(', ')}`);
    for (const c of clients) {
      for (let i = 0; i < TOPICS.length; i++) {
        const topic = TOPICS[i]!.name;
        const problem = checkStream(tagged(c.received, topic).filter((m) => m.p === i), want(i));
        if (problem !== null) {
          const k = Number(/message (\d+)/.exec(problem)?.[1] ?? -1);
          console.error(`message ${k} of ${topic} ${want(i).has(k) ? 'was' : 'was not'} acknowledged`);
          await explain(cluster, c, topic, problem);
        }
        const told = c.resyncs.length === 0 ? '' : `; told to resync: ${JSON.stringify(c.resyncs)}`;
        assert.is(problem, null, `client ${c.index} (${c.opens.length} connections), ${topic}: ${problem}${told}`);
      }
      if (c.resyncs.length > 0) await explain(cluster, c, c.resyncs[0]!.topic, 'told to resync');
      assert.equal(c.resyncs, [], `client ${c.index} was told to resync`);
    }
  } finally {
    for (const c of clients) c.client.close();
    await stopAll();
  }
}

/** Prints the messages of `topic` around the problem (number@epoch/offset) and every node's ordering figures. */
async function explain(cluster: Cluster, c: LbClient, topic: string, problem: string): Promise<void> {
  const around = c.received.filter((m) => m.topic === topic).map((m) => `${(m.data as { n: number }).n}@${m.epoch}/${m.offset}`);
  const k = Number(/message (\d+)/.exec(problem)?.[1] ?? 0);
  const i = around.findIndex((x) => Number(x.split('@')[0]) >= k - 3);
  console.error(`client ${c.index}: ${around.slice(Math.max(0, i - 3), i + 12).join(' ')} ... ; closes ${JSON.stringify(c.closes)} opens ${JSON.stringify(c.opens)}`);
  for (const n of cluster.nodes) {
    if (n.child === null) continue;
    const lines = (await httpGet(`${n.http}/metrics`)).body.split('\n').filter((l) => /ordered|unrepl|misrout|forward|gap|epoch|fill|tail|conflict/.test(l) && !l.startsWith('#'));
    console.error(`${n.spec.id}: ${lines.map((l) => l.replace('murmur_bus_', '')).join(' | ')}`);
  }
}

// LOOP_BUS=mesh (or redis) runs one bus only.
for (const bc of BUSES.filter((b) => process.env.LOOP_BUS === undefined || b.bus === process.env.LOOP_BUS)) {
  test(`${bc.bus}: ${ROUNDS} rounds of kill -9, SIGTERM and a rolling restart under steady publishing to ${CLIENTS} clients: every message once, in order, no resync`, async () => {
    await failoverLoop(bc);
  });
}

test.run();
