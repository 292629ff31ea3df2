// The documentation's navigation: docs/README.md indexes every page and its links lead to a
// file and a heading that exist; native-bench/results/ holds exactly the raw results the docs
// cite (the harness writes the others on demand; they are not committed).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string): string => readFileSync(join(root, file), 'utf8');
const docPages = readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md'));

/** The anchors GitHub gives a Markdown file's headings (lower case, punctuation dropped, spaces to hyphens, -1, -2 for repeats). */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fenced = false;
  for (const line of text.split('\n')) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    const m = fenced ? null : /^#{1,6} (.*)$/.exec(line);
    if (m === null) continue;
    const base = m[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Relative links of a Markdown file that lead nowhere: a missing file, or an anchor no heading has. */
function brokenLinks(file: string): string[] {
  const broken: string[] = [];
  for (const m of read(file).matchAll(/\]\(([^)\s]+)\)/g)) {
    const href = m[1]!;
    if (/^[a-z]+:/.test(href)) continue;
    const [path, anchor] = href.split('#') as [string, string | undefined];
    const target = path === '' ? file : relative(root, join(root, dirname(file), path));
    if (!existsSync(join(root, target))) broken.push(`${href} (no file ${target})`);
    else if (anchor !== undefined && target.endsWith('.md') && !anchors(read(target)).has(anchor)) broken.push(`${href} (no heading #${anchor} in ${target})`);
  }
  return broken;
}

test('docs/README.md lists every page of docs/', () => {
  const index = read('docs/README.md');
  for (const page of docPages.filter((p) => p !== 'README.md')) assert.ok(index.includes(`](${page}`), `docs/${page} is not in docs/README.md`);
});

test('the links of docs/README.md, docs/api.md and docs/benchmarks.md lead to a file and a heading', () => {
  for (const file of ['docs/README.md', 'docs/api.md', 'docs/benchmarks.md']) assert.equal(brokenLinks(file), [], `${file} has broken links`);
});

test('docs/benchmarks.md opens with the current figures, then the log', () => {
  const text = read('docs/benchmarks.md');
  const headings = [...text.matchAll(/^## (.*)$/gm)].map((m) => m[1]);
  assert.is(headings[0], 'Current figures');
  assert.is(headings[1], 'Log');
});

/** Raw result files named anywhere in the docs (a date, then words of a run's own: `ramp-2026-12-07-node20-echo-3w.json`); `X-19.json` to `-26.json` names the files between. */
function citedResults(): Set<string> {
  const texts = ['README.md', ...docPages.map((p) => `docs/${p}`), 'native-bench/README.md', 'native-bench/sim/README.md'].map(read).join('\n');
  const cited = new Set<string>();
  const NAME = /\b((?:serve-ramp-|ramp-compare-|ramp-|micro-|ws-door-)?\d{4}-\d\d-\d\d)(?:-[a-z0-9]+)*\.json\b/g;
  for (const m of texts.matchAll(NAME)) cited.add(m[0]);
  for (const m of texts.matchAll(/\b((?:serve-ramp-|ramp-|micro-|ws-door-)?\d{4}-\d\d-\d\d)-(\d+)\.json`? to `?-(\d+)\.json/g)) {
    for (let i = Number(m[2]); i <= Number(m[3]); i++) cited.add(`${m[1]}-${i}.json`);
  }
  return cited;
}

test('native-bench/results/ commits exactly the raw results the docs cite', () => {
  const r = spawnSync('git', ['ls-files', 'native-bench/results'], { cwd: root, encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const committed = r.stdout.split('\n').filter((l) => l !== '').map((l) => l.slice('native-bench/results/'.length));
  const cited = citedResults();
  assert.equal(committed.filter((f) => !cited.has(f)), [], 'committed but cited by no doc: git rm them');
  assert.equal([...cited].filter((f) => !committed.includes(f)).sort(), [], 'cited by the docs but not committed');
});

test.run();
