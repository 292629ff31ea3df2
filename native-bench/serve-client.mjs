// A bare `murmur serve` client for the benchmarks: one socket, the upgrade with the commands
// right behind it (client frames with a zero mask key: the payload goes as it is), and a
// frame reader that hands each server text frame to a callback. No library, so its cost in the
// client process is a socket and a closure; shared by serve-users.mjs and ramp/serve-ramp.mjs.
import { connect } from 'node:net';

/** A client frame (text unless `opcode` says otherwise) with a zero mask key. */
export function clientFrame(payload, opcode = 0x1) {
  const p = Buffer.from(payload);
  const head = p.length < 126 ? Buffer.from([0x80 | opcode, 0x80 | p.length, 0, 0, 0, 0]) : Buffer.from([0x80 | opcode, 0xfe, p.length >> 8, p.length & 255, 0, 0, 0, 0]);
  return Buffer.concat([head, p]);
}

/**
 * Opens a connection to `path` on port/host (from `localAddress` when given), sends `commands`
 * (strings) right behind the head, calls onText(text) for each text frame the server sends
 * after the replies; answers pings (the server closes a connection that never pongs after its
 * idle timeout); resolves with the socket once `replies` text frames came (the welcome
 * counts), rejects on a refused upgrade, an `error` reply or a socket error.
 */
export function openServeClient({ port, host = '127.0.0.1', localAddress, path, commands = [], replies = 1 + commands.length, onText = () => {} }) {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host, ...(localAddress !== undefined ? { localAddress } : {}) }, () => {
      s.write(Buffer.concat([Buffer.from(`GET ${path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`), ...commands.map((c) => clientFrame(c))]));
    });
    let buf = Buffer.alloc(0);
    let headDone = false;
    let frames = 0;
    s.on('data', (d) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      if (!headDone) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        if (!buf.subarray(0, 12).toString().endsWith('101')) {
          s.destroy();
          return reject(new Error(buf.subarray(0, 200).toString()));
        }
        headDone = true;
        buf = buf.subarray(end + 4);
      }
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 127;
        let at = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          at = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          at = 10;
        }
        if (buf.length < at + len) return;
        const opcode = buf[0] & 15;
        if (opcode !== 0x1) {
          if (opcode === 0x9) s.write(clientFrame(buf.subarray(at, at + len), 0xa));
          buf = buf.subarray(at + len);
          continue;
        }
        const text = buf.toString('utf8', at, at + len);
        buf = buf.subarray(at + len);
        if (frames < replies && text.includes('"type":"error"')) {
          s.destroy();
          return reject(new Error(text));
        }
        if (++frames === replies) resolve(s);
        else if (frames > replies) onText(text);
      }
    });
    s.on('error', reject);
  });
}
