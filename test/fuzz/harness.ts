/**
 * The fuzz campaign's shared machinery: how long each property runs, the corpus of inputs
 * that once broke something (replayed on every run), the codes the docs promise, and the
 * heap check.
 *
 * Budget. In CI every property runs a fixed number of cases (its `ciRuns`), with a seed
 * derived from its name, so a run is reproducible and the whole campaign stays well under a
 * minute of CPU. On demand:
 *   MURMUR_FUZZ_RUNS=N      cases per property instead of ciRuns;
 *   MURMUR_FUZZ_SECONDS=S   keep running each property with fresh seeds for S seconds;
 *   MURMUR_FUZZ_SEED=X      the seed (printed with every failure) to replay one run.
 * A failing case is shrunk by fast-check, printed with its seed, and its bytes are written
 * to test/fuzz/corpus/<decoder>/ so that the input is replayed from then on.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as fc from 'fast-check';
import * as assert from 'uvu/assert';

/** The repository root (this file runs as dist/test/fuzz/harness.js). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CORPUS = join(ROOT, 'test', 'fuzz', 'corpus');

const envRuns = Number(process.env.MURMUR_FUZZ_RUNS ?? 0);
const envSeconds = Number(process.env.MURMUR_FUZZ_SECONDS ?? 0);
const envSeed = process.env.MURMUR_FUZZ_SEED === undefined ? undefined : Number(process.env.MURMUR_FUZZ_SEED);

/** A stable 31-bit seed from a property's name: CI runs are the same every time. */
function seedOf(name: string): number {
  return createHash('sha256').update(name).digest().readUInt32BE(0) >>> 1;
}

export interface FuzzOptions<T> {
  /** Where a failing case is kept: test/fuzz/corpus/<decoder>/. */
  decoder: string;
  /** Cases per run in CI. */
  ciRuns: number;
  /** The bytes of a case worth keeping in the corpus (omit when a case is not one input). */
  bytes?: (value: T) => Uint8Array;
}

/**
 * Runs `predicate` over `arb` within the campaign's budget. The predicate fails by throwing
 * (uvu's assertions) or returning false.
 */
export function fuzz<T>(name: string, arb: fc.Arbitrary<T>, predicate: (value: T) => boolean | void, o: FuzzOptions<T>): void {
  const numRuns = envRuns > 0 ? envRuns : o.ciRuns;
  const deadline = envSeconds > 0 ? Date.now() + envSeconds * 1000 : 0;
  let seed = envSeed ?? seedOf(name);
  do {
    const details = fc.check(fc.property(arb, predicate), { numRuns, seed });
    if (details.failed) {
      const value = details.counterexample?.[0] as T;
      const kept = o.bytes === undefined || value === undefined ? '' : `; input kept as ${keep(o.decoder, o.bytes(value))}`;
      const why = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
      assert.unreachable(`${name}: failed after ${details.numRuns} cases (MURMUR_FUZZ_SEED=${seed}${kept})\n${fc.stringify(value)}\n${why}`);
    }
    seed = (seed + 0x9e3779b1) >>> 1;
  } while (deadline > 0 && Date.now() < deadline);
}

/** Writes a failing input into the corpus; returns its path relative to the root. */
function keep(decoder: string, bytes: Uint8Array): string {
  const dir = join(CORPUS, decoder);
  mkdirSync(dir, { recursive: true });
  const name = `found-${createHash('sha256').update(bytes).digest('hex').slice(0, 12)}.bin`;
  writeFileSync(join(dir, name), bytes);
  return `test/fuzz/corpus/${decoder}/${name}`;
}

/**
 * Runs `check` on every input kept for `decoder`, naming the file when one fails. Asserts
 * there is at least one: an empty replay proves nothing.
 */
export function replayCorpus(decoder: string, check: (bytes: Buffer) => void): void {
  const dir = join(CORPUS, decoder);
  const names = existsSync(dir) ? readdirSync(dir).sort() : [];
  assert.ok(names.length > 0, `test/fuzz/corpus/${decoder}/ holds no input`);
  for (const name of names) {
    try {
      check(readFileSync(join(dir, name)));
    } catch (err) {
      throw new Error(`test/fuzz/corpus/${decoder}/${name}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * The rows of every table in the section of a docs page under `heading` (the start of a line
 * such as "## Errors"), as cells with their backticks removed. The section runs to the next heading
 * of the same or a higher level.
 */
export function docTableRows(page: string, heading: string): string[][] {
  const lines = readFileSync(join(ROOT, 'docs', page), 'utf8').split('\n');
  const start = lines.findIndex((l) => l.startsWith(heading));
  assert.ok(start >= 0, `docs/${page} has no "${heading}"`);
  const level = heading.indexOf(' ');
  const rows: string[][] = [];
  for (let i = start + 1; i < lines.length; i++) {
    const l = lines[i]!;
    const m = /^(#+) /.exec(l);
    if (m !== null && m[1]!.length <= level) break;
    if (!l.startsWith('|') || /^\|[-:| ]+\|$/.test(l)) continue;
    rows.push(l.split('|').slice(1, -1).map((c) => c.trim().replace(/`/g, '')));
  }
  return rows;
}

