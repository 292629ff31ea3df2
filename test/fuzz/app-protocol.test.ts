// Fuzzing the JSON command protocol of `murmur serve` through its entry points: text
// commands, binary publish frames and the id peek of refused frames. Commands are generated
// from their shapes with hostile field values (any JSON value, long and control-character
// topics, huge numbers), then mutated as text or bytes. Nothing is thrown; a refusal carries a
// code of docs/serve-protocol.md's "## Errors" table; what is accepted is within the documented
// bounds; the heap stays flat.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fc from 'fast-check';
import {
  AppError,
  MAX_ID_LENGTH,
  MAX_ONLINE_QUERY,
  encodeBinaryPublish,
  parseBinaryCommand,
  parseTextCommand,
  peekId,
  topicProblem,
  type Command,
  type ProtocolLimits,
} from '../../src/app/serve-protocol.js';
import { assertHeapFlat, documentedCodes, fuzz, hostile, replayCorpus } from './harness.js';

const CODES = documentedCodes('serve-protocol.md', '## Errors');
const LIMITS: ProtocolLimits = { maxTopicBytes: 64, maxHistoryLimit: 100 };

const topic = fc.oneof(
  fc.constantFrom('room:a', 'chat', '$sys', '', 'x'.repeat(65), 'é'.repeat(33), 'a\u0000b', 'a\u007f'),
  fc.string({ maxLength: 70 }),
  fc.jsonValue(),
);
const anyValue = fc.oneof(fc.jsonValue(), fc.constantFrom(-1, 0, 1, 1e300, 2 ** 53, -0, 0.5, '', 'x'.repeat(70), true, null, [], {}));
const position = fc.oneof(fc.record({ epoch: fc.oneof(fc.string({ maxLength: 70 }), anyValue), offset: anyValue }, { requiredKeys: [] }), anyValue);

/** A command-shaped object: a known or unknown type, the fields commands read, any of them hostile. */
const commandObject = fc.record(
  {
    type: fc.oneof(fc.constantFrom('subscribe', 'unsubscribe', 'publish', 'presence', 'history', 'ping'), anyValue),
    id: fc.oneof(fc.string({ maxLength: 70 }), fc.integer(), anyValue),
    topic,
    since: position,
    rewind: anyValue,
    limit: anyValue,
    presence: anyValue,
    echo: anyValue,
    data: anyValue,
    action: fc.oneof(fc.constantFrom('join', 'leave', 'list', 'watch', 'unwatch', 'online', 'x'), anyValue),
    meta: anyValue,
    users: fc.oneof(fc.array(fc.string({ maxLength: 130 }), { maxLength: 102 }), anyValue),
  },
  { requiredKeys: [] },
);

const textFrame = fc.oneof(
  { arbitrary: commandObject.map((o) => JSON.stringify(o)), weight: 4 },
  { arbitrary: hostile(commandObject.map((o) => new Uint8Array(Buffer.from(JSON.stringify(o))))).map((b) => Buffer.from(b).toString('utf8')), weight: 3 },
  { arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)), weight: 1 },
  { arbitrary: fc.nat(20_000).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`), weight: 1 },
);

const binaryFrame = hostile(
  fc.tuple(commandObject, fc.uint8Array({ maxLength: 40 })).map(([o, payload]) => {
    const { type: _type, data: _data, ...header } = o;
    return new Uint8Array(encodeBinaryPublish(header as { topic: string }, Buffer.from(payload)));
  }),
);

/** What any parse result must satisfy. */
function checkResult(r: Command | AppError): void {
  if (r instanceof AppError) {
    assert.ok(CODES.has(r.code), `${r.code} is in docs/serve-protocol.md`);
    checkId(r.id);
    return;
  }
  checkId(r.id);
  if ('topic' in r && !(r.type === 'presence' && r.action === 'online')) assert.is(topicProblem(r.topic, LIMITS.maxTopicBytes), null, 'an accepted topic is valid');
  if (r.type === 'subscribe') assert.ok(r.rewind >= 0 && r.rewind <= LIMITS.maxHistoryLimit);
  if (r.type === 'history') assert.ok(r.limit >= 1 && r.limit <= LIMITS.maxHistoryLimit);
  if ((r.type === 'subscribe' || r.type === 'history') && r.since !== null) {
    assert.ok(typeof r.since.epoch === 'string' && r.since.epoch.length <= 64 && Number.isSafeInteger(r.since.offset) && r.since.offset >= 0);
  }
  if (r.type === 'presence') assert.ok(r.users.length <= MAX_ONLINE_QUERY && r.users.every((u) => typeof u === 'string'));
}

function checkId(id: unknown): void {
  assert.ok(id === null || (typeof id === 'string' && id.length <= MAX_ID_LENGTH) || (typeof id === 'number' && Number.isSafeInteger(id)), `id ${String(id)}`);
}

function checkText(text: string): void {
  checkResult(parseTextCommand(text, LIMITS));
  checkId(peekId(Buffer.from(text), false));
}

function checkBinary(frame: Uint8Array): void {
  const r = parseBinaryCommand(Buffer.from(frame), LIMITS);
  checkResult(r);
  if (!(r instanceof AppError)) assert.is(r.type, 'publish', 'only publish in a binary frame');
  checkId(peekId(Buffer.from(frame), true));
}

test('corpus: every kept frame, as text and as binary', () => {
  replayCorpus('app-protocol', (bytes) => {
    checkText(bytes.toString('utf8'));
    checkBinary(bytes);
  });
});

test('text commands: never a throw, only documented codes, accepted commands within bounds', () => {
  fuzz('app-protocol: text', textFrame, checkText, { decoder: 'app-protocol', ciRuns: 3000, bytes: (t) => Buffer.from(t) });
});

test('binary frames: never a throw, only documented codes, only publish', () => {
  fuzz('app-protocol: binary', binaryFrame, checkBinary, { decoder: 'app-protocol', ciRuns: 3000, bytes: (b) => b });
});

test('heap stays flat while parsing hostile commands', () => {
  const texts = fc.sample(textFrame.filter((t) => t.length < 10_000), { numRuns: 300, seed: 9 });
  const frames = fc.sample(binaryFrame, { numRuns: 300, seed: 10 });
  assertHeapFlat(
    (i) => {
      checkText(texts[i % texts.length]!);
      checkBinary(frames[i % frames.length]!);
    },
    1000,
    5000,
  );
});

test.run();
