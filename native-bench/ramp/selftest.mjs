// Checks the ramp harness's decisions without sockets or processes: options, readings from a
// fake /proc, limit prediction and detection, step sizing, the summary and the chart.
//   node native-bench/ramp/selftest.mjs        (a second or two; uvu from the root devDependencies)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  GiB,
  KiB,
  MiB,
  UsageError,
  compareFigures,
  distributionOf,
  makePlan,
  nextStep,
  parseArgs,
  parseNetstat,
  parseSlabinfo,
  perConnection,
  phaseLimit,
  predictLimits,
  rampFigures,
  readSystem,
  serveArgs,
  stepRecord,
  stepVerdict,
  summarise,
  svgChart,
} from './lib.mjs';

// ---- a fake /proc ------------------------------------------------------------------------
function fakeProc(over = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ramp-proc-'));
  const files = {
    meminfo: `MemTotal:       24683620 kB\nMemFree:        20000000 kB\nMemAvailable:   ${over.memAvailableKb ?? 22000000} kB\nSlab:             300000 kB\nSReclaimable:     150000 kB\nSUnreclaim:       150000 kB\nPageTables:        10000 kB\n`,
    'net/sockstat': `sockets: used 1200\nTCP: inuse ${over.tcpInuse ?? 100} orphan 0 tw 5 alloc 110 mem ${over.tcpMem ?? 3}\nUDP: inuse 1 mem 0\n`,
    'sys/fs/file-nr': `${over.fileNr ?? 5000}\t0\t${over.fileMax ?? 2466160}\n`,
    'sys/fs/file-max': `${over.fileMax ?? 2466160}\n`,
    'sys/fs/nr_open': '1048576\n',
    'sys/net/ipv4/ip_local_port_range': '32768\t60999\n',
    'sys/net/ipv4/tcp_mem': '287898\t383865\t575796\n',
    'sys/net/core/somaxconn': '4096\n',
    'sys/net/ipv4/tcp_max_syn_backlog': '2048\n',
    'sys/kernel/pid_max': '32768\n',
    'self/limits': `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${over.nofile ?? 20000}                ${over.nofile ?? 20000}                files\n`,
    loadavg: '1.04 0.87 1.43 2/300 1234\n',
  };
  if (over.conntrack !== false) {
    files['sys/net/netfilter/nf_conntrack_count'] = `${over.conntrackCount ?? 0}\n`;
    files['sys/net/netfilter/nf_conntrack_max'] = `${over.conntrackMax ?? 262144}\n`;
  }
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

const dirs = [];
const sysFrom = (over) => {
  const d = fakeProc(over);
  dirs.push(d);
  return readSystem(d);
};

// ---- options ------------------------------------------------------------------------------
test('options: defaults, forms, and refusals', () => {
  const o = parseArgs([]);
  assert.is(o.target, 1_000_000);
  assert.is(o.step, 50_000);
  assert.equal(o.broadcastCase, { messages: 1, size: 64 });
  assert.is(o.ping, true);
  const p = parseArgs(['--target=200_000', '--step', '25000', '--no-ping', '--broadcast', 'none', '--tune', '--margin-gib', '2.5']);
  assert.is(p.target, 200_000);
  assert.is(p.step, 25_000);
  assert.is(p.ping, false);
  assert.is(p.broadcastCase, null);
  assert.is(p.tune, true);
  assert.is(p['margin-gib'], 2.5);
  assert.is(parseArgs(['--target', '50000']).step, 5000, 'a smaller target gets ten steps');
  for (const bad of [['--target', '0'], ['--bogus'], ['--step'], ['--broadcast', '3'], ['--host', '10.0.0.1'], ['--target', '3000000'], ['--transport', 'fast'], ['x']]) {
    assert.throws(() => parseArgs(bad), (e) => e instanceof UsageError, bad.join(' '));
  }
  assert.throws(() => parseArgs(['--help']), (e) => e instanceof UsageError && /^usage:/.test(e.message));
});

// ---- /proc readings -----------------------------------------------------------------------
test('readSystem reads a fake /proc', () => {
  const s = sysFrom({ fileNr: 7000, conntrackCount: 12 });
  assert.is(s.memAvailable, 22000000 * 1024);
  assert.is(s.slab, 300000 * 1024);
  assert.is(s.sockstat.tcpInuse, 100);
  assert.is(s.sockstat.tcpMemPages, 3);
  assert.is(s.fileNr, 7000);
  assert.is(s.fileMax, 2466160);
  assert.equal(s.conntrack, { count: 12, max: 262144 });
  assert.equal(s.portRange, [32768, 60999]);
  assert.equal(s.tcpMem, [287898, 383865, 575796]);
  assert.equal(s.nofile, { soft: 20000, hard: 20000 });
  assert.equal(s.loadavg, [1.04, 0.87, 1.43]);
  assert.is(sysFrom({ conntrack: false }).conntrack, null, 'no nf_conntrack: no row');
});

test('slabinfo and netstat parsers', () => {
  const slab = parseSlabinfo('slabinfo - version: 2.1\n# name <active_objs> ...\nTCP 38097 38100 2368 13 8 : tunables 0 0 0 : slabdata 1 1 0\nfilp 100 120 192 21 1 : tunables 0 0 0 : slabdata 1 1 0\n');
  assert.equal(slab.TCP, { objects: 38097, size: 2368 });
  assert.equal(slab.filp, { objects: 100, size: 192 });
  const net = parseNetstat('TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 3 28979\n', 'Tcp: RtoAlgorithm RetransSegs\nTcp: 1 335533\n');
  assert.is(net['TcpExt.ListenOverflows'], 28979);
  assert.is(net['Tcp.RetransSegs'], 335533);
});

// ---- plan and predicted limits -----------------------------------------------------------
test('plan: workers under the descriptor limit, load-generator workers, sources', () => {
  const s = sysFrom({});
  const plan = makePlan(parseArgs([]), s);
  assert.is(plan.serverWorkers, 56); // ceil(1,000,000 / 18,000)
  assert.is(plan.workerCap, 19500); // 20,000 - 500
  assert.is(plan.loadgenWorkers, 53);
  assert.is(plan.srcIps, 200);
  assert.ok(plan.plannedPerWorker <= plan.workerCap);
  assert.is(plan.concurrency, 1000);
  assert.is(makePlan(parseArgs(['--target', '10000']), s).concurrency, 150, 'one worker: under its backlog');
  assert.is(makePlan(parseArgs(['--workers', '4']), s, 'reuseport').concurrency, 600, 'a queue per worker');
  assert.is(makePlan(parseArgs(['--workers', '14']), s, 'shared-socket').concurrency, 408, 'one shared socket: under its one backlog of 511, whatever the workers');
  const tight = makePlan(parseArgs(['--worker-cap', '30000']), s);
  assert.is(tight.workerCap, 19500, 'the cap never passes the descriptor limit');
});

test('predicted limits: fs.file-max, tracked conntrack, memory, tcp_mem; --tune only where needed', () => {
  const opts = parseArgs([]);
  const roomy = sysFrom({ fileMax: 3_000_000 });
  const rows = predictLimits(opts, roomy, makePlan(opts, roomy));
  const row = (rs, name) => rs.find((r) => r.limit.startsWith(name));
  assert.ok(row(rows, 'fs.file-max').ok);
  assert.is(row(rows, 'fs.file-max').tune, undefined);
  assert.ok(row(rows, 'net.netfilter').ok, 'conntrack loaded but tracking nothing');
  assert.not.ok(row(rows, 'net.ipv4.tcp_mem').ok, '1,000,000 queued frames would pass 575,796 pages');
  assert.ok(row(rows, 'net.ipv4.tcp_mem').tune);

  const tight = sysFrom({ fileMax: 1_500_000, conntrackCount: 500, memAvailableKb: 8 * 1024 * 1024 });
  const t = predictLimits(opts, tight, makePlan(opts, tight));
  assert.not.ok(row(t, 'fs.file-max').ok);
  assert.equal(row(t, 'fs.file-max').tune.key, 'fs.file-max');
  assert.ok(Number(row(t, 'fs.file-max').tune.value) > 2_000_000);
  assert.not.ok(row(t, 'net.netfilter').ok, 'tracking: 1,000,000 entries do not fit 262,144');
  assert.is(row(t, 'net.netfilter').tune.key, 'net.netfilter.nf_conntrack_max');
  assert.not.ok(row(t, 'memory').ok);
  assert.is(row(t, 'memory').tune, undefined, 'no sysctl makes memory');
});

// ---- during the ramp ----------------------------------------------------------------------
const baseOpts = () => parseArgs(['--target', '1000000']);

test('next step: a full step when everything fits, then the target', () => {
  const opts = baseOpts();
  const sys = sysFrom({});
  const plan = makePlan(opts, sys);
  assert.equal(nextStep({ opts, plan, held: 0, sys, base: sys, costPerConn: null, elapsedS: 5, reserveS: 240 }).target, 50_000);
  assert.is(nextStep({ opts, plan, held: 980_000, sys, base: sys, costPerConn: 10 * KiB, elapsedS: 100, reserveS: 240 }).target, 1_000_000, 'the last step is cut to the target');
  assert.is(nextStep({ opts, plan, held: 1_000_000, sys, base: sys }).stop.limit, 'target');
});

test('next step: memory shrinks the step, then stops the ramp and says so', () => {
  const opts = baseOpts();
  const plan = makePlan(opts, sysFrom({}));
  // 3.5 GiB available, 3 GiB margin: 0.5 GiB at 10 KiB (x1.1) is ~47,000 connections
  const sys = sysFrom({ memAvailableKb: 3.5 * 1024 * 1024 });
  const d = nextStep({ opts, plan, held: 100_000, sys, base: sys, costPerConn: 10 * KiB, elapsedS: 10, reserveS: 0 });
  assert.ok(d.target > 100_000 && d.target < 150_000, `shrunk: ${d.target}`);
  assert.match(d.limitedBy.join(), /memory/);
  const low = sysFrom({ memAvailableKb: 3.005 * 1024 * 1024 });
  const s = nextStep({ opts, plan, held: 100_000, sys: low, base: low, costPerConn: 10 * KiB, elapsedS: 10, reserveS: 0 });
  assert.is(s.stop.limit, 'memory');
  assert.match(s.stop.detail, /margin 3 GiB/);
});

test('next step: fs.file-max, tracked conntrack, a full worker and time each stop the ramp', () => {
  const opts = baseOpts();
  const plan = makePlan(opts, sysFrom({}));
  const files = sysFrom({ fileNr: 2_465_000, fileMax: 2_466_160 });
  assert.is(nextStep({ opts, plan, held: 500_000, sys: files, base: files, costPerConn: 10 * KiB }).stop.limit, 'fs.file-max');

  const ctBase = sysFrom({ conntrackCount: 0 });
  const ctNow = sysFrom({ conntrackCount: 261_500 });
  assert.is(nextStep({ opts, plan, held: 260_000, sys: ctNow, base: ctBase, costPerConn: 10 * KiB }).stop.limit, 'net.netfilter.nf_conntrack_max');
  // untracked (count unchanged): no conntrack stop
  assert.ok(nextStep({ opts, plan, held: 260_000, sys: ctBase, base: ctBase, costPerConn: 10 * KiB }).target > 260_000);

  const sys = sysFrom({});
  const full = nextStep({ opts, plan, held: 500_000, sys, base: sys, costPerConn: 10 * KiB, maxWorkerConns: 19_400 });
  assert.is(full.stop.limit, 'descriptors per process', 'one worker at 19,400 of 19,500: the spread fills it first');

  const late = nextStep({ opts, plan, held: 100_000, sys, base: sys, costPerConn: 10 * KiB, elapsedS: 1795, reserveS: 0 });
  assert.is(late.stop.limit, 'time');
  const lateish = nextStep({ opts, plan, held: 100_000, sys, base: sys, costPerConn: 10 * KiB, elapsedS: 1788, reserveS: 0, stepTimeS: 10, lastStep: 50_000 });
  assert.ok(lateish.target - 100_000 < 50_000 && lateish.target > 100_000, `12 s left at 5,000/s: a shorter step (${lateish.target})`);
});

test('step verdict: names the limit behind failed handshakes', () => {
  const opts = baseOpts();
  const sys = sysFrom({});
  const ev = (reasons, connected = 50_000) => ({ step_connected: connected, step_fail_reasons: reasons });
  assert.is(stepVerdict({ opts, step: ev({}), sys }), null);
  assert.is(stepVerdict({ opts, step: ev({ timeout: 12 }), sys }), null, 'a few failures are tolerated (0.1 %)');
  assert.match(stepVerdict({ opts, step: ev({ no_port: 900 }), sys }).limit, /^ports/);
  assert.match(stepVerdict({ opts, step: ev({ file_max: 900 }), sys }).limit, /^fs.file-max/);
  assert.match(stepVerdict({ opts, step: ev({ status: 900 }), sys }).limit, /503/);
  const full = sysFrom({ conntrackCount: 262_000 });
  assert.match(stepVerdict({ opts, step: ev({ timeout: 5000 }), sys: full }).limit, /nf_conntrack_max/);
  assert.match(stepVerdict({ opts, step: ev({ timeout: 5000 }), sys, netDelta: { 'TcpExt.ListenOverflows': 4000 } }).limit, /accept backlog/);
  assert.is(stepVerdict({ opts, step: ev({}), sys, workersDead: 1 }).limit, 'server worker exited');
  assert.is(stepVerdict({ opts, step: ev({}), sys, memHalt: true }).limit, 'memory');
});

test('phase limit: tcp_mem met during the ping, not during a quiet broadcast', () => {
  const tcpMem = [287898, 383865, 575796];
  assert.is(phaseLimit('broadcast', { tcpMemPeakBytes: 130 * MiB, net: {} }, tcpMem), null);
  const ping = phaseLimit('ping', { tcpMemPeakBytes: 3.39 * GiB, net: { 'TcpExt.TCPMemoryPressures': 1, 'TcpExt.TCPAbortOnMemory': 1 } }, tcpMem);
  assert.is(ping.limit, 'net.ipv4.tcp_mem');
  assert.match(ping.detail, /over the hard limit/);
  assert.match(ping.detail, /1 memory-pressure episode/);
  assert.is(phaseLimit('ping', { error: 'x' }, tcpMem), null);
});

// ---- results ------------------------------------------------------------------------------
function measurement(held, { rssPer = 1536, slabPer = 9 * KiB, availPer = 11 * KiB } = {}) {
  const sys = {
    memAvailable: 20 * GiB - held * availPer,
    slab: 300 * MiB + held * slabPer,
    sUnreclaim: 150 * MiB + held * 6 * KiB,
    pageTables: 10 * MiB,
    sockstat: { tcpMemPages: 3, tcpInuse: 2 * held },
    fileNr: 5000 + 2 * held,
    conntrack: { count: 0, max: 262144 },
  };
  const workers = [1, 2].map((pid) => ({ pid, rss: 70 * MiB + (held / 2) * rssPer, anon: 20 * MiB + (held / 2) * rssPer, heapUsed: 8 * MiB + (held / 2) * 350, external: 0, connections: held / 2 }));
  const slab = { TCP: { objects: 500 + 2 * held, size: 2368 }, proc_inode_cache: { objects: 1000 + held, size: 696 }, dentry: { objects: 5000 + 3 * held, size: 192 } };
  return { held, sys, slab, workers, primary: { rss: 60 * MiB, anon: 18 * MiB }, loadgen: { rss: 6 * MiB + held * 300, anon: 5 * MiB + held * 300 } };
}

test('per-connection figures from a baseline and a step', () => {
  const base = measurement(0);
  const pc = perConnection(base, measurement(100_000));
  assert.is(Math.round(pc.serverRss), 1536);
  assert.is(Math.round(pc.heapUsed), 350);
  assert.is(Math.round(pc.kernelSlab), 9 * 1024);
  assert.is(Math.round(pc.kernelSlabPerSocket), 4.5 * 1024);
  assert.is(Math.round(pc.kernelSlabUnreclaimable), 6 * 1024);
  assert.is(Math.round(pc.loadgenRss), 300);
  assert.is(Math.round(pc.memAvailableDrop), 11 * 1024);
  assert.is(pc.slabCaches[0].cache, 'TCP');
  assert.is(pc.slabCaches[0].bytesPerConnection, 2 * 2368);
  assert.is(Math.round(pc.procFdEntries), 696 + 192, 'one /proc fd inode and its dentry per connection');
  assert.is(perConnection(base, measurement(0)), null);
});

test('summary: held, stop, rates, projection; and the chart', () => {
  const base = measurement(0);
  const steps = [50_000, 100_000, 150_000].map((n, i) => stepRecord(base, measurement(n), { target: n, step_connected: 50_000, step_s: 5 + i, handshakes_per_s: 50_000 / (5 + i), step_fail_reasons: {} }));
  assert.equal(steps[2].perWorker, { min: 75_000, max: 75_000, workers: 2 });
  const run = { options: { target: 1_000_000 }, steps, stop: { limit: 'memory', detail: 'x' }, baseline: { workerBaseline: 70 * MiB, workerBaselineAnon: 20 * MiB }, broadcast: { deliveries_per_s: 1 }, ping: { firstPingToLastPongS: 2 } };
  const s = summarise(run);
  assert.is(s.held, 150_000);
  assert.is(s.stop.limit, 'memory');
  assert.is(Math.round(s.handshakes.overallPerSecond), Math.round(150_000 / 18));
  assert.is(Math.round(s.handshakes.medianStepPerSecond), Math.round(50_000 / 6));
  const p = s.projection;
  assert.ok(p.bytesPerConnectionServerOnly > 4 * KiB && p.bytesPerConnectionServerOnly < 6 * KiB, `server only ${p.bytesPerConnectionServerOnly}`);
  assert.ok(p.machines.every((m, i, a) => i === 0 || m.serverOnly > a[i - 1].serverOnly), 'more memory, more connections');
  assert.ok(p.millionNeeds.bothEndsGiB > 10 && p.millionNeeds.bothEndsGiB < 13, `${p.millionNeeds.bothEndsGiB}`);
  const svg = svgChart(steps, { title: 'memory <test>', subtitle: 'a & b' });
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /memory &lt;test&gt;/);
  assert.match(svg, /a &amp; b/);
  assert.is((svg.match(/<path /g) ?? []).length, 4, 'four series');
  assert.is((svg.match(/<circle /g) ?? []).length, 12, 'a point per step and series');
  assert.match(svg, /<\/svg>\n$/);
});

