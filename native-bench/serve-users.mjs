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
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { snapshot, printDiff } from './heap-snapshot.mjs';
import { openServeClient } from './serve-client.mjs';

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

/** Opens user i: a token (unless anonymous), its subscription and, for every tenth, a presence join; resolves once every reply came. */
function user(i) {
  const room = `room:${i % ROOMS}`;
  const token = ANON ? '' : `?token=${mintToken(SECRET, { user: `user-${i}`, subscribe: ['room:*'], publish: ['room:*'], presence: ['room:*'], ttlSeconds: 86400 })}`;
  const commands = ANON ? [] : [`{"type":"subscribe","id":1,"topic":"${room}"}`];
  if (!ANON && i % 10 === 0) commands.push(`{"type":"presence","action":"join","id":2,"topic":"${room}"}`);
  return openServeClient({ port, host: HOST, path: `/ws${token}`, commands });
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
