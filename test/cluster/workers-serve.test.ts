// Real processes: `murmur serve --workers N` (the compiled CLI) on one port. The workers form
// a cluster of their own (or join a configured one); these tests check what that must give a
// client: connections spread over the workers, a publish on one worker reaches subscribers on
// every worker exactly once, presence joins and leaves are seen on every worker, /metrics on
// any worker shows every worker as valid Prometheus text, a killed worker is replaced (and its
// clients' presence disappears everywhere), SIGTERM drains every worker and leaves no process
// behind. In a configured cluster: the workers are its nodes <id>-w<i>, reached by other nodes
// on peer ports of their own that serve nothing else and hold bounded connections, and they do
// not outlive a killed supervisor. Every process is killed by its PID in the end, pass or fail.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TestClient, http, type Json } from '../app/helpers.js';
import { sleep, waitFor } from './helpers.js';
import { connect, type Socket } from 'node:net';
import { WebSocket as WsClient } from 'ws';
import { MESH_SUBPROTOCOL } from '../../src/cluster/bus/bus-config.js';
import { mergeExpositions } from '../../src/app/metrics.js';
import { PEER_HEADERS_TIMEOUT_MS, PEER_MAX_CONNECTIONS } from '../../src/app/workers.js';
import { alive } from '../helpers/process.js';
import { mintToken } from '../../src/app/token.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const API = 'k-workers';
const KEY = Buffer.alloc(32, 0x3c).toString('base64');

/** Every PID a test saw (primaries and workers): killed at exit, whatever happened. */
const pids = new Set<number>();
process.on('exit', () => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

interface Proc {
  proc: ChildProcess;
  port: number;
  /** stdout and stderr together (for failure messages); stdout alone. */
  out: string;
  stdout: string;
  exit: Promise<number | null>;
}

/** Spawns `murmur serve` with `args`; resolves once it printed LISTENING (and `clusterLines` CLUSTER lines). */
function serve(args: string[], clusterLines = 0, env: Record<string, string> = {}): Promise<Proc> {
  const proc = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '--api-key', API, '--shutdown-timeout-ms', '2000', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  pids.add(proc.pid!);
  const p: Proc = { proc, port: 0, out: '', stdout: '', exit: new Promise((r) => proc.on('exit', (code) => r(code))) };
  proc.stdout!.on('data', (d: Buffer) => {
    p.out += d.toString();
    p.stdout += d.toString();
  });
  proc.stderr!.on('data', (d: Buffer) => (p.out += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${p.out}`)), 20_000);
    const check = (): void => {
      const l = /^LISTENING (\d+) http:\/\/127\.0\.0\.1:\d+\/$/m.exec(p.out);
      if (l === null || (p.out.match(/^CLUSTER /gm) ?? []).length < clusterLines || p.port !== 0) return;
      p.port = Number(l[1]);
      clearTimeout(timer);
      resolve(p);
    };
    proc.stdout!.on('data', check);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      if (p.port === 0) reject(new Error(`serve exited with ${code}: ${p.out}`));
    });
  });
}

// ---- a strict reader of the Prometheus text format (version 0.0.4) --------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses an exposition, failing on anything a Prometheus server would refuse. */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const finished = new Set<string>();
  const series = new Set<string>();
  const samples: Sample[] = [];
  let current: string | null = null;
  const enter = (family: string, line: string): void => {
    if (family === current) return;
    assert.not.ok(finished.has(family), `family ${family} is not contiguous: ${line}`);
    if (current !== null) finished.add(current);
    current = family;
  };
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta !== null) {
      const [, kind, name] = meta as unknown as [string, string, string, string];
      enter(name, line);
      if (kind === 'HELP') {
        assert.not.ok(helps.has(name), `two HELP lines for ${name}`);
        helps.add(name);
      } else {
        assert.not.ok(types.has(name), `two TYPE lines for ${name}`);
        assert.ok(samples.every((s) => s.name !== name), `TYPE of ${name} after its samples`);
        assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(meta[3]!), `type ${meta[3]}`);
        types.set(name, meta[3]!);
      }
      continue;
    }
    assert.not.ok(line.startsWith('#') || line === '', `stray line ${JSON.stringify(line)}`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m !== null, `not a sample line: ${JSON.stringify(line)}`);
    const [, name, body = '', value] = m as unknown as [string, string, string | undefined, string];
    enter(name, line);
    const labels: Record<string, string> = {};
    let rest = body;
    while (rest.length > 0) {
      const l = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
      assert.ok(l !== null, `bad labels in ${JSON.stringify(line)}`);
      assert.not.ok(l[1]! in labels, `label ${l[1]} twice in ${line}`);
      labels[l[1]!] = l[2]!;
      rest = rest.slice(l[0].length);
    }
    const v = value === '+Inf' ? Infinity : value === '-Inf' ? -Infinity : Number(value);
    assert.ok(value === 'NaN' || !Number.isNaN(v), `bad value in ${line}`);
    const key = `${name}{${Object.entries(labels).sort().map(([k, x]) => `${k}=${x}`).join(',')}}`;
    assert.not.ok(series.has(key), `series twice: ${key}`);
    series.add(key);
    samples.push({ name, labels, value: v });
  }
  return { samples, types };
}

async function metrics(port: number): Promise<Sample[]> {
  const r = await http(`http://127.0.0.1:${port}/metrics`);
  assert.is(r.status, 200);
  return parseExposition(r.body).samples;
}

/** worker label -> value of a family (samples with extra labels matched by `where`). */
function perWorker(samples: Sample[], name: string, where: Record<string, string> = {}): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== name || s.labels.worker === undefined) continue;
    if (Object.entries(where).every(([k, v]) => s.labels[k] === v)) out.set(s.labels.worker, s.value);
  }
  return out;
}

