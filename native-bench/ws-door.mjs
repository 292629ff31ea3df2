#!/usr/bin/env node
// The ws door against ws and against murmur's own API, in one run: the same small echo app
// (native-bench/servers/ws-door-app.mjs) on each, measured by the C load generator.
//   node native-bench/ws-door.mjs [--runs 3] [--connections 10000] [--echo 100x16x32] [--duration 5] [--no-pin] [--write FILE]
// Per run and server: RSS and JS heap per idle connection (after a full GC, minus the
// server's own figures before the connections), then echo msgs/s. Servers run one at a time,
// in a different order each run; the server is pinned to CPU 0, the load generator to CPU 1.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
};
const runs = Number(arg('--runs', '3'));
const connections = Number(arg('--connections', '10000'));
const [echoConns, echoWindow, echoSize] = arg('--echo', '100x16x32').split('x').map(Number);
const duration = Number(arg('--duration', '5'));
const pin = !argv.includes('--no-pin') && spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
const IMPLS = ['ws', 'door', 'native'];

const loadgen = join(here, 'build', 'loadgen');
const source = join(here, 'loadgen.c');
if (!existsSync(loadgen) || statSync(loadgen).mtimeMs < statSync(source).mtimeMs) {
  mkdirSync(join(here, 'build'), { recursive: true });
  const r = spawnSync('gcc', ['-O2', '-o', loadgen, source], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('could not build the load generator');
}

const pinned = (cpu, cmd, args) => (pin ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args]);

/** Lines of a stream, awaited by pattern. */
function lines(stream) {
  const seen = [];
  const waiters = [];
  createInterface({ input: stream }).on('line', (line) => {
    seen.push(line);
    for (const w of [...waiters]) if (w.re.test(line)) (waiters.splice(waiters.indexOf(w), 1), w.resolve(line));
  });
  return {
    waitFor(re, ms, what) {
      const old = seen.find((l) => re.test(l));
      if (old !== undefined) {
        seen.splice(seen.indexOf(old), 1);
        return Promise.resolve(old);
      }
      return new Promise((resolve, reject) => {
        const w = { re, resolve: (l) => (clearTimeout(t), seen.splice(seen.indexOf(l), 1), resolve(l)) };
        const t = setTimeout(() => (waiters.splice(waiters.indexOf(w), 1), reject(new Error(`no ${what} within ${ms} ms`))), ms);
        waiters.push(w);
      });
    },
  };
}

async function startServer(impl) {
  const [cmd, args] = pinned(0, process.execPath, ['--expose-gc', join(here, 'servers', 'ws-door-app.mjs'), '--impl', impl, '--port', '0']);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const out = lines(child.stdout);
  const line = await out.waitFor(/LISTENING \d+/, 15000, 'LISTENING');
  const stats = async () => {
    child.kill('SIGUSR2');
    return JSON.parse((await out.waitFor(/^STATS /, 15000, 'STATS')).slice(6));
  };
  return { child, port: Number(/LISTENING (\d+)/.exec(line)[1]), note: line.replace(/^.*LISTENING \d+\s*/, ''), stats };
}

function runLoadgen(args, { hold = false } = {}) {
  const [cmd, a] = pinned(1, loadgen, [...args, '--quiet', '--stdin-eof-stop']);
  const child = spawn(cmd, a, { stdio: ['pipe', 'pipe', 'pipe'] });
  const err = lines(child.stderr);
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  const done = new Promise((resolve) => child.on('close', () => resolve(JSON.parse(stdout.trim().split('\n').pop() || '{}'))));
  if (!hold) return { done };
  return {
    ready: err.waitFor(/^READY /, 180_000, 'loadgen READY'),
    stop() {
      child.stdin.end('stop\n');
      return done;
    },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function measure(impl) {
  const server = await startServer(impl);
  try {
    await sleep(300);
    const before = await server.stats();
    const hold = runLoadgen(['--port', String(server.port), '--scenario', 'hold', '-c', String(connections), '--duration', '0'], { hold: true });
    await hold.ready;
    await sleep(1000);
    const held = await server.stats();
    const holdResult = await hold.stop();
    const opened = holdResult.connections ?? connections;
    await sleep(1000);
    const echo = await runLoadgen([
      '--port', String(server.port), '--scenario', 'echo', '-c', String(echoConns), '--window', String(echoWindow), '--size', String(echoSize),
      '--warmup', '1', '--duration', String(duration),
    ]).done;
    return {
      impl,
      note: server.note,
      held: held.clients,
      rssPerConn: (held.rss - before.rss) / opened,
      heapPerConn: (held.heapUsed - before.heapUsed) / opened,
      echoMsgsPerS: echo.msgs_per_s ?? 0,
      echoErrors: (echo.protocol_errors ?? 0) + (echo.verify_errors ?? 0) + (echo.failed ?? 0),
    };
  } finally {
    server.child.kill('SIGTERM');
    await new Promise((r) => server.child.once('close', r));
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = [];
for (let r = 0; r < runs; r++) {
  const order = IMPLS.map((_, i) => IMPLS[(i + r) % IMPLS.length]);
  for (const impl of order) {
    const m = await measure(impl);
    results.push({ run: r + 1, ...m });
    console.error(`run ${r + 1} ${impl}: ${(m.rssPerConn / 1024).toFixed(2)} KiB RSS, ${m.heapPerConn.toFixed(0)} B heap per idle connection (${m.held} held); echo ${Math.round(m.echoMsgsPerS)} msgs/s ${m.note}`);
  }
}

const table = IMPLS.map((impl) => {
  const mine = results.filter((x) => x.impl === impl);
  return { impl, rssPerConn: median(mine.map((x) => x.rssPerConn)), heapPerConn: median(mine.map((x) => x.heapPerConn)), echoMsgsPerS: median(mine.map((x) => x.echoMsgsPerS)) };
});
const ws = table.find((t) => t.impl === 'ws');
console.log(`| figure (median of ${runs}) | ws | door | native |`);
console.log('|---|---:|---:|---:|');
const row = (label, key, fmt) => console.log(`| ${label} | ${table.map((t) => fmt(t[key])).join(' | ')} |`);
row(`RSS per idle connection, ${connections} held`, 'rssPerConn', (v) => `${(v / 1024).toFixed(2)} KiB`);
row(`JS heap per idle connection, ${connections} held`, 'heapPerConn', (v) => `${v.toFixed(0)} B`);
row(`echo ${echoSize} B, ${echoConns} connections x window ${echoWindow}: msgs/s`, 'echoMsgsPerS', (v) => `${(v / 1000).toFixed(1)} k`);
console.log(`door / ws: RSS ${(table[1].rssPerConn / ws.rssPerConn).toFixed(2)}, heap ${(table[1].heapPerConn / ws.heapPerConn).toFixed(2)}, echo ${(table[1].echoMsgsPerS / ws.echoMsgsPerS).toFixed(2)}`);
const out = arg('--write', null);
if (out !== null) writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), runs, connections, echo: { echoConns, echoWindow, echoSize, duration }, pin, results, table }, null, 2)}\n`);
