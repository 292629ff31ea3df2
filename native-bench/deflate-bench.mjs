#!/usr/bin/env node
// permessage-deflate, murmur against ws and uWebSockets.js with compression on (ws's defaults;
// uWS's shared compressor), each in a fresh process started with --expose-gc:
//   - RSS per idle connection, with deflate negotiated and without (two server processes);
//   - RSS per connection once every connection has sent and received one 1 KiB JSON message
//     (compressed when negotiated);
//   - server CPU per echo of a compressed 1 KiB JSON message (utime + stime from /proc);
//   - deliveries per second of a broadcast to every connection (all negotiated deflate): the
//     servers' `pub M S` (M binary messages of S = 1,024 bytes) from one of them. ws compresses
//     each send (threshold 1 KiB); uWS's rival server publishes without asking compression.
// The clients are raw sockets in this process (one upgrade, prebuilt masked frames), so what
// they cost is not in the server's figures.
//   node native-bench/deflate-bench.mjs [--servers murmur,ws,uws] [--connections 2000] [--echoes 20000] [--broadcast 20]
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateRawSync, constants } from 'node:zlib';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = Object.fromEntries(
  process.argv
    .slice(2)
    .join(' ')
    .split('--')
    .filter(Boolean)
    .map((a) => a.trim().split(/\s+/)),
);
const SERVERS = (args.servers ?? 'murmur,ws,uws').split(',');
const N = Number(args.connections ?? 2000);
const ECHOES = Number(args.echoes ?? 20000);

const ENTRIES = {
  murmur: (port, mode) => ['dist/src/cli/main.js', 'echo', '--port', String(port), '--host', '127.0.0.1', '--ping-interval', '0', '--idle-timeout', '0', '--mode', mode],
  ws: (port, mode) => ['native-bench/servers/ws-server.mjs', '--port', String(port), '--host', '127.0.0.1', '--mode', mode],
  uws: (port, mode) => ['native-bench/servers/uws-server.mjs', '--port', String(port), '--host', '127.0.0.1', '--mode', mode],
};
const BCAST = Number(args.broadcast ?? 20);

/** A 1 KiB JSON chat message (the text padded to make the whole exactly 1,024 bytes). */
const MSG = (() => {
  const m = { type: 'message', topic: 'room:general', position: { epoch: 'k3j2', offset: 41234 }, data: { name: 'alice', text: '', ts: 1765000000000 } };
  const words = 'the deploy went fine and the dashboards look green; ping me if you see anything odd in the metrics '.repeat(20);
  m.data.text = words.slice(0, 1024 - JSON.stringify(m).length);
  return Buffer.from(JSON.stringify(m));
})();
const Z = (() => {
  const out = deflateRawSync(MSG, { finishFlush: constants.Z_SYNC_FLUSH });
  return out.subarray(0, out.length - 4);
})();
const KEY = Buffer.from([0x11, 0x22, 0x33, 0x44]);

function frame(payload, rsv1) {
  const ext = payload.length < 126 ? 0 : 2;
  const out = Buffer.alloc(2 + ext + 4 + payload.length);
  out[0] = 0x81 | (rsv1 ? 0x40 : 0);
  out[1] = 0x80 | (ext === 0 ? payload.length : 126);
  if (ext === 2) out.writeUInt16BE(payload.length, 2);
  KEY.copy(out, 2 + ext);
  for (let i = 0; i < payload.length; i++) out[6 + ext + i] = payload[i] ^ KEY[i & 3];
  return out;
}
const PLAIN_FRAME = frame(MSG, false);
const Z_FRAME = frame(Z, true);

function start(name, deflate, mode = 'echo') {
  return new Promise((resolve, reject) => {
    const [entry, ...rest] = ENTRIES[name](0, mode);
    const child = spawn(process.execPath, ['--expose-gc', path.join(ROOT, entry), ...rest], {
      cwd: ROOT,
      env: { ...process.env, MURMUR_BENCH_DEFLATE: deflate ? '1' : '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /LISTENING (\d+)/.exec(out);
      if (m) resolve({ child, port: Number(m[1]), lines: () => out });
    });
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => reject(new Error(`${name} exited ${code}: ${out}`)));
    setTimeout(() => reject(new Error(`${name}: no LISTENING in 15 s: ${out}`)), 15_000).unref();
  });
}

