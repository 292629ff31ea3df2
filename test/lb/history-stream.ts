// The stream behind the history-failover tests (docs/cluster.md, "Cluster-wide positions"):
// subscribers through HAProxy, one publisher at a steady rate, something done to a node
// mid-stream, and the check that every subscriber ends with every acknowledged message exactly
// once, in order, at one position on every node, without being told to resync.
import * as assert from 'uvu/assert';
import { LbClient, until, sleep, tagged, httpGet, checkStream, hasEvery } from './lb.js';
import type { Cluster, Node } from './lb.js';
import { MurmurClient } from '../../src/app/public/murmur-client.js';
import type { WebSocketConstructor } from '../../src/app/public/murmur-client.js';
import { WebSocket } from '../../src/client/index.js';
import { ownerAndReplica } from '../../src/cluster/bus/ordering.js';

const SUBSCRIBERS = 30;
const RATE = 200;
const MESSAGES = 800;
/**
 * From the kill to the last message: LAN failure detection (about 6 s, under 10 s at 3 nodes,
 * docs/cluster.md) plus a resend period, plus the rest of the stream; generous for a loaded machine.
 */
const SETTLE_MS = 30_000;

/**
 * A publisher (message n = {p: 0, n}, RATE a second) from `url`, for at least MESSAGES
 * messages and until `action` (started after a quarter of them) is done. Returns the
 * numbers published and those whose publish the server acknowledged.
 */
async function publishStream(url: string | (() => string), action: () => Promise<void>): Promise<{ sent: number; acked: Set<number> }> {
  // A URL chosen at each connect: a publisher whose node goes reconnects to another.
  const pick = typeof url === 'string' ? () => url : url;
  const Ws = typeof url === 'string' ? WebSocket : class extends WebSocket {
    constructor(_url: string, protocols?: string | string[]) {
      super(pick(), protocols);
    }
  };
  const pub = new MurmurClient({ url: typeof url === 'string' ? url : url(), WebSocket: Ws as unknown as WebSocketConstructor, storage: null, requestTimeoutMs: 10_000, backoffBaseMs: 100, backoffMaxMs: 500 });
  await until(() => pub.state === 'open', 10_000, 'the publisher is connected');
  const acked = new Set<number>();
  const replies: Promise<unknown>[] = [];
  let done: Promise<void> | null = null;
  let finished = false;
  const start = performance.now();
  let n = 0;
  for (; n < MESSAGES || !finished; n++) {
    const k = n;
    replies.push(pub.publish(TOPIC.current, { p: 0, n: k }).then(() => acked.add(k), () => undefined));
    if (n === MESSAGES / 4) done = action().then(() => { finished = true; });
    const wait = start + ((n + 1) * 1000) / RATE - performance.now();
    if (wait > 0) await sleep(wait);
  }
  await done;
  await Promise.all(replies);
  pub.close();
  return { sent: n, acked };
}

const TOPIC = { current: '' };

export type Pick3 = (owner: Node, replica: Node, other: Node) => Node;

