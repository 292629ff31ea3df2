// Fuzzing the frame parser with hostile streams: valid frames, reserved opcodes and bits,
// wrong masks, every length form, bad close payloads, invalid text, fragments out of order,
// then mutated at the byte level. Whatever the stream and however it is cut into chunks, the
// parser reports the same events as for the stream in one chunk, fails at most once with a
// code and close code listed in docs/errors.md, holds no more than the bytes it was given
// justify, and keeps the heap flat. The reassembly property checks fragmented messages
// against what was sent.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isUtf8 } from 'node:buffer';
import * as fc from 'fast-check';
import { FrameParser, type FrameParserOptions } from '../../src/protocol/frame-parser.js';
import { Opcode, isValidWireCloseCode } from '../../src/protocol/constants.js';
import { frame, Recorder, type Event } from '../helpers/protocol.js';
import { assertHeapFlat, chunked, chunkSizes, replayCorpus, docTableRows, fuzz, mutated } from './harness.js';

/** Code -> close code, from the table in docs/errors.md. */
const DOCUMENTED = new Map(docTableRows('errors.md', '## Protocol errors').filter((r) => /^WS_ERR_/.test(r[0]!)).map((r) => [r[0]!, Number(r[1])]));

/** A grow step of the parser's collecting buffers: what a declared length alone may cost. */
const GROW_START = 64 * 1024;

const CONFIGS: readonly FrameParserOptions[] = [
  { maxPayload: 1024 * 1024, expectMasked: true },
  { maxPayload: 300, expectMasked: true },
  { maxPayload: 1024 * 1024, expectMasked: false },
  { maxPayload: 4096, expectMasked: true, rsvAllowed: 0x40 },
];

const utf8Text = fc.string({ unit: 'binary', maxLength: 60 }).map((s) => new Uint8Array(Buffer.from(s)));
const closePayload = fc
  .tuple(fc.oneof(fc.constantFrom(1000, 1001, 1004, 1005, 1006, 1015, 1016, 2999, 3000, 4999, 5000, 0, 65535), fc.integer({ min: 0, max: 65535 })), utf8Text)
  .map(([code, reason]) => new Uint8Array(Buffer.concat([Buffer.from([code >> 8, code & 0xff]), reason])));
const payload = fc.oneof(
  { arbitrary: utf8Text, weight: 4 },
  { arbitrary: fc.uint8Array({ maxLength: 200 }), weight: 4 },
  { arbitrary: closePayload, weight: 2 },
  { arbitrary: fc.uint8Array({ minLength: 126, maxLength: 1500 }), weight: 1 },
  { arbitrary: fc.integer({ min: 65_000, max: 70_000 }).map((n) => new Uint8Array(n).fill(0x61)), weight: 1 },
);

interface Spec {
  opcode: number;
  fin: boolean;
  rsv: number;
  /** Whether the frame is masked as the side that parses it expects. */
  asExpected: boolean;
  payload: Uint8Array;
  lengthBits: 7 | 16 | 64 | undefined;
  key: Uint8Array;
}

const spec: fc.Arbitrary<Spec> = fc.record({
  opcode: fc.oneof({ arbitrary: fc.constantFrom(0, 1, 2, 8, 9, 10), weight: 9 }, { arbitrary: fc.integer({ min: 0, max: 15 }), weight: 1 }),
  fin: fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, { arbitrary: fc.constant(false), weight: 1 }),
  rsv: fc.oneof({ arbitrary: fc.constant(0), weight: 9 }, { arbitrary: fc.constantFrom(0x10, 0x20, 0x40, 0x70), weight: 1 }),
  asExpected: fc.oneof({ arbitrary: fc.constant(true), weight: 19 }, { arbitrary: fc.constant(false), weight: 1 }),
  payload,
  lengthBits: fc.constantFrom(undefined, undefined, undefined, 16, 64),
  key: fc.uint8Array({ minLength: 4, maxLength: 4 }),
});

function encode(specs: readonly Spec[], options: FrameParserOptions): Uint8Array {
  return Buffer.concat(
    specs.map((s) => {
      const lengthBits = s.lengthBits === 16 && s.payload.length > 0xffff ? 64 : s.lengthBits;
      const masked = s.asExpected === options.expectMasked;
      return frame({ opcode: s.opcode, fin: s.fin, rsv: s.rsv, payload: Buffer.from(s.payload), mask: masked ? Buffer.from(s.key) : null, lengthBits });
    }),
  );
}

interface Case {
  config: number;
  bytes: Uint8Array;
  sizes: number[];
}

const streams: fc.Arbitrary<Case> = fc
  .tuple(fc.nat(CONFIGS.length - 1), fc.array(spec, { maxLength: 10 }), fc.boolean(), chunkSizes)
  .chain(([config, specs, mutate, sizes]) => {
    const valid = fc.constant(encode(specs, CONFIGS[config]!));
    return (mutate ? mutated(valid) : valid).map((bytes) => ({ config, bytes, sizes }));
  });

/** Feeds the chunks to a fresh parser, checking what it holds after each; returns the events. */
function run(chunks: Buffer[], options: FrameParserOptions): Event[] {
  const rec = new Recorder();
  const parser = new FrameParser(rec, options);
  let pushed = 0;
  for (const c of chunks) {
    parser.push(c);
    pushed += c.length;
    // A frame's copy and a message's assembly each grow by doubling from 64 KiB as bytes
    // arrive, never on a declared length alone, and never past maxPayload (125 for control).
    const bound = Math.min(2 * GROW_START + 2 * pushed, options.maxPayload + 125);
    assert.ok(parser.bufferedBytes <= bound, `holds ${parser.bufferedBytes} bytes after ${pushed} received (bound ${bound})`);
    if (parser.halted) assert.is(parser.bufferedBytes, 0, 'a halted parser holds nothing');
  }
  return rec.events;
}

