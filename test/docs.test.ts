import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ProtocolErrorCode } from '../src/protocol/errors.js';
import { REJECT_STATUS } from '../src/http/reject.js';
import { ClientErrorCode } from '../src/client/errors.js';
import * as api from '../src/index.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const errorsDoc = readFileSync(`${root}docs/errors.md`, 'utf8');

test('docs/errors.md lists every protocol error code with its close code', () => {
  for (const [code, close] of Object.entries(ProtocolErrorCode)) {
    assert.ok(errorsDoc.includes(`| \`${code}\` | ${close} |`), `${code} (${close}) missing from docs/errors.md`);
  }
});

test('docs/errors.md lists every handshake rejection with its status', () => {
  for (const [reason, status] of Object.entries(REJECT_STATUS)) {
    assert.ok(errorsDoc.includes(`| \`${reason}\` | ${status} |`), `${reason} (${status}) missing from docs/errors.md`);
  }
});

test('docs/errors.md lists every client error code', () => {
  for (const code of Object.keys(ClientErrorCode)) assert.ok(errorsDoc.includes(`| \`${code}\` |`), `${code} missing`);
});

test('the package exports the public surface', () => {
  for (const name of ['Server', 'Connection', 'SendResult', 'DEFAULT_LIMITS', 'HttpReject', 'reject', 'ProtocolError', 'CloseCode', 'WebSocket', 'CloseEvent']) {
    assert.ok(name in api, `${name} not exported`);
  }
  assert.equal(api.SendResult, { Written: 'written', Queued: 'queued', Dropped: 'dropped' });
});

test.run();
