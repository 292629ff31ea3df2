// A publish to a topic the cluster orders (docs/serve-protocol.md, "Publishing to a history topic
// in a cluster"): answered once the bus says the message is held on two nodes, with its position,
// or with UNAVAILABLE / PUBLISH_BUSY; replies stay in order; a connection with
// maxWaitingPublishes replies waiting has its later frames held, within the held-frame bounds.
// The bus is a stub that orders when the test says so.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestClient, testApp, closeAll, http } from './helpers.js';
import type { Bus, OrderedDone, OrderedFailure, OrderingHost } from '../../src/pubsub/bus.js';
import { performance } from 'node:perf_hooks';
import { MurmurClient } from '../../src/app/public/murmur-client.js';
import type { WebSocketConstructor } from '../../src/app/public/murmur-client.js';
import { WebSocket } from '../../src/client/index.js';

test.after.each(closeAll);

/** An ordering bus that holds every publish until order() or fail() is called. */
class OrderingStub implements Bus {
  host: OrderingHost | null = null;
  readonly waiting: Array<{ topic: string; record: Buffer; except: object | null; done: OrderedDone | undefined }> = [];
  offset = 0;
  publish(): void {}
  onMessage(): void {}
  close(): void {}
  attachOrdering(host: OrderingHost): void {
    this.host = host;
  }
  publishOrdered(topic: string, record: Buffer, except: object | null, done?: OrderedDone): void {
    this.waiting.push({ topic, record, except, done });
  }
  /** Orders the oldest waiting publish: applies it here, then tells its publisher (as the mesh does). */
  order(): void {
    const w = this.waiting.shift()!;
    const position = { epoch: 'E1', offset: ++this.offset };
    this.host!.apply(w.topic, position, this.host!.frame(w.topic, position, w.record)!, w.except, true);
    w.done?.(position, null);
  }
  fail(failure: OrderedFailure): void {
    this.waiting.shift()!.done?.(null, failure);
  }
}

const open = { anonymous: { subscribe: ['*'], publish: ['*'], presence: ['*'] }, apiKey: 'k', historyTopics: ['room:*'] };

