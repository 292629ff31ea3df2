// Tokens (m1.<payload>.<signature>, HMAC-SHA256) and what they allow: unit checks of the
// format, then upgrades refused with 401 and a stable reason, then topic permissions.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHmac } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mintToken, verifyToken, MAX_TOKEN_LENGTH } from '../../src/app/token.js';
import { globMatch, matchesAny } from '../../src/app/glob.js';
import { TestClient, testApp, cleanup, closeAll } from './helpers.js';

const SECRET = 'test-secret-0123456789';
const NOW = 1_700_000_000_000;
const mint = (o: Partial<Parameters<typeof mintToken>[1]> = {}, secret = SECRET) =>
  mintToken(secret, { user: 'ada', subscribe: ['room:*'], publish: ['room:*'], presence: ['room:*'], ttlSeconds: 3600, ...o });

/** Signs arbitrary claims the way mintToken does (to test what verify does with odd payloads). */
function signRaw(payload: unknown, secret = SECRET): string {
  const signed = `m1.${Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload)).toString('base64url')}`;
  return `${signed}.${createHmac('sha256', secret).update(signed).digest('base64url')}`;
}

test('glob: * matches any run (":" included), ? one character, the rest literally; no exponential backtracking', () => {
  assert.ok(globMatch('room:*', 'room:lobby'));
  assert.ok(globMatch('room:*', 'room:a:b'));
  assert.ok(globMatch('room:*', 'room:'));
  assert.not.ok(globMatch('room:*', 'rooms:a'));
  assert.ok(globMatch('*', 'anything'));
  assert.ok(globMatch('user:?', 'user:1'));
  assert.not.ok(globMatch('user:?', 'user:12'));
  assert.ok(globMatch('a*b*c', 'axxbyyc'));
  assert.not.ok(globMatch('a*b*c', 'axxbyy'));
  assert.ok(globMatch('room.+(x)', 'room.+(x)'), 'regex characters are literal');
  assert.not.ok(globMatch('room.', 'roomX'));
  assert.ok(matchesAny(['a:*', 'b:*'], 'b:1'));
  assert.not.ok(matchesAny([], 'b:1'));
  // Would take ages with a backtracking regex.
  assert.not.ok(globMatch('*a*a*a*a*a*a*a*a*b', 'a'.repeat(200)));
});

