import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { unmaskInPlace, maskInto, MaskKeyPool, unmaskWord, maskKeyWord, unmaskInto, maskBackend } from '../../src/protocol/mask.js';
import { lcg } from '../helpers/bytes.js';

/** The oracle: RFC 6455 5.3 read literally. */
function naive(buf: Buffer, start: number, end: number, key: Buffer, keyOffset: number, phase: number): void {
  for (let i = start; i < end; i++) buf[i] = buf[i]! ^ key[keyOffset + ((phase + i - start) & 3)]!;
}

function randomBuffer(rnd: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

test('RFC 6455 5.3 example: "Hello" masked with 37 fa 21 3d', () => {
  const buf = Buffer.from('7f9f4d5158', 'hex');
  unmaskInPlace(buf, 0, 5, Buffer.from('37fa213d', 'hex'), 0, 0);
  assert.is(buf.toString(), 'Hello');
});

test('matches the naive version over random lengths, offsets, keys and phases', () => {
  const rnd = lcg(7);
  for (let t = 0; t < 3000; t++) {
    const len = t < 600 ? t % 300 : Math.floor(rnd() * 5000);
    const lead = Math.floor(rnd() * 9);
    const backing = randomBuffer(rnd, lead + len + 5);
    // A subarray at an odd byteOffset exercises the alignment head.
    const a = Buffer.from(backing).subarray(lead);
    const b = Buffer.from(backing).subarray(lead);
    const key = randomBuffer(rnd, 12);
    const keyOffset = Math.floor(rnd() * 8);
    const phase = Math.floor(rnd() * 100);
    const start = Math.floor(rnd() * 3);
    naive(a, start, start + len, key, keyOffset, phase);
    unmaskInPlace(b, start, start + len, key, keyOffset, phase);
    assert.ok(a.equals(b), `len ${len} lead ${lead} phase ${phase}`);
  }
});

test('random chunkings: unmasking piece by piece with the phase equals one pass', () => {
  const rnd = lcg(11);
  const key = Buffer.from('a1b2c3d4', 'hex');
  for (let t = 0; t < 300; t++) {
    const len = Math.floor(rnd() * 20000);
    const data = randomBuffer(rnd, len);
    const whole = Buffer.from(data);
    naive(whole, 0, len, key, 0, 0);
    const pieces = Buffer.from(data);
    let at = 0;
    // Power-of-two pieces for some rounds (gobwas-style), random ones for the rest.
    const pow = t % 3 === 0 ? 1 << Math.floor(rnd() * 12) : 0;
    while (at < len) {
      const n = Math.min(len - at, pow || 1 + Math.floor(rnd() * 700));
      unmaskInPlace(pieces, at, at + n, key, 0, at);
      at += n;
    }
    assert.ok(pieces.equals(whole), `len ${len}`);
  }
});

test('masking twice restores the data', () => {
  const rnd = lcg(3);
  const data = randomBuffer(rnd, 4097);
  const copy = Buffer.from(data);
  const key = Buffer.from('deadbeef', 'hex');
  unmaskInPlace(copy, 0, copy.length, key, 0, 1);
  assert.not.ok(copy.equals(data));
  unmaskInPlace(copy, 0, copy.length, key, 0, 1);
  assert.ok(copy.equals(data));
});

test('an all-zero key leaves the bytes alone; an empty range is a no-op', () => {
  const data = Buffer.from('0123456789abcdef'.repeat(40));
  const copy = Buffer.from(data);
  unmaskInPlace(copy, 0, copy.length, Buffer.alloc(4), 0, 3);
  assert.ok(copy.equals(data));
  unmaskInPlace(copy, 5, 5, Buffer.from('ffffffff', 'hex'), 0, 0);
  assert.ok(copy.equals(data));
});

test('only bytes in [start, end) change', () => {
  const buf = Buffer.alloc(1000, 0x11);
  unmaskInPlace(buf, 3, 997, Buffer.from('ffffffff', 'hex'), 0, 0);
  assert.is(buf[2], 0x11);
  assert.is(buf[3], 0xee);
  assert.is(buf[996], 0xee);
  assert.is(buf[997], 0x11);
});

test('unmaskWord takes the key as a little-endian word', () => {
  const key = Buffer.from('01020304', 'hex');
  assert.is(maskKeyWord(key, 0), 0x04030201);
  const a = Buffer.alloc(10);
  unmaskWord(a, 0, 10, maskKeyWord(key, 0), 2);
  assert.is(a.toString('hex'), '03040102030401020304');
});

test('maskInto matches the naive version and never mutates src', () => {
  const rnd = lcg(5);
  for (let t = 0; t < 500; t++) {
    const len = Math.floor(rnd() * 3000);
    const src = randomBuffer(rnd, len);
    const srcCopy = Buffer.from(src);
    const key = randomBuffer(rnd, 8);
    const keyOffset = Math.floor(rnd() * 4);
    const dstOffset = Math.floor(rnd() * 11);
    const dst = Buffer.alloc(dstOffset + len + 3, 0x55);
    maskInto(src, key, keyOffset, dst, dstOffset);
    const expected = Buffer.from(src);
    naive(expected, 0, len, key, keyOffset, 0);
    assert.ok(src.equals(srcCopy));
    assert.ok(dst.subarray(dstOffset, dstOffset + len).equals(expected));
    assert.is(dst[dstOffset + len], 0x55);
    if (dstOffset > 0) assert.is(dst[dstOffset - 1], 0x55);
  }
});

test('maskInto rejects a destination that is too small', () => {
  assert.throws(() => maskInto(Buffer.alloc(10), Buffer.alloc(4), 0, Buffer.alloc(12), 3), (e: unknown) => e instanceof RangeError);
});

test('ranges longer than the WebAssembly memory go in slices, at any offset and phase', () => {
  const rnd = lcg(13);
  const key = Buffer.from('9e3779b9', 'hex');
  for (const len of [65_520, 65_521, 65_536, 131_041, 200_003]) {
    const lead = 1 + Math.floor(rnd() * 7);
    const phase = Math.floor(rnd() * 4);
    const a = randomBuffer(rnd, lead + len + 2);
    const b = Buffer.from(a);
    naive(a, lead, lead + len, key, 0, phase);
    unmaskInPlace(b, lead, lead + len, key, 0, phase);
    assert.ok(a.equals(b), `len ${len} lead ${lead} phase ${phase}`);
  }
});

test('unmaskInto writes the unmasked range into another buffer, for every size and phase', () => {
  const rnd = lcg(17);
  for (let t = 0; t < 400; t++) {
    const len = t < 100 ? t * 41 : Math.floor(rnd() * 70_000);
    const src = randomBuffer(rnd, len + 8);
    const start = Math.floor(rnd() * 5);
    const phase = Math.floor(rnd() * 9);
    const key = randomBuffer(rnd, 4);
    const expected = Buffer.from(src);
    naive(expected, start, start + len, key, 0, phase);
    const dstOffset = Math.floor(rnd() * 6);
    const dst = Buffer.alloc(dstOffset + len + 2, 0x55);
    unmaskInto(src, start, start + len, maskKeyWord(key, 0), phase, dst, dstOffset);
    assert.ok(dst.subarray(dstOffset, dstOffset + len).equals(expected.subarray(start, start + len)), `len ${len} phase ${phase}`);
    assert.is(dst[dstOffset + len], 0x55);
    if (dstOffset > 0) assert.is(dst[dstOffset - 1], 0x55);
  }
});

test('long ranges use WebAssembly SIMD here; without it (--jitless) the word loop gives the same bytes', () => {
  assert.is(maskBackend(), 'simd');
  const mask = fileURLToPath(new URL('../../src/protocol/mask.js', import.meta.url));
  const script = `
    const m = await import(${JSON.stringify(mask)});
    const b = Buffer.alloc(20000, 0xa5);
    m.unmaskWord(b, 1, 19999, 0x01020304, 1);
    console.log(m.maskBackend(), b.subarray(0, 6).toString('hex'), b.subarray(19996).toString('hex'));`;
  const r = spawnSync(process.execPath, ['--jitless', '--no-warnings', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const b = Buffer.alloc(20000, 0xa5);
  unmaskWord(b, 1, 19999, 0x01020304, 1);
  assert.is(r.stdout.trim(), `js ${b.subarray(0, 6).toString('hex')} ${b.subarray(19996).toString('hex')}`);
});

test('MaskKeyPool hands out 4-byte steps and refills after 2048 keys', () => {
  const pool = new MaskKeyPool();
  const first = pool.next();
  assert.is(first, 0);
  const snapshot = Buffer.from(pool.buf);
  let last = first;
  for (let i = 1; i < 2048; i++) last = pool.next();
  assert.is(last, 8188);
  assert.ok(pool.buf.equals(snapshot), 'no refill within one pool');
  assert.is(pool.next(), 0);
  assert.not.ok(pool.buf.equals(snapshot), 'refilled with fresh randomness');
});

test.run();
