import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { WebSocket as WsClient } from 'ws';
import { until } from '../helpers/net.js';

// `murmur echo --mode broadcast`: what `pub` commands may make the process do, all together.
const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

test('pub commands were bounded one by one, not in total: three at the process-wide bound publish one of them', async () => {
  const child = spawn(process.execPath, [main, 'echo', '--port', '0', '--mode', 'broadcast'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  let ws: WsClient | undefined;
  try {
    await until(() => /LISTENING \d+/.test(out), 15_000, `LISTENING (output so far: ${out})`);
    const port = Number(/LISTENING (\d+)/.exec(out)![1]);
    ws = new WsClient(`ws://127.0.0.1:${port}/`);
    await once(ws, 'open');
    let received = 0;
    let last = Date.now();
    ws.on('message', () => {
      received++;
      last = Date.now();
    });
    // Each asks for 100,000 messages, the most one command may; together 300,000.
    for (let i = 0; i < 3; i++) ws.send('pub 100000 1');
    await until(() => received >= 100_000 && Date.now() - last > 1000, 30_000, `messages (${received} so far)`);
    assert.is(received, 100_000, 'the second and third did not fit in what the first left');
    // The budget comes back as the queue drains.
    ws.send('pub 10 1');
    await until(() => received === 100_010, 5000, `10 more (${received})`);
  } finally {
    ws?.terminate();
    child.kill('SIGTERM');
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
  }
});

test('echo --workers: publishes a stalled supervisor cannot take wait within the worker\'s relay budget, the rest are dropped and counted', async () => {
  const child = spawn(process.execPath, [main, 'echo', '--port', '0', '--mode', 'broadcast', '--workers', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  let ws: WsClient | undefined;
  let stopped = false;
  try {
    await until(() => /LISTENING \d+/.test(out), 20_000, `LISTENING (output so far: ${out})`);
    const port = Number(/LISTENING (\d+)/.exec(out)![1]);
    const workers = execFileSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).trim().split('\n').map(Number);
    assert.is(workers.length, 2);
    ws = new WsClient(`ws://127.0.0.1:${port}/`);
    await once(ws, 'open');
    ws.pause(); // the client's own copies go to the slow-consumer policy, not to this test
    // The supervisor stops reading its workers' channels: relayed publishes pile up in the worker.
    child.kill('SIGSTOP');
    stopped = true;
    // Two commands of ~56 MiB each (the pub budget is 64 MiB at a time): 112 MiB to relay.
    ws.send('pub 900 65536');
    await new Promise((r) => setTimeout(r, 1500));
    ws.send('pub 900 65536');
    let stats: { relay?: { dropped: number; unsentBytes: number } } = {};
    await until(() => {
      for (const l of out.split('\n')) if (l.startsWith('STATS ') && l.includes('"dropped":') && !l.includes('"dropped":0,')) stats = JSON.parse(l.slice(6));
      if ((stats.relay?.dropped ?? 0) > 0) return true;
      for (const w of workers) process.kill(w, 'SIGUSR2'); // the client's worker is the kernel's choice
      return false;
    }, 30_000, `relay drops in STATS (${JSON.stringify(stats.relay)})`);
    assert.ok(stats.relay!.unsentBytes <= 64 * 1024 * 1024, `unsent ${stats.relay!.unsentBytes}`);
  } finally {
    ws?.terminate();
    if (stopped) child.kill('SIGCONT');
    child.kill('SIGTERM');
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
  }
});

test.run();
