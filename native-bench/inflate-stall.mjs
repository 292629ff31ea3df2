#!/usr/bin/env node
// How long one large compressed message (permessage-deflate) stalls the server's event loop,
// by inflation mode: 'sync' (one zlib call per message, as before bounded inflation), 'chunked'
// (256 KiB of output per turn of the loop) and 'thread' (zlib on the libuv threadpool, 256 KiB
// per round trip). Each mode runs in a fresh server process (murmur's Server from dist/, deflate
// on, maxPayload 16 MiB) that answers a large message with its length and echoes a small one,
// and reports the largest event-loop delay (perf_hooks.monitorEventLoopDelay, 1 ms resolution)
// and its CPU per phase. The clients are raw sockets in this process (prebuilt masked frames),
// each in a closed loop (send, wait for the answer, send again):
//   - bomb:  16 MiB - 1 of zeros, 16 KiB compressed (the most output per input byte);
//   - json:  16 MiB - 1 of JSON text, about 2 MiB compressed (well-formed and large);
//   - small: 200-byte JSON messages, compressed, 64 in flight per connection (the common case).
// First, the engines alone in this process (no network): per message, wall and CPU time and the
// longest turn of the event loop while it inflates (a setImmediate chain timing each turn; the
// median over the messages is the figure, the maximum says how much the loaded machine adds).
// Usage: node native-bench/inflate-stall.mjs [--modes sync,chunked,thread] [--seconds 3] [--conns 1,4] [--messages 10] [--engines-only] [--slice bytes]
// Small echo before and after: ... --modes base --root <an older build> --no-engines --small-only, then --modes chunked.
// (npm run build first).
import { fork } from 'node:child_process';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { deflateRawSync, constants } from 'node:zlib';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? dflt : argv[i + 1];
};
// --root: another build of murmur (say the commit before bounded inflation), for a before/after.
const ROOT = opt('root', '') || path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MiB = 1024 * 1024;

if (opt('role', 'main') === 'server') await server(opt('mode', 'thread'));
else await main();

async function server(mode) {
  const { Server } = await import(pathToFileURL(path.join(ROOT, 'dist/src/index.js')).href);
  // 'base': a build without bounded inflation (--root), as it is.
  if (mode !== 'base') {
    const { inflateSettings } = await import(pathToFileURL(path.join(ROOT, 'dist/src/server/bounded-inflate.js')).href);
    inflateSettings.mode = mode;
    if (opt('slice', '') !== '') inflateSettings.sliceBytes = Number(opt('slice', ''));
  }
  const s = new Server({
    perMessageDeflate: true,
    limits: { maxPayload: 16 * MiB, idleTimeoutMs: 600_000, maxBackpressure: 64 * MiB },
    handlers: {
      message(conn, data, isBinary) {
        if (data.length > 64 * 1024) conn.send(String(data.length));
        else conn.send(data, isBinary);
      },
    },
  });
  const { port } = await s.listen(0, '127.0.0.1');
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  let cpu = process.cpuUsage();
  process.on('message', (m) => {
    if (m === 'reset') {
      h.reset();
      cpu = process.cpuUsage();
      process.send({ reset: true });
    } else if (m === 'report') {
      const c = process.cpuUsage(cpu);
      process.send({ maxMs: h.max / 1e6, p50Ms: h.percentile(50) / 1e6, p99Ms: h.percentile(99) / 1e6, cpuMs: (c.user + c.system) / 1000 });
    } else if (m === 'exit') process.exit(0);
  });
  process.send({ port });
}

function request(child, msg) {
  return new Promise((resolve) => {
    child.once('message', resolve);
    child.send(msg);
  });
}

/** Compressed payload as a client sends it (RFC 7692 7.2.1: the sync flush tail removed). */
function deflated(data) {
  const out = deflateRawSync(data, { finishFlush: constants.Z_SYNC_FLUSH, level: 6 });
  return out.subarray(0, out.length - 4);
}

