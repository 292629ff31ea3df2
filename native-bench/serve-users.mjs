#!/usr/bin/env node
// What an authenticated, subscribed user of `murmur serve` costs, object by object: starts
// serve with a secret and --heapsnapshot-signal, takes a heap snapshot, connects N users (each
// with its own token of one shared role, subscribed to one of N/100 rooms; every tenth also
// joins the room's presence), takes another, and prints the difference grouped by constructor
// per user, and the server's RSS per user. --anonymous: idle anonymous connections instead.
// The clients are plain sockets in this process (zero mask key). A measurement, not a test.
//
//   node native-bench/serve-users.mjs [-n 5000] [--rooms N/100] [--top 25] [--anonymous] [--settle 2] [--murmur DIR]
//
// --settle S: seconds between the last reply and the second snapshot (20 lets serve's 15 s
// sweep let go of the throttling state of users at rest).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { snapshot, printDiff } from './heap-snapshot.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i === -1 ? dflt : args[i + 1];
};
const ROOT = path.resolve(opt('--murmur', path.join(HERE, '..')));
const N = Number(opt('-n', 5000));
const ROOMS = Number(opt('--rooms', Math.max(1, Math.round(N / 100))));
const TOP = Number(opt('--top', 25));
const ANON = args.includes('--anonymous');
const SETTLE = Number(opt('--settle', 2));
const HOST = '127.0.0.1';
const SECRET = 'bench-secret-0123456789abcdef';
if (!(N >= 1 && N <= 19000)) throw new Error('-n: 1..19000 (a process holds at most 20,000 descriptors)');
const { mintToken } = await import(pathToFileURL(path.join(ROOT, 'dist/src/app/token.js')).href);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'murmur-users-'));
const srv = spawn(
  process.execPath,
  ['--heapsnapshot-signal=SIGUSR1', path.join(ROOT, 'dist/src/cli/main.js'), 'serve', '--port', '0', '--host', HOST, '--api-key', 'bench-key-0123456789', '--max-connections', '0', '--max-connections-per-address', '0'],
  { cwd: dir, stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, MURMUR_SECRET: SECRET } },
);
process.on('exit', () => {
  if (srv.exitCode === null) srv.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});
const port = await new Promise((resolve, reject) => {
  let text = '';
  const t = setTimeout(() => reject(new Error('serve did not print LISTENING')), 15000);
  srv.stdout.on('data', (d) => {
    text += d;
    const m = /LISTENING (\d+)/.exec(text);
    if (m !== null) {
      clearTimeout(t);
      resolve(Number(m[1]));
    }
  });
});
const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${srv.pid}/status`, 'utf8'))[1]) * 1024;

/** A client text frame with a zero mask key (the payload goes as it is). */
function frame(text) {
  const p = Buffer.from(text);
  const head = p.length < 126 ? Buffer.from([0x81, 0x80 | p.length, 0, 0, 0, 0]) : Buffer.from([0x81, 0xfe, p.length >> 8, p.length & 255, 0, 0, 0, 0]);
  return Buffer.concat([head, p]);
}

/** Opens user i: upgrade, then its commands right behind the head; resolves once every reply came. */
function user(i) {
  const room = `room:${i % ROOMS}`;
  const token = ANON ? '' : `?token=${mintToken(SECRET, { user: `user-${i}`, subscribe: ['room:*'], publish: ['room:*'], presence: ['room:*'], ttlSeconds: 86400 })}`;
  const cmds = ANON ? [] : [frame(`{"type":"subscribe","id":1,"topic":"${room}"}`)];
  if (!ANON && i % 10 === 0) cmds.push(frame(`{"type":"presence","action":"join","id":2,"topic":"${room}"}`));
  const want = 1 + cmds.length; // the welcome and one reply per command
  return new Promise((resolve, reject) => {
    const s = connect(port, HOST, () => {
      s.write(Buffer.concat([Buffer.from(`GET /ws${token} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`), ...cmds]));
    });
    let buf = Buffer.alloc(0);
    let headDone = false;
    let frames = 0;
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!headDone) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        if (!buf.subarray(0, 12).toString().endsWith('101')) return reject(new Error(buf.subarray(0, 200).toString()));
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
        }
        if (buf.length < at + len) return;
        const text = buf.subarray(at, at + len).toString();
        if (text.includes('"type":"error"')) return reject(new Error(text));
        buf = buf.subarray(at + len);
        if (++frames === want) resolve(s);
      }
    });
    s.on('error', reject);
  });
}

await sleep(1000);
const warm = [];
for (let i = 0; i < 50; i++) warm.push(await user(N + i));
await sleep(500);
const a = await snapshot(srv, dir);
const before = rss();
const held = [];
const t0 = Date.now();
for (let i = 0; i < N; i += 200) held.push(...(await Promise.all(Array.from({ length: Math.min(200, N - i) }, (_, k) => user(i + k)))));
const secs = (Date.now() - t0) / 1000;
await sleep(SETTLE * 1000);
const after = rss();
const b = await snapshot(srv, dir);
console.log(`${ANON ? 'anonymous idle connections' : `users with tokens in ${ROOMS} rooms, 10% in presence`}: ${N} in ${secs.toFixed(1)} s; server RSS ${((after - before) / N / 1024).toFixed(2)} KiB per user`);
printDiff(a, b, N, TOP);
for (const s of [...held, ...warm]) s.destroy();
srv.kill('SIGTERM');
process.exit(0);
