// A process for idle-gc.test.ts: a listening server with the default idle GC, then a burst
// shaped like a ramp of connections (a few MB that stay, much more that lives only across a
// scavenge or two), which grows V8's young generation without a full GC (so V8's own memory
// reducer is never started), then nothing. Prints `GROWN <bytes>` once, then `YOUNG <bytes>`
// every 250 ms.
import { Server } from '../../src/server/server.js';
import { heapSizes } from '../../src/server/idle-gc.js';

const server = new Server({ handlers: {} });
await server.listen(0, '127.0.0.1');
const held: object[] = [];
let transient: unknown[] = [];

function burst(): void {
  for (let i = 0; i < 2_000; i++) held.push({ id: held.length, tags: [i], name: `c${i}` });
  transient = [];
  for (let i = 0; i < 5_000; i++) transient.push(new Array(16).fill(i));
  if (held.length < 40_000) {
    setImmediate(burst);
    return;
  }
  transient = [];
  process.stdout.write(`GROWN ${heapSizes().young}\n`);
  setInterval(() => process.stdout.write(`YOUNG ${heapSizes().young}\n`), 250);
}
burst();
