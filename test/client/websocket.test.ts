// The WebSocket client against real peers: the `ws` package's WebSocketServer (an
// independent implementation), and raw node:net servers that misbehave on purpose.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer, type ServerOptions, type WebSocket as PeerSocket } from 'ws';
import { WebSocket, ClientError, CloseEvent, ErrorEvent, MessageEvent, type WebSocketEventMap } from '../../src/client/index.js';
import { ProtocolError } from '../../src/protocol/index.js';

// --- helpers ---------------------------------------------------------------------------

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const accept = (key: string): string => createHash('sha1').update(key + GUID).digest('base64');

/** Rejects if `p` does not settle within `ms` (uvu has no per-test timeout). */
function within<T>(p: Promise<T>, ms = 10_000, what = 'operation'): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function next<K extends 'open' | 'message' | 'error' | 'close' | 'pong' | 'ping'>(ws: WebSocket, type: K) {
  return within(once(ws, type), 10_000, `event ${type}`).then(([ev]) => ev as WebSocketEventMap[K]);
}

/** Records every event in order, for asserting sequences such as error-then-close. */
function record(ws: WebSocket): { events: string[]; closed: Promise<CloseEvent>; errors: Error[] } {
  const events: string[] = [];
  const errors: Error[] = [];
  for (const t of ['open', 'message', 'error', 'close'] as const) ws.addEventListener(t, () => events.push(t));
  ws.addEventListener('error', (ev) => errors.push(ev.error));
  const closed = next(ws, 'close');
  return { events, closed, errors };
}

interface Peer {
  wss: WebSocketServer;
  url: string;
  /** Resolves with the next server-side socket. */
  accepted: () => Promise<PeerSocket>;
  close: () => Promise<void>;
}

async function wsServer(options: ServerOptions = {}): Promise<Peer> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...options });
  if (options.server === undefined) await once(wss, 'listening');
  const queue: PeerSocket[] = [];
  const waiters: ((s: PeerSocket) => void)[] = [];
  wss.on('connection', (s) => {
    const w = waiters.shift();
    if (w !== undefined) w(s);
    else queue.push(s);
  });
  const address = (options.server ?? wss).address() as net.AddressInfo;
  const scheme = options.server !== undefined ? 'wss' : 'ws';
  return {
    wss,
    url: `${scheme}://127.0.0.1:${address.port}`,
    accepted: () => {
      const s = queue.shift();
      return within(s !== undefined ? Promise.resolve(s) : new Promise((r) => waiters.push(r)), 10_000, 'server accept');
    },
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
      if (options.server !== undefined) await new Promise<void>((r) => options.server!.close(() => r()));
    },
  };
}

/** An echo server: every message goes back as it came (text as text, binary as binary). */
async function echoServer(options: ServerOptions = {}): Promise<Peer> {
  const peer = await wsServer({ maxPayload: 64 * 1024 * 1024, ...options });
  peer.wss.on('connection', (s) => s.on('message', (data, isBinary) => s.send(data as Buffer, { binary: isBinary })));
  return peer;
}

interface Raw {
  url: string;
  sockets: net.Socket[];
  close: () => Promise<void>;
}

/**
 * A node:net server that reads the request head, then hands the socket, the head and the
 * client's Sec-WebSocket-Key to `onRequest`, which answers however the test wants.
 */
async function rawServer(onRequest: (socket: net.Socket, head: string, key: string) => void): Promise<Raw> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      const head = buf.toString('latin1', 0, end);
      const key = /^sec-websocket-key: *(.*)$/im.exec(head)?.[1]?.trim() ?? '';
      const rest = buf.subarray(end + 4);
      onRequest(socket, head, key);
      if (rest.length > 0) socket.unshift(rest);
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const switching = (key: string, extra = ''): string =>
  `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept(key)}\r\n${extra}\r\n`;

/** An unmasked server frame with a payload below 126 bytes. */
function serverFrame(opcode: number, payload: Buffer, masked = false): Buffer {
  const header = Buffer.from([0x80 | opcode, (masked ? 0x80 : 0) | payload.length]);
  if (!masked) return Buffer.concat([header, payload]);
  const key = Buffer.from([1, 2, 3, 4]);
  const body = Buffer.from(payload.map((b, i) => b ^ key[i & 3]!));
  return Buffer.concat([header, key, body]);
}

/** Reads one client frame with a payload below 126 bytes from a raw socket, leaving the socket open. */
function readClientFrame(socket: net.Socket): Promise<{ opcode: number; payload: Buffer; masked: boolean }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2) return;
      const len = buf[1]! & 0x7f;
      const masked = (buf[1]! & 0x80) !== 0;
      if (buf.length < 2 + (masked ? 4 : 0) + len) return;
      socket.off('data', onData);
      socket.off('end', onEnd);
      const key = masked ? buf.subarray(2, 6) : Buffer.alloc(4);
      const start = masked ? 6 : 2;
      const payload = Buffer.from(buf.subarray(start, start + len).map((b, i) => b ^ key[i & 3]!));
      resolve({ opcode: buf[0]! & 0x0f, payload, masked });
    };
    const onEnd = (): void => reject(new Error('socket ended before a whole frame'));
    socket.on('data', onData);
    socket.on('end', onEnd);
  });
}

