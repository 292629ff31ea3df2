import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseExtensions, negotiateDeflate, deflateOfferHeader, acceptDeflateResponse } from '../../src/protocol/index.js';
import type { DeflateServerPolicy, DeflateClientOffer } from '../../src/protocol/index.js';
import * as fc from 'fast-check';

const POLICY: DeflateServerPolicy = { serverMaxWindowBits: 15, clientMaxWindowBits: 15 };
const answer = (header: string, policy = POLICY): string | null => {
  const offers = parseExtensions(header);
  if (offers === null) return 'MALFORMED';
  return negotiateDeflate(offers, policy)?.header ?? null;
};
const BOTH = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';

// ---- RFC 6455 9.1: the header's grammar -------------------------------------------------------

test('parseExtensions: names, parameters with and without values, quoted values, several offers', () => {
  assert.equal(parseExtensions('permessage-deflate; client_max_window_bits, x-foo'), [
    { name: 'permessage-deflate', params: [['client_max_window_bits', true]] },
    { name: 'x-foo', params: [] },
  ]);
  assert.equal(parseExtensions('Permessage-Deflate ;Server_Max_Window_Bits = "10"'), [{ name: 'permessage-deflate', params: [['server_max_window_bits', '10']] }]);
  assert.equal(parseExtensions(' , permessage-deflate ,'), [{ name: 'permessage-deflate', params: [] }]);
  assert.equal(parseExtensions(''), []);
});

test('parseExtensions: broken grammar is null', () => {
  for (const bad of ['permessage-deflate;', 'permessage-deflate; =1', ';x', 'a b', 'a; b="1', 'a; b="1 0"', 'a; b=', 'a; b="x"y', 'a; b=""', 'a@b', 'a; b=1 c']) {
    assert.is(parseExtensions(bad), null, bad);
  }
});

// ---- RFC 7692 7.1: the server's answer ---------------------------------------------------------

test('a bare offer: both no-context-takeover parameters, nothing else', () => {
  assert.is(answer('permessage-deflate'), BOTH);
});

test('the browser offer (client_max_window_bits without a value) gets no client_max_window_bits back at 15', () => {
  assert.is(answer('permessage-deflate; client_max_window_bits'), BOTH);
  assert.is(answer('permessage-deflate; client_max_window_bits', { serverMaxWindowBits: 15, clientMaxWindowBits: 10 }), `${BOTH}; client_max_window_bits=10`);
});

test('client_max_window_bits with a value: echoed, lowered to the policy', () => {
  assert.is(answer('permessage-deflate; client_max_window_bits=12'), `${BOTH}; client_max_window_bits=12`);
  assert.is(answer('permessage-deflate; client_max_window_bits=12', { serverMaxWindowBits: 15, clientMaxWindowBits: 9 }), `${BOTH}; client_max_window_bits=9`);
});

test('server_max_window_bits: the offered value or less; included unasked when the policy is below 15', () => {
  for (let bits = 8; bits <= 15; bits++) assert.is(answer(`permessage-deflate; server_max_window_bits=${bits}`), `${BOTH}; server_max_window_bits=${bits}`);
  assert.is(answer('permessage-deflate; server_max_window_bits=15', { serverMaxWindowBits: 12, clientMaxWindowBits: 15 }), `${BOTH}; server_max_window_bits=12`);
  assert.is(answer('permessage-deflate', { serverMaxWindowBits: 12, clientMaxWindowBits: 15 }), `${BOTH}; server_max_window_bits=12`);
  const n = negotiateDeflate(parseExtensions('permessage-deflate; server_max_window_bits=8')!, POLICY)!;
  assert.is(n.agreement.serverMaxWindowBits, 8);
});

test('the no-context-takeover parameters offered are accepted (and always answered)', () => {
  assert.is(answer('permessage-deflate; server_no_context_takeover'), BOTH);
  assert.is(answer('permessage-deflate; client_no_context_takeover'), BOTH);
  assert.is(answer('permessage-deflate; client_no_context_takeover; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9'), `${BOTH}; server_max_window_bits=9; client_max_window_bits=9`);
});

