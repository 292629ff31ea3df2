/**
 * Helpers of the rebalancing tests behind HAProxy (leastconn): thousands of clients connected
 * in batches, each node's share of the connections, the clients' reconnections per second,
 * and a publisher whose numbered messages every client counts (lost, duplicated).
 */
import { LbClient, httpGet, httpPost, sleep, tagged, until, API_KEY } from './lb.js';
import type { Cluster, Node } from './lb.js';
import { connectionsPerNode } from './scenarios.js';

export const ROOM = 'room:balance';
/** The publisher's messages carry p = this (clients never publish in these tests). */
const PUBLISHER = -1;

/** Opens `n` clients through HAProxy in batches (a burst of thousands of handshakes from one address meets the per-address limits), each subscribed to ROOM. */
export async function connectMany(cluster: Cluster, n: number, batch = 250): Promise<LbClient[]> {
  const clients: LbClient[] = [];
  for (let i = 0; i < n; i += batch) {
    const part: LbClient[] = [];
    for (let j = i; j < Math.min(n, i + batch); j++) part.push(new LbClient(j, cluster.url));
    await until(() => part.every((c) => c.open), 30_000, `clients ${i}-${i + part.length - 1} open`);
    await Promise.all(part.map((c) => c.client.subscribe(ROOM)));
    clients.push(...part);
  }
  return clients;
}

/** Each running node's share of the connections (its /metrics murmur_connections), in node order. */
export async function shares(nodes: Node[]): Promise<{ counts: number[]; shares: number[] }> {
  const live = nodes.filter((n) => n.child !== null);
  const counts = await connectionsPerNode(live);
  const total = counts.reduce((a, b) => a + b, 0);
  return { counts, shares: counts.map((c) => (total === 0 ? 0 : c / total)) };
}

/** Waits until every running node holds 1/n +/- `tolerance` of the connections and `clients` are all open; returns the ms it took. */
export async function untilBalanced(nodes: Node[], clients: LbClient[], timeoutMs: number, tolerance = 0.05): Promise<number> {
  let last = '';
  return until(
    async () => {
      const live = nodes.filter((n) => n.child !== null).length;
      const s = await shares(nodes);
      last = s.counts.join(', ');
      return clients.every((c) => c.open) && s.shares.every((x) => Math.abs(x - 1 / live) <= tolerance);
    },
    timeoutMs,
    `every node within ${tolerance * 100}% of an equal share (last: ${last})`,
    500,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; connections per node: ${last}`);
  });
}

/** Reconnections (opens after the first) of all clients, counted per wall-clock second from `since`. */
export function reconnectsPerSecond(clients: LbClient[], since: number): { total: number; max: number } {
  const per = new Map<number, number>();
  let total = 0;
  for (const c of clients) {
    for (const at of c.opens.slice(1)) {
      if (at < since) continue;
      const s = Math.floor(at / 1000);
      per.set(s, (per.get(s) ?? 0) + 1);
      total++;
    }
  }
  return { total, max: Math.max(0, ...per.values()) };
}

/** Sum of every node's murmur_shed_connections_total, by reason. */
export async function shedTotals(nodes: Node[]): Promise<{ rebalance: number; overload: number }> {
  const out = { rebalance: 0, overload: 0 };
  for (const node of nodes) {
    if (node.child === null) continue;
    const body = (await httpGet(`${node.http}/metrics`)).body;
    for (const r of ['rebalance', 'overload'] as const) {
      const m = new RegExp(`^murmur_shed_connections_total\\{reason="${r}"\\} (\\d+)$`, 'm').exec(body);
      out[r] += m === null ? 0 : Number(m[1]);
    }
  }
  return out;
}

/** Waits until no node sheds for rebalancing any more (the count holds for 3 s). */
export async function untilShedStops(nodes: Node[]): Promise<void> {
  let prev = -1;
  await until(async () => {
    const n = (await shedTotals(nodes)).rebalance;
    const same = n === prev;
    prev = n;
    return same;
  }, 60_000, 'shedding stops', 3000);
}

/** Posts numbered messages to ROOM through HAProxy every `everyMs` until stopped. */
export class Publisher {
  sent = 0;
  failed = 0;
  /** The numbers whose post was answered 200: the messages every client must get. */
  readonly acked = new Set<number>();
  #running = true;
  readonly #done: Promise<void>;

  constructor(cluster: Cluster, everyMs: number) {
    const url = `http://127.0.0.1:${cluster.lbPort}/api/publish`;
    this.#done = (async () => {
      while (this.#running) {
        // a number is never posted twice (a lost answer may still have been published)
        const n = this.sent++;
        const r = await httpPost(url, JSON.stringify({ topic: ROOM, data: { p: PUBLISHER, n } }), { authorization: `Bearer ${API_KEY}` });
        if (r.status === 200) this.acked.add(n);
        else this.failed++;
        await sleep(everyMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#done;
  }
}

/**
 * Messages of the publisher each client missed or got twice, summed over clients. Lost: a post
 * answered 200 that a client never got (a failed post promised nothing).
 */
export function deliveryFigures(clients: LbClient[], publisher: { acked: ReadonlySet<number> }): { lost: number; duplicated: number; clientsWithLoss: number } {
  let lost = 0;
  let duplicated = 0;
  let clientsWithLoss = 0;
  for (const c of clients) {
    const seen = new Set<number>();
    for (const m of tagged(c.received, ROOM)) {
      if (m.p !== PUBLISHER) continue;
      if (seen.has(m.n)) duplicated++;
      seen.add(m.n);
    }
    let missing = 0;
    for (const n of publisher.acked) if (!seen.has(n)) missing++;
    lost += missing;
    if (missing > 0) clientsWithLoss++;
  }
  return { lost, duplicated, clientsWithLoss };
}

/** Waits until every message posted reached every client that will get it (no change for a second). */
export async function settle(clients: LbClient[]): Promise<void> {
  let prev = -1;
  await until(() => {
    const n = clients.reduce((a, c) => a + c.received.length, 0);
    const same = n === prev;
    prev = n;
    return same;
  }, 30_000, 'deliveries settle', 1000);
}
