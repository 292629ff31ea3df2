#!/usr/bin/env node
// Ping flood against a real server process: N clients upgrade, then send pings (125-byte
// payload) as fast as the socket takes them and never read a byte, reconnecting whenever the
// server ends the connection, for D seconds. Prints the
// server's RSS (VmRSS from /proc) at baseline, its peak during the flood, and after the
// clients leave, plus how the server ended each flooder.
//
//   npm run build && node native-bench/ping-flood.mjs [echo|serve] [clients=4] [seconds=12]
//
// Bounded: at most `seconds` of flooding and 2 GB written per client; loopback only.
// Linux only (/proc). Measured 2026-12-07 on the 2-vCPU build machine (shared, load ~12),
// 4 clients, 12 s; each connection is closed 1008 `ping flood`, then reset after closeTimeoutMs:
//   murmur echo:  baseline 56.3 MiB, peak 73.5 MiB (+17.1), 72.0 MiB after; a second run +19.5
//   murmur serve: baseline 56.2 MiB, peak 69.4 MiB (+13.2), 69.0 MiB after; a second run +21.6
// (before the control budget: 56 MiB to 2.1 GiB in 15 s, and it stayed there)
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const kind = process.argv[2] ?? 'echo';
const clients = Number(process.argv[3] ?? 4);
const seconds = Number(process.argv[4] ?? 12);
const main = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const args = kind === 'serve' ? ['serve', '--port', '0'] : ['echo', '--port', '0'];
const child = spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
child.stdout.on('data', (d) => (out += d));
const t0 = Date.now();
while (!/LISTENING (\d+)/.test(out)) {
  if (Date.now() - t0 > 15_000 || child.exitCode !== null) throw new Error(`no LISTENING: ${out}`);
  await new Promise((r) => setTimeout(r, 50));
}
const port = Number(/LISTENING (\d+)/.exec(out)[1]);
const path = kind === 'serve' ? '/ws' : '/';

const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) / 1024;
await new Promise((r) => setTimeout(r, 1000));
const baseline = rssMiB();

function pingFrame() {
  const payload = Buffer.alloc(125, 0x70);
  const out = Buffer.alloc(2 + 4 + 125);
  out[0] = 0x89;
  out[1] = 0x80 | 125;
  const key = randomBytes(4);
  key.copy(out, 2);
  for (let i = 0; i < 125; i++) out[6 + i] = payload[i] ^ key[i & 3];
  return out;
}
const batch = Buffer.concat(Array.from({ length: 2000 }, pingFrame));

/** One connection: upgrade, then pings until the deadline or until the server ends it. */
async function floodOnce(deadline) {
  const s = connect(port, '127.0.0.1');
  let ended = 'deadline';
  s.on('error', (e) => (ended = e.code));
  s.on('close', () => (ended = ended === 'deadline' ? 'closed' : ended));
  await once(s, 'connect');
  s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await Promise.race([once(s, 'data'), once(s, 'close')]);
  s.pause(); // never read again
  let written = 0;
  while (Date.now() < deadline && !s.destroyed && written < 2e9) {
    written += batch.length;
    if (!s.write(batch)) await Promise.race([once(s, 'drain'), new Promise((r) => setTimeout(r, 100))]);
  }
  s.destroy();
  return { written, ended };
}

/** A flooder reconnects whenever the server ends its connection, until the deadline. */
async function flooder(i) {
  const deadline = Date.now() + seconds * 1000;
  let written = 0;
  const endings = {};
  let connections = 0;
  while (Date.now() < deadline && connections < 10_000) {
    connections++;
    const r = await floodOnce(deadline).catch((e) => ({ written: 0, ended: e.code ?? String(e) }));
    written += r.written;
    endings[r.ended] = (endings[r.ended] ?? 0) + 1;
  }
  return { client: i, connections, writtenMiB: Math.round(written / 1048576), endings };
}

let peak = baseline;
const sampler = setInterval(() => (peak = Math.max(peak, rssMiB())), 250);
const results = await Promise.all(Array.from({ length: clients }, (_, i) => flooder(i)));
await new Promise((r) => setTimeout(r, 2000));
clearInterval(sampler);
const after = rssMiB();
console.log(JSON.stringify({ server: kind, clients, seconds, baselineMiB: +baseline.toFixed(1), peakMiB: +peak.toFixed(1), growthMiB: +(peak - baseline).toFixed(1), afterMiB: +after.toFixed(1), results }));
child.kill('SIGTERM');
