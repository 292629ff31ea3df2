// permessage-deflate in `murmur serve`: on by default with a threshold, off with deflate: false;
// /metrics counts what went compressed and what came in compressed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { WebSocket } from '../../src/client/index.js';
import { testApp, closeAll, http } from './helpers.js';

const open = { anonymous: { subscribe: ['*'], publish: ['*'], presence: ['*'] } };

function metric(body: string, line: string): number {
  const m = new RegExp(`^${line.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(body);
  return m === null ? NaN : Number(m[1]);
}

async function connect(url: string, deflate: boolean): Promise<WebSocket> {
  const ws = new WebSocket(url, undefined, { perMessageDeflate: deflate });
  const first = once(ws, 'message'); // the welcome
  await once(ws, 'open');
  await first;
  return ws;
}

function nextOfType(ws: WebSocket, type: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const on = (ev: Event): void => {
      const msg = JSON.parse((ev as MessageEvent).data as string) as Record<string, unknown>;
      if (msg.type !== type) return;
      ws.removeEventListener('message', on);
      resolve(msg);
    };
    ws.addEventListener('message', on);
  });
}

test('serve negotiates deflate by default; a publish goes compressed and /metrics counts it', async () => {
  const { ws: url, http: base } = await testApp({ ...open, requireToken: false });
  const a = await connect(url, true);
  const b = await connect(url, true);
  assert.match(a.extensions, /^permessage-deflate; server_no_context_takeover; client_no_context_takeover$/);
  const before = await http(`${base}/metrics`);
  const sub = nextOfType(b, 'reply');
  b.send(JSON.stringify({ type: 'subscribe', topic: 'room:z', id: 1 }));
  await sub;
  const text = 'the deploy went fine and the dashboards are green '.repeat(4);
  const got = nextOfType(b, 'message');
  a.send(JSON.stringify({ type: 'publish', topic: 'room:z', data: { text }, id: 2 }));
  assert.equal((await got).data, { text });
  const after = await http(`${base}/metrics`);
  const delta = (line: string): number => metric(after.body, line) - metric(before.body, line);
  assert.ok(delta('murmur_deflate_messages_total{outcome="compressed"}') >= 1, 'the delivery went compressed');
  assert.ok(delta('murmur_inflate_messages_total') >= 2, 'the commands came in compressed');
  assert.ok(metric(after.body, 'murmur_deflate_bytes_total{stage="after"}') < metric(after.body, 'murmur_deflate_bytes_total{stage="before"}'));
  assert.is(metric(after.body, 'murmur_zlib_contexts'), 0);
  a.close();
  b.close();
  await closeAll();
});

test('serve with deflate: false answers no extension', async () => {
  const { ws: url } = await testApp({ ...open, requireToken: false, deflate: false });
  const a = await connect(url, true);
  assert.is(a.extensions, '');
  a.close();
  await closeAll();
});

test.run();