test('an offer with an unknown, repeated or invalid parameter is declined (RFC 7692 5.1), not an error', () => {
  for (const bad of [
    'permessage-deflate; foo',
    'permessage-deflate; server_max_window_bits',
    'permessage-deflate; server_max_window_bits=7',
    'permessage-deflate; server_max_window_bits=16',
    'permessage-deflate; server_max_window_bits=010',
    'permessage-deflate; server_max_window_bits=1a',
    'permessage-deflate; client_max_window_bits=0',
    'permessage-deflate; server_no_context_takeover=1',
    'permessage-deflate; client_no_context_takeover="x"',
    'permessage-deflate; client_no_context_takeover; client_no_context_takeover',
    'permessage-deflate; server_max_window_bits=10; server_max_window_bits=10',
    'x-webkit-deflate-frame',
  ]) {
    assert.is(answer(bad), null, bad);
  }
});

test('several offers: the first acceptable one wins (Autobahn 13.7 offers three)', () => {
  assert.is(answer('permessage-deflate; foo, permessage-deflate; server_max_window_bits=10'), `${BOTH}; server_max_window_bits=10`);
  assert.is(answer('x-other, permessage-deflate; server_max_window_bits=8, permessage-deflate'), `${BOTH}; server_max_window_bits=8`);
  assert.is(answer('permessage-deflate; server_max_window_bits="11"'), `${BOTH}; server_max_window_bits=11`);
});

// ---- RFC 7692 7.1: the client's check of the response -------------------------------------------

const OFFER: DeflateClientOffer = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15 };

test('client offer header', () => {
  assert.is(deflateOfferHeader(OFFER), 'permessage-deflate; client_max_window_bits');
  assert.is(deflateOfferHeader({ serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10 }), 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits');
});

test('client: valid responses give the agreement', () => {
  assert.equal(acceptDeflateResponse(undefined, OFFER), null);
  assert.equal(acceptDeflateResponse('permessage-deflate', OFFER), { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 });
  assert.equal(acceptDeflateResponse(`${BOTH}; server_max_window_bits=9; client_max_window_bits=10`, OFFER), { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 10 });
});

test('client: invalid responses are refused with a reason', () => {
  const tight: DeflateClientOffer = { serverNoContextTakeover: true, clientNoContextTakeover: false, serverMaxWindowBits: 10 };
  for (const [bad, offer] of [
    ['permessage-deflate; foo', OFFER],
    ['permessage-deflate; client_max_window_bits', OFFER],
    ['permessage-deflate, permessage-deflate', OFFER],
    ['x-other', OFFER],
    ['permessage-deflate; server_max_window_bits=7', OFFER],
    ['permessage-deflate;', OFFER],
    ['permessage-deflate; server_no_context_takeover; server_max_window_bits=11', tight],
    ['permessage-deflate; server_no_context_takeover', tight],
    ['permessage-deflate; server_max_window_bits=10', tight],
  ] as Array<[string, DeflateClientOffer]>) {
    assert.type(acceptDeflateResponse(bad, offer), 'string', bad);
  }
});

// ---- properties ------------------------------------------------------------------------------

test('parseExtensions never throws, on any string of header characters', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...'permessage-deflate;,= \t"\\_x0189'.split(''), 'server_max_window_bits', 'client_no_context_takeover'), { maxLength: 40 }).map((parts) => parts.join('')), (v) => {
      const r = parseExtensions(v);
      return r === null || Array.isArray(r);
    }),
    { numRuns: 3000, seed: 7692 },
  );
});

test('every answer the server gives, the client accepts, for the offer the client made', () => {
  const bits = fc.integer({ min: 8, max: 15 });
  const offer = fc.record({
    serverNoContextTakeover: fc.boolean(),
    clientNoContextTakeover: fc.boolean(),
    serverMaxWindowBits: bits,
  });
  const policy = fc.record({ serverMaxWindowBits: fc.integer({ min: 9, max: 15 }), clientMaxWindowBits: bits });
  fc.assert(
    fc.property(offer, policy, (o: DeflateClientOffer, p: DeflateServerPolicy) => {
      const answered = negotiateDeflate(parseExtensions(deflateOfferHeader(o))!, p);
      if (answered === null) return false;
      const agreed = acceptDeflateResponse(answered.header, o);
      if (agreed === null || typeof agreed === 'string') return false;
      // Both ends read the same agreement from the same header.
      return agreed.serverMaxWindowBits === answered.agreement.serverMaxWindowBits && agreed.serverMaxWindowBits <= o.serverMaxWindowBits && agreed.clientNoContextTakeover;
    }),
    { numRuns: 2000, seed: 7692 },
  );
});

test.run();
