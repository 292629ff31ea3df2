// The wire protocol of murmur serve (docs/serve-protocol.md), through real sockets: every command,
// every error code, throttling, ordering, binary payloads, history and recovery.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestClient, testApp, cleanup, closeAll } from './helpers.js';
import type { Json } from './helpers.js';
import { AppErrorCode, encodeBinaryPublish } from '../../src/app/serve-protocol.js';
import { RawClient, upgradeRequest, clientFrame } from '../helpers/net.js';

const open = { anonymous: { subscribe: ['*'], publish: ['*'], presence: ['*'] } };

test('welcome: connection id, user, permissions and limits come first', async () => {
  const { app, ws } = await testApp(open);
  const c = await TestClient.connect(ws);
  const w = c.welcome!;
  assert.is(w.type, 'welcome');
  assert.is(w.protocol, 1);
  assert.is(w.anonymous, true);
  assert.match(w.user, /^anon-/);
  assert.type(w.conn, 'string');
  assert.equal(w.permissions.subscribe, ['*']);
  assert.is(w.limits.maxMessageBytes, app.config.maxMessageBytes);
  await cleanup(app, c);
});

test('ping, subscribe, publish, unsubscribe: replies carry the request id', async () => {
  const { app, ws } = await testApp(open);
  const a = await TestClient.connect(ws);
  const b = await TestClient.connect(ws);
  const pong = await a.request({ type: 'ping' });
  assert.is(pong.type, 'reply');
  assert.type(pong.time, 'number');
  const sub = await b.request({ type: 'subscribe', topic: 'room:1' });
  assert.is(sub.type, 'reply');
  assert.is(sub.topic, 'room:1');
  assert.is(sub.already, false);
  assert.equal(sub.position, { epoch: sub.position.epoch, offset: 0 });
  assert.is((await b.request({ type: 'subscribe', topic: 'room:1' })).already, true);

  const pub = await a.request({ type: 'publish', topic: 'room:1', data: { text: 'hi', n: [1, 2] } });
  assert.is(pub.delivered, 1);
  assert.is(pub.offset, 1);
  assert.is(pub.epoch, sub.position.epoch);
  const [m] = await b.messages('room:1', 1);
  assert.equal(m, { type: 'message', topic: 'room:1', epoch: sub.position.epoch, offset: 1, from: a.welcome!.user, data: { text: 'hi', n: [1, 2] } });

  // String ids work too, and are echoed as given.
  b.send({ type: 'unsubscribe', topic: 'room:1', id: 'u-1' });
  const unsub = await b.next((x) => x.id === 'u-1');
  assert.is(unsub.unsubscribed, true);
  await a.request({ type: 'publish', topic: 'room:1', data: 2 });
  assert.is((await b.request({ type: 'ping' })).type, 'reply');
  assert.not.ok(b.inbox.some((x) => x.msg.type === 'message'), 'no message after unsubscribe');
  await cleanup(app, a, b);
});

test('publish echoes to the sender when subscribed, unless echo is false; topics without history carry no offset', async () => {
  const { app, ws } = await testApp(open);
  const a = await TestClient.connect(ws);
  await a.request({ type: 'subscribe', topic: 'news' });
  await a.request({ type: 'publish', topic: 'news', data: 'one' });
  const [m] = await a.messages('news', 1);
  assert.equal(m, { type: 'message', topic: 'news', from: a.welcome!.user, data: 'one' });
  const r = await a.request({ type: 'publish', topic: 'news', data: 'two', echo: false });
  assert.is(r.delivered, 0);
  assert.is(r.offset, undefined);
  await a.request({ type: 'ping' });
  assert.not.ok(a.inbox.some((x) => x.msg.type === 'message'));
  await cleanup(app, a);
});

test('ordering: one publisher, one subscriber: every message in order with consecutive offsets, replies in command order', async () => {
  const { app, ws } = await testApp({ ...open, rateBurst: 1000 });
  const pub = await TestClient.connect(ws);
  const sub = await TestClient.connect(ws);
  await sub.request({ type: 'subscribe', topic: 'room:order' });
  for (let i = 1; i <= 300; i++) pub.send({ type: 'publish', topic: 'room:order', data: i, id: i });
  const got = await sub.messages('room:order', 300);
  assert.equal(
    got.map((m) => m.data),
    Array.from({ length: 300 }, (_, i) => i + 1),
  );
  assert.equal(
    got.map((m) => m.offset),
    Array.from({ length: 300 }, (_, i) => i + 1),
  );
  const replies: number[] = [];
  for (let i = 1; i <= 300; i++) replies.push((await pub.next((m) => m.type === 'reply')).id as number);
  assert.equal(
    replies,
    Array.from({ length: 300 }, (_, i) => i + 1),
  );
  await cleanup(app, pub, sub);
});

