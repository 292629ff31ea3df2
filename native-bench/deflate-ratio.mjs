// Compression ratio of permessage-deflate on JSON chat traffic, by window bits and context
// takeover, and the zlib memory each choice makes a connection hold (zlib's documented
// formulas: deflate (1 << (windowBits + 2)) + (1 << (memLevel + 9)), inflate 1 << windowBits,
// plus about 7 KiB of state each). Deterministic messages; no network.
// Usage: node native-bench/deflate-ratio.mjs [messages]
import { deflateRawSync, createDeflateRaw, constants } from 'node:zlib';

const N = Number(process.argv[2] ?? 2000);
let seed = 42;
const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
const users = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'];
const words = 'the deploy went fine dashboards look green ping me if you see anything odd in metrics lunch at noon meeting moved to three can someone review my pull request thanks great work on the release'.split(' ');
const messages = [];
for (let i = 0; i < N; i++) {
  const kind = rnd();
  const text = Array.from({ length: 3 + Math.floor(rnd() * 25) }, () => pick(words)).join(' ');
  const m =
    kind < 0.7
      ? { type: 'message', topic: `room:${pick(['general', 'dev', 'ops'])}`, position: { epoch: 'k3j2', offset: 1000 + i }, data: { name: pick(users), text, ts: 1765000000000 + i * 1375 } }
      : kind < 0.9
        ? { type: 'presence', topic: 'room:general', event: pick(['join', 'leave']), member: { user: pick(users), conn: `c${Math.floor(rnd() * 1e6)}`, meta: { name: pick(users), status: pick(['online', 'away']) } } }
        : { type: 'message', topic: 'room:dev', data: { name: pick(users), text: text.repeat(8), attachments: [{ url: `https://cdn.example.com/f/${i}.png`, w: 640, h: 480 }] } };
  messages.push(Buffer.from(JSON.stringify(m)));
}
const raw = messages.reduce((s, m) => s + m.length, 0);

function perMessage(bits) {
  let out = 0;
  for (const m of messages) out += deflateRawSync(m, { windowBits: bits, finishFlush: constants.Z_SYNC_FLUSH }).length - 4;
  return out;
}

async function takeover(bits) {
  const d = createDeflateRaw({ windowBits: bits });
  let out = 0;
  for (const m of messages) {
    d.write(m);
    out += await new Promise((resolve) => {
      const chunks = [];
      const on = (c) => chunks.push(c);
      d.on('data', on);
      d.flush(constants.Z_SYNC_FLUSH, () => {
        d.off('data', on);
        resolve(Buffer.concat(chunks).length - 4);
      });
    });
  }
  d.close();
  return out;
}

const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
console.log(`${N} JSON chat messages, ${raw} bytes (mean ${(raw / N).toFixed(0)} B)`);
console.log('window | no context takeover: ratio | context takeover: ratio | held per connection with takeover (deflate + inflate)');
for (const bits of [9, 10, 11, 12, 13, 15]) {
  const a = perMessage(bits);
  const b = await takeover(bits);
  const held = (1 << (bits + 2)) + (1 << (8 + 9)) + (1 << bits) + 14 * 1024;
  console.log(`${String(bits).padStart(6)} | ${(raw / a).toFixed(2).padStart(26)} | ${(raw / b).toFixed(2).padStart(23)} | ${kib(held)}`);
}
