// node flood-rss.mjs <repo> [extra config JSON]: a murmur serve app (child process, default
// settings plus the JSON) ; 40 anonymous connections each publish once to 250 new room:*
// topics (10,000 in all); then the app reports RSS and heap growth and the history metrics.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
const repo = process.argv[2] ?? new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
const extra = process.argv[3] ?? '{}';
const server = `
const { startApp } = await import(${JSON.stringify(repo + '/dist/src/app/app.js')});
const app = await startApp({ port: 0, host: '127.0.0.1', rateLimit: 100000, rateBurst: 100000, ...${extra} });
const m = () => { global.gc(); global.gc(); return process.memoryUsage(); };
const base = m();
process.stdout.write('PORT ' + app.port + '\\n');
process.stdin.on('data', async () => {
  const now = m();
  const text = app.localMetrics();
  const g = (n) => (new RegExp('^' + n + ' (\\\\S+)$', 'm').exec(text) ?? [])[1];
  process.stdout.write('REPORT rss +' + ((now.rss - base.rss) / 2 ** 20).toFixed(1) + ' MiB, heap+external +' + ((now.heapUsed + now.external - base.heapUsed - base.external) / 2 ** 20).toFixed(1) + ' MiB; murmur_history_topics ' + g('murmur_history_topics') + ', murmur_history_bytes ' + (g('murmur_history_bytes') / 2 ** 20).toFixed(2) + ' MiB\\n');
  await app.shutdown(); process.exit(0);
});`;
const child = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', server], { stdio: ['pipe', 'pipe', 'inherit'] });
let out = '';
child.stdout.on('data', (d) => (out += d));
while (!/PORT (\d+)/.test(out)) await once(child.stdout, 'data');
const port = Number(/PORT (\d+)/.exec(out)[1]);
const { WebSocket } = await import(repo + '/dist/src/client/index.js');
const conns = await Promise.all(Array.from({ length: 40 }, () => new Promise((res, rej) => { const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`); ws.n = 0; ws.addEventListener('message', () => { if (ws.n++ === 0) res(ws); }); ws.addEventListener('error', rej); })));
const t0 = Date.now();
conns.forEach((ws, k) => { for (let i = 0; i < 250; i++) ws.send(JSON.stringify({ type: 'publish', topic: `room:f-${k}-${i}`, data: 'hello', id: i })); });
while (conns.some((ws) => ws.readyState === 1 && ws.n < 251) && Date.now() - t0 < 30000) await new Promise((r) => setTimeout(r, 100));
child.stdin.write('report\n');
while (!/REPORT/.test(out)) await once(child.stdout, 'data');
console.log(`${extra}: ${/REPORT (.*)/.exec(out)[1]}; ${conns.filter((c) => c.readyState !== 1).length} flooders closed`);
for (const ws of conns) ws.close();
process.exit(0);
