// Plain HTTP on serve's port against hostile clients. Those that pipeline requests and never
// read the responses: node:http parses every request of a chunk it reads (about 1,500 in
// 64 KiB) and keeps each one's request and response objects until the response is written,
// and a response the client does not read is never written.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { testApp, closeAll } from './helpers.js';
import { RawClient } from '../helpers/net.js';

test.after.each(closeAll);

const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`;

/** A client that writes `bytes` and never reads (its socket stays paused). */
async function nonReader(port: number, bytes: string): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.pause();
  s.on('error', () => {});
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  s.write(bytes);
  return s;
}

/**
 * Whether the server closed the connection of a non-reader: after `waitMs`, the client starts
 * reading; a closed connection then ends once the bytes already sent are read, an open one
 * stays open (the tests keep idle connections for a minute).
 */
async function closedByServer(s: Socket, waitMs: number): Promise<boolean> {
  await new Promise((r) => setTimeout(r, waitMs));
  return new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), 5_000);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
    s.resume();
  });
}

test('a client that pipelines more requests than the pipelining limit without reading is closed', async () => {
  const { port } = await testApp({ httpMaxPipelined: 8, httpKeepAliveTimeoutMs: 60_000 });
  // 600 requests in one write: node:http parses them all before any response is written.
  const s = await nonReader(port, get('/murmur-client.js').repeat(600));
  assert.ok(await closedByServer(s, 5_000), 'the connection stays open, holding 600 requests and responses');
  s.destroy();
});

test('pipelined requests up to the limit are all answered, in order', async () => {
  const { port } = await testApp({ httpMaxPipelined: 8 });
  const raw = await RawClient.connect(port);
  raw.write(get('/healthz').repeat(8));
  for (let i = 0; i < 8; i++) {
    const head = await raw.readHead();
    assert.match(head, /^HTTP\/1\.1 200 /);
    await raw.read(3);
  }
  assert.not.ok(raw.closed);
  raw.destroy();
});

test('a response the client stops reading closes the connection after httpRequestTimeoutMs without progress', async () => {
  const { port } = await testApp({ httpRequestTimeoutMs: 500, httpMaxPipelined: 1_000, httpKeepAliveTimeoutMs: 60_000 });
  // About 12 MiB of responses: more than loopback's socket buffers take, so writes stall.
  const s = await nonReader(port, get('/murmur-client.js').repeat(500));
  // 500 ms without progress, once the kernel's buffers are full; a loaded machine may take seconds to fill them.
  assert.ok(await closedByServer(s, 10_000), 'the connection stays open with its unsent responses');
  s.destroy();
});

test('a plain request with two Host headers is answered 400 BAD_HOST, as an upgrade is (RFC 9112 3.2)', async () => {
  const { port } = await testApp();
  const raw = await RawClient.connect(port);
  raw.write('GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
  const head = await raw.readHead();
  assert.match(head, /^HTTP\/1\.1 400 /);
  const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1]);
  assert.is(JSON.parse((await raw.read(length)).toString()).error, 'BAD_HOST');
  raw.destroy();
});

test('CONNECT is answered 405 and the connection closed (it was closed without a response)', async () => {
  const { port } = await testApp();
  const raw = await RawClient.connect(port);
  raw.write('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
  const head = await raw.readHead();
  assert.match(head, /^HTTP\/1\.1 405 /);
  assert.match(head, /\r\nconnection: close\r\n/i);
  raw.destroy();
});

test.run();
