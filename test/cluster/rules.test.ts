import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SwimNode } from '../../src/cluster/gossip/state.js';
import { AesGcmSealer, Channel, Keyring } from '../../src/cluster/gossip/security.js';
import { seededRandom } from '../../src/cluster/gossip/math.js';
import { decodePushPull, decodeRecords, encodePushPull, encodeRecord, MessageType, WireState, type PacketMessage } from '../../src/cluster/gossip/gossip-wire.js';
import type { GossipConfig } from '../../src/cluster/gossip/gossip-config.js';
import type { MembershipEvent } from '../../src/cluster/gossip/transport.js';
import { FAST, KEY_A } from './helpers.js';

// One state machine against a capturing transport: each SWIM / Lifeguard rule in isolation,
// with a fake clock (the `now` passed in).

const LIMITS = { maxMetaBytes: 512, maxMembers: 1000 };
const sealer = new AesGcmSealer(new Keyring([KEY_A]));

interface Sent {
  to: string;
  msgs: PacketMessage[];
}

function harness(config: Partial<GossipConfig> = {}, members = ['b', 'c', 'd', 'e']) {
  const sent: Sent[] = [];
  const streams: { to: string; frame: Uint8Array }[] = [];
  const events: MembershipEvent[] = [];
  const node = new SwimNode({
    name: 'a',
    addr: 'a:1',
    incarnation: 10,
    config: { ...FAST, ...config },
    transport: {
      sendPacket(to, packet) {
        const o = sealer.open(packet, Channel.Packet);
        if (!o.ok) throw new Error('unreadable packet');
        sent.push({ to, msgs: decodeRecords(o.plain, LIMITS) });
      },
      sendStream(to, frame) {
        streams.push({ to, frame });
      },
    },
    sealer,
    random: seededRandom(7),
    onEvent: (e) => events.push(e),
  });
  node.start(0);
  node.preload(members.map((n) => ({ name: n, addr: `${n}:1`, incarnation: 1 })), 0);
  const deliver = (msgs: PacketMessage[], from: string, now: number) => node.receivePacket(sealer.seal(Buffer.concat(msgs.map(encodeRecord)), Channel.Packet), from, now);
  /** Advance the fake clock to `t`, ticking at every deadline on the way. */
  const advance = (t: number) => {
    for (let guard = 0; guard < 10_000; guard++) {
      const d = node.nextDeadline();
      if (d > t) break;
      node.tick(d);
    }
  };
  /** Tick deadline by deadline until the first probe goes out; returns its time. */
  const firstProbe = () => {
    for (let guard = 0; guard < 1000; guard++) {
      const d = node.nextDeadline();
      node.tick(d);
      if (node.counters.probes > 0) return d;
    }
    throw new Error('no probe');
  };
  const of = (type: MessageType) => sent.flatMap((s) => s.msgs.filter((m) => m.type === type).map((m) => ({ to: s.to, m })));
  return { node, sent, streams, events, deliver, advance, of, firstProbe };
}

test('a ping for our name is acked to its sender with the same sequence number', () => {
  const h = harness();
  h.deliver([{ type: MessageType.Ping, seq: 77, target: 'a' }], 'x:9', 1);
  assert.equal(h.of(MessageType.Ack).map((s) => [s.to, (s.m as { seq: number }).seq]), [['x:9', 77]]);
});

test('a ping for another name (a restarted process on a reused address) is not answered', () => {
  const h = harness();
  h.deliver([{ type: MessageType.Ping, seq: 1, target: 'old-name' }], 'x:9', 1);
  assert.is(h.of(MessageType.Ack).length, 0);
});

test('ping-req: we ping the target for the requester and forward its ack with the original sequence', () => {
  const h = harness();
  h.deliver([{ type: MessageType.PingReq, seq: 500, target: 'c', targetAddr: 'c:1', wantNack: true }], 'b:1', 1);
  const ping = h.of(MessageType.Ping).find((s) => s.to === 'c:1');
  assert.ok(ping, 'relayed ping');
  const relaySeq = (ping.m as { seq: number }).seq;
  h.deliver([{ type: MessageType.Ack, seq: relaySeq }], 'c:1', 5);
  assert.equal(h.of(MessageType.Ack).map((s) => [s.to, (s.m as { seq: number }).seq]), [['b:1', 500]]);
  h.advance(1000);
  assert.is(h.of(MessageType.Nack).length, 0, 'no nack after an ack');
});

