// Fuzzing the bus's mesh links: the records a dialer and an acceptor send each other, and the
// credentials header of a link request. The record parsers never throw; what they deliver,
// re-encoded, is exactly the bytes they consumed (a prefix of the message, the whole message
// when they accept it); a refused message names its reason. A link request is accepted only
// if it is a signed header, once, and is otherwise refused with a reason and status of
// docs/bus.md's table.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fc from 'fast-check';
import { encodeHello, encodeInterest, encodePublish, LinkRecord, parseAcceptorRecords, parsePublishes, SYNCED_RECORD } from '../../src/cluster/bus/mesh-wire.js';
import { AUTH_STATUS, LinkAuth } from '../../src/cluster/bus/auth.js';
import { assertHeapFlat, B64URL_CHARS, docTableRows, editedText, fuzz, hostile, replayCorpus } from './harness.js';

const MAX_TOPIC = 64;
/** Reason -> status, from docs/bus.md ("`BUS_AUTH_MISSING` / `missing`" and its status). */
const AUTH_REASONS = new Map(
  docTableRows('bus.md', '### Authentication')
    .map((r) => [/ \/ ([a-z-]+)$/.exec(r[2] ?? '')?.[1], Number(r[1])] as const)
    .filter((e): e is readonly [string, number] => e[0] !== undefined),
);

const topic = fc.oneof(fc.string({ minLength: 1, maxLength: 30 }), fc.constantFrom('é'.repeat(32), 'x'.repeat(64), 'x'.repeat(65)));
const publishes = fc
  .array(fc.tuple(topic, fc.uint8Array({ maxLength: 50 }), fc.boolean()), { minLength: 1, maxLength: 5 })
  .map((ps) => new Uint8Array(Buffer.concat(ps.map(([t, d, bin]) => encodePublish(t, Buffer.byteLength(t), Buffer.from(d), bin)))));
const acceptorRecords = fc
  .array(
    fc.oneof(
      fc.uint8Array({ minLength: 32, maxLength: 32 }).map((p) => encodeHello(Buffer.from(p))),
      fc.constant(SYNCED_RECORD),
      fc.tuple(fc.constantFrom(LinkRecord.InterestAdd, LinkRecord.InterestRemove), fc.array(topic, { minLength: 1, maxLength: 4 })).map(([type, ts]) => Buffer.concat(encodeInterest(type, ts, 1 << 16))),
    ),
    { minLength: 1, maxLength: 5 },
  )
  .map((rs) => new Uint8Array(Buffer.concat(rs)));

/** Parses a dialer's message; every publish delivered, re-encoded, must be the next bytes of the message. */
function checkPublishes(msg: Uint8Array): void {
  const parts: Buffer[] = [];
  const why = parsePublishes(Buffer.from(msg), MAX_TOPIC, (t, data, bin) => {
    const bytes = Buffer.byteLength(t);
    assert.ok(bytes >= 1 && bytes <= MAX_TOPIC, 'a delivered topic is 1..maxTopicBytes');
    parts.push(encodePublish(t, bytes, data, bin));
  });
  const consumed = Buffer.concat(parts);
  assert.ok(Buffer.from(msg).subarray(0, consumed.length).equals(consumed), 'what is delivered is what was sent');
  if (why === null) assert.is(consumed.length, msg.length, 'an accepted message is consumed whole');
  else assert.type(why, 'string');
}

/** The same for an acceptor's message. */
function checkAcceptor(msg: Uint8Array): void {
  const parts: Buffer[] = [];
  const why = parseAcceptorRecords(Buffer.from(msg), MAX_TOPIC, {
    onHello: (proof) => parts.push(encodeHello(Buffer.from(proof))),
    onSynced: () => parts.push(SYNCED_RECORD),
    onAdd: (t) => parts.push(Buffer.from([0xf0]), Buffer.from(t)),
    onRemove: (t) => parts.push(Buffer.from([0xf1]), Buffer.from(t)),
  });
  for (let i = 0; i < parts.length; i++) if (parts[i]![0] === 0xf0 || parts[i]![0] === 0xf1) assert.ok(parts[i + 1]!.length >= 1 && parts[i + 1]!.length <= MAX_TOPIC);
  if (why !== null) assert.type(why, 'string');
}

test('corpus: kept dialer and acceptor messages', () => {
  replayCorpus('bus-publish', checkPublishes);
  replayCorpus('bus-acceptor', checkAcceptor);
});

test('dialer messages: never a throw; delivered publishes are exactly the bytes sent', () => {
  fuzz('bus: publishes', hostile(publishes), checkPublishes, { decoder: 'bus-publish', ciRuns: 3000, bytes: (b) => b });
});

test('acceptor messages: never a throw; topics within bounds', () => {
  fuzz('bus: acceptor records', hostile(acceptorRecords), checkAcceptor, { decoder: 'bus-acceptor', ciRuns: 3000, bytes: (b) => b });
});

const NOW = 1_764_280_000_000;
const KEY = Buffer.alloc(32, 0x3c);

test('link requests: accepted only as signed and only once; refused with a documented reason and status', () => {
  assert.ok(AUTH_REASONS.size >= 7, 'docs/bus.md lists the reasons');
  for (const [reason, status] of Object.entries(AUTH_STATUS)) assert.is(AUTH_REASONS.get(reason), status, `${reason} as documented`);
  const signer = new LinkAuth([KEY], { now: () => NOW });
  const headers = Array.from({ length: 4 }, (_, i) => signer.sign(`node-${i}`, 'self').header);
  const requests = fc.oneof(
    { arbitrary: editedText(headers), weight: 5 },
    { arbitrary: fc.constantFrom(...headers), weight: 1 },
    { arbitrary: fc.string({ maxLength: 120 }), weight: 1 },
    { arbitrary: fc.array(fc.string({ unit: fc.constantFrom(...B64URL_CHARS), maxLength: 50 }), { minLength: 6, maxLength: 6 }).map((p) => p.join('.')), weight: 1 },
  );
  fuzz(
    'bus: link auth',
    requests,
    (header) => {
      // A fresh verifier per case: a nonce accepted in one case is not a replay in the next.
      const verifier = new LinkAuth([KEY], { now: () => NOW });
      const r = verifier.verify(header, 'self');
      if (r.ok) {
        assert.ok(headers.includes(header), `accepted only as signed: ${header}`);
        const again = verifier.verify(header, 'self');
        assert.equal(again, { ok: false, reason: 'replay' }, 'and only once');
      } else {
        assert.ok(AUTH_REASONS.has(r.reason), `${r.reason} is in docs/bus.md`);
      }
    },
    { decoder: 'bus-auth', ciRuns: 2000, bytes: (h) => Buffer.from(h) },
  );
  replayCorpus('bus-auth', (b) => {
    const r = new LinkAuth([KEY], { now: () => NOW }).verify(b.toString('utf8'), 'self');
    assert.ok(!r.ok && AUTH_REASONS.has(r.reason));
  });
});

test('heap stays flat while parsing hostile link messages', () => {
  const samples = fc.sample(fc.tuple(hostile(publishes), hostile(acceptorRecords)), { numRuns: 300, seed: 14 });
  assertHeapFlat(
    (i) => {
      const [p, a] = samples[i % samples.length]!;
      checkPublishes(p);
      checkAcceptor(a);
    },
    1000,
    5000,
  );
});

test.run();
