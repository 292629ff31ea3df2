// Liveness-link records, bytes in → records out: the hello read by the gossip port's stream
// reader in any chunking, records read back in order across chunk boundaries, a refusal, and
// a tampered or foreign record ending the link.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AesGcmSealer, Keyring } from '../../src/cluster/gossip/security.js';
import { encodeRefusal, StreamReader, StreamRefusal, type StreamEvent } from '../../src/cluster/gossip/stream-head.js';
import { encodeWatchHello, encodeWatchRecord, watchHelloBytes, watchRecordBytes, WatchReader, WatchRecord, type WatchEvent } from '../../src/cluster/gossip/watch-wire.js';
import { KEY_A, KEY_B } from './helpers.js';

const sealer = new AesGcmSealer(new Keyring([KEY_A]), 'prod');
const NONCE = Buffer.alloc(16, 0x5a);
const CHALLENGE = Buffer.alloc(16, 0xc3);

/** Feeds `bytes` to a fresh stream reader in chunks of `size`; returns the last event. */
function readHead(bytes: Buffer, size: number, s = sealer): StreamEvent {
  const r = new StreamReader(s, 1 << 20);
  let e: StreamEvent = { kind: 'more' };
  for (let i = 0; i < bytes.length && e.kind === 'more'; i += size) e = r.push(bytes.subarray(i, i + size));
  return e;
}

test('a hello is read by the stream reader in any chunking, with the bytes that came after it', () => {
  const hello = Buffer.from(encodeWatchHello(sealer, { from: 'node-a', to: 'node-b', nonce: NONCE }));
  assert.is(hello.length, watchHelloBytes(4));
  const ping = Buffer.from(encodeWatchRecord(sealer, WatchRecord.Ping));
  for (const size of [1, 3, 7, 64, hello.length + ping.length]) {
    const e = readHead(Buffer.concat([hello, ping]), size);
    assert.is(e.kind, 'watch', `chunks of ${size}`);
    if (e.kind !== 'watch') continue;
    assert.is(e.hello.from, 'node-a');
    assert.is(e.hello.to, 'node-b');
    assert.ok(Buffer.from(e.hello.nonce).equals(NONCE));
    if (size > hello.length) assert.ok(e.rest.equals(ping), 'the ping came with the hello');
  }
});

test('a hello under another key or label is refused like a stream head', () => {
  const other = new AesGcmSealer(new Keyring([KEY_B]), 'prod');
  const hello = Buffer.from(encodeWatchHello(other, { from: 'a', to: 'b', nonce: NONCE }));
  assert.equal(readHead(hello, 1000), { kind: 'fail', reason: StreamRefusal.Auth });
  const relabelled = Buffer.from(encodeWatchHello(new AesGcmSealer(new Keyring([KEY_A]), 'test'), { from: 'a', to: 'b', nonce: NONCE }));
  assert.equal(readHead(relabelled, 1000), { kind: 'fail', reason: StreamRefusal.Label });
});

test('records come out in order across chunk boundaries; a refusal or a tampered record ends the reader', () => {
  const welcome = Buffer.from(encodeWatchRecord(sealer, WatchRecord.Welcome, NONCE, CHALLENGE));
  const bye = Buffer.from(encodeWatchRecord(sealer, WatchRecord.Bye));
  assert.is(welcome.length, watchRecordBytes(4));
  const all = Buffer.concat([welcome, bye]);
  for (const size of [1, 5, welcome.length, all.length]) {
    const r = new WatchReader(sealer);
    const events: WatchEvent[] = [];
    for (let i = 0; i < all.length; i += size) events.push(...r.push(all.subarray(i, i + size)));
    assert.is(events.length, 2, `chunks of ${size}`);
    const [w, b] = events;
    assert.ok(w?.kind === 'record' && w.type === WatchRecord.Welcome && w.nonce.equals(NONCE) && w.nonce2.equals(CHALLENGE));
    assert.ok(b?.kind === 'record' && b.type === WatchRecord.Bye);
  }
  assert.equal(new WatchReader(sealer).push(encodeRefusal(StreamRefusal.Busy)), [{ kind: 'refused', reason: StreamRefusal.Busy }]);
  const tampered = Buffer.from(welcome);
  tampered[tampered.length - 20]! ^= 1;
  const r = new WatchReader(sealer);
  assert.equal(r.push(Buffer.concat([tampered, bye])), [{ kind: 'fail' }]);
  assert.equal(r.push(bye), [], 'spent');
});

test.run();
