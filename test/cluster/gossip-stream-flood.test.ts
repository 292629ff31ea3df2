import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, type Socket } from 'node:net';
import { GossipNode, parseAddr } from '../../src/cluster/gossip/node.js';
import { AesGcmSealer, Channel, Keyring } from '../../src/cluster/gossip/security.js';
import { encodeStreamHead, StreamRefusal } from '../../src/cluster/gossip/stream-head.js';
import { WIRE_VERSION } from '../../src/cluster/gossip/gossip-wire.js';
import { FAST, KEY_A, sleep, waitFor } from './helpers.js';

// Strangers on the gossip TCP port: streams that trickle bytes, announce a large frame, or
// say nothing. A genuine node must still join through that seed, and the strangers' streams
// must be closed by their deadline. Loopback only: 127.0.0.0/8 gives the strangers many
// source addresses on Linux.

const HEAD_TIMEOUT = FAST.streamHeadTimeoutMs!;
const TIMER_SLACK = 1000;
/** Client-side lifetimes include connecting and reading the close on a loaded machine. */
const BOUND_SLACK = 2500;

type Kind = 'trickle' | 'large-length' | 'silent';

/** Keeps `count` hostile streams open against `port`, reopening each one that is closed, until stopped. */
function flood(port: number, count: number, addresses: number) {
  let stopped = false;
  const open = new Map<Socket, number>();
  const lifetimes: number[] = [];
  const kinds: Kind[] = ['trickle', 'large-length', 'silent'];
  const start = (i: number) => {
    if (stopped) return;
    const kind = kinds[i % kinds.length] as Kind;
    const s = connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${1 + (i % addresses)}` });
    const opened = performance.now();
    let timer: NodeJS.Timeout | null = null;
    open.set(s, opened);
    s.on('error', () => {});
    s.on('data', () => {});
    s.on('connect', () => {
      if (kind === 'large-length') s.write(Buffer.from([0x00, 0xff, 0xff, 0xf0]));
      if (kind === 'trickle') s.write(Buffer.from([1, 3]));
      if (kind !== 'silent') timer = setInterval(() => s.write(Buffer.from([0x41])), 100);
    });
    s.on('close', () => {
      open.delete(s);
      if (timer) clearInterval(timer);
      lifetimes.push(performance.now() - opened);
      // A bounded attacker: reopen after a short pause.
      if (!stopped) setTimeout(() => start(i), 20);
    });
  };
  for (let i = 0; i < count; i++) start(i);
  return {
    lifetimes,
    get open() {
      return open.size;
    },
    /** Age of the oldest hostile stream still open, ms. */
    oldest() {
      const now = performance.now();
      let age = 0;
      for (const at of open.values()) age = Math.max(age, now - at);
      return age;
    },
    stop() {
      stopped = true;
      for (const s of open.keys()) s.destroy();
    },
  };
}

test('a genuine node joins through a seed whose gossip port is flooded by hostile streams', async () => {
  const seed = new GossipNode({ name: 'seed', keys: [KEY_A], config: FAST });
  const joiner = new GossipNode({ name: 'joiner', keys: [KEY_A], config: FAST });
  await seed.start();
  await joiner.start();
  const { port } = parseAddr(seed.address)!;
  const attack = flood(port, 256, 32);
  try {
    // Let the strangers take every slot the seed has.
    assert.ok((await waitFor(() => attack.open >= 200, 5000)) >= 0, `only ${attack.open} hostile streams open`);
    await sleep(300);
    const t0 = performance.now();
    const answered = await joiner.join([seed.address], HEAD_TIMEOUT + TIMER_SLACK);
    assert.is(answered, 1);
    assert.ok((await waitFor(() => seed.member('joiner')?.state === 'alive', 2000)) >= 0, 'the seed knows the joiner');
    assert.ok(performance.now() - t0 < HEAD_TIMEOUT + 2 * TIMER_SLACK);
    // No stranger's stream outlives the head deadline (it never authenticates), however long
    // it keeps trickling: measured after the flood ran for several deadlines.
    await sleep(3 * HEAD_TIMEOUT + BOUND_SLACK);
    const longest = Math.max(attack.oldest(), ...attack.lifetimes);
    assert.ok(attack.lifetimes.length >= 256, `${attack.lifetimes.length} hostile streams closed`);
    assert.ok(longest < HEAD_TIMEOUT + BOUND_SLACK, `a hostile stream lived ${Math.round(longest)} ms`);
    assert.ok(seed.counters.streamsRefused >= 256, `refused ${seed.counters.streamsRefused}`);
  } finally {
    attack.stop();
    await Promise.all([seed.stop(), joiner.stop()]);
  }
});

/** Opens a stream that sends `bytes`, then one byte every `everyMs` (0: nothing more); resolves with what the node answered and when it closed. */
function holdStream(port: number, bytes: Uint8Array, everyMs = 0): Promise<{ answer: Buffer; ms: number }> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    const got: Buffer[] = [];
    const t0 = performance.now();
    let timer: NodeJS.Timeout | null = null;
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', () => {});
    s.on('connect', () => {
      s.write(bytes);
      if (everyMs > 0) timer = setInterval(() => s.write(Buffer.from([0x41])), everyMs);
    });
    s.on('close', () => {
      if (timer) clearInterval(timer);
      resolve({ answer: Buffer.concat(got), ms: performance.now() - t0 });
    });
  });
}

test('authenticated streams share one byte budget; an authenticated stream that trickles is closed at its absolute deadline', async () => {
  const STREAM_TIMEOUT = 1500;
  const seed = new GossipNode({ name: 'seed', keys: [KEY_A], config: { ...FAST, maxStreamBufferBytes: 1000, streamTimeoutMs: STREAM_TIMEOUT } });
  await seed.start();
  const { port } = parseAddr(seed.address)!;
  const insider = new AesGcmSealer(new Keyring([KEY_A]));
  try {
    // Announces 800 bytes and trickles them: within the budget, but never finishes.
    const first = holdStream(port, encodeStreamHead(insider, 800), 100);
    await sleep(200);
    // 800 more would exceed the 1000-byte budget: refused at once, as busy.
    const second = await holdStream(port, encodeStreamHead(insider, 800));
    assert.equal([...second.answer], [WIRE_VERSION, Channel.Refusal, StreamRefusal.Busy]);
    const r = await first;
    assert.equal([...r.answer], [WIRE_VERSION, Channel.Refusal, StreamRefusal.Timeout]);
    // Absolute: bytes kept arriving every 100 ms, yet it closed at the deadline.
    assert.ok(r.ms >= STREAM_TIMEOUT - 50 && r.ms < STREAM_TIMEOUT + BOUND_SLACK, `closed after ${Math.round(r.ms)} ms`);
    // The budget is free again.
    const third = holdStream(port, encodeStreamHead(insider, 800));
    const early = await Promise.race([third, sleep(300).then(() => null)]);
    assert.is(early, null, 'an 800-byte stream fits the budget again');
  } finally {
    await seed.stop();
  }
});

test.run();