function assertDomError(fn: () => unknown, name: string): void {
  try {
    fn();
  } catch (err) {
    assert.instance(err, DOMException);
    assert.is((err as DOMException).name, name);
    return;
  }
  assert.unreachable(`expected a DOMException ${name}`);
}

function assertClientError(err: Error | undefined, code: string): ClientError {
  assert.instance(err, ClientError, `expected a ClientError ${code}, got ${String(err)}`);
  assert.is((err as ClientError).code, code);
  return err as ClientError;
}

/** Opens a client to `url` and waits for `open`. */
async function connect(url: string, protocols?: string | string[], options?: ConstructorParameters<typeof WebSocket>[2]): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, options);
  await next(ws, 'open');
  return ws;
}

async function closeClient(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return;
  const closed = next(ws, 'close');
  if (ws.readyState === WebSocket.OPEN) ws.close();
  await closed;
}

// --- constructor and API misuse ---------------------------------------------------------

test('constructor: schemes other than ws/wss/http/https throw SyntaxError', () => {
  assertDomError(() => new WebSocket('ftp://127.0.0.1/'), 'SyntaxError');
  assertDomError(() => new WebSocket('file:///tmp/x'), 'SyntaxError');
  assertDomError(() => new WebSocket('not a url'), 'SyntaxError');
  assertDomError(() => new WebSocket('/relative'), 'SyntaxError');
});

test('constructor: URLs with a fragment throw SyntaxError, even an empty one', () => {
  assertDomError(() => new WebSocket('ws://127.0.0.1:1/#frag'), 'SyntaxError');
  assertDomError(() => new WebSocket('ws://127.0.0.1:1/#'), 'SyntaxError');
});

test('constructor: subprotocols must be distinct tokens', () => {
  assertDomError(() => new WebSocket('ws://127.0.0.1:1/', ['chat', 'chat']), 'SyntaxError');
  assertDomError(() => new WebSocket('ws://127.0.0.1:1/', 'a b'), 'SyntaxError');
  assertDomError(() => new WebSocket('ws://127.0.0.1:1/', ''), 'SyntaxError');
  assertDomError(() => new WebSocket('ws://127.0.0.1:1/', ['ok', 'x,y']), 'SyntaxError');
});

test('constructor: reserved or malformed headers and bad limits throw TypeError', () => {
  assert.throws(() => new WebSocket('ws://127.0.0.1:1/', [], { headers: { Upgrade: 'h2c' } }), TypeError);
  assert.throws(() => new WebSocket('ws://127.0.0.1:1/', [], { headers: { 'Sec-WebSocket-Protocol': 'x' } }), TypeError);
  assert.throws(() => new WebSocket('ws://127.0.0.1:1/', [], { headers: { 'X-A': 'a\r\nX-B: b' } }), TypeError);
  assert.throws(() => new WebSocket('ws://127.0.0.1:1/', [], { headers: { 'bad name': 'v' } }), TypeError);
  assert.throws(() => new WebSocket('ws://127.0.0.1:1/', [], { maxPayload: 0 }), TypeError);
  assert.throws(() => new WebSocket('ws://127.0.0.1:1/', [], { handshakeTimeoutMs: -1 }), TypeError);
});

test('constants: static and instance readyState values', async () => {
  const peer = await wsServer();
  const ws = new WebSocket(peer.url);
  assert.equal([WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED], [0, 1, 2, 3]);
  assert.equal([ws.CONNECTING, ws.OPEN, ws.CLOSING, ws.CLOSED], [0, 1, 2, 3]);
  assert.is(ws.readyState, WebSocket.CONNECTING);
  assert.is(ws.bufferedAmount, 0);
  await next(ws, 'open');
  await closeClient(ws);
  await peer.close();
});

test('url: http and https are aliases of ws and wss', async () => {
  const peer = await wsServer();
  const ws = new WebSocket(peer.url.replace('ws:', 'http:') + '/path?q=1');
  assert.is(ws.url, peer.url + '/path?q=1');
  const [server, req] = (await within(once(peer.wss, 'connection'))) as [PeerSocket, import('node:http').IncomingMessage];
  assert.ok(server);
  assert.is(req.url, '/path?q=1');
  await next(ws, 'open');
  await closeClient(ws);
  await peer.close();
});

test('send() while CONNECTING throws InvalidStateError', async () => {
  const peer = await wsServer();
  const ws = new WebSocket(peer.url);
  assertDomError(() => ws.send('early'), 'InvalidStateError');
  assertDomError(() => ws.ping(), 'InvalidStateError');
  await next(ws, 'open');
  await closeClient(ws);
  await peer.close();
});

