// Baseline: the floor for anything built on net.Socket (BENCH-CONTRACT).
//   node [--expose-gc] native-bench/servers/bare-net-server.mjs --port P [--host H] [--mode hold|echo]
// Reads the upgrade request head (until \r\n\r\n, 8 KiB at most), answers 101 with a correct
// Sec-WebSocket-Accept, then keeps the net.Socket open and
// - hold: ignores whatever arrives (the memory floor);
// - echo: the least a frame echo can do: each client frame is unmasked in place and written back
//   with the same FIN bit and opcode (fragments stay fragments), pings get pongs, a close frame
//   is answered and the socket ended. No UTF-8 check, no limits but 16 MiB per frame, no
//   events or objects per message: a floor for the echo figures, not a WebSocket server.
//   Unmasking uses bufferutil (native) when it loads, as ws does.
// A plain GET without upgrade (no Sec-WebSocket-Key) gets 400 and Connection: close.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import net from 'node:net';
import { installStats, parseArgs } from './common.mjs';

const opts = parseArgs(process.argv.slice(2), ['hold', 'echo']);
let unmask = (buf, mask, off, len) => {
  for (let i = 0; i < len; i++) buf[off + i] ^= mask[i & 3];
};
try {
  const bu = createRequire(import.meta.url)('bufferutil');
  unmask = (buf, mask, off, len) => bu.unmask(buf.subarray(off, off + len), mask);
} catch {}
const MAX_FRAME = 16 * 1024 * 1024;
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_HEAD = 8192;
let open = 0;

function ignore() {}
function onClose() {
  open--;
}

// Shared handlers, `this` is the socket: no closure per connection.
function onHead(chunk) {
  const head = this.head ? Buffer.concat([this.head, chunk]) : chunk;
  const end = head.indexOf('\r\n\r\n');
  if (end < 0) {
    if (head.length > MAX_HEAD) this.destroy();
    else this.head = head;
    return;
  }
  this.head = undefined;
  this.removeListener('data', onHead);
  this.on('data', opts.mode === 'echo' ? onFrames : ignore);
  const m = /\r\nsec-websocket-key:[ \t]*([A-Za-z0-9+/=]{24})[ \t]*\r\n/i.exec(head.toString('latin1', 0, end + 2));
  if (!m) {
    this.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(m[1] + GUID).digest('base64');
  this.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  if (opts.mode === 'echo' && end + 4 < head.length) onFrames.call(this, head.subarray(end + 4));
}

// echo mode: parses whole frames from what has arrived, keeps an incomplete tail for later.
function onFrames(chunk) {
  let buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
  this.rest = undefined;
  const out = [];
  let p = 0;
  let closing = false;
  while (buf.length - p >= 2) {
    const b0 = buf[p];
    const b1 = buf[p + 1];
    let len = b1 & 0x7f;
    let h = 2;
    if (len === 126) {
      if (buf.length - p < 4) break;
      len = buf.readUInt16BE(p + 2);
      h = 4;
    } else if (len === 127) {
      if (buf.length - p < 10) break;
      len = Number(buf.readBigUInt64BE(p + 2));
      h = 10;
    }
    if (!(b1 & 0x80) || len > MAX_FRAME) {
      this.destroy(); // unmasked client frame or too large: not worth a close frame here
      return;
    }
    if (buf.length - p < h + 4 + len) break;
    const mask = buf.subarray(p + h, p + h + 4);
    const off = p + h + 4;
    if (len) unmask(buf, mask, off, len);
    const op = b0 & 0x0f;
    // server frame header: same FIN/opcode, no mask bit, same length encoding
    const hdr = Buffer.allocUnsafe(h);
    hdr[0] = op === 9 ? (b0 & 0xf0) | 10 : b0;
    hdr[1] = b1 & 0x7f;
    if (h === 4) hdr.writeUInt16BE(len, 2);
    else if (h === 10) hdr.writeBigUInt64BE(BigInt(len), 2);
    if (op !== 10) out.push(hdr, buf.subarray(off, off + len)); // pongs from the client: dropped
    p = off + len;
    if (op === 8) {
      closing = true;
      break;
    }
  }
  if (out.length) this.write(out.length === 1 ? out[0] : Buffer.concat(out));
  if (closing) {
    this.end();
    return;
  }
  if (p < buf.length) this.rest = p ? buf.subarray(p) : buf;
}

const server = net.createServer((socket) => {
  open++;
  socket.on('data', onHead);
  socket.on('error', ignore);
  socket.on('close', onClose);
});
server.on('error', (err) => {
  process.stderr.write(`bare-net-server: ${err.message}\n`);
  process.exit(1);
});
server.listen({ host: opts.host, port: opts.port, backlog: 511 }, () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
installStats(() => ({ clients: open }));
