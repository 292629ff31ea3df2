// The HTTP side of murmur serve on the same port as the WebSockets: health, readiness during a
// drain, Prometheus metrics (parsed), the API (key, publish, body limit), static files.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { request as httpRequest } from 'node:http';
import { TestClient, testApp, cleanup, closeAll, http } from './helpers.js';
import { RawClient, upgradeRequest } from '../helpers/net.js';

const open = { anonymous: { subscribe: ['*'], publish: ['*'], presence: ['*'] } };

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A strict parser of the Prometheus text format (0.0.4): throws on any line it does not understand. */
function parseMetrics(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (m !== null) {
      assert.not.ok(helps.has(m[1]!), `HELP twice for ${m[1]}`);
      helps.add(m[1]!);
      continue;
    }
    m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m !== null) {
      assert.not.ok(types.has(m[1]!), `TYPE twice for ${m[1]}`);
      types.set(m[1]!, m[2]!);
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`not a metrics line: ${JSON.stringify(line)}`);
    const name = m[1]!;
    assert.ok(types.has(name), `${name} has no TYPE before its samples`);
    const labels: Record<string, string> = {};
    if (m[2] !== undefined && m[2] !== '') {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
      let lm: RegExpExecArray | null;
      let consumed = 0;
      while ((lm = re.exec(m[2])) !== null) {
        labels[lm[1]!] = lm[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
        consumed = re.lastIndex;
        if (lm[3] === '') break;
      }
      assert.is(consumed, m[2].length, `labels of ${JSON.stringify(line)}`);
    }
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    assert.ok(!Number.isNaN(value) || m[3] === 'NaN', `value of ${line}`);
    if (types.get(name) === 'counter') assert.ok(value >= 0, `counter ${name} is negative`);
    samples.push({ name, labels, value });
  }
  return { types, samples };
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

test('healthz and readyz answer on the WebSocket port; HEAD has no body', async () => {
  const { app, http: base } = await testApp();
  const h = await http(`${base}/healthz`);
  assert.equal([h.status, h.body], [200, 'ok\n']);
  const r = await http(`${base}/readyz`);
  const lean = app.realtime.server.transportKind === 'lean';
  assert.equal([r.status, r.body], [200, lean ? 'ready\n' : 'ready (transport: socket; the lean transport is off)\n']);
  const head = await http(`${base}/healthz`, { method: 'HEAD' });
  assert.equal([head.status, head.body], [200, '']);
  assert.is((await http(`${base}/healthz`, { method: 'POST' })).status, 405);
  const nf = await http(`${base}/nope`);
  assert.is(nf.status, 404);
  assert.is(JSON.parse(nf.body).error, 'NOT_FOUND');
  await cleanup(app);
});

test('drain: readyz is 503 with Retry-After, clients get 1012 with a retry-after hint, then the port closes', async () => {
  const { app, port, http: base } = await testApp({ retryAfterSeconds: 3, shutdownTimeoutMs: 30_000 });
  // A raw client that will not answer the close frame keeps the drain in progress until it goes.
  const raw = await RawClient.connect(port);
  raw.write(upgradeRequest({ path: '/ws' }));
  assert.match(await raw.readHead(), /^HTTP\/1\.1 101/);
  await raw.readFrame(); // welcome
  const done = app.shutdown();
  const frame = await raw.readFrame();
  assert.is(frame.opcode, 8);
  assert.is(frame.payload.readUInt16BE(0), 1012);
  assert.is(frame.payload.subarray(2).toString(), 'server restarting; retry-after=3');
  const r = await http(`${base}/readyz`);
  assert.is(r.status, 503);
  assert.is(r.headers['retry-after'], '3');
  assert.is((await http(`${base}/healthz`)).status, 200, 'alive while draining');
  const m = parseMetrics((await http(`${base}/metrics`)).body);
  assert.is(value(m.samples, 'murmur_draining'), 1);
  raw.destroy();
  await done;
  let refused = false;
  await http(`${base}/healthz`).catch(() => (refused = true));
  assert.ok(refused, 'the port is closed after the drain');
});

test('draining or full: new connections are accepted, then closed with 1013 and a retry-after hint', async () => {
  const { app, ws } = await testApp({ maxConnections: 1, retryAfterSeconds: 4 });
  const first = await TestClient.connect(ws);
  const second = TestClient.open(ws);
  assert.equal(await second.waitClosed(), { code: 1013, reason: 'server full; retry-after=4' });
  first.close();
  await first.waitClosed();
  app.realtime.draining = true;
  const third = TestClient.open(ws);
  assert.equal(await third.waitClosed(), { code: 1013, reason: 'server draining; retry-after=4' });
  assert.equal({ ...app.realtime.counters.refused }, { full: 1, draining: 1 });
  await cleanup(app);
});