test('binary: [u16 header length][JSON header][payload] both ways, bytes unchanged, with offsets', async () => {
  const { app, ws } = await testApp(open);
  const a = await TestClient.connect(ws);
  const b = await TestClient.connect(ws);
  await b.request({ type: 'subscribe', topic: 'room:bin' });
  const payload = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  a.send(encodeBinaryPublish({ topic: 'room:bin', id: 7 }, payload));
  const reply = await a.next((m) => m.id === 7);
  assert.is(reply.type, 'reply');
  assert.is(reply.offset, 1);
  const got = await b.nextBinary();
  assert.equal(got.msg, { type: 'message', topic: 'room:bin', epoch: reply.epoch, offset: 1, from: a.welcome!.user });
  assert.ok(got.payload.equals(payload));
  // An empty payload is a message too.
  a.send(encodeBinaryPublish({ topic: 'room:bin' }, Buffer.alloc(0)));
  assert.is((await b.nextBinary()).payload.length, 0);
  await cleanup(app, a, b);
});

test('errors: every malformed command gets an error reply with a stable code, and the connection stays up', async () => {
  const { app, ws } = await testApp({ ...open, abuseMaxErrors: 100, maxSubscriptions: 2 });
  const c = await TestClient.connect(ws);
  const cases: Array<[Json | string | Buffer, string]> = [
    ['{not json', 'BAD_JSON'],
    ['[1,2]', 'BAD_COMMAND'],
    ['"subscribe"', 'BAD_COMMAND'],
    [{ topic: 'x' }, 'BAD_COMMAND'],
    [{ type: 'shout' }, 'UNKNOWN_COMMAND'],
    [{ type: 'subscribe' }, 'MISSING_FIELD'],
    [{ type: 'publish', topic: 'room:a' }, 'MISSING_FIELD'],
    [{ type: 'presence', topic: 'room:a' }, 'MISSING_FIELD'],
    [{ type: 'presence', action: 'online' }, 'MISSING_FIELD'],
    [{ type: 'presence', action: 'dance', topic: 'room:a' }, 'BAD_FIELD'],
    [{ type: 'subscribe', topic: 'room:a', since: { epoch: 1, offset: 'x' } }, 'BAD_FIELD'],
    [{ type: 'subscribe', topic: 'room:a', since: { epoch: 'e', offset: -1 } }, 'BAD_FIELD'],
    [{ type: 'subscribe', topic: 'room:a', since: { epoch: 'e', offset: 1 }, rewind: 2 }, 'BAD_FIELD'],
    [{ type: 'subscribe', topic: 'room:a', presence: 'yes' }, 'BAD_FIELD'],
    [{ type: 'history', topic: 'room:a', limit: 0 }, 'BAD_FIELD'],
    [{ type: 'subscribe', topic: 5 }, 'BAD_TOPIC'],
    [{ type: 'subscribe', topic: '' }, 'BAD_TOPIC'],
    [{ type: 'subscribe', topic: '$p:room:a' }, 'BAD_TOPIC'],
    [{ type: 'subscribe', topic: 'a\nb' }, 'BAD_TOPIC'],
    [{ type: 'subscribe', topic: 'x'.repeat(201) }, 'BAD_TOPIC'],
    [{ type: 'history', topic: 'news' }, 'NO_HISTORY'],
    [{ type: 'presence', action: 'join', topic: 'room:a', meta: 'me' }, 'META_TOO_LARGE'],
    [{ type: 'presence', action: 'join', topic: 'room:a', meta: { bio: 'x'.repeat(600) } }, 'META_TOO_LARGE'],
    [Buffer.from([0]), 'BAD_BINARY'],
    [Buffer.from([0, 200, 1, 2]), 'BAD_BINARY'],
    [Buffer.concat([Buffer.from([0, 3]), Buffer.from('{x}')]), 'BAD_BINARY'],
    [encodeBinaryPublish({ topic: 'room:a' }, Buffer.alloc(1)).fill(0x20, 2, 3), 'BAD_BINARY'],
  ];
  // A binary frame whose header is a command other than publish.
  const h = Buffer.from(JSON.stringify({ type: 'ping' }));
  cases.push([Buffer.concat([Buffer.from([0, h.length]), h]), 'BAD_BINARY']);
  const seen = new Set<string>();
  for (const [cmd, code] of cases) {
    const e = await c.expectError(cmd, code);
    assert.type(e.message, 'string');
    seen.add(code);
  }
  // Deep nesting that JSON.parse accepts but cannot be re-serialised is a BAD_FIELD, not a crash.
  const deep = `{"type":"publish","topic":"room:a","id":99,"data":${'['.repeat(20000)}${']'.repeat(20000)}}`;
  c.send(deep);
  const d = await c.next((m) => m.id === 99);
  assert.ok(d.type === 'reply' || d.code === 'BAD_FIELD', JSON.stringify(d));

  // Subscriptions beyond maxSubscriptions.
  assert.is((await c.request({ type: 'subscribe', topic: 'room:1' })).type, 'reply');
  assert.is((await c.request({ type: 'subscribe', topic: 'room:2' })).type, 'reply');
  await c.expectError({ type: 'subscribe', topic: 'room:3' }, 'TOO_MANY_SUBSCRIPTIONS');
  seen.add('TOO_MANY_SUBSCRIPTIONS');
  // Errors carry the id of the command when it could be read.
  const withId = await c.request({ type: 'subscribe' });
  assert.is(withId.type, 'error');
  assert.type(withId.id, 'number');
  assert.is(c.closed, null);
  assert.is((await c.request({ type: 'ping' })).type, 'reply');
  for (const code of ['BAD_JSON', 'BAD_COMMAND', 'UNKNOWN_COMMAND', 'MISSING_FIELD', 'BAD_FIELD', 'BAD_TOPIC', 'NO_HISTORY', 'META_TOO_LARGE', 'BAD_BINARY']) {
    assert.ok(seen.has(code), code);
    assert.ok(code in AppErrorCode);
  }
  assert.ok((app.realtime.counters.errors.BAD_TOPIC ?? 0) >= 5);
  await cleanup(app, c);
});