test('ping-req without an ack: a nack at 80% of the probe timeout (Lifeguard)', () => {
  const h = harness();
  h.deliver([{ type: MessageType.PingReq, seq: 501, target: 'c', targetAddr: 'c:1', wantNack: true }], 'b:1', 100);
  h.advance(100 + Math.floor(FAST.probeTimeoutMs! * 0.8) - 1);
  assert.is(h.of(MessageType.Nack).length, 0);
  h.advance(100 + Math.floor(FAST.probeTimeoutMs! * 0.8));
  assert.equal(h.of(MessageType.Nack).map((s) => [s.to, (s.m as { seq: number }).seq]), [['b:1', 501]]);
  assert.is(h.node.counters.nacksSent, 1);
});

test('a silent target: direct ping, then k ping-reqs at the probe timeout, then suspect at the end of the period', () => {
  const h = harness({ indirectChecks: 2 });
  const t0 = h.firstProbe();
  const ping = h.of(MessageType.Ping)[0];
  assert.ok(ping, 'probe sent');
  const target = (ping.m as { target: string }).target;
  h.advance(t0 + FAST.probeTimeoutMs! - 1);
  assert.is(h.of(MessageType.PingReq).length, 0, 'no ping-req before the probe timeout');
  h.advance(t0 + FAST.probeTimeoutMs!);
  const reqs = h.of(MessageType.PingReq);
  assert.is(reqs.length, 2, 'k = 2 relays asked');
  assert.ok(reqs.every((r) => r.to !== `${target}:1` && (r.m as { target: string }).target === target));
  h.advance(t0 + FAST.probeIntervalMs! - 1);
  assert.is(h.node.member(target)?.state, 'alive', 'not before the end of the period');
  h.advance(t0 + FAST.probeIntervalMs!);
  const suspect = h.events.find((e) => e.type === 'suspect');
  assert.ok(suspect, 'target suspected');
  assert.is(suspect.member.name, target);
  assert.is(h.node.awareness, 2, 'two missed nacks raise our own health score by two');
});

test('nacks from every relay: the target is suspected but our health score stays', () => {
  const h = harness({ indirectChecks: 2 });
  const t0 = h.firstProbe();
  h.advance(t0 + FAST.probeTimeoutMs!);
  for (const r of h.of(MessageType.PingReq)) h.deliver([{ type: MessageType.Nack, seq: (r.m as { seq: number }).seq }], r.to, t0 + FAST.probeTimeoutMs! + 20);
  h.advance(t0 + FAST.probeIntervalMs!);
  assert.ok(h.events.some((e) => e.type === 'suspect'));
  assert.is(h.node.awareness, 0);
});

test('local health stretches the probe period: a node with score s probes every (s + 1) periods', () => {
  const h = harness({ indirectChecks: 2 });
  const t0 = h.firstProbe();
  h.advance(t0 + FAST.probeIntervalMs!); // failed: score 2, next probe at once
  assert.is(h.node.awareness, 2);
  const probes = h.node.counters.probes;
  h.advance(t0 + FAST.probeIntervalMs! + 3 * FAST.probeIntervalMs! - 1);
  assert.is(h.node.counters.probes, probes, 'the stretched period (3x) has not ended');
  h.advance(t0 + FAST.probeIntervalMs! + 3 * FAST.probeIntervalMs!);
  assert.is(h.node.counters.probes, probes + 1);
});

test('an ack within the timeout clears the probe and lowers the health score', () => {
  const h = harness();
  h.node.counters.awareness = 0;
  const t0 = h.firstProbe();
  const ping = h.of(MessageType.Ping)[0];
  assert.ok(ping);
  h.deliver([{ type: MessageType.Ack, seq: (ping.m as { seq: number }).seq }], ping.to, t0 + 5);
  h.advance(t0 + FAST.probeIntervalMs! - 1);
  assert.is(h.of(MessageType.PingReq).length, 0);
  assert.is(h.node.counters.probeFailures, 0);
  assert.is(h.node.awareness, 0);
});

test('probing is round-robin: every member is probed once per pass', () => {
  const members = ['b', 'c', 'd', 'e', 'f', 'g'];
  const h = harness({}, members);
  for (let p = 1; p <= 12; p++) {
    h.advance(p * FAST.probeIntervalMs!);
    const last = h.of(MessageType.Ping).at(-1);
    if (last) h.deliver([{ type: MessageType.Ack, seq: (last.m as { seq: number }).seq }], last.to, p * FAST.probeIntervalMs!);
  }
  const targets = h.of(MessageType.Ping).map((s) => (s.m as { target: string }).target);
  assert.ok(targets.length >= 12);
  assert.equal([...targets.slice(0, 6)].sort(), members, 'first pass covers everyone');
  assert.equal([...targets.slice(6, 12)].sort(), members, 'second pass too');
});

