// The murmur command line: help, did-you-mean for commands, flags and config keys, settings
// from MURMUR_* variables and a config file, and `murmur serve` as a real child process that
// prints LISTENING and drains on SIGTERM.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveSettings, suggest, editDistance, loadSuggester, UsageError, HELP_WIDTH, inFlagTerms, parseFlags } from '../../src/cli/args.js';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { FlagSpec } from '../../src/cli/args.js';
import { serveFlags } from '../../src/cli/serve.js';
import { http } from '../app/helpers.js';
import { RawClient, upgradeRequest } from '../helpers/net.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'murmur-cli-'));
const children = new Set<ChildProcess>();

/** Runs the CLI to completion with a clean MURMUR_* environment plus `env`. */
function run(args: string[], env: Record<string, string> = {}, main = MAIN): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', env: { ...cleanEnv(), ...env }, timeout: 20_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MURMUR_')) env[k] = v;
  return env;
}

interface Serve {
  child: ChildProcess;
  port: number;
  out: string[];
  exited: Promise<number | null>;
}

/** Starts `murmur serve` and waits for its LISTENING line. */
async function serve(args: string[], env: Record<string, string> = {}): Promise<Serve> {
  const child = spawn(process.execPath, [MAIN, 'serve', ...args], { env: { ...cleanEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const out: string[] = [];
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        out.push(line);
        const m = /^LISTENING (\d+) /.exec(line);
        if (m !== null) resolve(Number(m[1]));
      }
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    void exited.then((code) => reject(new Error(`murmur serve exited (${code}) before LISTENING: ${err}`)));
  });
  return { child, port, out, exited };
}

const spec: Record<string, FlagSpec> = {
  config: { type: 'string', describe: '', cliOnly: true },
  port: { type: 'number', describe: '', default: 8080 },
  host: { type: 'string', describe: '', default: '127.0.0.1' },
  'require-token': { type: 'boolean', describe: '', default: false },
  'history-topics': { type: 'list', describe: '', default: ['room:*'] },
  help: { type: 'boolean', describe: '', cliOnly: true },
};

test('settings: flag > environment > config file > default, with sources', () => {
  const file = JSON.stringify({ port: 1000, host: '10.0.0.1', 'history-topics': ['a:*', 'b:*'] });
  const s = resolveSettings(['--port', '3000', '--history-topics', 'x:*', '--history-topics=y:*,z:*'], spec, {
    env: { MURMUR_PORT: '2000', MURMUR_HOST: '0.0.0.0', MURMUR_REQUIRE_TOKEN: 'yes', MURMUR_CONFIG: '/etc/murmur.json' },
    configFlag: 'config',
    readFile: (p) => {
      assert.is(p, '/etc/murmur.json');
      return file;
    },
  });
  assert.is(s.values.port, 3000);
  assert.is(s.values.host, '0.0.0.0');
  assert.is(s.values['require-token'], true);
  assert.equal(s.values['history-topics'], ['x:*', 'y:*', 'z:*']);
  assert.equal({ ...s.sources }, { port: 'flag', host: 'env', 'require-token': 'env', 'history-topics': 'flag' });
  assert.is(s.configPath, '/etc/murmur.json');
  const d = resolveSettings([], spec, { env: {}, configFlag: 'config' });
  assert.equal([d.values.port, d.sources.port], [8080, 'default']);
});