const workerPids = (samples: Sample[]): Map<string, number> => {
  const out = new Map<string, number>();
  for (const s of samples) if (s.name === 'murmur_worker_info') out.set(s.labels.worker!, Number(s.labels.pid));
  return out;
};

/** The process a client landed on: conn ids are `<per-process random>.<seq>`. */
const processOf = (c: TestClient): string => (c.welcome!.conn as string).split('.')[0]!;

function groupByProcess(clients: TestClient[]): Map<string, TestClient[]> {
  const out = new Map<string, TestClient[]>();
  for (const c of clients) {
    const k = processOf(c);
    out.set(k, [...(out.get(k) ?? []), c]);
  }
  return out;
}

/** Opens clients in batches until every one of `workers` processes holds some (bounded). */
async function spread(url: string, workers: number, max: number): Promise<TestClient[]> {
  const clients: TestClient[] = [];
  while (clients.length < max && groupByProcess(clients).size < workers) {
    clients.push(...(await Promise.all(Array.from({ length: 8 }, () => TestClient.connect(url)))));
  }
  return clients;
}

test('mergeExpositions: one HELP and TYPE per family, every sample labelled with its worker', () => {
  const a = '# HELP x_total X.\n# TYPE x_total counter\nx_total{code="a b}"} 1\n# HELP up Up.\n# TYPE up gauge\nup 1\n';
  const b = '# HELP x_total X.\n# TYPE x_total counter\nx_total{code="c"} 2\nx_total{} 3\n# HELP up Up.\n# TYPE up gauge\nup 1\n# HELP only_b B.\n# TYPE only_b gauge\n';
  const merged = mergeExpositions([
    { worker: '0', text: a },
    { worker: '1', text: b },
  ]);
  assert.is(
    merged,
    '# HELP x_total X.\n# TYPE x_total counter\nx_total{worker="0",code="a b}"} 1\nx_total{worker="1",code="c"} 2\nx_total{worker="1"} 3\n' +
      '# HELP up Up.\n# TYPE up gauge\nup{worker="0"} 1\nup{worker="1"} 1\n# HELP only_b B.\n# TYPE only_b gauge\n',
  );
  parseExposition(merged);
});

