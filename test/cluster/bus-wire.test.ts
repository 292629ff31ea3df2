// The records of a mesh link, without a network: bytes in, records or the reason to fail out.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LinkRecord, SYNCED_RECORD, encodeAck, encodeFillEnd, encodeFillRequest, encodeForward, encodeHello, encodeInterest, encodeOrdered, encodePublish, encodeTail, encodeTailRequest,
  encodeOrigins, parseAcceptorRecords, parsePublishes } from '../../src/cluster/bus/mesh-wire.js';
import type { OrderingSink } from '../../src/cluster/bus/mesh-wire.js';

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s/g, ''), 'hex');
}

function publishes(msg: Buffer, maxTopic = 1024): { got: Array<[string, string, boolean]>; error: string | null } {
  const got: Array<[string, string, boolean]> = [];
  const error = parsePublishes(msg, maxTopic, (t, d, b) => got.push([t, d.toString(), b]));
  return { got, error };
}

function acceptor(msg: Buffer): { events: string[]; error: string | null } {
  const events: string[] = [];
  const error = parseAcceptorRecords(msg, 1024, {
    onHello: (p) => events.push(`hello:${p.length}`),
    onAdd: (t) => events.push(`+${t}`),
    onRemove: (t) => events.push(`-${t}`),
    onSynced: () => events.push('synced'),
  });
  return { events, error };
}

test('publish: encoded as [1][flags][topic len u16][topic][data len u32][data]', () => {
  const rec = encodePublish('ab', 2, Buffer.from('xyz'), true);
  assert.equal(rec, hex('01 01 0002 6162 00000003 78797a'));
  assert.equal(encodePublish('é', 2, Buffer.alloc(0), false), hex('01 00 0002 c3a9 00000000'));
});

test('publish: several records in one message come out in order', () => {
  const msg = Buffer.concat([encodePublish('a', 1, Buffer.from('1'), false), encodePublish('b', 1, Buffer.from('2'), true), encodePublish('a', 1, Buffer.from('3'), false)]);
  assert.equal(publishes(msg), { got: [['a', '1', false], ['b', '2', true], ['a', '3', false]], error: null });
});

test('publish: every malformed input is refused with a reason', () => {
  const ok = encodePublish('t', 1, Buffer.from('data'), false);
  for (let cut = 1; cut < ok.length; cut++) assert.ok(publishes(ok.subarray(0, cut)).error !== null, `cut at ${cut}`);
  assert.is(publishes(Buffer.alloc(0)).error, 'empty message');
  assert.is(publishes(hex('02 0001 0074')).error, 'record type 2 from a dialer');
  assert.is(publishes(hex('01 02 0001 74 00000000')).error, 'unknown flags');
  assert.is(publishes(hex('01 00 0000 00000000')).error, 'bad topic length');
  assert.is(publishes(encodePublish('tt', 2, Buffer.alloc(0), false), 1).error, 'bad topic length');
  assert.is(publishes(hex('01 00 0002 c328 00000000')).error, 'topic is not UTF-8');
  assert.is(publishes(hex('01 00 0001 74 ffffffff 00')).error, 'truncated record');
  // Records before the failure were delivered.
  const mixed = publishes(Buffer.concat([ok, hex('07')]));
  assert.equal(mixed.got, [['t', 'data', false]]);
  assert.is(mixed.error, 'record type 7 from a dialer');
});

test('acceptor records: hello, interest deltas, synced', () => {
  const msg = Buffer.concat([encodeHello(Buffer.alloc(32, 1)), ...encodeInterest(LinkRecord.InterestAdd, ['x', 'y'], 1000), ...encodeInterest(LinkRecord.InterestRemove, ['x'], 1000), SYNCED_RECORD]);
  assert.equal(acceptor(msg), { events: ['hello:32', '+x', '+y', '-x', 'synced'], error: null });
  assert.equal(encodeInterest(LinkRecord.InterestAdd, ['ab'], 1000)[0], hex('02 0001 0002 6162'));
});

