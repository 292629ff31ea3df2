import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import type { FlagSpec, FlagValues } from './args.js';
import { LISTEN_BACKLOG } from '../limits.js';
import { sharedBacklog } from '../server/supervisor.js';

/**
 * `murmur tune --connections N`: reads the live system (rlimits, /proc/sys, memory) and says,
 * setting by setting, whether it can hold N WebSocket connections, with the exact command
 * that fixes what cannot. It changes nothing.
 *
 * The per-connection costs are this project's own measurements (docs/kernel-tuning.md,
 * docs/serve-memory.md): the kernel's socket structures are about 4.6 KiB per socket, and a
 * user of `murmur serve` (lean transport, a token, one subscription, a tenth of them in a
 * presence topic) 2.5 KiB of RSS and 0.47 KiB of JS heap, measured at 10,000 users in one
 * process with V8's own young-generation sizing (which counts there: `murmur echo` holds an
 * idle connection in ~1.3 KiB, and either in less with a small --semi-space).
 */
export const KERNEL_BYTES_PER_SOCKET = 4.6 * 1024;
/** `node native-bench/serve-users.mjs -n 10000 --settle 20`: 2.49 KiB RSS per user. */
export const USER_BYTES_PER_CONNECTION = 2.5 * 1024;
/** The same run: 472 B of JS heap per user, compiled code included. */
export const HEAP_BYTES_PER_CONNECTION = 0.47 * 1024;
/** Descriptors a process needs beside its connections (listeners, stdio, libuv, files). */
const FD_MARGIN = 1024;

export const tuneFlags: Record<string, FlagSpec> = {
  connections: { type: 'number', describe: 'connections the machine should hold', default: 1_000_000 },
  workers: { type: 'number', describe: 'server processes sharing them (per-process limits apply to each)', default: 1 },
  'local-clients': { type: 'boolean', describe: 'the clients run on this machine too (benchmarks): both ends count' },
  json: { type: 'boolean', describe: 'print JSON instead of a table' },
  'proc-root': { type: 'string', describe: 'read a /proc tree from here instead (tests)', default: '/proc' },
  help: { type: 'boolean', describe: 'show this help' },
};

export type TuneStatus = 'ok' | 'low' | 'unknown' | 'info';

export interface TuneRow {
  setting: string;
  current: string;
  needed: string;
  status: TuneStatus;
  /** The command that fixes it (empty when ok). */
  fix: string;
  why: string;
}

export interface TuneInput {
  connections: number;
  workers: number;
  localClients: boolean;
  procRoot: string;
  /** The V8 heap limit of a Node process started with the same flags (bytes). */
  heapLimit: number;
}

function read(root: string, path: string): string | undefined {
  try {
    return readFileSync(join(root, path), 'utf8');
  } catch {
    return undefined;
  }
}

function readNumbers(root: string, path: string): number[] | undefined {
  const s = read(root, path);
  if (s === undefined) return undefined;
  const nums = s.trim().split(/\s+/).map(Number);
  return nums.every(Number.isFinite) ? nums : undefined;
}

function rlimitNofile(root: string): { soft: number; hard: number } | undefined {
  const s = read(root, 'self/limits');
  const line = s?.split('\n').find((l) => l.startsWith('Max open files'));
  if (line === undefined) return undefined;
  const parts = line.slice('Max open files'.length).trim().split(/\s+/);
  const num = (v: string | undefined) => (v === 'unlimited' ? Infinity : Number(v));
  return { soft: num(parts[0]), hard: num(parts[1]) };
}

function meminfo(root: string, key: string): number | undefined {
  const line = read(root, 'meminfo')?.split('\n').find((l) => l.startsWith(`${key}:`));
  const kb = line === undefined ? NaN : Number(line.split(/\s+/)[1]);
  return Number.isFinite(kb) ? kb * 1024 : undefined;
}

const fmt = (n: number): string => (n === Infinity ? 'unlimited' : Math.round(n).toLocaleString('en-US'));
const gib = (b: number): string => `${(b / 2 ** 30).toFixed(1)} GiB`;