test('oversized: over maxMessageBytes gets TOO_LARGE; over 4x maxMessageBytes the protocol layer closes with 1009', async () => {
  const { app, ws } = await testApp({ ...open, maxMessageBytes: 1024 });
  const c = await TestClient.connect(ws);
  await c.expectError(JSON.stringify({ type: 'publish', topic: 'room:a', data: 'x'.repeat(2000) }), 'TOO_LARGE');
  assert.is((await c.request({ type: 'ping' })).type, 'reply');
  c.send('x'.repeat(4097));
  assert.is((await c.waitClosed()).code, 1009);
  await cleanup(app, c);
});

test('unauthorised topics: FORBIDDEN for subscribe, publish, history, presence', async () => {
  const { app, ws } = await testApp({ anonymous: { subscribe: ['room:*'], publish: ['room:open'], presence: [] } });
  const c = await TestClient.connect(ws);
  await c.expectError({ type: 'subscribe', topic: 'admin:x' }, 'FORBIDDEN');
  await c.expectError({ type: 'publish', topic: 'room:closed', data: 1 }, 'FORBIDDEN');
  await c.expectError({ type: 'history', topic: 'admin:x' }, 'FORBIDDEN');
  await c.expectError({ type: 'subscribe', topic: 'room:a', presence: true }, 'FORBIDDEN');
  await c.expectError({ type: 'presence', action: 'list', topic: 'room:a' }, 'FORBIDDEN');
  await c.expectError({ type: 'presence', action: 'watch', topic: 'room:a' }, 'FORBIDDEN');
  await c.expectError({ type: 'presence', action: 'join', topic: 'admin:x' }, 'FORBIDDEN');
  await c.expectError({ type: 'presence', action: 'online', users: ['u'] }, 'FORBIDDEN');
  assert.is((await c.request({ type: 'publish', topic: 'room:open', data: 1 })).type, 'reply');
  // A refused subscribe-with-presence subscribed to nothing.
  assert.is(app.realtime.server.subscriberCount('room:a'), 0);
  await cleanup(app, c);
});