test('acceptor records: malformed input is refused', () => {
  assert.is(acceptor(hex('05 0102')).error, 'truncated record');
  assert.is(acceptor(hex('02 0000')).error, 'empty interest record');
  assert.is(acceptor(hex('02 0002 0001 61')).error, 'truncated record');
  assert.is(acceptor(hex('03 0001 0000')).error, 'bad topic length');
  assert.is(acceptor(hex('02 0001 0001 ff')).error, 'topic is not UTF-8');
  assert.is(acceptor(hex('01 00 0001 74 00000000')).error, 'record type 1 from an acceptor');
  assert.is(acceptor(Buffer.alloc(0)).error, 'empty message');
});

test('interest records are split at the size limit and at 65,535 topics', () => {
  const topics = Array.from({ length: 1000 }, (_, i) => `topic-${i}`);
  const recs = encodeInterest(LinkRecord.InterestAdd, topics, 4096);
  assert.ok(recs.length > 1);
  for (const r of recs) assert.ok(r.length <= 4096);
  const back: string[] = [];
  for (const r of recs) assert.is(acceptor(r).error, null);
  for (const r of recs) back.push(...acceptor(r).events.map((e) => e.slice(1)));
  assert.equal(back, topics);
  const many = encodeInterest(LinkRecord.InterestRemove, Array.from({ length: 70_000 }, (_, i) => String(i)), 1 << 30);
  assert.is(many.length, 2);
  assert.is(many[0]!.readUInt16BE(1), 65_535);
  assert.equal(encodeInterest(LinkRecord.InterestAdd, [], 100), []);
});