test('suspected ourselves: refute with an incarnation above the accusation', () => {
  const h = harness();
  h.deliver([{ type: MessageType.Suspect, incarnation: 12, name: 'a', from: 'b' }], 'b:1', 1);
  assert.is(h.node.incarnation, 13);
  assert.is(h.node.counters.refutations, 1);
  h.deliver([{ type: MessageType.Dead, incarnation: 13, name: 'a', from: 'b' }], 'b:1', 2);
  assert.is(h.node.incarnation, 14);
  h.deliver([{ type: MessageType.Suspect, incarnation: 3, name: 'a', from: 'b' }], 'b:1', 3);
  assert.is(h.node.incarnation, 14, 'a stale accusation is ignored');
  h.advance(1000);
  const alive = h.of(MessageType.Alive).filter((s) => (s.m as { name: string }).name === 'a');
  assert.ok(alive.some((s) => (s.m as { incarnation: number }).incarnation === 14), 'the refutation is gossiped');
});

test('incarnation ordering: only strictly newer news changes a member', () => {
  const h = harness();
  const susp = (inc: number) => h.deliver([{ type: MessageType.Suspect, incarnation: inc, name: 'b', from: 'c' }], 'c:1', 1);
  const alive = (inc: number, addr = 'b:1') => h.deliver([{ type: MessageType.Alive, incarnation: inc, name: 'b', addr, meta: new Uint8Array(0) }], 'c:1', 2);
  susp(1);
  assert.is(h.node.member('b')?.state, 'suspect');
  alive(1);
  assert.is(h.node.member('b')?.state, 'suspect', 'same incarnation does not refute');
  alive(2);
  assert.is(h.node.member('b')?.state, 'alive');
  susp(1);
  assert.is(h.node.member('b')?.state, 'alive', 'older suspicion ignored');
  h.deliver([{ type: MessageType.Dead, incarnation: 2, name: 'b', from: 'c' }], 'c:1', 3);
  assert.is(h.node.member('b')?.state, 'dead');
  alive(2, 'b:old');
  assert.is(h.node.member('b')?.state, 'dead', 'the dead incarnation cannot be resurrected');
  alive(3, 'b:new');
  assert.equal([h.node.member('b')?.state, h.node.member('b')?.addr], ['alive', 'b:new'], 'a new life rejoins');
  assert.equal(h.events.filter((e) => e.member.name === 'b').map((e) => e.type), ['suspect', 'alive', 'dead', 'join']);
});

test('a leave (dead from the member itself) is effective at once, without suspicion', () => {
  const h = harness();
  h.deliver([{ type: MessageType.Dead, incarnation: 1, name: 'c', from: 'c' }], 'c:1', 1);
  assert.is(h.node.member('c')?.state, 'left');
  assert.equal(h.events.map((e) => e.type), ['leave']);
});