test('rate limit: beyond the burst, RATE_LIMITED; sustained, 1008 "rate limit exceeded"', async () => {
  // A refill of one command per 1000 s: the bucket does not refill during the test.
  const { app, ws } = await testApp({ ...open, rateLimit: 0.001, rateBurst: 5, abuseMaxErrors: 4 });
  const c = await TestClient.connect(ws);
  for (let i = 0; i < 5; i++) assert.is((await c.request({ type: 'ping' })).type, 'reply');
  const e = await c.request({ type: 'ping' });
  assert.is(e.type, 'error');
  assert.is(e.code, 'RATE_LIMITED');
  assert.is(c.closed, null);
  for (let i = 0; i < 10; i++) c.send({ type: 'ping' });
  const closed = await c.waitClosed();
  assert.is(closed.code, 1008);
  assert.is(closed.reason, 'rate limit exceeded');
  assert.is(app.realtime.counters.abuseCloses['rate limit exceeded'], 1);
  await cleanup(app, c);
});

test('WebSocket pings count toward the rate limit and the abuse close (a ping flood is cut off with 1008)', async () => {
  const { app, port } = await testApp({ ...open, rateLimit: 0.001, rateBurst: 5, abuseMaxErrors: 4 });
  const raw = await RawClient.connect(port);
  raw.write(upgradeRequest({ path: '/ws' }));
  assert.match(await raw.readHead(), /^HTTP\/1\.1 101/);
  raw.write(Buffer.concat(Array.from({ length: 20 }, () => clientFrame(9, 'p'))));
  assert.is(await raw.readClose(), 1008);
  assert.is(app.realtime.counters.abuseCloses['rate limit exceeded'], 1);
  raw.destroy();
  await cleanup(app);
});

test('serve limits sockets per address (4,096 by default), except for trusted proxies', async () => {
  const { app, port } = await testApp({ ...open, maxConnectionsPerAddress: 1 });
  assert.is(app.realtime.server.limits.maxConnectionsPerAddress, 1);
  const first = await RawClient.connect(port);
  first.write(upgradeRequest({ path: '/ws' }));
  assert.match(await first.readHead(), /^HTTP\/1\.1 101/);
  const second = await RawClient.connect(port);
  second.write(upgradeRequest({ path: '/ws' }));
  await second.waitClosed();
  assert.is(app.realtime.server.stats.rejected.ADDRESS_LIMIT, 1);
  first.destroy();
  second.destroy();
  await cleanup(app);
  const trusted = await testApp({ ...open, maxConnectionsPerAddress: 1, trustedProxies: ['127.0.0.0/8'] });
  const clients = [await TestClient.connect(trusted.ws), await TestClient.connect(trusted.ws)];
  assert.is((await clients[1]!.request({ type: 'ping' })).type, 'reply');
  await cleanup(trusted.app, ...clients);
  const defaults = await testApp(open);
  assert.is(defaults.app.realtime.server.limits.maxConnectionsPerAddress, 4096);
  await cleanup(defaults.app);
  const refused = await testApp({ trustedProxies: ['10.0.0.0/40'] }).then(() => null, (err: Error) => err);
  assert.match(String(refused?.message), /trustedProxies/);
});

test('abuse: N errors within the window close the connection with 1008 "too many errors"; a raw flood never crashes', async () => {
  const { app, ws, port } = await testApp({ ...open, abuseMaxErrors: 5 });
  const c = await TestClient.connect(ws);
  for (let i = 0; i < 4; i++) await c.expectError('nope', 'BAD_JSON');
  assert.is(c.closed, null);
  c.send('nope');
  const closed = await c.waitClosed();
  assert.is(closed.code, 1008);
  assert.is(closed.reason, 'too many errors');

  // A raw client writing garbage frames in one burst: the server answers and closes.
  const raw = await RawClient.connect(port);
  raw.write(upgradeRequest({ path: '/ws' }));
  assert.match(await raw.readHead(), /^HTTP\/1\.1 101/);
  const garbage: Buffer[] = [];
  for (let i = 0; i < 50; i++) garbage.push(clientFrame(1, Buffer.from(`{"type":${i}`)));
  raw.write(Buffer.concat(garbage));
  assert.is(await raw.readClose(), 1008);
  raw.destroy();
  // Still serving.
  const d = await TestClient.connect(ws);
  assert.is((await d.request({ type: 'ping' })).type, 'reply');
  await cleanup(app, d);
});

