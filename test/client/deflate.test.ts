// The client's permessage-deflate (RFC 7692) against the `ws` package's server, with and
// without context takeover in each direction, and against murmur's own server.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import * as net from 'node:net';
import { createHash } from 'node:crypto';
import { WebSocketServer } from 'ws';
import { WebSocket, ClientError } from '../../src/client/index.js';
import { startServer, echoHandlers } from '../helpers/server.js';
import { deflateRawSync, constants } from 'node:zlib';
import { inflateJobs, inflateSettings } from '../../src/server/bounded-inflate.js';
import { PROCESS_LIMITS } from '../../src/limits.js';

const CHAT = (i: number): string => JSON.stringify({ type: 'chat', seq: i, room: 'general', user: 'alice', text: `message ${i}: the deploy went fine and dashboards are green` });

async function echoRounds(url: string, options: ConstructorParameters<typeof WebSocket>[2]): Promise<{ ext: string }> {
  const ws = new WebSocket(url, undefined, options);
  await once(ws, 'open');
  const ext = ws.extensions;
  for (let i = 0; i < 20; i++) {
    const text = CHAT(i);
    const got = once(ws, 'message');
    ws.send(text);
    assert.is(((await got)[0] as MessageEvent).data, text);
    const bin = Buffer.alloc(3000 + i, i);
    const gotBin = once(ws, 'message');
    ws.send(bin);
    assert.ok(Buffer.from(((await gotBin)[0] as MessageEvent).data as Buffer).equals(bin));
  }
  ws.close();
  await once(ws, 'close');
  return { ext };
}

/** A ws echo server that records whether frames from the client arrived compressed. */
async function wsServer(perMessageDeflate: object | boolean): Promise<{ wss: WebSocketServer; url: string; compressedIn: () => number }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate });
  await once(wss, 'listening');
  let compressed = 0;
  wss.on('connection', (peer, req) => {
    // ws reports no per-frame RSV1: count by the raw bytes on the socket instead.
    req.socket.on('data', (d: Buffer) => {
      if ((d[0]! & 0x40) !== 0) compressed++;
    });
    peer.on('message', (data, isBinary) => peer.send(data, { binary: isBinary }));
  });
  const port = (wss.address() as net.AddressInfo).port;
  return { wss, url: `ws://127.0.0.1:${port}`, compressedIn: () => compressed };
}

test('against ws: no context takeover either way (the default offer)', async () => {
  const { wss, url, compressedIn } = await wsServer({ threshold: 0 });
  const { ext } = await echoRounds(url, { perMessageDeflate: true });
  assert.match(ext, /permessage-deflate/);
  assert.match(ext, /server_no_context_takeover/);
  assert.ok(compressedIn() > 0, 'our frames went compressed');
  wss.close();
});

test('against ws: context takeover both ways (the server keeps its window, so do we)', async () => {
  const { wss, url, compressedIn } = await wsServer({ threshold: 0 });
  try {
    const { ext } = await echoRounds(url, { perMessageDeflate: { serverNoContextTakeover: false, clientNoContextTakeover: false } });
    assert.not.match(ext, /no_context_takeover/);
    assert.ok(compressedIn() > 0);
  } finally {
    wss.close();
  }
});

test('against ws: server_max_window_bits asked and honoured', async () => {
  const { wss, url } = await wsServer({ threshold: 0 });
  const { ext } = await echoRounds(url, { perMessageDeflate: { serverMaxWindowBits: 10, serverNoContextTakeover: false } });
  assert.match(ext, /server_max_window_bits=10/);
  wss.close();
});

