// The package as users get it: `npm pack`, installed offline into an empty project (it has no
// runtime dependency), imported by its name through every documented subpath; and every code
// block of README.md and docs/*.md checked against that installed package:
// - ts and js blocks are type-checked by tsc against the package's types (a js block is
//   plain TypeScript too; the browser's `/murmur-client.js` is the package's `/client`);
//   a `<!-- doc-test: run -->` block is a whole program and is run, and must exit 0;
// - sh blocks: every `murmur <command>` (or `node dist/src/cli/main.js`, `npm start --`) uses
//   a command and flags that exist, `npm run X` a script that exists, `node <file>` a file
//   that exists;
// - json blocks parse; jsonc blocks (JSON with `...` elisions), haproxy and nginx (checked by
//   test/lb/configs.test.ts) and unlabelled blocks (wire text, formulas) are not code to check.
// A block opts out only with `<!-- doc-test: skip <reason> -->`.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { docBlocks, shellCommands } from './helpers/doc-blocks.js';
import type { DocBlock } from './helpers/doc-blocks.js';
import type { FlagSpec } from '../src/cli/args.js';
import { serveFlags } from '../src/cli/serve.js';
import { echoFlags } from '../src/cli/echo.js';
import { tokenFlags } from '../src/cli/token.js';
import { tuneFlags } from '../src/cli/tune.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; scripts: Record<string, string>; exports: Record<string, unknown>; bin: Record<string, string> };
const tmp = mkdtempSync(join(tmpdir(), 'murmur-pack-'));
const project = join(tmp, 'project');
const docFiles = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const blocks: DocBlock[] = docFiles.flatMap((f) => docBlocks(f, readFileSync(join(root, f), 'utf8')));

/** What each documented subpath must export (docs name these imports). */
const SUBPATHS: Record<string, string[]> = {
  '': ['Server', 'WebSocket', 'reject', 'HttpReject', 'SendResult', 'DEFAULT_LIMITS'],
  '/app': ['startApp', 'App'],
  '/workers': ['startAppWorkers', 'AppWorkers'],
  '/cluster': ['GossipNode', 'generateKey', 'ClusterPresence', 'PresenceReplicator', 'replicationTiming', 'MeshBus', 'RedisBus', 'gossipMembership', 'MESH_PATH'],
  '/client': ['MurmurClient'],
  '/ws': ['WebSocketServer', 'WebSocket', 'createWebSocketStream'],
  '/murmur-client.js': ['MurmurClient'],
};

function sh(cmd: string, args: string[], cwd: string, timeout = 120_000): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' } });
  return { status: r.status, out: `${r.stdout}${r.stderr}${r.error !== undefined ? String(r.error) : ''}` };
}

test.before(() => {
  const packed = sh('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', tmp], root);
  assert.is(packed.status, 0, packed.out);
  const tarball = join(tmp, packed.out.trim().split('\n').pop()!);
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'doc-examples', private: true, type: 'module' }));
  // Offline: nothing is needed from the registry. fastest-levenshtein (an optional dependency
  // of the CLI's suggestions) is left out, so the package is seen working without it.
  const installed = sh('npm', ['install', '--offline', '--omit=optional', '--ignore-scripts', '--no-package-lock', tarball], project);
  assert.is(installed.status, 0, installed.out);
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));

test('the package installs by its name with no runtime dependency, and keeps the `murmur` command', () => {
  assert.is(pkg.name, 'murmur-ws');
  assert.equal(readdirSync(join(project, 'node_modules')).filter((n) => !n.startsWith('.')), ['murmur-ws']);
  assert.ok(existsSync(join(project, 'node_modules/.bin/murmur')));
  const version = sh(join(project, 'node_modules/.bin/murmur'), ['--version'], project);
  assert.is(version.out.trim(), '0.1.0');
  assert.ok(existsSync(join(project, 'node_modules/murmur-ws/LICENSE')));
});

test('every documented subpath imports by the package name, with what the docs use from it', () => {
  for (const [sub, names] of Object.entries(SUBPATHS)) assert.ok(`.${sub}` in pkg.exports || sub === '', `package.json exports lack .${sub}`);
  const script = Object.entries(SUBPATHS)
    .map(([sub, names], i) => `import * as m${i} from 'murmur-ws${sub}';\nfor (const n of ${JSON.stringify(names)}) if (!(n in m${i})) throw new Error('murmur-ws${sub} lacks ' + n);`)
    .join('\n');
  writeFileSync(join(project, 'imports.mjs'), `${script}\nconsole.log('ok');\n`);
  const r = sh(process.execPath, ['imports.mjs'], project);
  assert.is(r.out.trim(), 'ok', r.out);
  // Every import written in the docs names a subpath the package exports.
  for (const b of blocks) {
    for (const m of b.code.matchAll(/from '(murmur-ws[^']*)'/g)) {
      const sub = m[1]!.slice('murmur-ws'.length);
      assert.ok(sub in SUBPATHS, `${b.file}:${b.line}: imports ${m[1]}, which the package does not export`);
    }
    assert.not.match(b.code, /from '\.{1,2}\/|from 'murmur'/, `${b.file}:${b.line}: imports a source path or the old name, not the package`);
  }
});

