import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { upgradeRequest, until, delay } from '../helpers/net.js';

// A process out of file descriptors still answers: the server keeps the top descriptorReserve
// descriptors below RLIMIT_NOFILE in reserve, answers 503 to a socket accepted into them and
// closes it at once; it does not spin, and accepts normally again once descriptors are free.

const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** `murmur echo` with a limit of 64 descriptors; resolves with its port. */
async function smallEcho(): Promise<{ child: ChildProcess; port: number; stderr: () => string }> {
  const child = spawn('bash', ['-c', `ulimit -n 64 && exec "${process.execPath}" "${main}" echo --port 0 --ping-interval 0 --idle-timeout 0`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: process.env,
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await until(() => /LISTENING (\d+)/.test(out) || child.exitCode !== null, 10_000, 'LISTENING');
  const port = Number(/LISTENING (\d+)/.exec(out)?.[1]);
  assert.ok(port > 0, `no port: ${out} ${err}`);
  return { child, port, stderr: () => err };
}

/** Connects and sends an upgrade request; resolves with the response's status ('' when closed without one) and the socket. */
async function attempt(port: number): Promise<{ status: string; socket: Socket }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  let text = '';
  const status = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), 5000);
    const done = (s: string): void => {
      clearTimeout(timer);
      resolve(s);
    };
    socket.on('connect', () => socket.write(upgradeRequest()));
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.includes('\r\n\r\n')) done(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 'garbled');
    });
    socket.on('close', () => done(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? ''));
  });
  return { status, socket };
}

/** CPU time (user + system) of a process, in seconds (Linux /proc). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

test('out of descriptors: the next clients get 503 and a close, the process does not spin, and it recovers', async () => {
  if (process.platform !== 'linux') return;
  const { child, port, stderr } = await smallEcho();
  const held: Socket[] = [];
  try {
    // Fill the process: upgraded connections, held open. Bounded: 200 attempts.
    let refused = '';
    for (let i = 0; i < 200 && refused === ''; i++) {
      const a = await attempt(port);
      if (a.status === '101') held.push(a.socket);
      else {
        refused = a.status === '' ? 'closed' : a.status;
        a.socket.destroy();
      }
    }
    assert.ok(held.length > 10 && held.length < 64, `${held.length} connections before the limit`);
    assert.is(refused, '503', 'the first refusal already says 503');
    // From here on every client is told 503 and closed (never left hanging).
    for (let i = 0; i < 5; i++) {
      const a = await attempt(port);
      assert.is(a.status, '503', `client ${i} after the limit`);
      await until(() => a.socket.destroyed || a.socket.readableEnded, 5000, 'the 503 closed');
      a.socket.destroy();
    }
    // Full, the process is idle: a spinning accept loop would use about a core.
    const before = cpuSeconds(child.pid!);
    await delay(2000);
    const used = cpuSeconds(child.pid!) - before;
    assert.ok(used < 1, `${used} s of CPU in 2 s while full`);
    assert.match(stderr(), /nearly out of file descriptors/);
    // Freed, it accepts again.
    for (const s of held.splice(0)) s.destroy();
    await delay(200);
    let status = '';
    for (let i = 0; i < 20 && status !== '101'; i++) {
      const a = await attempt(port);
      status = a.status;
      a.socket.destroy();
      if (status !== '101') await delay(100);
    }
    assert.is(status, '101', 'accepting again once descriptors are free');
  } finally {
    for (const s of held) s.destroy();
    child.kill('SIGKILL');
  }
});

test.run();