test('close(): codes other than 1000 and 3000-4999 throw InvalidAccessError; long reasons SyntaxError', async () => {
  const peer = await wsServer();
  const ws = await connect(peer.url);
  for (const code of [0, 999, 1001, 1005, 1006, 2999, 5000, 3000.5]) assertDomError(() => ws.close(code), 'InvalidAccessError');
  assertDomError(() => ws.close(1000, 'x'.repeat(124)), 'SyntaxError');
  assertDomError(() => ws.close(1000, 'é'.repeat(62)), 'SyntaxError'); // 124 UTF-8 bytes
  assert.is(ws.readyState, WebSocket.OPEN);
  const closed = next(ws, 'close');
  ws.close(1000, 'é'.repeat(61) + 'x'); // 123 bytes: allowed
  const ev = await closed;
  assert.is(ev.reason, 'é'.repeat(61) + 'x');
  await peer.close();
});

test('binaryType: nodebuffer by default; other values than nodebuffer/arraybuffer throw TypeError', async () => {
  const peer = await wsServer();
  const ws = await connect(peer.url);
  assert.is(ws.binaryType, 'nodebuffer');
  assert.throws(() => (ws.binaryType = 'blob' as 'nodebuffer'), TypeError);
  assert.is(ws.binaryType, 'nodebuffer');
  assert.is(ws.extensions, '');
  assert.is(ws.protocol, '');
  await closeClient(ws);
  await peer.close();
});

// --- handshake -------------------------------------------------------------------------

test('handshake: request carries the RFC 6455 headers, Origin and custom headers', async () => {
  const peer = await wsServer();
  const ws = new WebSocket(peer.url + '/chat', ['a', 'b'], { origin: 'https://example.com', headers: { 'X-Token': 'abc' } });
  const [, req] = (await within(once(peer.wss, 'connection'))) as [PeerSocket, import('node:http').IncomingMessage];
  assert.is(req.method, 'GET');
  assert.is(req.headers.host, peer.url.slice('ws://'.length));
  assert.is(req.headers.upgrade, 'websocket');
  assert.is(req.headers.connection, 'Upgrade');
  assert.is(req.headers['sec-websocket-version'], '13');
  assert.is(Buffer.from(req.headers['sec-websocket-key']!, 'base64').length, 16);
  assert.is(req.headers['sec-websocket-protocol'], 'a, b');
  assert.is(req.headers['sec-websocket-extensions'], undefined);
  assert.is(req.headers.origin, 'https://example.com');
  assert.is(req.headers['x-token'], 'abc');
  await next(ws, 'open');
  await closeClient(ws);
  await peer.close();
});

test('handshake: URL credentials become Basic authorization; Host may be overridden', async () => {
  const peer = await wsServer();
  const ws = new WebSocket(peer.url.replace('//', '//al%20ice:s%3Acret@'), [], { headers: { Host: 'example.test' } });
  const [, req] = (await within(once(peer.wss, 'connection'))) as [PeerSocket, import('node:http').IncomingMessage];
  assert.is(req.headers.authorization, `Basic ${Buffer.from('al ice:s:cret').toString('base64')}`);
  assert.is(req.headers.host, 'example.test');
  await next(ws, 'open');
  await closeClient(ws);
  await peer.close();
});

test('handshake: each connection sends a fresh Sec-WebSocket-Key', async () => {
  const peer = await wsServer();
  const keys = new Set<string>();
  peer.wss.on('connection', (_s, req) => keys.add(req.headers['sec-websocket-key']!));
  const a = await connect(peer.url);
  const b = await connect(peer.url);
  assert.is(keys.size, 2);
  await closeClient(a);
  await closeClient(b);
  await peer.close();
});

test('subprotocol: the server selects one of those offered', async () => {
  const peer = await wsServer({ handleProtocols: (offered) => (offered.has('v2') ? 'v2' : false) });
  const ws = await connect(peer.url, ['v1', 'v2']);
  assert.is(ws.protocol, 'v2');
  await closeClient(ws);
  const none = await connect(peer.url, ['v3']);
  assert.is(none.protocol, '', 'a server may select none');
  await closeClient(none);
  await peer.close();
});

test('subprotocol: a server selecting one we did not offer fails the connection', async () => {
  const peer = await wsServer({ handleProtocols: () => 'other' });
  const ws = new WebSocket(peer.url, ['v1']);
  const r = record(ws);
  const ev = await r.closed;
  assert.equal(r.events, ['error', 'close']);
  assertClientError(r.errors[0], 'WS_ERR_UNEXPECTED_SUBPROTOCOL');
  assert.is(ev.code, 1006);
  assert.is(ev.wasClean, false);
  await peer.close();
});

test('subprotocol: a server selecting one when none was offered fails the connection', async () => {
  const raw = await rawServer((s, _head, key) => s.write(switching(key, 'Sec-WebSocket-Protocol: chat\r\n')));
  const ws = new WebSocket(raw.url);
  const r = record(ws);
  await r.closed;
  assertClientError(r.errors[0], 'WS_ERR_UNEXPECTED_SUBPROTOCOL');
  await raw.close();
});

test('handshake: 403 instead of 101 -> error carrying the status, then close 1006', async () => {
  const peer = await wsServer({ verifyClient: (_info, cb) => cb(false, 403, 'Forbidden') });
  const ws = new WebSocket(peer.url);
  const r = record(ws);
  const ev = await r.closed;
  assert.equal(r.events, ['error', 'close']);
  const err = assertClientError(r.errors[0], 'WS_ERR_HANDSHAKE_STATUS');
  assert.is(err.status, 403);
  assert.is(ev.code, 1006);
  assert.is(ev.wasClean, false);
  assert.is(ws.readyState, WebSocket.CLOSED);
  await peer.close();
});

