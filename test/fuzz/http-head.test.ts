// Fuzzing the two HTTP head readers that face the network: the server's upgrade request
// parser and the client's response reader. Heads are generated from the grammar (methods,
// targets, versions, header names and values with every byte class, CRLF or bare LF, obs-fold)
// then mutated. However a head is cut into chunks, the answer is the one for the whole head
// (the same head and the same bytes after it, or the same rejection); a request is refused
// only with a reason and status of docs/errors.md's handshake table, a response only with a
// client code of its client table; nothing else is thrown, and the heap stays flat.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fc from 'fast-check';
import { RequestHeadParser, type HeadLimits, type ParsedHead } from '../../src/http/request-head.js';
import { HttpReject } from '../../src/http/reject.js';
import { validateUpgrade } from '../../src/http/upgrade.js';
import { isValidClientKey } from '../../src/protocol/handshake.js';
import { ResponseHeadReader, type ResponseHeadLimits } from '../../src/client/response-head.js';
import { ClientError } from '../../src/client/errors.js';
import { DEFAULT_LIMITS } from '../../src/limits.js';
import { assertHeapFlat, chunked, chunkSizes, replayCorpus, docTableRows, documentedCodes, fuzz, hostile } from './harness.js';

/** Reason -> status, from docs/errors.md. */
const REJECTIONS = new Map(docTableRows('errors.md', '## Handshake rejections').filter((r) => /^[A-Z_]+$/.test(r[0]!)).map((r) => [r[0]!, Number(r[1])]));
const CLIENT_CODES = documentedCodes('errors.md', '## Client errors');

const REQUEST_LIMITS: readonly HeadLimits[] = [
  { maxHeadBytes: DEFAULT_LIMITS.maxHeadBytes, maxHeaders: DEFAULT_LIMITS.maxHeaders, maxLineLength: DEFAULT_LIMITS.maxLineLength },
  { maxHeadBytes: 300, maxHeaders: 4, maxLineLength: 64 },
];
const RESPONSE_LIMITS: readonly ResponseHeadLimits[] = [
  { maxHeadBytes: DEFAULT_LIMITS.maxHeadBytes, maxHeaders: DEFAULT_LIMITS.maxHeaders },
  { maxHeadBytes: 300, maxHeaders: 4 },
];

const latin1 = (chars: string, max: number) => fc.string({ unit: fc.constantFrom(...chars), maxLength: max });
const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/** Every kind of byte a value may or may not hold: visible, SP, HTAB, obs-text, CTLs, DEL, colon. */
const VALUE_CHARS = 'abcXYZ019 \t:;,=/"\x80\xe9\xff\x00\x01\x0b\x7f';
const headerName = fc.oneof(
  fc.constantFrom('Host', 'Upgrade', 'Connection', 'Sec-WebSocket-Key', 'sec-websocket-version', 'Origin', 'X-A'),
  latin1(TCHARS, 20),
  latin1(TCHARS + ' :\t\x00', 10),
);
const header = fc.tuple(headerName, fc.constantFrom(':', ': ', ' : ', ':\t'), latin1(VALUE_CHARS, 40), fc.constantFrom('\r\n', '\r\n', '\n', '\r', '\r\n '));
const eol = fc.constantFrom('\r\n', '\r\n', '\n');

const requestHead = fc
  .tuple(
    fc.constantFrom('GET', 'GET', 'POST', 'get', '', 'G\x00T'),
    fc.constantFrom(' ', ' ', '  ', '\t'),
    fc.oneof(fc.constantFrom('/', '/chat?x=1', '*', '/ws?token=m1.abc'), latin1('/?=&abc%\x7f\x80 ', 30)),
    fc.constantFrom(' HTTP/1.1', ' HTTP/1.1', ' HTTP/1.0', ' HTTP/2.0', ' HTTP/1.9', ' HTTP/11', ' http/1.1', ''),
    eol,
    fc.array(header, { maxLength: 8 }),
    eol,
    fc.uint8Array({ maxLength: 20 }),
  )
  .map(([method, sp, target, version, end, headers, last, body]) => {
    const text = `${method}${sp}${target}${version}${end}${headers.map(([n, c, v, e]) => `${n}${c}${v}${e}`).join('')}${last}`;
    return new Uint8Array(Buffer.concat([Buffer.from(text, 'latin1'), body]));
  });

const responseHead = fc
  .tuple(
    fc.constantFrom('HTTP/1.1 101 Switching Protocols', 'HTTP/1.1 101', 'HTTP/1.0 200 OK', 'HTTP/1.1 099 x', 'HTTP/2 101 x', 'HTTP/1.1 503 Service Unavailable'),
    fc.array(header, { maxLength: 8 }),
    fc.uint8Array({ maxLength: 20 }),
  )
  .map(([line, headers, rest]) => {
    const text = `${line}\r\n${headers.map(([n, c, v, e]) => `${n}${c}${v}${e}`).join('')}\r\n`;
    return new Uint8Array(Buffer.concat([Buffer.from(text, 'latin1'), rest]));
  });

