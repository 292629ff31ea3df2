/**
 * RFC 6455 5.3 masking: payload byte i is XORed with key[i mod 4].
 *
 * The core works on a 32-bit key word so a payload can be (un)masked in pieces: `phase`
 * is the number of payload bytes already processed, which rotates the key. The middle of
 * a range is processed a 32-bit word at a time through a Uint32Array over the aligned
 * part; the unaligned head and the tail go byte by byte.
 */
import { randomFillSync } from 'node:crypto';

/**
 * Below this many bytes the byte loop wins: creating the Uint32Array view costs about as
 * much as XORing ~100 bytes one at a time (measured on Node 20, x64).
 */
const WORD_THRESHOLD = 128;

/** Uint32Array words are little-endian on every platform Node ships for, but check. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Reads 4 key bytes as a little-endian 32-bit word (an int32, so it stays a small integer
 * in V8): key byte j is bits 8j..8j+7.
 */
export function maskKeyWord(key: Buffer, keyOffset: number): number {
  return key[keyOffset]! | (key[keyOffset + 1]! << 8) | (key[keyOffset + 2]! << 16) | (key[keyOffset + 3]! << 24);
}

/** The key word as seen by a byte `phase` positions into the payload (rotate right 8*phase bits). */
function rotateKey(key: number, phase: number): number {
  const s = (phase & 3) << 3;
  return s === 0 ? key : (key >>> s) | (key << (32 - s));
}

/** XORs buf[start..end) byte by byte with the key word, starting at key byte 0. */
function xorBytes(buf: Buffer, start: number, end: number, key: number): void {
  const k0 = key & 0xff;
  const k1 = (key >>> 8) & 0xff;
  const k2 = (key >>> 16) & 0xff;
  const k3 = key >>> 24;
  let i = start;
  const end4 = start + ((end - start) & ~3);
  for (; i < end4; i += 4) {
    buf[i] = buf[i]! ^ k0;
    buf[i + 1] = buf[i + 1]! ^ k1;
    buf[i + 2] = buf[i + 2]! ^ k2;
    buf[i + 3] = buf[i + 3]! ^ k3;
  }
  // At most 3 bytes remain; they take key bytes 0, 1, 2.
  if (i < end) {
    buf[i] = buf[i]! ^ k0;
    if (i + 1 < end) {
      buf[i + 1] = buf[i + 1]! ^ k1;
      if (i + 2 < end) buf[i + 2] = buf[i + 2]! ^ k2;
    }
  }
}

/**
 * XORs buf[start..end) in place with a key given as a little-endian 32-bit word
 * (see `maskKeyWord`), where buf[start] is payload byte number `phase`.
 * A zero key is a no-op and returns at once.
 */
export function unmaskWord(buf: Buffer, start: number, end: number, keyWord: number, phase: number): void {
  if (keyWord === 0 || start >= end) return;
  let key = rotateKey(keyWord, phase);
  const n = end - start;
  if (n < WORD_THRESHOLD || !LITTLE_ENDIAN) {
    xorBytes(buf, start, end, key);
    return;
  }
  const abs = buf.byteOffset + start;
  const head = (4 - (abs & 3)) & 3;
  if (head !== 0) {
    xorBytes(buf, start, start + head, key);
    key = rotateKey(key, head);
  }
  const words = (n - head) >>> 2;
  const w = new Uint32Array(buf.buffer, abs + head, words);
  let j = 0;
  const words8 = words & ~7;
  for (; j < words8; j += 8) {
    w[j] = w[j]! ^ key;
    w[j + 1] = w[j + 1]! ^ key;
    w[j + 2] = w[j + 2]! ^ key;
    w[j + 3] = w[j + 3]! ^ key;
    w[j + 4] = w[j + 4]! ^ key;
    w[j + 5] = w[j + 5]! ^ key;
    w[j + 6] = w[j + 6]! ^ key;
    w[j + 7] = w[j + 7]! ^ key;
  }
  for (; j < words; j++) w[j] = w[j]! ^ key;
  xorBytes(buf, start + head + (words << 2), end, key);
}

/**
 * Unmasks buf[start..end) in place: byte start+i is XORed with key[keyOffset + ((phase + i) & 3)].
 * `phase` is the count of payload bytes already unmasked (only its value mod 4 matters), so a
 * payload split across chunks can be unmasked piece by piece. An all-zero key is skipped.
 */
export function unmaskInPlace(buf: Buffer, start: number, end: number, key: Buffer, keyOffset: number, phase: number): void {
  unmaskWord(buf, start, end, maskKeyWord(key, keyOffset), phase);
}

/**
 * Masks `src` into `dst` at `dstOffset`: dst[dstOffset+i] = src[i] ^ key[keyOffset + (i & 3)].
 * `src` is never modified (client side: the payload may be shared or read-only to us).
 * @throws RangeError when dst has fewer than src.length bytes after dstOffset.
 */
export function maskInto(src: Buffer, key: Buffer, keyOffset: number, dst: Buffer, dstOffset: number): void {
  if (dstOffset < 0 || dstOffset + src.length > dst.length) throw new RangeError('maskInto: destination too small');
  // memcpy then an in-place XOR beats a two-buffer byte loop: both passes run word-wide.
  src.copy(dst, dstOffset);
  unmaskWord(dst, dstOffset, dstOffset + src.length, maskKeyWord(key, keyOffset), 0);
}

/**
 * Where mask keys come from: `next()` returns the offset in `buf` of 4 random bytes, valid
 * until the next call. `MaskKeyPool` is the real one; tests inject fixed keys.
 */
export interface MaskKeySource {
  readonly buf: Buffer;
  next(): number;
}

/** Bytes of randomness fetched per refill: one randomFillSync call per 2048 masks. */
const POOL_SIZE = 8192;

/**
 * A pool of random mask keys (RFC 6455 5.3 requires keys a peer cannot predict, so they
 * come from the CSPRNG). `next()` returns the offset of 4 fresh bytes in `buf`. The bytes
 * stay valid only until a later `next()` refills the pool, so copy them into the frame
 * header at once.
 */
export class MaskKeyPool implements MaskKeySource {
  readonly buf: Buffer;
  private offset: number;

  constructor() {
    // Not from Buffer's shared slab: this buffer lives as long as the pool.
    this.buf = Buffer.allocUnsafeSlow(POOL_SIZE);
    this.offset = POOL_SIZE;
  }

  /** Offset in `buf` of 4 fresh random bytes, valid until the next refill. */
  next(): number {
    if (this.offset === POOL_SIZE) {
      randomFillSync(this.buf);
      this.offset = 0;
    }
    const at = this.offset;
    this.offset = at + 4;
    return at;
  }
}
