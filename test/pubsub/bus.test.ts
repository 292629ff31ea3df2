import { test } from 'uvu';
import { FrameRecorder as FakeSub } from '../helpers/recorder.js';
import * as assert from 'uvu/assert';
import { Topics } from '../../src/pubsub/topics.js';
import type { EnvelopeHook } from '../../src/pubsub/topics.js';
import type { BusDelivery, BusInterest, BusInterestFeed, BusOrdering, OrderingHost } from '../../src/pubsub/bus.js';
import { encodeBusRecord, decodeBusRecord } from '../../src/pubsub/bus-record.js';

/** A delivery-only bus joining some Topics: what one publishes, every other receives (synchronously). */
class MemoryBus implements BusDelivery {
  peers: MemoryBus[] = [];
  receiver: ((topic: string, data: Buffer, isBinary: boolean) => void) | null = null;
  published = 0;
  publish(topic: string, data: Buffer, isBinary: boolean): void {
    this.published++;
    for (const p of this.peers) if (p !== this) p.receiver?.(topic, data, isBinary);
  }
  onMessage(receiver: (topic: string, data: Buffer, isBinary: boolean) => void): void {
    this.receiver = receiver;
  }
  close(): void {}
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const history = () => ({ maxMessages: 10, maxBytes: 1 << 16, maxAgeMs: 0 });
const stamp: EnvelopeHook = (topic, position, from, data) => `${topic}|${position === null ? '-' : position.offset}|${from}|${String(data)}`;

function twoNodes(): { a: Topics; b: Topics; busA: MemoryBus; busB: MemoryBus } {
  const busA = new MemoryBus();
  const busB = new MemoryBus();
  busA.peers = busB.peers = [busA, busB];
  const a = new Topics(256, 10, history);
  const b = new Topics(256, 10, history);
  a.envelope = b.envelope = stamp;
  a.useBus(busA);
  b.useBus(busB);
  return { a, b, busA, busB };
}

test('envelope hook: each node stamps its own history position, on a local publish and on a record from the bus', async () => {
  const { a, b, busA, busB } = twoNodes();
  const sa = new FakeSub();
  const sb = new FakeSub();
  a.subscribe(sa, 't');
  b.subscribe(sb, 't');
  // Node b has a history of its own already: its positions run ahead of a's.
  b.publishLocal('t', 'local-only', false);
  a.publish('t', 'hi', false, null, 'ada');
  await tick();
  assert.equal(sa.payloads, ['t|1|ada|hi']);
  // b's history holds its own message first: the remote one takes b's offset 2, not a's 1.
  assert.equal(sb.payloads, ['local-only', 't|2|ada|hi']);
  assert.is(b.position('t')!.offset, 2);
  // The record entered pub/sub once on b, and never went back onto the bus.
  assert.is(busA.published, 1);
  assert.is(busB.published, 0);
  assert.is(b.busCounters.received, 1);
  assert.is(a.busCounters.sent, 1);
});

test('envelope hook: a position is the offset the message takes in that node\'s history', async () => {
  const { a, b } = twoNodes();
  const sb = new FakeSub();
  b.subscribe(sb, 't');
  b.publish('t', 'x', false, null, 'bob'); // b's offset 1
  a.publish('t', 'y', false, null, 'ada'); // offset 2 on both, in two epochs
  await tick();
  assert.equal(sb.payloads, ['t|1|bob|x', 't|2|ada|y']);
  assert.is(a.position('t')!.offset, 2, "b's message reached a's history too");
  assert.is(b.position('t')!.offset, 2);
  assert.is.not(a.position('t')!.epoch, b.position('t')!.epoch);
});

test('with envelope hooks, a message without a publisher crosses as a record and arrives unstamped', async () => {
  const { a, b, busA } = twoNodes();
  const seen: Buffer[] = [];
  const publish = busA.publish.bind(busA);
  busA.publish = (topic, data, isBinary) => {
    seen.push(data);
    publish(topic, data, isBinary);
  };
  const sb = new FakeSub();
  b.subscribe(sb, 'plain');
  a.publish('plain', 'raw', false, null, null);
  await tick();
  assert.equal(sb.payloads, ['raw']);
  assert.equal(decodeBusRecord(seen[0]!), { from: null, payload: Buffer.from('raw'), isBinary: false });
});

test('without envelope hooks (the library) the bus carries the bare message, as it always did', async () => {
  const { a, b, busA } = twoNodes();
  a.envelope = b.envelope = null;
  const seen: Array<[Buffer, boolean]> = [];
  const publish = busA.publish.bind(busA);
  busA.publish = (topic, data, isBinary) => {
    seen.push([data, isBinary]);
    publish(topic, data, isBinary);
  };
  const sb = new FakeSub();
  b.subscribe(sb, 'plain');
  a.publish('plain', 'raw', false, null, null);
  a.publish('plain', Buffer.from('bytes'), true, null, 'ada'); // no hook: the publisher is not used
  await tick();
  assert.equal(sb.payloads, ['raw', 'bytes']);
  assert.equal(seen.map(([d, bin]) => `${d}/${bin}`), ['raw/false', 'bytes/true']);
  assert.is(b.busCounters.received, 2);
});

test('records from the bus that do not decode are counted, reported and never delivered', async () => {
  const bus = new MemoryBus();
  const t = new Topics(256, 10);
  t.envelope = (_topic, _position, _from, data) => data;
  t.useBus(bus);
  let reported = 0;
  t.onRejected = () => reported++;
  const s = new FakeSub();
  t.subscribe(s, 'room:a');
  const good = encodeBusRecord('ada', '1');
  // A publisher id holding the UTF-8-like encoding of a lone surrogate (ED A0 BD): not UTF-8.
  const bad = Buffer.from(good);
  bad.set([0xed, 0xa0, 0xbd], 4);
  for (let i = 0; i < 100; i++) bus.receiver!('room:a', bad, true);
  bus.receiver!('room:a', good, true);
  await tick();
  assert.is(t.busCounters.rejected, 100);
  assert.is(reported, 100);
  assert.is(t.busCounters.received, 1);
  assert.equal(s.payloads, ['1']);
});

test('bus seam: a delivery-only bus gets no interest; an interest bus is given the view and every change', () => {
  const plain = new MemoryBus();
  const t = new Topics(256, 10);
  t.useBus(plain);
  t.subscribe(new FakeSub(), 'x'); // nothing to tell, nothing thrown

  const changes: Array<[string, boolean]> = [];
  let view: BusInterest | null = null;
  const interested: BusDelivery & BusInterestFeed = {
    publish() {},
    onMessage() {},
    close() {},
    watchInterest: (i) => void (view = i),
    interestChanged: (topic, on) => void changes.push([topic, on]),
  };
  const u = new Topics(256, 10);
  const s = new FakeSub();
  u.subscribe(s, 'before');
  u.useBus(interested);
  assert.equal([...view!.topics()], ['before']);
  u.subscribe(s, 'after');
  u.unsubscribe(s, 'before');
  assert.ok(view!.has('after'));
  assert.not.ok(view!.has('before'));
  assert.equal(changes, [['after', true], ['before', false]]);
  u.useBus(null);
  u.unsubscribe(s, 'after');
  assert.is(changes.length, 2, 'a detached bus hears nothing more');
});

test('replay goes after the messages published in this tick (history never overtakes live messages)', () => {
  const t = new Topics(256, 10);
  const s = new FakeSub();
  t.subscribe(s, 'live');
  t.publish('live', 'first', false, null);
  const kept = Buffer.from([0x81, 3, 0x6f, 0x6c, 0x64]); // a text frame "old"
  t.replay(s, [kept], 1);
  assert.equal(s.payloads, ['first', 'old']);
});

test('bus records: round trip, no publisher, and every malformed record is refused', () => {
  for (const payload of ['{"a":1}', Buffer.from([1, 2, 3]), '', Buffer.alloc(0)]) {
    for (const from of ['ada', null]) {
      const back = decodeBusRecord(encodeBusRecord(from, payload))!;
      assert.is(back.from, from);
      assert.is(back.isBinary, typeof payload !== 'string');
      assert.equal([...back.payload], [...Buffer.from(payload)]);
    }
  }
  // Text given as bytes stays text.
  assert.is(decodeBusRecord(encodeBusRecord('ada', Buffer.from('x'), false))!.isBinary, false);
  const good = encodeBusRecord('ada', 'x');
  assert.is(decodeBusRecord(good.subarray(0, 3)), null, 'truncated header');
  assert.is(decodeBusRecord(Buffer.from([2, 0, 0, 1, 0x61])), null, 'another version');
  assert.is(decodeBusRecord(Buffer.from([1, 4, 0, 1, 0x61])), null, 'unknown flag');
  assert.is(decodeBusRecord(Buffer.from([1, 0, 0, 9, 0x61])), null, 'publisher past the end');
  assert.is(decodeBusRecord(Buffer.from([1, 0, 0x02, 0x01, 0x61])), null, 'publisher over 512 bytes');
  assert.is(decodeBusRecord(Buffer.from([1, 0, 0, 1, 0xff])), null, 'publisher not UTF-8');
  assert.is(decodeBusRecord(Buffer.from([1, 0, 0, 1, 0x61, 0xc3])), null, 'text payload not UTF-8');
  const longest = '\u{1F600}'.repeat(128);
  assert.is(decodeBusRecord(encodeBusRecord(longest, 'x'))!.from, longest);
  assert.throws(() => encodeBusRecord('x'.repeat(513), 'a'), /512 bytes/);
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.alloc(Math.floor(Math.random() * 40));
    for (let j = 0; j < b.length; j++) b[j] = Math.floor(Math.random() * 256);
    if (Math.random() < 0.5 && b.length > 0) b[0] = 1;
    decodeBusRecord(b);
  }
});

