import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodePushPull, decodeRecords, encodePushPull, encodeRecord, MessageType, WireError, WireState, type PacketMessage } from '../../src/cluster/gossip/gossip-wire.js';
import { AesGcmSealer, Channel, Keyring } from '../../src/cluster/gossip/security.js';
import { SwimNode } from '../../src/cluster/gossip/state.js';
import { seededRandom, type Random } from '../../src/cluster/gossip/math.js';
import { FAST, KEY_A } from './helpers.js';
import { mutate, randomBytes } from './fuzz-helpers.js';

// Hostile input: random bytes and mutations of valid packets must be dropped and counted,
// never crash the node, never allocate more than the input justifies.

const LIMITS = { maxMetaBytes: 512, maxMembers: 64 };


function sampleMessages(r: Random): PacketMessage[] {
  const name = () => `n${Math.floor(r() * 1000)}`;
  const inc = () => Math.floor(r() * 1e6);
  return [
    { type: MessageType.Ping, seq: Math.floor(r() * 2 ** 32), target: 'target' },
    { type: MessageType.PingReq, seq: 1, target: name(), targetAddr: '127.0.0.1:9', wantNack: r() < 0.5 },
    { type: MessageType.Ack, seq: 2 },
    { type: MessageType.Nack, seq: 3 },
    { type: MessageType.Alive, incarnation: inc(), name: name(), addr: `h:${Math.floor(r() * 9999)}`, meta: randomBytes(r, 40) },
    { type: MessageType.Suspect, incarnation: inc(), name: name(), from: name() },
    { type: MessageType.Dead, incarnation: inc(), name: name(), from: name() },
    { type: MessageType.User, payload: randomBytes(r, 30) },
  ];
}


function onlyWireErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
  }
}

test('random bytes: the datagram decoder only ever raises WireError', () => {
  const r = seededRandom(1);
  for (let i = 0; i < 30_000; i++) onlyWireErrors(() => decodeRecords(randomBytes(r, 64), LIMITS));
});

test('mutated valid packets: only WireError, and every decoded message is well-formed', () => {
  const r = seededRandom(2);
  for (let i = 0; i < 30_000; i++) {
    const msgs = sampleMessages(r).filter(() => r() < 0.4);
    let packet: Buffer = Buffer.concat(msgs.map(encodeRecord));
    const rounds = 1 + Math.floor(r() * 3);
    for (let j = 0; j < rounds; j++) packet = mutate(r, packet);
    onlyWireErrors(() => {
      for (const m of decodeRecords(packet, LIMITS)) {
        if ('name' in m) assert.ok(m.name.length > 0);
        if (m.type === MessageType.Alive) assert.ok(m.meta.length <= LIMITS.maxMetaBytes);
        if ('incarnation' in m) assert.ok(Number.isSafeInteger(m.incarnation));
      }
    });
  }
});

test('random and mutated push-pull frames: only WireError', () => {
  const r = seededRandom(3);
  const members = Array.from({ length: 10 }, (_, i) => ({ name: `m${i}`, addr: `a:${i}`, meta: new Uint8Array(i), incarnation: i, state: (i % 4) as WireState }));
  const valid = encodePushPull({ type: MessageType.PushPull, join: true, reply: false, members, userState: new Uint8Array(20) });
  for (let i = 0; i < 20_000; i++) {
    onlyWireErrors(() => decodePushPull(randomBytes(r, 64), LIMITS, 1024));
    let m: Buffer = Buffer.from(valid);
    for (let j = 0; j < 1 + Math.floor(r() * 3); j++) m = mutate(r, m);
    onlyWireErrors(() => decodePushPull(m, LIMITS, 1024));
  }
});

function fuzzNode(): SwimNode {
  const node = new SwimNode({
    name: 'target',
    addr: 'target:1',
    config: { ...FAST, maxMembers: LIMITS.maxMembers, maxPendingRelays: 16 },
    transport: { sendPacket() {}, sendStream() {} },
    sealer: new AesGcmSealer(new Keyring([KEY_A])),
    random: seededRandom(4),
  });
  node.start(0);
  return node;
}

test('a node fed garbage and insider-forged garbage never throws and stays within its bounds', () => {
  const node = fuzzNode();
  const insider = new AesGcmSealer(new Keyring([KEY_A]));
  const r = seededRandom(5);
  let now = 0;
  for (let i = 0; i < 20_000; i++) {
    now += 1;
    // Outsider: random bytes, rejected before decryption succeeds.
    node.receivePacket(randomBytes(r, 200), 'x:1', now);
    // Insider with the key: sealed, mutated plaintexts go through the decoder and the rules.
    const msgs = sampleMessages(r).filter(() => r() < 0.5);
    let plain: Buffer = Buffer.concat(msgs.map(encodeRecord));
    if (r() < 0.5) plain = mutate(r, plain);
    node.receivePacket(insider.seal(plain, Channel.Packet), `h:${i % 50}`, now);
    if (i % 100 === 0) {
      node.receiveStream(randomBytes(r, 100), 'x:2', now);
      node.receiveStream(insider.seal(mutate(r, encodePushPull({ type: MessageType.PushPull, join: false, reply: false, members: [], userState: new Uint8Array(0) })), Channel.Stream), 'x:3', now);
    }
    if (node.nextDeadline() <= now) node.tick(now);
  }
  const c = node.counters;
  assert.ok(c.rejectedAuth + c.rejectedMalformed + c.rejectedVersion > 20_000, 'rejections are counted');
  assert.ok(node.members().length <= LIMITS.maxMembers, `members ${node.members().length} within maxMembers`);
  assert.ok(c.membersRejected > 0, 'newcomers beyond maxMembers were refused and counted');
});

test('memory stays bounded while decoding hostile input', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage().heapUsed;
  const r = seededRandom(6);
  // Tiny frames claiming huge counts and lengths: each must be refused before allocating.
  for (let i = 0; i < 100_000; i++) {
    const claim = Buffer.from([MessageType.PushPull, 0, 0xff, 0xff, 0xff, Math.floor(r() * 256)]);
    onlyWireErrors(() => decodePushPull(claim, { maxMetaBytes: 512, maxMembers: 2 ** 32 }, 2 ** 32));
    const bytes32 = Buffer.from([MessageType.PushPull, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    onlyWireErrors(() => decodePushPull(bytes32, LIMITS, 2 ** 32));
  }
  gc?.();
  const grown = process.memoryUsage().heapUsed - before;
  assert.ok(grown < 32 * 1024 * 1024, `heap grew ${grown} bytes`);
});

test.run();
