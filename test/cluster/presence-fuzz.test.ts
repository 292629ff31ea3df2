// Hostile presence input: random bytes and mutations of valid deltas, notices and states go
// through the decoders and through a live store's gossip delegate. Nothing may throw out of
// the delegate, every rejection is counted, counts and lengths are checked against the bytes
// present before anything is allocated, and each bound has its own case.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ClusterPresence, type PresenceHost } from '../../src/cluster/presence/store.js';
import { WireError, Writer } from '../../src/cluster/gossip/gossip-wire.js';
import {
  PayloadKind,
  decodeBroadcast,
  decodeState,
  encodeDelta,
  encodeLeave,
  encodeOnline,
  encodeSet,
  encodeState,
  encodeVersion,
  type WireLimits,
} from '../../src/cluster/presence/presence-wire.js';
import { seededRandom, type Random } from '../../src/cluster/gossip/math.js';
import { entry } from './presence-helpers.js';
import { mutate, randomBytes } from './fuzz-helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const LIMITS: WireLimits = { maxTopicBytes: 64, maxUserBytes: 64, maxMetaBytes: 128, maxEntriesPerNode: 200, maxUsersPerNode: 50, maxOwners: 16, maxAskUsers: 64 };



function samples(r: Random): Buffer[] {
  const n = () => Math.floor(r() * 1000);
  const ops = [
    encodeOnline(`user-${n()}`, true),
    encodeOnline(`user-${n()}`, false),
    encodeSet(`room:${n()}`, entry(`u${n()}`, `c.${n()}`, null, n()), JSON.stringify({ name: `N${n()}`, x: [1, 2, { y: 'z' }] })),
    encodeSet('t', entry('u', 'c'), null),
    encodeLeave(`room:${n()}`, `c.${n()}`),
  ];
  return [
    encodeDelta(`n${n() % 4}`, 1 + n(), n(), ops),
    encodeDelta('n1', 7, 0, ops.slice(0, 1)),
    encodeVersion(`n${n() % 4}`, 1 + n(), n()),
    encodeState(
      `n${n() % 4}`,
      1 + n(),
      n(),
      ['a', 'b', `u${n()}`],
      [
        ['t1', [entry('u1', 'c1', { a: 1 }), entry('u2', 'c2')]],
        ['t2', [entry('u3', 'c3')]],
      ],
      [{ owner: 'n2', epoch: 3, version: n() }],
    ),
  ];
}

function decodeAny(b: Uint8Array): void {
  try {
    decodeBroadcast(b, LIMITS);
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
  }
  try {
    decodeState(b, LIMITS);
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
  }
}

/** A store on a host that treats every name as a live member and swallows what it sends. */
function victim(): { p: ClusterPresence; sent: number } {
  const out = { p: null as unknown as ClusterPresence, sent: 0 };
  const host: PresenceHost = {
    broadcast: () => {
      out.sent++;
    },
    maxPayloadBytes: 1300,
    syncWith: () => true,
    query: () => true,
    isLive: () => true,
  };
  out.p = new ClusterPresence({ name: 'me', epoch: 5, limits: { ...LIMITS, maxOwners: 16, maxBufferedDeltas: 8 } });
  out.p.attach(host);
  return out;
}

test('decoders: random bytes and mutated payloads either decode or throw WireError, nothing else', () => {
  const r = seededRandom(99);
  for (let i = 0; i < 20_000; i++) {
    const raw = randomBytes(r, 200);
    if (raw.length > 0 && r() < 0.7) raw[0] = [PayloadKind.Delta, PayloadKind.Version, PayloadKind.State][Math.floor(r() * 3)]!;
    decodeAny(raw);
  }
  for (let i = 0; i < 20_000; i++) {
    let b: Buffer = samples(r)[Math.floor(r() * 4)]!;
    const rounds = 1 + Math.floor(r() * 3);
    for (let k = 0; k < rounds; k++) b = mutate(r, b);
    decodeAny(b);
  }
});

test('the delegate never throws on hostile input, counts every rejection, and stays within its bounds', () => {
  const r = seededRandom(7);
  const { p } = victim();
  let before = 0;
  for (let i = 0; i < 30_000; i++) {
    const pick = samples(r)[Math.floor(r() * 4)]!;
    const b = r() < 0.15 ? pick : mutate(r, pick);
    if (b[0] === PayloadKind.State) p.delegate.mergeRemoteState?.(b, false);
    else p.delegate.notifyMessage?.(b);
    if (i % 1000 === 0) p.tick(i);
    before++;
  }
  const c = p.counters;
  assert.ok(c.deltasDropped + c.statesDropped > 1000, `rejections counted: ${c.deltasDropped} + ${c.statesDropped}`);
  assert.ok(c.deltasReceived > 1000 && c.statesMerged > 0, `valid input still handled: ${c.deltasReceived} deltas, ${c.statesMerged} states`);
  const s = p.replicationStats();
  assert.ok(s.owners + s.tombstones <= 16, `${s.owners} owners`);
  assert.ok(p.stats().entries <= 16 * LIMITS.maxEntriesPerNode);
  assert.is(before, 30_000);
});

