import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { checkSystem, formatTable } from '../../src/cli/tune.js';
import type { TuneRow } from '../../src/cli/tune.js';

/** A fake /proc tree: only the files murmur tune reads. */
function fakeProc(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'murmur-proc-'));
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}

const limits = (soft: number, hard: number) =>
  `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                ${hard}                files\n`;

const tunedMachine = {
  'self/limits': limits(1_100_000, 1_100_000),
  'sys/fs/nr_open': '2000000\n',
  'sys/fs/file-max': '9223372036854775807\n',
  'sys/net/core/somaxconn': '65535\n',
  'sys/net/ipv4/tcp_max_syn_backlog': '65535\n',
  'sys/net/ipv4/tcp_mem': '786432\t1048576\t3145728\n',
  'sys/net/ipv4/ip_local_port_range': '1024\t65535\n',
  meminfo: 'MemTotal:       33554432 kB\nMemAvailable:   31457280 kB\n',
};

const row = (rows: TuneRow[], setting: string) => rows.find((r) => r.setting.startsWith(setting))!;

test('a tuned machine with enough memory passes every check for 1M connections', () => {
  const root = fakeProc(tunedMachine);
  const rows = checkSystem({ connections: 1_000_000, workers: 1, localClients: false, procRoot: root, heapLimit: 4 * 2 ** 30 });
  const low = rows.filter((r) => r.status === 'low');
  assert.equal(low, []);
  assert.is(row(rows, 'net.core.somaxconn').current, '65,535');
  rmSync(root, { recursive: true });
});

test('low settings are named with the command that fixes them', () => {
  const root = fakeProc({
    ...tunedMachine,
    'self/limits': limits(1024, 4096),
    'sys/net/core/somaxconn': '128\n',
    'sys/net/ipv4/tcp_mem': '1000 2000 3000\n',
    meminfo: 'MemTotal:       8388608 kB\nMemAvailable:   4194304 kB\n',
  });
  const rows = checkSystem({ connections: 1_000_000, workers: 1, localClients: false, procRoot: root, heapLimit: 2 ** 30 });
  const nofile = row(rows, 'RLIMIT_NOFILE');
  assert.is(nofile.status, 'low');
  assert.match(nofile.fix, /LimitNOFILE=1001024/); // the hard limit is too low for ulimit -n alone
  assert.is(row(rows, 'net.core.somaxconn').fix, 'sysctl -w net.core.somaxconn=4096  # persist in /etc/sysctl.d/90-murmur.conf');
  assert.match(row(rows, 'net.ipv4.tcp_mem').fix, /net\.ipv4\.tcp_mem="1000 2000 1000000"/);
  assert.is(row(rows, 'memory').status, 'low');
  assert.is(row(rows, 'V8 heap').status, 'low');
  assert.match(row(rows, 'V8 heap').fix, /--max-old-space-size=\d+/);
  const table = formatTable(rows);
  assert.match(table, /to fix:/);
  assert.match(table, /somaxconn/);
  rmSync(root, { recursive: true });
});

test('workers divide the per-process needs; local clients double the kernel side', () => {
  const root = fakeProc({ ...tunedMachine, 'self/limits': limits(200_000, 200_000) });
  const one = checkSystem({ connections: 1_000_000, workers: 1, localClients: false, procRoot: root, heapLimit: 4 * 2 ** 30 });
  const eight = checkSystem({ connections: 1_000_000, workers: 8, localClients: false, procRoot: root, heapLimit: 4 * 2 ** 30 });
  assert.is(row(one, 'RLIMIT_NOFILE').status, 'low');
  assert.is(row(eight, 'RLIMIT_NOFILE').status, 'ok');
  const ports = row(checkSystem({ connections: 1_000_000, workers: 8, localClients: true, procRoot: root, heapLimit: 4 * 2 ** 30 }), 'net.ipv4.ip_local_port_range');
  assert.match(ports.needed, /^16 source address/); // 1M / 64,512 ports
  rmSync(root, { recursive: true });
});

test('missing files are reported as unknown, never a crash', () => {
  const root = fakeProc({});
  const rows = checkSystem({ connections: 1000, workers: 1, localClients: false, procRoot: root, heapLimit: 2 ** 31 });
  assert.ok(rows.length >= 7);
  assert.is(row(rows, 'RLIMIT_NOFILE').status, 'unknown');
  assert.is(row(rows, 'fs.nr_open').status, 'unknown');
  assert.is(row(rows, 'memory').status, 'unknown');
  rmSync(root, { recursive: true });
});

test('conntrack is checked only where the table exists', () => {
  const without = fakeProc(tunedMachine);
  const withCt = fakeProc({ ...tunedMachine, 'sys/net/netfilter/nf_conntrack_max': '262144\n' });
  const input = { connections: 1_000_000, workers: 1, localClients: false, heapLimit: 4 * 2 ** 30 };
  assert.is(checkSystem({ ...input, procRoot: without }).find((r) => r.setting.includes('conntrack')), undefined);
  assert.is(row(checkSystem({ ...input, procRoot: withCt }), 'net.netfilter.nf_conntrack_max').status, 'low');
  rmSync(without, { recursive: true });
  rmSync(withCt, { recursive: true });
});

test('memory and heap needs come from the measured cost of a serve user (2.5 KiB RSS, 0.47 KiB heap) and of a kernel socket (4.6 KiB)', () => {
  const root = fakeProc(tunedMachine);
  const rows = checkSystem({ connections: 1_000_000, workers: 4, localClients: false, procRoot: root, heapLimit: 4 * 2 ** 30 });
  // 1,000,000 x (4.6 + 2.5) KiB = 6.8 GiB; per worker 250,000 x 0.47 KiB x 2 + 256 MiB = 0.5 GiB
  assert.is(row(rows, 'memory').needed, '6.8 GiB + 15% headroom');
  assert.match(row(rows, 'memory').why, /murmur serve ~2\.5 KiB per subscribed user/);
  assert.is(row(rows, 'V8 heap').needed, '>= 0.5 GiB');
  rmSync(root, { recursive: true });
});

test('workers that share one listening socket need somaxconn of 511 each (the kernel caps their accept queue at it)', () => {
  const root = fakeProc({ ...tunedMachine, 'sys/net/core/somaxconn': '4096\n' });
  const few = checkSystem({ connections: 100_000, workers: 4, localClients: false, procRoot: root, heapLimit: 4 * 2 ** 30 });
  assert.is(row(few, 'net.core.somaxconn').status, 'ok');
  const many = checkSystem({ connections: 200_000, workers: 14, localClients: false, procRoot: root, heapLimit: 4 * 2 ** 30 });
  assert.is(row(many, 'net.core.somaxconn').status, 'low');
  assert.is(row(many, 'net.core.somaxconn').fix, 'sysctl -w net.core.somaxconn=7154  # persist in /etc/sysctl.d/90-murmur.conf');
  rmSync(root, { recursive: true });
});

test.run();