test('serve --workers 3: spread, publish once everywhere, presence across workers, merged /metrics, a killed worker replaced, SIGTERM', async () => {
  const t0 = performance.now();
  const g = await serve(['--workers', '3']);
  const startMs = performance.now() - t0;
  const url = `ws://127.0.0.1:${g.port}/ws`;
  try {
    // ---- /metrics shows every worker, as valid Prometheus text
    let m = await metrics(g.port);
    const up = perWorker(m, 'murmur_up');
    assert.equal([...up.keys()].sort(), ['0', '1', '2'], 'murmur_up of every worker');
    assert.ok(m.some((s) => s.name === 'murmur_workers' && s.value === 3));
    assert.ok(m.some((s) => s.name === 'murmur_workers_scraped' && s.value === 3));
    const pids0 = workerPids(m);
    assert.is(pids0.size, 3);
    for (const pid of pids0.values()) {
      pids.add(pid);
      assert.ok(alive(pid));
    }
    // The workers' mesh is up by the time LISTENING is printed: two links each.
    assert.equal([...perWorker(m, 'murmur_bus_links_up').values()], [2, 2, 2], 'mesh links between the workers');

    // ---- connections spread over the workers
    const clients = await spread(url, 3, 96);
    const groups = groupByProcess(clients);
    m = await metrics(g.port);
    const conns = perWorker(m, 'murmur_connections');
    const holding = [...conns.values()].filter((n) => n > 0).length;
    process.stdout.write(`  started in ${startMs.toFixed(0)} ms; ${clients.length} clients over the workers: ${[...conns.values()].join(' / ')}\n`);
    assert.ok(holding >= 2, `more than one worker holds connections: ${JSON.stringify([...conns])}`);
    assert.is([...conns.values()].reduce((a, b) => a + b, 0), clients.length, 'the metrics count every client once');
    assert.is(groups.size, holding, 'one conn-id prefix per worker that holds connections');

    // ---- a publish from a client on each worker reaches every subscriber exactly once
    for (const c of clients) await c.request({ type: 'subscribe', topic: 'room:w', presence: true });
    const publishers = [...groups.values()].map((list) => list[0]!);
    for (const p of publishers) {
      const r = await p.request({ type: 'publish', topic: 'room:w', data: { by: processOf(p) }, echo: true });
      assert.is(r.type, 'reply');
    }
    const want = publishers.map(processOf).sort();
    for (const c of clients) {
      const got = (await c.messages('room:w', publishers.length, 5000)).map((x) => (x.data as Json).by as string).sort();
      assert.equal(got, want, `every publisher's message at ${c.welcome!.conn}`);
    }
    await sleep(300);
    for (const c of clients) assert.not.ok(c.inbox.some((x) => x.msg.type === 'message'), `no second copy at ${c.welcome!.conn}`);

    // ---- presence: a join on each worker is listed and evented on every worker
    const joiners = [...groups.values()].map((list) => list[0]!);
    for (const j of joiners) {
      const jr = await j.request({ type: 'presence', action: 'join', topic: 'room:w', meta: { by: processOf(j) } });
      assert.is(jr.joined, 'joined');
    }
    const joinerConns = joiners.map((j) => j.welcome!.conn as string).sort();
    for (const c of clients) {
      const seen: string[] = [];
      for (const _ of joiners) seen.push((await c.next((x) => x.type === 'presence' && x.event === 'join', 5000)).member.conn as string);
      assert.equal(seen.sort(), joinerConns, `every join evented once at ${c.welcome!.conn}`);
    }
    for (const [k, list] of groups) {
      const l = await list[list.length - 1]!.request({ type: 'presence', action: 'list', topic: 'room:w' });
      assert.equal((l.members as Json[]).map((x) => x.conn as string).sort(), joinerConns, `all listed on worker ${k}`);
    }
    const api = await http(`http://127.0.0.1:${g.port}/api/presence?user=${encodeURIComponent(joiners[0]!.welcome!.user as string)}`, { headers: { 'X-Api-Key': API } });
    assert.is(JSON.parse(api.body).online, true);

    // ---- kill -9 of a worker that holds clients: replaced; their presence leaves every other worker
    const victimLabel = [...conns].filter(([, n]) => n > 0).map(([w]) => w).sort().pop()!;
    const victimPid = pids0.get(victimLabel)!;
    const killedAt = performance.now();
    process.kill(victimPid, 'SIGKILL');
    assert.ok((await waitFor(() => clients.some((c) => c.closed !== null), 5000, 10)) >= 0, 'the killed worker\'s clients are cut');
    await sleep(100);
    const victimGroup = [...groups].find(([, list]) => list.every((c) => c.closed !== null));
    assert.ok(victimGroup !== undefined, 'one worker\'s clients all closed');
    const [victimKey, victimClients] = victimGroup;
    const victimConn = victimClients[0]!.welcome!.conn as string;
    for (const [k, list] of groups) {
      if (k === victimKey) continue;
      assert.ok(list.every((c) => c.closed === null), 'the other workers\' clients stay');
      for (const w of list) await w.next((x) => x.type === 'presence' && x.event === 'leave' && x.member.conn === victimConn, 10_000);
    }
    const leftMs = performance.now() - killedAt;
    let replacedMs = -1;
    const deadline = performance.now() + 15_000;
    while (performance.now() < deadline) {
      m = await metrics(g.port);
      const now = workerPids(m);
      const scraped = m.find((s) => s.name === 'murmur_workers_scraped')?.value;
      if (scraped === 3 && now.size === 3 && now.get(victimLabel) !== victimPid) {
        replacedMs = performance.now() - killedAt;
        pids.add(now.get(victimLabel)!);
        break;
      }
      await sleep(100);
    }
    assert.ok(replacedMs >= 0, 'the killed worker was replaced within 15 s');
    assert.ok(m.some((s) => s.name === 'murmur_worker_restarts_total' && s.value === 1));
    process.stdout.write(`  kill -9 of worker ${victimLabel}: its presence left the others after ${leftMs.toFixed(0)} ms; replaced after ${replacedMs.toFixed(0)} ms\n`);
    // The replacement is a cluster node again: linked to the two others, and they to it.
    let meshBack = false;
    for (let i = 0; i < 50 && !meshBack; i++) {
      m = await metrics(g.port);
      meshBack = [...perWorker(m, 'murmur_bus_links_up').values()].every((n) => n === 2) && perWorker(m, 'murmur_bus_links_up').size === 3;
      if (!meshBack) await sleep(100);
    }
    assert.ok(meshBack, 'mesh links of every worker back to 2');
    // A client that lands on the replacement publishes to everyone still connected.
    const before = new Set(groups.keys());
    const fresh: TestClient[] = [];
    let onNew: TestClient | undefined;
    for (let i = 0; i < 12 && onNew === undefined; i++) {
      const batch = await Promise.all(Array.from({ length: 8 }, () => TestClient.connect(url)));
      fresh.push(...batch);
      onNew = batch.find((c) => !before.has(processOf(c)));
    }
    assert.ok(onNew !== undefined, 'a new client landed on the replacement worker');
    const survivors = clients.filter((c) => c.closed === null);
    await onNew!.request({ type: 'publish', topic: 'room:w', data: { by: 'replacement' } });
    for (const c of survivors) {
      const [msg] = await c.messages('room:w', 1, 5000);
      assert.equal(msg!.data, { by: 'replacement' });
    }
    await sleep(200);
    for (const c of survivors) assert.not.ok(c.inbox.some((x) => x.msg.type === 'message'), `no second copy at ${c.welcome!.conn}`);

    // ---- SIGTERM: every worker drains (1012 to clients), the group exits 0, no process left
    const all = [...workerPids(m).values()];
    g.proc.kill('SIGTERM');
    const closes = await Promise.all(survivors.map((c) => c.waitClosed(8000)));
    assert.ok(closes.every((c) => c.code === 1012), `1012 to every client: ${JSON.stringify([...new Set(closes.map((c) => c.code))])}`);
    assert.is(await g.exit, 0, `exit code (output: ${g.out})`);
    assert.match(g.stdout, /\nDRAINING SIGTERM\nSTOPPED\n$/, g.out);
    const gone = await waitFor(() => all.every((pid) => !alive(pid)), 3000, 50);
    assert.ok(gone >= 0, `no worker left behind: ${all.filter(alive).join(', ')}`);
    for (const c of fresh) c.close();
  } finally {
    g.proc.kill('SIGKILL');
  }
});

