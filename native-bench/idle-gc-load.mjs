#!/usr/bin/env node
// The quiet-time GC (src/server/idle-gc.ts) under load: `murmur echo` driven by the load
// generator's echo scenario (100 connections, 32 B then 16 KiB, 15 s each), then left alone
// for 9 s. Prints what the GC did during the load (it must be nothing) and after it, from
// echo's STATS line. A measurement, not a test. Extra arguments go to `murmur echo`.
//
//   node native-bench/idle-gc-load.mjs [--no-idle-gc]
import { spawn, execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLoadgen } from './loadgen-build.mjs';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
buildLoadgen((l) => console.error(l));
const child = spawn(process.execPath, [`${ROOT}/dist/src/cli/main.js`, 'echo', '--port', '0', '--host', '127.0.0.1', ...process.argv.slice(2)], { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
child.stdout.on('data', (d) => (out += d));
const wait = async (re) => { for (;;) { const m = re.exec(out); if (m) return m; await new Promise((r) => setTimeout(r, 50)); } };
const port = Number((await wait(/LISTENING (\d+)/))[1]);
const stats = async () => { const before = out.split('STATS ').length; child.kill('SIGUSR2'); while (out.split('STATS ').length === before) await new Promise((r) => setTimeout(r, 50)); return JSON.parse(out.split('STATS ').pop().split('\n')[0]).idleGc; };
const s0 = await stats();
for (const [size, secs] of [[32, 15], [16384, 15]]) {
  const r = JSON.parse(execFileSync(`${ROOT}/native-bench/build/loadgen`, ['--host', '127.0.0.1', '--port', String(port), '--quiet', '--scenario', 'echo', '-c', '100', '--size', String(size), '--window', '4', '--duration', String(secs)], { encoding: 'utf8' }).trim().split('\n').pop());
  console.log(`echo ${size} B, ${secs} s: ${Math.round(r.msgs_per_s)} msg/s`);
}
const s1 = await stats();
console.log('during load (from start): scavenges', s1.scavenges - s0.scavenges, 'GCs', s1.reductions - s0.reductions);
await new Promise((r) => setTimeout(r, 9000));
const s2 = await stats();
console.log('9 s after: scavenges', s2.scavenges - s1.scavenges, 'GCs', s2.reductions - s1.reductions, 'declined', s2.declined - s1.declined, 'freed', s2.youngBytesFreed - s1.youngBytesFreed, 'pause', s2.lastPauseMs.toFixed(1), 'ms');
child.kill('SIGTERM');
