// permessage-deflate through the door: ws's perMessageDeflate option on the server and the
// client, against the real ws on the other end.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocketServer as RefServer } from 'ws';
import { compat, listen, shut, once, RefClient } from './helpers.js';
import type { Impl } from './helpers.js';
import { WebSocket as DoorWebSocket } from '../../src/ws/index.js';

const TEXT = JSON.stringify({ type: 'chat', room: 'lobby', text: 'hello '.repeat(400) });

/** A server of `impl` with perMessageDeflate as given, a ws client with ws's defaults (it offers deflate); what each side sees. */
async function echoOnce(impl: Impl, perMessageDeflate: unknown): Promise<string[]> {
  const { wss, url } = await listen(impl, { perMessageDeflate });
  const log: string[] = [];
  wss.on('connection', (ws: { extensions: string; on: (e: string, f: (d: Buffer, b: boolean) => void) => void; send: (d: Buffer, o: { binary: boolean }) => void }) => {
    log.push(`server extensions '${ws.extensions}'`);
    ws.on('message', (data: Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary }));
  });
  const c = new RefClient(url);
  await once(c, 'open');
  log.push(`client extensions '${c.extensions}'`);
  c.send(TEXT);
  const [data] = (await once(c, 'message')) as [Buffer];
  log.push(`echoed ${data.toString() === TEXT}`);
  c.close();
  await once(c, 'close');
  await shut(wss);
  return log;
}

compat('perMessageDeflate: true on the server: negotiated with a ws client, messages round-trip', (impl) => echoOnce(impl, true), [
  "server extensions 'permessage-deflate'",
  "client extensions 'permessage-deflate'",
  'echoed true',
]);

compat('perMessageDeflate absent on the server (ws\'s default): not negotiated', (impl) => echoOnce(impl, undefined), [
  "server extensions ''",
  "client extensions ''",
  'echoed true',
]);

compat('perMessageDeflate with options (threshold, zlibDeflateOptions): negotiated', (impl) => echoOnce(impl, { threshold: 0, zlibDeflateOptions: { level: 1 } }), [
  "server extensions 'permessage-deflate'",
  "client extensions 'permessage-deflate'",
  'echoed true',
]);

test('the door\'s client with perMessageDeflate: true against a ws server: negotiated on both ends', async () => {
  const wss = new RefServer({ port: 0, host: '127.0.0.1', perMessageDeflate: { threshold: 0 } });
  await once(wss, 'listening');
  let compressedIn = false;
  wss.on('connection', (ws) => {
    // What ws agreed for this socket: its messages both ways are compressed from here.
    compressedIn = ws.extensions === 'permessage-deflate';
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}`;
  const c = new DoorWebSocket(url, { perMessageDeflate: true });
  await once(c, 'open');
  assert.is(c.extensions, 'permessage-deflate');
  c.send(TEXT);
  const [data] = (await once(c, 'message')) as [Buffer];
  assert.is(data.toString(), TEXT);
  assert.ok(compressedIn);
  c.close();
  await once(c, 'close');
  await new Promise<void>((r) => wss.close(() => r()));
});

test.run();