test('serve --workers 2: a burst of anonymous connections replicates nothing; an anonymous member of a topic is replicated and online', async () => {
  const g = await serve(['--workers', '2']);
  const url = `ws://127.0.0.1:${g.port}/ws`;
  const clients: TestClient[] = [];
  const replication = async (): Promise<{ sent: Map<string, number>; notices: Map<string, number>; pulls: Map<string, number>; bytes: Map<string, number> }> => {
    const m = await metrics(g.port);
    return {
      sent: perWorker(m, 'murmur_presence_deltas_total', { event: 'sent' }),
      notices: perWorker(m, 'murmur_presence_notices_sent_total'),
      pulls: perWorker(m, 'murmur_presence_pulls_total'),
      bytes: perWorker(m, 'murmur_cluster_presence_state_bytes'),
    };
  };
  try {
    const before = await replication();
    assert.is(before.sent.size, 2, 'both workers report');
    // 1,000 arrivals, 100 at a time: every one an anonymous viewer in no presence topic.
    for (let i = 0; i < 10; i++) clients.push(...(await Promise.all(Array.from({ length: 100 }, () => TestClient.connect(url)))));
    assert.is(groupByProcess(clients).size, 2, 'clients on both workers');
    await sleep(300); // a few gossip rounds of the workers' fast timings: what would go out has gone out
    const after = await replication();
    for (const [w, n] of after.sent) {
      assert.is(n, 0, `worker ${w} sent presence deltas for anonymous connections`);
      assert.is(after.notices.get(w), before.notices.get(w), `worker ${w} sent a version notice (peers pull its full state)`);
      assert.is(after.pulls.get(w), before.pulls.get(w), `worker ${w} pulled a full state`);
      assert.is(after.bytes.get(w), before.bytes.get(w), `worker ${w} state grew`);
    }
    // Showing itself in a topic is what makes an anonymous connection replicated, and online.
    const groups = [...groupByProcess(clients).values()];
    const joiner = groups[0]![0]!;
    const other = groups[1]![0]!;
    const user = joiner.welcome!.user as string;
    await other.request({ type: 'presence', action: 'watch', topic: 'room:seen' });
    assert.equal((await other.request({ type: 'presence', action: 'online', users: [user] })).online, { [user]: false });
    assert.is((await joiner.request({ type: 'presence', action: 'join', topic: 'room:seen' })).joined, 'joined');
    assert.is((await other.next((x) => x.type === 'presence' && x.event === 'join', 5000)).member.user, user);
    assert.equal((await other.request({ type: 'presence', action: 'online', users: [user] })).online, { [user]: true });
    joiner.close();
    assert.is((await other.next((x) => x.type === 'presence' && x.event === 'leave', 5000)).member.user, user);
    const offline = await waitForAsync(async () => (await other.request({ type: 'presence', action: 'online', users: [user] })).online[user] === false, 5000);
    assert.ok(offline, 'offline on the other worker once its only connection closed');
  } finally {
    for (const c of clients) c.close();
    g.proc.kill('SIGKILL');
    await g.exit;
  }
});