test('--server serve: the ramp only (no broadcast, no ping), serve without per-address caps, shedding or rebalancing', () => {
  const o = parseArgs(['--server', 'serve', '--target', '40000', '--workers', '4']);
  assert.is(o.broadcastCase, null);
  assert.is(o.ping, false);
  assert.is(parseArgs([]).server, 'echo');
  assert.throws(() => parseArgs(['--server', 'ws']), (e) => e instanceof UsageError);
  const a = serveArgs(o, { serverWorkers: 4, workerCap: 19_500 });
  assert.equal(a.slice(0, 3), ['serve', '--workers', '4']);
  for (const [flag, v] of [['--max-connections', '19500'], ['--max-connections-per-address', '0'], ['--max-handshakes-per-address', '0'], ['--overload-lag-ms', '0'], ['--overload-memory', '0']]) assert.is(a[a.indexOf(flag) + 1], v, flag);
  assert.ok(a.includes('--rebalance=off'));
  assert.is(distributionOf('v20.20.2'), 'shared-socket');
  assert.is(distributionOf('v22.12.0'), 'reuseport');
  assert.is(distributionOf('v24.9.0'), 'reuseport');
});

test('compare: serve/echo per Node from the runs, medians over rounds', () => {
  const run = (server, node, rss, hs) => ({
    server: { kind: server, distribution: 'reuseport' },
    versions: { serverNode: node },
    steps: [{ serverConnections: 40_000, perWorker: { min: 9000, max: 11_000, workers: 4 } }],
    summary: { held: 40_000, stop: { limit: 'target' }, perConnection: { serverRss: rss, heapUsed: 200 }, handshakes: { overallPerSecond: hs, medianStepPerSecond: hs } },
  });
  const f = [run('echo', 'v24', 1000, 10_000), run('serve', 'v24', 1100, 9000), run('echo', 'v24', 1200, 12_000), run('serve', 'v24', 1300, 12_000), run('echo', 'v20', 3000, 5000)].map(rampFigures);
  assert.is(f[0].spread, 1.1);
  const c = compareFigures(f);
  const v24 = c.find((x) => x.node === 'v24');
  assert.is(v24.echo.runs, 2);
  assert.is(v24.rssRatio, +(1200 / 1100).toFixed(3));
  assert.is(v24.handshakeRatio, +(10_500 / 11_000).toFixed(3));
  assert.is(c.find((x) => x.node === 'v20').rssRatio, null, 'no serve run: no ratio');
});

test.after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

test.run();
