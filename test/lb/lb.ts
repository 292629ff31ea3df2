/**
 * The cluster behind a real load balancer: three `murmur serve` processes (the compiled CLI)
 * joined by gossip and a bus, HAProxy in front of them on loopback with health checks on
 * /readyz, optionally redis-server for the redis bus, and many MurmurClients (the same client
 * the browser uses, with its backoff, jitter and recovery) connected through HAProxy.
 *
 * Every process is started here and killed here by its PID; `stopAll` runs even when a test
 * failed. A missing binary (haproxy, redis-server) fails loudly with the package that brings it.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request as httpRequest } from 'node:http';
import { WebSocket } from '../../src/client/index.js';
import { MurmurClient } from '../../src/app/public/murmur-client.js';
import type { MurmurMessage, WebSocketConstructor } from '../../src/app/public/murmur-client.js';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const CLUSTER_KEY = Buffer.alloc(32, 0x5c).toString('base64');

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `pred` every `stepMs` until it holds; throws `what` after `timeoutMs`. Returns elapsed ms. */
export async function until(pred: () => boolean | Promise<boolean>, timeoutMs: number, what: string, stepMs = 25): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await pred()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(stepMs);
  }
}

/** A binary the test cannot run without: fail loudly, naming the Debian package. */
export function requireBinary(name: string, pkg: string): string {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  const msg = `MISSING SYSTEM PACKAGE ${pkg}: ${name} is not installed (apt-get install ${pkg}; .ci/run does)`;
  console.error(`\n${'!'.repeat(msg.length)}\n${msg}\n${'!'.repeat(msg.length)}\n`);
  throw new Error(msg);
}

export async function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A port free for both TCP and UDP (gossip uses one port number for both). */
export async function freeGossipPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await freeTcpPort();
    const ok = await new Promise<boolean>((resolve) => {
      const u = createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port for TCP and UDP');
}

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();

export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

/** Spawns a child and waits for a line of its stdout matching `ready`. */
/** Prints a failure's details before passing it on: uvu may lose them when many sockets close at once, and shows a hook that threw only as its tests not passing. */
export const loud = <T>(p: Promise<T>): Promise<T> =>
  p.catch((err: unknown) => {
    console.error(err);
    throw err;
  });

/** A suite's set-up (before hook) whose failure is printed whole. */
export const loudly = (setUp: () => Promise<void>) => (): Promise<void> => loud(setUp());

export async function spawnReady(cmd: string, args: string[], ready: RegExp, timeoutMs: number, name: string, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; log: () => string }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let out = '';
  const log = () => out;
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (out = (out + d).slice(-20_000)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready within ${timeoutMs} ms; output:\n${out}`)), timeoutMs);
    const onData = (d: string) => {
      out = (out + d).slice(-20_000);
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before it was ready; output:\n${out}`));
    });
  }).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  child.removeAllListeners('exit');
  child.once('exit', () => children.delete(child));
  return { child, log };
}

export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** GET a URL; resolves with status and body, or status 0 when the connection failed. */
export function httpGet(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { headers, agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: 0, body: '' }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end();
  });
}

export function httpPost(url: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, agent: false, timeout: 2000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', () => resolve({ status: 0, body: '' }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end(body);
  });
}

export type BusKind = 'mesh' | 'redis';

export interface NodeSpec {
  index: number;
  id: string;
  port: number;
  gossipPort: number;
}

export const API_KEY = 'lb-test-api-key';

/**
 * A murmur node of the test cluster, with the LAN gossip timings (a dead node is known in
 * about 6 s) and a short drain (SIGTERM: readyz 503 for 1 s, above HAProxy's 3 failed checks, then 1012 with retry-after=1).
 */
export class Node {
  readonly spec: NodeSpec;
  child: ChildProcess | null = null;
  log: () => string = () => '';
  /** Node's own flags before the CLI (e.g. --import of a test module). */
  execArgv: string[] = [];
  /** Environment added to the process's. */
  env: Record<string, string> = {};
  readonly #args: string[];

  constructor(spec: NodeSpec, args: string[]) {
    this.spec = spec;
    this.#args = args;
  }

  get http(): string {
    return `http://127.0.0.1:${this.spec.port}`;
  }

