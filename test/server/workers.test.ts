import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { WebSocket as WsClient } from 'ws';
import { until, delay } from '../helpers/net.js';
import { alive, startEcho } from '../helpers/process.js';
import { reusePortSupported } from '../../src/server/supervisor.js';
import { LISTEN_BACKLOG } from '../../src/limits.js';

// `murmur echo --workers 2` as a real child process: connections spread over two worker
// processes, and a publish on one worker reaches the subscribers on the other.
const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const start = startEcho;

async function stats(child: ChildProcess, out: () => string, workers: number): Promise<Array<{ connections: number; pid?: number }>> {
  const before = (out().match(/STATS /g) ?? []).length;
  child.kill('SIGUSR2');
  await until(() => (out().match(/STATS /g) ?? []).length >= before + workers, 5000, 'STATS from every worker');
  return out()
    .split('\n')
    .filter((l) => l.startsWith('STATS '))
    .slice(before)
    .map((l) => JSON.parse(l.slice(6)) as { connections: number });
}

test('connections spread over the workers, and a publish reaches subscribers on every worker', async () => {
  const { child, out, port } = start(['--workers', '2', '--mode', 'broadcast']);
  const p = await port;
  const clients: WsClient[] = [];
  try {
    // Open connections until both workers hold some (the kernel decides who accepts).
    for (let round = 0; round < 20; round++) {
      const batch = Array.from({ length: 10 }, () => new WsClient(`ws://127.0.0.1:${p}/`));
      await Promise.all(batch.map((c) => once(c, 'open')));
      clients.push(...batch);
      await delay(50);
      const s = await stats(child, out, 2);
      if (s.every((w) => w.connections > 0)) break;
    }
    const perWorker = await stats(child, out, 2);
    assert.ok(perWorker.every((w) => w.connections > 0), `connections per worker: ${JSON.stringify(perWorker.map((w) => w.connections))}`);
    assert.is(perWorker.reduce((a, w) => a + w.connections, 0), clients.length);

    const counts = clients.map(() => 0);
    clients.forEach((c, i) => c.on('message', () => counts[i]!++));
    clients[0]!.send('pub 5 100');
    await until(() => counts.every((n) => n === 5), 5000, `5 messages at every client (${counts.join(',')})`);
  } finally {
    for (const c of clients) c.terminate();
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
});

test('broadcast mode ignores a pub command beyond its bounds and stays responsive', async () => {
  const { child, port } = start(['--mode', 'broadcast']);
  const p = await port;
  const ws = new WsClient(`ws://127.0.0.1:${p}/`);
  await once(ws, 'open');
  let got = 0;
  ws.on('message', () => got++);
  try {
    ws.send('pub 999999999 1000'); // a billion messages: refused
    ws.send('pub 2000 100000'); // 200 MB in one tick: refused
    ws.send('pub 3 10'); // within bounds: served
    await until(() => got === 3, 5000, 'the bounded command answered');
    await delay(200);
    assert.is(got, 3);
  } finally {
    ws.terminate();
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
});

test('echo through workers, and SIGTERM stops every worker', async () => {
  const { child, port } = start(['--workers', '2']);
  const p = await port;
  const ws = new WsClient(`ws://127.0.0.1:${p}/`);
  await once(ws, 'open');
  ws.send('hello workers');
  const [m] = (await once(ws, 'message')) as [Buffer];
  assert.is(m.toString(), 'hello workers');
  const closed = once(ws, 'close');
  child.kill('SIGTERM');
  const [code] = (await closed) as [number];
  assert.is(code, 1001);
  const [exitCode] = (await once(child, 'exit')) as [number];
  assert.is(exitCode, 0);
});

test('killing the supervisor leaves no worker behind', async () => {
  const { child, out, port } = start(['--workers', '2']);
  await port;
  const pids = (await stats(child, out, 2)).map((s) => s.pid!);
  assert.is(new Set(pids).size, 2);
  assert.ok(!pids.includes(child.pid!), 'STATS come from the workers, not the supervisor');
  child.kill('SIGKILL');
  await once(child, 'exit');
  try {
    await until(() => pids.every((p) => !alive(p)), 10_000, 'every worker gone');
  } finally {
    for (const p of pids) if (alive(p)) process.kill(p, 'SIGKILL');
  }
});

test('a taken port fails the start of echo --workers with one line', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const child = spawn(process.execPath, [main, 'echo', '--workers', '2', '--port', String((taken.address() as AddressInfo).port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    const [code] = (await once(child, 'exit')) as [number];
    assert.is(code, 1);
    assert.match(err, /^murmur: worker 0: listen EADDRINUSE/);
  } finally {
    taken.close();
  }
});

test('workers on one shared listening socket get one accept queue as long as their own sockets would be (one of 511 for all overflowed)', async () => {
  const { child, port } = start(['--workers', '3']);
  try {
    const p = await port;
    // ss shows a listening socket's backlog in Send-Q; the kernel caps it at somaxconn
    const ss = spawnSync('ss', ['-ltnH', `sport = :${p}`], { encoding: 'utf8' });
    assert.is(ss.status, 0, ss.stderr);
    const queues = ss.stdout.trim().split('\n').map((l) => Number(l.trim().split(/\s+/)[2]));
    const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
    if (reusePortSupported()) assert.equal(queues, [LISTEN_BACKLOG, LISTEN_BACKLOG, LISTEN_BACKLOG].map((q) => Math.min(q, somaxconn)), 'a socket and a queue per worker');
    else assert.equal(queues, [Math.min(3 * LISTEN_BACKLOG, somaxconn)], 'one socket for the three workers, with their three queues in one');
  } finally {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
});

test.run();
