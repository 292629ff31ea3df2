import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startServer } from '../helpers/server.js';
import { RawClient, upgradeRequest } from '../helpers/net.js';

// Server-level errors go to ServerOptions.onError with their kind; without one, to stderr at
// most once per kind per interval, never once per failing client.

async function statusOf(port: number): Promise<number> {
  const c = await RawClient.connect(port);
  c.write(upgradeRequest());
  const head = await c.readHead();
  await c.waitClosed();
  return Number(head.split(' ')[1]);
}

test('an upgrade hook that throws or rejects reaches onError as upgrade-hook; the client gets 500', async () => {
  const seen: Array<[string, string]> = [];
  let n = 0;
  const { server, port } = await startServer({
    handlers: {
      upgrade() {
        n++;
        if (n === 1) throw new Error('sync boom');
        return Promise.reject(new Error('async boom'));
      },
    },
    onError: (err, kind) => void seen.push([kind, err.message]),
  });
  assert.is(await statusOf(port), 500);
  assert.is(await statusOf(port), 500);
  assert.equal(seen, [
    ['upgrade-hook', 'sync boom'],
    ['upgrade-hook', 'async boom'],
  ]);
  await server.close();
});

test('a non-Error thrown by the hook reaches onError as an Error', async () => {
  const seen: Error[] = [];
  const { server, port } = await startServer({
    handlers: {
      upgrade() {
        throw 'a string';
      },
    },
    onError: (err) => void seen.push(err),
  });
  assert.is(await statusOf(port), 500);
  assert.ok(seen[0] instanceof Error);
  assert.is(seen[0]!.message, 'a string');
  await server.close();
});

/** Runs `fn` with stderr captured; returns the lines written that contain `marker`. */
async function stderrLines(marker: string, fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    await fn();
  } finally {
    process.stderr.write = write;
  }
  return lines.filter((l) => l.includes(marker));
}

async function failingHooks(limits: { errorLogIntervalMs?: number }, count: number): Promise<void> {
  const { server, port } = await startServer({
    limits,
    handlers: {
      upgrade() {
        throw new Error('hook failed');
      },
    },
  });
  for (let i = 0; i < count; i++) assert.is(await statusOf(port), 500);
  await server.close();
}

test('upgrade hook failures without onError: one stderr line for many failing clients, not one each', async () => {
  const ours = await stderrLines('hook failed', () => failingHooks({}, 5));
  assert.is(ours.length, 1, ours.join('\n'));
  assert.match(ours[0]!, /^\[murmur\] upgrade-hook: Error: hook failed/);
});

test('limits.errorLogIntervalMs sets the default log\'s interval: 0 logs every failure', async () => {
  const ours = await stderrLines('hook failed', () => failingHooks({ errorLogIntervalMs: 0 }, 3));
  assert.is(ours.length, 3, ours.join('\n'));
});

test.run();
