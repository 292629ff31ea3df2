import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { WebSocket as WsClient } from 'ws';
import { until } from '../helpers/net.js';

// `murmur echo` negotiates permessage-deflate unless --no-deflate, so conformance runs check it.
const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

async function extensionsOf(args: string[]): Promise<string> {
  const child = spawn(process.execPath, [main, 'echo', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  let ws: WsClient | undefined;
  try {
    await until(() => /LISTENING \d+/.test(out), 15_000, `LISTENING (output so far: ${out})`);
    const port = Number(/LISTENING (\d+)/.exec(out)![1]);
    ws = new WsClient(`ws://127.0.0.1:${port}/`, { perMessageDeflate: { threshold: 0 } });
    await once(ws, 'open');
    const text = JSON.stringify({ hello: 'world '.repeat(40) });
    ws.send(text);
    const [data] = await once(ws, 'message');
    assert.is(String(data), text);
    return ws.extensions;
  } finally {
    ws?.terminate();
    child.kill('SIGTERM');
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
  }
}

test('murmur echo negotiates permessage-deflate by default; --no-deflate turns it off', async () => {
  assert.is(await extensionsOf([]), 'permessage-deflate');
  assert.is(await extensionsOf(['--no-deflate']), '');
});

test.run();