test('suspicion timeout: dead at max without confirmations, sooner with them', () => {
  const h = harness({}, ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']); // n = 10: k = 2
  const min = 4 * FAST.probeIntervalMs!;
  const max = 6 * min;
  h.deliver([{ type: MessageType.Suspect, incarnation: 1, name: 'b', from: 'c' }], 'c:1', 0);
  h.deliver([{ type: MessageType.Suspect, incarnation: 1, name: 'd', from: 'c' }], 'c:1', 0);
  h.deliver([{ type: MessageType.Suspect, incarnation: 1, name: 'd', from: 'e' }], 'e:1', 1);
  h.deliver([{ type: MessageType.Suspect, incarnation: 1, name: 'd', from: 'f' }], 'f:1', 2);
  // Keep b and d out of our own probes' reach: ack everything else promptly.
  const deaths = () => h.events.filter((e) => e.type === 'dead').map((e) => [e.member.name, e.at]);
  for (let t = 0; t <= max + 1; t += 10) {
    h.advance(t);
    for (const s of h.of(MessageType.Ping)) {
      const name = (s.m as { target: string }).target;
      if (name !== 'b' && name !== 'd') h.deliver([{ type: MessageType.Ack, seq: (s.m as { seq: number }).seq }], s.to, t);
    }
    h.sent.length = 0;
  }
  const d = deaths();
  assert.is(d.length, 2, JSON.stringify(d));
  const dAt = d.find(([n]) => n === 'd')?.[1] as number;
  const bAt = d.find(([n]) => n === 'b')?.[1] as number;
  assert.ok(dAt <= min + 10, `two confirmations bring d to the minimum (${dAt} <= ${min})`);
  assert.ok(bAt <= max + 10, `b at most at max (${bAt})`);
  assert.ok(bAt > dAt, 'b took longer than the confirmed d');
});

test('a refuted suspicion never fires: the stale deadline is ignored', () => {
  const h = harness();
  const max = 6 * 4 * FAST.probeIntervalMs!; // n = 5, no confirmations
  h.deliver([{ type: MessageType.Suspect, incarnation: 1, name: 'b', from: 'c' }], 'c:1', 0);
  h.deliver([{ type: MessageType.Alive, incarnation: 2, name: 'b', addr: 'b:1', meta: new Uint8Array(0) }], 'b:1', 10);
  h.deliver([{ type: MessageType.Suspect, incarnation: 2, name: 'b', from: 'd' }], 'd:1', 100);
  h.node.tick(max + 50);
  assert.is(h.node.member('b')?.state, 'suspect', 'the first suspicion deadline did not kill the second');
  h.node.tick(max + 100);
  assert.is(h.node.member('b')?.state, 'dead', 'the second one fires on its own deadline');
});

test('push-pull: the request carries our state, the reply theirs, remote dead becomes local suspect', () => {
  const h = harness();
  const remote = encodePushPull({
    type: MessageType.PushPull,
    join: false,
    reply: false,
    members: [
      { name: 'z', addr: 'z:1', meta: new Uint8Array(0), incarnation: 4, state: WireState.Alive },
      { name: 'b', addr: 'b:1', meta: new Uint8Array(0), incarnation: 1, state: WireState.Dead },
      { name: 'c', addr: 'c:1', meta: new Uint8Array(0), incarnation: 1, state: WireState.Left },
    ],
    userState: new Uint8Array(0),
  });
  const res = h.node.receiveStream(sealer.seal(remote, Channel.Stream), 'z:1', 5);
  assert.ok(res.ok);
  assert.ok(res.reply);
  assert.equal([h.node.member('z')?.state, h.node.member('b')?.state, h.node.member('c')?.state], ['alive', 'suspect', 'left']);
  const o = sealer.open(res.reply, Channel.Stream);
  assert.ok(o.ok);
  const reply = decodePushPull(o.plain, LIMITS, 1 << 20);
  assert.ok(reply.reply);
  assert.equal(reply.members.map((m) => m.name).sort(), ['a', 'b', 'c', 'd', 'e', 'z']);
  const again = h.node.receiveStream(sealer.seal(encodePushPull({ ...reply, members: [] }), Channel.Stream), 'z:1', 6);
  assert.equal(again, { ok: true, reply: null }, 'a reply is not answered');
});

test('join sends a push-pull flagged join to each seed but ourselves', () => {
  const h = harness({}, []);
  assert.is(h.node.join(['s1:1', 'a:1', 's2:1'], 0), 2);
  assert.equal(h.streams.map((s) => s.to), ['s1:1', 's2:1']);
  const o = sealer.open(h.streams[0]!.frame, Channel.Stream);
  assert.ok(o.ok && decodePushPull(o.plain, LIMITS, 1 << 20).join);
});

test('datagrams never exceed maxPacketBytes, however much news is queued', () => {
  const many = Array.from({ length: 200 }, (_, i) => `member-with-a-long-name-${i}`);
  const sizes: number[] = [];
  const node = new SwimNode({
    name: 'a',
    addr: 'a:1',
    config: { ...FAST, maxPacketBytes: 600 },
    transport: { sendPacket: (_to, p) => sizes.push(p.length), sendStream() {} },
    sealer,
    random: seededRandom(1),
  });
  node.start(0);
  for (const n of many) node.receivePacket(sealer.seal(encodeRecord({ type: MessageType.Alive, incarnation: 1, name: n, addr: `${n}:1`, meta: new Uint8Array(40) }), Channel.Packet), 'x:1', 1);
  for (let t = 0; t < 3000; t += 5) node.tick(t);
  assert.ok(sizes.length > 50);
  assert.ok(Math.max(...sizes) <= 600, `largest ${Math.max(...sizes)}`);
  assert.ok(sizes.filter((s) => s > 500).length > 10, 'packets are filled, several messages each');
});

test.run();
