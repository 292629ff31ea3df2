import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// Where the lean transport's internals are off limits (here: --pending-deprecation wraps
// process.binding in a DEP0111 warning), the server must say so once and carry connections on
// net.Socket; asked for the lean transport explicitly, it must refuse to start.

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Outcome {
  stdout: string;
  stderr: string;
  code: number | null;
}

/** Runs `murmur echo` until it prints LISTENING or exits (5 s at most), then stops it. */
function runEcho(nodeFlags: string[], transport: string | undefined): Promise<Outcome> {
  const env = { ...process.env };
  delete env.MURMUR_TRANSPORT;
  if (transport !== undefined) env.MURMUR_TRANSPORT = transport;
  const child = spawn(process.execPath, [...nodeFlags, cli, 'echo', '--port', '0', '--host', '127.0.0.1'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  return new Promise((resolve) => {
    let settled = false;
    const finish = (code: number | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      resolve({ stdout, stderr, code });
    };
    const timer = setTimeout(() => finish(null), 5000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (/LISTENING \d+/.test(stdout)) finish(null);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('exit', (code) => finish(code));
  });
}

test('under --pending-deprecation the server falls back to the socket transport and says why', async () => {
  const r = await runEcho(['--pending-deprecation'], undefined);
  assert.match(r.stdout, /LISTENING \d+ transport=socket/);
  assert.match(r.stderr, /lean transport unavailable \(process\.binding is wrapped/);
  assert.not.match(r.stderr, /DEP0111/, 'the check never calls the wrapped process.binding');
});

test('without it the same server is on the lean transport', async () => {
  const r = await runEcho([], undefined);
  assert.match(r.stdout, /LISTENING \d+ transport=lean/);
  assert.is(r.stderr, '');
});

test('asked for the lean transport where it is unavailable, the server does not start', async () => {
  const r = await runEcho(['--pending-deprecation'], 'lean');
  assert.not.match(r.stdout, /LISTENING/);
  assert.match(r.stderr, /the lean transport is unavailable here/);
  assert.ok(r.code !== null && r.code !== 0, `exit code ${String(r.code)}`);
});

test.run();
