/**
 * Helpers for the `murmur serve` tests: an app on 127.0.0.1 port 0, and a protocol client
 * (murmur's own WebSocket client) with an inbox, request/reply matching by id, and waits that
 * fail with a message instead of hanging.
 */
import { request as httpRequest } from 'node:http';
import { WebSocket } from '../../src/client/index.js';
import type { ClientError } from '../../src/client/index.js';
import { startApp } from '../../src/app/app.js';
import type { App, AppOptions } from '../../src/app/app.js';
import { decodeBinaryFrame } from '../../src/app/serve-protocol.js';

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const liveApps = new Set<App>();
const liveClients = new Set<TestClient>();

/**
 * Closes every client and app the test made, even when it failed (use as
 * `test.after.each(closeAll)`): a failed test must not leave a server that keeps the file's
 * process alive.
 */
export async function closeAll(): Promise<void> {
  for (const c of liveClients) if (c.ws.readyState <= 1) c.ws.close();
  liveClients.clear();
  const apps = [...liveApps];
  liveApps.clear();
  await Promise.all(apps.map((a) => a.shutdown()));
}

export async function testApp(options: AppOptions = {}): Promise<{ app: App; port: number; ws: string; http: string }> {
  // Overload protection off unless a test asks for it: a loaded test machine stalls the event
  // loop past its threshold now and then, and a test about something else would see 503s/1013s.
  const app = await startApp({ port: 0, host: '127.0.0.1', shutdownTimeoutMs: 2000, overloadLagMs: 0, ...options });
  liveApps.add(app);
  return { app, port: app.port, ws: `ws://127.0.0.1:${app.port}/ws`, http: `http://127.0.0.1:${app.port}` };
}

/** One inbound message: JSON text, or a binary frame split into header and payload. */
export type Inbound = { kind: 'json'; msg: Json } | { kind: 'binary'; msg: Json; payload: Buffer };

export class TestClient {
  readonly ws: WebSocket;
  readonly inbox: Inbound[] = [];
  welcome: Json | null = null;
  closed: { code: number; reason: string } | null = null;
  error: ClientError | null = null;
  private waiters: Array<() => void> = [];
  private seq = 0;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    liveClients.add(this);
    ws.addEventListener('message', (ev) => {
      const data = (ev as MessageEvent).data as string | Buffer;
      if (typeof data === 'string') {
        const msg = JSON.parse(data) as Json;
        this.inbox.push({ kind: 'json', msg });
        // A presence-batch stays in the inbox as it came, followed by one `presence` entry per
        // change (marked batched): tests about presence itself read the same either way.
        if (msg.type === 'presence-batch') {
          for (const ev of msg.events as Json[]) this.inbox.push({ kind: 'json', msg: { type: 'presence', topic: msg.topic, ...ev, batched: true } });
        }
      } else {
        const { header, payload } = decodeBinaryFrame(data);
        this.inbox.push({ kind: 'binary', msg: header, payload: Buffer.from(payload) });
      }
      this.wake();
    });
    ws.addEventListener('close', (ev) => {
      const c = ev as unknown as { code: number; reason: string };
      this.closed = { code: c.code, reason: c.reason };
      this.wake();
    });
    ws.addEventListener('error', (ev) => {
      this.error = (ev as unknown as { error: ClientError }).error;
      this.wake();
    });
  }

  /** Connects and waits for the welcome. */
  static async connect(url: string, headers?: Record<string, string>): Promise<TestClient> {
    const c = TestClient.open(url, headers);
    const w = await c.next((m) => m.type === 'welcome');
    c.welcome = w;
    return c;
  }

  /** Starts connecting without waiting (for refused upgrades). */
  static open(url: string, headers?: Record<string, string>): TestClient {
    return new TestClient(new WebSocket(url, undefined, headers !== undefined ? { headers } : {}));
  }

  send(cmd: Json | string | Buffer): void {
    if (typeof cmd === 'string' || Buffer.isBuffer(cmd)) this.ws.send(cmd);
    else this.ws.send(JSON.stringify(cmd));
  }

  /** Sends a command with a fresh id and returns the reply or error with that id. */
  async request(cmd: Json, timeoutMs = 5000): Promise<Json> {
    const id = ++this.seq;
    this.send({ ...cmd, id });
    return this.next((m) => (m.type === 'reply' || m.type === 'error') && m.id === id, timeoutMs);
  }

  /** Sends a command and expects an error reply with `code`. */
  async expectError(cmd: Json | string | Buffer, code: string): Promise<Json> {
    if (typeof cmd === 'string' || Buffer.isBuffer(cmd)) {
      this.send(cmd);
      const e = await this.next((m) => m.type === 'error');
      if (e.code !== code) throw new Error(`expected ${code}, got ${JSON.stringify(e)}`);
      return e;
    }
    const r = await this.request(cmd);
    if (r.type !== 'error' || r.code !== code) throw new Error(`expected error ${code}, got ${JSON.stringify(r)}`);
    return r;
  }

  /** Takes the first inbound JSON message matching `pred` (waiting for it). */
  async next(pred: (m: Json) => boolean, timeoutMs = 5000): Promise<Json> {
    const e = await this.nextEntry((x) => x.kind === 'json' && pred(x.msg), timeoutMs);
    return e.msg;
  }

  /** Takes the first inbound binary message matching `pred`. */
  async nextBinary(pred: (header: Json) => boolean = () => true, timeoutMs = 5000): Promise<{ msg: Json; payload: Buffer }> {
    const e = await this.nextEntry((x) => x.kind === 'binary' && pred(x.msg), timeoutMs);
    return e as { msg: Json; payload: Buffer };
  }

  async nextEntry(pred: (x: Inbound) => boolean, timeoutMs = 5000): Promise<Inbound> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex(pred);
      if (i !== -1) return this.inbox.splice(i, 1)[0]!;
      if (this.closed !== null) throw new Error(`connection closed (${this.closed.code} ${this.closed.reason}) while waiting; inbox: ${JSON.stringify(this.inbox.map((x) => x.msg))}`);
      if (Date.now() > deadline) throw new Error(`timeout waiting for a message; inbox: ${JSON.stringify(this.inbox.map((x) => x.msg))}`);
      await this.wait(deadline - Date.now());
    }
  }

  /** Messages of a topic, in arrival order, until `count` arrived. */
  async messages(topic: string, count: number, timeoutMs = 5000): Promise<Json[]> {
    const out: Json[] = [];
    while (out.length < count) out.push(await this.next((m) => m.type === 'message' && m.topic === topic, timeoutMs));
    return out;
  }

  async waitClosed(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    const deadline = Date.now() + timeoutMs;
    while (this.closed === null) {
      if (Date.now() > deadline) throw new Error('timeout waiting for close');
      await this.wait(deadline - Date.now());
    }
    return this.closed;
  }

  /** Waits for a failed handshake; returns the HTTP status. */
  async refusedStatus(timeoutMs = 5000): Promise<number> {
    await this.waitClosed(timeoutMs);
    if (this.error === null) throw new Error('expected the handshake to fail');
    return this.error.status;
  }

  close(): void {
    if (this.closed === null) this.ws.close();
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, Math.max(1, ms));
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request; resolves with status, headers and body (never rejects on a status). */
export function http(url: string, o: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: o.method ?? 'GET', headers: o.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

/** Closes clients and shuts the app down (what every test does at its end). */
export async function cleanup(app: App, ...clients: Array<TestClient | undefined>): Promise<void> {
  for (const c of clients) c?.close();
  await app.shutdown();
}
