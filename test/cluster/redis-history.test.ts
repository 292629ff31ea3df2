// The formats of cluster-wide ordering on the Redis bus (src/cluster/bus/redis-history.ts):
// what a broken or hostile Redis can send is refused whole, never thrown or half used.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { historyKeys, orderedHead, parseLineReply, parseOrderReply, parseOrdered, parseReadReply } from '../../src/cluster/bus/redis-history.js';

const ID = Buffer.from('0123456789abcdef', 'hex');

/** An ordered channel message as the script builds it. */
function ordered(epoch: string, first: number, records: Buffer[], seq = 7): Buffer {
  const off = Buffer.alloc(8);
  off.writeDoubleBE(first);
  return Buffer.concat([Buffer.from([2]), orderedHead(ID, seq), Buffer.from([epoch.length]), Buffer.from(epoch, 'latin1'), off, ...records.flatMap((r) => [u32(r.length), r])]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

test('keys of a topic share one hash tag', () => {
  assert.equal(historyKeys('p:', 'room:1'), ['p:{room:1}:m', 'p:{room:1}:h']);
});

test('an ordered channel message parses whole: instance, seq, epoch, first offset, records', () => {
  const m = parseOrdered(ordered('e1', 41, [b('a'), b(''), b('ccc')]), 1024)!;
  assert.ok(m.instance.equals(ID));
  assert.is(m.seq, 7);
  assert.is(m.epoch, 'e1');
  assert.is(m.first, 41);
  assert.equal(m.records.map((r) => r.toString()), ['a', '', 'ccc']);
});

test('a malformed ordered channel message is refused whole', () => {
  const good = ordered('e1', 1, [b('a'), b('b')]);
  const bad: Buffer[] = [
    Buffer.alloc(0),
    good.subarray(0, 10), // truncated head
    good.subarray(0, good.length - 1), // truncated record
    Buffer.concat([good, Buffer.from([0, 0])]), // trailing bytes
    ordered('', 1, [b('a')]), // no epoch
    ordered('e'.repeat(65), 1, [b('a')]), // epoch too long
    ordered('e1', 0, [b('a')]), // offset 0
    ordered('e1', 1.5, [b('a')]), // not an integer
    ordered('e1', Number.NaN, [b('a')]),
    ordered('e1', 2 ** 53, [b('a')]), // beyond safe integers
    ordered('e1', 1, []), // no record
    Buffer.concat([Buffer.from([1]), good.subarray(1)]), // another version
  ];
  for (const [i, m] of bad.entries()) assert.is(parseOrdered(m, 1024), null, `case ${i}`);
  assert.is(parseOrdered(ordered('e1', 1, [b('a'), b('b'), b('c')]), 2), null, 'more records than allowed');
});

test('the order script answer: an epoch and a positive safe offset, nothing else', () => {
  assert.equal(parseOrderReply([b('ep'), b('12')]), { epoch: 'ep', first: 12 });
  for (const r of [null, 'x', [], [b('ep')], [b('ep'), b('0')], [b('ep'), b('-1')], [b('ep'), b('1e3')], [b(''), b('1')], [b('ep'), b('99999999999999999')], [b('ep'), 12], [b('ep'), b('1'), b('2')]]) {
    assert.is(parseOrderReply(r), null, JSON.stringify(r));
  }
});

test('the line script answer: an epoch and a safe last offset (0 before the first message), nothing else', () => {
  assert.equal(parseLineReply([b('ep'), b('0')]), { epoch: 'ep', last: 0 });
  assert.equal(parseLineReply([b('ep'), b('12')]), { epoch: 'ep', last: 12 });
  for (const r of [null, 'x', [], [b('ep')], [b('ep'), b('-1')], [b('ep'), b('1e3')], [b(''), b('1')], [b('x'.repeat(65)), b('1')], [b('ep'), b('99999999999999999')], [b('ep'), 12], [b('ep'), b('1'), b('2')]]) {
    assert.is(parseLineReply(r), null, JSON.stringify(r));
  }
});

test('a read answer: consecutive entries from the first offset, each carrying its own offset', () => {
  const r = parseReadReply([b('ep'), b('9'), b('5'), b('5 1700000000000 r5'), b('6 1700000000000 r6')], 4, 10);
  assert.ok(r !== null && r !== 'malformed');
  assert.equal([r.epoch, r.last, r.first, r.records.map(String)], ['ep', 9, 5, ['r5', 'r6']]);
  assert.is(parseReadReply([], 4, 10), null, 'no history in Redis');
  const empty = parseReadReply([b('ep'), b('9'), b('10')], 4, 10);
  assert.ok(empty !== null && empty !== 'malformed' && empty.records.length === 0, 'nothing kept from there');
});

test('a broken read answer is malformed, never half used', () => {
  const bad: unknown[] = [
    'nope',
    [b('ep'), b('9')],
    [b('ep'), b('9'), b('3')], // starts before what was asked
    [b('ep'), b('9'), b('11')], // beyond the last + 1
    [b('ep'), b('9'), b('5'), b('6 1 r')], // entry with the wrong offset
    [b('ep'), b('9'), b('5'), b('5 1 r'), b('7 1 r')], // not consecutive
    [b('ep'), b('5'), b('5'), b('5 1 r'), b('6 1 r')], // beyond the last
    [b('ep'), b('9'), b('5'), b('5 x r')], // time not a number
    [b('ep'), b('9'), b('5'), b('5')], // no separator
    [b('ep'), b('9'), b('5'), 'a string'],
    [b('ep'), b('9'), b('5'), ...Array.from({ length: 11 }, (_, i) => b(`${5 + i} 1 r`))], // more than asked
  ];
  for (const [i, r] of bad.entries()) assert.is(parseReadReply(r, 4, 10), 'malformed', `case ${i}`);
});

test.run();