  async start(): Promise<void> {
    const r = await spawnReady(process.execPath, [...this.execArgv, CLI, 'serve', ...this.#args], /LISTENING \d+/, 20_000, `node ${this.spec.id}`, { MURMUR_TRANSPORT: process.env.MURMUR_TRANSPORT ?? '', ...this.env });
    this.child = r.child;
    this.log = r.log;
  }

  kill9(): Promise<void> {
    const c = this.child;
    if (c === null) return Promise.resolve();
    c.kill('SIGKILL');
    this.child = null;
    return exited(c);
  }

  /** SIGTERM and wait for the process to drain and exit. */
  async stop(): Promise<void> {
    const c = this.child;
    if (c === null) return;
    c.kill('SIGTERM');
    this.child = null;
    const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited(c);
    clearTimeout(t);
  }

  async readyz(): Promise<number> {
    return (await httpGet(`${this.http}/readyz`)).status;
  }

  async members(): Promise<Array<{ id: string; state: string }>> {
    const r = await httpGet(`${this.http}/api/cluster/members`, { authorization: `Bearer ${API_KEY}` });
    if (r.status !== 200) return [];
    const body = JSON.parse(r.body) as { members: Array<{ id: string; state: string }> };
    return body.members;
  }

  async presence(topic: string): Promise<Array<{ user: string; conn: string }>> {
    const r = await httpGet(`${this.http}/api/presence?topic=${encodeURIComponent(topic)}`, { authorization: `Bearer ${API_KEY}` });
    if (r.status !== 200) throw new Error(`presence on ${this.spec.id}: ${r.status} ${r.body}`);
    return (JSON.parse(r.body) as { members: Array<{ user: string; conn: string }> }).members;
  }
}

export interface Cluster {
  bus: BusKind;
  nodes: Node[];
  haproxy: ChildProcess;
  lbPort: number;
  redis: ChildProcess | null;
  redisPort: number;
  url: string;
}

const OPERATIONS_MD = fileURLToPath(new URL('../../../docs/operations.md', import.meta.url));

/** The fenced block of `lang` in docs/operations.md (the configurations users copy). */
export function docBlock(lang: string): string {
  const text = readFileSync(OPERATIONS_MD, 'utf8');
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(text);
  if (m === null) throw new Error(`docs/operations.md has no \`\`\`${lang} block`);
  return m[1]!;
}

/**
 * The HAProxy configuration of docs/operations.md, with this test's ports and faster health
 * checks (the documented 1 s interval would only make the test slower).
 */
export function haproxyConfig(lbPort: number, nodes: Array<{ id: string; port: number }>, balance = 'roundrobin'): string {
  const doc = docBlock('haproxy');
  const lines = doc.split('\n').filter((l) => !/^\s+server node\d/.test(l));
  // maxconn 100000 needs 200,000 descriptors; a test process may have 20,000 (8,000 needs about 16,000)
  let out = lines.join('\n').replace('bind 127.0.0.1:8080', `bind 127.0.0.1:${lbPort}`).replace('maxconn 100000', 'maxconn 8000').replace('balance roundrobin', `balance ${balance}`);
  // Faster checks; and no on-marked-down shutdown-sessions: on one machine the kernel resets
  // a killed node's sockets at once anyway, and on a loaded test machine a slow health check
  // must not cut the sessions of a node that is alive (a real failure this test would not be about).
  out = out.replace(/default-server inter 1s fastinter 250ms downinter 1s fall 2 rise 2 on-marked-down shutdown-sessions/, 'default-server inter 250ms fastinter 100ms downinter 250ms fall 3 rise 1');
  if (out === doc || !out.includes(`bind 127.0.0.1:${lbPort}`) || !out.includes('inter 250ms')) throw new Error('the HAProxy block of docs/operations.md changed shape; update test/lb/lb.ts');
  return `${out.trimEnd()}\n${nodes.map((n) => `    server ${n.id} 127.0.0.1:${n.port} check`).join('\n')}\n`;
}

/** Cluster flags of node `i` (gossip on loopback with fast timings, the bus). */
export function clusterArgs(spec: NodeSpec, seeds: NodeSpec[], bus: BusKind, redisPort: number): string[] {
  const args = [
    '--port', String(spec.port), '--host', '127.0.0.1',
    '--api-key', API_KEY,
    '--history-topics', 'room:*',
    '--retry-after', '1',
    '--drain-delay-ms', '1000',
    '--shutdown-timeout-ms', '2000',
    '--rate-limit', '1000', '--rate-burst', '1000',
    '--node-id', spec.id,
    '--gossip-host', '127.0.0.1',
    '--gossip-port', String(spec.gossipPort),
    '--cluster-key', CLUSTER_KEY,
    // LAN timings: the local profile's 100 ms probes would suspect a node that is only busy
    // fanning out 600,000 messages, and drop its presence for a moment
    '--gossip-profile', 'lan',
    '--bus', bus,
    // A client moved by rebalancing misses what is published while it moves, until positions
    // hold across nodes: the bus scenarios, which count every message, run without it; the
    // rebalancing tests turn it on (ClusterShape.args, the later flag wins).
    '--rebalance=off',
    // Nor overload protection: a loaded test machine stalls a node's event loop past 500 ms now
    // and then, and the scenarios that count every message would see a client shed with 1013.
    '--overload-lag-ms', '0',
  ];
  if (seeds.length > 0) args.push('--seeds', seeds.map((s) => `127.0.0.1:${s.gossipPort}`).join(','));
  if (bus === 'redis') args.push('--redis-url', `redis://127.0.0.1:${redisPort}`);
  return args;
}

export interface ClusterShape {
  /** HAProxy's balance algorithm (default roundrobin, as docs/operations.md). */
  balance?: string;
  /** Nodes declared to HAProxy (down until started) but not started: scale-out. */
  spare?: number;
  /** More `murmur serve` flags for every node. */
  args?: string[];
}

export async function startCluster(bus: BusKind, n = 3, shape: ClusterShape = {}): Promise<Cluster> {
  const haproxyBin = requireBinary('haproxy', 'haproxy');
  let redis: ChildProcess | null = null;
  let redisPort = 0;
  if (bus === 'redis') {
    const redisBin = requireBinary('redis-server', 'redis-server');
    redisPort = await freeTcpPort();
    const dir = tempDir('murmur-redis-');
    redis = (await spawnReady(redisBin, ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], /Ready to accept connections/, 10_000, 'redis-server')).child;
  }
  const specs: NodeSpec[] = [];
  const all = n + (shape.spare ?? 0);
  for (let i = 0; i < all; i++) specs.push({ index: i, id: `node${i + 1}`, port: await freeTcpPort(), gossipPort: await freeGossipPort() });
  // every node lists the others as seeds: a restarted node finds the cluster whichever it is
  const nodes = specs.map((s) => new Node(s, [...clusterArgs(s, specs.filter((o) => o !== s), bus, redisPort), ...(shape.args ?? [])]));
  for (const node of nodes.slice(0, n)) await node.start();
  await until(async () => {
    for (const node of nodes.slice(0, n)) {
      const alive = (await node.members()).filter((m) => m.state === 'alive').length;
      if (alive !== n) return false;
    }
    return true;
  }, 10_000, `all ${n} nodes see each other`);

  const lbPort = await freeTcpPort();
  const dir = tempDir('murmur-haproxy-');
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(cfg, haproxyConfig(lbPort, specs, shape.balance));
  const check = spawnSync(haproxyBin, ['-c', '-f', cfg], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`haproxy -c refused the configuration:\n${check.stdout}${check.stderr}`);
  const haproxy = spawnHaproxy(haproxyBin, cfg);
  const url = `ws://127.0.0.1:${lbPort}/ws`;
  await until(async () => (await httpGet(`http://127.0.0.1:${lbPort}/readyz`)).status === 200, 10_000, 'HAProxy forwards /readyz');
  return { bus, nodes, haproxy, lbPort, redis, redisPort, url };
}

/** HAProxy in the foreground (-db) prints nothing when all is well: it is ready when it answers. */
function spawnHaproxy(bin: string, cfg: string): ChildProcess {
  const child = spawn(bin, ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Kills every process this file started and removes its temp dirs. */
export async function stopAll(): Promise<void> {
  const all = [...children];
  for (const c of all) c.kill('SIGKILL');
  await Promise.all(all.map(exited));
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

/** A client through the load balancer, recording every message it receives. */
export class LbClient {
  readonly index: number;
  readonly client: MurmurClient;
  readonly received: MurmurMessage[] = [];
  readonly closes: Array<{ code: number; at: number }> = [];
  readonly opens: number[] = [];
  readonly resyncs: Array<{ topic: string; reason: string }> = [];
  readonly errors: string[] = [];
  /** Longest time between a close and the next open, in ms. */
  longestGapMs = 0;
  #closedAt = 0;

  constructor(index: number, url: string) {
    this.index = index;
    this.client = new MurmurClient({
      url,
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      storage: null,
      backoffBaseMs: 200,
      backoffMaxMs: 2000,
      requestTimeoutMs: 10_000,
    });
    this.client.on('message', (m) => this.received.push(m));
    this.client.on('resync', (r) => this.resyncs.push({ topic: r.topic, reason: r.reason }));
    this.client.on('error', (e) => this.errors.push(`${e.code}: ${e.message}`));
    this.client.on('close', (c) => {
      this.closes.push({ code: c.code, at: Date.now() });
      if (this.#closedAt === 0) this.#closedAt = performance.now();
    });
    this.client.on('open', () => {
      this.opens.push(Date.now());
      if (this.#closedAt !== 0) {
        this.longestGapMs = Math.max(this.longestGapMs, performance.now() - this.#closedAt);
        this.#closedAt = 0;
      }
    });
  }

  get conn(): string {
    return String(this.client.welcome?.conn ?? '');
  }

  get open(): boolean {
    return this.client.state === 'open';
  }
}

/** Messages of `topic` in `received` whose data is {p, n} (publisher, sequence). */
export function tagged(received: MurmurMessage[], topic: string): Array<{ p: number; n: number }> {
  const out: Array<{ p: number; n: number }> = [];
  for (const m of received) {
    if (m.topic !== topic) continue;
    const d = m.data as { p?: unknown; n?: unknown } | null;
    if (d !== null && typeof d === 'object' && typeof d.p === 'number' && typeof d.n === 'number') out.push({ p: d.p, n: d.n });
  }
  return out;
}

/** Whether `got` holds every number of `acked` (a count would be met early by unacknowledged messages, which may arrive too). */
export function hasEvery(got: Array<{ n: number }>, acked: Set<number>): boolean {
  const have = new Set(got.map((m) => m.n));
  for (const n of acked) if (!have.has(n)) return false;
  return true;
}

/** Checks exactly-once and per-publisher order; returns a description of the first problem, or null. */
export function checkExactlyOnce(got: Array<{ p: number; n: number }>, publishers: number, perPublisher: number): string | null {
  const next = new Array<number>(publishers).fill(0);
  for (const { p, n } of got) {
    if (p < 0 || p >= publishers) return `message from unknown publisher ${p}`;
    if (n < next[p]!) return `publisher ${p}: message ${n} again (duplicate) after ${next[p]! - 1}`;
    if (n > next[p]!) return `publisher ${p}: message ${n} before ${next[p]} (lost or out of order)`;
    next[p] = n + 1;
  }
  for (let p = 0; p < publishers; p++) if (next[p] !== perPublisher) return `publisher ${p}: ${next[p]} of ${perPublisher} messages`;
  return null;
}

/**
 * No message twice; loss and order are not checked (messages posted through the balancer
 * land on different nodes, and the order between two nodes' publishes is not defined).
 */
export function checkNoDuplicates(got: Array<{ p: number; n: number }>): string | null {
  const seen = new Set<string>();
  for (const { p, n } of got) {
    const k = `${p}:${n}`;
    if (seen.has(k)) return `publisher ${p}: message ${n} twice`;
    seen.add(k);
  }
  return null;
}

/**
 * Checks a subscriber's stream of one publisher's numbered messages: any message at most once,
 * the acknowledged ones all there and in order. A publish whose reply never came (its node
 * stopped or died first) is in doubt: it may still be ordered, after what the publisher
 * published meanwhile on another node. Returns a description of the first problem, or null.
 */
export function checkStream(got: Array<{ p: number; n: number }>, acked: Set<number>): string | null {
  const seen = new Set<number>();
  let last = -1;
  for (const { n } of got) {
    if (seen.has(n)) return `message ${n} twice`;
    seen.add(n);
    if (!acked.has(n)) continue;
    if (n <= last) return `message ${n} after ${last} (out of order)`;
    last = n;
  }
  for (const n of acked) if (!seen.has(n)) return `acknowledged message ${n} missing (${seen.size} received, ${acked.size} acknowledged)`;
  return null;
}
