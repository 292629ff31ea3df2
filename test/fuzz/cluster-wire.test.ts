// Fuzzing the cluster's wire formats through their most stable entry points: the sealed
// envelope of every gossip packet and stream (AES-256-GCM), the datagram records, and the
// presence payloads. test/cluster/fuzz.test.ts and presence-fuzz.test.ts feed the decoders and
// a live node random and mutated bytes; this file adds what they do not: generated messages
// round-trip exactly, a mutated sealed packet never opens (and open never throws), every
// refusal is one of the reasons docs/cluster.md counts, and the kept corpus is replayed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fc from 'fast-check';
import { decodePushPull, decodeRecords, encodeRecord, MessageType, WireError, type PacketMessage } from '../../src/cluster/gossip/gossip-wire.js';
import { AesGcmSealer, Channel, Keyring } from '../../src/cluster/gossip/security.js';
import { decodeBroadcast, decodeState, encodeDelta, encodeLeave, encodeOnline, encodeSet, encodeVersion, type WireLimits } from '../../src/cluster/presence/presence-wire.js';
import { assertHeapFlat, fuzz, hostile, replayCorpus, ROOT } from './harness.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The reasons murmur_gossip_rejected_total counts, as docs/cluster.md lists them. */
const REJECT_REASONS = new Set(
  (/murmur_gossip_rejected_total\{reason\}` \(([^)]+)\)/.exec(readFileSync(join(ROOT, 'docs', 'cluster.md'), 'utf8'))?.[1] ?? '').split(/,\s*/),
);
const LIMITS = { maxMetaBytes: 512, maxMembers: 64 };
const PRESENCE: WireLimits = { maxTopicBytes: 64, maxUserBytes: 64, maxMetaBytes: 128, maxEntriesPerNode: 200, maxUsersPerNode: 50, maxOwners: 16, maxAskUsers: 64 };

/** A decoder's verdict: what it decoded, or that it refused with the malformed reason. */
function decodeOrRefuse<T>(decode: () => T): T | 'malformed' {
  try {
    return decode();
  } catch (err) {
    assert.instance(err, WireError, `only WireError escapes: ${String(err)}`);
    assert.is((err as WireError).code, 'GOSSIP_ERR_MALFORMED');
    return 'malformed';
  }
}

const name = fc.string({ minLength: 1, maxLength: 20 }).filter((s) => Buffer.byteLength(s) <= 255);
const incarnation = fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER));
const seq = fc.nat(0xffffffff);
const message: fc.Arbitrary<PacketMessage> = fc.oneof(
  fc.record({ type: fc.constant(MessageType.Ping), seq, target: name }),
  fc.record({ type: fc.constant(MessageType.PingReq), seq, target: name, targetAddr: name, wantNack: fc.boolean() }),
  fc.record({ type: fc.constantFrom(MessageType.Ack, MessageType.Nack), seq }),
  fc.record({ type: fc.constant(MessageType.Alive), incarnation, name, addr: name, meta: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ type: fc.constantFrom(MessageType.Suspect, MessageType.Dead), incarnation, name, from: name }),
  fc.record({ type: fc.constant(MessageType.User), payload: fc.uint8Array({ maxLength: 64 }) }),
) as fc.Arbitrary<PacketMessage>;
const packet = fc.array(message, { maxLength: 6 });
const packetBytes = packet.map((ms) => new Uint8Array(Buffer.concat(ms.map(encodeRecord))));

test('datagram records: generated messages round-trip exactly', () => {
  fuzz('gossip: round trip', packet, (ms) => {
    const decoded = decodeRecords(Buffer.concat(ms.map(encodeRecord)), LIMITS);
    assert.equal(decoded.map(normal), ms.map(normal));
  }, { decoder: 'gossip-packet', ciRuns: 1000 });
});

/** Byte fields as plain arrays, so a decoded copy equals the original. */
function normal(m: PacketMessage): unknown {
  return JSON.parse(JSON.stringify(m, (_k, v: unknown) => (v instanceof Uint8Array ? [...v] : v)));
}

test('corpus: gossip datagrams, push-pull streams and presence payloads only decode or refuse as malformed', () => {
  replayCorpus('gossip-packet', (b) => {
    decodeOrRefuse(() => decodeRecords(b, LIMITS));
    decodeOrRefuse(() => decodePushPull(b, LIMITS, 4096));
  });
  replayCorpus('presence', (b) => {
    decodeOrRefuse(() => decodeBroadcast(b, PRESENCE));
    decodeOrRefuse(() => decodeState(b, PRESENCE));
  });
});

const KEY = Buffer.alloc(32, 0x5a);
const sealer = new AesGcmSealer(new Keyring([KEY]), 'fuzz');
const sealed = fc.tuple(packetBytes, fc.constantFrom(Channel.Packet, Channel.Stream)).map(([plain, channel]) => ({ plain, channel, sealed: sealer.seal(plain, channel) }));

test('sealed packets: a mutated one never opens, open never throws, every refusal is a documented reason', () => {
  assert.equal([...REJECT_REASONS].sort(), ['auth', 'label', 'malformed', 'version'], 'docs/cluster.md lists the reasons');
  const cases = fc.tuple(sealed, fc.nat(), fc.integer({ min: 0, max: 7 }), fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.nat(3)).map(([s, at, bit, extra, how]) => {
    const b = Buffer.from(s.sealed);
    const i = at % b.length;
    if (how === 0) b[i] = b[i]! ^ (1 << bit);
    const input = how === 0 ? b : how === 1 ? b.subarray(0, i) : how === 2 ? Buffer.concat([b, extra]) : Buffer.from(extra);
    return { ...s, input: new Uint8Array(input) };
  });
  fuzz(
    'gossip: sealed',
    cases,
    (c) => {
      checkSealed(c.input);
      const clean = sealer.open(c.sealed, c.channel);
      assert.ok(clean.ok && Buffer.from(clean.plain).equals(Buffer.from(c.plain)), 'the packet itself opens to its plaintext');
    },
    { decoder: 'gossip-sealed', ciRuns: 1500, bytes: (c) => c.input },
  );
  replayCorpus('gossip-sealed', checkSealed);
});

/** Bytes that were never sealed by this key open on no channel, and open says why with a documented reason. */
function checkSealed(input: Uint8Array): void {
  for (const channel of [Channel.Packet, Channel.Stream]) {
    const r = sealer.open(input, channel);
    if (r.ok) assert.unreachable(`a packet nobody sealed opened on channel ${channel}`);
    else assert.ok(REJECT_REASONS.has(r.reason), r.reason);
  }
}

const presenceName = fc.string({ minLength: 1, maxLength: 10 });
const presenceEntry = fc.record({ user: presenceName, conn: presenceName, meta: fc.constant(null), since: fc.nat() });
const op = fc.oneof(
  fc.tuple(presenceName, fc.boolean()).map(([u, on]) => encodeOnline(u, on)),
  fc.tuple(presenceName, presenceEntry, fc.option(fc.constantFrom('{}', '{"a":1}', '{"n":"x"}'))).map(([t, e, json]) => encodeSet(t, e, json)),
  fc.tuple(presenceName, presenceName).map(([t, c]) => encodeLeave(t, c)),
);
const presencePayload = fc.oneof(
  fc.tuple(presenceName, fc.integer({ min: 1, max: 1000 }), fc.nat(1000), fc.array(op, { minLength: 1, maxLength: 5 })).map(([o, e, b, ops]) => new Uint8Array(encodeDelta(o, e, b, ops))),
  fc.tuple(presenceName, fc.integer({ min: 1, max: 1000 }), fc.nat(1000)).map(([o, e, v]) => new Uint8Array(encodeVersion(o, e, v))),
);

test('presence payloads: hostile bytes decode or refuse as malformed, nothing else', () => {
  fuzz(
    'presence: hostile',
    hostile(presencePayload),
    (b) => {
      decodeOrRefuse(() => decodeBroadcast(b, PRESENCE));
      decodeOrRefuse(() => decodeState(b, PRESENCE));
    },
    { decoder: 'presence', ciRuns: 3000, bytes: (b) => b },
  );
});

test('heap stays flat while opening and decoding hostile packets', () => {
  const samples = fc.sample(fc.tuple(hostile(packetBytes), hostile(presencePayload)), { numRuns: 300, seed: 13 });
  assertHeapFlat(
    (i) => {
      const [g, p] = samples[i % samples.length]!;
      sealer.open(g, Channel.Packet);
      decodeOrRefuse(() => decodeRecords(g, LIMITS));
      decodeOrRefuse(() => decodeBroadcast(p, PRESENCE));
    },
    1000,
    5000,
  );
});

test.run();