/** What every event sequence must satisfy, whatever the input. */
function checkEvents(events: Event[], options: FrameParserOptions): void {
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    const last = i === events.length - 1;
    switch (e[0]) {
      case 'error':
        assert.ok(last, 'nothing after a protocol error');
        assert.ok(DOCUMENTED.has(e[1]), `${e[1]} is in docs/errors.md`);
        assert.is(e[2], DOCUMENTED.get(e[1]), `${e[1]} closes with the documented code`);
        break;
      case 'close':
        assert.ok(last, 'nothing after a close frame');
        assert.ok(e[1] === 1005 || isValidWireCloseCode(e[1]), `close code ${e[1]} is valid on the wire`);
        break;
      case 'ping':
      case 'pong':
        assert.ok(e[1].length <= 250, 'control payloads are at most 125 bytes');
        break;
      case 'message': {
        const data = Buffer.from(e[1], 'hex');
        assert.ok(data.length <= options.maxPayload, 'messages are at most maxPayload');
        // Text with an RSV bit is the extension's to validate.
        if (!e[2] && (options.rsvAllowed ?? 0) === 0) assert.ok(isUtf8(data), 'text messages are UTF-8');
        break;
      }
    }
  }
}

/** The parser's answer to `bytes` under `options` is the same in one chunk, in `sizes` and byte by byte, and sound. */
function checkStream(bytes: Uint8Array, options: FrameParserOptions, sizes: readonly number[]): void {
  const whole = run([Buffer.from(bytes)], options);
  checkEvents(whole, options);
  assert.equal(run(chunked(bytes, sizes), options), whole, 'chunked as given');
  if (bytes.length <= 4096) assert.equal(run(chunked(bytes, [1]), options), whole, 'byte by byte');
}

test('corpus: every kept frame stream, server and client side, whole, chunked and byte by byte', () => {
  replayCorpus('frame', (bytes) => {
    for (const options of CONFIGS) checkStream(bytes, options, [3, 1, 7]);
  });
});

test('hostile streams: same events at any chunking, one documented failure at most, bounded buffers', () => {
  fuzz('frame: hostile streams', streams, (c) => checkStream(c.bytes, CONFIGS[c.config]!, c.sizes), { decoder: 'frame', ciRuns: 2500, bytes: (c) => c.bytes });
});

interface Message {
  binary: boolean;
  body: Uint8Array;
  /** Cut points of the body into fragments (sorted and clamped when used). */
  cuts: number[];
  /** A control frame after each fragment: 0 none, 1 ping, 2 pong. */
  controls: number[];
}

const message: fc.Arbitrary<Message> = fc.record({
  binary: fc.boolean(),
  body: fc.oneof(utf8Text, fc.uint8Array({ maxLength: 3000 })),
  cuts: fc.array(fc.nat(3000), { maxLength: 5 }),
  controls: fc.array(fc.constantFrom(0, 0, 1, 2), { maxLength: 6 }),
});

test('reassembly: fragmented messages with control frames between fragments arrive whole, at any chunking', () => {
  const options: FrameParserOptions = { maxPayload: 1024 * 1024, expectMasked: true };
  const arb = fc.tuple(fc.array(message, { maxLength: 6 }), chunkSizes, fc.uint8Array({ minLength: 4, maxLength: 4 }));
  fuzz(
    'frame: reassembly',
    arb,
    ([messages, sizes, key]) => {
      const parts: Buffer[] = [];
      const expected: Event[] = [];
      const mask = Buffer.from(key);
      for (const m of messages) {
        const body = Buffer.from(m.body);
        // Binary bodies may be any bytes; a text body must be UTF-8.
        const binary = m.binary || !isUtf8(body);
        const bounds = [0, ...m.cuts.map((c) => c % (body.length + 1)).sort((a, b) => a - b), body.length];
        for (let f = 0; f + 1 < bounds.length; f++) {
          const fin = f + 2 === bounds.length;
          const opcode = f > 0 ? Opcode.Continuation : binary ? Opcode.Binary : Opcode.Text;
          parts.push(frame({ opcode, fin, payload: body.subarray(bounds[f]!, bounds[f + 1]!), mask }));
          if (fin) expected.push(['message', body.toString('hex'), binary]);
          const control = m.controls[f] ?? 0;
          if (control !== 0) {
            const p = body.subarray(0, Math.min(125, body.length));
            parts.push(frame({ opcode: control === 1 ? Opcode.Ping : Opcode.Pong, payload: p, mask }));
            expected.push([control === 1 ? 'ping' : 'pong', p.toString('hex')]);
          }
        }
      }
      const stream = Buffer.concat(parts);
      assert.equal(run([Buffer.from(stream)], options), expected, 'one chunk');
      assert.equal(run(chunked(stream, sizes), options), expected, 'chunked');
    },
    { decoder: 'frame', ciRuns: 300 },
  );
});

test('heap stays flat over thousands of hostile streams', () => {
  const samples = fc.sample(streams, { numRuns: 400, seed: 7 });
  assertHeapFlat(
    (i) => {
      const c = samples[i % samples.length]!;
      run(chunked(c.bytes, c.sizes), CONFIGS[c.config]!);
    },
    800,
    3200,
  );
});

test.run();
