#!/usr/bin/env node
// What a handshake costs the library's server with and without a first message: the server's
// CPU time per handshake (user and system, from /proc) over a ramp of N connections held by the
// load generator, for a Server without an `open` handler, with one that sends nothing, and with
// one that sends a message the size of `murmur serve`'s welcome. Runs alternate. A measurement,
// not a test.
//
//   node native-bench/first-message.mjs [-n 10000] [--runs 3] [--murmur DIR]...
//
// --murmur DIR (repeatable): the murmur checkouts whose dist/ is measured, in turn within each
// run (default: this one), so an older build can be measured beside this one.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildLoadgen, LOADGEN } from './loadgen-build.mjs';
import { cpuMs } from './proc-stats.mjs';

const MODES = ['none', 'empty', 'welcome'];
const args = process.argv.slice(2);

if (args[0] === '--serve') {
  // The server child: `--serve MODE`.
  const root = args[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
  const { Server } = await import(path.join(root, 'dist/src/index.js'));
  const welcome = JSON.stringify({
    type: 'welcome',
    protocol: 1,
    conn: 'abcdef.1a2b',
    user: 'anon-abcdef.1a2b',
    anonymous: true,
    permissions: { subscribe: ['room:*'], publish: ['room:*'], presence: ['room:*'] },
    limits: { maxMessageBytes: 65536, rateLimit: 100, rateBurst: 200, maxSubscriptions: 100, maxTopicBytes: 256 },
  });
  const mode = args[1];
  const handlers = mode === 'none' ? {} : mode === 'empty' ? { open: () => {} } : { open: (c) => c.send(welcome) };
  const server = new Server({ handlers });
  const a = await server.listen(0, '127.0.0.1');
  process.stdout.write(`LISTENING ${a.port}\n`);
  process.on('SIGTERM', () => process.exit(0));
} else {
  const { values } = parseArgs({ args, options: { n: { type: 'string', short: 'n', default: '10000' }, runs: { type: 'string', default: '3' }, murmur: { type: 'string', multiple: true } } });
  const roots = (values.murmur ?? [path.join(path.dirname(fileURLToPath(import.meta.url)), '..')]).map((d) => path.resolve(d));
  const N = Number(values.n);
  const RUNS = Number(values.runs);
  if (!(N >= 1 && N <= 19000)) throw new Error('-n: 1..19000 (a process holds at most 20,000 descriptors)');
  buildLoadgen((l) => console.error(l));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const lines = (stream, re) =>
    new Promise((resolve, reject) => {
      let text = '';
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${re}`)), 120_000);
      stream.on('data', (d) => {
        text += d;
        const m = re.exec(text);
        if (m !== null) {
          clearTimeout(t);
          resolve(m);
        }
      });
    });
  for (let run = 1; run <= RUNS; run++) {
    for (const mode of MODES) for (const root of roots) {
      const srv = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', mode, root], { stdio: ['ignore', 'pipe', 'inherit'] });
      try {
        const port = (await lines(srv.stdout, /LISTENING (\d+)/))[1];
        const base = ['--host', '127.0.0.1', '--port', port, '--path', '/', '--scenario', 'hold', '--timeout', '15', '--quiet'];
        // A few connections first, so one-time costs fall before the measurement.
        await new Promise((r) => spawn(LOADGEN, [...base, '-c', '50', '--duration', '0.5'], { stdio: 'ignore' }).on('exit', r));
        await sleep(1500);
        const c0 = cpuMs(srv.pid);
        const lg = spawn(LOADGEN, [...base, '-c', String(N), '--src-ips', '1', '--duration', '900', '--stdin-eof-stop'], { stdio: ['pipe', 'pipe', 'pipe'] });
        const result = lines(lg.stdout, /^\{.*\}$/m);
        await lines(lg.stderr, /^READY /m);
        const c1 = cpuMs(srv.pid);
        lg.stdin.end('stop\n');
        const res = JSON.parse((await result)[0]);
        const per = (k) => (((c1[k] - c0[k]) * 1000) / res.connections).toFixed(0);
        const label = roots.length > 1 ? `${mode} ${path.basename(root)}` : mode;
        console.log(`${label} run ${run}: held ${res.connections}, CPU/handshake user ${per('user')} µs, sys ${per('sys')} µs, handshakes/s ${res.handshakes_per_s}`);
      } finally {
        srv.kill('SIGTERM');
      }
    }
  }
}
