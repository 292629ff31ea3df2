// `murmur serve` processes (the compiled CLI) on 127.0.0.1 for the cluster tests, and their
// HTTP API. Every child is killed by its PID when the test process exits, pass or fail.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { http, type Json } from '../app/helpers.js';
import { sleep } from './helpers.js';

export const SERVE_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const CLUSTER_KEY = Buffer.alloc(32, 0x5e).toString('base64');
export const API_KEY = 'k-test';

export interface ServeNode {
  id: string;
  proc: ChildProcess;
  port: number;
  gossip: string;
  out: string;
  exited: boolean;
}

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.pid !== undefined) c.kill('SIGKILL');
});

/** Kills `proc` by its PID if it is still running when the test process exits. */
export function trackChild(proc: ChildProcess): ChildProcess {
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  return proc;
}

/** Spawns `murmur serve` and resolves once it printed its LISTENING and CLUSTER lines. */
export function serveNode(id: string, seeds: string[], extra: string[] = [], startTimeoutMs = 15_000): Promise<ServeNode> {
  const args = [SERVE_MAIN, 'serve', '--port', '0', '--gossip-port', '0', '--node-id', id, '--api-key', API_KEY, '--shutdown-timeout-ms', '2000', '--overload-lag-ms', '0', ...extra];
  if (seeds.length > 0) args.push('--seeds', seeds.join(','));
  const proc = trackChild(spawn(process.execPath, args, { env: { ...process.env, MURMUR_CLUSTER_KEY: CLUSTER_KEY }, stdio: ['ignore', 'pipe', 'pipe'] }));
  const node: ServeNode = { id, proc, port: 0, gossip: '', out: '', exited: false };
  proc.on('exit', () => (node.exited = true));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${id} did not start: ${node.out}`)), startTimeoutMs);
    proc.stdout!.on('data', (d: Buffer) => {
      node.out += d.toString();
      const l = /^LISTENING (\d+)/m.exec(node.out);
      const c = /^CLUSTER (\S+) (\S+)/m.exec(node.out);
      if (l !== null && c !== null && node.port === 0) {
        node.port = Number(l[1]);
        node.gossip = c[2]!;
        clearTimeout(timer);
        resolve(node);
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (node.out += d.toString()));
    proc.on('exit', (code) => {
      clearTimeout(timer);
      if (node.port === 0) reject(new Error(`${id} exited with ${code}: ${node.out}`));
    });
  });
}

/** GET `path` on a node's HTTP API as JSON (throws on a status other than 200). */
export async function nodeApi(node: ServeNode, path: string): Promise<Json> {
  const r = await http(`http://127.0.0.1:${node.port}${path}`, { headers: { 'X-Api-Key': API_KEY } });
  if (r.status !== 200) throw new Error(`${path} on ${node.id}: ${r.status} ${r.body}`);
  return JSON.parse(r.body) as Json;
}

/** A node's /metrics text. */
export async function nodeMetrics(node: ServeNode): Promise<string> {
  return (await http(`http://127.0.0.1:${node.port}/metrics`, { headers: { 'X-Api-Key': API_KEY } })).body;
}

/** Polls every node's API (answers arrive while the loop waits); resolves with ms taken or -1. */
export async function pollAll(nodes: ServeNode[], check: (answers: Json[]) => boolean, path: string, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    const answers = await Promise.all(nodes.map((n) => nodeApi(n, path)));
    if (check(answers)) return performance.now() - t0;
    await sleep(25);
  }
  return -1;
}

/** Ids of the members a /api/cluster/members answer lists in `state`, sorted. */
export const membersIn = (j: Json, state: string): string[] => (j.members as Json[]).filter((m) => m.state === state).map((m) => m.id as string).sort();

/** Kills every node still running, by PID, and waits for the exits. */
export async function killAll(nodes: ServeNode[]): Promise<void> {
  for (const n of nodes) if (!n.exited && n.proc.exitCode === null) n.proc.kill('SIGKILL');
  for (const n of nodes) if (!n.exited) await new Promise((r) => n.proc.once('exit', r));
}
