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

test.run();