/** A masked client frame, FIN set, RSV1 when compressed. */
function frame(opcode, payload, compressed) {
  const len = payload.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const out = Buffer.allocUnsafe(2 + ext + 4 + len);
  out[0] = 0x80 | (compressed ? 0x40 : 0) | opcode;
  out[1] = 0x80 | (ext === 0 ? len : ext === 2 ? 126 : 127);
  if (ext === 2) out.writeUInt16BE(len, 2);
  else if (ext === 8) out.writeBigUInt64BE(BigInt(len), 2);
  const key = randomBytes(4);
  key.copy(out, 2 + ext);
  const o = 6 + ext;
  for (let i = 0; i < len; i++) out[o + i] = payload[i] ^ key[i & 3];
  return out;
}

/** One client connection: upgrade, then count the server's frames (answers). */
async function connect(port) {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.setNoDelay(true);
  sock.write(
    'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n`,
  );
  const c = { sock, frames: 0, onFrame: null };
  let buf = Buffer.alloc(0);
  let head = false;
  sock.on('data', (d) => {
    buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
    if (!head) {
      const i = buf.indexOf('\r\n\r\n');
      if (i === -1) return;
      head = true;
      buf = buf.subarray(i + 4);
    }
    // The server's answers are short (a length, a small echo): 7-bit payload lengths only.
    while (buf.length >= 2) {
      const len = buf[1] & 0x7f;
      if (len >= 126) throw new Error('unexpected long frame from the server');
      if (buf.length < 2 + len) return;
      buf = buf.subarray(2 + len);
      c.frames++;
      c.onFrame?.();
    }
  });
  await new Promise((r) => setTimeout(r, 50));
  return c;
}

/** Each connection keeps `inFlight` copies of `bytes` outstanding for `seconds`; returns answers per second. */
async function load(conns, bytes, inFlight, seconds) {
  let answers = 0;
  const until = Date.now() + seconds * 1000;
  await Promise.all(
    conns.map(
      (c) =>
        new Promise((resolve) => {
          let outstanding = 0;
          const send = () => {
            while (outstanding < inFlight && Date.now() < until) {
              outstanding++;
              c.sock.write(bytes);
            }
            if (outstanding === 0) {
              c.onFrame = null;
              resolve();
            }
          };
          c.onFrame = () => {
            outstanding--;
            answers++;
            send();
          };
          send();
        }),
    ),
  );
  return answers / seconds;
}

/** The payload of a client frame built by frame() (unmasked again). */
function payloadOf(f) {
  const len7 = f[1] & 0x7f;
  const at = len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
  const out = Buffer.from(f.subarray(at + 4));
  for (let i = 0; i < out.length; i++) out[i] ^= f[at + (i & 3)];
  return out;
}

/** Each engine alone: `n` messages of each input one after the other, timing every turn of the loop meanwhile. */
async function engines(modes, frames, n) {
  const { inflateSettings, InflateJob, submitInflate } = await import(pathToFileURL(path.join(ROOT, 'dist/src/server/bounded-inflate.js')).href);
  const { inflatePayload } = await import(pathToFileURL(path.join(ROOT, 'dist/src/server/deflate.js')).href);
  if (opt('slice', '') !== '') inflateSettings.sliceBytes = Number(opt('slice', ''));
  console.log('\n| mode | message | wall ms per message | CPU ms per message | longest turn per message, median / max ms |');
  console.log('|---|---|---:|---:|---|');
  for (const [name, f] of Object.entries(frames)) {
    const input = payloadOf(f);
    for (const mode of modes) {
      inflateSettings.mode = mode;
      const inflate = () =>
        new Promise((resolve, reject) => {
          const done = (r) => (Buffer.isBuffer(r) ? resolve(r) : reject(r));
          // What a connection does: one call up to the sync bound, else a bounded job.
          const out = inflatePayload(input, 16 * MiB, undefined, mode === 'sync' ? Infinity : inflateSettings.sliceBytes);
          if (out === null) submitInflate(new InflateJob(input, 16 * MiB, undefined, { inflated: done }));
          else done(out);
        });
      // Wall and CPU time with nothing else running (a turn-timing chain would spin the loop
      // while the threadpool works, and count as CPU).
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await inflate();
      const wall = performance.now() - t0;
      const c = process.cpuUsage(cpu0);
      const longest = [];
      for (let i = 0; i < n; i++) {
        let last = performance.now();
        let worst = 0;
        let on = true;
        const tick = () => {
          const now = performance.now();
          worst = Math.max(worst, now - last);
          last = now;
          if (on) setImmediate(tick);
        };
        await new Promise((r) => setImmediate(r));
        last = performance.now();
        setImmediate(tick);
        await inflate();
        // The turn that delivered the message ends here.
        worst = Math.max(worst, performance.now() - last);
        on = false;
        longest.push(worst);
      }
      longest.sort((a, b) => a - b);
      console.log(`| ${mode} | ${name} | ${(wall / n).toFixed(1)} | ${((c.user + c.system) / 1000 / n).toFixed(1)} | ${longest[n >> 1].toFixed(1)} / ${longest[n - 1].toFixed(1)} |`);
    }
  }
}

