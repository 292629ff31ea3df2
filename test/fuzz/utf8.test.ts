// Differential fuzzing of the streaming UTF-8 validator against two independent ones: Node's
// `buffer.isUtf8` for whole inputs, and the WHATWG decoder (`TextDecoder` with fatal and
// stream) piece by piece. The WHATWG decoder fails at the first byte that cannot continue
// valid UTF-8, as ours must (RFC 6455 8.1 fail fast), so after every piece both must agree on
// "still a prefix of valid UTF-8", whatever the cut points, whatever the piece sizes (the
// automaton below 48 bytes, the native check above), and wherever the input sits in a larger
// buffer.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isUtf8 } from 'node:buffer';
import * as fc from 'fast-check';
import { isValidUtf8, utf8Step, UTF8_ACCEPT, UTF8_REJECT } from '../../src/protocol/utf8.js';
import { assertHeapFlat, chunkSizes, replayCorpus, fuzz, mutated } from './harness.js';

/** Byte sequences at the edges of RFC 3629's table: overlongs, surrogates, above U+10FFFF, lone and missing continuations. */
const EDGES = [
  [0xc0, 0x80], [0xc1, 0xbf], [0xc2, 0x80], [0xdf, 0xbf], [0xe0, 0x80, 0x80], [0xe0, 0x9f, 0xbf], [0xe0, 0xa0, 0x80],
  [0xed, 0x9f, 0xbf], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xef, 0xbf, 0xbf], [0xf0, 0x8f, 0xbf, 0xbf], [0xf0, 0x90, 0x80, 0x80],
  [0xf4, 0x8f, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80, 0x80, 0x80], [0xff], [0xfe], [0x80], [0xbf], [0xe1], [0xf1, 0x80],
  [0xe1, 0x80], [0x00], [0x7f],
].map((b) => new Uint8Array(b));

const text = fc.string({ unit: 'binary', maxLength: 80 }).map((s) => new Uint8Array(Buffer.from(s)));
const pieces = fc.array(fc.oneof(text, fc.constantFrom(...EDGES), fc.uint8Array({ maxLength: 6 })), { maxLength: 12 }).map((parts) => new Uint8Array(Buffer.concat(parts)));
const inputs = fc.oneof({ arbitrary: pieces, weight: 3 }, { arbitrary: mutated(text), weight: 2 }, { arbitrary: fc.uint8Array({ maxLength: 200 }), weight: 1 });

/** Checks `bytes` (placed at `offset` in a larger buffer) fed in pieces of `sizes`. */
function check(bytes: Uint8Array, sizes: readonly number[], offset: number): void {
  const whole = isUtf8(bytes);
  assert.is(isValidUtf8(bytes), whole, 'isValidUtf8 agrees with buffer.isUtf8');
  // The input inside a larger buffer, with invalid bytes around it that must not be read.
  const backing = Buffer.alloc(offset + bytes.length + 3, 0xff);
  backing.set(bytes, offset);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let state = UTF8_ACCEPT;
  let whatwgOk = true;
  let at = 0;
  for (let k = 0; at < bytes.length; k++) {
    const end = Math.min(bytes.length, at + Math.max(1, sizes[k % sizes.length]!));
    state = utf8Step(state, backing, offset + at, offset + end);
    if (whatwgOk) {
      try {
        decoder.decode(bytes.subarray(at, end), { stream: true });
      } catch {
        whatwgOk = false;
      }
    }
    assert.is(state !== UTF8_REJECT, whatwgOk, `after ${end} of ${bytes.length} bytes: still a valid prefix?`);
    at = end;
  }
  assert.is(state === UTF8_ACCEPT, whole, 'the end state says whether the whole input is valid');
}

test('corpus: every kept input, whole and in pieces of 1, 3 and 50 bytes', () => {
  replayCorpus('utf8', (bytes) => {
    for (const sizes of [[bytes.length || 1], [1], [3], [50, 1]]) check(bytes, sizes, 5);
  });
});

test('streaming validation agrees with TextDecoder (fatal, stream) after every piece, and with isUtf8 at the end', () => {
  fuzz('utf8: differential', fc.tuple(inputs, chunkSizes, fc.nat(9)), ([bytes, sizes, offset]) => check(bytes, sizes, offset), {
    decoder: 'utf8',
    ciRuns: 4000,
    bytes: ([b]) => b,
  });
});

test('heap stays flat while validating hostile text', () => {
  const samples = fc.sample(fc.tuple(inputs, chunkSizes), { numRuns: 300, seed: 3 });
  assertHeapFlat((i) => {
    const [bytes, sizes] = samples[i % samples.length]!;
    check(bytes, sizes, 1);
  }, 600, 3000);
});

test.run();
