import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocket } from '../../src/client/index.js';
import type { MessageEvent, CloseEvent } from '../../src/client/index.js';
import { startServer, echoHandlers } from '../helpers/server.js';

// murmur's client against murmur's server: both sides of the same framer, end to end.

function next(ws: WebSocket, type: 'open' | 'message' | 'close'): Promise<Event> {
  return new Promise((resolve) => ws.addEventListener(type, resolve as (e: Event) => void, { once: true }));
}

test('murmur client <-> murmur server: every size class, both opcodes, close codes', async () => {
  let serverSaw: [number, string] | undefined;
  const { server, url } = await startServer({ handlers: { ...echoHandlers(), close: (_c, code, reason) => (serverSaw = [code, reason]) } });
  const ws = new WebSocket(url);
  ws.binaryType = 'nodebuffer';
  await next(ws, 'open');
  for (const size of [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 * 1024 * 1024 - 16]) {
    const bin = Buffer.alloc(size, (size * 7) & 0xff);
    let p = next(ws, 'message');
    ws.send(bin);
    const m1 = (await p) as MessageEvent;
    assert.ok(Buffer.isBuffer(m1.data) && (m1.data as Buffer).equals(bin), `binary ${size}`);
    if (size > 1 << 20) continue;
    const text = 'ж'.repeat(size >> 1);
    p = next(ws, 'message');
    ws.send(text);
    assert.is(((await p) as MessageEvent).data, text, `text ${size}`);
  }
  const closed = next(ws, 'close');
  ws.close(4100, 'done');
  const ev = (await closed) as CloseEvent;
  assert.is(ev.code, 4100);
  assert.ok(ev.wasClean);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(serverSaw, [4100, 'done']);
  await server.close();
});

test.run();
