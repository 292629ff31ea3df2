/**
 * The benchmark contract of a process that holds connections (`murmur echo`, `murmur serve` and
 * their workers): on SIGUSR2 it prints one `STATS {json}` line on stdout with its memory (after
 * two full GCs when node runs with --expose-gc, so a harness reads live memory, not garbage),
 * V8's spaces, its open connections and its quiet-time GC counters. The million-socket ramp
 * (native-bench/ramp) reads it from every worker, whichever command runs them.
 */
import { getHeapSpaceStatistics } from 'node:v8';
import { idleGcStats } from './idle-gc.js';
import type { Server } from './server.js';

/**
 * Installs the SIGUSR2 handler (early: a SIGUSR2 with no handler ends the process). `server`
 * gives the server once there is one (no line before); `extra` adds the command's own counters.
 */
export function installStatsSignal(server: () => Server<never> | Server<unknown> | null, extra: () => Record<string, unknown> = () => ({})): void {
  process.on('SIGUSR2', () => {
    const s = server();
    if (s === null) return;
    const gc = (globalThis as { gc?: () => void }).gc;
    // Twice, as the rivals' scripts do: the second pass frees what the first only unlinked.
    if (gc !== undefined) {
      gc();
      gc();
    }
    const spaces: Record<string, number> = {};
    for (const sp of getHeapSpaceStatistics()) spaces[sp.space_name] = sp.physical_space_size;
    const stats = {
      ...process.memoryUsage(),
      connections: s.openCount,
      transport: s.transportKind,
      spaces,
      pid: process.pid,
      rejected: s.stats.rejected,
      ...extra(),
      idleGc: idleGcStats,
    };
    process.stdout.write(`STATS ${JSON.stringify(stats)}\n`);
  });
}