/**
 * An ordering bus in memory: one sequencer for every Topics joined to it, in the owner's role
 * (frame built once, applied everywhere in order); `hold` keeps ordered messages back so a
 * test can deliver them late, twice or out of order.
 */
class MemoryOrderingBus implements BusDelivery, BusOrdering {
  hosts: OrderingHost[] = [];
  host: OrderingHost | null = null;
  offset = 0;
  readonly epoch = 'cluster';
  publish(): void {}
  onMessage(): void {}
  close(): void {}
  attachOrdering(host: OrderingHost): void {
    this.host = host;
    this.hosts.push(host);
  }
  ordered: Array<{ topic: string; frame: Buffer; offset: number }> = [];
  publishOrdered(topic: string, record: Buffer, except: object | null): void {
    const position = { epoch: this.epoch, offset: ++this.offset };
    const frame = this.hosts[0]!.frame(topic, position, record)!;
    this.ordered.push({ topic, frame, offset: position.offset });
    for (const h of this.hosts) h.apply(topic, position, frame, h === this.host ? except : null, h === this.host);
  }
}

const HISTORY = { maxMessages: 100, maxBytes: 1 << 20, maxAgeMs: 0 };

test('ordering bus: a history topic\'s publish is delivered when ordered, at the cluster\'s position on every node; other topics go straight', async () => {
  const bus = new MemoryOrderingBus();
  const stamp: EnvelopeHook = (topic, position, from, data) => `${position?.epoch}/${position?.offset}:${from}:${String(data)}`;
  const a = new Topics(256, 10, (t) => (t.startsWith('room:') ? HISTORY : undefined));
  const b = new Topics(256, 10, (t) => (t.startsWith('room:') ? HISTORY : undefined));
  for (const t of [a, b]) {
    t.envelope = stamp;
    bus.host = null;
    t.useBus(bus);
  }
  bus.host = bus.hosts[0]!; // publishes below are made on a
  const sa = new FakeSub();
  const sb = new FakeSub();
  a.subscribe(sa, 'room:x');
  b.subscribe(sb, 'room:x');
  assert.ok(a.isOrdered('room:x'));
  assert.ok(!a.isOrdered('chat'));
  a.publish('room:x', 'one', false, null, 'ada');
  a.publish('room:x', 'two', false, sa, 'ada'); // skip the sender: handed back by the bus
  await new Promise((r) => setImmediate(r));
  assert.equal(sa.payloads, ['cluster/1:ada:one']);
  assert.equal(sb.payloads, ['cluster/1:ada:one', 'cluster/2:ada:two']);
  assert.equal(b.position('room:x'), { epoch: 'cluster', offset: 2 });
  assert.equal(a.position('room:x'), { epoch: 'cluster', offset: 2 });
});

