#!/usr/bin/env node
// What a connection holds on the JS heap, object by object: starts `murmur echo` with
// --heapsnapshot-signal, takes a heap snapshot, opens N idle connections with the load
// generator, takes another, and prints the difference grouped by constructor (self sizes),
// per connection. Needs `npm run build` (dist/) and the load generator (built on first use).
//
//   node native-bench/heap-diff.mjs [--connections 19000] [--top 20] [--serve] [--js-clients | --offer-deflate]
// --js-clients: the connections are raw JS clients in this process (raw-ws-client.mjs) instead of
// the load generator; --offer-deflate: the same clients, each offering `permessage-deflate;
// client_max_window_bits` as browsers do (two runs, with and without, show what a connection
// that negotiated compression holds more).
//   MURMUR_TRANSPORT=socket node native-bench/heap-diff.mjs
//
// Snapshots go to a temporary folder that is removed at the end.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLoadgen, LOADGEN } from './loadgen-build.mjs';
import { snapshot, printDiff } from './heap-snapshot.mjs';
import { openMany } from './raw-ws-client.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(HERE);
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const N = opt('--connections', 19000);
const TOP = opt('--top', 20);
// --serve: `murmur serve` (anonymous idle WebSockets on /ws) instead of `murmur echo`
const SERVE = args.includes('--serve');
const OFFER = args.includes('--offer-deflate');
const JS_CLIENTS = OFFER || args.includes('--js-clients');
if (!Number.isInteger(N) || N < 1 || N > 19000) throw new Error('--connections: 1..19000 (one server process)');
const entry = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
if (!fs.existsSync(entry)) throw new Error('dist/src/cli/main.js missing: run npm run build');
if (!JS_CLIENTS) buildLoadgen((line) => console.error(line));
const loadgen = LOADGEN;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'murmur-heap-'));
const children = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Waits for a line matching re on a child's output, up to ms. */
function waitFor(stream, re, ms, what) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    stream.on('data', (d) => {
      buf += d;
      const m = re.exec(buf);
      if (m) {
        clearTimeout(t);
        resolve(m);
      }
    });
  });
}

const cmd = SERVE ? ['serve', '--port', '0', '--host', '127.0.0.1', '--api-key', 'bench-key-0123456789', '--max-connections', '0', '--max-connections-per-address', '0'] : ['echo', '--port', '0', '--host', '127.0.0.1'];
const srv = spawn(process.execPath, ['--heapsnapshot-signal=SIGUSR1', entry, ...cmd], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
children.push(srv);
const port = Number((await waitFor(srv.stdout, /LISTENING (\d+)/, 10000, 'LISTENING'))[1]);
await sleep(1500);

const a = await snapshot(srv, dir);
if (JS_CLIENTS) {
  if (SERVE) throw new Error('--js-clients: murmur echo only');
  const clients = await openMany(port, N, OFFER);
  await sleep(2000);
  const b = await snapshot(srv, dir);
  console.log(`${clients.filter((c) => c.deflate).length} of ${N} connections negotiated permessage-deflate`);
  printDiff(a, b, N, TOP);
  srv.kill('SIGTERM');
  process.exit(0);
}
const lg = spawn(loadgen, ['--host', '127.0.0.1', '--port', String(port), '--path', SERVE ? '/ws' : '/', '--scenario', 'hold', '-c', String(N), '--src-ips', String(Math.ceil(N / 20000) + 1), '--duration', '0', '--quiet', '--stdin-eof-stop'], { stdio: ['pipe', 'ignore', 'pipe'] });
children.push(lg);
const ready = await waitFor(lg.stderr, /READY connected=(\d+)/, 120_000, 'the load generator');
await sleep(2000);
const b = await snapshot(srv, dir);
lg.stdin.end('stop\n');
printDiff(a, b, Number(ready[1]), TOP);
srv.kill('SIGTERM');
process.exit(0);
