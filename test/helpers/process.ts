import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { until } from './net.js';

/** Whether a process of that pid exists (signal 0 checks without sending). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const cliMain = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** A `murmur echo` child process: its output so far, and its port once it says LISTENING. */
export interface EchoProcess {
  child: ChildProcess;
  out: () => string;
  port: Promise<number>;
}

/** Starts `murmur echo --port 0 ...args` (on 127.0.0.1 unless args say otherwise). */
export function startEcho(args: string[]): EchoProcess {
  return startCommand('echo', args);
}

/** Starts `murmur serve --port 0 ...args` (on 127.0.0.1 unless args say otherwise; `env` added to this process's). */
export function startServe(args: string[], env: NodeJS.ProcessEnv = {}): EchoProcess {
  return startCommand('serve', args, env);
}

function startCommand(command: string, args: string[], env: NodeJS.ProcessEnv = {}): EchoProcess {
  const child = spawn(process.execPath, [cliMain, command, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const port = (async () => {
    await until(() => /LISTENING \d+/.test(out), 15_000, `LISTENING (output so far: ${out})`);
    return Number(/LISTENING (\d+)/.exec(out)![1]);
  })();
  return { child, out: () => out, port };
}

/** SIGTERM, and wait for the exit (at once when it already exited). */
export async function stopEcho(e: EchoProcess): Promise<void> {
  if (e.child.exitCode !== null || e.child.signalCode !== null) return;
  e.child.kill('SIGTERM');
  await once(e.child, 'exit');
}
