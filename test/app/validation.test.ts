// Hostile names and requests at both entry points of murmur serve (the WebSocket protocol and
// the HTTP API): no 500 and no stack trace for any request, client errors logged at a bounded
// rate, names that are not well-formed Unicode refused with BAD_UNICODE, "__proto__" and
// friends as ordinary names, one spelling per token, and O(1) refusal of rate-limited frames.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHmac } from 'node:crypto';
import { TestClient, testApp, cleanup, closeAll, http } from './helpers.js';
import type { Json } from './helpers.js';
import { RawClient, until } from '../helpers/net.js';
import { peekId, encodeBinaryPublish } from '../../src/app/serve-protocol.js';
import { mintToken, verifyToken } from '../../src/app/token.js';
import { ClientErrorLog, CLIENT_ERROR_LOG_INTERVAL_MS, jsonWellFormed, wellFormed } from '../../src/app/validate.js';
import { LocalPresence } from '../../src/app/presence.js';

const open = { anonymous: { subscribe: ['*'], publish: ['*'], presence: ['*'] } };
const KEY = 'api-key-0123';
const SECRET = 'test-secret-0123456789';
const LONE = '\ud83d';
const PROTO_NAMES = ['__proto__', 'constructor', 'hasOwnProperty'];

/** Own enumerable entries, sorted: compares the keys themselves (a missing "__proto__" key would read as Object.prototype). */
const entries = (o: object) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1));

/** Sends `requests` pipelined on one connection and reads as many responses; returns their status lines. */
async function pipelined(port: number, requests: string[], timeoutMs = 20_000): Promise<number[]> {
  const c = await RawClient.connect(port);
  c.write(requests.join(''));
  const statuses: number[] = [];
  for (let i = 0; i < requests.length; i++) {
    const head = await c.readHead(timeoutMs);
    statuses.push(Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]));
    const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (len > 0) await c.read(len, timeoutMs);
  }
  c.destroy();
  return statuses;
}

