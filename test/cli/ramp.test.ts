import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { WebSocket as WsClient } from 'ws';
import { until, delay } from '../helpers/net.js';
import { startEcho, startServe, stopEcho } from '../helpers/process.js';
import type { EchoProcess } from '../helpers/process.js';

// What the million-socket harness (native-bench/ramp) relies on in `murmur echo`: the ping-all
// control message across workers, STATS with each worker's pid, --max-connections,
// --ping-interval and --idle-timeout; and the harness's own self-test (no sockets).
const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const selftest = fileURLToPath(new URL('../../../native-bench/ramp/selftest.mjs', import.meta.url));
const rampScript = fileURLToPath(new URL('../../../native-bench/ramp/ramp.mjs', import.meta.url));

type Echo = EchoProcess;
const start = startEcho;
const stop = stopEcho;

function jsonLines(out: string, prefix: string): Array<Record<string, unknown>> {
  return out
    .split('\n')
    .filter((l) => l.startsWith(prefix))
    .map((l) => JSON.parse(l.slice(prefix.length)) as Record<string, unknown>);
}

async function stats(e: Echo, workers: number): Promise<Array<Record<string, unknown>>> {
  const before = jsonLines(e.out(), 'STATS ').length;
  e.child.kill('SIGUSR2');
  await until(() => jsonLines(e.out(), 'STATS ').length >= before + workers, 5000, 'STATS from every worker');
  return jsonLines(e.out(), 'STATS ').slice(before);
}

test('pingall K: every worker pings each of its connections once and reports when all pongs are in', async () => {
  const e = start(['--workers', '2', '--mode', 'broadcast', '--ping-interval', '0', '--idle-timeout', '0']);
  const clients: WsClient[] = [];
  try {
    const port = await e.port;
    // open connections until both workers hold some (the kernel decides who accepts)
    for (let round = 0; round < 20; round++) {
      const batch = Array.from({ length: 4 }, () => new WsClient(`ws://127.0.0.1:${port}/`));
      await Promise.all(batch.map((c) => once(c, 'open')));
      clients.push(...batch);
      const s = await stats(e, 2);
      if (s.every((w) => (w.connections as number) > 0)) break;
    }
    const perWorker = await stats(e, 2);
    assert.ok(perWorker.every((w) => (w.connections as number) > 0), 'both workers hold connections');
    const pids = perWorker.map((w) => w.pid);
    assert.ok(pids.every((p) => typeof p === 'number') && pids[0] !== pids[1], `STATS carries each worker's pid: ${JSON.stringify(pids)}`);

    const pings = clients.map(() => [] as string[]);
    clients.forEach((c, i) => c.on('ping', (d: Buffer) => pings[i]!.push(d.toString())));
    clients[0]!.send('pingall 41');
    await until(() => jsonLines(e.out(), 'PINGS ').length >= 2, 5000, 'PINGS from both workers');
    const reports = jsonLines(e.out(), 'PINGS ');
    assert.equal(reports.map((r) => r.round), [41, 41]);
    assert.is(reports.reduce((a, r) => a + (r.pinged as number), 0), clients.length);
    assert.is(reports.reduce((a, r) => a + (r.pongs as number), 0), clients.length);
    for (const r of reports) {
      assert.is(r.complete, true);
      assert.ok((r.startNs as number) <= (r.sentNs as number) && (r.sentNs as number) <= (r.doneNs as number), 'times in order');
    }
    await until(() => pings.every((p) => p.length === 1), 2000, 'one ping at every client');
    assert.ok(pings.every((p) => p[0] === '41'), 'the ping carries the round');

    // the same round again is ignored; a new round pings again
    clients[1]!.send('pingall 41');
    await delay(300);
    assert.is(jsonLines(e.out(), 'PINGS ').length, 2, 'a round already seen is not repeated');
    clients[2]!.send('pingall 42');
    await until(() => jsonLines(e.out(), 'PINGS ').length >= 4, 5000, 'PINGS for round 42');
    assert.ok(pings.every((p) => p.length === 2));
    const after = await stats(e, 2);
    assert.is(after.reduce((a, w) => a + ((w.pings as { pongs: number }).pongs), 0), clients.length, 'STATS carries the ping counters');

    // malformed or oversized commands are ignored: no round 0, no 10-digit round
    clients[0]!.send('pingall 0');
    clients[0]!.send('pingall 1234567890');
    await delay(300);
    assert.is(jsonLines(e.out(), 'PINGS ').length, 4);
  } finally {
    for (const c of clients) c.terminate();
    await stop(e);
  }
});