test('settings: unknown flags and config keys are errors with a suggestion; bad values name the setting', () => {
  const err = (fn: () => unknown): string => {
    try {
      fn();
    } catch (e) {
      assert.instance(e, UsageError);
      return (e as Error).message;
    }
    throw new Error('expected a UsageError');
  };
  assert.match(err(() => resolveSettings(['--prot', '1'], spec, { env: {} })), "unknown flag '--prot' (did you mean '--port'?)");
  assert.match(err(() => resolveSettings(['--requireToken'], spec, { env: {} })), "(did you mean '--require-token'?)");
  const withFile = (text: string) => () => resolveSettings(['--config', 'c.json'], spec, { env: {}, configFlag: 'config', readFile: () => text });
  assert.match(err(withFile('{"hots": "x"}')), "unknown config key 'hots' in c.json (did you mean 'host'?)");
  assert.match(err(withFile('{"historyTopics": ["a"]}')), "(did you mean 'history-topics'?)");
  assert.match(err(withFile('{"config": "x"}')), "unknown config key 'config'");
  assert.match(err(withFile('{"port": "eighty"}')), "config key 'port' in c.json needs a number");
  assert.match(err(withFile('{"history-topics": [1]}')), 'must be an array of strings');
  assert.match(err(withFile('[1]')), 'must hold a JSON object');
  assert.match(err(withFile('{')), 'is not JSON');
  assert.match(err(() => resolveSettings([], spec, { env: { MURMUR_PORT: 'x' } })), 'MURMUR_PORT needs a number');
  assert.match(err(() => resolveSettings([], spec, { env: { MURMUR_REQUIRE_TOKEN: 'maybe' } })), 'MURMUR_REQUIRE_TOKEN needs true or false');
  assert.match(err(() => resolveSettings(['--port'], spec, { env: {} })), "'--port' needs a value");
  assert.match(err(() => resolveSettings(['serve'], spec, { env: {} })), "unexpected argument 'serve'");
  // A near miss in the environment is a warning; other MURMUR_* variables are left alone.
  const s = resolveSettings([], spec, { env: { MURMUR_PROT: '1', MURMUR_TEST_TIMEOUT_MS: '5' } });
  assert.equal(s.warnings, ['unknown environment variable MURMUR_PROT (did you mean MURMUR_PORT?)']);
});

test('did you mean: the built-in edit distance agrees with fastest-levenshtein; suggestions need to be close', async () => {
  const pairs = [
    ['', ''],
    ['serve', 'serv'],
    ['kitten', 'sitting'],
    ['port', 'prot'],
    ['history-max-bytes', 'histroy-max-byte'],
    ['ab', 'ba'],
  ];
  assert.is(await loadSuggester(), 'fastest-levenshtein');
  const { distance } = (await import('fastest-levenshtein' as string)) as { distance: (a: string, b: string) => number };
  for (const [a, b] of pairs) assert.is(editDistance(a!, b!), distance(a!, b!), `${a} / ${b}`);
  const names = Object.keys(serveFlags);
  assert.is(suggest('prot', names), 'port');
  assert.is(suggest('histroy-max-bytes', names), 'history-max-bytes');
  assert.is(suggest('maxMessageBytes', names), 'max-message-bytes');
  assert.is(suggest('anon-sub', names), 'anon-subscribe');
  assert.is(suggest('zzzzzz', names), undefined);
  assert.is(suggest('serv', ['serve', 'token', 'echo']), 'serve');
  assert.is(suggest('tokne', ['serve', 'token', 'echo']), 'token');
});