test('handshake: 200 instead of 101 -> error carrying the status, then close 1006', async () => {
  const raw = await rawServer((s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nhi'));
  const ws = new WebSocket(raw.url);
  const r = record(ws);
  const ev = await r.closed;
  assert.equal(r.events, ['error', 'close']);
  const err = assertClientError(r.errors[0], 'WS_ERR_HANDSHAKE_STATUS');
  assert.is(err.status, 200);
  assert.is(err.headers?.get('content-type'), 'text/plain');
  assert.is(ev.code, 1006);
  await raw.close();
});

test('handshake: a wrong Sec-WebSocket-Accept fails the connection', async () => {
  const raw = await rawServer((s) =>
    s.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept('AAAAAAAAAAAAAAAAAAAAAA==')}\r\n\r\n`,
    ),
  );
  const ws = new WebSocket(raw.url);
  const r = record(ws);
  const ev = await r.closed;
  assert.equal(r.events, ['error', 'close']);
  assertClientError(r.errors[0], 'WS_ERR_INVALID_ACCEPT');
  assert.is(ev.code, 1006);
  assert.is(ev.wasClean, false);
  await raw.close();
});

test('handshake: missing Upgrade or Connection headers, or an extension, fail the connection', async () => {
  const cases: [string, (key: string) => string][] = [
    ['WS_ERR_INVALID_UPGRADE_HEADER', (k) => `HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept(k)}\r\n\r\n`],
    ['WS_ERR_INVALID_CONNECTION_HEADER', (k) => `HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: ${accept(k)}\r\n\r\n`],
    ['WS_ERR_UNEXPECTED_EXTENSION', (k) => switching(k, 'Sec-WebSocket-Extensions: permessage-deflate\r\n')],
    ['WS_ERR_MALFORMED_RESPONSE', () => 'HTTP/2 101\r\n\r\n'],
  ];
  for (const [code, answer] of cases) {
    const raw = await rawServer((s, _h, key) => s.write(answer(key)));
    const ws = new WebSocket(raw.url);
    const r = record(ws);
    await r.closed;
    assertClientError(r.errors[0], code);
    await raw.close();
  }
});

test('handshake: header names and the Connection token list are case-insensitive', async () => {
  const raw = await rawServer((s, _h, key) =>
    s.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, UPGRADE\r\nsec-websocket-accept: ${accept(key)}\r\n\r\n`),
  );
  const ws = await connect(raw.url);
  assert.is(ws.readyState, WebSocket.OPEN);
  const closed = next(ws, 'close');
  ws.close();
  raw.sockets[0]!.destroy();
  await closed;
  await raw.close();
});

test('handshake: a response head arriving one byte at a time', async () => {
  const raw = await rawServer((s, _h, key) => {
    const bytes = Buffer.from(switching(key), 'latin1');
    let i = 0;
    const drip = (): void => {
      if (s.destroyed) return;
      s.write(bytes.subarray(i, i + 1));
      if (++i < bytes.length) setTimeout(drip, 1);
    };
    drip();
  });
  const ws = await connect(raw.url);
  assert.is(ws.readyState, WebSocket.OPEN);
  const closed = next(ws, 'close');
  ws.close();
  raw.sockets[0]!.destroy();
  await closed;
  await raw.close();
});

test('handshake: frames sent right behind the 101, in the same write, arrive after open', async () => {
  const raw = await rawServer((s, _h, key) => s.write(Buffer.concat([Buffer.from(switching(key)), serverFrame(1, Buffer.from('first'))])));
  const ws = new WebSocket(raw.url);
  const r = record(ws);
  const msg = await next(ws, 'message');
  assert.is(msg.data, 'first');
  assert.equal(r.events, ['open', 'message']);
  raw.sockets[0]!.destroy();
  await r.closed;
  await raw.close();
});

test('handshake: a response head over 16 KiB fails the connection', async () => {
  const raw = await rawServer((s, _h, key) => s.write(switching(key, `X-Pad: ${'a'.repeat(17 * 1024)}\r\n`)));
  const ws = new WebSocket(raw.url);
  const r = record(ws);
  await r.closed;
  assertClientError(r.errors[0], 'WS_ERR_RESPONSE_HEAD_TOO_LARGE');
  await raw.close();
});

test('handshake: timeout when the server never answers', async () => {
  const raw = await rawServer(() => {});
  const started = Date.now();
  const ws = new WebSocket(raw.url, [], { handshakeTimeoutMs: 150 });
  const r = record(ws);
  const ev = await r.closed;
  assert.ok(Date.now() - started >= 140, 'not before the timeout');
  assert.equal(r.events, ['error', 'close']);
  assertClientError(r.errors[0], 'WS_ERR_HANDSHAKE_TIMEOUT');
  assert.is(ev.code, 1006);
  assert.is(ev.wasClean, false);
  await raw.close();
});