test('serve --workers 2 with token users: each worker holds only its own users; online asks the other worker; a pipelined flood of online is cut', async () => {
  const secret = 'workers-online-secret';
  const g = await serve(['--workers', '2', '--secret', secret]);
  const url = `ws://127.0.0.1:${g.port}/ws`;
  const token = (user: string) => mintToken(secret, { user, subscribe: ['room:*'], presence: ['room:*'], ttlSeconds: 600 });
  const clients: TestClient[] = [];
  try {
    const m0 = await metrics(g.port);
    // Token users arrive until both workers hold some (bounded).
    for (let i = 0; i < 96 && (i < 40 || groupByProcess(clients).size < 2); i++) clients.push(await TestClient.connect(`${url}?token=${token(`user-${i}`)}`));
    const groups = [...groupByProcess(clients).values()];
    assert.is(groups.length, 2, 'users on both workers');
    const [onA, onB] = groups as [TestClient[], TestClient[]];
    await sleep(300); // a few gossip rounds of the workers' fast timings: what would go out has gone out
    const m = await metrics(g.port);
    const online = perWorker(m, 'murmur_online_users');
    const sent = perWorker(m, 'murmur_presence_deltas_total', { event: 'sent' });
    const bytes = perWorker(m, 'murmur_cluster_presence_state_bytes');
    const bytes0 = perWorker(m0, 'murmur_cluster_presence_state_bytes');
    // Which worker label holds which group: the one whose count matches (the groups differ in size, or either fits).
    assert.equal([...online.values()].sort((a, b) => a - b), [onA.length, onB.length].sort((a, b) => a - b), `each worker counts only its own users: ${JSON.stringify([...online])}`);
    for (const [w, n] of sent) assert.is(n, 0, `worker ${w} broadcast presence deltas for token users`);
    for (const [w, n] of bytes) assert.is(n, bytes0.get(w), `worker ${w}'s replicated state grew with users`);

    // A client on each worker sees the users of the other one.
    const a = onA[0]!;
    const b = onB[0]!;
    const userA = a.welcome!.user as string;
    const userB = b.welcome!.user as string;
    const want = { [userA]: true, [userB]: true, nobody: false };
    assert.equal((await b.request({ type: 'presence', action: 'online', users: [userA, userB, 'nobody'] })).online, want);
    assert.equal((await a.request({ type: 'presence', action: 'online', users: [userA, userB, 'nobody'] })).online, want);
    const api = await http(`http://127.0.0.1:${g.port}/api/presence?user=${userA}`, { headers: { 'X-Api-Key': API } });
    assert.equal(JSON.parse(api.body), { user: userA, online: true });
    // Replies stay in order: a ping sent right after an online that asks the other worker is answered after it.
    b.send({ type: 'presence', action: 'online', users: [userA], id: 'o1' });
    b.send({ type: 'ping', id: 'p1' });
    const first = await b.next((x) => x.type === 'reply' && (x.id === 'o1' || x.id === 'p1'), 5000);
    assert.is(first.id, 'o1', 'the online reply comes first');
    await b.next((x) => x.type === 'reply' && x.id === 'p1', 5000);

    // A user leaving is seen gone from the other worker.
    a.close();
    const gone = await waitForAsync(async () => (await b.request({ type: 'presence', action: 'online', users: [userA] })).online[userA] === false, 5000);
    assert.ok(gone, 'offline on the other worker once its connection closed');

    // Bounds: at most 100 users per online; one ask in flight per connection, the frames behind it
    // held up to 128, so a client pipelining online commands is closed, not fanned out 300 times.
    await b.expectError({ type: 'presence', action: 'online', users: Array.from({ length: 101 }, (_, i) => `x${i}`) }, 'BAD_FIELD');
    const rounds0 = [...perWorker(await metrics(g.port), 'murmur_presence_online_asks_total', { event: 'round' }).values()].reduce((x, y) => x + y, 0);
    const flooder = onB[1] ?? b;
    const frames = Array.from({ length: 300 }, (_, i) => JSON.stringify({ type: 'presence', action: 'online', users: [`ghost-${i}`], id: i }));
    for (const f of frames) flooder.ws.send(f);
    const closed = await flooder.waitClosed(5000);
    assert.is(closed.code, 1008, `closed for holding too many frames: ${JSON.stringify(closed)}`);
    const rounds1 = [...perWorker(await metrics(g.port), 'murmur_presence_online_asks_total', { event: 'round' }).values()].reduce((x, y) => x + y, 0);
    assert.ok(rounds1 - rounds0 <= 5, `${rounds1 - rounds0} rounds of asks for one flooding connection`);
  } finally {
    for (const c of clients) c.close();
    g.proc.kill('SIGKILL');
    await g.exit;
  }
});