async function main() {
  const modes = opt('modes', 'sync,chunked,thread').split(',');
  const seconds = Number(opt('seconds', 3));
  const connCounts = opt('conns', '1,4').split(',').map(Number);
  const zeros = frame(2, deflated(Buffer.alloc(16 * MiB - 1)), true);
  const row = (i) => `{"id":${i},"user":"user${i % 977}","text":"message number ${i} of the large export","ok":${i % 3 === 0}},`;
  let text = '[';
  for (let i = 0; text.length < 16 * MiB - 200; i++) text += row(i);
  text = (text.slice(0, -1) + ']').padEnd(16 * MiB - 1, ' ');
  const json = frame(1, deflated(Buffer.from(text)), true);
  const small = frame(1, deflated(Buffer.from(JSON.stringify({ type: 'message', topic: 'room:general', data: { name: 'alice', text: 'the deploy went fine, dashboards are green '.repeat(3) } }))), true);
  console.log(`node ${process.version}, ${new Date().toISOString()}; bomb frame ${(zeros.length / 1024).toFixed(0)} KiB, json frame ${(json.length / MiB).toFixed(2)} MiB, small frame ${small.length} B; ${seconds} s per phase`);
  if (!argv.includes('--no-engines')) await engines(modes, { bomb: zeros, json }, Number(opt('messages', 10)));
  if (argv.includes('--engines-only')) return;
  console.log('\n| mode | phase | connections | messages/s | inflated MiB/s | server CPU ms per message | loop delay p50 / p99 / max, ms |');
  console.log('|---|---|---:|---:|---:|---:|---|');
  for (const mode of modes) {
    const child = fork(fileURLToPath(import.meta.url), ['--role', 'server', '--mode', mode, '--slice', opt('slice', ''), '--root', ROOT], { stdio: 'inherit' });
    const { port } = await new Promise((r) => child.once('message', r));
    const phases = [];
    if (!argv.includes('--small-only')) for (const n of connCounts) phases.push(['bomb', n, zeros, 1, 16 * MiB], ['json', n, json, 1, 16 * MiB]);
    phases.push(['small', 4, small, 64, 0]);
    for (const [phase, n, bytes, inFlight, inflated] of phases) {
      const conns = [];
      for (let i = 0; i < n; i++) conns.push(await connect(port));
      await request(child, 'reset');
      const rate = await load(conns, bytes, inFlight, seconds);
      const r = await request(child, 'report');
      for (const c of conns) c.sock.destroy();
      const cpuPer = r.cpuMs / Math.max(1, rate * seconds);
      console.log(
        `| ${mode} | ${phase} | ${n} | ${rate.toFixed(phase === 'small' ? 0 : 1)} | ${inflated === 0 ? '-' : ((rate * inflated) / MiB).toFixed(0)} | ${cpuPer.toFixed(phase === 'small' ? 3 : 1)} | ${r.p50Ms.toFixed(1)} / ${r.p99Ms.toFixed(1)} / ${r.maxMs.toFixed(1)} |`,
      );
    }
    child.send('exit');
    await new Promise((r) => child.once('exit', r));
  }
}