test('handshake: the server closing before answering -> error, close 1006', async () => {
  const raw = await rawServer((s) => s.end());
  const ws = new WebSocket(raw.url);
  const r = record(ws);
  const ev = await r.closed;
  assertClientError(r.errors[0], 'WS_ERR_CLOSED_BEFORE_OPEN');
  assert.is(ev.code, 1006);
  await raw.close();
});

test('connection refused -> error WS_ERR_SOCKET with the cause, close 1006', async () => {
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((r) => probe.close(() => r()));
  const ws = new WebSocket(`ws://127.0.0.1:${port}`);
  const r = record(ws);
  const ev = await r.closed;
  const err = assertClientError(r.errors[0], 'WS_ERR_SOCKET');
  assert.is((err.cause as NodeJS.ErrnoException).code, 'ECONNREFUSED');
  assert.is(ev.code, 1006);
});

test('close() while CONNECTING -> error then close 1006, both after close() returns', async () => {
  const peer = await wsServer();
  const ws = new WebSocket(peer.url);
  const r = record(ws);
  ws.close();
  assert.is(ws.readyState, WebSocket.CLOSING);
  assert.equal(r.events, [], 'no event dispatched inside close()');
  const ev = await r.closed;
  assert.equal(r.events, ['error', 'close']);
  assertClientError(r.errors[0], 'WS_ERR_ABORTED');
  assert.is(ev.code, 1006);
  await peer.close();
});

// --- messages --------------------------------------------------------------------------

const SIZES = [0, 1, 125, 126, 65535, 65536, 200_000];

test('messages: text of every length-encoding boundary, both ways', async () => {
  const peer = await echoServer();
  const ws = await connect(peer.url);
  for (const n of SIZES) {
    const text = 'é'.repeat(n >> 1) + 'x'.repeat(n & 1); // n UTF-8 bytes
    ws.send(text);
    const ev = await next(ws, 'message');
    assert.type(ev.data, 'string');
    assert.ok(ev.data === text, `text of ${n} bytes`);
  }
  await closeClient(ws);
  await peer.close();
});

test('messages: binary of every length-encoding boundary, both ways, as Buffers', async () => {
  const peer = await echoServer();
  const ws = await connect(peer.url);
  for (const n of SIZES) {
    const data = Buffer.alloc(n);
    for (let i = 0; i < n; i++) data[i] = (i * 31 + 7) & 0xff;
    const copy = Buffer.from(data);
    ws.send(data);
    assert.ok(data.equals(copy), 'send() does not mask the caller buffer in place');
    const ev = await next(ws, 'message');
    assert.ok(Buffer.isBuffer(ev.data));
    assert.ok(data.equals(ev.data as Buffer), `binary of ${n} bytes`);
  }
  await closeClient(ws);
  await peer.close();
});

test('messages: 16 MiB text and binary, both ways, under the default maxPayload', async () => {
  const peer = await echoServer();
  const ws = await connect(peer.url);
  const size = 16 * 1024 * 1024;
  const bin = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) bin[i] = i >>> 12;
  ws.send(bin);
  const b = await next(ws, 'message');
  assert.ok(bin.equals(b.data as Buffer));
  const text = 'a'.repeat(size);
  ws.send(text);
  const t = await next(ws, 'message');
  assert.ok(t.data === text);
  await closeClient(ws);
  await peer.close();
});

test('messages: binaryType arraybuffer; send() takes ArrayBuffer and typed-array views', async () => {
  const peer = await echoServer();
  const ws = await connect(peer.url);
  ws.binaryType = 'arraybuffer';
  const backing = new Uint8Array([9, 9, 1, 2, 3, 9]);
  ws.send(backing.subarray(2, 5)); // a view with an offset: only its own bytes go out
  const a = await next(ws, 'message');
  assert.instance(a.data, ArrayBuffer);
  assert.equal([...new Uint8Array(a.data as ArrayBuffer)], [1, 2, 3]);
  ws.send(new Uint16Array([0x0102]).buffer);
  const b = await next(ws, 'message');
  assert.is((b.data as ArrayBuffer).byteLength, 2);
  ws.send(new DataView(new ArrayBuffer(0)));
  const c = await next(ws, 'message');
  assert.is((c.data as ArrayBuffer).byteLength, 0);
  ws.binaryType = 'nodebuffer';
  ws.send(Buffer.from([4]));
  const d = await next(ws, 'message');
  assert.ok(Buffer.isBuffer(d.data));
  await closeClient(ws);
  await peer.close();
});

test('messages: events are MessageEvents with the origin; data outlives the callback', async () => {
  const peer = await wsServer();
  const ws = new WebSocket(peer.url);
  const server = await peer.accepted();
  await next(ws, 'open');
  const got: Buffer[] = [];
  ws.onmessage = (ev) => got.push(ev.data as Buffer);
  server.send(Buffer.from('one'));
  server.send(Buffer.from('two'));
  const ev = await next(ws, 'message');
  assert.instance(ev, MessageEvent);
  assert.is(ev.origin, peer.url);
  await within(new Promise<void>((r) => (got.length === 2 ? r() : ws.addEventListener('message', () => r(), { once: true }))));
  assert.equal(
    got.map((b) => b.toString()),
    ['one', 'two'],
  );
  await closeClient(ws);
  await peer.close();
});

