import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { deflateRawSync, inflateRawSync, constants } from 'node:zlib';
import { WebSocket as WsClient } from 'ws';
import { startServer, echoHandlers } from '../helpers/server.js';
import { RawClient, upgradeRequest, clientFrame, until } from '../helpers/net.js';
import { deflateCounters } from '../../src/server/deflate.js';
import type { Connection } from '../../src/server/connection.js';

// permessage-deflate on the server (RFC 7692): negotiation on the wire, RSV1 rules, bounded
// inflation, compressed sends, and fan-out compressed once.

/** Compressed payload as a client sends it (RFC 7692 7.2.1: the sync flush tail removed). */
function deflated(data: Buffer | string): Buffer {
  const out = deflateRawSync(data, { finishFlush: constants.Z_SYNC_FLUSH });
  return out.subarray(0, out.length - 4);
}

function inflated(data: Buffer): Buffer {
  return inflateRawSync(Buffer.concat([data, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: constants.Z_SYNC_FLUSH });
}

async function open(port: number, extensions = 'permessage-deflate; client_max_window_bits'): Promise<{ c: RawClient; head: string }> {
  const c = await RawClient.connect(port);
  c.write(upgradeRequest({ headers: extensions === '' ? {} : { 'Sec-WebSocket-Extensions': extensions } }));
  const head = await c.readHead();
  return { c, head };
}

/** Reads one unfragmented server frame: [first header byte, payload]. */
async function readFrame(c: RawClient): Promise<[number, Buffer]> {
  const h = await c.read(2);
  let len = h[1]! & 0x7f;
  if (len === 126) len = (await c.read(2)).readUInt16BE(0);
  else if (len === 127) len = Number((await c.read(8)).readBigUInt64BE(0));
  return [h[0]!, Buffer.from(await c.read(len))];
}

async function closeCodeOf(c: RawClient): Promise<number> {
  for (;;) {
    const [b0, payload] = await readFrame(c);
    if ((b0 & 0x0f) === 8) return payload.readUInt16BE(0);
  }
}

const JSON_MSG = JSON.stringify({ type: 'chat', room: 'general', user: 'alice', text: 'the deploy went fine, dashboards are green '.repeat(8) });

test('negotiates: the 101 carries the answer; off by default', async () => {
  const on = await startServer({ perMessageDeflate: true, handlers: echoHandlers() });
  const { c, head } = await open(on.port);
  assert.match(head, /\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n/i);
  c.socket.destroy();
  const off = await startServer({ handlers: echoHandlers() });
  const o = await open(off.port);
  assert.not.match(o.head, /Sec-WebSocket-Extensions/i);
  o.c.socket.destroy();
  await on.server.close();
  await off.server.close();
});

test('a malformed Sec-WebSocket-Extensions is refused 400 BAD_EXTENSIONS; a declined offer opens without the extension', async () => {
  const { server, port } = await startServer({ perMessageDeflate: true, handlers: echoHandlers() });
  const bad = await open(port, 'permessage-deflate; =1');
  assert.match(bad.head, /^HTTP\/1.1 400/);
  bad.c.socket.destroy();
  const declined = await open(port, 'permessage-deflate; server_max_window_bits=16');
  assert.match(declined.head, /^HTTP\/1.1 101/);
  assert.not.match(declined.head, /Sec-WebSocket-Extensions/i);
  declined.c.socket.destroy();
  assert.is(server.stats.rejected.BAD_EXTENSIONS, 1);
  await server.close();
});

test('compressed text and binary round trip; the reply is compressed (RSV1) above the threshold only', async () => {
  const { server, port } = await startServer({ perMessageDeflate: { threshold: 64 }, handlers: echoHandlers() });
  const { c } = await open(port);
  c.write(clientFrame(1, deflated(JSON_MSG), { rsv: 4 }));
  let [b0, payload] = await readFrame(c);
  assert.is(b0, 0x80 | 0x40 | 1, 'FIN + RSV1 + text');
  assert.is(inflated(payload).toString(), JSON_MSG);
  assert.ok(payload.length < Buffer.byteLength(JSON_MSG) / 3, 'really compressed');
  c.write(clientFrame(1, 'short', {}));
  [b0, payload] = await readFrame(c);
  assert.is(b0, 0x81, 'below the threshold: plain');
  assert.is(payload.toString(), 'short');
  const bin = Buffer.alloc(5000, 7);
  c.write(clientFrame(2, deflated(bin), { rsv: 4 }));
  [b0, payload] = await readFrame(c);
  assert.is(b0, 0xc2);
  assert.ok(inflated(payload).equals(bin));
  c.socket.destroy();
  await server.close();
});

test('a compressed fragmented message: RSV1 on the first frame only, continuations plain', async () => {
  const { server, port } = await startServer({ perMessageDeflate: true, handlers: echoHandlers() });
  const { c } = await open(port);
  const z = deflated(JSON_MSG);
  const third = Math.floor(z.length / 3);
  c.write(Buffer.concat([clientFrame(1, z.subarray(0, third), { rsv: 4, fin: false }), clientFrame(9, 'p'), clientFrame(0, z.subarray(third, 2 * third), { fin: false }), clientFrame(0, z.subarray(2 * third))]));
  const [b0p] = await readFrame(c);
  assert.is(b0p & 0x0f, 10, 'the pong between fragments');
  const [b0, payload] = await readFrame(c);
  assert.is(b0 & 0x4f, 0x41);
  assert.is(inflated(payload).toString(), JSON_MSG);
  c.socket.destroy();
  await server.close();
});

test('RSV1 rules: on a continuation or a control frame -> 1002; without the extension -> 1002', async () => {
  const { server, port } = await startServer({ perMessageDeflate: true, handlers: echoHandlers() });
  let { c } = await open(port);
  c.write(Buffer.concat([clientFrame(1, 'ab', { fin: false }), clientFrame(0, 'cd', { rsv: 4 })]));
  assert.is(await closeCodeOf(c), 1002, 'RSV1 on a continuation');
  c.socket.destroy();
  ({ c } = await open(port));
  c.write(clientFrame(9, 'x', { rsv: 4 }));
  assert.is(await closeCodeOf(c), 1002, 'RSV1 on a ping');
  c.socket.destroy();
  ({ c } = await open(port, ''));
  c.write(clientFrame(1, deflated('hello'), { rsv: 4 }));
  assert.is(await closeCodeOf(c), 1002, 'RSV1 without the extension');
  c.socket.destroy();
  await server.close();
});

test('a deflate bomb is refused with 1009 once inflated past maxPayload', async () => {
  const { server, port } = await startServer({ perMessageDeflate: true, limits: { maxPayload: 1024 * 1024 }, handlers: echoHandlers() });
  const { c } = await open(port);
  const bomb = deflated(Buffer.alloc(64 * 1024 * 1024)); // about 64 KiB that inflates to 64 MiB
  assert.ok(bomb.length < 1024 * 1024, 'the compressed message is under maxPayload');
  const before = process.memoryUsage().rss;
  try {
    c.write(clientFrame(2, bomb, { rsv: 4 }));
    assert.is(await closeCodeOf(c), 1009);
    assert.ok(process.memoryUsage().rss - before < 48 * 1024 * 1024, 'did not inflate the whole bomb');
  } finally {
    c.socket.destroy();
    await server.close(100);
  }
});

test('invalid DEFLATE data -> 1007; invalid UTF-8 once inflated -> 1007', async () => {
  const { server, port } = await startServer({ perMessageDeflate: true, handlers: echoHandlers() });
  let { c } = await open(port);
  c.write(clientFrame(1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00]), { rsv: 4 }));
  assert.is(await closeCodeOf(c), 1007);
  c.socket.destroy();
  ({ c } = await open(port));
  c.write(clientFrame(1, deflated(Buffer.from([0x61, 0xc3, 0x28])), { rsv: 4 }));
  assert.is(await closeCodeOf(c), 1007);
  c.socket.destroy();
  await server.close();
});

