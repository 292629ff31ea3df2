import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isUtf8 } from 'node:buffer';
import { Utf8Validator, isValidUtf8, utf8Step, UTF8_ACCEPT, UTF8_REJECT } from '../../src/protocol/utf8.js';
import { hex, lcg } from '../helpers/bytes.js';

// Sequences after Autobahn|Testsuite section 6 (Markus Kuhn's UTF-8 decoder stress test).
const VALID: Array<[string, string]> = [
  ['6.2 mixed', Buffer.from('Hello-µ@ßöäüàá-UTF-8!!').toString('hex')],
  ['6.5 kosme', 'cebae1bdb9cf83cebcceb5'],
  ['6.7 first 1-byte', '00'],
  ['6.7 first 2-byte', 'c280'],
  ['6.7 first 3-byte', 'e0a080'],
  ['6.7 first 4-byte', 'f0908080'],
  ['6.9 last 1-byte', '7f'],
  ['6.9 last 2-byte', 'dfbf'],
  ['6.9 last 3-byte', 'efbfbf'],
  ['6.9 last 4-byte U+10FFFF', 'f48fbfbf'],
  ['6.11 U+D7FF', 'ed9fbf'],
  ['6.11 U+E000', 'ee8080'],
  ['6.11 U+FFFD', 'efbfbd'],
  ['6.22 noncharacter U+FFFE', 'efbfbe'],
  ['6.22 noncharacter U+1FFFE', 'f09fbfbe'],
  ['6.22 noncharacter U+10FFFE', 'f48fbfbe'],
  ['empty', ''],
  ['all of them', 'cebae1bdb9cf83cebcceb5 00 c280 e0a080 f0908080 7f dfbf efbfbf f48fbfbf ed9fbf ee8080'],
];

const INVALID: Array<[string, string]> = [
  ['6.3 kosme + surrogate', 'cebae1bdb9cf83cebcceb5eda080656469746564'],
  ['6.4 above U+10FFFF mid-text', 'cebae1bdb9cf83cebcceb5f4908080656469746564'],
  ['6.8 5-byte form', 'f888808080'],
  ['6.8 6-byte form', 'fc8480808080'],
  ['6.10 U+1FFFFF as 4 bytes', 'f7bfbfbf'],
  ['6.10 5-byte last', 'fbbfbfbfbf'],
  ['6.10 6-byte last', 'fdbfbfbfbfbf'],
  ['6.11 U+110000', 'f4908080'],
  ['6.12 lone continuation 80', '80'],
  ['6.12 lone continuation bf', 'bf'],
  ['6.12 continuations', '80bf80bf'],
  ['6.13 lonely 2-byte start', 'c020'],
  ['6.13 lonely 3-byte start', 'e020'],
  ['6.13 lonely 4-byte start', 'f020'],
  ['6.13 lonely 5-byte start', 'f820'],
  ['6.14 2-byte missing last (C0)', 'c0'],
  ['6.14 3-byte missing last', 'e080'],
  ['6.14 4-byte missing last', 'f08080'],
  ['6.14 U+07FF missing last', 'df'],
  ['6.14 U+FFFF missing last', 'efbf'],
  ['6.14 U+10FFFF missing last', 'f48fbf'],
  ['6.15 incomplete sequences concatenated', 'c0e080f08080f8808080fc80808080dfefbff7bfbffbbfbfbffdbfbfbfbf'],
  ['6.16 FE', 'fe'],
  ['6.16 FF', 'ff'],
  ['6.16 FEFEFFFF', 'fefeffff'],
  ['6.17 overlong slash 2-byte', 'c0af'],
  ['6.17 overlong slash 3-byte', 'e080af'],
  ['6.17 overlong slash 4-byte', 'f08080af'],
  ['6.17 overlong slash 5-byte', 'f8808080af'],
  ['6.18 max overlong 2-byte', 'c1bf'],
  ['6.18 max overlong 3-byte', 'e09fbf'],
  ['6.18 max overlong 4-byte', 'f08fbfbf'],
  ['6.19 overlong NUL 2-byte', 'c080'],
  ['6.19 overlong NUL 3-byte', 'e08080'],
  ['6.19 overlong NUL 4-byte', 'f0808080'],
  ['6.20 U+D800', 'eda080'],
  ['6.20 U+DB7F', 'edadbf'],
  ['6.20 U+DB80', 'edae80'],
  ['6.20 U+DBFF', 'edafbf'],
  ['6.20 U+DC00', 'edb080'],
  ['6.20 U+DF80', 'edbe80'],
  ['6.20 U+DFFF', 'edbfbf'],
  ['6.21 paired surrogates', 'eda080edb080'],
  ['6.21 paired surrogates 2', 'edafbfedbfbf'],
  ['F5 lead', 'f5808080'],
  ['valid then truncated', '48656c6c6fe282'],
];

/** Continuation bytes that stand for every distinction the RFC 3629 table makes. */
const CONT = [0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf];

/**
 * Oracle for "can these bytes still become valid UTF-8": they are valid, or some 1-3
 * continuation bytes make them valid (checked with Node's native isUtf8).
 */
function isPrefix(bytes: Buffer): boolean {
  if (isUtf8(bytes)) return true;
  const tails: number[][] = [[]];
  for (let n = 1; n <= 3; n++) {
    for (const t of tails.filter((x) => x.length === n - 1)) {
      for (const c of CONT) {
        const next = [...t, c];
        if (isUtf8(Buffer.concat([bytes, Buffer.from(next)]))) return true;
        tails.push(next);
      }
    }
  }
  return false;
}

/** Index of the byte at which the input stops being a possible prefix, or -1. */
function firstBadByte(bytes: Buffer): number {
  for (let i = 1; i <= bytes.length; i++) if (!isPrefix(bytes.subarray(0, i))) return i - 1;
  return -1;
}

