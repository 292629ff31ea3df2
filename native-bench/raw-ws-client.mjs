// A raw WebSocket client for the benchmarks: one upgrade (offering permessage-deflate or not),
// then prebuilt masked frames out and whole frames counted in (with those that have RSV1 set),
// so that what the clients cost stays out of the server's figures and a server's compressed
// frames are seen. Shared by deflate-bench.mjs and heap-diff.mjs.
import net from 'node:net';

const KEY = Buffer.from([0x11, 0x22, 0x33, 0x44]);

/** A masked client frame (FIN, text) of payload; RSV1 set when rsv1 (a compressed message). */
export function frame(payload, rsv1) {
  const ext = payload.length < 126 ? 0 : 2;
  const out = Buffer.alloc(2 + ext + 4 + payload.length);
  out[0] = 0x81 | (rsv1 ? 0x40 : 0);
  out[1] = 0x80 | (ext === 0 ? payload.length : 126);
  if (ext === 2) out.writeUInt16BE(payload.length, 2);
  KEY.copy(out, 2 + ext);
  for (let i = 0; i < payload.length; i++) out[6 + ext + i] = payload[i] ^ KEY[i & 3];
  return out;
}
/** One raw client: upgrade, then frames in, whole frames counted out (and those with RSV1). */

/**
 * Source addresses the clients take in turn: the loopback ports of one address run out (28,000
 * ephemeral ports, shared with whatever else the machine runs and with TIME_WAIT from the last
 * run), as the load generator's --src-ips avoids.
 */
const SOURCES = Array.from({ length: 16 }, (_, i) => `127.42.0.${i + 1}`);
let nextSource = 0;

export class Client {
  constructor(port, offer) {
    this.sock = net.connect({ port, host: '127.0.0.1', localAddress: SOURCES[nextSource++ % SOURCES.length] });
    this.sock.setNoDelay(true);
    this.buf = Buffer.alloc(0);
    this.open = false;
    this.deflate = false;
    this.waiters = [];
    this.frames = 0;
    this.compressed = 0;
    this.sock.on('error', () => {});
    this.ready = new Promise((resolve, reject) => {
      this.sock.on('connect', () => {
        const key = Buffer.from(String(Math.random()).slice(2, 18).padEnd(16, '0')).toString('base64');
        this.sock.write(
          `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
            (offer ? 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n' : '') +
            '\r\n',
        );
      });
      this.sock.on('error', (err) => reject(new Error(`closed before the upgrade: ${err.code ?? err.message}`)));
      this.sock.on('close', () => reject(new Error('closed before the upgrade')));
      this.sock.on('data', (d) => {
        this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
        if (!this.open) {
          const end = this.buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = this.buf.subarray(0, end).toString('latin1');
          if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(head.split('\r\n')[0]));
          this.deflate = /permessage-deflate/i.test(head);
          this.open = true;
          this.buf = this.buf.subarray(end + 4);
          resolve();
        }
        this.readFrames();
      });
    });
  }

  readFrames() {
    for (;;) {
      if (this.buf.length < 2) return;
      let len = this.buf[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        at = 10;
      }
      if (this.buf.length < at + len) return;
      if ((this.buf[0] & 0x40) !== 0) this.compressed++;
      this.buf = this.buf.subarray(at + len);
      this.frames++;
      const w = this.waiters.shift();
      if (w) w();
    }
  }

  /** Writes one frame; resolves when the next whole frame has come back. */
  echo(frameBytes) {
    const p = new Promise((r) => this.waiters.push(r));
    this.sock.write(frameBytes);
    return p;
  }
}

/** Opens n clients, 200 at a time. */
export async function openMany(port, n, offer) {
  const clients = [];
  for (let i = 0; i < n; i += 200) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 200); j++) batch.push(new Client(port, offer));
    await Promise.all(batch.map((c) => c.ready));
    clients.push(...batch);
  }
  return clients;
}

