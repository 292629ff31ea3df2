// What a `murmur serve` user costs beyond its connection: an idle anonymous connection holds
// only its number; a session holds small integers and shared objects only; throttling state
// comes with the first command and goes once it is at rest; users of one token scope share one
// permissions object (docs/serve-memory.md).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { performance } from 'node:perf_hooks';
import { mintToken } from '../../src/app/token.js';
import { PermissionScopes } from '../../src/app/scopes.js';
import type { App } from '../../src/app/app.js';
import { Session } from '../../src/app/realtime.js';
import type { ConnData } from '../../src/app/realtime.js';
import { TestClient, testApp, closeAll } from './helpers.js';

const SECRET = 'test-secret-0123456789';
const mint = (user: string, subscribe = ['room:*']) => mintToken(SECRET, { user, subscribe, publish: ['room:*'], presence: ['room:*'], ttlSeconds: 3600 });

/** What the app's open connections hold in their data slot, in the order they opened. */
function slots(app: App): ConnData[] {
  const out: ConnData[] = [];
  app.realtime.server.forEachConnection((c) => void out.push(c.data));
  const seq = (d: ConnData) => (typeof d === 'number' ? Math.abs(d) : d.seq);
  return out.sort((a, b) => seq(a) - seq(b));
}

/** The sessions of the app's open connections, in the order they opened (a connection that holds only its number has none). */
function sessions(app: App): Session[] {
  return slots(app).filter((d): d is Session => typeof d !== 'number');
}

const sweepAtRest = (app: App) => app.realtime.sweep(Date.now(), performance.now() + app.config.abuseWindowMs + 61_000);

test('an idle session is five slots of small integers and shared objects: no string, boxed number, online flag or throttle of its own', async () => {
  const { app, ws } = await testApp({ secret: SECRET });
  const minted = Math.floor(Date.now() / 1000);
  const user = await TestClient.connect(`${ws}?token=${mint('ada')}`);
  const [u] = sessions(app);
  assert.equal(Object.keys(u!), ['n', 'tokenUser', 'perms', 'expS', 'throttle'], 'online is the sign of the number');
  assert.ok(u!.online && u!.n === u!.seq);
  assert.is(u!.throttle, null, 'no throttle before the first command');
  assert.ok(Number.isInteger(u!.seq) && Number.isInteger(u!.expS) && u!.expS < 2 ** 31, 'small integers (no boxed number)');
  assert.is(user.welcome!.user, 'ada');
  assert.is(user.welcome!.anonymous, false);
  assert.equal(user.welcome!.permissions, { subscribe: ['room:*'], publish: ['room:*'], presence: ['room:*'] });
  assert.equal(user.welcome!.limits, { maxMessageBytes: app.config.maxMessageBytes, rateLimit: app.config.rateLimit, rateBurst: app.config.rateBurst, maxSubscriptions: app.config.maxSubscriptions, maxTopicBytes: app.config.maxTopicBytes });
  // The token's expiry, in whole seconds (the second may have turned since it was minted).
  assert.ok(u!.expS >= minted + 3600 && u!.expS <= Math.floor(Date.now() / 1000) + 3600);
});

test('an idle anonymous connection holds no Session: only its number, from which its welcome was made', async () => {
  const { app, ws } = await testApp({ secret: SECRET });
  const anon = await TestClient.connect(ws);
  const [a] = slots(app);
  assert.type(a, 'number', 'its number in the data slot');
  assert.ok(Number.isInteger(a) && (a as number) > 0, 'a positive small integer while online');
  // The welcome says the same as a session's would: id, user, permissions, limits.
  assert.is(anon.welcome!.conn, app.realtime.idOf(new Session(a as number, null, app.config.anonymous, 0)));
  assert.is(anon.welcome!.user, `anon-${anon.welcome!.conn}`);
  assert.is(anon.welcome!.anonymous, true);
  assert.equal(anon.welcome!.permissions, app.config.anonymous);
  assert.equal(anon.welcome!.limits, { maxMessageBytes: app.config.maxMessageBytes, rateLimit: app.config.rateLimit, rateBurst: app.config.rateBurst, maxSubscriptions: app.config.maxSubscriptions, maxTopicBytes: app.config.maxTopicBytes });
});

test("an anonymous connection's first command makes its session, with the id and user of its welcome", async () => {
  const { app, ws } = await testApp({});
  const anon = await TestClient.connect(ws);
  await anon.request({ type: 'subscribe', topic: 'room:a' });
  const [s] = sessions(app);
  assert.ok(s instanceof Session, 'made by the first command');
  assert.is(app.realtime.idOf(s!), anon.welcome!.conn);
  assert.is(app.realtime.userOf(s!), anon.welcome!.user);
  assert.is(s!.perms, app.config.anonymous);
  assert.ok(s!.online && s!.throttle !== null, 'online, and the command took a token');
  // Its name is the welcome's: what it publishes comes from it.
  const other = await TestClient.connect(ws);
  await other.request({ type: 'subscribe', topic: 'room:a' });
  await anon.request({ type: 'publish', topic: 'room:a', data: 1 });
  assert.is((await other.next((m) => m.type === 'message')).from, anon.welcome!.user);
});

