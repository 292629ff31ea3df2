#!/usr/bin/env node
// Memory per subscription: the same murmur server holds N idle connections twice, once with
// every connection in no topic and once with every connection in T topics (each topic shared
// by all connections, as rooms are); the JS heap difference / (N x T) is the cost of one
// subscription. Usage: node native-bench/pubsub/subscription-memory.mjs [--connections 10000] [--topics 10]
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const args = process.argv.slice(2);
const flag = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : Number(args[i + 1]);
};
const N = flag('connections', 10000);
const T = flag('topics', 10);
const loadgen = `${root}native-bench/build/loadgen`;
if (!existsSync(loadgen)) execFileSync('gcc', ['-O2', '-o', loadgen, `${root}native-bench/loadgen.c`]);

const serverScript = `
import { Server } from '${root}dist/src/server/server.js';
const T = Number(process.argv.at(-1));
const server = new Server({ handlers: { open(conn) { for (let i = 0; i < T; i++) conn.subscribe('topic-' + i); } } });
const a = await server.listen(0, '127.0.0.1');
process.stdout.write('LISTENING ' + a.port + '\\n');
process.on('SIGUSR2', () => { gc(); gc(); process.stdout.write('STATS ' + JSON.stringify({ ...process.memoryUsage(), subs: server.pubsub.topics.size }) + '\\n'); });
process.on('SIGTERM', () => process.exit(0));
`;

function waitLine(child, prefix, timeoutMs = 20000) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${prefix}`)), timeoutMs);
    const on = (d) => {
      buf += d;
      const line = buf.split('\n').find((l) => l.startsWith(prefix));
      if (line) {
        clearTimeout(t);
        child.stdout.off('data', on);
        resolve(line.slice(prefix.length).trim());
      }
    };
    child.stdout.on('data', on);
  });
}

async function heapWith(topics) {
  const srv = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', serverScript, String(topics)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = Number(await waitLine(srv, 'LISTENING '));
  const lg = spawn(loadgen, ['--port', String(port), '-c', String(N), '--src-ips', '2', '--duration', '0', '--quiet'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let lgErr = '';
  lg.stderr.on('data', (d) => (lgErr += d));
  const deadline = Date.now() + 60000;
  while (!/READY connected=\d+/.test(lgErr) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  await new Promise((r) => setTimeout(r, 1500));
  const statsP = waitLine(srv, 'STATS ');
  srv.kill('SIGUSR2');
  const stats = JSON.parse(await statsP);
  lg.stdin.write('stop\n');
  lg.kill('SIGUSR1');
  srv.kill('SIGTERM');
  await new Promise((r) => lg.once('exit', r));
  return stats.heapUsed;
}

const runs = [];
for (let r = 0; r < 3; r++) {
  const base = await heapWith(0);
  const withTopics = await heapWith(T);
  runs.push((withTopics - base) / (N * T));
  process.stderr.write(`run ${r + 1}: ${runs[r].toFixed(1)} B per subscription\n`);
}
runs.sort((a, b) => a - b);
console.log(JSON.stringify({ connections: N, topicsPerConnection: T, bytesPerSubscription: Math.round(runs[1]), runs: runs.map((x) => Math.round(x)) }));