export async function run(cluster: Cluster, topic: string, publisherUrl: (owner: Node, replica: Node, other: Node) => string | (() => string), action: (owner: Node, replica: Node, other: Node) => Promise<void>): Promise<void> {
  TOPIC.current = topic;
  const ids = cluster.nodes.map((n) => n.spec.id);
  const [ownerId, replicaId] = ownerAndReplica(topic, ids);
  const owner = cluster.nodes.find((n) => n.spec.id === ownerId)!;
  const replica = cluster.nodes.find((n) => n.spec.id === replicaId)!;
  const other = cluster.nodes.find((n) => n !== owner && n !== replica)!;

  const subs: LbClient[] = [];
  try {
    for (let i = 0; i < SUBSCRIBERS; i++) subs.push(new LbClient(i, cluster.url));
    await until(() => subs.every((c) => c.open), 20_000, 'subscribers open through HAProxy');
    await Promise.all(subs.map((c) => c.client.subscribe(topic)));
    // The topic has a line before anything happens to a node (the failures tested are of a
    // busy topic mid-stream): one message, {p: -1}, that every subscriber gets first, which
    // also gives each of them a position to recover from.
    const warm = new MurmurClient({ url: cluster.url, WebSocket: WebSocket as unknown as WebSocketConstructor, storage: null, requestTimeoutMs: 10_000 });
    await until(() => warm.state === 'open', 10_000, 'the warm-up publisher is connected');
    await warm.publish(topic, { p: -1, n: -1 });
    warm.close();
    await until(() => subs.every((c) => tagged(c.received, topic).some((m) => m.p === -1)), 20_000, 'every subscriber has the first message');
    const stream = (c: LbClient) => tagged(c.received, topic).filter((m) => m.p === 0);

    const { acked } = await publishStream(publisherUrl(owner, replica, other), () => action(owner, replica, other));
    await until(() => subs.every((c) => c.open && hasEvery(stream(c), acked)), SETTLE_MS, 'every subscriber has every message').catch(() => undefined);

    const moved = subs.filter((c) => c.opens.length > 1).length;
    assert.ok(moved > 0, 'some subscribers were on a node that went and reconnected elsewhere');
    for (const c of subs) {
      const problem = checkStream(stream(c), acked);
      if (problem !== null) {
        const around = c.received.filter((m) => m.topic === topic).map((m) => `${(m.data as { n: number }).n}@${m.epoch}/${m.offset}`);
        const k = Number(/message (\d+)/.exec(problem)?.[1] ?? 0);
        const i = around.findIndex((x) => Number(x.split('@')[0]) >= k - 3);
        console.error(`subscriber ${c.index}: ${around.slice(Math.max(0, i - 3), i + 12).join(' ')} ... last ${around.at(-1)}; closes ${JSON.stringify(c.closes)} opens ${JSON.stringify(c.opens)}`);
        for (const n of cluster.nodes) if (n.child !== null) console.error(`${n.spec.id}:`, (await httpGet(`${n.http}/metrics`)).body.split('\n').filter((l) => /bus_|ordered|unrepl|misrout|forward|gap|epoch/.test(l) && !l.startsWith('#')).join(' | '));
      }
      assert.is(problem, null, `subscriber ${c.index} (${c.opens.length} connections): ${problem}`);
      assert.equal(c.resyncs, [], `subscriber ${c.index} was told to resync`);
    }
    // One position space: every message has the same {epoch, offset} for every subscriber.
    const first = new Map<number, string>();
    for (const c of subs) {
      for (const m of c.received) {
        if (m.topic !== topic || (m.data as { p: number }).p !== 0) continue;
        const key = `${m.epoch}/${m.offset}`;
        const n = (m.data as { n: number }).n;
        const seen = first.get(n);
        if (seen === undefined) first.set(n, key);
        else assert.is(key, seen, `message ${n} has one position on every node`);
      }
    }
  } finally {
    // Also when a check fails: reconnecting clients would keep the test process alive.
    for (const c of subs) c.client.close();
  }
}

/** The ws URL of the node `pick` chooses among (owner, replica, other) of the mesh's ownership (any three nodes on Redis). */
export const direct = (pick: Pick3) => (o: Node, r: Node, x: Node) => `ws://127.0.0.1:${pick(o, r, x).spec.port}/ws`;

/** Numbered messages {p: topic index, n} at a steady rate, through HAProxy; the numbers whose publish was acknowledged. */
export class SteadyPublisher {
  readonly acked = new Set<number>();
  readonly #client: MurmurClient;
  readonly #replies: Promise<unknown>[] = [];
  #running = true;
  readonly #done: Promise<void>;

  constructor(url: string, topic: string, index: number, rate: number) {
    this.#client = new MurmurClient({ url, WebSocket: WebSocket as unknown as WebSocketConstructor, storage: null, requestTimeoutMs: 10_000, backoffBaseMs: 100, backoffMaxMs: 500 });
    this.#done = this.#run(topic, index, rate);
  }

  async #run(topic: string, index: number, rate: number): Promise<void> {
    const client = this.#client;
    await until(() => client.state === 'open', 10_000, `publisher of ${topic} connected`);
    const start = performance.now();
    for (let n = 0; this.#running; n++) {
      this.#replies.push(client.publish(topic, { p: index, n }).then(() => this.acked.add(n), () => undefined));
      const wait = start + ((n + 1) * 1000) / rate - performance.now();
      if (wait > 0) await sleep(wait);
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#done;
    await Promise.all(this.#replies);
    this.#client.close();
  }
}
