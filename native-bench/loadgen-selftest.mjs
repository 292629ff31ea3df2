// Checks native-bench/build/loadgen against a deliberately awkward server: fragmented echoes
// with pings in between, oversized frames, close frames, bad handshakes, silence.
//   node native-bench/loadgen-selftest.mjs        (builds the loadgen first if needed)
// The behaviour is chosen by the request path (loadgen --path).
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const LOADGEN = path.join(HERE, 'build', 'loadgen');
const SRC = path.join(HERE, 'loadgen.c');
if (!fs.existsSync(LOADGEN) || fs.statSync(LOADGEN).mtimeMs < fs.statSync(SRC).mtimeMs) {
  fs.mkdirSync(path.dirname(LOADGEN), { recursive: true });
  execFileSync('gcc', ['-O2', '-Wall', '-o', LOADGEN, SRC], { stdio: 'inherit' });
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const frame = (op, payload, fin = true) => {
  const n = payload.length;
  const h = n < 126 ? Buffer.from([(fin ? 0x80 : 0) | op, n]) : n < 65536 ? Buffer.from([(fin ? 0x80 : 0) | op, 126, n >> 8, n & 255]) : Buffer.alloc(10);
  if (n >= 65536) (h[0] = (fin ? 0x80 : 0) | op), (h[1] = 127), h.writeBigUInt64BE(BigInt(n), 2);
  return Buffer.concat([h, payload]);
};
let pongErrors = 0;

/** Parses masked client frames; calls onFrame(op, fin, payload). Returns leftover bytes. */
function parse(buf, onFrame) {
  for (;;) {
    if (buf.length < 2) return buf;
    let len = buf[1] & 127, off = 2;
    if (!(buf[1] & 128)) throw new Error('client frame not masked');
    if (len === 126) {
      if (buf.length < 4) return buf;
      (len = buf.readUInt16BE(2)), (off = 4);
    } else if (len === 127) {
      if (buf.length < 10) return buf;
      (len = Number(buf.readBigUInt64BE(2))), (off = 10);
    }
    if (buf.length < off + 4 + len) return buf;
    const mask = buf.subarray(off, off + 4);
    const p = Buffer.from(buf.subarray(off + 4, off + 4 + len));
    for (let i = 0; i < p.length; i++) p[i] ^= mask[i & 3];
    onFrame(buf[0] & 15, !!(buf[0] & 128), p);
    buf = buf.subarray(off + 4 + len);
  }
}

const server = net.createServer((sock) => {
  let head = Buffer.alloc(0);
  sock.on('error', () => {});
  const onHead = (d) => {
    head = Buffer.concat([head, d]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    sock.off('data', onHead);
    const text = head.toString('latin1', 0, end);
    const rest = head.subarray(end + 4);
    const route = /^GET (\S+)/.exec(text)[1];
    const key = /sec-websocket-key: *(\S+)/i.exec(text)[1];
    let accept = createHash('sha1').update(key + GUID).digest('base64');
    if (route === '/silent') return;
    if (route === '/huge-head') return sock.write(`HTTP/1.1 101 OK\r\nX: ${'a'.repeat(10000)}\r\n`);
    if (route === '/status') return sock.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
    if (route === '/bad-accept') accept = 'A' + accept.slice(1);
    // the 101 head arrives in pieces, and the first frame rides with its end
    sock.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n');
    setTimeout(() => {
      let tail = `Connection: Upgrade\r\nsec-websocket-accept:  ${accept} \r\n\r\n`;
      sock.write(route === '/ping' ? Buffer.concat([Buffer.from(tail), frame(9, Buffer.from('hello'))]) : tail);
      if (route === '/masked') sock.write(Buffer.from([0x82, 0x81, 1, 2, 3, 4, 5]));
      if (route === '/oversize') {
        sock.write(frame(2, Buffer.alloc(1 << 20, 7))); // 1 MiB, client --size is smaller
        sock.write(frame(9, Buffer.from('after')));
      }
      if (route === '/close') setTimeout(() => sock.write(frame(8, Buffer.from([0x03, 0xe8]))), 50);
    }, 5);
    let buf = rest;
    let pingSeq = 0;
    const pinger = route === '/echo-frag' ? setInterval(() => sock.write(frame(9, Buffer.from(`p${pingSeq++}`))), 20) : null;
    const expectPong = [];
    if (pinger) {
      const orig = sock.write.bind(sock);
      sock.write = (b, ...a) => {
        if ((b[0] & 15) === 9) expectPong.push(b.subarray(2).toString());
        return orig(b, ...a);
      };
    }
    if (route === '/ping') expectPong.push('hello');
    if (route === '/oversize') expectPong.push('after');
    sock.on('close', () => pinger && clearInterval(pinger));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      try {
        buf = parse(buf, (op, fin, p) => {
          if (op === 10) {
            const want = expectPong.shift();
            if (want !== p.toString()) pongErrors++, console.log(`${route}: pong ${p} for ping ${want}`);
          } else if (op === 8) sock.end(frame(8, p));
          else if ((op === 1 || op === 2) && route === '/echo-frag') {
            // echo in three fragments, a ping between the first two
            const a = p.subarray(0, p.length >> 2), b = p.subarray(p.length >> 2, p.length >> 1), c = p.subarray(p.length >> 1);
            sock.write(frame(op, a, false));
            sock.write(frame(9, Buffer.from(`f${pingSeq++}`)));
            sock.write(frame(0, b, false));
            sock.write(frame(0, c, true));
          }
        });
      } catch {
        sock.destroy();
      }
    });
  };
  sock.on('data', onHead);
});

