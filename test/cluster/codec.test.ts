import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  decodePushPull,
  decodeRecords,
  encodePushPull,
  encodeRecord,
  MessageType,
  WireError,
  WireState,
  type PacketMessage,
  type PushPull,
} from '../../src/cluster/gossip/gossip-wire.js';
import { hex } from './helpers.js';

// Wire format v1: parse(bytes) equals the message and encode(message) equals the bytes.

const LIMITS = { maxMetaBytes: 512, maxMembers: 1000 };
const isWireError = (e: unknown) => e instanceof WireError && e.code === 'GOSSIP_ERR_MALFORMED';

test('the message type table is append-only: numbers never change', () => {
  assert.equal({ ...MessageType }, { Ping: 1, PingReq: 2, Ack: 3, Nack: 4, Alive: 5, Suspect: 6, Dead: 7, User: 8, PushPull: 9, Query: 10 });
  assert.equal({ ...WireState }, { Alive: 0, Suspect: 1, Dead: 2, Left: 3 });
});

test('docs/cluster.md documents every message type with its number', () => {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const doc = readFileSync(`${root}docs/cluster.md`, 'utf8');
  for (const [name, n] of Object.entries(MessageType)) assert.ok(doc.includes(`| ${n} | ${name} |`), `${name} (${n}) missing from docs/cluster.md`);
});

test('ping: exact bytes both ways', () => {
  const bytes = hex('01 000a | 0000002a | 05 616c706861');
  const msg: PacketMessage = { type: MessageType.Ping, seq: 42, target: 'alpha' };
  assert.equal(encodeRecord(msg), bytes);
  assert.equal(decodeRecords(bytes, LIMITS), [msg]);
});

test('alive: exact bytes both ways, incarnation as u64', () => {
  const bytes = hex('05 0017 | 00000001 00000002 | 01 61 | 08 3132372e302e302e | 0002 cafe');
  const msg: PacketMessage = { type: MessageType.Alive, incarnation: 0x1_0000_0002, name: 'a', addr: '127.0.0.', meta: new Uint8Array([0xca, 0xfe]) };
  assert.equal(encodeRecord(msg), bytes);
  assert.equal(decodeRecords(bytes, LIMITS), [msg]);
});

test('every message type round-trips, several records per packet', () => {
  const msgs: PacketMessage[] = [
    { type: MessageType.Ping, seq: 0xffffffff, target: 'ñødé-1' },
    { type: MessageType.PingReq, seq: 7, target: 'b', targetAddr: '[::1]:7946', wantNack: true },
    { type: MessageType.PingReq, seq: 8, target: 'b', targetAddr: '10.0.0.2:7946', wantNack: false },
    { type: MessageType.Ack, seq: 1 },
    { type: MessageType.Nack, seq: 2 },
    { type: MessageType.Alive, incarnation: Number.MAX_SAFE_INTEGER, name: 'x', addr: 'y:1', meta: new Uint8Array(512) },
    { type: MessageType.Suspect, incarnation: 5, name: 'x', from: 'z' },
    { type: MessageType.Dead, incarnation: 6, name: 'x', from: 'x' },
    { type: MessageType.User, payload: new Uint8Array([1, 2, 3]) },
    { type: MessageType.User, payload: new Uint8Array(0) },
  ];
  const packet = Buffer.concat(msgs.map(encodeRecord));
  assert.equal(decodeRecords(packet, LIMITS), msgs);
});

test('a record type from a newer version is skipped, the rest decoded', () => {
  const packet = Buffer.concat([hex('c8 0003 010203'), encodeRecord({ type: MessageType.Ack, seq: 9 })]);
  assert.equal(decodeRecords(packet, LIMITS), [{ type: MessageType.Ack, seq: 9 }]);
});

test('malformed records are one WireError each', () => {
  const cases: [string, Buffer][] = [
    ['length beyond the packet', hex('03 0005 00000001')],
    ['truncated header', hex('03 00')],
    ['trailing bytes in a known record', hex('03 0005 00000001 ff')],
    ['body too short', hex('03 0003 000001')],
    ['empty name', hex('01 0005 00000001 00')],
    ['string beyond its record', hex('01 0006 00000001 05 61')],
    ['invalid UTF-8 name', hex('01 0007 00000001 02 c328')],
    ['incarnation above 2^53 - 1', hex('06 000e 00200000 00000000 01 61 01 62')],
  ];
  for (const [what, bytes] of cases) assert.throws(() => decodeRecords(bytes, LIMITS), isWireError, what);
});

test('meta above the configured limit is refused before it is copied', () => {
  const alive = encodeRecord({ type: MessageType.Alive, incarnation: 1, name: 'a', addr: 'b', meta: new Uint8Array(600) });
  assert.throws(() => decodeRecords(alive, LIMITS), isWireError);
  assert.is(decodeRecords(alive, { ...LIMITS, maxMetaBytes: 600 }).length, 1);
});

test('the encoder refuses what the decoder would refuse', () => {
  assert.throws(() => encodeRecord({ type: MessageType.Ping, seq: 1, target: '' }), RangeError);
  assert.throws(() => encodeRecord({ type: MessageType.Ping, seq: 1, target: 'x'.repeat(256) }), RangeError);
  assert.throws(() => encodeRecord({ type: MessageType.Dead, incarnation: 2 ** 53, name: 'a', from: 'a' }), RangeError);
});

const pp: PushPull = {
  type: MessageType.PushPull,
  join: true,
  reply: false,
  members: [
    { name: 'a', addr: '127.0.0.1:1', meta: new Uint8Array([1]), incarnation: 10, state: WireState.Alive },
    { name: 'b', addr: '127.0.0.1:2', meta: new Uint8Array(0), incarnation: 3, state: WireState.Dead },
    { name: 'c', addr: '127.0.0.1:3', meta: new Uint8Array(0), incarnation: 4, state: WireState.Left },
  ],
  userState: new Uint8Array([9, 9, 9]),
};

test('push-pull round-trips with flags, members and user state', () => {
  assert.equal(decodePushPull(encodePushPull(pp), LIMITS, 1024), pp);
  const reply = { ...pp, join: false, reply: true, members: [], userState: new Uint8Array(0) };
  assert.equal(decodePushPull(encodePushPull(reply), LIMITS, 1024), reply);
});

test('push-pull counts are checked against the bytes present and the limits', () => {
  const huge = hex('09 00 ffffffff');
  assert.throws(() => decodePushPull(huge, { ...LIMITS, maxMembers: 2 ** 32 }, 1024), isWireError, 'count beyond bytes');
  assert.throws(() => decodePushPull(huge, LIMITS, 1024), isWireError, 'count beyond maxMembers');
  const bytes = encodePushPull(pp);
  assert.throws(() => decodePushPull(bytes, { ...LIMITS, maxMembers: 2 }, 1024), isWireError);
  assert.throws(() => decodePushPull(bytes, LIMITS, 2), isWireError, 'user state above its limit');
  assert.throws(() => decodePushPull(Buffer.concat([bytes, hex('00')]), LIMITS, 1024), isWireError, 'trailing byte');
  const badState = Buffer.from(bytes);
  badState[6] = 9; // first entry's state
  assert.throws(() => decodePushPull(badState, LIMITS, 1024), isWireError, 'unknown state');
  assert.throws(() => decodePushPull(hex('05 00'), LIMITS, 1024), isWireError, 'not a push-pull');
});

test.run();