type RequestOutcome = { kind: 'incomplete' } | { kind: 'reject'; reason: string; status: number } | { kind: 'head'; head: ParsedHead['head']; rest: string };

/** Feeds chunks until a result; the rest is what followed the head, in the last chunk and after it. */
function parseRequest(chunks: Buffer[], limits: HeadLimits): RequestOutcome {
  const p = new RequestHeadParser(limits);
  for (let i = 0; i < chunks.length; i++) {
    const r = p.push(chunks[i]!);
    if (r === undefined) continue;
    if (r instanceof HttpReject) return { kind: 'reject', reason: r.reason, status: r.status };
    return { kind: 'head', head: r.head, rest: Buffer.concat([r.rest, ...chunks.slice(i + 1)]).toString('hex') };
  }
  return { kind: 'incomplete' };
}

function checkRequest(bytes: Uint8Array, limits: HeadLimits, sizes: readonly number[]): void {
  const whole = parseRequest([Buffer.from(bytes)], limits);
  if (whole.kind === 'reject') {
    assert.ok(REJECTIONS.has(whole.reason), `${whole.reason} is in docs/errors.md`);
    assert.is(whole.status, REJECTIONS.get(whole.reason), `${whole.reason} has the documented status`);
  }
  if (whole.kind === 'head') {
    const h = whole.head;
    assert.ok(h.headers.length <= limits.maxHeaders, 'at most maxHeaders');
    assert.ok(h.method.length > 0 && h.target.length > 0, 'a method and a target');
    for (const [name, value] of h.headers) {
      assert.ok(/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name), `header name ${JSON.stringify(name)} is a lower-case token`);
      assert.not.ok(/[\x00-\x08\x0a-\x1f\x7f]/.test(value), `value ${JSON.stringify(value)} has no CTL`);
    }
    assert.ok(bytes.length - whole.rest.length / 2 <= limits.maxHeadBytes, 'the head is at most maxHeadBytes');
  }
  assert.equal(parseRequest(chunked(bytes, sizes), limits), whole, 'chunked as given');
  assert.equal(parseRequest(chunked(bytes, [1]), limits), whole, 'byte by byte');
}

type ResponseOutcome = { kind: 'incomplete' } | { kind: 'error'; code: string } | { kind: 'head'; status: number; headers: Array<[string, string]>; rest: string };

function readResponse(chunks: Buffer[], limits: ResponseHeadLimits): ResponseOutcome {
  const r = new ResponseHeadReader(limits);
  for (let i = 0; i < chunks.length; i++) {
    let out;
    try {
      out = r.push(chunks[i]!);
    } catch (err) {
      if (!(err instanceof ClientError)) throw err;
      return { kind: 'error', code: err.code };
    }
    if (out !== undefined) return { kind: 'head', status: out.head.status, headers: [...out.head.headers], rest: Buffer.concat([out.rest, ...chunks.slice(i + 1)]).toString('hex') };
  }
  return { kind: 'incomplete' };
}

function checkResponse(bytes: Uint8Array, limits: ResponseHeadLimits, sizes: readonly number[]): void {
  const whole = readResponse([Buffer.from(bytes)], limits);
  if (whole.kind === 'error') assert.ok(CLIENT_CODES.has(whole.code), `${whole.code} is in docs/errors.md`);
  if (whole.kind === 'head') {
    assert.ok(whole.headers.length <= limits.maxHeaders, 'at most maxHeaders');
    assert.ok(bytes.length - whole.rest.length / 2 <= limits.maxHeadBytes, 'the head is at most maxHeadBytes');
  }
  assert.equal(readResponse(chunked(bytes, sizes), limits), whole, 'chunked as given');
  assert.equal(readResponse(chunked(bytes, [1]), limits), whole, 'byte by byte');
}

test('corpus: every kept request and response head, whole, chunked and byte by byte', () => {
  replayCorpus('request-head', (bytes) => {
    for (const limits of REQUEST_LIMITS) checkRequest(bytes, limits, [5, 1, 40]);
  });
  replayCorpus('response-head', (bytes) => {
    for (const limits of RESPONSE_LIMITS) checkResponse(bytes, limits, [5, 1, 40]);
  });
});

const requests = fc.tuple(hostile(requestHead), fc.nat(REQUEST_LIMITS.length - 1), chunkSizes);
const responses = fc.tuple(hostile(responseHead), fc.nat(RESPONSE_LIMITS.length - 1), chunkSizes);