test('messages: sends made in one tick leave in order', async () => {
  const peer = await wsServer();
  const ws = new WebSocket(peer.url);
  const server = await peer.accepted();
  await next(ws, 'open');
  const got: string[] = [];
  const all = new Promise<void>((r) => server.on('message', (d) => got.push(d.toString()) === 100 && r()));
  for (let i = 0; i < 100; i++) ws.send(String(i));
  await within(all);
  assert.equal(got, Array.from({ length: 100 }, (_, i) => String(i)));
  await closeClient(ws);
  await peer.close();
});

test('messages: frames the client sends are masked', async () => {
  const raw = await rawServer((s, _h, key) => s.write(switching(key)));
  const ws = await connect(raw.url);
  ws.send('hi');
  const frame = await within(readClientFrame(raw.sockets[0]!));
  assert.is(frame.masked, true);
  assert.is(frame.opcode, 1);
  assert.is(frame.payload.toString(), 'hi');
  const closed = next(ws, 'close');
  raw.sockets[0]!.destroy();
  await closed;
  await raw.close();
});

test('on<event> properties and addEventListener both fire; assigning null removes the handler', async () => {
  const peer = await echoServer();
  const ws = new WebSocket(peer.url);
  const calls: string[] = [];
  ws.onopen = () => calls.push('onopen');
  ws.addEventListener('open', () => calls.push('listener'));
  await next(ws, 'open');
  assert.equal(calls, ['onopen', 'listener']);
  ws.onmessage = () => calls.push('first');
  ws.onmessage = () => calls.push('second'); // replaces, keeps the place
  ws.send('x');
  await next(ws, 'message');
  assert.equal(calls.slice(2), ['second']);
  assert.type(ws.onmessage, 'function');
  ws.onmessage = null;
  assert.is(ws.onmessage, null);
  ws.send('y');
  await next(ws, 'message');
  assert.equal(calls.slice(2), ['second']);
  await closeClient(ws);
  await peer.close();
});

// --- ping / pong ------------------------------------------------------------------------

test('ping: the client pings, the server pongs, a pong event carries the payload', async () => {
  const peer = await wsServer();
  const ws = await connect(peer.url);
  const server = await peer.accepted();
  const seen = once(server, 'ping');
  ws.ping('are you there');
  const ev = await next(ws, 'pong');
  assert.is(ev.data.toString(), 'are you there');
  const [data] = (await within(seen)) as [Buffer];
  assert.is(data.toString(), 'are you there');
  assert.throws(() => ws.ping(Buffer.alloc(126)), RangeError);
  await closeClient(ws);
  await peer.close();
});

test('ping: a server ping is answered with a pong carrying the same payload', async () => {
  const peer = await wsServer();
  const ws = await connect(peer.url);
  const server = await peer.accepted();
  const pinged = next(ws, 'ping');
  const pong = once(server, 'pong');
  server.ping(Buffer.from([1, 2, 3]));
  const [data] = (await within(pong)) as [Buffer];
  assert.equal([...data], [1, 2, 3]);
  assert.equal([...(await pinged).data], [1, 2, 3]);
  await closeClient(ws);
  await peer.close();
});

// --- closing ----------------------------------------------------------------------------

test('close: client-initiated with code and reason, clean on both sides', async () => {
  const peer = await wsServer();
  const ws = await connect(peer.url);
  const server = await peer.accepted();
  const serverClosed = once(server, 'close');
  const closed = next(ws, 'close');
  ws.close(4001, 'done here');
  assert.is(ws.readyState, WebSocket.CLOSING);
  ws.close(4002); // a second close() does nothing
  const ev = await closed;
  assert.instance(ev, CloseEvent);
  assert.is(ev.code, 4001, 'ws echoes the code');
  assert.is(ev.wasClean, true);
  assert.is(ws.readyState, WebSocket.CLOSED);
  const [code, reason] = (await within(serverClosed)) as [number, Buffer];
  assert.is(code, 4001);
  assert.is(reason.toString(), 'done here');
  await peer.close();
});

test('close: client close() without a code sends an empty close frame (1005 at the server)', async () => {
  const peer = await wsServer();
  const ws = await connect(peer.url);
  const server = await peer.accepted();
  const serverClosed = once(server, 'close');
  const closed = next(ws, 'close');
  ws.close();
  const ev = await closed;
  assert.is(ev.code, 1005);
  assert.is(ev.wasClean, true);
  const [code] = (await within(serverClosed)) as [number];
  assert.is(code, 1005);
  await peer.close();
});

test('close: server-initiated; the client echoes the code and waits for the server to close TCP', async () => {
  const peer = await wsServer();
  const ws = await connect(peer.url);
  const server = await peer.accepted();
  const serverClosed = once(server, 'close');
  const r = record(ws);
  server.close(4100, 'server says bye');
  const ev = await r.closed;
  assert.equal(r.events, ['close']);
  assert.is(ev.code, 4100);
  assert.is(ev.reason, 'server says bye');
  assert.is(ev.wasClean, true);
  const [code] = (await within(serverClosed)) as [number];
  assert.is(code, 4100);
  await peer.close();
});