test('every ts and js block of README.md and docs/ type-checks against the installed package; whole programs run', () => {
  const code = blocks.filter((b) => (b.lang === 'ts' || b.lang === 'js') && b.skip === undefined);
  assert.ok(code.length >= 10, `only ${code.length} blocks found`);
  const dir = join(project, 'blocks');
  mkdirSync(dir);
  const names = new Map<string, DocBlock>();
  code.forEach((b, i) => {
    const name = `${b.file.replace(/\W/g, '_')}_${b.line}_${i}`;
    names.set(name, b);
    const body = b.code.replaceAll("'/murmur-client.js'", "'murmur-ws/client'");
    const prelude = b.prelude.trimEnd();
    writeFileSync(join(dir, `${name}.ts`), `${prelude === '' ? '' : `${prelude}\n`}${body}\nexport {};\n`);
  });
  const typeRoots = join(root, 'node_modules/@types');
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmitOnError: false, outDir: 'out', rootDir: '.', skipLibCheck: false, lib: ['ES2022'], types: ['node'], typeRoots: [typeRoots] },
      include: ['blocks/*.ts'],
    }),
  );
  const tsc = sh(process.execPath, [join(root, 'node_modules/typescript/lib/tsc.js'), '-p', 'tsconfig.json'], project);
  const errors = tsc.out
    .split('\n')
    .filter((l) => /error TS/.test(l))
    .map((l) => {
      const m = /^blocks\/(\w+)\.ts\((\d+),(\d+)\): (.*)$/.exec(l);
      if (m === null) return l;
      const b = names.get(m[1]!)!;
      // Lines of the prelude come first: errors are mapped back to the line in the doc.
      const prelude = b.prelude.trimEnd();
      return `${b.file}:${b.line + Number(m[2]) - (prelude === '' ? 0 : prelude.split('\n').length)}: ${m[4]}`;
    });
  assert.equal(errors, [], `doc blocks that do not compile:\n${errors.join('\n')}`);
  const run = code.filter((b) => b.run);
  assert.ok(run.length >= 2, 'the README has whole programs to run');
  for (const [name, b] of names) {
    if (!b.run) continue;
    const r = sh(process.execPath, [join(project, 'out/blocks', `${name}.js`)], project, 30_000);
    assert.is(r.status, 0, `${b.file}:${b.line} did not exit 0:\n${r.out}`);
  }
});

const COMMANDS: Record<string, Record<string, FlagSpec>> = { serve: serveFlags, echo: echoFlags, token: tokenFlags, tune: tuneFlags };

/** Problems of one shell command as the docs write it. */
function checkCommand(words: string[]): string | undefined {
  let w = words;
  while (w.length > 0 && /^[A-Z_][A-Z0-9_]*=/.test(w[0]!)) w = w.slice(1);
  if (w[0] === 'export') return undefined;
  let cli: string[] | undefined;
  if (w[0] === 'murmur') cli = w.slice(1);
  else if (w[0] === 'npx' && w[1] === 'murmur') cli = w.slice(2);
  else if (w[0] === 'node' && w[1] === 'dist/src/cli/main.js') cli = w.slice(2);
  else if (w[0] === 'npm' && (w[1] === 'start' || w[1] === 'test')) {
    if (w[1] === 'start' && w[2] === '--') cli = ['serve', ...w.slice(3)];
    else return undefined;
  } else if (w[0] === 'npm' && w[1] === 'run') return w[2] !== undefined && w[2] in pkg.scripts ? undefined : `no npm script '${w[2]}'`;
  else if (w[0] === 'node') {
    const file = w.slice(1).find((a) => !a.startsWith('-'));
    return file === undefined || existsSync(join(root, file)) ? undefined : `no file ${file}`;
  }
  if (cli === undefined) return undefined;
  const [cmd, ...args] = cli;
  if (cmd === undefined || !(cmd in COMMANDS)) return `no command 'murmur ${cmd}'`;
  for (const a of args) {
    if (!a.startsWith('--')) continue;
    const flag = a.slice(2).split('=')[0]!;
    if (flag !== 'help' && !(flag in COMMANDS[cmd]!)) return `murmur ${cmd} has no flag --${flag}`;
  }
  return undefined;
}

test('every sh block uses commands, flags, scripts and files that exist', () => {
  const problems: string[] = [];
  for (const b of blocks.filter((x) => x.lang === 'sh' && x.skip === undefined)) {
    b.code.split('\n').forEach((line, i) => {
      for (const words of shellCommands(line)) {
        const p = checkCommand(words);
        if (p !== undefined) problems.push(`${b.file}:${b.line + 1 + i}: ${p}`);
      }
    });
  }
  assert.equal(problems, []);
  // The checker itself catches what it is for.
  assert.is(checkCommand(['node', 'dist/src/cli/main.js', 'serve', '--api-kye', 'k']), 'murmur serve has no flag --api-kye');
  assert.is(checkCommand(['MURMUR_SECRET=s', 'murmur', 'serve', '--require-token']), undefined);
  assert.is(checkCommand(['npm', 'run', 'nope']), "no npm script 'nope'");
});

test('json blocks parse; every block that is skipped says why', () => {
  for (const b of blocks) {
    if (b.lang === 'json' && b.skip === undefined) {
      try {
        JSON.parse(b.code);
      } catch (err) {
        assert.unreachable(`${b.file}:${b.line}: ${(err as Error).message}`);
      }
    }
    if (b.skip !== undefined) assert.ok(b.skip.length > 3, `${b.file}:${b.line}: skip without a reason`);
  }
});

test.run();
