// Liveness links on the gossip port: a member that holds no other link to the others (no bus,
// or Redis) and dies is suspected by its watchers at once, long before a probe could; a
// goodbye is never evidence; a hello with another key, for another member, or past the
// inbound caps is refused, and a replayed one stands for nobody.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createConnection, type Socket } from 'node:net';
import { GossipNode, parseAddr, type GossipReject } from '../../src/cluster/gossip/node.js';
import type { GossipConfig } from '../../src/cluster/gossip/gossip-config.js';
import { AesGcmSealer, Keyring } from '../../src/cluster/gossip/security.js';
import { StreamRefusal } from '../../src/cluster/gossip/stream-head.js';
import type { FaultInjector } from '../../src/cluster/gossip/faults.js';
import type { MemberInfo } from '../../src/cluster/gossip/transport.js';
import { ringSuccessors } from '../../src/cluster/gossip/watch-links.js';
import { encodeWatchHello, encodeWatchRecord, WatchReader, WatchRecord, type WatchEvent } from '../../src/cluster/gossip/watch-wire.js';
import { KEY_A, KEY_B, FAST, sleep, stopAll, udpCluster, waitFor } from './helpers.js';

/** Probes so slow that any suspicion within a few seconds of a crash came from a link; no port checks. */
const SLOW_PROBES: Partial<GossipConfig> = { ...FAST, probeIntervalMs: 10_000, probeTimeoutMs: 5_000, maxPortChecks: 0 };

test('ring: every member is watched by exactly k others, and a member never watches itself', () => {
  const names = Array.from({ length: 20 }, (_, i) => `node-${i}`);
  const watchers = new Map<string, number>();
  for (const n of names) {
    const targets = ringSuccessors(n, names, 3);
    assert.is(targets.length, 3);
    assert.not.ok(targets.includes(n));
    for (const t of targets) watchers.set(t, (watchers.get(t) ?? 0) + 1);
  }
  assert.ok(names.every((n) => watchers.get(n) === 3), 'each watched 3 times');
  assert.equal(ringSuccessors('a', ['a', 'b'], 4), ['b']);
});

test('a member with no other link, stopped without a word: its watchers suspect it at once and it is dead everywhere well before a probe would notice', async () => {
  const nodes = await udpCluster(6, 'w', { config: { ...SLOW_PROBES, watchLinks: 3 } });
  try {
    assert.ok((await waitFor(() => nodes.every((n) => n.liveMembers().length === 6 && n.counters.watchLinksOut === 3), 10_000)) >= 0, 'every member linked to its 3 successors');
    const victim = nodes[2] as GossipNode;
    const survivors = nodes.filter((n) => n !== victim);
    const suspectedAt = new Map<string, number>();
    const deadAt = new Map<string, number>();
    for (const n of survivors) {
      n.on('suspect', (m: MemberInfo) => m.name === victim.name && !suspectedAt.has(n.name) && suspectedAt.set(n.name, performance.now()));
      n.on('dead', (m: MemberInfo) => m.name === victim.name && deadAt.set(n.name, performance.now()));
    }
    const t0 = performance.now();
    await victim.stop();
    // A probe-based suspicion needs at least the probe timeout (5 s) after the crash.
    assert.ok((await waitFor(() => deadAt.size === survivors.length, 4_000)) >= 0, `dead everywhere (suspected by ${suspectedAt.size}, dead on ${deadAt.size})`);
    const lost = survivors.reduce((s, n) => s + n.counters.watchLinksLost, 0);
    assert.is(lost, 3, 'each of its 3 watchers took its closed link as evidence');
    const first = Math.min(...suspectedAt.values()) - t0;
    assert.ok(first < 2_500, `first suspicion after ${first.toFixed(0)} ms`);
  } finally {
    await stopAll(nodes);
  }
});

test('a goodbye is not evidence: a member that leaves, its datagrams lost, is suspected by nobody on its closed links', async () => {
  let drop = false;
  const faults: FaultInjector = { dropOutbound: () => drop };
  const nodes = await udpCluster(3, 'g', { config: { ...SLOW_PROBES } }, (i) => (i === 1 ? { faults } : {}));
  try {
    assert.ok((await waitFor(() => nodes.every((n) => n.liveMembers().length === 3 && n.counters.watchLinksOut === 2), 10_000)) >= 0, 'linked');
    drop = true; // its leave never reaches anyone: only the links tell
    await (nodes[1] as GossipNode).leave(100);
    await sleep(1_000);
    for (const n of [nodes[0], nodes[2]] as GossipNode[]) {
      assert.is(n.counters.watchLinksLost, 0, `${n.name} took a goodbye for evidence`);
      assert.is(n.counters.linkSuspicions, 0, `${n.name} suspected on a goodbye`);
    }
  } finally {
    await stopAll(nodes);
  }
});