function sysctlRow(root: string, key: string, needed: number, why: string, at = 0): TuneRow {
  const path = `sys/${key.replace(/\./g, '/')}`;
  const nums = readNumbers(root, path);
  if (nums === undefined || nums[at] === undefined) {
    return { setting: key, current: 'absent', needed: `>= ${fmt(needed)}`, status: 'unknown', fix: '', why };
  }
  const cur = nums[at]!;
  const ok = cur >= needed;
  let value = String(needed);
  if (nums.length > 1) {
    const next = [...nums];
    next[at] = needed;
    value = `"${next.join(' ')}"`;
  }
  return {
    setting: key,
    current: nums.length > 1 ? nums.join(' ') : fmt(cur),
    needed: `>= ${fmt(needed)}`,
    status: ok ? 'ok' : 'low',
    fix: ok ? '' : `sysctl -w ${key}=${value}  # persist in /etc/sysctl.d/90-murmur.conf`,
    why,
  };
}

/** Every check, as rows. Pure apart from reading files under procRoot. */
export function checkSystem(input: TuneInput): TuneRow[] {
  const { connections: n, workers, localClients, procRoot: root } = input;
  const sockets = localClients ? 2 * n : n;
  const perProcess = Math.ceil(n / Math.max(1, workers)) + FD_MARGIN;
  const rows: TuneRow[] = [];

  const nofile = rlimitNofile(root);
  if (nofile === undefined) {
    rows.push({ setting: 'RLIMIT_NOFILE (ulimit -n)', current: 'unknown', needed: `>= ${fmt(perProcess)}`, status: 'unknown', fix: '', why: 'descriptors per process' });
  } else {
    const ok = nofile.soft >= perProcess;
    rows.push({
      setting: 'RLIMIT_NOFILE (ulimit -n)',
      current: `${fmt(nofile.soft)} soft / ${fmt(nofile.hard)} hard`,
      needed: `>= ${fmt(perProcess)} per process`,
      status: ok ? 'ok' : 'low',
      fix: ok
        ? ''
        : nofile.hard >= perProcess
          ? `ulimit -n ${perProcess}  # or LimitNOFILE=${perProcess} in the systemd unit`
          : `raise the hard limit: LimitNOFILE=${perProcess} (systemd) or "* hard nofile ${perProcess}" in /etc/security/limits.conf; or run --workers ${Math.ceil(n / Math.max(1, nofile.hard - FD_MARGIN))}`,
      why: 'one descriptor per connection in each server process',
    });
  }
  rows.push(sysctlRow(root, 'fs.nr_open', perProcess, 'the ceiling any process RLIMIT_NOFILE can be raised to'));
  rows.push(sysctlRow(root, 'fs.file-max', Math.ceil(sockets * 1.1) + 65536, 'descriptors on the whole machine'));
  // Workers that share one listening socket (Node without SO_REUSEPORT for them) queue 511 each on it.
  const backlog = Math.max(4096, sharedBacklog(Math.max(1, workers)));
  rows.push(sysctlRow(root, 'net.core.somaxconn', backlog, `accept backlog cap: murmur listens with a backlog of ${LISTEN_BACKLOG} per process (${LISTEN_BACKLOG} x workers on a socket they share); bursts of reconnects need more`));
  rows.push(sysctlRow(root, 'net.ipv4.tcp_max_syn_backlog', 4096, 'half-open connections queued during a reconnect storm'));
  // tcp_mem is in pages; idle sockets hold no buffer pages, so this bounds bursts of traffic.
  const page = 4096;
  rows.push(sysctlRow(root, 'net.ipv4.tcp_mem', Math.ceil((sockets * 4096) / page), 'pages all TCP buffers may use before pressure (3rd field, hard limit); idle sockets use none, each active one about a page', 2));

  const range = readNumbers(root, 'sys/net/ipv4/ip_local_port_range');
  if (range !== undefined && range.length >= 2) {
    const ports = range[1]! - range[0]! + 1;
    const sources = Math.ceil(n / ports);
    rows.push({
      setting: 'net.ipv4.ip_local_port_range',
      current: `${range[0]} ${range[1]} (${fmt(ports)} ports)`,
      needed: localClients || sources > 1 ? `${sources} source address(es) for ${fmt(n)} client connections to one server address` : 'only for clients and load balancers',
      status: 'info',
      fix: sources > 1 ? `give clients/load balancers ${sources} source IPs (e.g. 127.0.0.1-127.0.0.${sources} on loopback); or sysctl -w net.ipv4.ip_local_port_range="1024 65535"` : '',
      why: 'each client connection to one server address:port needs its own source port per source address',
    });
  }
  const conntrack = readNumbers(root, 'sys/net/netfilter/nf_conntrack_max');
  if (conntrack !== undefined) rows.push(sysctlRow(root, 'net.netfilter.nf_conntrack_max', Math.ceil(sockets * 1.2), 'connection tracking (when the firewall tracks state) drops new connections when full'));

  const total = meminfo(root, 'MemTotal');
  const available = meminfo(root, 'MemAvailable');
  const need = sockets * KERNEL_BYTES_PER_SOCKET + n * USER_BYTES_PER_CONNECTION;
  if (total === undefined || available === undefined) {
    rows.push({ setting: 'memory', current: 'unknown', needed: gib(need), status: 'unknown', fix: '', why: '' });
  } else {
    const ok = available >= need * 1.15;
    rows.push({
      setting: 'memory (MemAvailable)',
      current: `${gib(available)} of ${gib(total)}`,
      needed: `${gib(need)} + 15% headroom`,
      status: ok ? 'ok' : 'low',
      fix: ok ? '' : `fewer connections per machine (about ${fmt((available / 1.15) / (need / n))} fit), or more memory`,
      why: `kernel ~${(KERNEL_BYTES_PER_SOCKET / 1024).toFixed(1)} KiB per socket${localClients ? ' (x2: both ends)' : ''} + murmur serve ~${(USER_BYTES_PER_CONNECTION / 1024).toFixed(1)} KiB per subscribed user`,
    });
  }
  const heapNeed = Math.ceil((n / Math.max(1, workers)) * HEAP_BYTES_PER_CONNECTION * 2 + 256 * 2 ** 20);
  const heapOk = input.heapLimit >= heapNeed;
  rows.push({
    setting: 'V8 heap limit (per process)',
    current: gib(input.heapLimit),
    needed: `>= ${gib(heapNeed)}`,
    status: heapOk ? 'ok' : 'low',
    fix: heapOk ? '' : `NODE_OPTIONS=--max-old-space-size=${Math.ceil(heapNeed / 2 ** 20)}`,
    why: 'JS heap per connection x2 for garbage collection headroom',
  });
  return rows;
}

