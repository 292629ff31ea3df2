// History under a flood of new topics from anonymous clients: a subscribed room keeps its
// history, new rooms still get one, and the history metric counts what is really held.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestClient, testApp, cleanup, closeAll } from './helpers.js';

/** The murmur_history_bytes sample of a Prometheus text. */
function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (m === null) throw new Error(`${name} missing`);
  return Number(m[1]);
}

test('anonymous clients flooding new topics do not take history from a subscribed room or from rooms made after', async () => {
  // Default anonymous permissions (room:*) and history patterns; the rate limit raised so the
  // flood is bounded by the topic-creation limit, not by the command rate.
  const { app, ws } = await testApp({ historyMaxTopics: 2000, rateLimit: 10_000, rateBurst: 10_000 });
  const legit = await TestClient.connect(ws);
  await legit.request({ type: 'subscribe', topic: 'room:legit' });
  for (let i = 1; i <= 5; i++) await legit.request({ type: 'publish', topic: 'room:legit', data: i, echo: false });

  // 40 anonymous connections each publish once to 100 new topics: 4,000 topics asked for.
  const flooders = await Promise.all(Array.from({ length: 40 }, () => TestClient.connect(ws)));
  flooders.forEach((c, k) => {
    for (let i = 0; i < 100; i++) c.send({ type: 'publish', topic: `room:flood-${k}-${i}`, data: 'x', id: i });
  });
  // Each flooder is answered to the last command, or closed for abuse on the way.
  await Promise.all(
    flooders.map((c) =>
      c.next((m) => m.id === 99, 20_000).catch((err: unknown) => {
        if (c.closed === null) throw err;
      }),
    ),
  );
  const ps = app.realtime.server.pubsub;
  assert.ok(app.realtime.historyTopicCount <= 2000);

  const h = await legit.request({ type: 'history', topic: 'room:legit', limit: 10 });
  assert.is(h.replayed, 5, 'the subscribed room still has its history');
  const late = await TestClient.connect(ws);
  const r = await late.request({ type: 'publish', topic: 'room:after-flood', data: 1 });
  assert.is(r.offset, 1, 'a room made after the flood gets a history');

  // The metric counts ring capacity, not only frame bytes; a flood topic holds a small ring.
  let slots = 0;
  for (const t of ps.topics.values()) if (t.history !== null) slots += t.history.capacity;
  assert.ok(slots <= ps.historyTopicCount * 8 + 64, `ring slots held: ${slots}`);
  const held = metric(app.localMetrics(), 'murmur_history_bytes');
  assert.ok(held >= slots * 16, `murmur_history_bytes ${held} counts the ${slots} ring slots`);
  assert.ok(held <= ps.historyTopicCount * 2048, `murmur_history_bytes ${held}: about 1 KiB per one-message topic`);
  // Each flooder created 60 topics, then got TOO_MANY_NEW_TOPICS until the abuse close.
  assert.ok(flooders.every((c) => c.closed?.code === 1008), 'flooders are closed for abuse');
  await cleanup(app, legit, late);
});

test.after.each(closeAll);

test.run();