test('--max-connections answers 503 beyond the cap, and a closed connection frees its place', async () => {
  const e = start(['--max-connections', '2']);
  const clients: WsClient[] = [];
  try {
    const port = await e.port;
    for (let i = 0; i < 2; i++) {
      const c = new WsClient(`ws://127.0.0.1:${port}/`);
      await once(c, 'open');
      clients.push(c);
    }
    const third = new WsClient(`ws://127.0.0.1:${port}/`);
    third.on('error', () => {}); // ws reports the refused upgrade as an error too
    const [, res] = (await once(third, 'unexpected-response')) as [unknown, { statusCode: number }];
    assert.is(res.statusCode, 503);
    third.terminate();
    clients[0]!.close();
    await once(clients[0]!, 'close');
    // The client may see its socket close before the server has counted the close: ask again
    // (bounded) until the count follows.
    let open = -1;
    for (let i = 0; i < 50 && open !== 1; i++) {
      if (i > 0) await delay(100);
      open = (await stats(e, 1))[0]!.connections as number;
    }
    assert.is(open, 1);
    const again = new WsClient(`ws://127.0.0.1:${port}/`);
    await once(again, 'open');
    clients.push(again);
  } finally {
    for (const c of clients) c.terminate();
    await stop(e);
  }
});

test('--ping-interval and --idle-timeout reach the server; bad values are usage errors', async () => {
  const e = start(['--ping-interval', '200', '--idle-timeout', '0']);
  const c = new WsClient(`ws://127.0.0.1:${await e.port}/`, { autoPong: false });
  try {
    await once(c, 'open');
    const t0 = Date.now();
    await once(c, 'ping');
    assert.ok(Date.now() - t0 < 3000, 'a quiet connection is pinged after --ping-interval');
  } finally {
    c.terminate();
    await stop(e);
  }
  for (const bad of [['--ping-interval', '-1'], ['--idle-timeout', '1.5'], ['--max-connections', 'x']]) {
    const r = spawnSync(process.execPath, [main, 'echo', '--port', '0', ...bad], { encoding: 'utf8', timeout: 10_000 });
    assert.is.not(r.status, 0, bad.join(' '));
    assert.match(r.stderr, new RegExp(bad[0]!.slice(2)), `the message names ${bad[0]}`);
  }
});

test('the ramp harness self-test passes (options, limits from a fake /proc, summary, chart)', () => {
  const r = spawnSync(process.execPath, [selftest], { encoding: 'utf8', timeout: 30_000 });
  assert.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /Passed:\s+\d+/);
});

test('serve --workers 2 answers SIGUSR2 with one STATS line per worker, counting its connections (the ramp with --server serve)', async () => {
  const e = startServe(['--workers', '2']);
  const clients: WsClient[] = [];
  try {
    const port = await e.port;
    for (let i = 0; i < 6; i++) clients.push(new WsClient(`ws://127.0.0.1:${port}/ws`));
    await Promise.all(clients.map((c) => once(c, 'open')));
    const s = await stats(e, 2);
    assert.is(s.length, 2);
    assert.is(s.reduce((a, w) => a + (w.connections as number), 0), clients.length);
    assert.ok(s.every((w) => typeof w.pid === 'number' && w.pid !== e.child.pid && typeof w.rss === 'number' && w.transport === 'lean'), JSON.stringify(s));
    assert.ok(e.child.exitCode === null, 'the primary is still running');
  } finally {
    for (const c of clients) c.terminate();
    await stop(e);
  }
});

test('ramp --server serve: the load generator holds anonymous clients of serve --workers 2 past its welcome; memory per connection from every worker', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ramp-serve-'));
  try {
    const out = path.join(dir, 'run.json');
    const r = spawnSync(process.execPath, [rampScript, '--server', 'serve', '--target', '300', '--workers', '2', '--settle', '0', '--max-time', '100', '--node', process.execPath, '--chart', 'none', '--out', out, '--quiet'], { encoding: 'utf8', timeout: 120_000 });
    assert.is(r.status, 0, r.stderr);
    const run = JSON.parse(readFileSync(out, 'utf8')) as { server: { kind: string; transport: string }; summary: { held: number; stop: { limit: string }; perConnection: { heapUsed: number } }; steps: Array<{ serverConnections: number }> };
    assert.is(run.server.kind, 'serve');
    assert.is(run.server.transport, 'lean');
    assert.is(run.summary.held, 300);
    assert.is(run.summary.stop.limit, 'target');
    assert.is(run.steps.at(-1)!.serverConnections, 300, 'the workers count every client held');
    assert.ok(run.summary.perConnection.heapUsed > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