test('tokens: mint and verify round trip with user, expiry and the three pattern lists', () => {
  const t = mint({ now: NOW });
  assert.match(t, /^m1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
  const r = verifyToken(t, SECRET, NOW + 1000);
  assert.ok(r.ok);
  if (!r.ok) return;
  assert.is(r.claims.user, 'ada');
  assert.is(r.claims.exp, NOW / 1000 + 3600);
  assert.equal(r.claims.permissions, { subscribe: ['room:*'], publish: ['room:*'], presence: ['room:*'] });
});

test('tokens: expired, forged, wrong secret, malformed, bad claims, no secret: each its own code', () => {
  const t = mint({ now: NOW, ttlSeconds: 60 });
  const code = (token: string, secret: string | undefined = SECRET, now = NOW) => {
    const r = verifyToken(token, secret, now);
    return r.ok ? 'ok' : r.code;
  };
  assert.is(code(t, SECRET, NOW + 59_000), 'ok');
  assert.is(code(t, SECRET, NOW + 60_000), 'TOKEN_EXPIRED');
  assert.is(code(t, 'another-secret'), 'TOKEN_BAD_SIGNATURE');
  // Flip one signature character; flip one payload character (re-encoded, so still base64url).
  const [v, payload, sig] = t.split('.') as [string, string, string];
  const flipped = sig[0] === 'A' ? `B${sig.slice(1)}` : `A${sig.slice(1)}`;
  assert.is(code(`${v}.${payload}.${flipped}`), 'TOKEN_BAD_SIGNATURE');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
  const elevated = Buffer.from(JSON.stringify({ ...claims, pub: ['*'] })).toString('base64url');
  assert.is(code(`${v}.${elevated}.${sig}`), 'TOKEN_BAD_SIGNATURE', 'payload changed, signature kept');
  assert.is(code(''), 'TOKEN_MALFORMED');
  assert.is(code('m1.abc'), 'TOKEN_MALFORMED');
  assert.is(code(`m2.${payload}.${sig}`), 'TOKEN_MALFORMED');
  assert.is(code(`${v}.${payload}.${sig}x`), 'TOKEN_MALFORMED', 'a signature of the wrong length');
  assert.is(code(`${v}.pay load.${sig}`), 'TOKEN_MALFORMED');
  assert.is(code(`m1.${'a'.repeat(MAX_TOKEN_LENGTH)}.${sig}`), 'TOKEN_MALFORMED');
  assert.is(code(signRaw('not json')), 'TOKEN_INVALID_CLAIMS');
  assert.is(code(signRaw({ user: '', exp: 2e9 })), 'TOKEN_INVALID_CLAIMS');
  assert.is(code(signRaw({ user: 'u', exp: 'soon' })), 'TOKEN_INVALID_CLAIMS');
  assert.is(code(signRaw({ user: 'u', exp: 2e9, sub: 'room:*' })), 'TOKEN_INVALID_CLAIMS');
  assert.is(code(signRaw({ user: 'u', exp: 2e9, sub: Array(33).fill('a') })), 'TOKEN_INVALID_CLAIMS');
  assert.is(code(signRaw({ user: 'u', exp: 2e9 })), 'ok', 'lists default to empty');
  const noSecret = verifyToken(t, undefined, NOW);
  assert.is(noSecret.ok ? 'ok' : noSecret.code, 'TOKEN_NO_SECRET');
  assert.throws(() => mint({ user: '' }), /user id/);
  assert.throws(() => mint({ ttlSeconds: 0 }), /ttl/);
  assert.throws(() => mint({}, ''), /secret/);
});

test('upgrade: with tokens required, missing, expired, forged and malformed tokens get 401 with their reason', async () => {
  const { app, ws } = await testApp({ secret: SECRET, requireToken: true });
  const expired = mint({ now: Date.now() - 7200_000, ttlSeconds: 60 });
  const forged = mint({}, 'not-the-secret');
  const cases: Array<[string, string]> = [
    [ws, 'TOKEN_MISSING'],
    [`${ws}?token=${expired}`, 'TOKEN_EXPIRED'],
    [`${ws}?token=${forged}`, 'TOKEN_BAD_SIGNATURE'],
    [`${ws}?token=garbage`, 'TOKEN_MALFORMED'],
  ];
  for (const [url, reason] of cases) {
    const c = TestClient.open(url);
    assert.is(await c.refusedStatus(), 401, reason);
    assert.is(app.realtime.server.stats.rejected[reason], 1, reason);
  }
  // The header form is refused the same way.
  const h = TestClient.open(ws, { Authorization: `Bearer ${forged}` });
  assert.is(await h.refusedStatus(), 401);
  assert.is(app.realtime.server.stats.rejected.TOKEN_BAD_SIGNATURE, 2);
  assert.is(app.realtime.server.openCount, 0);
  await cleanup(app);
});

test('upgrade: a valid token in ?token= or Authorization: Bearer names the user', async () => {
  const { app, ws } = await testApp({ secret: SECRET, requireToken: true });
  const q = await TestClient.connect(`${ws}?token=${mint({ user: 'ada' })}`);
  assert.is(q.welcome!.user, 'ada');
  assert.is(q.welcome!.anonymous, false);
  const h = await TestClient.connect(ws, { Authorization: `Bearer ${mint({ user: 'bob' })}` });
  assert.is(h.welcome!.user, 'bob');
  assert.equal(h.welcome!.permissions.publish, ['room:*']);
  await cleanup(app, q, h);
});

test('upgrade: tokens optional: no token is anonymous with the default set; a bad token is still refused', async () => {
  const { app, ws } = await testApp({ secret: SECRET, anonymous: { subscribe: ['public:*'], publish: [], presence: [] } });
  const anon = await TestClient.connect(ws);
  assert.is(anon.welcome!.anonymous, true);
  assert.equal(anon.welcome!.permissions, { subscribe: ['public:*'], publish: [], presence: [] });
  assert.is((await anon.request({ type: 'subscribe', topic: 'public:x' })).type, 'reply');
  await anon.expectError({ type: 'publish', topic: 'public:x', data: 1 }, 'FORBIDDEN');
  const bad = TestClient.open(`${ws}?token=${mint({ now: Date.now() - 7200_000, ttlSeconds: 1 })}`);
  assert.is(await bad.refusedStatus(), 401);
  await cleanup(app, anon);

  // Without a secret, a presented token cannot be checked: refused, never trusted.
  const other = await testApp({});
  const c = TestClient.open(`${other.ws}?token=${mint()}`);
  assert.is(await c.refusedStatus(), 401);
  assert.is(other.app.realtime.server.stats.rejected.TOKEN_NO_SECRET, 1);
  await cleanup(other.app);
});

test('permissions: a token allows exactly its patterns (wrong topic -> FORBIDDEN)', async () => {
  const { app, ws } = await testApp({ secret: SECRET, requireToken: true });
  const token = mint({ user: 'ada', subscribe: ['room:a', 'feed:*'], publish: ['room:a'], presence: [] });
  const c = await TestClient.connect(`${ws}?token=${token}`);
  assert.is((await c.request({ type: 'subscribe', topic: 'room:a' })).type, 'reply');
  assert.is((await c.request({ type: 'subscribe', topic: 'feed:x:y' })).type, 'reply');
  await c.expectError({ type: 'subscribe', topic: 'room:b' }, 'FORBIDDEN');
  await c.expectError({ type: 'publish', topic: 'feed:x', data: 1 }, 'FORBIDDEN');
  await c.expectError({ type: 'presence', action: 'list', topic: 'room:a' }, 'FORBIDDEN');
  const pub = await c.request({ type: 'publish', topic: 'room:a', data: 'hello' });
  assert.is(pub.type, 'reply');
  const [m] = await c.messages('room:a', 1);
  assert.is(m!.from, 'ada', 'messages carry the authenticated user id');
  await cleanup(app, c);
});

test('a token that expires while connected: the next command or sweep closes with 4001 "token expired"', async () => {
  const { app, ws } = await testApp({ secret: SECRET });
  const c = await TestClient.connect(`${ws}?token=${mint({ ttlSeconds: 3600 })}`);
  const d = await TestClient.connect(`${ws}?token=${mint({ ttlSeconds: 3600 })}`);
  // Two hours later, as the sweep sees it (the clock is passed in: nothing waits).
  app.realtime.sweep(Date.now() + 7200_000);
  assert.equal(await c.waitClosed(), { code: 4001, reason: 'token expired' });
  assert.equal(await d.waitClosed(), { code: 4001, reason: 'token expired' });
  assert.is(app.realtime.counters.tokenExpiredCloses, 2);
  await cleanup(app);
});

test('murmur token prints a token that verifies with the same secret and carries the flags', () => {
  const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
  const out = execFileSync(process.execPath, [main, 'token', '--secret', SECRET, '--user', 'cli-user', '--sub', 'room:*', '--pub', 'room:a,room:b', '--presence', 'room:*', '--ttl', '120'], {
    encoding: 'utf8',
  }).trim();
  const r = verifyToken(out, SECRET);
  assert.ok(r.ok, out);
  if (!r.ok) return;
  assert.is(r.claims.user, 'cli-user');
  assert.equal(r.claims.permissions, { subscribe: ['room:*'], publish: ['room:a', 'room:b'], presence: ['room:*'] });
  assert.ok(r.claims.exp - r.claims.iat === 120);
  assert.not.ok(verifyToken(out, 'other').ok);
  // --verify prints the claims; a bad token exits 1.
  const claims = JSON.parse(execFileSync(process.execPath, [main, 'token', '--secret', SECRET, '--verify', out], { encoding: 'utf8' })) as Record<string, unknown>;
  assert.is(claims.user, 'cli-user');
  let status = 0;
  try {
    execFileSync(process.execPath, [main, 'token', '--secret', 'wrong', '--verify', out], { stdio: 'pipe' });
  } catch (err) {
    status = (err as { status: number }).status;
  }
  assert.is(status, 1);
});

test('origins: a browser page from another site is refused (403); clients without an Origin pass', async () => {
  const { app, ws } = await testApp({ origins: ['https://chat.example'] });
  const evil = TestClient.open(ws, { Origin: 'https://evil.example' });
  assert.is(await evil.refusedStatus(), 403);
  assert.is(app.realtime.server.stats.rejected.ORIGIN_FORBIDDEN, 1);
  const good = await TestClient.connect(ws, { Origin: 'https://chat.example' });
  const tool = await TestClient.connect(ws);
  await cleanup(app, good, tool);
});

test.after.each(closeAll);

test.run();