test('an anonymous session at rest goes back to its number at the sweep; one present in a topic keeps it', async () => {
  const { app, ws } = await testApp({});
  const viewer = await TestClient.connect(ws);
  const present = await TestClient.connect(ws);
  await viewer.request({ type: 'subscribe', topic: 'room:a' });
  await present.request({ type: 'presence', action: 'join', topic: 'room:a' });
  assert.is(sessions(app).length, 2);
  sweepAtRest(app);
  const [v, p] = slots(app);
  assert.type(v, 'number', 'the subscribed viewer holds its number again');
  assert.ok(p instanceof Session, 'the present one keeps its session');
  // Still subscribed, still itself: a publish reaches it, and its next command makes a session with the same id.
  await present.request({ type: 'publish', topic: 'room:a', data: 2 });
  assert.is((await viewer.next((m) => m.type === 'message')).data, 2);
  await viewer.request({ type: 'ping' });
  const s = slots(app)[0];
  assert.ok(s instanceof Session);
  assert.is(app.realtime.idOf(s as Session), viewer.welcome!.conn);
});

test('limits still apply to an anonymous connection from its first frame: the rate limit, and the abuse close', async () => {
  const { app, ws } = await testApp({ rateLimit: 1, rateBurst: 3, abuseMaxErrors: 3 });
  const c = await TestClient.connect(ws);
  for (let i = 0; i < 3; i++) await c.request({ type: 'ping' });
  await c.expectError({ type: 'ping' }, 'RATE_LIMITED');
  // Frames past the bucket count towards the abuse close whatever the connection held before.
  c.send({ type: 'ping' });
  c.send({ type: 'ping' });
  assert.is((await c.waitClosed()).code, 1008);
  assert.is(slots(app).length, 0);
});

test('an anonymous connection refused at open (full) is never handled: its frames are ignored', async () => {
  const { app, ws } = await testApp({ maxConnections: 1 });
  await TestClient.connect(ws);
  const refused = TestClient.open(ws);
  refused.ws.addEventListener('open', () => refused.send({ type: 'ping', id: 1 }));
  assert.is((await refused.waitClosed()).code, 1013);
  assert.is(app.realtime.counters.refused.full, 1);
  assert.ok(!refused.inbox.some((x) => x.msg.type === 'reply'), 'no reply');
  assert.is(sessions(app).length, 0, 'no session made for it');
});

test('users whose tokens carry the same permissions share one permissions object', async () => {
  const { app, ws } = await testApp({ secret: SECRET });
  await TestClient.connect(`${ws}?token=${mint('ada')}`);
  await TestClient.connect(`${ws}?token=${mint('bob')}`);
  await TestClient.connect(`${ws}?token=${mint('eve', ['news:*'])}`);
  const [ada, bob, eve] = sessions(app);
  assert.is(ada!.perms, bob!.perms);
  assert.is.not(ada!.perms, eve!.perms);
  assert.equal(eve!.perms.subscribe, ['news:*']);
});

test('the shared permission sets are bounded: past maxSharedScopes the cache starts over', () => {
  const scopes = new PermissionScopes(2);
  const p = (t: string) => ({ subscribe: [t], publish: [], presence: [] });
  const first = scopes.share(p('a'));
  assert.is(scopes.share(p('a')), first);
  scopes.share(p('b'));
  assert.is(scopes.size, 2);
  scopes.share(p('c'));
  assert.is(scopes.size, 1, 'started over');
  const none = new PermissionScopes(0);
  const q = p('a');
  assert.is(none.share(q), q);
  assert.is(none.size, 0);
});

test('throttling state comes with the first command, and the sweep lets it go once it is at rest', async () => {
  const { app, ws } = await testApp({ rateLimit: 1, rateBurst: 3, secret: SECRET });
  const c = await TestClient.connect(`${ws}?token=${mint('ada')}`);
  const [s] = sessions(app);
  assert.is(s!.throttle, null);
  await c.request({ type: 'ping' });
  assert.ok(s!.throttle !== null);
  // Two of three tokens left: not at rest now, at rest two seconds (of the throttle's clock) later.
  app.realtime.sweep(Date.now(), performance.now());
  assert.ok(s!.throttle !== null, 'kept while the bucket refills');
  app.realtime.sweep(Date.now(), performance.now() + 2500);
  assert.is(s!.throttle, null, 'let go at rest');
  // A fresh throttle decides as the old one would have: a full bucket of three.
  for (let i = 0; i < 3; i++) await c.request({ type: 'ping' });
  await c.expectError({ type: 'ping' }, 'RATE_LIMITED');
  // Errors in the window keep it (the abuse close counts them) however full the bucket.
  app.realtime.sweep(Date.now(), performance.now() + 2500);
  assert.ok(s!.throttle !== null, 'an open error window is kept');
  app.realtime.sweep(Date.now(), performance.now() + app.config.abuseWindowMs + 5000);
  assert.is(s!.throttle, null);
});

test.after.each(closeAll);
test.run();
