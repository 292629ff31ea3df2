/**
 * UTF-8 validation (RFC 3629, as RFC 6455 8.1 requires for text messages and close reasons).
 *
 * `isValidUtf8` checks a whole message. `Utf8Validator` (and the function under it,
 * `utf8Step`) checks text that arrives in pieces, carrying the state of an incomplete code
 * point across calls. It fails fast: it reports failure at the first byte after which
 * the bytes seen so far can no longer be the prefix of valid UTF-8 (so 0xF5, 0xC0,
 * ED A0 (a surrogate), F4 90 (above U+10FFFF) and the overlong E0 80 / F0 80 are rejected
 * where they appear, not when the message ends).
 */
import { isUtf8 } from 'node:buffer';

/*
 * A deterministic automaton over byte classes. A state is its row index times 16, so the
 * next state is TRANSITIONS[state + CLASS_OF[byte]] with no multiplication.
 *
 * Byte classes (RFC 3629 section 4, the table of well-formed byte sequences):
 *   0 00..7F   1 80..8F   2 90..9F   3 A0..BF   4 C0..C1 and F5..FF (never valid)
 *   5 C2..DF   6 E0       7 E1..EC, EE..EF     8 ED   9 F0   10 F1..F3   11 F4
 */
const CLASS_OF = new Uint8Array(256);
for (let b = 0; b < 256; b++) {
  let c: number;
  if (b < 0x80) c = 0;
  else if (b < 0x90) c = 1;
  else if (b < 0xa0) c = 2;
  else if (b < 0xc0) c = 3;
  else if (b < 0xc2) c = 4;
  else if (b < 0xe0) c = 5;
  else if (b === 0xe0) c = 6;
  else if (b === 0xed) c = 8;
  else if (b < 0xf0) c = 7;
  else if (b === 0xf0) c = 9;
  else if (b < 0xf4) c = 10;
  else if (b === 0xf4) c = 11;
  else c = 4;
  CLASS_OF[b] = c;
}

/** Between code points: the only state in which the text may end. */
export const UTF8_ACCEPT = 0;
/** The bytes seen so far can never become valid UTF-8. Absorbing. */
export const UTF8_REJECT = 16;
const NEED1 = 32; // one more continuation byte 80..BF
const NEED2 = 48; // two more
const NEED3 = 64; // three more
const AFTER_E0 = 80; // next byte A0..BF: 80..9F would be an overlong 3-byte form
const AFTER_ED = 96; // next byte 80..9F: A0..BF would encode a surrogate D800..DFFF
const AFTER_F0 = 112; // next byte 90..BF: 80..8F would be an overlong 4-byte form
const AFTER_F4 = 128; // next byte 80..8F: 90..BF would be above U+10FFFF

const TRANSITIONS = new Uint8Array(144).fill(UTF8_REJECT);
function on(state: number, classes: readonly number[], next: number): void {
  for (const c of classes) TRANSITIONS[state + c] = next;
}
on(UTF8_ACCEPT, [0], UTF8_ACCEPT);
on(UTF8_ACCEPT, [5], NEED1);
on(UTF8_ACCEPT, [6], AFTER_E0);
on(UTF8_ACCEPT, [7], NEED2);
on(UTF8_ACCEPT, [8], AFTER_ED);
on(UTF8_ACCEPT, [9], AFTER_F0);
on(UTF8_ACCEPT, [10], NEED3);
on(UTF8_ACCEPT, [11], AFTER_F4);
on(NEED1, [1, 2, 3], UTF8_ACCEPT);
on(NEED2, [1, 2, 3], NEED1);
on(NEED3, [1, 2, 3], NEED2);
on(AFTER_E0, [3], NEED1);
on(AFTER_ED, [1, 2], NEED1);
on(AFTER_F0, [2, 3], NEED2);
on(AFTER_F4, [1], NEED2);

/*
 * From these lengths on, Node's native `isUtf8` (simdutf, ~25 ns per call) beats the JS
 * automaton (~1 ns per byte); a range inside a buffer also pays ~35 ns for a view object
 * (measured on Node 20, x64).
 */
const NATIVE_WHOLE = 24;
const NATIVE_RANGE = 48;

/** Runs the automaton over buf[start..end). */
function walk(state: number, buf: Uint8Array, start: number, end: number): number {
  let s = state;
  for (let i = start; i < end; i++) {
    const b = buf[i]!;
    if (b < 0x80 && s === UTF8_ACCEPT) continue;
    s = TRANSITIONS[s + CLASS_OF[b]!]!;
    if (s === UTF8_REJECT) return UTF8_REJECT;
  }
  return s;
}

/**
 * Advances a streaming validation over buf[start..end) from `state` (UTF8_ACCEPT to begin)
 * and returns the new state: UTF8_REJECT as soon as the bytes so far cannot be a prefix of
 * valid UTF-8, UTF8_ACCEPT when they end on a code point boundary, another value when a
 * code point is incomplete. Each byte is examined once.
 */
export function utf8Step(state: number, buf: Uint8Array, start: number, end: number): number {
  if (state === UTF8_REJECT) return UTF8_REJECT;
  let s = state;
  let i = start;
  if (end - i < NATIVE_RANGE) return walk(s, buf, i, end);
  // Finish a code point left incomplete by the previous piece (at most 3 bytes).
  while (s !== UTF8_ACCEPT && i < end) {
    s = TRANSITIONS[s + CLASS_OF[buf[i++]!]!]!;
    if (s === UTF8_REJECT) return UTF8_REJECT;
  }
  // The native check needs whole code points, so stop it before a sequence that the end of
  // this piece cuts short; the automaton then checks that incomplete tail as a prefix.
  let cut = end;
  let k = end - 1;
  const floor = Math.max(i, end - 4);
  while (k >= floor && (buf[k]! & 0xc0) === 0x80) k--;
  if (k >= floor) {
    const lead = buf[k]!;
    const len = lead < 0xc0 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
    if (k + len > end) cut = k;
  }
  if (cut > i) {
    const whole = i === 0 && cut === buf.length;
    if (!isUtf8(whole ? buf : new Uint8Array(buf.buffer, buf.byteOffset + i, cut - i))) return UTF8_REJECT;
  }
  return walk(UTF8_ACCEPT, buf, cut, end);
}

/**
 * Whether `buf` as a whole is valid UTF-8. Short inputs go through the JS automaton, long
 * ones through Node's native `isUtf8`.
 */
export function isValidUtf8(buf: Uint8Array): boolean {
  if (buf.length >= NATIVE_WHOLE) return isUtf8(buf);
  return walk(UTF8_ACCEPT, buf, 0, buf.length) === UTF8_ACCEPT;
}

/**
 * Streaming UTF-8 validator for text that arrives in pieces (fragments of a message, or
 * chunks of one frame's payload). Each byte is examined once; earlier pieces are never
 * re-scanned.
 */
export class Utf8Validator {
  private state: number;

  constructor() {
    this.state = UTF8_ACCEPT;
  }

  /**
   * Feeds buf[start..end). Returns false as soon as the bytes seen since the last reset can
   * no longer be a prefix of valid UTF-8 (and keeps returning false until `reset()`).
   */
  update(buf: Uint8Array, start: number, end: number): boolean {
    this.state = utf8Step(this.state, buf, start, end);
    return this.state !== UTF8_REJECT;
  }

  /** True iff everything fed since the last reset is valid UTF-8 ending on a code point boundary. */
  finish(): boolean {
    return this.state === UTF8_ACCEPT;
  }

  /** Starts over for a new text. */
  reset(): void {
    this.state = UTF8_ACCEPT;
  }
}
