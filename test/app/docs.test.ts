// docs/serve-protocol.md is the reference of the wire protocol: it must list every error code of
// the protocol and every token refusal, and every command.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AppErrorCode } from '../../src/app/serve-protocol.js';
import { TokenErrorCode } from '../../src/app/token.js';
import { serveFlags } from '../../src/cli/serve.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const protocol = readFileSync(`${root}docs/serve-protocol.md`, 'utf8');
const operations = readFileSync(`${root}docs/operations.md`, 'utf8');

test('docs/serve-protocol.md lists every command error code', () => {
  for (const code of Object.keys(AppErrorCode)) assert.ok(protocol.includes(`| \`${code}\` |`), `${code} missing from docs/serve-protocol.md`);
});

test('docs/serve-protocol.md lists every token refusal with 401', () => {
  for (const code of Object.keys(TokenErrorCode)) assert.ok(protocol.includes(`| 401 | \`${code}\` |`), `${code} missing from docs/serve-protocol.md`);
});

test('docs/serve-protocol.md describes every command', () => {
  for (const cmd of ['ping', 'subscribe', 'unsubscribe', 'publish', 'history', 'presence']) assert.ok(protocol.includes(`| \`${cmd}\` |`), cmd);
});

test('docs/operations.md names every serve flag', () => {
  for (const flag of Object.keys(serveFlags)) if (flag !== 'help') assert.ok(operations.includes(`--${flag}`), `--${flag} missing from docs/operations.md`);
});

test.run();
