import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AesGcmSealer, Channel, Keyring, KeyringError, OpenFailure } from '../../src/cluster/gossip/security.js';
import { SimNetwork } from '../../src/cluster/gossip/simnet.js';
import { WIRE_VERSION } from '../../src/cluster/gossip/gossip-wire.js';
import { FAST, KEY_A, KEY_B, KEY_C } from './helpers.js';

const plain = Buffer.from('hello gossip');

function opened(r: ReturnType<AesGcmSealer['open']>): Uint8Array {
  if (!r.ok) throw new Error(`open failed: ${r.reason}`);
  return r.plain;
}

test('seal/open round-trips; the layout is header, nonce, ciphertext, tag', () => {
  const s = new AesGcmSealer(new Keyring([KEY_A]), 'prod');
  const sealed = s.seal(plain, Channel.Packet);
  assert.is(sealed.length, plain.length + s.overhead);
  assert.is(s.overhead, 3 + 4 + 12 + 16);
  assert.equal([...sealed.subarray(0, 7)], [WIRE_VERSION, Channel.Packet, 4, ...Buffer.from('prod')]);
  assert.equal(Buffer.from(opened(s.open(sealed, Channel.Packet))), plain);
  assert.not.equal(Buffer.from(sealed.subarray(19, 19 + plain.length)), plain, 'payload is encrypted');
});

test('nonces never repeat between two packets', () => {
  const s = new AesGcmSealer(new Keyring([KEY_A]));
  const a = s.seal(plain, Channel.Packet);
  const b = s.seal(plain, Channel.Packet);
  assert.not.equal(Buffer.from(a.subarray(3, 15)), Buffer.from(b.subarray(3, 15)));
});

test('another key, another label, a tampered byte, the wrong channel: each refused with its reason', () => {
  const s = new AesGcmSealer(new Keyring([KEY_A]), 'prod');
  const sealed = Buffer.from(s.seal(plain, Channel.Packet));
  const other = new AesGcmSealer(new Keyring([KEY_B]), 'prod');
  assert.equal(other.open(sealed, Channel.Packet), { ok: false, reason: OpenFailure.Auth });
  const otherLabel = new AesGcmSealer(new Keyring([KEY_A]), 'staging');
  assert.equal(otherLabel.open(sealed, Channel.Packet), { ok: false, reason: OpenFailure.Label });
  const noLabel = new AesGcmSealer(new Keyring([KEY_A]));
  assert.equal(noLabel.open(sealed, Channel.Packet), { ok: false, reason: OpenFailure.Label });
  for (const i of [20, sealed.length - 1]) {
    const t = Buffer.from(sealed);
    t[i] = (t[i] as number) ^ 1;
    assert.equal(s.open(t, Channel.Packet), { ok: false, reason: OpenFailure.Auth }, `flip at ${i}`);
  }
  assert.equal(s.open(sealed, Channel.Stream), { ok: false, reason: OpenFailure.Malformed }, 'a datagram is not a stream frame');
  // Re-labelling in the clear does not help: the label is authenticated data.
  const relabelled = Buffer.from(sealed);
  relabelled.write('dev!', 3);
  const devSealer = new AesGcmSealer(new Keyring([KEY_A]), 'dev!');
  assert.equal(devSealer.open(relabelled, Channel.Packet), { ok: false, reason: OpenFailure.Auth });
  assert.equal(s.open(sealed.subarray(0, 20), Channel.Packet), { ok: false, reason: OpenFailure.Malformed });
  assert.equal(s.open(new Uint8Array(0), Channel.Packet), { ok: false, reason: OpenFailure.Malformed });
});

test('keyring: primary seals, every key opens; primary cannot be removed', () => {
  const ring = new Keyring([KEY_A, KEY_B]);
  const s = new AesGcmSealer(ring);
  const byB = new AesGcmSealer(new Keyring([KEY_B]));
  assert.ok(s.open(byB.seal(plain, Channel.Packet), Channel.Packet).ok, 'secondary key opens');
  assert.not.ok(byB.open(s.seal(plain, Channel.Packet), Channel.Packet).ok, 'sent with primary A');
  ring.use(KEY_B);
  assert.ok(byB.open(s.seal(plain, Channel.Packet), Channel.Packet).ok, 'now sent with B');
  assert.throws(() => ring.remove(KEY_B), (e: unknown) => e instanceof KeyringError && e.code === 'GOSSIP_ERR_KEYRING');
  ring.remove(KEY_A);
  assert.is(ring.keys().length, 1);
  assert.throws(() => ring.use(KEY_C), (e: unknown) => e instanceof KeyringError);
  assert.throws(() => new Keyring([]), (e: unknown) => e instanceof KeyringError);
  assert.throws(() => new Keyring([Buffer.alloc(16)]), (e: unknown) => e instanceof KeyringError);
});

test('key rotation across a running cluster without a single rejected packet', () => {
  const net = new SimNetwork({ seed: 5, config: FAST });
  const rings = new Map<string, Keyring>();
  const names = ['a', 'b', 'c', 'd'];
  for (const n of names) {
    const ring = new Keyring([KEY_A]);
    rings.set(n, ring);
    net.addNode(n, { sealer: new AesGcmSealer(ring, 'prod') });
  }
  for (const n of names.slice(1)) net.join(n, ['a']);
  const rejected = () => [...net.hosts.values()].reduce((s, h) => s + h.node.counters.rejectedAuth + h.node.counters.rejectedLabel, 0);
  const allLive = () => [...net.hosts.values()].every((h) => h.node.liveCount === 4);
  assert.ok(net.runUntil(allLive, 5000) >= 0);
  // 1. add the new key everywhere; 2. make it primary one node at a time; 3. drop the old one.
  for (const ring of rings.values()) ring.add(KEY_B);
  net.run(1000);
  for (const ring of rings.values()) {
    ring.use(KEY_B);
    net.run(500);
  }
  for (const ring of rings.values()) ring.remove(KEY_A);
  net.run(2000);
  assert.is(rejected(), 0);
  assert.ok(allLive());
  const deadEvents = [...net.hosts.values()].flatMap((h) => h.events.filter((e) => e.type === 'dead' || e.type === 'suspect'));
  assert.is(deadEvents.length, 0, 'nobody was even suspected during rotation');
  // A node still on the old key only is now an outsider.
  net.addNode('old', { sealer: new AesGcmSealer(new Keyring([KEY_A]), 'prod') });
  net.join('old', ['a']);
  net.run(2000);
  assert.ok(rejected() > 0);
  assert.is(net.host('a').node.member('old'), undefined);
});

test.run();