test('heap stays flat over 50,000 hostile payloads', () => {
  const r = seededRandom(11);
  const { p } = victim();
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      const b = mutate(r, samples(r)[Math.floor(r() * 4)]!);
      if (b[0] === PayloadKind.State) p.delegate.mergeRemoteState?.(b, false);
      else p.delegate.notifyMessage?.(b);
    }
  };
  run(10_000); // reach the steady state (owners and entries at their bounds)
  gc();
  const h0 = process.memoryUsage().heapUsed;
  run(50_000);
  gc();
  const grew = process.memoryUsage().heapUsed - h0;
  assert.ok(grew < 8 * 1024 * 1024, `heap grew ${(grew / 1048576).toFixed(1)} MiB`);
});

/** A state header claiming `count` of something, with almost no bytes behind it. */
function claim(build: (w: Writer) => void): Buffer {
  const w = new Writer(64);
  w.u8(PayloadKind.State);
  w.str8('n1');
  w.u53(1);
  w.u53(1);
  build(w);
  return Buffer.from(w.finish());
}

function rejects(fn: () => unknown, match: RegExp): void {
  try {
    fn();
  } catch (err) {
    assert.instance(err, WireError);
    assert.match((err as Error).message, match);
    return;
  }
  assert.unreachable('expected a WireError');
}

test('counts are checked against the bytes present before anything is allocated', () => {
  rejects(() => decodeState(claim((w) => w.u32(40)), LIMITS), /user count exceeds its bytes/);
  rejects(() => decodeState(claim((w) => w.u32(0xffffffff)), { ...LIMITS, maxUsersPerNode: 2 ** 32 }), /user count exceeds its bytes/);
  rejects(() => decodeState(claim((w) => (w.u32(0), w.u32(100))), LIMITS), /topic count exceeds its bytes/);
  rejects(
    () =>
      decodeState(
        claim((w) => {
          w.u32(0);
          w.u32(1);
          w.u16(1);
          w.raw(Buffer.from('t'));
          w.u32(150);
        }),
        LIMITS,
      ),
    /entry count exceeds its bytes/,
  );
  rejects(() => decodeState(claim((w) => (w.u32(0), w.u32(0), w.u16(10))), LIMITS), /digest count exceeds its bytes/);
  const d = new Writer(32);
  d.u8(PayloadKind.Delta);
  d.str8('n1');
  d.u53(1);
  d.u53(0);
  d.u16(0xffff);
  rejects(() => decodeBroadcast(d.finish(), LIMITS), /op count exceeds its bytes/);
});

test('each bound: topic, user and meta bytes, meta shape, users, entries, digests, epoch 0, unknown ops, trailing bytes', () => {
  const long = (n: number) => 'x'.repeat(n);
  rejects(() => decodeBroadcast(encodeDelta('n', 1, 0, [encodeSet(long(65), entry('u', 'c'), null)]), LIMITS), /topic of 65 bytes/);
  rejects(() => decodeBroadcast(encodeDelta('n', 1, 0, [encodeOnline(long(65), true)]), LIMITS), /user of 65 bytes/);
  rejects(() => decodeBroadcast(encodeDelta('n', 1, 0, [encodeSet('t', entry('u', 'c'), JSON.stringify({ a: long(130) }))]), LIMITS), /meta of \d+ bytes above limit 128/);
  rejects(() => decodeBroadcast(encodeDelta('n', 1, 0, [encodeSet('t', entry('u', 'c'), '[1,2]')]), LIMITS), /not a JSON object/);
  rejects(() => decodeBroadcast(encodeDelta('n', 1, 0, [encodeSet('t', entry('u', 'c'), '{"a":')]), LIMITS), /not JSON/);
  rejects(() => decodeBroadcast(encodeDelta('n', 1, 0, [Buffer.from([9, 0, 1, 65])]), LIMITS), /unknown op 9/);
  rejects(() => decodeBroadcast(encodeVersion('n', 0, 1), LIMITS), /epoch 0/);
  rejects(() => decodeBroadcast(Buffer.concat([encodeVersion('n', 1, 1), Buffer.from([0])]), LIMITS), /trailing/);
  const users = Array.from({ length: 51 }, (_, i) => `u${i}`);
  rejects(() => decodeState(encodeState('n', 1, 1, users, [], []), LIMITS), /51 users above limit 50/);
  const many = Array.from({ length: 201 }, (_, i) => entry('u', `c${i}`));
  rejects(() => decodeState(encodeState('n', 1, 1, [], [['t', many]], []), LIMITS), /more than 200 entries/);
  const digests = Array.from({ length: 17 }, (_, i) => ({ owner: `o${i}`, epoch: 1, version: 1 }));
  rejects(() => decodeState(encodeState('n', 1, 1, [], [], digests), LIMITS), /17 digests above limit 16/);
  assert.is(decodeBroadcast(Buffer.from([0x01, 2, 3]), LIMITS), null, "another layer's payload is skipped");
  assert.is(decodeState(Buffer.from([0x01]), LIMITS), null);
});

test('out-of-order deltas beyond maxBufferedDeltas are dropped and counted, and the gap is repaired', () => {
  const { p } = victim();
  p.delegate.notifyMessage?.(encodeVersion('peer', 3, 0));
  for (let i = 1; i <= 12; i++) p.delegate.notifyMessage?.(encodeDelta('peer', 3, i, [encodeSet('t', entry('u', `c${i}`), null)]));
  assert.is(p.counters.deltasDropped, 12 - 8, 'beyond the 8 buffered');
  assert.is(p.count('t'), 0, 'nothing applied across the gap');
  assert.ok(p.nextDeadline() < Infinity, 'a repair pull is planned');
});

test.run();
