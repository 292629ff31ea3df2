// node echo-stall.mjs <repo> [commands=20]: one connection sends N x `pub 100000 1`; a second
// then sends `sub 1` and times its answer (how long the loop was held).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
const repo = process.argv[2] ?? new URL('../..', import.meta.url).pathname.replace(/\/$/, ''), N = Number(process.argv[3] ?? 20);
const { default: WebSocket } = await import(repo + '/node_modules/ws/index.js');
const child = spawn(process.execPath, ['--import', new URL('./probe.mjs', import.meta.url).pathname, repo + '/dist/src/cli/main.js', 'echo', '--port', '0', '--mode', 'broadcast'], { stdio: ['ignore', 'pipe', 'pipe'] });
let out = '', err = '';
child.stderr.on('data', (d) => (err += d));
child.stdout.on('data', (d) => (out += d));
while (!/LISTENING (\d+)/.test(out)) await once(child.stdout, 'data');
const port = Number(/LISTENING (\d+)/.exec(out)[1]);
const a = new WebSocket(`ws://127.0.0.1:${port}/`); await once(a, 'open');
const b = new WebSocket(`ws://127.0.0.1:${port}/`); await once(b, 'open');
let got = 0;
a.on('message', () => got++);
setTimeout(() => {
  const stalls = [...err.matchAll(/PROBE max=(\d+)/g)].map((m) => Number(m[1]));
  console.log(`${N} x pub 100000 1: longest loop stall ${Math.max(...stalls)} ms; ${got} messages reached the client in 12 s`);
  a.terminate(); b.terminate(); child.kill(); process.exit(0);
}, 12000);
const t0 = Date.now();
for (let i = 0; i < N; i++) a.send('pub 100000 1');

b.send('sub 1');
