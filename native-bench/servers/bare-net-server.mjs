// Baseline: the memory floor for anything built on net.Socket (BENCH-CONTRACT, hold only).
//   node [--expose-gc] native-bench/servers/bare-net-server.mjs --port P [--host H] [--mode hold]
// Reads the upgrade request head (until \r\n\r\n, 8 KiB at most), answers 101 with a correct
// Sec-WebSocket-Accept, then keeps the net.Socket open and ignores whatever arrives.
import { createHash } from 'node:crypto';
import net from 'node:net';
import { installStats, parseArgs } from './common.mjs';

const opts = parseArgs(process.argv.slice(2), ['hold']);
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
  this.on('data', ignore);
  const m = /\r\nsec-websocket-key:[ \t]*([A-Za-z0-9+/=]{24})[ \t]*\r\n/i.exec(head.toString('latin1', 0, end + 2));
  if (!m) {
    this.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(m[1] + GUID).digest('base64');
  this.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
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
