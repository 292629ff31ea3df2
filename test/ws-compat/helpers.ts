// The compatibility harness: each behaviour runs once against the real ws package and once
// against the door, and both must give the same observable result.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { WebSocket as RefWebSocket, WebSocketServer as RefServer, createWebSocketStream as refStream } from 'ws';
import { WebSocket as DoorWebSocket, WebSocketServer as DoorServer, createWebSocketStream as doorStream } from '../../src/ws/index.js';

/** One implementation of ws's API. Loosely typed: the same scenario drives both. */
export interface Impl {
  name: 'ws' | 'door';
  /* eslint-disable @typescript-eslint/no-explicit-any */
  WebSocketServer: any;
  WebSocket: any;
  createWebSocketStream: any;
  /* eslint-enable @typescript-eslint/no-explicit-any */
}

export const WS: Impl = { name: 'ws', WebSocketServer: RefServer, WebSocket: RefWebSocket, createWebSocketStream: refStream };
export const DOOR: Impl = { name: 'door', WebSocketServer: DoorServer, WebSocket: DoorWebSocket, createWebSocketStream: doorStream };

/** The reference client every server-side scenario connects with. */
export const RefClient = RefWebSocket;

const SCENARIO_MS = 10_000;

function bounded<R>(p: Promise<R>, label: string): Promise<R> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<R>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${label}: no result within ${SCENARIO_MS} ms`)), SCENARIO_MS);
    }),
  ]);
}

/**
 * A behaviour run against ws and the door: the results must be equal (and equal `expected`
 * when given, so the suite also says what ws does).
 */
export function compat<R>(name: string, scenario: (impl: Impl) => Promise<R>, expected?: R): void {
  test(name, async () => {
    const ref = await bounded(scenario(WS), `ws: ${name}`);
    const door = await bounded(scenario(DOOR), `door: ${name}`);
    assert.equal(door, ref, `the door differs from ws`);
    if (expected !== undefined) assert.equal(ref, expected, 'ws itself');
  });
}

/** A server of `impl` on a free loopback port, listening. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function listen(impl: Impl, options: Record<string, unknown> = {}): Promise<{ wss: any; url: string; port: number }> {
  const wss = new impl.WebSocketServer({ port: 0, host: '127.0.0.1', ...options });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const port = (wss.address() as { port: number }).port;
  return { wss, url: `ws://127.0.0.1:${port}`, port };
}

/** A server of `impl` with one reference client connected: both sides open. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function connected(impl: Impl, options: Record<string, unknown> = {}): Promise<{ wss: any; url: string; port: number; c: any; ws: any }> {
  const { wss, url, port } = await listen(impl, options);
  const opened = once(wss, 'connection');
  const c = new RefWebSocket(url);
  const clientOpen = once(c, 'open');
  const [ws] = await opened;
  await clientOpen;
  return { wss, url, port, c, ws };
}

/** A server of `serverImpl` and a client of `clientImpl` connected to it: both sides open. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function pair(serverImpl: Impl, clientImpl: Impl, clientOptions?: Record<string, unknown>): Promise<{ wss: any; url: string; c: any; ws: any }> {
  const { wss, url } = await listen(serverImpl);
  const serverSide = once(wss, 'connection');
  const c = new clientImpl.WebSocket(url, clientOptions);
  await once(c, 'open');
  const [ws] = await serverSide;
  return { wss, url, c, ws };
}

/** Closes a client, waits for its 'close', then closes its server. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function closeBoth(c: any, wss: any): Promise<void> {
  const closed = once(c, 'close');
  c.close();
  await closed;
  await shut(wss);
}

/** Closes a server and every client it still has. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function shut(wss: any): Promise<void> {
  for (const c of wss.clients ?? []) c.terminate();
  await new Promise<void>((resolve) => wss.close(() => resolve()));
}

/** Resolves with the event's arguments the next time `emitter` emits it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function once(emitter: any, event: string): Promise<any[]> {
  return new Promise((resolve) => emitter.once(event, (...args: unknown[]) => resolve(args)));
}

/** A value as a log entry: Buffers and ArrayBuffers by type and text. */
export function show(v: unknown): string {
  if (Buffer.isBuffer(v)) return `Buffer(${v.toString()})`;
  if (v instanceof ArrayBuffer) return `ArrayBuffer(${Buffer.from(v).toString()})`;
  if (Array.isArray(v)) return `[${v.map(show).join(',')}]`;
  if (v instanceof Blob) return `Blob(${v.size})`;
  return `${typeof v}(${String(v)})`;
}

/** What an error looks like to an application: its class, code and message. */
export function errorShape(err: unknown): string {
  const e = err as Error & { code?: string };
  return `${e.constructor.name}:${e.code ?? ''}:${e.message}`;
}

/**
 * A raw client: opens a WebSocket by hand, writes `frames` after the 101, and resolves with
 * the status line of the response and the close code of the server's close frame (or null).
 */
export function rawClient(port: number, frames: Buffer, path = '/', extraHeaders = ''): Promise<{ status: string; closeCode: number | null }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const key = randomBytes(16).toString('base64');
    let buf = Buffer.alloc(0);
    let sent = false;
    socket.on('error', reject);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (!sent && end >= 0 && buf.subarray(0, 12).toString().endsWith('101')) {
        sent = true;
        socket.write(frames);
      }
    });
    socket.on('close', () => {
      const end = buf.indexOf('\r\n\r\n');
      const status = buf.subarray(0, buf.indexOf('\r\n')).toString();
      const rest = end >= 0 ? buf.subarray(end + 4) : Buffer.alloc(0);
      let closeCode: number | null = null;
      for (let i = 0; i + 1 < rest.length; ) {
        const opcode = rest[i]! & 0x0f;
        const len = rest[i + 1]! & 0x7f;
        if (opcode === 8) {
          closeCode = len >= 2 ? rest.readUInt16BE(i + 2) : 1005;
          break;
        }
        i += 2 + len;
      }
      resolve({ status, closeCode });
    });
    setTimeout(() => socket.end(), 2000).unref();
  });
}

/** A client frame: masked (unless `masked` is false) with a fixed key. */
export function frame(opcode: number, payload: Buffer, { fin = true, masked = true, rsv = 0 } = {}): Buffer {
  const key = Buffer.from([1, 2, 3, 4]);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0, len]) : Buffer.from([0, 126, len >> 8, len & 0xff]);
  head[0] = (fin ? 0x80 : 0) | rsv | opcode;
  if (!masked) return Buffer.concat([head, payload]);
  head[1]! |= 0x80;
  const body = Buffer.from(payload.map((b, i) => b ^ key[i % 4]!));
  return Buffer.concat([head, key, body]);
}