await new Promise((r) => server.listen(0, '127.0.0.1', r));
const port = server.address().port;

// the loadgen runs asynchronously: the server under test lives in this process
function run(args) {
  return new Promise((resolve, reject) => {
    const c = spawn(LOADGEN, ['--port', String(port), '--quiet', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => c.kill('SIGKILL'), 30000);
    c.on('exit', () => {
      clearTimeout(t);
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`no JSON from loadgen ${args.join(' ')}\n${err}`));
      }
    });
  });
}


const checks = [
  ['fragmented echo with pings, verified (binary)', ['--path', '/echo-frag', '--scenario', 'echo', '-c', '4', '--window', '4', '--size', '1000', '--duration', '1', '--warmup', '0.2', '--verify'],
    (r) => r.connections === 4 && r.round_trips > 100 && r.verify_errors === 0 && r.pongs > 10 && r.protocol_errors === 0 && r.dropped === 0],
  ['fragmented echo, text', ['--path', '/echo-frag', '--scenario', 'echo', '-c', '2', '--size', '300', '--duration', '0.5', '--warmup', '0', '--verify', '--text'],
    (r) => r.round_trips > 10 && r.verify_errors === 0],
  ['ping in the handshake packet', ['--path', '/ping', '-c', '3', '--duration', '0.3'], (r) => r.connections === 3 && r.pongs === 3],
  ['1 MiB frame skipped by length, stream stays in sync', ['--path', '/oversize', '-c', '2', '--size', '64', '--duration', '0.5'],
    (r) => r.connections === 2 && r.pongs === 2 && r.protocol_errors === 0],
  ['masked server frame is a protocol error', ['--path', '/masked', '-c', '2', '--duration', '0.3'], (r) => r.protocol_errors === 2],
  ['server close frame answered', ['--path', '/close', '-c', '5', '--duration', '0.5'], (r) => r.closed_by_server === 5 && r.open_at_end === 0],
  ['wrong Sec-WebSocket-Accept fails', ['--path', '/bad-accept', '-c', '3', '--duration', '0.2'], (r) => r.failed === 3 && r.fail_reasons.accept === 3],
  ['400 fails', ['--path', '/status', '-c', '3', '--duration', '0.2'], (r) => r.failed === 3 && r.fail_reasons.status === 3],
  ['endless head fails', ['--path', '/huge-head', '-c', '2', '--duration', '0.2'], (r) => r.failed === 2 && r.fail_reasons.response_too_big === 2],
  ['silent server times out', ['--path', '/silent', '-c', '3', '--timeout', '1', '--duration', '0.2'], (r) => r.failed === 3 && r.fail_reasons.timeout === 3],
  ['two workers sum up', ['--path', '/ping', '-c', '40', '--workers', '2', '--src-ips', '3', '--duration', '0.3'], (r) => r.connections === 40 && r.workers === 2 && r.pongs === 40],
];

let failed = 0;
for (const [name, args, ok] of checks) {
  let r;
  try {
    r = await run(args);
  } catch (e) {
    r = { error: e.message };
  }
  const pass = !r.error && ok(r);
  if (!pass) failed++;
  console.log(`${pass ? 'ok  ' : 'FAIL'} ${name}${pass ? '' : `\n     ${JSON.stringify(r)}`}`);
}
if (pongErrors) {
  failed++;
  console.log(`FAIL ${pongErrors} pong(s) did not carry their ping's payload`);
}
server.close();
console.log(failed ? `${failed} check(s) failed` : 'all loadgen checks passed');
process.exit(failed ? 1 : 0);