test('against murmur: deflate both ways; off when not offered', async () => {
  const { server, url } = await startServer({ perMessageDeflate: { threshold: 0 }, handlers: echoHandlers() });
  const { ext } = await echoRounds(url, { perMessageDeflate: true });
  assert.is(ext, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
  const plain = await echoRounds(url, {});
  assert.is(plain.ext, '');
  await server.close();
});

test('a response that breaks RFC 7692 fails the handshake (WS_ERR_UNEXPECTED_EXTENSION)', async () => {
  for (const answer of ['permessage-deflate; foo', 'permessage-deflate; server_max_window_bits=16', 'permessage-deflate, permessage-deflate', 'permessage-deflate']) {
    const srv = net.createServer((sock) => {
      sock.once('data', (d: Buffer) => {
        const key = /Sec-WebSocket-Key: (.+)\r\n/i.exec(d.toString())![1]!;
        const accept = require_accept(key);
        sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Extensions: ${answer}\r\n\r\n`);
      });
      sock.on('error', () => {});
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const ws = new WebSocket(`ws://127.0.0.1:${(srv.address() as net.AddressInfo).port}`, undefined, { perMessageDeflate: { serverNoContextTakeover: true } });
    const [ev] = await once(ws, 'error');
    assert.instance((ev as { error: Error }).error, ClientError, answer);
    assert.is(((ev as { error: ClientError }).error).code, 'WS_ERR_UNEXPECTED_EXTENSION', answer);
    srv.close();
  }
});

function require_accept(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

/** A server frame (unmasked, FIN) carrying a compressed payload (RSV1). */
function compressedFrame(opcode: number, data: Buffer | string): Buffer {
  const z = deflateRawSync(data, { finishFlush: constants.Z_SYNC_FLUSH });
  const payload = z.subarray(0, z.length - 4);
  const len = payload.length;
  assert.ok(len < 65536, 'test frames stay under 64 KiB compressed');
  return Buffer.concat([len < 126 ? Buffer.from([0xc0 | opcode, len]) : Buffer.from([0xc0 | opcode, 126, len >> 8, len & 0xff]), payload]);
}

/** A raw server that accepts permessage-deflate and writes `frames` in the same write as its 101 (then ends when `end`). */
async function rawDeflateServer(frames: Buffer, end: boolean): Promise<{ srv: net.Server; url: string }> {
  const srv = net.createServer((sock) => {
    sock.once('data', (d: Buffer) => {
      const key = /Sec-WebSocket-Key: (.+)\r\n/i.exec(d.toString())![1]!;
      const head = Buffer.from(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${require_accept(key)}\r\n` +
          'Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n',
      );
      if (end) sock.end(Buffer.concat([head, frames]));
      else sock.write(Buffer.concat([head, frames]));
    });
    sock.on('error', () => {});
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return { srv, url: `ws://127.0.0.1:${(srv.address() as net.AddressInfo).port}` };
}

const MiB = 1024 * 1024;

test('a 16 MiB compressed message is inflated over many turns of the event loop; what follows it waits, in order', async () => {
  const frames = Buffer.concat([compressedFrame(2, Buffer.alloc(16 * MiB)), compressedFrame(1, 'after'), Buffer.from([0x89, 0x02, 0x68, 0x69])]);
  const { srv, url } = await rawDeflateServer(frames, false);
  const ws = new WebSocket(url, undefined, { perMessageDeflate: true });
  const events: string[] = [];
  let turns = 0;
  let on = true;
  const tick = (): void => {
    turns++;
    if (on) setImmediate(tick);
  };
  let turnsAtFirst = -1;
  ws.addEventListener('message', (ev) => {
    if (turnsAtFirst < 0) turnsAtFirst = turns;
    const data = (ev as MessageEvent).data;
    events.push(typeof data === 'string' ? data : `${(data as Buffer).length} bytes`);
  });
  ws.addEventListener('ping', () => events.push('ping'));
  ws.addEventListener('open', () => setImmediate(tick));
  // One slice per turn (no time budget): 16 MiB in 256 KiB slices is 64 turns at least.
  inflateSettings.turnMs = 0;
  try {
    for (let i = 0; i < 500 && events.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(events, [`${16 * MiB} bytes`, 'after', 'ping']);
    // The frames came with the 101: one call would deliver the message in the turn of the open.
    assert.ok(turnsAtFirst >= 16, `delivered ${turnsAtFirst} turns after the open`);
    assert.is(inflateJobs.running, 0);
  } finally {
    inflateSettings.turnMs = PROCESS_LIMITS.inflateTurnMs;
    on = false;
    ws.close();
    srv.close();
  }
});

test('the server closes during a large inflation: the job is dropped, the message not delivered', async () => {
  const { srv, url } = await rawDeflateServer(compressedFrame(2, Buffer.alloc(64 * MiB)), true);
  try {
    const ws = new WebSocket(url, undefined, { perMessageDeflate: true, maxPayload: 64 * MiB });
    let messages = 0;
    ws.addEventListener('message', () => messages++);
    const started = inflateJobs.started;
    await once(ws, 'close');
    assert.ok(inflateJobs.started > started, 'the inflation started');
    for (let i = 0; i < 100 && inflateJobs.running > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.is(inflateJobs.running, 0);
    await new Promise((r) => setTimeout(r, 50));
    assert.is(messages, 0);
  } finally {
    srv.close();
  }
});

test('against ws with context takeover: large messages inflate with the window of the ones before them', async () => {
  const { wss, url } = await wsServer({ threshold: 0 });
  try {
    const ws = new WebSocket(url, undefined, { perMessageDeflate: { serverNoContextTakeover: false } });
    await once(ws, 'open');
    const big = JSON.stringify(Array.from({ length: 20_000 }, (_, i) => ({ i, name: `user ${i}` })));
    assert.ok(big.length > 256 * 1024);
    const sent = [CHAT(1), big, CHAT(2), big + ' ', CHAT(3)];
    const got: string[] = [];
    ws.addEventListener('message', (ev) => got.push((ev as MessageEvent).data as string));
    for (const m of sent) ws.send(m);
    for (let i = 0; i < 500 && got.length < sent.length; i++) await new Promise((r) => setTimeout(r, 10));
    assert.is(got.length, sent.length);
    for (let i = 0; i < sent.length; i++) assert.ok(got[i] === sent[i], `message ${i}`);
    ws.close();
    await once(ws, 'close');
  } finally {
    wss.close();
  }
});

test.run();
