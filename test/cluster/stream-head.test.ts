// The head that opens every push-pull stream: bytes in, head/frame/refusal out.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AesGcmSealer, Channel, Keyring } from '../../src/cluster/gossip/security.js';
import { encodeRefusal, encodeStreamHead, streamHeadBytes, StreamReader, StreamRefusal, type StreamEvent } from '../../src/cluster/gossip/stream-head.js';
import { WIRE_VERSION } from '../../src/cluster/gossip/gossip-wire.js';
import { KEY_A, KEY_B } from './helpers.js';

const sealer = new AesGcmSealer(new Keyring([KEY_A]), 'prod');
const MAX = 1024;

/** Feeds `bytes` in chunks of `size` and returns the events that were not 'more'. */
function feed(reader: StreamReader, bytes: Buffer, size: number): StreamEvent[] {
  const out: StreamEvent[] = [];
  for (let i = 0; i < bytes.length; i += size) {
    let e = reader.push(bytes.subarray(i, i + size));
    if (e.kind === 'head') {
      out.push(e);
      e = reader.push(Buffer.alloc(0));
    }
    if (e.kind !== 'more') out.push(e);
  }
  return out;
}

test('head then frame, in any chunking', () => {
  const frame = Buffer.from(sealer.seal(Buffer.from('state'), Channel.Stream));
  const bytes = Buffer.concat([encodeStreamHead(sealer, frame.length), frame]);
  assert.is(streamHeadBytes(4), 39);
  for (const size of [1, 2, 3, 7, 39, 40, bytes.length]) {
    const ev = feed(new StreamReader(sealer, MAX), bytes, size);
    assert.equal(ev, [{ kind: 'head', length: frame.length }, { kind: 'frame', frame }], `chunks of ${size}`);
  }
});

test('a stranger trickling bytes holds at most one head, however long it goes on', () => {
  const r = new StreamReader(sealer, MAX);
  assert.equal(r.push(Buffer.from([WIRE_VERSION, Channel.StreamHead, 255])), { kind: 'more' });
  for (let i = 0; i < streamHeadBytes(255) - 4; i++) assert.is(r.push(Buffer.from([0x41])).kind, 'more');
  assert.ok(r.buffered <= streamHeadBytes(255));
  assert.equal(r.push(Buffer.from([0x41])), { kind: 'fail', reason: StreamRefusal.Label });
  assert.is(r.buffered, 0);
});

test('refused from the head: another key, another label, the first stream format, a length over the limit, garbage', () => {
  const frameOf = (s: AesGcmSealer, n: number) => Buffer.from(encodeStreamHead(s, n));
  const cases: [string, Buffer, StreamRefusal][] = [
    ['another key', frameOf(new AesGcmSealer(new Keyring([KEY_B]), 'prod'), 10), StreamRefusal.Auth],
    ['another label', frameOf(new AesGcmSealer(new Keyring([KEY_A]), 'dev'), 10), StreamRefusal.Label],
    ['first format: [u32 length][sealed frame]', Buffer.from([0, 0, 0, 64, 1, 2, 4]), StreamRefusal.Version],
    ['another version', Buffer.from([9, Channel.StreamHead, 0]), StreamRefusal.Version],
    ['a sealed frame without its head', Buffer.from(sealer.seal(Buffer.from('x'), Channel.Stream)), StreamRefusal.Malformed],
    ['a length over the limit, announced by a genuine head', frameOf(sealer, MAX + 1), StreamRefusal.TooBig],
  ];
  for (const [what, bytes, reason] of cases) assert.equal(feed(new StreamReader(sealer, MAX), bytes, bytes.length), [{ kind: 'fail', reason }], what);
});

test('more bytes than the head announced fail the stream; a refusal record is read as such', () => {
  const bytes = Buffer.concat([encodeStreamHead(sealer, 3), Buffer.from('abcd')]);
  assert.equal(feed(new StreamReader(sealer, MAX), bytes, bytes.length), [{ kind: 'head', length: 3 }, { kind: 'fail', reason: StreamRefusal.TooBig }]);
  assert.equal(feed(new StreamReader(sealer, MAX), encodeRefusal(StreamRefusal.Busy), 1), [{ kind: 'refused', reason: StreamRefusal.Busy }]);
});

test.run();