test('request heads: the same answer at any chunking, only documented rejections', () => {
  fuzz('request-head: hostile', requests, ([bytes, l, sizes]) => checkRequest(bytes, REQUEST_LIMITS[l]!, sizes), { decoder: 'request-head', ciRuns: 2500, bytes: ([b]) => b });
});

test('response heads: the same answer at any chunking, only documented client errors', () => {
  fuzz('response-head: hostile', responses, ([bytes, l, sizes]) => checkResponse(bytes, RESPONSE_LIMITS[l]!, sizes), { decoder: 'response-head', ciRuns: 2500, bytes: ([b]) => b });
});

/** The headers of a valid upgrade, each of which a case may drop, repeat or give another value. */
const UPGRADE_HEADERS: Array<[string, string]> = [
  ['Host', 'example.com'],
  ['Upgrade', 'websocket'],
  ['Connection', 'Upgrade'],
  ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
  ['Sec-WebSocket-Version', '13'],
  ['Sec-WebSocket-Protocol', 'chat, superchat'],
  ['Sec-WebSocket-Extensions', 'permessage-deflate; client_max_window_bits'],
  ['Origin', 'http://example.com'],
];
const upgradeValue = fc.oneof(
  fc.constantFrom('', 'websocket', 'WebSocket, h2c', 'keep-alive, Upgrade', 'upgrade', '13', '8', ' 13', 'dGhlIHNhbXBsZSBub25jZQ=', 'AAAAAAAAAAAAAAAAAAAAAB==', 'a,,b', 'chat, chat', ',', 'a b', 'x'.repeat(200)),
  latin1(VALUE_CHARS, 30),
);
const upgradeHead = fc
  .tuple(
    fc.constantFrom('GET', 'GET', 'GET', 'POST'),
    fc.constantFrom('/ws', '/ws', '/ws?token=x', 'http://example.com/ws?x', '*', 'example.com:80', '//a'),
    fc.array(fc.record({ drop: fc.constantFrom(false, false, false, false, false, true), repeat: fc.constantFrom(false, false, false, true), value: fc.option(upgradeValue, { freq: 3 }) }), { minLength: UPGRADE_HEADERS.length, maxLength: UPGRADE_HEADERS.length }),
  )
  .map(([method, target, edits]) => {
    const lines = UPGRADE_HEADERS.flatMap(([name, value], i) => {
      const e = edits[i]!;
      // Dropped, or its value replaced; else kept, maybe followed by a second line.
      if (e.drop) return e.value === null ? [] : [`${name}: ${e.value}`];
      const line = `${name}: ${value}`;
      return e.repeat ? [line, e.value === null ? line : `${name}: ${e.value}`] : [line];
    });
    return new Uint8Array(Buffer.from(`${method} ${target} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`, 'latin1'));
  });

test('upgrade requests: refused only with a documented reason, or a key, host and subprotocols that are valid', () => {
  fuzz(
    'upgrade: hostile',
    fc.oneof({ arbitrary: upgradeHead, weight: 3 }, { arbitrary: hostile(upgradeHead), weight: 1 }),
    (bytes) => {
      const parsed = new RequestHeadParser(REQUEST_LIMITS[0]!).push(Buffer.from(bytes));
      if (parsed === undefined || parsed instanceof HttpReject) return;
      const r = validateUpgrade(parsed.head);
      if (r instanceof HttpReject) {
        assert.ok(REJECTIONS.has(r.reason), `${r.reason} is in docs/errors.md`);
        assert.is(r.status, REJECTIONS.get(r.reason));
        return;
      }
      assert.is(parsed.head.method, 'GET');
      assert.ok(isValidClientKey(r.key) && r.host.length > 0 && r.path.startsWith('/'));
      assert.is(new Set(r.protocols).size, r.protocols.length, 'distinct subprotocols');
      for (const p of r.protocols) assert.ok(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(p), `subprotocol ${p} is a token`);
    },
    { decoder: 'request-head', ciRuns: 2500, bytes: (b) => b },
  );
});

test('heap stays flat while parsing hostile heads', () => {
  const req = fc.sample(requests, { numRuns: 200, seed: 5 });
  const res = fc.sample(responses, { numRuns: 200, seed: 6 });
  assertHeapFlat(
    (i) => {
      const [a, la, sa] = req[i % req.length]!;
      parseRequest(chunked(a, sa), REQUEST_LIMITS[la]!);
      const [b, lb, sb] = res[i % res.length]!;
      readResponse(chunked(b, sb), RESPONSE_LIMITS[lb]!);
    },
    500,
    3000,
  );
});

test.run();