interface RawLink {
  /** The first thing the node answered. */
  first: WatchEvent | 'closed';
  sock: Socket;
  closed: Promise<void>;
}

/**
 * Opens a raw liveness link to `node` with a hello from `from` sealed under `key`; answers the
 * welcome's challenge unless `prove` is false (a replayed hello cannot).
 */
function rawLink(node: GossipNode, key: Buffer, from: string, { to = node.name, prove = true } = {}): Promise<RawLink> {
  const a = parseAddr(node.address) as { host: string; port: number };
  const sealer = new AesGcmSealer(new Keyring([key]));
  const nonce = Buffer.alloc(16, 7);
  return new Promise((resolve) => {
    const sock = createConnection(a, () => sock.write(encodeWatchHello(sealer, { from, to, nonce })));
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    const reader = new WatchReader(sealer);
    let first = true;
    sock.on('data', (chunk: Buffer) => {
      for (const e of reader.push(chunk)) {
        if (!first) continue;
        first = false;
        const welcomed = e.kind === 'record' && e.type === WatchRecord.Welcome && e.nonce.equals(nonce);
        if (!welcomed) sock.destroy();
        else if (prove) sock.write(encodeWatchRecord(sealer, WatchRecord.Proof, e.nonce2));
        resolve({ first: e, sock, closed });
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => resolve({ first: 'closed', sock, closed }));
    open.push(sock);
  });
}
const open: Socket[] = [];
const answer = (l: RawLink) => (l.first !== 'closed' && l.first.kind === 'refused' ? l.first.reason : l.first !== 'closed' && l.first.kind === 'record' ? 'welcome' : 'other');

test('hostile links: another key, another member, a replayed hello, past the caps (total and per address)', async () => {
  const node = new GossipNode({ name: 'h', keys: [KEY_A], config: { ...SLOW_PROBES, maxWatchLinksIn: 3, maxWatchLinksInPerAddress: 16 } });
  const node2 = new GossipNode({ name: 'h2', keys: [KEY_A], config: { ...SLOW_PROBES, maxWatchLinksIn: 64, maxWatchLinksInPerAddress: 1 } });
  const rejects: GossipReject[] = [];
  node.on('reject', (r: GossipReject) => rejects.push(r));
  await node.start();
  await node2.start();
  try {
    assert.is(answer(await rawLink(node, KEY_B, 'x')), StreamRefusal.Auth, 'another key');
    assert.ok(rejects.some((r) => r.reason === 'wrong key'));
    assert.is(answer(await rawLink(node, KEY_A, 'x', { to: 'someone-else' })), StreamRefusal.Stranger, 'meant for another member');
    const x1 = await rawLink(node, KEY_A, 'x1');
    assert.is(answer(x1), 'welcome');
    assert.is(answer(await rawLink(node, KEY_A, 'x2')), 'welcome');
    assert.ok((await waitFor(() => node.counters.watchLinksIn === 2, 2_000)) >= 0, 'two proven links');
    // A replay of x1's hello: welcomed, but it cannot answer the challenge, so it never stands
    // for x1 (x1's link stays) and is closed at the hello deadline.
    const replay = await rawLink(node, KEY_A, 'x1', { prove: false });
    assert.is(answer(replay), 'welcome');
    await replay.closed;
    assert.is(node.counters.watchLinksIn, 2);
    assert.ok(!x1.sock.destroyed && x1.sock.readyState === 'open', "x1's link survived the replay");
    // x1 linking again for real replaces its old link instead of taking another slot.
    assert.is(answer(await rawLink(node, KEY_A, 'x1')), 'welcome');
    await x1.closed;
    assert.is(node.counters.watchLinksIn, 2);
    assert.is(answer(await rawLink(node, KEY_A, 'x3')), 'welcome');
    assert.is(answer(await rawLink(node, KEY_A, 'x4')), StreamRefusal.Busy, 'over maxWatchLinksIn');
    assert.is(answer(await rawLink(node2, KEY_A, 'y1')), 'welcome');
    assert.is(answer(await rawLink(node2, KEY_A, 'y2')), StreamRefusal.Busy, 'over maxWatchLinksInPerAddress');
    // A dialer that goes away frees its slot: the link handed over by the stream listener still closes on the peer's FIN.
    for (const sock of open) sock.destroy();
    assert.ok((await waitFor(() => node.counters.watchLinksIn === 0 && node2.counters.watchLinksIn === 0, 3_000)) >= 0, 'inbound links released when their dialers closed');
    assert.is(answer(await rawLink(node2, KEY_A, 'y2')), 'welcome', 'the slot is free again');
  } finally {
    for (const s of open) s.destroy();
    await stopAll([node, node2]);
  }
});

test.run();