async function withStub(config: Record<string, unknown> = {}) {
  const t = await testApp({ ...open, ...config });
  const bus = new OrderingStub();
  t.app.realtime.server.useBus(bus);
  return { ...t, bus };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('the reply waits until the message is ordered, carries its position, and comes after the publisher\'s own copy; later replies wait behind it', async () => {
  const { ws, bus } = await withStub();
  const c = await TestClient.connect(ws);
  await c.request({ type: 'subscribe', topic: 'room:a' });
  c.send({ type: 'publish', topic: 'room:a', data: { n: 1 }, id: 1 });
  c.send({ type: 'ping', id: 2 });
  await until(() => bus.waiting.length === 1, 'the publish at the bus');
  await new Promise((r) => setTimeout(r, 50));
  assert.is(c.inbox.filter((x) => x.msg.type === 'reply').length, 0, 'no reply before the message is ordered, not even the ping\'s');
  bus.order();
  const msg = await c.next((m) => m.type === 'message');
  assert.equal([msg.epoch, msg.offset], ['E1', 1]);
  const replies = [await c.next((m) => m.type === 'reply'), await c.next((m) => m.type === 'reply')];
  assert.equal(replies.map((r) => r.id), [1, 2], 'in order');
  assert.equal([replies[0]!.epoch, replies[0]!.offset, replies[0]!.delivered], ['E1', 1, 1]);
  // With nothing waiting, replies go at once again.
  assert.is((await c.request({ type: 'ping' })).type, 'reply');
});

test('a publish the bus could not order gets UNAVAILABLE, one over its bound PUBLISH_BUSY: not published, the connection stays', async () => {
  const { ws, bus } = await withStub();
  const c = await TestClient.connect(ws);
  c.send({ type: 'publish', topic: 'room:a', data: 1, id: 1 });
  c.send({ type: 'publish', topic: 'room:a', data: 2, id: 2 });
  await until(() => bus.waiting.length === 2, 'both publishes at the bus');
  bus.fail('unavailable');
  bus.fail('busy');
  const e1 = await c.next((m) => m.type === 'error' && m.id === 1);
  const e2 = await c.next((m) => m.type === 'error' && m.id === 2);
  assert.is(e1.code, 'UNAVAILABLE');
  assert.is(e2.code, 'PUBLISH_BUSY');
  assert.is((await c.request({ type: 'ping' })).type, 'reply');
  // A topic the bus does not order (no history) is answered at once.
  assert.is((await c.request({ type: 'publish', topic: 'chat', data: 3 })).type, 'reply');
});

test('maxWaitingPublishes: at the bound the connection\'s later frames are held (not handled) until a reply goes; past the held-frame bound it is closed with 1008', async () => {
  const { ws, bus } = await withStub({ maxWaitingPublishes: 3, onlineHeldFrames: 2 });
  const c = await TestClient.connect(ws);
  for (let i = 1; i <= 4; i++) c.send({ type: 'publish', topic: 'room:a', data: i, id: i });
  c.send({ type: 'ping', id: 5 });
  await until(() => bus.waiting.length === 3, 'three publishes at the bus');
  await new Promise((r) => setTimeout(r, 50));
  assert.is(bus.waiting.length, 3, 'the fourth is held, not handled');
  bus.order();
  await until(() => bus.waiting.length === 3, 'the held publish handled once a reply went');
  for (let i = 0; i < 3; i++) bus.order();
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push((await c.next((m) => m.type === 'reply')).id);
  assert.equal(ids, [1, 2, 3, 4, 5]);
  // Three waiting, then more frames than onlineHeldFrames: closed.
  for (let i = 6; i <= 11; i++) c.send({ type: 'publish', topic: 'room:a', data: i, id: i });
  assert.is((await c.waitClosed()).code, 1008);
});

test('POST /api/publish to an ordered topic answers once ordered, with the position; 503 UNAVAILABLE when it could not be', async () => {
  const { http: base, bus } = await withStub();
  const post = () => http(`${base}/api/publish`, { method: 'POST', headers: { 'X-Api-Key': 'k', 'content-type': 'application/json' }, body: JSON.stringify({ topic: 'room:a', data: { x: 1 } }) });
  const ok = post();
  await until(() => bus.waiting.length === 1, 'the publish at the bus');
  bus.order();
  const r = await ok;
  assert.is(r.status, 200, r.body);
  assert.equal([JSON.parse(r.body).epoch, JSON.parse(r.body).offset], ['E1', 1]);
  const refused = post();
  await until(() => bus.waiting.length === 1, 'the second publish at the bus');
  bus.fail('unavailable');
  const f = await refused;
  assert.is(f.status, 503);
  assert.is(JSON.parse(f.body).error, 'UNAVAILABLE');
});

test('a node whose cluster bus is not attached yet (starting) refuses publishes to history topics with UNAVAILABLE and answers /readyz 503: they would reach this node only', async () => {
  const t = await testApp(open);
  t.app.realtime.busPending = true;
  const c = await TestClient.connect(t.ws);
  assert.is((await c.request({ type: 'publish', topic: 'room:a', data: 1 })).code, 'UNAVAILABLE');
  assert.is((await c.request({ type: 'publish', topic: 'chat', data: 1 })).type, 'reply', 'a topic without history is not ordered: published');
  const api = await http(`${t.http}/api/publish`, { method: 'POST', headers: { 'X-Api-Key': 'k', 'content-type': 'application/json' }, body: JSON.stringify({ topic: 'room:a', data: 1 }) });
  assert.is(api.status, 503);
  const ready = await http(`${t.http}/readyz`);
  assert.is(ready.status, 503);
  assert.match(ready.body, 'bus connecting');
  t.app.realtime.busPending = false;
  assert.is((await http(`${t.http}/readyz`)).status, 200);
});

test('a node whose cluster bus is not attached yet answers subscribes and history of history topics CATCHING_UP (a position of its own, or a refused recovery, would be false), which is not counted as abuse', async () => {
  const t = await testApp(open);
  t.app.realtime.busPending = true;
  const c = await TestClient.connect(t.ws);
  // More than abuseMaxErrors (20) within the abuse window: the connection stays open.
  for (let i = 0; i < 25; i++) {
    const since = { epoch: 'E', offset: i };
    const r = await c.request(i % 2 === 0 ? { type: 'subscribe', topic: 'room:a', since } : { type: 'history', topic: 'room:a' });
    assert.is(r.code, 'CATCHING_UP', JSON.stringify(r));
  }
  assert.is((await c.request({ type: 'subscribe', topic: 'room:a' })).code, 'CATCHING_UP', 'without since too: its position would be this node\'s own');
  assert.is((await c.request({ type: 'subscribe', topic: 'chat' })).type, 'reply', 'a topic without history is not ordered: subscribed');
  assert.is(c.closed, null);
  t.app.realtime.busPending = false;
  assert.is((await c.request({ type: 'subscribe', topic: 'room:a' })).type, 'reply');
});

test('murmur\'s client asks again, with backoff, a history answered CATCHING_UP, and gives up after its retries', async () => {
  const t = await testApp(open);
  t.app.realtime.busPending = true;
  const client = new MurmurClient({ url: t.ws, WebSocket: WebSocket as unknown as WebSocketConstructor, storage: null, backoffBaseMs: 50, backoffMaxMs: 100 });
  try {
    const asked = client.history('room:a');
    setTimeout(() => (t.app.realtime.busPending = false), 300).unref();
    const { reply } = await asked;
    assert.is(reply.topic, 'room:a');
    t.app.realtime.busPending = true;
    const err = await client.history('room:a').then(
      () => null,
      (e: { code: string }) => e,
    );
    assert.is(err?.code, 'CATCHING_UP', 'given up after its retries');
  } finally {
    client.close();
  }
});

test('an anonymous connection waiting for its publish\'s reply keeps its session at the sweep; at rest after the reply it holds its number again', async () => {
  const { app, ws, bus } = await withStub();
  const c = await TestClient.connect(ws);
  const data = (): unknown => {
    let d: unknown;
    app.realtime.server.forEachConnection((conn) => void (d = conn.data));
    return d;
  };
  const atRest = (): void => app.realtime.sweep(Date.now(), performance.now() + app.config.abuseWindowMs + 61_000);
  c.send({ type: 'publish', topic: 'room:a', data: 1, id: 1 });
  await until(() => bus.waiting.length === 1, 'the publish at the bus');
  atRest();
  assert.is(typeof data(), 'object', 'a session while its reply waits');
  bus.order();
  assert.is((await c.next((m) => m.type === 'reply')).id, 1);
  atRest();
  assert.is(typeof data(), 'number', 'its number once nothing waits');
});

test.run();
