#!/usr/bin/env node
// The young generation's trade, measured: `murmur echo` and `murmur serve` started by node with
// --max-semi-space-size=S for each S given (MiB; "default" = V8's own), in one run, scenario by
// scenario: echo round trips with 32-byte and 16 KiB messages, a broadcast to 1,000
// subscribers, serve's GET /healthz with keep-alive, and user-space RSS per idle WebSocket
// (native-bench/serve-port.mjs). A measurement, not a test: quote ratios within one run.
//
//   node native-bench/semi-space.mjs [--sizes default,1,2] [-n 19000] [--seconds 5]
import { spawn, execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLoadgen, LOADGEN } from './loadgen-build.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.join(HERE, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i === -1 ? dflt : args[i + 1];
};
const SIZES = opt('--sizes', 'default,1,2').split(',');
const N = Number(opt('-n', 19000));
const SECONDS = Number(opt('--seconds', 5));
const HOST = '127.0.0.1';

const flagsOf = (size) => (size === 'default' ? [] : [`--max-semi-space-size=${size}`]);

/** Runs a command to its end; its stdout. */
function run(cmd, argv) {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('exit', () => resolve(out));
  });
}

/** Starts `murmur <kind>` under node with `flags`; resolves with the child and its port. */
function start(kind, flags) {
  const argv = kind === 'broadcast'
    ? ['echo', '--mode', 'broadcast', '--port', '0', '--host', HOST]
    : kind === 'serve'
    ? ['serve', '--port', '0', '--host', HOST, '--api-key', 'bench-key-0123456789', '--max-connections', '0', '--max-connections-per-address', '0']
    : ['echo', '--port', '0', '--host', HOST];
  const child = spawn(process.execPath, [...flags, CLI, ...argv], { stdio: ['ignore', 'pipe', 'ignore'] });
  return new Promise((resolve, reject) => {
    let text = '';
    const t = setTimeout(() => reject(new Error(`${kind} did not print LISTENING`)), 15000);
    child.stdout.on('data', (d) => {
      text += d;
      const m = /LISTENING (\d+)/.exec(text);
      if (m !== null) {
        clearTimeout(t);
        resolve({ child, port: Number(m[1]) });
      }
    });
  });
}

async function withServer(kind, flags, fn) {
  const { child, port } = await start(kind, flags);
  try {
    return await fn(port);
  } finally {
    child.kill('SIGKILL');
  }
}

const loadgen = async (port, extra) => JSON.parse((await run(LOADGEN, ['--host', HOST, '--port', String(port), '--quiet', ...extra])).trim().split('\n').pop());

async function echo(flags, size) {
  return withServer('echo', flags, async (port) => {
    const r = await loadgen(port, ['--scenario', 'echo', '-c', '100', '--size', String(size), '--window', '4', '--duration', String(SECONDS)]);
    return `${Math.round(r.msgs_per_s)} msg/s, p99 ${r.p99_us} us`;
  });
}

async function broadcast(flags) {
  return withServer('broadcast', flags, async (port) => {
    const r = await loadgen(port, ['--scenario', 'subscribe', '-c', '1000', '--messages', '200', '--size', '64', '--timeout', '60']);
    return `${Math.round(r.deliveries_per_s)} deliveries/s (${r.deliveries}/${r.expected_deliveries})`;
  });
}

async function http(flags) {
  const { default: autocannon } = await import(path.join(HERE, 'node_modules/autocannon/autocannon.js'));
  return withServer('serve', flags, async (port) => {
    const go = (duration) => autocannon({ url: `http://${HOST}:${port}/healthz`, connections: 50, duration });
    await go(1);
    const r = await go(SECONDS);
    return `${Math.round(r.requests.average)} req/s, p99 ${r.latency.p99} ms`;
  });
}

async function idle(flags) {
  const out = await run(process.execPath, [path.join(HERE, 'serve-port.mjs'), '-n', String(N), ...flags.flatMap((f) => ['--node-flag', f])]);
  return out.split('\n').filter((l) => / run 1: /.test(l)).map((l) => l.replace(/ run 1: held \d+ \(failed \d+\),/, ':').replace('RSS/idle WebSocket', 'RSS/conn')).join('; ');
}

buildLoadgen((l) => console.error(l));
const rev = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
console.log(`murmur at ${rev}; node ${process.version}; load ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')}`);
for (const size of SIZES) {
  const flags = flagsOf(size);
  const label = `semi-space ${size}`;
  console.log(`${label}: echo 32 B: ${await echo(flags, 32)}`);
  console.log(`${label}: echo 16 KiB: ${await echo(flags, 16384)}`);
  console.log(`${label}: broadcast 1,000 x 200: ${await broadcast(flags)}`);
  console.log(`${label}: serve /healthz keep-alive: ${await http(flags)}`);
  console.log(`${label}: idle ${N}: ${await idle(flags)}`);
}
