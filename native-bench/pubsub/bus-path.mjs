#!/usr/bin/env node
// CPU per cross-process delivery, without a network: two murmur Servers in this process joined
// by a synchronous in-memory bus, one subscriber (a Subscriber object, no socket) on the other
// server. What is timed is server.publish on one side up to the subscriber's sendEncoded on the
// other: the pub/sub side of the bus (records, the receiving publish, encode, batch, flush),
// not a transport. Every build that has Server({ bus }) runs it, so an older checkout can be
// measured with --root DIR (its dist/ built). process.cpuUsage per message; median of --runs.
// Usage: npm run build && node native-bench/pubsub/bus-path.mjs [--root DIR] [--messages 200000] [--size 128] [--runs 7]
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : args[i + 1];
};
const root = path.resolve(opt('root', fileURLToPath(new URL('../../', import.meta.url))));
const messages = Number(opt('messages', 200_000));
const size = Number(opt('size', 128));
const runs = Number(opt('runs', 7));
const burst = 64;

const { Server } = await import(path.join(root, 'dist/src/server/server.js'));

class MemoryBus {
  peer = null;
  receiver = null;
  publish(topic, data, isBinary) {
    this.peer.receiver?.(topic, data, isBinary);
  }
  onMessage(receiver) {
    this.receiver = receiver;
  }
  close() {}
}
const busA = new MemoryBus();
const busB = new MemoryBus();
busA.peer = busB;
busB.peer = busA;
const a = new Server({ bus: busA, handlers: {} });
const b = new Server({ bus: busB, handlers: {} });
let got = 0;
const sub = { topics: null, sendEncoded: (_frames, n) => void (got += n) };
b.pubsub.subscribe(sub, 'bench');
const payload = Buffer.alloc(size, 0x61);
const turn = () => new Promise((r) => setImmediate(r));

async function once() {
  got = 0;
  const cpu = process.cpuUsage();
  for (let sent = 0; sent < messages; ) {
    for (let i = 0; i < burst && sent < messages; i++, sent++) a.publish('bench', payload);
    await turn();
  }
  const used = process.cpuUsage(cpu);
  if (got !== messages) throw new Error(`delivered ${got} of ${messages}`);
  return ((used.user + used.system) * 1000) / messages; // ns per message
}

await once(); // warm-up
const ns = [];
for (let r = 0; r < runs; r++) ns.push(await once());
ns.sort((x, y) => x - y);
console.log(`${root}: CPU per cross-process delivery, ${size} B binary, ${messages} messages x ${runs} runs: median ${ns[(runs - 1) >> 1].toFixed(0)} ns (min ${ns[0].toFixed(0)}, max ${ns[runs - 1].toFixed(0)})`);