test('metrics: Prometheus text that parses, with connections, upgrades by reason, messages, drops, topics, history', async () => {
  const { app, ws, http: base } = await testApp({ ...open, secret: 'k3y-for-metrics', requireToken: false });
  const a = await TestClient.connect(ws);
  const b = await TestClient.connect(ws);
  await b.request({ type: 'subscribe', topic: 'room:m' });
  await a.request({ type: 'publish', topic: 'room:m', data: 'x'.repeat(100) });
  await b.messages('room:m', 1);
  await a.expectError('nope', 'BAD_JSON');
  const bad = TestClient.open(`${ws}?token=forged`);
  await bad.refusedStatus();
  const res = await http(`${base}/metrics`);
  assert.is(res.status, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const { types, samples } = parseMetrics(res.body);
  assert.is(types.get('murmur_connections'), 'gauge');
  assert.is(types.get('murmur_messages_received_total'), 'counter');
  assert.is(value(samples, 'murmur_connections'), 2);
  assert.is(value(samples, 'murmur_transport_info', { transport: app.realtime.server.transportKind }), 1);
  assert.is(value(samples, 'murmur_upgrades_accepted_total'), 2);
  assert.is(value(samples, 'murmur_upgrades_rejected_total', { reason: 'TOKEN_MALFORMED' }), 1);
  assert.is(value(samples, 'murmur_messages_received_total'), 3);
  assert.ok(value(samples, 'murmur_bytes_received_total')! > 100);
  assert.ok(value(samples, 'murmur_messages_sent_total')! >= 6, 'welcomes, replies, the delivery, the error');
  assert.ok(value(samples, 'murmur_bytes_sent_total')! > 100);
  assert.is(value(samples, 'murmur_published_total'), 1);
  assert.is(value(samples, 'murmur_deliveries_total'), 1);
  assert.is(value(samples, 'murmur_dropped_messages_total'), 0);
  assert.is(value(samples, 'murmur_topics'), 1);
  assert.is(value(samples, 'murmur_subscriptions'), 1);
  assert.is(value(samples, 'murmur_history_topics'), 1);
  assert.is(value(samples, 'murmur_history_messages'), 1);
  assert.ok(value(samples, 'murmur_history_bytes')! > 100);
  assert.is(value(samples, 'murmur_command_errors_total', { code: 'BAD_JSON' }), 1);
  assert.is(value(samples, 'murmur_online_users'), 0, 'anonymous connections in no presence topic are not online users');
  assert.is(value(samples, 'murmur_http_requests_total', { route: 'metrics', code: '200' }), 1);
  assert.ok(value(samples, 'process_resident_memory_bytes')! > 0);
  await cleanup(app, a, b);
});

test('metrics: drops by backpressure are counted (a subscriber that does not read)', async () => {
  const { app, port, ws, http: base } = await testApp({ ...open, slowConsumer: 'drop', maxBackpressure: 16 * 1024, rateBurst: 10_000 });
  const raw = await RawClient.connect(port);
  raw.socket.pause();
  raw.write(upgradeRequest({ path: '/ws' }));
  const { clientFrame } = await import('../helpers/net.js');
  raw.write(clientFrame(1, JSON.stringify({ type: 'subscribe', topic: 'room:slow' })));
  const pub = await TestClient.connect(ws);
  // The subscribe lands before these publishes are handled (one connection's frames are in order; this waits for the subscription).
  for (let i = 0; i < 100 && app.realtime.server.subscriberCount('room:slow') === 0; i++) await pub.request({ type: 'ping' });
  const big = 'x'.repeat(30_000);
  // 18 MB: more than loopback socket buffers can absorb even when autotuned to their maximum.
  for (let i = 0; i < 600; i++) pub.send({ type: 'publish', topic: 'room:slow', data: big, echo: false });
  await pub.request({ type: 'ping' });
  const samples = parseMetrics((await http(`${base}/metrics`)).body).samples;
  assert.ok(value(samples, 'murmur_dropped_messages_total')! > 0);
  raw.destroy();
  await cleanup(app, pub);
});

test('API: off without a key (403); wrong or missing key 401; X-Api-Key or Bearer works', async () => {
  const off = await testApp();
  const r0 = await http(`${off.http}/api/presence?topic=room:a`);
  assert.is(r0.status, 403);
  assert.is(JSON.parse(r0.body).error, 'API_DISABLED');
  await cleanup(off.app);

  const { app, http: base } = await testApp({ apiKey: 'the-key' });
  assert.is((await http(`${base}/api/presence?topic=room:a`)).status, 401);
  assert.is((await http(`${base}/api/presence?topic=room:a`, { headers: { 'X-Api-Key': 'the-kez' } })).status, 401);
  assert.is((await http(`${base}/api/presence?topic=room:a`, { headers: { 'X-Api-Key': 'the-key-longer' } })).status, 401);
  assert.is((await http(`${base}/api/presence?topic=room:a`, { headers: { 'X-Api-Key': 'the-key' } })).status, 200);
  assert.is((await http(`${base}/api/presence?topic=room:a`, { headers: { Authorization: 'Bearer the-key' } })).status, 200);
  assert.is((await http(`${base}/api/presence`, { headers: { 'X-Api-Key': 'the-key' } })).status, 400);
  assert.is((await http(`${base}/api/presence?topic=$p:x`, { headers: { 'X-Api-Key': 'the-key' } })).status, 400);
  await cleanup(app);
});

test('API: POST /api/publish delivers JSON and binary messages with offsets; bad bodies get 400', async () => {
  const { app, ws, http: base } = await testApp({ ...open, apiKey: 'k' });
  const sub = await TestClient.connect(ws);
  await sub.request({ type: 'subscribe', topic: 'room:api' });
  const post = (body: string) => http(`${base}/api/publish`, { method: 'POST', headers: { 'X-Api-Key': 'k', 'Content-Type': 'application/json' }, body });
  const r = await post(JSON.stringify({ topic: 'room:api', data: { text: 'from the API' } }));
  assert.is(r.status, 200);
  const reply = JSON.parse(r.body) as Record<string, unknown>;
  assert.is(reply.delivered, 1);
  assert.is(reply.offset, 1);
  const [m] = await sub.messages('room:api', 1);
  assert.equal(m, { type: 'message', topic: 'room:api', epoch: reply.epoch, offset: 1, from: 'api', data: { text: 'from the API' } });
  const b = await post(JSON.stringify({ topic: 'room:api', base64: Buffer.from([1, 2, 3]).toString('base64'), from: 'backend' }));
  assert.is(b.status, 200);
  const bin = await sub.nextBinary();
  assert.equal([bin.msg.from, bin.msg.offset, [...bin.payload]], ['backend', 2, [1, 2, 3]]);
  const cases: Array<[string, string]> = [
    ['{', 'BAD_JSON'],
    ['[1]', 'BAD_COMMAND'],
    [JSON.stringify({ data: 1 }), 'MISSING_FIELD'],
    [JSON.stringify({ topic: 'room:api' }), 'MISSING_FIELD'],
    [JSON.stringify({ topic: '$p:x', data: 1 }), 'BAD_TOPIC'],
    [JSON.stringify({ topic: 'room:api', base64: '!!!' }), 'BAD_FIELD'],
    [JSON.stringify({ topic: 'room:api', data: 1, from: '' }), 'BAD_FIELD'],
  ];
  for (const [body, code] of cases) {
    const res = await post(body);
    assert.is(res.status, 400, body);
    assert.is(JSON.parse(res.body).error, code, body);
  }
  assert.is((await http(`${base}/api/publish`, { headers: { 'X-Api-Key': 'k' } })).status, 405);
  await cleanup(app, sub);
});

test('API: bodies over maxBodyBytes get 413, declared or streamed', async () => {
  const { app, port, http: base } = await testApp({ apiKey: 'k', maxBodyBytes: 1024 });
  const declared = await http(`${base}/api/publish`, { method: 'POST', headers: { 'X-Api-Key': 'k' }, body: JSON.stringify({ topic: 'room:a', data: 'x'.repeat(2000) }) });
  assert.is(declared.status, 413);
  assert.is(JSON.parse(declared.body).error, 'TOO_LARGE');
  // Chunked, no Content-Length: counted as it arrives.
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/api/publish', method: 'POST', headers: { 'X-Api-Key': 'k', 'Transfer-Encoding': 'chunked' }, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.write('x'.repeat(800));
    req.write('x'.repeat(800));
    // The end may never be read: the server answers as soon as the limit is passed.
  });
  assert.is(status, 413);
  const ok = await http(`${base}/api/publish`, { method: 'POST', headers: { 'X-Api-Key': 'k' }, body: JSON.stringify({ topic: 'room:a', data: 'small' }) });
  assert.is(ok.status, 200);
  await cleanup(app);
});

test('static: the demo page (with a CSP), its script and the browser client; upgrades only on /ws', async () => {
  const { app, port, http: base } = await testApp();
  const page = await http(`${base}/`);
  assert.is(page.status, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assert.match(page.body, /murmur chat/);
  assert.match(String(page.headers['content-security-policy']), /default-src 'self'/);
  const demo = await http(`${base}/demo.js`);
  assert.match(demo.body, /from '\/murmur-client\.js'/);
  const lib = await http(`${base}/murmur-client.js`);
  assert.is(lib.status, 200);
  assert.match(String(lib.headers['content-type']), /^text\/javascript/);
  assert.match(lib.body, /export class MurmurClient/);
  assert.not.match(lib.body, /sourceMappingURL/);
  const raw = await RawClient.connect(port);
  raw.write(upgradeRequest({ path: '/elsewhere' }));
  assert.match(await raw.readHead(), /^HTTP\/1\.1 404/);
  raw.destroy();
  assert.is(app.realtime.counters.upgradeRejected.NOT_FOUND, 1);
  await cleanup(app);
});

test.after.each(closeAll);

test.run();