test('close: data sent after close() is dropped and counted in bufferedAmount', async () => {
  const peer = await wsServer();
  const ws = await connect(peer.url);
  const server = await peer.accepted();
  let received = 0;
  server.on('message', () => received++);
  const closed = next(ws, 'close');
  ws.close();
  const before = ws.bufferedAmount;
  ws.send('12345');
  ws.send(Buffer.alloc(10));
  assert.is(ws.bufferedAmount - before, 15);
  await closed;
  assert.is(received, 0);
  await peer.close();
});

test('close: messages arriving after close() are not delivered (WHATWG)', async () => {
  const raw = await rawServer((s, _h, key) => s.write(switching(key)));
  const ws = await connect(raw.url);
  const r = record(ws);
  ws.close(1000);
  const sock = raw.sockets[0]!;
  sock.write(serverFrame(1, Buffer.from('late')));
  sock.write(serverFrame(8, Buffer.from([0x03, 0xe8])));
  sock.end();
  const ev = await r.closed;
  assert.equal(r.events, ['close']);
  assert.is(ev.code, 1000);
  assert.is(ev.wasClean, true);
  await raw.close();
});

test('close: the server dropping TCP without a close frame -> close 1006, not clean, no error', async () => {
  const peer = await wsServer();
  const ws = await connect(peer.url);
  const server = await peer.accepted();
  const r = record(ws);
  server.terminate();
  const ev = await r.closed;
  assert.equal(r.events, ['close']);
  assert.is(ev.code, 1006);
  assert.is(ev.wasClean, false);
  await peer.close();
});

test('close: a server that never answers the close frame is cut off after closeTimeoutMs', async () => {
  const raw = await rawServer((s, _h, key) => s.write(switching(key)));
  const ws = await connect(raw.url, [], { closeTimeoutMs: 100 });
  const r = record(ws);
  const started = Date.now();
  ws.close(1000);
  const frame = await within(readClientFrame(raw.sockets[0]!));
  assert.is(frame.opcode, 8);
  assert.equal([...frame.payload], [0x03, 0xe8]);
  const ev = await r.closed;
  assert.ok(Date.now() - started >= 90);
  assert.is(ev.code, 1006);
  assert.is(ev.wasClean, false);
  await raw.close();
});

test('close: a server that answers close but keeps TCP open is cut off after closeTimeoutMs, clean', async () => {
  const raw = await rawServer((s, _h, key) => {
    s.write(switching(key));
    s.write(serverFrame(8, Buffer.from([0x0f, 0xa0, 0x68, 0x69]))); // 4000 "hi"
  });
  const ws = new WebSocket(raw.url, [], { closeTimeoutMs: 100 });
  const r = record(ws);
  const ev = await r.closed;
  assert.equal(r.events, ['open', 'close']);
  assert.is(ev.code, 4000);
  assert.is(ev.reason, 'hi');
  assert.is(ev.wasClean, true, 'close frames went both ways (RFC 6455 7.1.5)');
  await raw.close();
});

// --- failures caused by the server's frames ----------------------------------------------

test('fail: a masked server frame -> close frame 1002 to the server, error, close 1006', async () => {
  let frameSeen: Promise<{ opcode: number; payload: Buffer; masked: boolean }> | undefined;
  const raw = await rawServer((s, _h, key) => {
    frameSeen = readClientFrame(s);
    s.write(switching(key));
    s.write(serverFrame(1, Buffer.from('masked'), true));
  });
  const ws = new WebSocket(raw.url);
  const r = record(ws);
  const ev = await r.closed;
  assert.equal(r.events, ['open', 'error', 'close']);
  const err = r.errors[0];
  assert.instance(err, ProtocolError);
  assert.is((err as ProtocolError).code, 'WS_ERR_UNEXPECTED_MASK');
  assert.is((err as ProtocolError).closeCode, 1002);
  assert.is(ev.code, 1006);
  assert.is(ev.wasClean, false);
  const frame = await within(frameSeen!);
  assert.is(frame.opcode, 8);
  assert.is(frame.payload.readUInt16BE(0), 1002);
  await raw.close();
});

test('fail: invalid UTF-8 in a text message -> the server sees close 1007', async () => {
  const peer = await wsServer();
  const ws = await connect(peer.url);
  const server = await peer.accepted();
  const serverClosed = once(server, 'close');
  const r = record(ws);
  server.send(Buffer.from([0x68, 0xff, 0x69]), { binary: false });
  const ev = await r.closed;
  assert.equal(r.events, ['error', 'close']);
  assert.is((r.errors[0] as ProtocolError).code, 'WS_ERR_INVALID_UTF8');
  assert.is(ev.code, 1006);
  const [code] = (await within(serverClosed)) as [number];
  assert.is(code, 1007);
  await peer.close();
});

