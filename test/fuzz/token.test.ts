// Fuzzing token verification: random strings, tokens with random parts, and signed tokens
// edited a character at a time (any character, or one of the base64url alphabet so the edit
// keeps the shape). verifyToken never throws, answers only with the codes of docs/serve-protocol.md's
// refusal table, and accepts a token only if it is, character for character, one that was
// signed. Claims signed with the right secret but built by a hostile minter are checked
// against their bounds.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHmac } from 'node:crypto';
import * as fc from 'fast-check';
import { MAX_PATTERNS, MAX_TOKEN_LENGTH, MAX_USER_LENGTH, mintToken, verifyToken } from '../../src/app/token.js';
import { assertHeapFlat, B64URL_CHARS, documentedCodes, editedText, fuzz, replayCorpus } from './harness.js';

const CODES = documentedCodes('serve-protocol.md', '## Connecting', 1);
const SECRET = 'fuzz-secret';
const NOW = 1_764_280_000_000;
const B64URL = B64URL_CHARS;

const SIGNED = [
  mintToken(SECRET, { user: 'ada', subscribe: ['room:*'], publish: ['room:a'], presence: ['room:*'], ttlSeconds: 3600, now: NOW }),
  mintToken(SECRET, { user: 'b', ttlSeconds: 60, now: NOW }),
  mintToken(SECRET, { user: 'ü'.repeat(MAX_USER_LENGTH), subscribe: Array.from({ length: MAX_PATTERNS }, (_, i) => `t${i}:*`), ttlSeconds: 10, now: NOW }),
];
const signedSet = new Set(SIGNED);

/** Signs any payload text as a minter would: for claims no honest minter makes. */
function signRaw(payloadJson: string): string {
  const signed = `m1.${Buffer.from(payloadJson).toString('base64url')}`;
  return `${signed}.${createHmac('sha256', SECRET).update(signed).digest('base64url')}`;
}

const editedToken = editedText(SIGNED);
const b64Part = (max: number) => fc.string({ unit: fc.constantFrom(...B64URL), maxLength: max });
const tokens = fc.oneof(
  { arbitrary: editedToken, weight: 5 },
  { arbitrary: fc.tuple(fc.constantFrom('m1', 'm2', ''), b64Part(200), b64Part(45)).map(([v, p, s]) => `${v}.${p}.${s}`), weight: 2 },
  { arbitrary: fc.string({ maxLength: 100 }), weight: 1 },
  { arbitrary: fc.constantFrom(...SIGNED), weight: 1 },
  { arbitrary: fc.nat(MAX_TOKEN_LENGTH + 10).map((n) => `m1.${'a'.repeat(n)}.${SIGNED[0]!.slice(-43)}`), weight: 1 },
);

function checkToken(token: string): void {
  const r = verifyToken(token, SECRET, NOW);
  if (r.ok) {
    assert.ok(signedSet.has(token), `accepted only as signed, character for character: ${token}`);
    return;
  }
  assert.ok(CODES.has(r.code), `${r.code} is in docs/serve-protocol.md`);
}

test('corpus: every kept token', () => {
  replayCorpus('token', (bytes) => checkToken(bytes.toString('utf8')));
});

test('signed tokens verify; edited, random and oversized ones never do, and never throw', () => {
  for (const t of SIGNED) assert.ok(verifyToken(t, SECRET, NOW).ok, 'each signed token verifies');
  fuzz('token: hostile', tokens, checkToken, { decoder: 'token', ciRuns: 5000, bytes: (t) => Buffer.from(t) });
});

test('a signature whose last character differs only in its 2 spare bits is refused', () => {
  const t = SIGNED[0]!;
  const i = B64URL.indexOf(t.at(-1)!);
  for (const c of B64URL.slice(i & ~3, (i & ~3) + 4)) {
    const spelling = t.slice(0, -1) + c;
    const r = verifyToken(spelling, SECRET, NOW);
    assert.is(r.ok ? 'accepted' : r.code, spelling === t ? 'accepted' : 'TOKEN_BAD_SIGNATURE', `last character ${c}`);
  }
});

test('hostile claims under a valid signature: only documented refusals, or claims within their bounds', () => {
  const claims = fc.record(
    { user: fc.oneof(fc.string({ maxLength: 140 }), fc.jsonValue()), exp: fc.oneof(fc.double(), fc.jsonValue()), iat: fc.jsonValue(), sub: fc.jsonValue(), pub: fc.oneof(fc.array(fc.string({ maxLength: 5 }), { maxLength: 40 }), fc.jsonValue()), presence: fc.jsonValue() },
    { requiredKeys: [] },
  );
  const payloads = fc.oneof(claims.map((c) => JSON.stringify(c)), fc.string({ maxLength: 50 }));
  fuzz(
    'token: signed hostile claims',
    payloads,
    (json) => {
      const r = verifyToken(signRaw(json), SECRET, NOW);
      if (!r.ok) return void assert.ok(CODES.has(r.code), r.code);
      const c = r.claims;
      assert.ok(c.user.length >= 1 && c.user.length <= MAX_USER_LENGTH && Number.isFinite(c.exp) && c.exp * 1000 > NOW);
      for (const list of [c.permissions.subscribe, c.permissions.publish, c.permissions.presence]) {
        assert.ok(list.length <= MAX_PATTERNS && list.every((p) => typeof p === 'string' && p.length > 0));
      }
    },
    { decoder: 'token', ciRuns: 2000, bytes: (json) => Buffer.from(signRaw(json)) },
  );
});

test('heap stays flat while verifying hostile tokens', () => {
  const samples = fc.sample(tokens, { numRuns: 500, seed: 12 });
  assertHeapFlat((i) => checkToken(samples[i % samples.length]!), 2000, 10_000);
});

test.run();