/** The codes a docs table documents: the cells of column `column` that look like CODE_NAMES. */
export function documentedCodes(page: string, heading: string, column = 0): Set<string> {
  const codes = new Set<string>();
  for (const row of docTableRows(page, heading)) {
    const cell = row[column] ?? '';
    if (/^[A-Z][A-Z0-9_]+$/.test(cell)) codes.add(cell);
  }
  assert.ok(codes.size > 0, `docs/${page} "${heading}" lists no code in column ${column}`);
  return codes;
}

/** Node's gc, whether or not the process was started with --expose-gc. */
export const gc: () => void =
  (globalThis as { gc?: () => void }).gc ??
  (() => {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  })();

/** The JS heap plus the memory of ArrayBuffers (Buffers' bytes live outside the heap), after full GCs. */
function retainedBytes(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/**
 * Memory stays flat: runs `round` `warm` times (caches, JIT and pools reach their steady
 * state), measures the heap and ArrayBuffers after GCs, runs it `rounds` more times, and
 * asserts they grew by less than `boundBytes` (1 MiB by default: about twice the noise seen
 * between two measurements). A leak of boundBytes / rounds bytes per input or more fails.
 */
export function assertHeapFlat(round: (i: number) => void, warm: number, rounds: number, boundBytes = 1024 * 1024): void {
  for (let i = 0; i < warm; i++) round(i);
  const before = retainedBytes();
  for (let i = 0; i < rounds; i++) round(warm + i);
  const grew = retainedBytes() - before;
  assert.ok(grew < boundBytes, `heap and buffers grew ${(grew / 1024).toFixed(0)} KiB over ${rounds} rounds (bound ${(boundBytes / 1024).toFixed(0)} KiB)`);
}

/** Cuts `bytes` into fresh copies at the given sizes (cycled); the parsers under test may write into what they are given. */
export function chunked(bytes: Uint8Array, sizes: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (let k = 0; at < bytes.length; k++) {
    const n = Math.max(1, sizes[k % sizes.length]!);
    out.push(Buffer.from(bytes.subarray(at, Math.min(bytes.length, at + n))));
    at += n;
  }
  return out;
}

/** Chunk sizes for a chunked replay: mostly small, sometimes large. */
export const chunkSizes: fc.Arbitrary<number[]> = fc.array(fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 300 })), { minLength: 1, maxLength: 12 });

/**
 * Hostile variants of valid encodings: bit flips, truncation, extension, splices and
 * length-like bytes overwritten with 0xff or 0, a few rounds deep (fast-check shrinks them).
 */
export function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const edit = fc.record({
    kind: fc.integer({ min: 0, max: 6 }),
    at: fc.nat(),
    bit: fc.integer({ min: 0, max: 7 }),
    bytes: fc.uint8Array({ maxLength: 12 }),
  });
  return fc.tuple(valid, fc.array(edit, { maxLength: 4 })).map(([v, edits]) => {
    let b = Buffer.from(v);
    for (const e of edits) {
      const at = b.length === 0 ? 0 : e.at % b.length;
      switch (e.kind) {
        case 0:
          if (b.length > 0) b[at] = b[at]! ^ (1 << e.bit);
          break;
        case 1:
          b = b.subarray(0, at);
          break;
        case 2:
          b = Buffer.concat([b, e.bytes]);
          break;
        case 3:
          b = Buffer.concat([b.subarray(0, at), e.bytes, b.subarray(at)]);
          break;
        case 4:
          b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + e.bit))]);
          break;
        case 5:
          b.fill(0xff, at, Math.min(b.length, at + 1 + (e.bit & 3)));
          break;
        default:
          b.fill(0, at, Math.min(b.length, at + 1 + (e.bit & 3)));
      }
    }
    return new Uint8Array(b);
  });
}

/** Random bytes, or (more often) mutations of valid encodings. */
export function hostile(valid: fc.Arbitrary<Uint8Array>, maxRandom = 256): fc.Arbitrary<Uint8Array> {
  return fc.oneof({ arbitrary: fc.uint8Array({ maxLength: maxRandom }), weight: 1 }, { arbitrary: mutated(valid), weight: 3 }, { arbitrary: valid, weight: 1 });
}

/** The base64url alphabet: edits with these characters keep a token's or a header's shape. */
export const B64URL_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * One of `texts` with one to three character edits (replace, insert, delete, truncate), often
 * in its last characters: a base64url field's final character carries spare bits there.
 */
export function editedText(texts: readonly string[]): fc.Arbitrary<string> {
  const edit = fc.record({
    at: fc.oneof(fc.nat(), fc.integer({ min: -3, max: -1 })),
    kind: fc.nat(3),
    ch: fc.oneof(fc.constantFrom(...B64URL_CHARS), fc.constantFrom('.', '=', ' ', '+', '/', '\u0000', 'é')),
  });
  return fc.tuple(fc.constantFrom(...texts), fc.array(edit, { minLength: 1, maxLength: 3 })).map(([text, edits]) => {
    let s = text;
    for (const e of edits) {
      const at = e.at < 0 ? Math.max(0, s.length + e.at) : e.at % (s.length + 1);
      if (e.kind === 0) s = s.slice(0, at) + e.ch + s.slice(at + 1);
      else if (e.kind === 1) s = s.slice(0, at) + e.ch + s.slice(at);
      else if (e.kind === 2) s = s.slice(0, at) + s.slice(at + 1);
      else s = s.slice(0, at);
    }
    return s;
  });
}
