import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { randomBytes, createHash } from 'node:crypto';
import { once } from 'node:events';

/** A raw TCP client for tests that need to send exact bytes or misbehave on purpose. */
export class RawClient {
  readonly socket: Socket;
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    const s = connect(port, host);
    await once(s, 'connect');
    return new RawClient(s);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  write(data: Buffer | string): void {
    this.socket.write(data);
  }

  /** Waits until at least n bytes are buffered (or the socket closed); returns and consumes them. */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`socket closed with ${this.buf.length}/${n} bytes`);
      if (Date.now() > deadline) throw new Error(`timeout waiting for ${n} bytes, have ${this.buf.length}`);
      await this.waitData(deadline - Date.now());
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Reads an HTTP response head (up to the blank line). */
  async readHead(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i !== -1) {
        const head = this.buf.subarray(0, i + 4).toString('latin1');
        this.buf = this.buf.subarray(i + 4);
        return head;
      }
      if (this.closed) throw new Error(`socket closed before a full head: ${JSON.stringify(this.buf.toString('latin1'))}`);
      if (Date.now() > deadline) throw new Error('timeout waiting for response head');
      await this.waitData(deadline - Date.now());
    }
  }

  /** Reads one unmasked server frame. */
  async readFrame(timeoutMs = 5000): Promise<{ fin: boolean; opcode: number; payload: Buffer }> {
    const h = await this.read(2, timeoutMs);
    let len = h[1]! & 0x7f;
    if (len === 126) len = (await this.read(2, timeoutMs)).readUInt16BE(0);
    else if (len === 127) len = Number((await this.read(8, timeoutMs)).readBigUInt64BE(0));
    const payload = Buffer.from(await this.read(len, timeoutMs));
    return { fin: (h[0]! & 0x80) !== 0, opcode: h[0]! & 0x0f, payload };
  }

  /** Reads a close frame and returns its code (1005 when empty). */
  async readClose(timeoutMs = 5000): Promise<number> {
    for (;;) {
      const f = await this.readFrame(timeoutMs);
      if (f.opcode === 8) return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
    }
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('timeout waiting for the socket to close');
      await this.waitData(deadline - Date.now());
    }
  }

  private waitData(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, Math.max(1, ms));
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  get buffered(): number {
    return this.buf.length;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function upgradeRequest(opts: { path?: string; host?: string; key?: string; headers?: Record<string, string>; method?: string } = {}): string {
  const key = opts.key ?? randomBytes(16).toString('base64');
  const headers: Record<string, string> = {
    Host: opts.host ?? 'localhost',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': key,
    'Sec-WebSocket-Version': '13',
    ...opts.headers,
  };
  const lines = Object.entries(headers).filter(([, v]) => v !== '').map(([k, v]) => `${k}: ${v}`);
  return `${opts.method ?? 'GET'} ${opts.path ?? '/'} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
}

export function expectedAccept(key: string): string {
  return createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
}

/** Opens a raw client and completes the handshake; returns it ready for frames. */
export async function rawWebSocket(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  c.write(upgradeRequest());
  const head = await c.readHead();
  if (!head.startsWith('HTTP/1.1 101')) throw new Error(`handshake failed: ${head}`);
  return c;
}

/** A masked client frame. */
export function clientFrame(opcode: number, payload: Buffer | string, opts: { fin?: boolean; mask?: boolean; rsv?: number } = {}): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const masked = opts.mask ?? true;
  const len = data.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const out = Buffer.alloc(2 + ext + (masked ? 4 : 0) + len);
  out[0] = ((opts.fin ?? true) ? 0x80 : 0) | ((opts.rsv ?? 0) << 4) | opcode;
  out[1] = (masked ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127);
  if (ext === 2) out.writeUInt16BE(len, 2);
  else if (ext === 8) out.writeBigUInt64BE(BigInt(len), 2);
  let o = 2 + ext;
  const key = masked ? randomBytes(4) : Buffer.alloc(4);
  if (masked) {
    key.copy(out, o);
    o += 4;
  }
  for (let i = 0; i < len; i++) out[o + i] = data[i]! ^ key[i & 3]!;
  return out;
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls a condition until it is true or the time is up. */
export async function until(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}`);
    await delay(10);
  }
}
