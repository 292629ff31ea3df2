// node presence-stall.mjs <repo> [watchers=200] [joiners=100]
// 200 connections watch room:p; then 100 connections join room:p at once; the server (a child
// process) reports the longest event-loop stall between "start" and "report".
import { spawn } from 'node:child_process';
import { once } from 'node:events';
const repo = process.argv[2] ?? new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
const W = Number(process.argv[3] ?? 200), J = Number(process.argv[4] ?? 100);
const { WebSocket } = await import(repo + '/dist/src/client/index.js');
const child = spawn(process.execPath, [new URL('./presence-server.mjs', import.meta.url).pathname, repo], { stdio: ['pipe', 'pipe', 'inherit'] });
let out = '';
const waitFor = async (re) => { while (!re.test(out)) await once(child.stdout, 'data').then(([d]) => { out += d; }); return re.exec(out); };
const port = Number((await waitFor(/PORT (\d+)/))[1]);
const url = `ws://127.0.0.1:${port}/ws`;
function connect() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.n = 0;
    ws.addEventListener('message', () => { ws.n++; if (ws.n === 1) resolve(ws); });
    ws.addEventListener('error', reject);
  });
}
const watchers = [];
for (let i = 0; i < W; i++) { const ws = await connect(); ws.send(JSON.stringify({ type: 'presence', action: 'watch', topic: 'room:p', id: 1 })); watchers.push(ws); }
const joiners = [];
for (let i = 0; i < J; i++) joiners.push(await connect());
await new Promise((r) => setTimeout(r, 500));
child.stdin.write('start\n');
await waitFor(/STARTED/);
for (const ws of joiners) ws.send(JSON.stringify({ type: 'presence', action: 'join', topic: 'room:p', meta: { name: 'someone with a name' }, id: 2 }));
// every watcher has seen every join (one message per event, or fewer batches)
const t0 = Date.now();
let events = 0;
for (;;) {
  await new Promise((r) => setTimeout(r, 100));
  if (Date.now() - t0 > 15000) break;
  const done = joiners.every((ws) => ws.n >= 2);
  if (done && Date.now() - t0 > 2000) break;
}
child.stdin.write('report\n');
const m = await waitFor(/STALL (.*)/);
console.log(`${W} watchers + ${J} joiners: ${m[1]}; watcher[0] got ${watchers[0].n - 2} presence messages`);
for (const ws of [...watchers, ...joiners]) ws.close();
process.exit(0);
