/**
 * `--semi-space MiB` of `murmur serve` and `murmur echo`: the size of V8's young generation
 * (--max-semi-space-size) for the processes that hold connections. V8 grows it up to 16 MiB per
 * semi-space under allocation; that memory is a fixed cost per process, ~0.5-1 KiB per idle
 * connection at 10,000-19,000 connections, and a small one buys it back at the price of more
 * scavenges under heavy traffic (docs/serve-memory.md#the-young-generation has the figures).
 *
 * A V8 heap size is read when the isolate is made: v8.setFlagsFromString afterwards changes
 * nothing (measured), so the flag must be on node's command line. Workers get it on theirs
 * (the supervisor forks them with the process's execArgv); a single process restarts itself in
 * place with it where Node can (process.execve, Node 22.15+), and otherwise says so once.
 */
import { workerIndex } from '../server/supervised.js';

/** 0: V8's own sizing. Throughput first by default: a small young generation cost 14-57% of the echo, fan-out and HTTP rates in the measurements. */
export const DEFAULT_SEMI_SPACE_MIB = 0;

const V8_FLAG = '--max-semi-space-size';

/** Whether node already runs with a semi-space size (on its command line or in NODE_OPTIONS). */
function given(): boolean {
  const opts = (process.env.NODE_OPTIONS ?? '').split(/\s+/);
  return [...process.execArgv, ...opts].some((a) => a === V8_FLAG || a.startsWith(`${V8_FLAG}=`) || a.startsWith('--max_semi_space_size'));
}

/**
 * Applies `--semi-space mib` before anything else runs. With workers, only they get it (the
 * supervisor holds no connection); a single process replaces itself with one started with the
 * flag where it can, and does not return then. Returns a line to print when the flag could not
 * be applied, else null.
 */
export function applySemiSpace(mib: number, workers: number): string | null {
  if (mib === 0 || given()) return null;
  const flag = `${V8_FLAG}=${mib}`;
  if (workers > 1 && workerIndex() === -1) {
    // fork() gives the workers the supervisor's execArgv.
    process.execArgv.push(flag);
    return null;
  }
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  if (typeof execve === 'function') execve(process.execPath, [process.execPath, ...process.execArgv, flag, ...process.argv.slice(1)], process.env);
  return `--semi-space ${mib} not applied: Node ${process.versions.node} cannot restart itself in place; start node with ${flag} (or NODE_OPTIONS=${flag})`;
}

/** @throws nothing; the flag's value check. */
export function checkSemiSpace(mib: unknown): string | null {
  return typeof mib === 'number' && Number.isInteger(mib) && mib >= 0 && mib <= 1024 ? null : `--semi-space must be a whole number of MiB from 0 to 1024, got ${String(mib)}`;
}
