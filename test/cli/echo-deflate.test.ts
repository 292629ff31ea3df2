import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { WebSocket as WsClient } from 'ws';
import { startEcho, stopEcho } from '../helpers/process.js';

// `murmur echo` negotiates permessage-deflate unless --no-deflate, so conformance runs check it.

async function extensionsOf(args: string[]): Promise<string> {
  const echo = startEcho(args);
  let ws: WsClient | undefined;
  try {
    const port = await echo.port;
    ws = new WsClient(`ws://127.0.0.1:${port}/`, { perMessageDeflate: { threshold: 0 } });
    await once(ws, 'open');
    const text = JSON.stringify({ hello: 'world '.repeat(40) });
    ws.send(text);
    const [data] = await once(ws, 'message');
    assert.is(String(data), text);
    return ws.extensions;
  } finally {
    ws?.terminate();
    await stopEcho(echo);
  }
}

test('murmur echo negotiates permessage-deflate by default; --no-deflate turns it off', async () => {
  assert.is(await extensionsOf([]), 'permessage-deflate');
  assert.is(await extensionsOf(['--no-deflate']), '');
});

test.run();