test('ordering bus: applied in offset order; a duplicate is dropped, a gap or another epoch restarts the history (older positions are then trimmed)', async () => {
  const bus = new MemoryOrderingBus();
  const t = new Topics(256, 10, () => HISTORY);
  t.useBus(bus);
  const host = bus.hosts[0]!;
  const sub = new FakeSub();
  t.subscribe(sub, 'room:y');
  const frame = (s: string) => host.frame('room:y', { epoch: 'E', offset: 0 }, encodeBusRecord(null, s))!;
  assert.is(host.apply('room:y', { epoch: 'E', offset: 5 }, frame('five'), null, false), 'applied'); // a fresh history takes the cluster's line
  assert.is(host.apply('room:y', { epoch: 'E', offset: 6 }, frame('six'), null, false), 'applied');
  assert.is(host.apply('room:y', { epoch: 'E', offset: 6 }, frame('six'), null, false), 'duplicate');
  assert.is(host.apply('room:y', { epoch: 'E', offset: 4 }, frame('old'), null, false), 'duplicate');
  const history = t.historyOf('room:y')!;
  assert.equal(history.recover({ epoch: 'E', offset: 4 }, Date.now()).recovered, true);
  assert.is(host.apply('room:y', { epoch: 'E', offset: 9 }, frame('nine'), null, false), 'gap');
  assert.equal(history.recover({ epoch: 'E', offset: 6 }, Date.now()), { recovered: false, reason: 'trimmed', position: { epoch: 'E', offset: 9 } });
  assert.is(host.apply('room:y', { epoch: 'F', offset: 1 }, frame('other line'), null, false), 'epoch');
  assert.equal(t.position('room:y'), { epoch: 'F', offset: 1 });
  await new Promise((r) => setImmediate(r));
  assert.equal(sub.payloads, ['five', 'six', 'nine', 'other line']);
  assert.equal(host.tail('room:y', 5), { epoch: 'F', first: 1, frames: [frame('other line')] });
});

