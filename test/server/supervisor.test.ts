import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Supervisor, WorkerStartError } from '../../src/server/supervisor.js';
import type { SupervisedInfo } from '../../src/server/supervisor.js';

// The generic supervisor with a plain TCP worker (supervisor-worker.ts): the shared port,
// settings, questions, messages both ways, restarts and the drain.
const workerModule = fileURLToPath(new URL('./supervisor-worker.js', import.meta.url));

function group(workers: number, lines: string[] = [], maxUnsentBytes?: number): Supervisor {
  return new Supervisor({ workers, module: workerModule, port: 0, host: '127.0.0.1', settings: (i) => ({ hello: i }), drainTimeoutMs: 10_000, log: (l) => lines.push(l), maxUnsentBytes });
}

/** The pid of the worker that accepted one connection to the shared port. */
async function whoAnswers(port: number): Promise<number> {
  const s = connect(port, '127.0.0.1');
  let text = '';
  s.on('data', (d) => (text += d));
  await once(s, 'end');
  s.destroy();
  return Number(text.trim());
}

test('every worker serves the one port, with its own settings; questions and messages go both ways', async () => {
  const g = group(2);
  try {
    await g.start();
    assert.ok(g.port > 0);
    const running = g.list();
    assert.equal(
      running.map((w) => w.info),
      [
        { settings: { hello: 0 }, index: 0 },
        { settings: { hello: 1 }, index: 1 },
      ],
    );
    const pids = new Set(running.map((w) => w.pid));
    // Every answer comes from a worker of the group (which one is the kernel's choice).
    for (let i = 0; i < 6; i++) assert.ok(pids.has(await whoAnswers(g.port)));
    const answers = await g.ask('metrics', 5_000);
    assert.equal([...answers.keys()].sort(), [0, 1]);
    assert.is(answers.get(1), `metrics:${running[1]!.pid}`);
    const back = once(g, 'message');
    assert.ok(g.send(1, 'ping'));
    assert.equal(await back, [1, { back: 'ping' }]);
  } finally {
    await g.shutdown();
  }
});

test('a worker that dies is started again, on the same port; shutdown leaves no worker running', async () => {
  const lines: string[] = [];
  const g = group(2, lines);
  try {
    await g.start();
    const port = g.port;
    const first = g.list()[1]!;
    const exited = once(g, 'exit');
    const restarted = new Promise<SupervisedInfo>((resolve) => g.on('worker', (w: SupervisedInfo) => w.index === 1 && resolve(w)));
    process.kill(first.pid, 'SIGKILL');
    const [e] = (await exited) as [{ index: number; restartInMs: number }];
    assert.is(e.index, 1);
    assert.is(e.restartInMs, 100);
    const again = await restarted;
    assert.is.not(again.pid, first.pid);
    assert.is(g.restarts, 1);
    assert.is(g.port, port);
    assert.ok(lines.some((l) => /worker 1 \(pid \d+\) exited \(SIGKILL\); starting another in 100 ms/.test(l)));
    // The new worker takes connections on the shared port too.
    const seen = new Set<number>();
    for (let i = 0; i < 400 && !seen.has(again.pid); i++) seen.add(await whoAnswers(port));
    assert.ok(seen.has(again.pid), 'the restarted worker accepts on the shared port');
  } finally {
    await g.shutdown();
  }
  assert.equal(g.list(), []);
});

test('a worker that cannot listen fails the start', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const g = new Supervisor({ workers: 1, module: workerModule, port: (taken.address() as AddressInfo).port, host: '127.0.0.1', settings: () => null, drainTimeoutMs: 5_000, log: () => {} });
  try {
    // A port already bound without SO_REUSEPORT refuses the bind.
    await g.start().then(
      () => assert.unreachable('started on a taken port'),
      (err: unknown) => assert.instance(err, WorkerStartError),
    );
  } finally {
    await g.shutdown();
    taken.close();
  }
});

test('counted messages to a worker that does not read stop at its unsent budget; uncounted ones are not limited', async () => {
  const g = group(1, [], 1024 * 1024);
  try {
    await g.start();
    const pid = g.list()[0]!.pid;
    process.kill(pid, 'SIGSTOP');
    const body = 'x'.repeat(100 * 1024);
    let accepted = 0;
    for (let i = 0; i < 60; i++) if (g.send(0, body, body.length)) accepted++;
    // 1 MiB of budget is 10 messages, plus what the channel's socket buffer took meanwhile.
    assert.ok(accepted >= 10 && accepted < 40, `accepted ${accepted} of 60`);
    assert.ok(g.send(0, 'small, uncounted'));
    assert.is(g.broadcast(body, -1, body.length), 1, 'the stopped worker refuses the broadcast');
    process.kill(pid, 'SIGCONT');
    // Once the worker reads again, the budget frees and counted messages go again.
    const deadline = Date.now() + 20_000;
    while (!g.send(0, body, body.length) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(Date.now() < deadline, 'the budget freed after the worker read its channel');
  } finally {
    await g.shutdown();
  }
});

test('a worker count outside 1-256 is refused', () => {
  for (const workers of [0, 257, 1.5]) assert.throws(() => group(workers), RangeError);
});

test.run();
