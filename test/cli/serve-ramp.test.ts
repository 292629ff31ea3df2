// The serve ramp harness (native-bench/ramp/serve-ramp.mjs) end to end at a small scale: every
// user held with its token, room and presence, the four measurements reported, nothing left
// running. The figures themselves are benchmarks, not assertions.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const harness = fileURLToPath(new URL('../../../native-bench/ramp/serve-ramp.mjs', import.meta.url));

const small = ['-n', '300', '--workers', '2', '--rooms', '10', '--big-room', '100', '--rate', '50', '--seconds', '1', '--settle', '0'];

function run(args: string[]): Record<string, any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = spawnSync(process.execPath, [harness, ...small, ...args], { encoding: 'utf8', timeout: 90_000 });
  assert.is(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.is(res.held, 300);
  assert.is(res.stopped, null);
  assert.is(res.publishes, 50);
  assert.is(res.publishes_refused, 0);
  assert.is(res.deliveries, 50 * 30, 'each of 50 publishes reaches the 30 users of its room');
  assert.ok(res.latency_p99_ms >= res.latency_p50_ms && res.latency_p50_ms > 0);
  assert.is(res.big_room_delivered, 100);
  assert.ok(res.serve_rss_per_user > 0 && res.handshakes_per_s > 0);
  return res;
}

test('serve-ramp, Node clients: 300 users on 2 workers, publishes to random rooms and one to a big room; one JSON result', () => {
  assert.is(run(['--clients', 'node', '--per-client', '150']).clients, 'node');
});

test('serve-ramp, native clients (the default): the same figures from the load generator, grown in steps, from 2 publisher processes', () => {
  const res = run(['--step', '100', '--publishers', '2']);
  assert.is(res.clients, 'native');
  assert.is(res.publishers, 2);
  assert.equal(res.steps.map((s: { held: number }) => s.held), [100, 200, 300]);
  assert.ok(res.steps.every((s: { failed: number }) => s.failed === 0));
  assert.ok(res.big_room_ms > 0);
});

test.run();
