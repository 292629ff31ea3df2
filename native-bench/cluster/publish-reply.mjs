#!/usr/bin/env node
// Publish-to-reply latency of `murmur serve` on a history topic in a 3-node cluster (mesh bus),
// measured from a client on the node that neither owns nor replicates the topic: the reply
// comes once the message is held on two nodes (docs/cluster.md, "A publish counts once it is
// held twice"). Three apps in this process (startApp with cluster options, loopback, the LAN
// gossip profile); one WebSocket client; --messages publishes one at a time (each waits for
// its reply), then the same number at --rate a second without waiting. Prints p50/p99/max of
// send-to-reply, and of send-to-own-copy (the publisher is subscribed), in ms.
// Usage: npm run build && node native-bench/cluster/publish-reply.mjs [--root <a built checkout>]
//   [--messages 1000] [--rate 500]
// --root runs another build (an older commit extracted with git archive and built) for a
// before/after comparison.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : args[i + 1];
};
const root = resolve(opt('root', new URL('../../', import.meta.url).pathname));
const messages = Number(opt('messages', 1000));
const rate = Number(opt('rate', 500));
const load = (p) => import(pathToFileURL(resolve(root, 'dist/src', p)).href);
const { startApp } = await load('app/app.js');
const { WebSocket } = await load('client/index.js');
const { FAST_LOCAL_CONFIG } = await load('cluster/gossip/gossip-config.js');
const { ownerAndReplica } = await load('cluster/bus/ordering.js');

const key = randomBytes(32);
const base = { port: 0, host: '127.0.0.1', overloadLagMs: 0, anonymous: { subscribe: ['*'], publish: ['*'], presence: ['*'] }, historyTopics: ['room:*'], rateLimit: 1e6, rateBurst: 1e6 };
const cluster = (id, seeds) => ({ nodeId: id, port: 0, seeds, keys: [key], label: 'reply-bench', gossip: FAST_LOCAL_CONFIG, bus: 'mesh' });
const a = await startApp({ ...base, cluster: cluster('a', []) });
const seed = a.cluster.node.address;
const b = await startApp({ ...base, cluster: cluster('b', [seed]) });
const c = await startApp({ ...base, cluster: cluster('c', [seed]) });
const apps = { a, b, c };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (let i = 0; i < 500 && ![a, b, c].every((x) => x.cluster.members().filter((m) => m.state === 'alive').length === 3); i++) await sleep(10);
let t = 0;
const topic = () => `room:bench-${t}`;
// A topic that c neither owns nor replicates: a publish on c goes to the owner and back.
while (ownerAndReplica(topic(), ['a', 'b', 'c']).includes('c')) t++;
await sleep(1500); // links up, the owner past its first view

const ws = new WebSocket(`ws://127.0.0.1:${c.port}/ws`);
await new Promise((r, j) => {
  ws.onopen = r;
  ws.onerror = (e) => j(e.error);
});
const sentAt = new Map();
const reply = [];
const own = [];
const waiting = new Map();
const copies = new Map();
ws.onmessage = (ev) => {
  const m = JSON.parse(String(ev.data));
  const now = performance.now();
  if (m.type === 'reply' && sentAt.has(m.id)) {
    reply.push(now - sentAt.get(m.id));
    waiting.get(m.id)?.();
  } else if (m.type === 'message' && m.data?.k !== undefined && sentAt.has(m.data.k)) {
    own.push(now - sentAt.get(m.data.k));
    copies.get(m.data.k)?.();
  }
};
let id = 0;
const send = () => {
  const k = ++id;
  sentAt.set(k, performance.now());
  ws.send(JSON.stringify({ type: 'publish', topic: topic(), data: { k }, id: k }));
  return k;
};
ws.send(JSON.stringify({ type: 'subscribe', topic: topic(), id: 'sub' }));
await sleep(200);
// Warm-up, each message until its own copy came back ordered: the owner asks for the topic's
// (empty) tail before it orders the first one.
for (let i = 0; i < 20; i++) await new Promise((r) => copies.set(send(), r));
const stats = (xs) => {
  if (xs.length === 0) return "none";
  const s = [...xs].sort((x, y) => x - y);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(2);
  return `p50 ${q(0.5)} p99 ${q(0.99)} max ${s[s.length - 1].toFixed(2)} (n=${s.length})`;
};
reply.length = 0;
own.length = 0;
for (let i = 0; i < messages; i++) await new Promise((r) => waiting.set(send(), r));
await sleep(200);
console.log(`one at a time: reply ${stats(reply)}; own copy ${stats(own)}`);
reply.length = 0;
own.length = 0;
const start = performance.now();
for (let i = 0; i < messages; i++) {
  send();
  const wait = start + ((i + 1) * 1000) / rate - performance.now();
  if (wait > 0) await sleep(wait);
}
await sleep(1000);
console.log(`${rate}/s: reply ${stats(reply)}; own copy ${stats(own)}`);
ws.close();
for (const x of Object.values(apps)) await x.shutdown();
process.exit(0);