async function stats(s) {
  const before = (s.lines().match(/STATS /g) ?? []).length;
  // Signals sent in the first moments of a loaded machine were seen to go unanswered: ask again;
  // a server that never answers (uWS under load) is read from /proc instead (RSS, no GC first).
  for (let i = 0; i < 750; i++) {
    if (i % 150 === 0) s.child.kill('SIGUSR2');
    const all = s.lines().split('\n').filter((l) => l.startsWith('STATS '));
    if (all.length > before) return JSON.parse(all[before].slice(6));
    await new Promise((r) => setTimeout(r, 20));
  }
  if (s.child.exitCode !== null || s.child.signalCode !== null) throw new Error(`server exited (${s.child.exitCode ?? s.child.signalCode}): ${s.lines().slice(-600)}`);
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${s.child.pid}/status`, 'utf8'))[1]) * 1024;
  return { rss, heapUsed: NaN };
}

function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** One raw client: upgrade, then frames in, whole frames counted out. */
class Client {
  constructor(port, offer) {
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.setNoDelay(true);
    this.buf = Buffer.alloc(0);
    this.open = false;
    this.deflate = false;
    this.waiters = [];
    this.frames = 0;
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
      this.buf = this.buf.subarray(at + len);
      this.frames++;
      const w = this.waiters.shift();
      if (w) w();
    }
  }

  echo() {
    const p = new Promise((r) => this.waiters.push(r));
    this.sock.write(this.deflate ? Z_FRAME : PLAIN_FRAME);
    return p;
  }
}

async function openMany(port, n, offer) {
  const clients = [];
  for (let i = 0; i < n; i += 200) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 200); j++) batch.push(new Client(port, offer));
    await Promise.all(batch.map((c) => c.ready));
    clients.push(...batch);
  }
  return clients;
}

const kb = (bytes) => `${(bytes / 1024).toFixed(2)} KB`;

async function measure(name) {
  const row = { server: name };
  for (const offer of [false, true]) {
    const s = await start(name, true);
    try {
      const st0 = await stats(s);
      const base = st0.rss;
      const clients = await openMany(s.port, N, offer);
      const negotiated = clients.filter((c) => c.deflate).length;
      await new Promise((r) => setTimeout(r, 500));
      const st1 = await stats(s);
      const idle = st1.rss;
      await Promise.all(clients.map((c) => c.echo()));
      await new Promise((r) => setTimeout(r, 500));
      const after = (await stats(s)).rss;
      const key = offer ? 'deflate' : 'plain';
      row[`${key}Negotiated`] = negotiated;
      row[`${key}Idle`] = (idle - base) / N;
      row[`${key}IdleHeap`] = (st1.heapUsed - st0.heapUsed) / N;
      row[`${key}AfterOne`] = (after - base) / N;
      // CPU per echo: 50 connections, round trips in sequence on each.
      const users = clients.slice(0, 50);
      const per = Math.ceil(ECHOES / users.length);
      const cpu0 = cpuSeconds(s.child.pid);
      const t0 = process.hrtime.bigint();
      await Promise.all(users.map(async (c) => {
        for (let i = 0; i < per; i++) await c.echo();
      }));
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      row[`${key}CpuUs`] = ((cpuSeconds(s.child.pid) - cpu0) / (per * users.length)) * 1e6;
      row[`${key}EchoPerS`] = (per * users.length) / wall;
      for (const c of clients) c.sock.destroy();
    } finally {
      s.child.kill('SIGKILL');
    }
  }
  // Broadcast: every connection (all offered deflate) in one topic; `pub BCAST 1024` from one of
  // them; deliveries/s until every connection has every message.
  const s = await start(name, true, 'broadcast');
  try {
    const clients = await openMany(s.port, N, true);
    const cpu0 = cpuSeconds(s.child.pid);
    const t0 = process.hrtime.bigint();
    clients[0].sock.write(frame(Buffer.from(`pub ${BCAST} 1024`), false));
    const want = N * BCAST;
    for (let i = 0; i < 6000 && clients.reduce((n, c) => n + c.frames, 0) < want; i++) await new Promise((r) => setTimeout(r, 10));
    const got = clients.reduce((n, c) => n + c.frames, 0);
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    row.bcastPerS = got / wall;
    row.bcastCpuUs = ((cpuSeconds(s.child.pid) - cpu0) / Math.max(1, got)) * 1e6;
    row.bcastComplete = got === want;
    for (const c of clients) c.sock.destroy();
  } finally {
    s.child.kill('SIGKILL');
  }
  return row;
}

console.log(`permessage-deflate: ${N} connections, ${ECHOES} echoes of a ${MSG.length}-byte JSON message (${Z.length} bytes compressed); node ${process.version}`);
console.log('| server | deflate negotiated | RSS per idle connection, without / with deflate | JS heap per idle connection, without / with | RSS per connection after one message, without / with | server CPU per echo, plain / compressed | echoes/s, plain / compressed | compressed broadcast: deliveries/s, server CPU per delivery |');
console.log('|---|---|---|---|---|---|---|---|');
for (const name of SERVERS) {
  try {
    const r = await measure(name);
    console.log(
      `| ${r.server} | ${r.deflateNegotiated}/${N} | ${kb(r.plainIdle)} / ${kb(r.deflateIdle)} (${(((r.deflateIdle - r.plainIdle) / r.plainIdle) * 100).toFixed(1)}%) | ${kb(r.plainIdleHeap)} / ${kb(r.deflateIdleHeap)} | ${kb(r.plainAfterOne)} / ${kb(r.deflateAfterOne)} | ${r.plainCpuUs.toFixed(1)} / ${r.deflateCpuUs.toFixed(1)} µs | ${r.plainEchoPerS.toFixed(0)} / ${r.deflateEchoPerS.toFixed(0)} | ${r.bcastPerS.toFixed(0)}${r.bcastComplete ? '' : ' (incomplete)'}, ${r.bcastCpuUs.toFixed(2)} µs |`,
    );
  } catch (err) {
    console.log(`| ${name} | failed: ${err.stack} |`);
  }
}