test('fail: a message over maxPayload -> the server sees close 1009', async () => {
  const peer = await wsServer();
  const ws = await connect(peer.url, [], { maxPayload: 1000 });
  const server = await peer.accepted();
  const serverClosed = once(server, 'close');
  const r = record(ws);
  server.send(Buffer.alloc(1000)); // exactly the limit: fine
  await next(ws, 'message');
  server.send(Buffer.alloc(1001));
  const ev = await r.closed;
  assert.is((r.errors[0] as ProtocolError).code, 'WS_ERR_MESSAGE_TOO_BIG');
  assert.is(ev.code, 1006);
  const [code] = (await within(serverClosed)) as [number];
  assert.is(code, 1009);
  await peer.close();
});

test('fail: error events are ErrorEvents with the error and its message', async () => {
  const peer = await wsServer({ verifyClient: (_i, cb) => cb(false, 401) });
  const ws = new WebSocket(peer.url);
  const ev = await next(ws, 'error');
  assert.instance(ev, ErrorEvent);
  assert.is(ev.message, ev.error.message);
  await next(ws, 'close');
  await peer.close();
});

// --- bufferedAmount ----------------------------------------------------------------------

test('bufferedAmount: counts frames corked in this tick, returns to 0 once written', async () => {
  const peer = await echoServer();
  const ws = await connect(peer.url);
  assert.is(ws.bufferedAmount, 0);
  ws.send('x'.repeat(100)); // 2 + 4 + 100
  ws.send(Buffer.alloc(1000)); // 4 + 4 + 1000
  assert.is(ws.bufferedAmount, 106 + 1008);
  await new Promise((r) => setImmediate(r));
  await within(
    (async () => {
      while (ws.bufferedAmount > 0) await new Promise((r) => setTimeout(r, 5));
    })(),
  );
  assert.is(ws.bufferedAmount, 0);
  await closeClient(ws);
  await peer.close();
});

test('bufferedAmount: rises while the server does not read, drains when it resumes', async () => {
  const peer = await wsServer({ maxPayload: 64 * 1024 * 1024 });
  const ws = await connect(peer.url);
  const server = await peer.accepted();
  const serverSocket = (server as unknown as { _socket: net.Socket })._socket;
  serverSocket.pause();
  const chunk = Buffer.alloc(1024 * 1024);
  const total = 32;
  for (let i = 0; i < total; i++) ws.send(chunk);
  // Let the writes reach the kernel until its buffers are full.
  await new Promise((r) => setTimeout(r, 100));
  const stuck = ws.bufferedAmount;
  assert.ok(stuck > 1024 * 1024, `expected megabytes still queued, got ${stuck}`);
  let got = 0;
  const all = new Promise<void>((r) => server.on('message', () => ++got === total && r()));
  serverSocket.resume();
  await within(all);
  assert.is(ws.bufferedAmount, 0);
  await closeClient(ws);
  await peer.close();
});

// --- TLS ---------------------------------------------------------------------------------

/** A self-signed certificate for CN=localhost, made with the openssl CLI into a temp dir. */
function selfSigned(): { key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'murmur-client-tls-'));
  try {
    const keyPath = join(dir, 'key.pem');
    const certPath = join(dir, 'cert.pem');
    try {
      execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', keyPath, '-out', certPath],
        { stdio: 'pipe' },
      );
    } catch (err) {
      throw new Error(`THE wss:// TESTS NEED THE openssl CLI TO MAKE A CERTIFICATE, AND IT FAILED: ${String(err)}`);
    }
    return { key: readFileSync(keyPath), cert: readFileSync(certPath) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let tlsCert: { key: Buffer; cert: Buffer } | undefined;
async function tlsEchoServer(): Promise<Peer> {
  tlsCert ??= selfSigned();
  const server = https.createServer(tlsCert);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return echoServer({ server, host: undefined, port: undefined });
}

test('wss: against an https server with a self-signed certificate, trusted through tls.ca', async () => {
  const peer = await tlsEchoServer();
  const ws = await connect(peer.url, [], { tls: { ca: tlsCert!.cert, servername: 'localhost' } });
  ws.send('over tls');
  assert.is((await next(ws, 'message')).data, 'over tls');
  ws.send(Buffer.alloc(70_000, 1));
  assert.is(((await next(ws, 'message')).data as Buffer).length, 70_000);
  const closed = next(ws, 'close');
  ws.close(1000, 'tls bye');
  const ev = await closed;
  assert.is(ev.code, 1000);
  assert.is(ev.wasClean, true);
  await peer.close();
});

test('wss: rejectUnauthorized false accepts the self-signed certificate', async () => {
  const peer = await tlsEchoServer();
  const ws = await connect(peer.url, [], { tls: { rejectUnauthorized: false } });
  ws.send('x');
  assert.is((await next(ws, 'message')).data, 'x');
  await closeClient(ws);
  await peer.close();
});

test('wss: an untrusted certificate fails the connection with WS_ERR_SOCKET', async () => {
  const peer = await tlsEchoServer();
  const ws = new WebSocket(peer.url);
  const r = record(ws);
  const ev = await r.closed;
  assert.equal(r.events, ['error', 'close']);
  const err = assertClientError(r.errors[0], 'WS_ERR_SOCKET');
  assert.ok(err.cause !== undefined);
  assert.is(ev.code, 1006);
  await peer.close();
});

test.run();