test('history: recovery through subscribe since, rewind, the history command, and limits', async () => {
  const { app, ws } = await testApp(open);
  const a = await TestClient.connect(ws);
  const replies: Json[] = [];
  for (let i = 1; i <= 5; i++) replies.push(await a.request({ type: 'publish', topic: 'room:h', data: `m${i}` }));
  assert.equal(
    replies.map((r) => r.offset),
    [1, 2, 3, 4, 5],
  );
  const epoch = replies[0]!.epoch as string;

  const b = await TestClient.connect(ws);
  const sub = await b.request({ type: 'subscribe', topic: 'room:h', since: { epoch, offset: 2 } });
  assert.equal(sub, { type: 'reply', id: sub.id, topic: 'room:h', already: false, recovered: true, replayed: 3, position: { epoch, offset: 5 } });
  // The replayed messages arrived before the reply, in order.
  const replayed = b.inbox.filter((x) => x.msg.type === 'message').map((x) => x.msg.data);
  assert.equal(replayed, ['m3', 'm4', 'm5']);
  b.inbox.length = 0;
  // Live messages follow.
  await a.request({ type: 'publish', topic: 'room:h', data: 'm6' });
  assert.is((await b.messages('room:h', 1))[0]!.offset, 6);

  const c = await TestClient.connect(ws);
  const rw = await c.request({ type: 'subscribe', topic: 'room:h', rewind: 2 });
  assert.is(rw.replayed, 2);
  assert.equal(
    c.inbox.filter((x) => x.msg.type === 'message').map((x) => x.msg.offset),
    [5, 6],
  );

  const d = await TestClient.connect(ws);
  const h = await d.request({ type: 'history', topic: 'room:h', limit: 3 });
  assert.equal(h, { type: 'reply', id: h.id, topic: 'room:h', replayed: 3, position: { epoch, offset: 6 } });
  assert.equal(
    d.inbox.filter((x) => x.msg.type === 'message').map((x) => x.msg.data),
    ['m4', 'm5', 'm6'],
  );
  d.inbox.length = 0;
  const since = await d.request({ type: 'history', topic: 'room:h', since: { epoch, offset: 1 }, limit: 2 });
  assert.is(since.recovered, true);
  assert.is(since.more, true);
  assert.equal(
    d.inbox.filter((x) => x.msg.type === 'message').map((x) => x.msg.data),
    ['m2', 'm3'],
  );
  // Reading history does not subscribe.
  assert.is(app.realtime.server.subscriberCount('room:h'), 2);
  await cleanup(app, a, b, c, d);
});

test('rewind and history limits above what the server keeps are served as that maximum, not refused', async () => {
  const { app, ws } = await testApp({ ...open, historyMaxMessages: 3 });
  const a = await TestClient.connect(ws);
  for (let i = 1; i <= 5; i++) await a.request({ type: 'publish', topic: 'room:k', data: `m${i}` });
  const b = await TestClient.connect(ws);
  const rw = await b.request({ type: 'subscribe', topic: 'room:k', rewind: 50 });
  assert.is(rw.type, 'reply', JSON.stringify(rw));
  assert.is(rw.replayed, 3);
  assert.equal(b.inbox.filter((x) => x.msg.type === 'message').map((x) => x.msg.data), ['m3', 'm4', 'm5']);
  const h = await b.request({ type: 'history', topic: 'room:k', limit: 1_000_000 });
  assert.is(h.replayed, 3, JSON.stringify(h));
  for (const bad of [0, -1, 1.5, 'x']) assert.is((await b.request({ type: 'history', topic: 'room:k', limit: bad })).code, 'BAD_FIELD');
  assert.is((await b.request({ type: 'subscribe', topic: 'room:j', rewind: -1 })).code, 'BAD_FIELD');
  await cleanup(app, a, b);
});

