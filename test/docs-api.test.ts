// docs/api.md is generated from the package's type declarations (tools/api-doc.mjs): the
// committed file must be what the declarations give now, so the reference cannot drift.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as api from 'murmur-ws';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('docs/api.md equals what tools/api-doc.mjs generates from the declarations', () => {
  const r = spawnSync(process.execPath, ['tools/api-doc.mjs', '--check'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  assert.is(r.status, 0, `${r.stdout}${r.stderr}`);
});

test('docs/api.md has an entry for every value the package exports', () => {
  const doc = readFileSync(`${root}docs/api.md`, 'utf8');
  for (const name of Object.keys(api)) assert.ok(doc.includes(`\n### ${name}\n`), `${name} has no entry in docs/api.md`);
});

test.run();
