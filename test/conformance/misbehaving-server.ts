/**
 * A deliberately non-conformant WebSocket "server" on node:net, used only to prove that the
 * Autobahn-like driver can fail: it completes the handshake, then reacts to every frame
 * according to `mode`.
 */
import { createServer } from 'node:net';
import type { Server as NetServer, Socket } from 'node:net';
import { createHash } from 'node:crypto';

export type Mode =
  /** Answers any frame with close 1000 and ends TCP (wrong code for protocol errors). */
  | 'close-1000'
  /** Echoes data frames (no UTF-8 check) and answers close with close, never drops TCP. */
  | 'echo-no-drop'
  /** Echoes whole messages (fragments assembled), validating nothing: no fail-fast, no UTF-8 check. */
  | 'echo-lax';

export async function startMisbehaving(mode: Mode): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const srv: NetServer = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    let open = false;
    let parts: Buffer[] = [];
    let msgOp = 0;
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!open) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const key = /sec-websocket-key:\s*(\S+)/i.exec(buf.subarray(0, end).toString('latin1'))?.[1] ?? '';
        const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
        buf = buf.subarray(end + 4);
        open = true;
      }
      for (;;) {
        if (buf.length < 2) return;
        const op = buf[0]! & 0x0f;
        let len = buf[1]! & 0x7f;
        let o = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          o = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          o = 10;
        }
        if (buf.length < o + 4 + len) return;
        const mask = buf.subarray(o, o + 4);
        const payload = Buffer.from(buf.subarray(o + 4, o + 4 + len));
        for (let i = 0; i < len; i++) payload[i] = payload[i]! ^ mask[i & 3]!;
        const head = buf[0]!;
        buf = buf.subarray(o + 4 + len);
        if (mode === 'close-1000') {
          s.end(Buffer.from([0x88, 2, 0x03, 0xe8]));
          return;
        }
        if (op === 8) {
          s.write(Buffer.from([0x88, 2, 0x03, 0xe8]));
          if (mode === 'echo-lax') s.end();
          continue; // 'echo-no-drop': keeps TCP open
        }
        if (op > 2) continue;
        if (op !== 0) msgOp = op;
        parts.push(payload);
        if ((head & 0x80) === 0) continue;
        const data = Buffer.concat(parts);
        parts = [];
        const n = data.length;
        const h = n < 126 ? Buffer.from([0x80 | msgOp, n]) : Buffer.from([0x80 | msgOp, 126, n >> 8, n & 0xff]);
        s.write(Buffer.concat([h, data]));
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  return {
    port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}