test('history: trimmed, future and unknown-epoch positions are told to resync; a topic without history says no-history', async () => {
  const { app, ws } = await testApp({ ...open, historyMaxMessages: 3 });
  const a = await TestClient.connect(ws);
  let epoch = '';
  for (let i = 1; i <= 6; i++) epoch = (await a.request({ type: 'publish', topic: 'room:t', data: i })).epoch as string;
  const b = await TestClient.connect(ws);
  const trimmed = await b.request({ type: 'subscribe', topic: 'room:t', since: { epoch, offset: 1 } });
  assert.equal(trimmed, { type: 'reply', id: trimmed.id, topic: 'room:t', already: false, recovered: false, reason: 'trimmed', position: { epoch, offset: 6 } });
  assert.not.ok(b.inbox.some((x) => x.msg.type === 'message'), 'nothing half-served');
  // Offsets 4..6 are still there: recovering from 3 works.
  assert.is((await b.request({ type: 'subscribe', topic: 'room:t', since: { epoch, offset: 3 } })).recovered, true);
  const future = await b.request({ type: 'subscribe', topic: 'room:t', since: { epoch, offset: 99 } });
  assert.is(future.reason, 'future');
  const other = await b.request({ type: 'subscribe', topic: 'room:t', since: { epoch: 'not-this-one', offset: 2 } });
  assert.is(other.recovered, false);
  assert.is(other.reason, 'epoch-changed');
  const none = await b.request({ type: 'subscribe', topic: 'news', since: { epoch, offset: 2 } });
  assert.equal([none.recovered, none.reason, none.position], [false, 'no-history', null]);
  await cleanup(app, a, b);
});

test('history: a restarted server has a new epoch, and a client from before is told epoch-changed', async () => {
  const first = await testApp(open);
  const a = await TestClient.connect(first.ws);
  const r = await a.request({ type: 'publish', topic: 'room:e', data: 'before' });
  await cleanup(first.app, a);
  const second = await testApp(open);
  const b = await TestClient.connect(second.ws);
  const sub = await b.request({ type: 'subscribe', topic: 'room:e', since: { epoch: r.epoch, offset: r.offset } });
  assert.is(sub.recovered, false);
  assert.is(sub.reason, 'epoch-changed');
  assert.is.not(sub.position.epoch, r.epoch);
  await cleanup(second.app, b);
});

test('history topics are bounded in number: the least recently used unsubscribed one is evicted; aged-out ones are swept', async () => {
  const { app, ws } = await testApp({ ...open, historyMaxTopics: 2, historyMaxAgeMs: 1000 });
  const a = await TestClient.connect(ws);
  for (const t of ['room:1', 'room:2', 'room:3']) await a.request({ type: 'publish', topic: t, data: 1 });
  assert.is(app.realtime.historyTopicCount, 2);
  assert.ok(!app.realtime.server.pubsub.topics.has('room:1'), 'room:1, used least recently, was evicted');
  const third = await a.request({ type: 'publish', topic: 'room:3', data: 2 });
  assert.is(third.offset, 2);
  // A sweep "later than" maxAge drops the idle ones (the clock is passed in: no waiting).
  app.realtime.sweep(Date.now() + 5000);
  assert.is(app.realtime.historyTopicCount, 0);
  assert.is(app.realtime.server.pubsub.topics.size, 0);
  assert.is((await a.request({ type: 'publish', topic: 'room:3', data: 3 })).offset, 1, 'room:3 has a new history');
  await cleanup(app, a);
});

test('topics created per connection per minute are bounded (TOO_MANY_NEW_TOPICS); existing topics are not', async () => {
  const { app, ws } = await testApp({ ...open, maxNewTopicsPerMinute: 3 });
  const a = await TestClient.connect(ws);
  await a.request({ type: 'publish', topic: 'room:1', data: 1 });
  await a.request({ type: 'subscribe', topic: 'room:2' });
  await a.request({ type: 'history', topic: 'room:3' });
  const e = await a.expectError({ type: 'publish', topic: 'room:4', data: 1 }, 'TOO_MANY_NEW_TOPICS');
  assert.match(e.message, /3 new topics/);
  await a.expectError({ type: 'subscribe', topic: 'room:5' }, 'TOO_MANY_NEW_TOPICS');
  assert.is((await a.request({ type: 'publish', topic: 'room:1', data: 2 })).offset, 2, 'an existing topic is not a new one');
  const b = await TestClient.connect(ws);
  assert.is((await b.request({ type: 'publish', topic: 'room:4', data: 1 })).offset, 1, 'the bound is per connection');
  assert.ok(!app.realtime.server.pubsub.topics.has('room:5'));
  await cleanup(app, a, b);
});

test('unsubscribe also stops presence events of that topic', async () => {
  const { app, ws } = await testApp(open);
  const a = await TestClient.connect(ws);
  await a.request({ type: 'subscribe', topic: 'room:p', presence: true });
  assert.is(app.realtime.server.subscriberCount('$p:room:p'), 1);
  await a.request({ type: 'unsubscribe', topic: 'room:p' });
  assert.is(app.realtime.server.subscriberCount('$p:room:p'), 0);
  await cleanup(app, a);
});

test.after.each(closeAll);

test.run();
