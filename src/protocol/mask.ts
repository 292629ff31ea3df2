/**
 * RFC 6455 5.3 masking: payload byte i is XORed with key[i mod 4].
 *
 * The core works on a 32-bit key word so a payload can be (un)masked in pieces: `phase`
 * is the number of payload bytes already processed, which rotates the key. Ranges of
 * SIMD_THRESHOLD bytes or more go through a 100-byte WebAssembly function that XORs 16 bytes
 * per instruction (the range is copied into its memory and back: two memcpy and one SIMD pass
 * cost about half of JavaScript's word loop at 16 KiB); shorter ones, and every range where
 * WebAssembly SIMD is not available (`--jitless`), a 32-bit word at a time through a
 * Uint32Array over the aligned part, the unaligned head and the tail byte by byte.
 */
import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';

/**
 * Below this many bytes the byte loop wins: creating the Uint32Array view costs about as
 * much as XORing ~100 bytes one at a time (measured on Node 20, x64).
 */
const WORD_THRESHOLD = 128;

/**
 * From this many bytes the WebAssembly pass wins over the word loop. Measured on Node 20,
 * x64: the word loop 170 ns at 1 KiB, where the pass's fixed cost (two Buffer.copy calls) is
 * ~300 ns; at 16 KiB 1.03 µs against 2.07-2.63 µs (`node native-bench/micro/run.mjs --groups unmask`).
 */
const SIMD_THRESHOLD = 2048;

/**
 * The WebAssembly module, hand-assembled (a type, a function, one 64 KiB memory, two exports):
 *
 *   (func (export "x") (param $p i32) (param $n i32) (param $key i32)
 *     (local $k v128) (local $end i32)
 *     (local.set $k (i32x4.splat (local.get $key)))
 *     (local.set $end (i32.add (local.get $p) (i32.and (local.get $n) (i32.const -16))))
 *     (block (loop
 *       (br_if 1 (i32.ge_u (local.get $p) (local.get $end)))
 *       (v128.store (local.get $p) (v128.xor (v128.load (local.get $p)) (local.get $k)))
 *       (local.set $p (i32.add (local.get $p) (i32.const 16)))
 *       (br 0))))
 *   (memory (export "m") 1)
 *
 * It XORs whole 16-byte blocks of memory[p..p+n) (the caller rounds n up: bytes past the range
 * are scratch). The key word is little-endian, as maskKeyWord makes it.
 */
const XOR_BODY = [
  0x02, 0x01, 0x7b, 0x01, 0x7f, // locals: one v128, one i32
  0x20, 0x02, 0xfd, 0x11, 0x21, 0x03, // k = i32x4.splat(key)
  0x20, 0x00, 0x20, 0x01, 0x41, 0x70, 0x71, 0x6a, 0x21, 0x04, // end = p + (n & -16)
  0x02, 0x40, 0x03, 0x40, // block, loop
  0x20, 0x00, 0x20, 0x04, 0x4f, 0x0d, 0x01, // br_if 1 (p >= end)
  0x20, 0x00, 0x20, 0x00, 0xfd, 0x00, 0x04, 0x00, 0x20, 0x03, 0xfd, 0x51, 0xfd, 0x0b, 0x04, 0x00, // store(p, load(p) ^ k)
  0x20, 0x00, 0x41, 0x10, 0x6a, 0x21, 0x00, // p += 16
  0x0c, 0x00, 0x0b, 0x0b, 0x0b, // br 0, end loop, end block, end
];
const section = (id: number, bytes: number[]): number[] => [id, bytes.length, ...bytes];
const XOR_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, [0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00]), // type (i32, i32, i32) -> ()
  ...section(3, [0x01, 0x00]), // one function of that type
  ...section(5, [0x01, 0x00, 0x01]), // one memory of 1 page, no maximum
  ...section(7, [0x02, 0x01, 0x78, 0x00, 0x00, 0x01, 0x6d, 0x02, 0x00]), // export "x" func 0, "m" memory 0
  ...section(10, [0x01, XOR_BODY.length, ...XOR_BODY]),
]);
/** Bytes XORed per call: the memory's 64 KiB less a block of scratch; a multiple of 4 keeps the key phase. */
const SIMD_SLICE = 65536 - 16;

interface SimdXor {
  mem: Buffer;
  xor: (p: number, n: number, key: number) => void;
}
/** The part of the WebAssembly global used here (the compile target's lib does not declare it). */
declare const WebAssembly: {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
};

/** undefined: not tried yet; null: not available here (no WebAssembly, or no SIMD). */
let simd: SimdXor | null | undefined;

function loadSimd(): SimdXor | null {
  try {
    if (typeof WebAssembly !== 'object' || !WebAssembly.validate(XOR_MODULE)) return null;
    const exports = new WebAssembly.Instance(new WebAssembly.Module(XOR_MODULE), {}).exports;
    // The memory never grows, so its ArrayBuffer (and this view) stays valid.
    return { mem: Buffer.from((exports.m as { buffer: ArrayBuffer }).buffer), xor: exports.x as SimdXor['xor'] };
  } catch {
    return null;
  }
}

/** The WebAssembly pass for a range of n bytes, or null where the word loop does it. */
function simdFor(n: number): SimdXor | null {
  if (n < SIMD_THRESHOLD || !LITTLE_ENDIAN) return null;
  return simd !== undefined ? simd : (simd = loadSimd());
}

/** 'simd' when ranges of SIMD_THRESHOLD bytes or more go through WebAssembly, 'js' otherwise. */
export function maskBackend(): 'simd' | 'js' {
  return simdFor(SIMD_THRESHOLD) === null ? 'js' : 'simd';
}

/**
 * XORs src[start..end) with the key word (already rotated to src[start]) into dst at
 * dstOffset, through WebAssembly memory, a slice at a time. dst may be src.
 */
function simdXorInto(s: SimdXor, src: Buffer, start: number, end: number, key: number, dst: Buffer, dstOffset: number): void {
  const mem = s.mem;
  for (let at = start; at < end; at += SIMD_SLICE) {
    const n = Math.min(SIMD_SLICE, end - at);
    src.copy(mem, 0, at, at + n);
    s.xor(0, n + 15, key);
    mem.copy(dst, dstOffset + (at - start), 0, n);
  }
}

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
  const wasm = simdFor(n);
  if (wasm !== null) return simdXorInto(wasm, buf, start, end, key, buf, start);
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
 * Writes src[start..end) unmasked into dst at dstOffset (src[start] is payload byte number
 * `phase`); src may be left unmasked or masked, as is quicker: the caller gives it up. One
 * copy fewer than unmasking in place and copying for a payload that is being collected.
 */
export function unmaskInto(src: Buffer, start: number, end: number, keyWord: number, phase: number, dst: Buffer, dstOffset: number): void {
  const wasm = keyWord === 0 ? null : simdFor(end - start);
  if (wasm !== null) return simdXorInto(wasm, src, start, end, rotateKey(keyWord, phase), dst, dstOffset);
  unmaskWord(src, start, end, keyWord, phase);
  src.copy(dst, dstOffset, start, end);
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
  const keyWord = maskKeyWord(key, keyOffset);
  const wasm = keyWord === 0 ? null : simdFor(src.length);
  if (wasm !== null) return simdXorInto(wasm, src, 0, src.length, keyWord, dst, dstOffset);
  // memcpy then an in-place XOR beats a two-buffer byte loop: both passes run word-wide.
  src.copy(dst, dstOffset);
  unmaskWord(dst, dstOffset, dstOffset + src.length, keyWord, 0);
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