function post(path: string, body: string): string {
  return `POST ${path} HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${KEY}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

const DEEP = `{"topic":"room:a","data":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;

/**
 * Collects what reaches the log sink, console.error and stderr while `fn` runs, and the most
 * lines `kinds` kinds may log meanwhile: one per kind per started interval (a loaded machine
 * may take longer than one).
 */
async function captureLogs(fn: (log: (line: string) => void) => Promise<void>): Promise<{ lines: string[]; allowed: (kinds: number) => number }> {
  const started = Date.now();
  const lines: string[] = [];
  const error = console.error;
  const write = process.stderr.write;
  console.error = (...args: unknown[]) => void lines.push(args.map(String).join(' '));
  process.stderr.write = ((chunk: unknown) => lines.push(String(chunk)) > 0) as typeof process.stderr.write;
  try {
    await fn((line) => lines.push(line));
  } finally {
    console.error = error;
    process.stderr.write = write;
  }
  const intervals = 1 + Math.floor((Date.now() - started) / CLIENT_ERROR_LOG_INTERVAL_MS);
  // The one start-up notice of a server on the socket transport (MURMUR_TRANSPORT=socket) is
  // not a client error.
  const clientLines = lines.filter((l) => !l.includes('the lean transport is off'));
  return { lines: clientLines, allowed: (kinds) => kinds * intervals };
}

test('an unparsable request target (http://[, a port over 65535) gets 400 BAD_URL, not 500', async () => {
  const { app, port } = await testApp({ apiKey: KEY, log: () => {} });
  const targets = ['http://[', 'http://a:99999/healthz', 'http://a:99999/api/publish'];
  const statuses = await pipelined(port, targets.map((t) => `GET ${t} HTTP/1.1\r\nHost: x\r\n\r\n`));
  assert.equal(statuses, [400, 400, 400]);
  const r = await http(`http://127.0.0.1:${port}/healthz`);
  assert.is(r.status, 200, 'still serving');
  assert.is(app.httpCounters.requests['other 400'], 3);
  assert.is(app.httpCounters.requests['other 500'], undefined);
  await cleanup(app);
});

test('POST /api/publish with data nested too deeply gets 400 BAD_FIELD, as the WebSocket path does', async () => {
  const { app, http: base, ws } = await testApp({ ...open, apiKey: KEY, log: () => {} });
  const r = await http(`${base}/api/publish`, { method: 'POST', headers: { 'X-Api-Key': KEY }, body: DEEP });
  assert.is(r.status, 400);
  assert.is(JSON.parse(r.body).error, 'BAD_FIELD');
  const c = await TestClient.connect(ws);
  c.send(`{"type":"publish","id":7,"topic":"room:a","data":${'['.repeat(20_000)}${']'.repeat(20_000)}}`);
  const e = await c.next((m) => m.id === 7);
  assert.is(e.code, 'BAD_FIELD');
  await cleanup(app, c);
});

test('1,000 bad requests of four kinds log at most one line per kind, and no stack trace', async () => {
  let app: Awaited<ReturnType<typeof testApp>>['app'] | undefined;
  const kinds = [
    'GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n',
    post('/api/publish', DEEP),
    post('/api/publish', '{"topic":'),
    post('/api/publish', `{"topic":"room:\\ud83d","data":1}`),
  ];
  const statuses: number[] = [];
  const { lines, allowed } = await captureLogs(async (log) => {
    const t = await testApp({ apiKey: KEY, log });
    app = t.app;
    // 10 connections x 100 pipelined requests.
    const conns = Array.from({ length: 10 }, (_, c) => pipelined(t.port, Array.from({ length: 100 }, (_, i) => kinds[(c + i) % kinds.length]!)));
    for (const s of await Promise.all(conns)) statuses.push(...s);
  });
  assert.is(statuses.length, 1000);
  assert.ok(statuses.every((s) => s === 400), `every answer is 400: ${[...new Set(statuses)].join(', ')}`);
  assert.ok(lines.length >= 1 && lines.length <= allowed(kinds.length), `${lines.length} log lines: ${lines.slice(0, 3).join(' | ')}`);
  assert.not.ok(lines.some((l) => /\n\s+at /.test(l)), 'no stack trace');
  await cleanup(app!);
});

test('a server failure a client can trigger at will logs its stack once per interval, not once per command', async () => {
  const presence = new LocalPresence({ maxMembers: 10, maxMetaBytes: 100, maxTopicsPerConn: 10 });
  presence.join = () => {
    throw new Error('join failed');
  };
  let app: Awaited<ReturnType<typeof testApp>>['app'] | undefined;
  let c: TestClient | undefined;
  const { lines, allowed } = await captureLogs(async (log) => {
    const t = await testApp({ ...open, presence, log, abuseMaxErrors: 1000, rateBurst: 1000 });
    app = t.app;
    c = await TestClient.connect(t.ws);
    for (let i = 0; i < 200; i++) c.send({ type: 'presence', action: 'join', topic: 'room:a', id: i });
    await until(() => app!.realtime.counters.errors.INTERNAL === 200, 10_000, '200 INTERNAL errors');
  });
  assert.is(app!.realtime.counters.errors.INTERNAL, 200);
  const e = await c!.next((m) => m.id === 199);
  assert.is(e.code, 'INTERNAL', 'the error carries the id of the command that failed');
  assert.ok(lines.length >= 1 && lines.length <= allowed(1), `${lines.length} lines: ${lines.slice(0, 2).join(' | ')}`);
  assert.match(lines[0]!, /join failed/);
  await cleanup(app!, c);
});

test('an HTTP handler failure logs its stack once per interval, not once per request', async () => {
  let app: Awaited<ReturnType<typeof testApp>>['app'] | undefined;
  let statuses: number[] = [];
  const { lines, allowed } = await captureLogs(async (log) => {
    const t = await testApp({ log });
    app = t.app;
    t.app.metricsText = () => {
      throw new Error('metrics failed');
    };
    statuses = await pipelined(t.port, Array.from({ length: 100 }, () => 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'));
  });
  assert.ok(statuses.every((s) => s === 500));
  assert.ok(lines.length >= 1 && lines.length <= allowed(1), `${lines.length} lines: ${lines.slice(0, 2).join(' | ')}`);
  assert.match(lines[0]!, /metrics failed/);
  await cleanup(app!);
});

test('ClientErrorLog: one line per kind per interval, then the count of lines not logged', () => {
  let now = 0;
  const lines: string[] = [];
  const log = new ClientErrorLog((l) => lines.push(l), 1000, () => now);
  for (let i = 0; i < 50; i++) log.line('a', 'A');
  log.line('b', 'B');
  now = 999;
  log.line('a', 'A');
  now = 1000;
  log.line('a', 'A');
  log.line('a', 'A');
  assert.equal(lines, ['A', 'B', 'A (and 50 more since the last line of this kind)']);
});

test('a lone surrogate in a topic, presence meta or a queried user id gets BAD_UNICODE over the WebSocket', async () => {
  const { app, ws } = await testApp(open);
  const c = await TestClient.connect(ws);
  const topic = `room:${LONE}`;
  for (const cmd of [
    { type: 'subscribe', topic },
    { type: 'publish', topic, data: 1 },
    { type: 'history', topic },
    { type: 'presence', action: 'join', topic },
    { type: 'presence', action: 'join', topic: 'room:a', meta: { name: `x${LONE}` } },
    { type: 'presence', action: 'join', topic: 'room:a', meta: { [`k${LONE}`]: 1 } },
    { type: 'presence', action: 'join', topic: 'room:a', meta: { deep: [{ s: [LONE] }] } },
    { type: 'presence', action: 'online', users: ['ada', LONE] },
  ]) {
    await c.expectError(cmd, 'BAD_UNICODE');
  }
  c.send(encodeBinaryPublish({ topic, id: 9 }, Buffer.from('x')));
  assert.is((await c.next((m) => m.id === 9)).code, 'BAD_UNICODE');
  assert.is(app.realtime.server.pubsub.topics.size, 0, 'nothing was created');
  // A pair of surrogates is one code point: fine.
  assert.is((await c.request({ type: 'publish', topic: 'room:\ud83d\ude00', data: 1 })).type, 'reply');
  assert.is((await c.request({ type: 'presence', action: 'join', topic: 'room:a', meta: { e: '\ud83d\ude00' } })).type, 'reply');
  await cleanup(app, c);
});

test('a lone surrogate in the HTTP API (topic, from) gets 400 BAD_UNICODE', async () => {
  const { app, http: base } = await testApp({ ...open, apiKey: KEY, log: () => {} });
  const h = { 'X-Api-Key': KEY };
  for (const body of ['{"topic":"room:\\ud83d","data":1}', '{"topic":"room:a","from":"x\\udc00","data":1}']) {
    const r = await http(`${base}/api/publish`, { method: 'POST', headers: h, body });
    assert.is(r.status, 400, body);
    assert.is(JSON.parse(r.body).error, 'BAD_UNICODE', body);
  }
  const r = await http(`${base}/api/presence?topic=${encodeURIComponent('room:\ud83d\ude00')}`, { headers: h });
  assert.is(r.status, 200);
  await cleanup(app);
});

test('tokens: a user id or pattern with a lone surrogate is refused (mint throws, verify says invalid claims)', () => {
  assert.throws(() => mintToken(SECRET, { user: `ada${LONE}`, ttlSeconds: 60 }), /surrogate/);
  assert.throws(() => mintToken(SECRET, { user: 'ada', subscribe: [`room:${LONE}`], ttlSeconds: 60 }), /surrogate/);
  const exp = Math.floor(Date.now() / 1000) + 60;
  for (const claims of [{ user: `ada${LONE}`, exp }, { user: 'ada', exp, sub: [`room:${LONE}`] }]) {
    const check = verifyToken(signRaw(claims), SECRET);
    assert.is(check.ok ? 'ok' : check.code, 'TOKEN_INVALID_CLAIMS');
  }
  assert.ok(verifyToken(signRaw({ user: 'ada\ud83d\ude00', exp }), SECRET).ok, 'a pair is fine');
});

/** Signs a payload text (already base64url) the way mintToken does. */
function signPayload(payload: string): string {
  const signed = `m1.${payload}`;
  return `${signed}.${createHmac('sha256', SECRET).update(signed).digest('base64url')}`;
}

function signRaw(claims: unknown): string {
  return signPayload(Buffer.from(JSON.stringify(claims)).toString('base64url'));
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** The other spellings of a base64url text whose last character has spare bits. */
function respellings(text: string): string[] {
  const spare = text.length % 4 === 2 ? 15 : 3; // 2 chars carry 1 byte (4 spare bits); 3 carry 2 (2 spare)
  const i = B64URL.indexOf(text.at(-1)!);
  const out: string[] = [];
  for (let k = 0; k <= spare; k++) if ((i & ~spare) + k !== i) out.push(text.slice(0, -1) + B64URL[(i & ~spare) + k]);
  return out;
}

test('tokens: a signature or payload respelled with its spare bits set does not verify (one spelling per token)', () => {
  const token = mintToken(SECRET, { user: 'ada', subscribe: ['room:*'], ttlSeconds: 600 });
  assert.ok(verifyToken(token, SECRET).ok);
  const others = respellings(token);
  assert.is(others.length, 3);
  for (const t of others) {
    assert.equal(Buffer.from(t.split('.')[2]!, 'base64url'), Buffer.from(token.split('.')[2]!, 'base64url'), 'the same bytes');
    const check = verifyToken(t, SECRET);
    assert.is(check.ok ? 'ok' : check.code, 'TOKEN_BAD_SIGNATURE');
  }
  // A payload whose encoding has spare bits, respelled and signed as it is: malformed.
  const exp = Math.floor(Date.now() / 1000) + 60;
  let payload = '';
  for (let pad = ''; payload.length % 4 === 0 || payload.length % 4 === 1; pad += 'x') payload = Buffer.from(JSON.stringify({ user: 'ada', exp, pad })).toString('base64url');
  assert.ok(verifyToken(signPayload(payload), SECRET).ok);
  for (const p of respellings(payload)) {
    const check = verifyToken(signPayload(p), SECRET);
    assert.is(check.ok ? 'ok' : check.code, 'TOKEN_MALFORMED');
  }
});

test('"__proto__", "constructor", "hasOwnProperty" as user ids, topics and meta keys: answered like any name', async () => {
  const { app, ws, http: base } = await testApp({ ...open, secret: SECRET, apiKey: KEY });
  const users: TestClient[] = [];
  for (const user of PROTO_NAMES) {
    const t = mintToken(SECRET, { user, subscribe: ['*'], publish: ['*'], presence: ['*'], ttlSeconds: 600 });
    users.push(await TestClient.connect(`${ws}?token=${t}`));
  }
  const q = await TestClient.connect(ws);
  const online = await q.request({ type: 'presence', action: 'online', users: [...PROTO_NAMES, 'nobody'] });
  assert.equal(entries(online.online), entries({ ['__proto__']: true, constructor: true, hasOwnProperty: true, nobody: false }));
  for (const [i, topic] of PROTO_NAMES.entries()) {
    const c = users[i]!;
    assert.is((await c.request({ type: 'subscribe', topic })).type, 'reply');
    // Meta keys from the client's own text: a JS literal would not make "__proto__" a key.
    c.send(`{"type":"presence","action":"join","topic":${JSON.stringify(topic)},"meta":{"__proto__":{"a":1},"constructor":2,"hasOwnProperty":3},"id":"j"}`);
    assert.is((await c.next((m) => m.id === 'j')).type, 'reply');
    const pub = await c.request({ type: 'publish', topic, data: { ['__proto__']: 1 } });
    assert.is(pub.type, 'reply');
    const msg = await c.next((m) => m.type === 'message' && m.topic === topic);
    assert.equal(entries(msg.data), [['__proto__', 1]]);
  }
  const list = await q.request({ type: 'presence', action: 'list', topic: '__proto__' });
  assert.is(list.members.length, 1);
  assert.is(list.members[0].user, '__proto__');
  assert.equal(entries(list.members[0].meta), [['__proto__', { a: 1 }], ['constructor', 2], ['hasOwnProperty', 3]]);
  const h = { 'X-Api-Key': KEY };
  for (const name of PROTO_NAMES) {
    const u = JSON.parse((await http(`${base}/api/presence?user=${name}`, { headers: h })).body) as Json;
    assert.is(u.online, true, name);
    const t = JSON.parse((await http(`${base}/api/presence?topic=${name}`, { headers: h })).body) as Json;
    assert.is(t.count, 1, name);
    const p = await http(`${base}/api/publish`, { method: 'POST', headers: h, body: JSON.stringify({ topic: name, from: name, data: 1 }) });
    assert.is(p.status, 200, name);
  }
  await cleanup(app, q, ...users);
});

test('peekId reads an id at the start or the end of a frame, never parses it, and gives null otherwise', () => {
  const t = (s: string) => peekId(Buffer.from(s), false);
  assert.is(t('{"id":5,"type":"ping"}'), 5);
  assert.is(t('{ "type" : "publish" , "id" : "a-1", "data": 1}'), 'a-1');
  assert.is(t(`{"type":"publish","topic":"t","data":"${'x'.repeat(100_000)}","id":42}`), 42);
  assert.is(t(`{"type":"publish","data":{"id":3}}`), null, 'a nested id at the end is not the id');
  assert.is(t(`{"type":"publish","data":{"id":3},"x":1}`), null);
  assert.is(t('{"id":"a\\"b"}'), null, 'a string with escapes');
  assert.is(t('{"id":1.5}'), null);
  assert.is(t('{"id":12345678901234567}'), null, 'not a safe integer');
  assert.is(t(`{"id":"${'x'.repeat(65)}"}`), null, 'longer than MAX_ID_LENGTH');
  assert.is(t('not json'), null);
  assert.is(t(''), null);
  assert.is(peekId(encodeBinaryPublish({ topic: 't', id: 8 }, Buffer.from('{"id":9}')), true), 8, 'the header, not the payload');
  assert.is(peekId(Buffer.from([0xff, 0xff, 1]), true), null);
  assert.is(peekId(Buffer.from([0]), true), null);
});

test('a frame refused by the rate limiter is not JSON-parsed; its error still carries the id', async () => {
  const { app, ws } = await testApp({ ...open, rateLimit: 0.001, rateBurst: 1, abuseMaxErrors: 100 });
  const c = await TestClient.connect(ws);
  assert.is((await c.request({ type: 'ping' })).type, 'reply');
  const parse = JSON.parse;
  let largest = 0;
  JSON.parse = ((text: string, reviver?: (this: unknown, key: string, value: unknown) => unknown) => {
    largest = Math.max(largest, String(text).length);
    return parse(text, reviver);
  }) as typeof JSON.parse;
  try {
    c.send({ type: 'publish', topic: 'room:a', data: 'x'.repeat(50_000), id: 77 });
    const e = await c.next((m) => m.type === 'error');
    assert.is(e.code, 'RATE_LIMITED');
    assert.is(e.id, 77);
  } finally {
    JSON.parse = parse;
  }
  assert.ok(largest < 1000, `largest JSON.parse input: ${largest} characters`);
  await cleanup(app, c);
});

test('wellFormed and jsonWellFormed: lone surrogates anywhere, pairs fine, deep values without recursion', () => {
  assert.ok(wellFormed('room:\ud83d\ude00'));
  assert.not.ok(wellFormed('\ude00'));
  assert.not.ok(wellFormed(`a${LONE}b`));
  let deep: unknown = LONE;
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.not.ok(jsonWellFormed(deep));
  assert.ok(jsonWellFormed({ a: [1, null, true, { b: '\ud83d\ude00' }] }));
});

test.after.each(closeAll);
test.run();
