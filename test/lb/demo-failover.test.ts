// The demo chat in a real browser (headless Chromium) through HAProxy in front of two `murmur
// serve` nodes, while messages are published to its room at a steady rate through the HTTP API:
// the node the page is connected to is killed (kill -9). The page's client reconnects through
// HAProxy to the other node and recovers from its last position: every acknowledged message is
// on screen once, in order, and the page never says it could not recover. For each bus that
// orders history topics.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { API_KEY, httpGet, httpPost, sleep, startCluster, stopAll, until } from './lb.js';
import type { BusKind, Cluster, Node } from './lb.js';
import { closeBrowser, joinRoom, launch, logLines, sees } from '../e2e/chromium.js';

const ROOM = 'failover';
/** Messages a second, and how many before and after the kill. */
const RATE = 8;
const BEFORE = 10;
const AFTER = 30;

/** Open WebSockets on `node` (the page is the only WebSocket client). */
async function openSockets(node: Node): Promise<number> {
  const m = /^murmur_connections (\d+)$/m.exec((await httpGet(`${node.http}/metrics`, { authorization: `Bearer ${API_KEY}` })).body);
  return m === null ? -1 : Number(m[1]);
}

async function demoAcrossKill(bus: BusKind): Promise<void> {
  const cluster: Cluster = await startCluster(bus, 2);
  const base = `http://127.0.0.1:${cluster.lbPort}`;
  try {
    const context = await launch();
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await joinRoom(page, base, 'Ann', ROOM);

    // One publisher through HAProxy; a publish whose answer is 200 was acknowledged.
    const acked: number[] = [];
    let n = 0;
    let stop = false;
    const publisher = (async () => {
      while (!stop) {
        const k = ++n;
        const r = await httpPost(`${base}/api/publish`, JSON.stringify({ topic: `room:${ROOM}`, data: { name: 'server', text: `m${k}.` } }), { authorization: `Bearer ${API_KEY}` });
        if (r.status === 200) acked.push(k);
        await sleep(1000 / RATE);
      }
    })();
    await sees(page, `m${BEFORE}.`, 20_000);

    let victim: Node | null = null;
    await until(async () => {
      for (const node of cluster.nodes) if ((await openSockets(node)) === 1) victim = node;
      return victim !== null;
    }, 10_000, "the page's node");
    await victim!.kill9();
    const killedAt = n;
    await until(() => n >= killedAt + AFTER, 30_000, `${AFTER} more publishes`);
    stop = true;
    await publisher;
    const last = acked[acked.length - 1]!;
    assert.ok(acked.filter((k) => k > killedAt).length >= AFTER / 2, `publishes acknowledged after the kill: ${acked.filter((k) => k > killedAt).join(',')}`);
    await sees(page, `m${last}.`, 20_000);
    await sleep(500);

    const lines = await logLines(page);
    const shown = lines.flatMap((l) => /^server:\s*m(\d+)\.$/.exec(l.trim()) ?? []).filter((x, i) => i % 2 === 1).map(Number);
    const problems: string[] = [];
    for (const k of acked) {
      const times = shown.filter((x) => x === k).length;
      if (times !== 1) problems.push(`m${k} shown ${times} times`);
    }
    for (let i = 1; i < shown.length; i++) if (shown[i]! <= shown[i - 1]!) problems.push(`m${shown[i]} after m${shown[i - 1]}`);
    assert.equal(problems, [], `on screen: ${lines.join(' | ')}`);
    assert.not.ok(lines.some((l) => l.includes('could not be recovered')), 'no resync');
    assert.equal(pageErrors, []);
    console.log(`  ${bus}: ${victim!.spec.id} killed after m${killedAt}; ${acked.length} of ${n} publishes acknowledged, all on screen once and in order`);
  } finally {
    await closeBrowser();
    await stopAll();
  }
}

for (const bus of ['mesh', 'redis'] as const) {
  test(`${bus}: the demo chat through HAProxy shows every acknowledged message once, in order, across a kill -9 of the node it is connected to`, () => demoAcrossKill(bus));
}

test.run();