export function formatTable(rows: TuneRow[]): string {
  const head = ['setting', 'current', 'needed', 'status'];
  const cells = rows.map((r) => [r.setting, r.current, r.needed, r.status]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => v.padEnd(widths[i]!)).join('  ');
  const out = [line(head), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)];
  const fixes = rows.filter((r) => r.fix !== '');
  if (fixes.length > 0) {
    out.push('', 'to fix:');
    for (const r of fixes) out.push(`  ${r.setting}: ${r.fix}`);
  }
  return out.join('\n');
}

export async function runTune(flags: FlagValues): Promise<void> {
  const connections = flags.connections as number;
  if (!(connections > 0)) throw new Error('murmur tune: --connections must be a positive number');
  const rows = checkSystem({
    connections,
    workers: flags.workers as number,
    localClients: flags['local-clients'] === true,
    procRoot: flags['proc-root'] as string,
    heapLimit: getHeapStatistics().heap_size_limit,
  });
  if (flags.json === true) process.stdout.write(`${JSON.stringify({ connections, rows }, null, 2)}\n`);
  else process.stdout.write(`murmur tune: what ${connections.toLocaleString('en-US')} connections need (nothing was changed)\n\n${formatTable(rows)}\n`);
  const low = rows.filter((r) => r.status === 'low').length;
  process.exitCode = low > 0 ? 1 : 0;
}
