// The load generator's serve scenario (native-bench/loadgen.c --scenario serve) against a real
// `murmur serve` app: the tokens it mints in C are the ones src/app/token.ts accepts, a user is
// held only once every command's reply came back ok, a refused command fails the user by its
// code, and stamped messages and the big room's deliveries are counted. Small and on loopback.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { verifyToken } from '../../src/app/token.js';
import { closeAll, testApp } from '../app/helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SECRET = 'loadgen-serve-secret';
const API_KEY = 'loadgen-serve-key';
const { buildLoadgen, LOADGEN } = (await import(`${ROOT}native-bench/loadgen-build.mjs`)) as { buildLoadgen: (log: (m: string) => void) => void; LOADGEN: string };
buildLoadgen(() => {});

test.after.each(closeAll);

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Runs the load generator to its end; its JSON lines (events and the result, last). */
function loadgen(port: number, args: string[], secret = SECRET): Promise<Json[]> {
  return new Promise((resolve, reject) => {
    const p = spawn(LOADGEN, ['--port', String(port), '--scenario', 'serve', '--quiet', '--src-first', '1', ...args], {
      env: { ...process.env, MURMUR_SECRET: secret },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('exit', () => {
      clearTimeout(timer);
      try {
        resolve(out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Json));
      } catch (e) {
        reject(new Error(`${String(e)}: ${out} ${err}`));
      }
    });
  });
}

function publish(port: number, topic: string, data: unknown): Promise<number> {
  return new Promise((resolve) => {
    const body = JSON.stringify({ topic, data });
    const req = request({ host: '127.0.0.1', port, path: '/api/publish', method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': API_KEY, 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

test('loadgen serve: the token minted in C for user i verifies with the server secret (short and hashed keys)', () => {
  for (const secret of [SECRET, 'k'.repeat(100)]) {
    const r = spawnSync(LOADGEN, ['--print-token', '42'], { env: { ...process.env, MURMUR_SECRET: secret }, encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    const check = verifyToken(r.stdout.trim(), secret);
    assert.ok(check.ok, JSON.stringify(check));
    if (check.ok) {
      assert.is(check.claims.user, 'user-42');
      assert.equal(check.claims.permissions, { subscribe: ['room:*'], publish: [], presence: ['room:*'] });
      assert.ok(check.claims.exp * 1000 > Date.now() + 86400_000);
    }
    assert.not.ok(verifyToken(r.stdout.trim(), `${secret}x`).ok);
  }
});

test('loadgen serve: a user whose command is refused is a failure counted by its error code, not a held user', async () => {
  const { port } = await testApp({ secret: SECRET, maxSubscriptions: 1 });
  // users 0..4 also subscribe to room:big: their second subscription is over the cap
  const lines = await loadgen(port, ['-c', '20', '--rooms', '4', '--big-room', '5', '--duration', '0.2']);
  const res = lines.at(-1)!;
  assert.is(res.scenario, 'serve');
  assert.is(res.connections, 15, JSON.stringify(res));
  assert.is(res.failed, 5);
  assert.equal(res.fail_reasons, { command_error: 5 });
  const codes = Object.entries(res.error_codes as Record<string, number>);
  assert.is(codes.length, 1, JSON.stringify(res.error_codes));
  assert.is(codes[0]![1], 5);
  assert.match(codes[0]![0], /^[A-Z_]+$/);
});

test('loadgen serve: users the server closes before their replies fail as setup, counted by close code', async () => {
  const { port } = await testApp({ secret: SECRET, maxConnections: 5 });
  // beyond --max-connections serve accepts the upgrade and closes at once (1013)
  const res = (await loadgen(port, ['-c', '12', '--concurrency', '1', '--duration', '0.2'])).at(-1)!;
  assert.is(res.connections, 5, JSON.stringify(res));
  assert.is(res.failed, 7);
  assert.equal(res.fail_reasons, { setup: 7 });
  assert.equal(res.error_codes, { close_1013: 7 });
});

test('loadgen serve: tokens signed with another secret fail at the upgrade (401)', async () => {
  const { port } = await testApp({ secret: SECRET });
  const res = (await loadgen(port, ['-c', '5', '--duration', '0.2'], 'another-secret')).at(-1)!;
  assert.is(res.connections, 0);
  assert.equal(res.fail_reasons, { status: 5 });
});

test('loadgen serve, stepped: users held per step; stamped deliveries and the big room counted after mark', async () => {
  const { port } = await testApp({ secret: SECRET, apiKey: API_KEY });
  const p = spawn(LOADGEN, ['--port', String(port), '--scenario', 'serve', '--quiet', '--stepped', '-c', '40', '--rooms', '4', '--big-room', '10', '--duration', '20', '--stdin-eof-stop'], {
    env: { ...process.env, MURMUR_SECRET: SECRET },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const events: Json[] = [];
  let rest = '';
  p.stdout.on('data', (d) => {
    const parts = (rest + String(d)).split('\n');
    rest = parts.pop()!;
    for (const l of parts) if (l.startsWith('{')) events.push(JSON.parse(l) as Json);
  });
  let err = '';
  p.stderr.on('data', (d) => (err += d));
  const next = async (kind: string): Promise<Json> => {
    for (let i = 0; i < 200; i++) {
      const at = events.findIndex((e) => e.event === kind);
      if (at >= 0) return events.splice(at, 1)[0]!;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no ${kind} event: ${err}`);
  };
  try {
    for (let i = 0; i < 100 && !err.includes('READY'); i++) await new Promise((r) => setTimeout(r, 50));
    p.stdin.write('grow 20\n');
    const s1 = await next('step');
    assert.is(s1.connected, 20);
    assert.is(s1.failed, 0);
    p.stdin.write('grow 40\n');
    const s2 = await next('step');
    assert.is(s2.connected, 40);
    assert.is(s2.step_connected, 20);
    p.stdin.write('mark\ndeliveries\n');
    assert.is((await next('deliveries')).deliveries, 0);
    const sent = Number(process.hrtime.bigint()) / 1e6;
    assert.is(await publish(port, 'room:1', { t: sent }), 200);
    assert.is(await publish(port, 'room:big', { big: true }), 200);
    let d: Json = {};
    for (let i = 0; i < 40; i++) {
      p.stdin.write('deliveries\n');
      d = await next('deliveries');
      if (d.deliveries === 10 && d.big === 10) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.is(d.deliveries, 10, 'the 10 users of room:1 (users 1, 5, 9 ... 37)');
    assert.is(d.big, 10);
    assert.is(d.untimed, 0);
    assert.ok(d.p50_ms > 0 && d.p99_ms >= d.p50_ms && d.p50_ms < Number(process.hrtime.bigint()) / 1e6 - sent + 1, JSON.stringify(d));
    assert.ok(d.big_last_ns >= d.big_first_ns && d.big_first_ns / 1e6 > sent);
  } finally {
    p.stdin.end('stop\n');
    await new Promise((r) => (p.exitCode !== null ? r(null) : p.on('exit', r)));
  }
});

test.run();
