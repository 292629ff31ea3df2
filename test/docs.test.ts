import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ProtocolErrorCode } from '../src/protocol/errors.js';
import { REJECT_STATUS } from '../src/http/reject.js';
import { ClientErrorCode } from '../src/client/errors.js';
import { join } from 'node:path';
// By the package's name (a self-reference through package.json's exports), as users import it.
import * as api from 'murmur-ws';

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

test("the README names every Debian package .ci/run installs, in its apt-get line", () => {
  const ci = readFileSync(`${root}.ci/run`, 'utf8');
  const wanted = [...ci.matchAll(/need_apt\+=\(([\w.-]+)\)/g)].map((m) => m[1]!).sort();
  assert.ok(wanted.length >= 7, wanted.join(' '));
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const line = /^(?:sudo )?apt-get install (?:-y )?(.*)$/m.exec(readme);
  assert.ok(line !== null, 'no apt-get install line in the README');
  assert.equal(line[1]!.trim().split(/\s+/).sort(), wanted);
});

test('every missing system package is reported as the README says: "MISSING SYSTEM PACKAGE <name>: ..."', () => {
  const readme = readFileSync(`${root}README.md`, 'utf8');
  assert.ok(readme.includes('`MISSING SYSTEM PACKAGE <name>: ...`'));
  const walk = (dir: string): string[] => readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : [join(dir, n)]));
  let seen = 0;
  for (const file of walk(`${root}test`).filter((f) => /\.(ts|mjs)$/.test(f) && !f.endsWith('docs.test.ts'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/MISSING[ :][^'`"]*/g)) {
      if (m[0].startsWith('MISSING NODE 24')) continue;
      if (m[0].startsWith('MISSING SYSTEM PACKAGE <name>')) continue;
      seen++;
      assert.match(m[0], /^MISSING SYSTEM PACKAGE [\w.${}-]+: /, `${file}: ${m[0]}`);
    }
  }
  assert.ok(seen >= 6, `only ${seen} MISSING lines found`);
});

test.run();