test('murmur --help, murmur <command> --help, murmur help <command>', () => {
  const top = run(['--help']);
  assert.is(top.status, 0);
  assert.match(top.stdout, /serve\s+run the real-time server/);
  assert.match(top.stdout, /token\s+mint/);
  assert.match(top.stdout, /echo\s+run an echo server/);
  const s = run(['serve', '--help']);
  assert.is(s.status, 0);
  assert.match(s.stdout, /usage: murmur serve/);
  assert.match(s.stdout, /--port <number>\s+TCP port .*\(default 8080\) \[MURMUR_PORT\]/);
  assert.match(s.stdout, /--history-max-messages/);
  assert.match(s.stdout, /--config <string>/);
  assert.not.match(s.stdout, /--secret <string>.*\(default/, 'no default shown for secrets');
  assert.equal(run(['help', 'serve']).stdout, s.stdout);
  // --help wins even when a required flag is missing.
  const t = run(['token', '--help']);
  assert.is(t.status, 0);
  assert.match(t.stdout, /--ttl <number>/);
  assert.match(run(['echo', '--help']).stdout, /--mode <string>/);
  assert.match(run(['--version']).stdout, /^\d+\.\d+\.\d+/);
});

test('serve --help: flags in one aligned column, descriptions wrapped under it (long flags no longer run into their text)', () => {
  const help = run(['serve', '--help']).stdout;
  const lines = help.split('\n');
  const flagsAt = lines.indexOf('flags:');
  assert.ok(flagsAt > 0);
  let column = -1;
  for (const line of lines.slice(flagsAt + 1).filter((l) => l !== '')) {
    assert.ok(line.length <= HELP_WIDTH, `longer than ${HELP_WIDTH}: ${line}`);
    const m = /^  (--[a-z-]+(?: <[^>]+>)?)(?: {2,}(\S.*))?$/.exec(line);
    if (m !== null) {
      if (m[2] === undefined) continue; // a flag too long for the column: its text is below
      const at = line.length - m[2].length;
      if (column === -1) column = at;
      assert.is(at, column, `description not aligned: ${line}`);
    } else assert.ok(line.startsWith(' '.repeat(column)) && line[column] !== ' ', `not aligned, or a flag run into its description: ${line}`);
  }
  assert.ok(help.includes('  --gossip-push-pull-interval-ms <number>\n'));
});

test('a taken port, an unknown --host and a missing secret are one line "murmur: ...", not a stack trace', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const port = (taken.address() as AddressInfo).port;
  try {
    for (const cmd of ['serve', 'echo']) {
      const r = run([cmd, '--port', String(port)]);
      assert.is(r.status, 1, r.stderr);
      assert.is(r.stderr, `murmur: cannot listen on 127.0.0.1:${port}: the address is already in use (another process holds the port)\n`);
    }
  } finally {
    taken.close();
  }
  const host = run(['serve', '--port', '0', '--host', 'no-such-host.invalid']);
  assert.is(host.status, 1);
  assert.is(host.stderr, "murmur: cannot resolve the host name 'no-such-host.invalid' (no such host)\n");
  const secret = run(['serve', '--require-token']);
  assert.is(secret.status, 2);
  assert.is(secret.stderr, 'murmur: --require-token needs a secret (--secret or MURMUR_SECRET)\n');
  assert.is(inFlagTerms('historyMaxBytes must be an integer; fooBar', serveFlags), '--history-max-bytes must be an integer; fooBar');
});

test('unknown commands, flags and config keys exit 2 with "did you mean"', () => {
  const c = run(['serv']);
  assert.is(c.status, 2);
  assert.match(c.stderr, "murmur: unknown command 'serv' (did you mean 'serve'?)");
  const f = run(['serve', '--prot', '9']);
  assert.is(f.status, 2);
  assert.match(f.stderr, "unknown flag '--prot' (did you mean '--port'?)");
  const e = run(['echo', '--prot', '9']);
  assert.match(e.stderr, "(did you mean '--port'?)");
  const path = join(tmp, 'typo.json');
  writeFileSync(path, JSON.stringify({ port: 0, 'histroy-topics': ['x'] }));
  const k = run(['serve', '--config', path]);
  assert.is(k.status, 2);
  assert.match(k.stderr, `unknown config key 'histroy-topics' in ${path} (did you mean 'history-topics'?)`);
  const bad = run(['serve', '--port', '0', '--slow-consumer', 'maybe']);
  assert.is(bad.status, 2);
  assert.match(bad.stderr, '--slow-consumer must be close or drop');
  const range = run(['serve', '--port', '70000']);
  assert.is(range.status, 2);
  assert.match(range.stderr, 'port must be an integer from 0 to 65535');
  const tok = run(['serve', '--port', '0', '--require-token']);
  assert.is(tok.status, 2);
  assert.match(tok.stderr, '--require-token needs a secret');
  assert.match(run(['token', '--user', 'u']).stderr, '--secret (or MURMUR_SECRET) is required');
});

test('number flags take decimal notation only: 0x10, 0b11 and 0o7 are usage errors', () => {
  const spec = { n: { type: 'number' as const, describe: 'a number' } };
  for (const ok of ['16', '-3', '1.5', '.5', '1e6', ' 42 ']) assert.is(parseFlags(['--n', ok], spec).n, Number(ok), ok);
  for (const bad of ['0x10', '0b11', '0o7', '', 'Infinity', '1_000', '12abc']) {
    assert.throws(() => parseFlags(['--n', bad], spec), (e: unknown) => e instanceof UsageError && e.message.includes('needs a number'), bad);
  }
});