test('an idle connection that negotiated deflate holds nothing more than one that did not', async () => {
  let conns: Connection[] = [];
  const { server, port } = await startServer({ perMessageDeflate: true, handlers: { open: (c) => void conns.push(c), message: (c, d, b) => void c.send(d, b) } });
  const { c } = await open(port);
  await until(() => conns.length === 1);
  c.write(clientFrame(1, deflated(JSON_MSG), { rsv: 4 }));
  await readFrame(c);
  const conn = conns[0]!;
  // The one optional slot stays empty: no zlib state, no buffer, no extra object.
  assert.is((conn as unknown as { side: unknown }).side, null);
  assert.is(conn.compression, 1);
  conns = [];
  c.socket.destroy();
  await server.close();
});

test('fan-out: compressed once for every deflate subscriber; plain and compressed subscribers each get the right bytes', async () => {
  const { server, url } = await startServer({
    perMessageDeflate: true,
    handlers: {
      open(c) {
        c.subscribe('room');
      },
    },
  });
  const clients: WsClient[] = [];
  try {
    for (let i = 0; i < 6; i++) {
      const ws = new WsClient(url, { perMessageDeflate: i % 2 === 0 });
      await once(ws, 'open');
      clients.push(ws);
    }
    await until(() => server.subscriberCount('room') === 6);
    assert.is(clients[0]!.extensions, 'permessage-deflate');
    assert.is(clients[1]!.extensions, '');
    const got = clients.map((ws) => new Promise<string>((r) => ws.once('message', (d: Buffer) => r(d.toString()))));
    const before = deflateCounters.compressedMessages;
    server.publish('room', JSON_MSG);
    const all = await Promise.all(got);
    for (const m of all) assert.is(m, JSON_MSG);
    assert.is(deflateCounters.compressedMessages - before, 1, 'one compression for three deflate subscribers');
  } finally {
    for (const ws of clients) ws.terminate();
    await server.close(100);
  }
});

test.run();