test('serve --workers 2 in a configured cluster: the workers are nodes <id>-w0, -w1 beside a single node; a publish on it reaches both', async () => {
  const single = await serve(['--node-id', 'solo', '--gossip-port', '0', '--gossip-profile', 'local'], 1, { MURMUR_CLUSTER_KEY: KEY });
  const soloGossip = /^CLUSTER solo (\S+)$/m.exec(single.out)![1]!;
  let g: Proc | undefined;
  try {
    g = await serve(['--workers', '2', '--node-id', 'box', '--gossip-port', '0', '--gossip-profile', 'local', '--seeds', soloGossip], 2, { MURMUR_CLUSTER_KEY: KEY });
    assert.match(g.out, /^CLUSTER box-w0 127\.0\.0\.1:\d+$/m);
    assert.match(g.out, /^CLUSTER box-w1 127\.0\.0\.1:\d+$/m);
    // The single node sees both workers, each advertising its own peer port (not the shared one).
    let members: Json[] = [];
    const formed = await waitForAsync(async () => {
      const r = await http(`http://127.0.0.1:${single.port}/api/cluster/members`, { headers: { 'X-Api-Key': API } });
      members = (JSON.parse(r.body) as Json).members as Json[];
      return members.filter((x) => x.state === 'alive').length === 3;
    }, 5000);
    assert.ok(formed, `three alive members: ${JSON.stringify(members)}`);
    for (const id of ['box-w0', 'box-w1']) {
      const w = members.find((x) => x.id === id)!;
      assert.ok(w !== undefined, id);
      assert.match(w.http as string, /^127\.0\.0\.1:\d+$/);
      assert.is.not(w.http, `127.0.0.1:${g.port}`, `${id} advertises its peer port`);
    }
    const boxPids = [...workerPids(await metrics(g.port)).values()];
    for (const p of boxPids) pids.add(p);

    // ---- a peer port serves the bus path and /healthz only, with hard limits
    const [peerHost, peerPort] = (members.find((x) => x.id === 'box-w0')!.http as string).split(':') as [string, string];
    const peerUrl = `http://${peerHost}:${peerPort}`;
    const idleAt = performance.now();
    const idle = connect(Number(peerPort), peerHost);
    idle.on('error', () => {});
    let idleClosedMs = -1;
    idle.on('close', () => (idleClosedMs = performance.now() - idleAt));
    assert.is((await http(`${peerUrl}/healthz`)).status, 200);
    assert.is((await http(`${peerUrl}/metrics`)).status, 404);
    assert.is((await http(`${peerUrl}/api/presence?topic=room:x`, { headers: { 'X-Api-Key': API } })).status, 404);
    const wsOnPeer = TestClient.open(`ws://${peerHost}:${peerPort}/ws`);
    assert.is(await wsOnPeer.refusedStatus(), 404, 'no client connections on a peer port');
    const link = new WsClient(`ws://${peerHost}:${peerPort}/cluster/bus`, MESH_SUBPROTOCOL);
    const linkStatus = await new Promise<number>((resolve) => {
      link.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      link.on('open', () => resolve(101));
      link.on('error', () => {});
    });
    link.terminate();
    assert.is(linkStatus, 401, 'a bus link without the credentials of the cluster key is refused by the bus');
    // More connections than it holds: the ones past PEER_MAX_CONNECTIONS are closed at once.
    const flood: Socket[] = [];
    let cut = 0;
    await Promise.all(
      Array.from({ length: PEER_MAX_CONNECTIONS + 20 }, () => new Promise<void>((resolve) => {
        const sock = connect(Number(peerPort), peerHost, () => resolve());
        sock.on('error', () => resolve());
        sock.on('close', () => cut++);
        flood.push(sock);
      })),
    );
    assert.ok((await waitFor(() => cut >= 20, 3000, 20)) >= 0, `${cut} of ${PEER_MAX_CONNECTIONS + 20} closed by the peer port`);
    for (const sock of flood) sock.destroy();
    assert.is((await http(`${peerUrl}/healthz`)).status, 200, 'still answering after the flood');

    const clients = await spread(`ws://127.0.0.1:${g.port}/ws`, 2, 64);
    assert.is(groupByProcess(clients).size, 2, 'clients on both workers');
    for (const c of clients) await c.request({ type: 'subscribe', topic: 'room:x' });
    // The single node's links to the workers are synced once its bus counts two links up.
    const linked = await waitForAsync(async () => {
      const r = await http(`http://127.0.0.1:${single.port}/metrics`);
      return /murmur_bus_links_up\{transport="mesh"\} 2/.test(r.body);
    }, 5000);
    assert.ok(linked, 'the single node linked to both workers');
    // Interest reaches the single node a moment after the subscriptions: publish until every
    // client got one, then once more, which every client must get exactly once.
    const publish = async (n: number): Promise<void> => {
      const r = await http(`http://127.0.0.1:${single.port}/api/publish`, { method: 'POST', headers: { 'X-Api-Key': API, 'Content-Type': 'application/json' }, body: JSON.stringify({ topic: 'room:x', data: { n } }) });
      assert.is(r.status, 200);
    };
    const got = (c: TestClient): number[] => c.inbox.filter((x) => x.msg.type === 'message').map((x) => (x.msg.data as Json).n as number);
    let n = 0;
    const reached = await waitForAsync(async () => {
      await publish(++n);
      await sleep(100);
      return clients.every((c) => got(c).length > 0);
    }, 5000);
    assert.ok(reached, 'a publish on the single node reached clients on both workers');
    await publish(++n);
    for (const c of clients) {
      const deadline = performance.now() + 5000;
      while (!got(c).includes(n) && performance.now() < deadline) await sleep(20);
    }
    await sleep(200);
    for (const c of clients) {
      const seen = got(c);
      assert.is(seen.filter((x) => x === n).length, 1, `the last publish exactly once at ${c.welcome!.conn}`);
      assert.is(new Set(seen).size, seen.length, 'no duplicates');
    }
    // The idle connection (not a byte sent) was closed after PEER_HEADERS_TIMEOUT_MS.
    assert.ok((await waitFor(() => idleClosedMs >= 0, PEER_HEADERS_TIMEOUT_MS + 3000, 50)) >= 0, 'an idle peer connection is closed');
    assert.ok(idleClosedMs >= PEER_HEADERS_TIMEOUT_MS - 100, `closed after ${idleClosedMs.toFixed(0)} ms, not before ${PEER_HEADERS_TIMEOUT_MS}`);
    // kill -9 of the supervising process: the workers see their IPC channel close, drain and exit.
    g.proc.kill('SIGKILL');
    await g.exit;
    const orphansGone = await waitFor(() => boxPids.every((pid) => !alive(pid)), 10_000, 50);
    assert.ok(orphansGone >= 0, `workers outlived their killed supervisor: ${boxPids.filter(alive).join(', ')}`);
  } finally {
    g?.proc.kill('SIGKILL');
    single.proc.kill('SIGKILL');
  }
});

async function waitForAsync(pred: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await pred()) return true;
    await sleep(50);
  }
  return false;
}

test.run();
