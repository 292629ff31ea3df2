// `--semi-space MiB` of murmur serve and echo: the V8 flag reaches the processes that hold
// connections (workers through their execArgv; a single process by restarting itself in place
// where Node can, else it says so), and a bad value is a usage error.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const FLAG = '--max-semi-space-size=1';

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MURMUR_') && k !== 'NODE_OPTIONS') env[k] = v;
  return env;
}

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
const childrenOf = (pid: number) => (spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout ?? '').split('\n').filter(Boolean).map(Number);

/** Starts `murmur <args>` and resolves once it prints LISTENING, with its stderr so far. */
async function start(args: string[]): Promise<{ child: ChildProcess; stderr: () => string }> {
  const child = spawn(process.execPath, [MAIN, ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`no LISTENING: ${err}`)), 20_000);
    child.stdout!.on('data', (d) => {
      out += d;
      if (/LISTENING \d+/.test(out)) {
        clearTimeout(t);
        resolve();
      }
    });
    child.on('exit', () => reject(new Error(`exited: ${err}`)));
  });
  return { child, stderr: () => err };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

test('serve --workers 2 --semi-space 1: every worker runs with --max-semi-space-size=1', async () => {
  const { child } = await start(['serve', '--port', '0', '--workers', '2', '--semi-space', '1']);
  try {
    const workers = childrenOf(child.pid!);
    assert.is(workers.length, 2);
    for (const w of workers) assert.ok(cmdline(w).includes(FLAG), cmdline(w).join(' '));
  } finally {
    await stop(child);
  }
});

test('serve --semi-space 1 in one process: restarted in place with the flag where Node can, else one line that says how', async () => {
  const { child, stderr } = await start(['serve', '--port', '0', '--semi-space', '1']);
  try {
    if (typeof (process as { execve?: unknown }).execve === 'function') assert.ok(cmdline(child.pid!).includes(FLAG), cmdline(child.pid!).join(' '));
    else assert.match(stderr(), /--semi-space 1 not applied: .*NODE_OPTIONS=--max-semi-space-size=1/);
  } finally {
    await stop(child);
  }
});

test('echo --semi-space 0 (the default) adds nothing; a bad value is a usage error', async () => {
  const { child, stderr } = await start(['echo', '--port', '0']);
  try {
    assert.not.ok(cmdline(child.pid!).some((a) => a.startsWith('--max-semi-space-size')));
    assert.not.match(stderr(), /semi-space/);
  } finally {
    await stop(child);
  }
  for (const cmd of ['serve', 'echo']) {
    const r = spawnSync(process.execPath, [MAIN, cmd, '--port', '0', '--semi-space', '-1'], { encoding: 'utf8', env: cleanEnv(), timeout: 20_000 });
    assert.is(r.status, 2, r.stderr);
    assert.match(r.stderr, /--semi-space must be a whole number/);
  }
});

test.run();
