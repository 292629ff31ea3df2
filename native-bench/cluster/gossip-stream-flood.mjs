// What hostile streams on the gossip TCP port cost the node that accepts them.
// A gossip node runs in a child process; this process opens N streams to its port from
// 127.0.0.0/8 (trickling bytes, announcing a large frame, or silent, reopened when closed)
// for a while, then reads the child's RSS and heap before and during the flood.
// Usage: node native-bench/cluster/gossip-stream-flood.mjs [streams=512] [seconds=10] [distDir]
import { fork } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const streams = Number(process.argv[2] ?? 512);
const seconds = Number(process.argv[3] ?? 10);
const dist = process.argv[4] ?? join(fileURLToPath(new URL('../..', import.meta.url)), 'dist');

if (process.env.FLOOD_CHILD) {
  const { GossipNode } = await import(join(process.env.FLOOD_CHILD, 'src/cluster/gossip/node.js'));
  const node = new GossipNode({ name: 'seed', keys: [Buffer.alloc(32, 1)] });
  const addr = await node.start();
  process.on('message', (m) => {
    if (m === 'mem') {
      globalThis.gc?.();
      const u = process.memoryUsage();
      process.send({ rss: u.rss, heap: u.heapUsed, external: u.external + u.arrayBuffers });
    } else process.exit(0);
  });
  process.send({ addr });
} else {
  const child = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, FLOOD_CHILD: dist }, execArgv: ['--expose-gc'] });
  const next = () => new Promise((r) => child.once('message', r));
  const { addr } = await next();
  const port = Number(addr.slice(addr.lastIndexOf(':') + 1));
  const mem = async () => (child.send('mem'), next());
  await new Promise((r) => setTimeout(r, 500));
  const before = await mem();
  let stopped = false;
  let opened = 0;
  const open = new Set();
  const start = (i) => {
    if (stopped) return;
    opened++;
    const s = connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${1 + (i % 64)}` });
    let t = null;
    open.add(s);
    s.on('error', () => {});
    s.on('data', () => {});
    s.on('connect', () => {
      const kind = i % 3;
      if (kind === 0) s.write(Buffer.from([0x00, 0xff, 0xff, 0xf0])); // a large length, first format
      if (kind === 1) s.write(Buffer.from([1, 3])); // a head that never completes
      // The large frame is fed at 640 KiB/s, the broken head one byte at a time.
      if (kind === 0) t = setInterval(() => s.write(Buffer.alloc(64 * 1024, 0x41)), 100);
      if (kind === 1) t = setInterval(() => s.write(Buffer.from([0x41])), 100);
    });
    s.on('close', () => {
      open.delete(s);
      if (t) clearInterval(t);
      if (!stopped) setTimeout(() => start(i), 20);
    });
  };
  for (let i = 0; i < streams; i++) start(i);
  let peak = before;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 1000));
    const m = await mem();
    if (m.rss > peak.rss) peak = m;
  }
  stopped = true;
  for (const s of open) s.destroy();
  const mb = (b) => (b / 1048576).toFixed(1);
  console.log(`${streams} hostile streams for ${seconds} s (${opened} opened): seed RSS ${mb(before.rss)} -> peak ${mb(peak.rss)} MiB (+${mb(peak.rss - before.rss)}), heap ${mb(before.heap)} -> ${mb(peak.heap)} MiB, external ${mb(before.external)} -> ${mb(peak.external)} MiB`);
  child.send('exit');
}