/** An ordering sink that writes what it gets as lines into `events`. */
function orderingSink(events: string[]): OrderingSink {
  return {
    onForward: (r) => events.push(`fwd ${r.topic} ${r.origin}#${r.seq} from ${r.from} known ${r.known.epoch}/${r.known.offset} ${r.record.toString()}`),
    onOrdered: (r) => events.push(`ord ${r.topic} ${r.epoch}/${r.offset} ${r.origin}#${r.seq}${r.ackWanted ? ' ack' : ''} ${r.frame.toString('hex')}`),
    onAck: (t, e, o) => events.push(`ack ${t} ${e}/${o}`),
    onFillRequest: (r) => events.push(`fill? ${r.topic} ${r.epoch}/${r.first}..${r.last}`),
    onFillEnd: (r) => events.push(`fill. ${r.topic} ${r.epoch}/${r.first}..${r.last}`),
    onTailRequest: (t) => events.push(`tail? ${t}`),
    onTail: (r) => events.push(`tail. ${r.topic} ${r.epoch}/${r.first} ${r.frames.map((f) => f.toString('hex')).join(',')}`),
    onOrigins: (t, o) => events.push(`origins ${t} ${o.map(([origin, seq]) => `${origin}#${seq}`).join(',')}`),
  };
}

/** Parses a dialer's message with the ordering records on; returns what arrived and the failure. */
function ordering(msg: Buffer): { events: string[]; error: string | null } {
  const events: string[] = [];
  const error = parsePublishes(msg, 1024, (t) => events.push(`pub ${t}`), orderingSink(events));
  return { events, error };
}

/** Parses an acceptor's message with its answers on (what a dialer does once the acceptor proved the key). */
function answers(msg: Buffer): { events: string[]; error: string | null } {
  const events: string[] = [];
  const error = parseAcceptorRecords(msg, 1024, { onHello: () => events.push('hello'), onAdd: (t) => events.push(`+${t}`), onRemove: (t) => events.push(`-${t}`), onSynced: () => events.push('synced') }, orderingSink(events));
  return { events, error };
}

test('ordering records: forward, ordered and ack round-trip, mixed with publishes in one message', () => {
  const msg = Buffer.concat([
    encodeForward({ topic: 'room:a', origin: 'n1/xyz', seq: 42, known: { epoch: 'E1', offset: 9 }, from: 40, record: Buffer.from('rec') }),
    encodePublish('t', 1, Buffer.from('p'), false),
    encodeOrdered({ topic: 'room:a', epoch: 'E1', offset: 10, origin: 'n1/xyz', seq: 42, ackWanted: true, frame: Buffer.from([0x81, 0x01, 0x61]) }),
    encodeAck('room:a', 'E1', 10),
  ]);
  assert.equal(ordering(msg), {
    events: ['fwd room:a n1/xyz#42 from 40 known E1/9 rec', 'pub t', 'ord room:a E1/10 n1/xyz#42 ack 810161', 'ack room:a E1/10'],
    error: null,
  });
  // Without an ordering sink (a link that predates ordering) they are unknown records.
  assert.is(publishes(encodeAck('room:a', 'E1', 10)).error, `record type ${LinkRecord.Ack} from a dialer`);
});

test('ordering records: hostile ones fail the link (truncated, offsets that are no safe integer, bad UTF-8, empty fields)', () => {
  const ord = encodeOrdered({ topic: 'room:a', epoch: 'E1', offset: 10, origin: 'o', seq: 1, ackWanted: false, frame: Buffer.from([0x81, 0x00]) });
  for (let cut = 1; cut < ord.length; cut++) assert.is(ordering(ord.subarray(0, cut)).error, 'truncated record', `cut at ${cut}`);
  const bad = Buffer.from(ord);
  bad.writeDoubleBE(2 ** 60, 1 + 1 + 2 + 6 + 1 + 2); // the offset
  assert.is(ordering(bad).error, 'bad offset');
  bad.writeDoubleBE(-1, 1 + 1 + 2 + 6 + 1 + 2);
  assert.is(ordering(bad).error, 'bad offset');
  const flags = Buffer.from(ord);
  flags[1] = 0x80;
  assert.is(ordering(flags).error, 'unknown flags');
  const utf = Buffer.from(ord);
  utf[4] = 0xff; // inside the topic
  assert.is(ordering(utf).error, 'topic is not UTF-8');
  assert.is(ordering(encodeOrdered({ topic: 'room:a', epoch: 'E1', offset: 0, origin: 'o', seq: 1, ackWanted: false, frame: Buffer.from([0x81, 0x00]) })).error, 'empty ordered record');
  assert.is(ordering(encodeAck('room:a', '', 3)).error, 'empty ack');
  assert.is(ordering(encodeForward({ topic: 'room:a', origin: '', seq: 1, known: { epoch: '', offset: 0 }, from: 1, record: Buffer.alloc(0) })).error, 'empty topic or origin');
  assert.is(ordering(encodeForward({ topic: 'room:a', origin: 'o', seq: 1, known: { epoch: '', offset: 0 }, from: 2, record: Buffer.alloc(0) })).error, 'forward from a later sequence number than its own');
  const long = encodeAck('x'.repeat(2000), 'E', 1);
  assert.is(ordering(long).error, 'bad topic length');
});

test('fill records: request and end round-trip; an end may say it holds none (first above last)', () => {
  const msg = Buffer.concat([encodeFillRequest({ topic: 'room:a', epoch: 'E1', first: 5, last: 9 }), encodeFillEnd({ topic: 'room:a', epoch: 'E2', first: 5, last: 0 })]);
  assert.equal(ordering(msg), { events: ['fill? room:a E1/5..9', 'fill. room:a E2/5..0'], error: null });
});

test('fill records: hostile ones fail the link (empty or reversed range, offset 0, truncated, unsafe numbers, empty epoch)', () => {
  assert.is(ordering(encodeFillRequest({ topic: 'room:a', epoch: 'E1', first: 9, last: 5 })).error, 'bad fill range');
  assert.is(ordering(encodeFillRequest({ topic: 'room:a', epoch: 'E1', first: 0, last: 5 })).error, 'bad fill range');
  assert.is(ordering(encodeFillRequest({ topic: 'room:a', epoch: '', first: 1, last: 5 })).error, 'empty fill record');
  assert.is(ordering(encodeFillEnd({ topic: 'room:a', epoch: '', first: 1, last: 5 })).error, 'empty fill record');
  const req = encodeFillRequest({ topic: 'room:a', epoch: 'E1', first: 1, last: 5 });
  for (let cut = 1; cut < req.length; cut++) assert.is(ordering(req.subarray(0, cut)).error, 'truncated record', `cut at ${cut}`);
  const huge = Buffer.from(req);
  huge.writeDoubleBE(2 ** 60, req.length - 8); // `last`: a range no history holds
  assert.is(ordering(huge).error, 'bad offset');
  huge.writeDoubleBE(Number.NaN, req.length - 8);
  assert.is(ordering(huge).error, 'bad offset');
});

test('answers travel acceptor -> dialer: ordered, ack, fill end and tail, between interest records; requests and forwards do not', () => {
  const frame = Buffer.from([0x81, 0x01, 0x61]);
  const msg = Buffer.concat([
    encodeOrdered({ topic: 'room:a', epoch: 'E1', offset: 4, origin: '', seq: 0, ackWanted: false, frame }),
    encodeFillEnd({ topic: 'room:a', epoch: 'E1', first: 4, last: 4 }),
    encodeInterest(LinkRecord.InterestAdd, ['x'], 100)[0]!,
    encodeAck('room:a', 'E1', 4),
    encodeTail({ topic: 'room:a', epoch: 'E1', first: 3, frames: [frame, Buffer.from([0x81, 0x00])] }),
    encodeTail({ topic: 'room:b', epoch: '', first: 0, frames: [] }),
  ]);
  assert.equal(answers(msg), {
    events: ['ord room:a E1/4 #0 810161', 'fill. room:a E1/4..4', '+x', 'ack room:a E1/4', 'tail. room:a E1/3 810161,8100', 'tail. room:b /0 '],
    error: null,
  });
  // Without the answer sink (before the acceptor proved the key) they are unknown records.
  assert.is(acceptor(encodeAck('room:a', 'E1', 4)).error, `record type ${LinkRecord.Ack} from an acceptor`);
  for (const rec of [encodeTailRequest('room:a'), encodeFillRequest({ topic: 'room:a', epoch: 'E1', first: 1, last: 2 }), encodeForward({ topic: 'room:a', origin: 'o', seq: 1, known: { epoch: '', offset: 0 }, from: 1, record: Buffer.alloc(0) })]) {
    assert.is(answers(rec).error, `record type ${rec[0]} from an acceptor`);
  }
  // A tail is an answer only: a dialer that sends one fails its link.
  assert.is(ordering(encodeTail({ topic: 'room:a', epoch: '', first: 0, frames: [] })).error, `record type ${LinkRecord.Tail} from a dialer`);
  assert.equal(ordering(encodeTailRequest('room:a')), { events: ['tail? room:a'], error: null });
});

test('tail records: hostile ones fail the link (truncated, a count the message cannot hold, frames without an epoch, empty frames)', () => {
  const tail = encodeTail({ topic: 'room:a', epoch: 'E1', first: 3, frames: [Buffer.from([0x81, 0x00])] });
  for (let cut = 1; cut < tail.length; cut++) assert.is(answers(tail.subarray(0, cut)).error, 'truncated record', `cut at ${cut}`);
  const count = Buffer.from(tail);
  count.writeUInt32BE(0xffffffff, 1 + 2 + 6 + 1 + 2 + 8);
  assert.is(answers(count).error, 'truncated record');
  assert.is(answers(encodeTail({ topic: 'room:a', epoch: '', first: 3, frames: [Buffer.from([0x81, 0x00])] })).error, 'empty tail record');
  assert.is(answers(encodeTail({ topic: 'room:a', epoch: 'E1', first: 0, frames: [Buffer.from([0x81, 0x00])] })).error, 'empty tail record');
  assert.is(answers(encodeTail({ topic: 'room:a', epoch: 'E1', first: 1, frames: [Buffer.alloc(1)] })).error, 'empty frame');
  assert.is(ordering(encodeTailRequest('')).error, 'empty topic');
});

test('origins records: an answer (acceptor -> dialer) that round-trips; hostile ones fail the link', () => {
  const rec = encodeOrigins('room:a', new Map([['n1/abc', 7], ['n2/def', 12]]));
  assert.equal(answers(Buffer.concat([rec, encodeOrigins('room:b', new Map())])), { events: ['origins room:a n1/abc#7,n2/def#12', 'origins room:b '], error: null });
  assert.is(ordering(rec).error, `record type ${LinkRecord.Origins} from a dialer`);
  for (let cut = 1; cut < rec.length; cut++) assert.is(answers(rec.subarray(0, cut)).error, 'truncated record', `cut at ${cut}`);
  const count = Buffer.from(rec);
  count.writeUInt16BE(0xffff, 1 + 2 + 6);
  assert.is(answers(count).error, 'truncated record');
  const seq = Buffer.from(rec);
  seq.writeDoubleBE(-1, 1 + 2 + 6 + 2 + 1 + 6);
  assert.is(answers(seq).error, 'bad sequence number');
});

test.run();
