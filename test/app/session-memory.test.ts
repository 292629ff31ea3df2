// What a `murmur serve` user costs beyond its connection: the session holds small integers and
// shared objects only; throttling state comes with the first command and goes once it is at
// rest; users of one token scope share one permissions object (docs/serve-memory.md).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { performance } from 'node:perf_hooks';
import { mintToken } from '../../src/app/token.js';
import { PermissionScopes } from '../../src/app/scopes.js';
import type { App } from '../../src/app/app.js';
import type { Session } from '../../src/app/realtime.js';
import { TestClient, testApp, closeAll } from './helpers.js';

const SECRET = 'test-secret-0123456789';
const mint = (user: string, subscribe = ['room:*']) => mintToken(SECRET, { user, subscribe, publish: ['room:*'], presence: ['room:*'], ttlSeconds: 3600 });

/** The sessions of the app's open connections, in the order they opened. */
function sessions(app: App): Session[] {
  const out: Session[] = [];
  app.realtime.server.forEachConnection((c) => void out.push(c.data));
  return out.sort((a, b) => a.seq - b.seq);
}

test('an idle session is six slots of small integers and shared objects: no string, boxed number or throttle of its own', async () => {
  const { app, ws } = await testApp({ secret: SECRET });
  const anon = await TestClient.connect(ws);
  const user = await TestClient.connect(`${ws}?token=${mint('ada')}`);
  const [a, u] = sessions(app);
  for (const s of [a!, u!]) {
    assert.equal(Object.keys(s), ['seq', 'tokenUser', 'perms', 'expS', 'online', 'throttle']);
    assert.is(s.throttle, null, 'no throttle before the first command');
    assert.ok(Number.isInteger(s.seq) && Number.isInteger(s.expS) && s.expS < 2 ** 31, 'small integers (no boxed number)');
  }
  assert.is(a!.tokenUser, null, 'an anonymous name is made when asked for');
  assert.is(a!.perms, app.config.anonymous, 'anonymous connections share the configured permissions');
  // The welcome says the same as ever: id, user and permissions.
  assert.is(anon.welcome!.conn, app.realtime.idOf(a!));
  assert.is(anon.welcome!.user, `anon-${anon.welcome!.conn}`);
  assert.is(anon.welcome!.anonymous, true);
  assert.equal(anon.welcome!.permissions, app.config.anonymous);
  assert.is(user.welcome!.user, 'ada');
  assert.is(user.welcome!.anonymous, false);
  assert.equal(user.welcome!.limits, { maxMessageBytes: app.config.maxMessageBytes, rateLimit: app.config.rateLimit, rateBurst: app.config.rateBurst, maxSubscriptions: app.config.maxSubscriptions, maxTopicBytes: app.config.maxTopicBytes });
  assert.is(u!.expS, Math.floor(Date.now() / 1000) + 3600);
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
  const { app, ws } = await testApp({ rateLimit: 1, rateBurst: 3 });
  const c = await TestClient.connect(ws);
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
