import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, type Socket } from 'node:net';
import { GossipNode, parseAddr } from '../../src/cluster/gossip/node.js';
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

test.run();