/** With ASCII padding around it, so ranges are long enough for the native path. */
function padded(h: string, before: number, after: number): Buffer {
  return Buffer.concat([Buffer.alloc(before, 0x61), hex(h), Buffer.alloc(after, 0x62)]);
}

test('6.x valid sequences are accepted whole, and split at every byte position', () => {
  for (const [name, h] of VALID) {
    for (const buf of [hex(h), padded(h, 70, 70)]) {
      assert.ok(isValidUtf8(buf), name);
      for (let k = 0; k <= buf.length; k++) {
        const v = new Utf8Validator();
        assert.ok(v.update(buf, 0, k) && v.update(buf, k, buf.length) && v.finish(), `${name} split at ${k}`);
      }
    }
  }
});

test('6.x invalid sequences are rejected whole, and split at every byte position', () => {
  for (const [name, h] of INVALID) {
    for (const buf of [hex(h), padded(h, 70, 0), padded(h, 70, 70)]) {
      assert.not.ok(isValidUtf8(buf), name);
      for (let k = 0; k <= buf.length; k++) {
        const v = new Utf8Validator();
        const ok = v.update(buf, 0, k) && v.update(buf, k, buf.length) && v.finish();
        assert.not.ok(ok, `${name} split at ${k}`);
      }
    }
  }
});

test('fail fast: byte by byte, update() turns false exactly at the first impossible byte', () => {
  for (const [name, h] of [...INVALID, ...VALID]) {
    const buf = hex(h);
    const expected = firstBadByte(buf);
    const v = new Utf8Validator();
    let failedAt = -1;
    for (let i = 0; i < buf.length; i++) {
      if (!v.update(buf, i, i + 1)) {
        failedAt = i;
        break;
      }
    }
    assert.is(failedAt, expected, name);
  }
});

test('fail fast with long pieces: the piece that brings the first impossible byte fails', () => {
  for (const [name, h] of INVALID) {
    const buf = padded(h, 100, 100);
    const bad = firstBadByte(buf);
    for (let k = 1; k < buf.length; k++) {
      const v = new Utf8Validator();
      const first = v.update(buf, 0, k);
      // The first piece fails iff it contains the first impossible byte.
      assert.is(first, bad === -1 || bad >= k, `${name}: first piece [0, ${k}) with bad byte at ${bad}`);
      if (first && bad !== -1) assert.not.ok(v.update(buf, k, buf.length), `${name} second piece`);
    }
  }
});

test('truncated prefixes that can never become valid fail at the end of the piece (Autobahn 6.4)', () => {
  for (const h of ['f5', 'c0', 'c1', 'eda0', 'f490', 'e080', 'f080', 'f8', 'fe', 'ff']) {
    const v = new Utf8Validator();
    const buf = padded(h, 80, 0); // long: the native path must still check the cut-off tail
    assert.not.ok(v.update(buf, 0, buf.length), h);
    const short = new Utf8Validator();
    assert.not.ok(short.update(hex(h), 0, hex(h).length), `${h} short`);
  }
  for (const h of ['e2', 'e282', 'f0', 'f09f', 'f09f98', 'f4', 'f48f', 'ed', 'ed9f', 'c2', 'df']) {
    const v = new Utf8Validator();
    const buf = padded(h, 80, 0);
    assert.ok(v.update(buf, 0, buf.length), `${h} is still a valid prefix`);
    assert.not.ok(v.finish(), `${h} is incomplete`);
  }
});

test('a code point split across three pieces', () => {
  const buf = hex('f09f9880'); // U+1F600
  const v = new Utf8Validator();
  assert.ok(v.update(buf, 0, 1));
  assert.not.ok(v.finish());
  assert.ok(v.update(buf, 1, 3));
  assert.ok(v.update(buf, 3, 4));
  assert.ok(v.finish());
});

test('once rejected, stays rejected until reset', () => {
  const v = new Utf8Validator();
  assert.not.ok(v.update(hex('ff'), 0, 1));
  assert.not.ok(v.update(Buffer.from('abc'), 0, 3));
  assert.not.ok(v.finish());
  v.reset();
  assert.ok(v.update(Buffer.from('abc'), 0, 3));
  assert.ok(v.finish());
});

test('utf8Step works on ranges of a larger buffer', () => {
  const buf = Buffer.concat([hex('ff ff'), Buffer.from('héllo wörld '.repeat(10)), hex('ff')]);
  assert.is(utf8Step(UTF8_ACCEPT, buf, 2, buf.length - 1), UTF8_ACCEPT);
  assert.is(utf8Step(UTF8_ACCEPT, buf, 2, buf.length), UTF8_REJECT);
});

test('random text and random corruption agree with Node isUtf8, whole and in random pieces', () => {
  const rnd = lcg(42);
  const alphabet = ['a', 'é', '€', '😀', 'ß', '\u0000', '\u07ff', '\uffff', '\u{10ffff}', ' '];
  for (let t = 0; t < 1500; t++) {
    let s = '';
    const n = Math.floor(rnd() * 200);
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(rnd() * alphabet.length)];
    const buf = Buffer.from(s);
    if (t % 2 === 1 && buf.length > 0) buf[Math.floor(rnd() * buf.length)] = Math.floor(rnd() * 256);
    const expected = isUtf8(buf);
    assert.is(isValidUtf8(buf), expected);
    const v = new Utf8Validator();
    let at = 0;
    let ok = true;
    while (at < buf.length && ok) {
      const k = Math.min(buf.length, at + 1 + Math.floor(rnd() * 90));
      ok = v.update(buf, at, k);
      at = k;
    }
    assert.is(ok && v.finish(), expected, s);
  }
});

test.run();