test('did you mean works without the optional dependency (built-in distance)', () => {
  // The compiled CLI alone, where no node_modules can be found: what `npm install --omit=optional` leaves.
  const dir = mkdtempSync(join(tmpdir(), 'murmur-noopt-'));
  try {
    cpSync(fileURLToPath(new URL('../../src', import.meta.url)), join(dir, 'src'), { recursive: true });
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    const r = run(['serv'], {}, join(dir, 'src', 'cli', 'main.js'));
    assert.is(r.status, 2);
    assert.match(r.stderr, "(did you mean 'serve'?)");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('murmur serve reads MURMUR_* variables and a config file (variables win over the file)', async () => {
  const path = join(tmp, 'serve.json');
  writeFileSync(path, JSON.stringify({ port: 0, 'api-key': 'file-key', 'history-topics': ['chat:*'] }));
  const a = await serve(['--config', path]);
  const presence = (port: number, key: string) => http(`http://127.0.0.1:${port}/api/presence?user=u`, { headers: { 'X-Api-Key': key } });
  assert.is((await presence(a.port, 'file-key')).status, 200);
  const pub = await http(`http://127.0.0.1:${a.port}/api/publish`, { method: 'POST', headers: { 'X-Api-Key': 'file-key' }, body: JSON.stringify({ topic: 'chat:1', data: 1 }) });
  assert.is(JSON.parse(pub.body).offset, 1, 'history-topics from the file');
  a.child.kill('SIGTERM');
  assert.is(await a.exited, 0);

  const b = await serve([], { MURMUR_CONFIG: path, MURMUR_API_KEY: 'env-key', MURMUR_HISTRY_TOPICS: 'x' });
  assert.is((await presence(b.port, 'env-key')).status, 200);
  assert.is((await presence(b.port, 'file-key')).status, 401);
  b.child.kill('SIGTERM');
  assert.is(await b.exited, 0);

  const c = await serve([], { MURMUR_PORT: '0', MURMUR_API_KEY: 'k2' });
  assert.is((await presence(c.port, 'k2')).status, 200);
  c.child.kill('SIGTERM');
  assert.is(await c.exited, 0);
});

test('murmur serve prints LISTENING, then on SIGTERM: readyz 503, 1012 to clients, STOPPED, exit 0', async () => {
  const s = await serve(['--port', '0', '--retry-after', '1', '--shutdown-timeout-ms', '30000']);
  assert.match(s.out[0]!, new RegExp(`^LISTENING ${s.port} http://127\\.0\\.0\\.1:${s.port}/$`));
  assert.is((await http(`http://127.0.0.1:${s.port}/readyz`)).status, 200);
  // A client that never answers the close frame holds the drain open until it leaves.
  const raw = await RawClient.connect(s.port);
  raw.write(upgradeRequest({ path: '/ws' }));
  assert.match(await raw.readHead(), /^HTTP\/1\.1 101/);
  await raw.readFrame(); // welcome
  s.child.kill('SIGTERM');
  const close = await raw.readFrame();
  assert.is(close.opcode, 8);
  assert.is(close.payload.readUInt16BE(0), 1012);
  assert.match(close.payload.subarray(2).toString(), /restarting; retry-after=1/);
  const ready = await http(`http://127.0.0.1:${s.port}/readyz`);
  assert.is(ready.status, 503);
  assert.is(ready.headers['retry-after'], '1');
  raw.destroy();
  assert.is(await s.exited, 0);
  assert.ok(s.out.includes('DRAINING SIGTERM'));
  assert.ok(s.out.includes('STOPPED'));
});

test('murmur serve whose stdout reader went away (murmur serve | head) still drains and exits 0 on SIGTERM', async () => {
  for (const extra of [[], ['--workers', '2']]) {
    const s = await serve(['--port', '0', ...extra]);
    // The reading end closes: every later write to stdout fails with EPIPE.
    s.child.stdout!.destroy();
    s.child.kill('SIGTERM');
    assert.is(await s.exited, 0, `serve ${extra.join(' ')}`);
  }
});

test.after.each(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));

test.run();
