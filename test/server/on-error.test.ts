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

test('upgrade hook failures without onError: one stderr line for many failing clients, not one each', async () => {
  const lines: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    const { server, port } = await startServer({
      handlers: {
        upgrade() {
          throw new Error('hook failed');
        },
      },
    });
    for (let i = 0; i < 5; i++) assert.is(await statusOf(port), 500);
    await server.close();
  } finally {
    process.stderr.write = write;
  }
  const ours = lines.filter((l) => l.includes('hook failed'));
  assert.is(ours.length, 1, ours.join('\n'));
  assert.match(ours[0]!, /^\[murmur\] upgrade-hook: Error: hook failed/);
});

test.run();
