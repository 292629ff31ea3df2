// Helpers for the gossip tests: a fast config, fixed keys, cluster builders over the
// simulator and over real UDP, and bounded polling.
import { GossipNode, type GossipNodeOptions } from '../../src/cluster/gossip/node.js';
import { FAST_LOCAL_CONFIG, type GossipConfig } from '../../src/cluster/gossip/gossip-config.js';
import { SimNetwork, type SimNetworkOptions } from '../../src/cluster/gossip/simnet.js';

export const KEY_A = Buffer.alloc(32, 0xa1);
export const KEY_B = Buffer.alloc(32, 0xb2);
export const KEY_C = Buffer.alloc(32, 0xc3);

export const FAST: Partial<GossipConfig> = { ...FAST_LOCAL_CONFIG };

export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/[\s|]/g, ''), 'hex');
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll `pred` every `stepMs` until it holds or `timeoutMs` passed; returns elapsed ms or -1. */
export async function waitFor(pred: () => boolean, timeoutMs: number, stepMs = 10): Promise<number> {
  const start = performance.now();
  while (performance.now() - start < timeoutMs) {
    if (pred()) return performance.now() - start;
    await sleep(stepMs);
  }
  return pred() ? performance.now() - start : -1;
}

/** A simulated cluster of `n` nodes named n0..n{n-1}, all joined through n0 and converged. */
export function simCluster(n: number, options: SimNetworkOptions = {}): SimNetwork {
  const net = new SimNetwork({ seed: 42, config: FAST, ...options });
  for (let i = 0; i < n; i++) net.addNode(`n${i}`);
  for (let i = 1; i < n; i++) net.join(`n${i}`, ['n0']);
  const t = net.runUntil(() => [...net.hosts.values()].every((h) => h.node.liveCount === n), 30_000);
  if (t < 0) throw new Error(`simulated cluster of ${n} did not converge`);
  return net;
}

/** Live members in `host`'s view, by name. */
export function liveNames(members: { name: string; state: string }[]): string[] {
  return members.filter((m) => m.state === 'alive' || m.state === 'suspect').map((m) => m.name).sort();
}

export type NodeOptions = Omit<GossipNodeOptions, 'name' | 'keys'> & { keys?: GossipNodeOptions['keys'] };

/** Start `n` UDP nodes on 127.0.0.1 named `${prefix}0..`, joined through the first. */
export async function udpCluster(n: number, prefix = 'u', options: NodeOptions = {}, perNode?: (i: number) => NodeOptions): Promise<GossipNode[]> {
  const nodes: GossipNode[] = [];
  for (let i = 0; i < n; i++) {
    const node = new GossipNode({ name: `${prefix}${i}`, keys: [KEY_A], config: FAST, ...options, ...perNode?.(i) });
    await node.start();
    nodes.push(node);
  }
  for (let i = 1; i < n; i++) await (nodes[i] as GossipNode).join([(nodes[0] as GossipNode).address]);
  return nodes;
}

export async function stopAll(nodes: GossipNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.stop()));
}