test('ordering bus: another message at an offset already applied is another line of the epoch: told to subscribers, the history restarts at it; the node that orders the topic (keep) keeps its line and applies nothing else', async () => {
  const bus = new MemoryOrderingBus();
  const t = new Topics(256, 10, () => HISTORY);
  t.useBus(bus);
  t.onRestart = (_topic, position, reason) => `resync ${reason} ${position.epoch}/${position.offset}`;
  const host = bus.hosts[0]!;
  const sub = new FakeSub();
  t.subscribe(sub, 'room:y');
  const frame = (s: string) => host.frame('room:y', { epoch: 'E', offset: 0 }, encodeBusRecord(null, s))!;
  for (const [i, m] of ['one', 'two', 'three'].entries()) host.apply('room:y', { epoch: 'E', offset: i + 1 }, frame(m), null, false);
  assert.is(host.apply('room:y', { epoch: 'E', offset: 2 }, frame('two'), null, false), 'duplicate');
  assert.is(host.apply('room:y', { epoch: 'E', offset: 2 }, frame('other two'), null, false), 'conflict');
  assert.equal(t.position('room:y'), { epoch: 'E', offset: 2 });
  assert.is(host.apply('room:y', { epoch: 'E', offset: 3 }, frame('other three'), null, false), 'applied');
  // keep: a duplicate of the line is dropped; another message at a held offset, beyond the line or in another epoch is told and not applied.
  assert.is(host.apply('room:y', { epoch: 'E', offset: 3 }, frame('other three'), null, false, true), 'duplicate');
  assert.is(host.apply('room:y', { epoch: 'E', offset: 3 }, frame('three'), null, false, true), 'conflict');
  assert.is(host.apply('room:y', { epoch: 'E', offset: 4 }, frame('four'), null, false, true), 'conflict');
  assert.is(host.apply('room:y', { epoch: 'F', offset: 1 }, frame('f'), null, false, true), 'conflict');
  assert.equal(t.position('room:y'), { epoch: 'E', offset: 3 });
  await new Promise((r) => setImmediate(r));
  assert.equal(sub.payloads, ['one', 'two', 'three', 'resync conflict E/1', 'other two', 'other three', 'resync conflict E/3', 'resync conflict E/3', 'resync conflict E/3']);
});

test('ordering bus: a skip in the stream (a gap, another epoch over held messages) is told to subscribers before the next message, and never kept in the history', async () => {
  const bus = new MemoryOrderingBus();
  const t = new Topics(256, 10, () => HISTORY);
  t.useBus(bus);
  t.onRestart = (topic, position, reason) => (topic === 'room:quiet' ? null : `resync ${reason} ${position.epoch}/${position.offset}`);
  const host = bus.hosts[0]!;
  const sub = new FakeSub();
  t.subscribe(sub, 'room:y');
  t.subscribe(sub, 'room:quiet');
  const frame = (s: string) => host.frame('room:y', { epoch: 'E', offset: 0 }, encodeBusRecord(null, s))!;
  host.apply('room:y', { epoch: 'E', offset: 1 }, frame('one'), null, false); // a fresh history: no skip
  host.apply('room:y', { epoch: 'E', offset: 4 }, frame('four'), null, false);
  host.apply('room:y', { epoch: 'F', offset: 9 }, frame('nine'), null, false);
  host.apply('room:quiet', { epoch: 'E', offset: 1 }, frame('q1'), null, false);
  host.apply('room:quiet', { epoch: 'E', offset: 3 }, frame('q3'), null, false);
  await new Promise((r) => setImmediate(r));
  assert.equal(sub.payloads, ['one', 'resync gap E/3', 'four', 'resync epoch F/8', 'nine', 'q1', 'q3']);
  assert.is(t.historyOf('room:y')!.size, 1);
});

test.run();
