import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { once } from 'node:events';
import { GossipNode, GossipJoinError, parseAddr, type GossipReject } from '../../src/cluster/gossip/node.js';
import type { MemberInfo } from '../../src/cluster/gossip/transport.js';
import { AesGcmSealer, Channel, Keyring } from '../../src/cluster/gossip/security.js';
import { StreamRefusal } from '../../src/cluster/gossip/stream-head.js';
import { MessageType, WIRE_VERSION } from '../../src/cluster/gossip/gossip-wire.js';
import { FAST, KEY_A, KEY_B, liveNames, sleep, stopAll, udpCluster, waitFor, type NodeOptions } from './helpers.js';

// Real UDP and TCP on 127.0.0.1, several nodes in one process, fast timings.
// Bounds are computed from the configured timings, plus TIMER_SLACK for real timers on a
// shared machine (event-loop delay, not protocol time).

const P = FAST.probeIntervalMs!;
const G = FAST.gossipIntervalMs!;
const TIMER_SLACK = 500;

test('5 nodes in one process see each other within 2 s', async () => {
  const started = performance.now();
  const nodes = await udpCluster(5, 'a');
  const names = nodes.map((n) => n.name).sort();
  const t = await waitFor(() => nodes.every((n) => liveNames(n.members()).join() === names.join()), 2000 - (performance.now() - started));
  try {
    assert.ok(t >= 0, 'not converged within 2 s');
    assert.ok(performance.now() - started < 2000);
    for (const n of nodes) assert.ok(n.members().every((m) => m.addr.startsWith('127.0.0.1:')));
  } finally {
    await stopAll(nodes);
  }
});

/** Kills one of 5 nodes without a word; resolves with when each survivor declared it dead and its counters. */
async function killOneOfFive(prefix: string, options: NodeOptions = {}): Promise<{ deadAt: Map<string, number>; survivors: GossipNode[]; bound: number; minSuspicion: number }> {
  const nodes = await udpCluster(5, prefix, options);
  assert.ok((await waitFor(() => nodes.every((n) => n.liveMembers().length === 5), 2000)) >= 0);
  const victim = nodes[2] as GossipNode;
  const survivors = nodes.filter((n) => n !== victim);
  const n = 5;
  const minSuspicion = 4 * Math.max(1, Math.log10(n)) * P;
  // First probe of the victim by some survivor: within one round-robin pass (n - 1 periods)
  // plus the period in progress; then the unconfirmed (maximum) suspicion timeout; then a
  // few gossip rounds for the verdict to spread.
  const bound = n * P + 6 * minSuspicion + 10 * G + TIMER_SLACK;
  const deadAt = new Map<string, number>();
  const t0 = performance.now();
  for (const s of survivors) s.on('dead', (m: MemberInfo) => m.name === victim.name && deadAt.set(s.name, performance.now() - t0));
  await victim.stop(); // the UDP socket closes abruptly: no leave message
  const t = await waitFor(() => deadAt.size === survivors.length, bound + 1000);
  try {
    assert.ok(t >= 0, `not dead everywhere within ${bound + 1000} ms: ${[...deadAt]}`);
    for (const [name, at] of deadAt) assert.ok(at <= bound, `${name} declared it dead after ${at.toFixed(0)} ms > bound ${bound}`);
    return { deadAt, survivors, bound, minSuspicion };
  } finally {
    await stopAll(nodes);
  }
}

test('a node killed without a word: its closed gossip port is refused to every survivor that asks, and it is dead everywhere within the bound', async () => {
  const { deadAt, survivors } = await killOneOfFive('k');
  // Each survivor that suspected it asked its port, got ECONNREFUSED, and counted a lost link.
  for (const s of survivors) assert.ok(s.counters.linkSuspicions >= 1, `${s.name} took the refused port as evidence`);
  assert.ok(Math.min(...deadAt.values()) >= FAST.linkSuspicionMs!, 'never before the link suspicion timeout');
});

test('with port checks and liveness links off (maxPortChecks 0, watchLinks 0) a killed node waits the minimum suspicion timeout, as SWIM alone', async () => {
  const { deadAt, survivors, minSuspicion } = await killOneOfFive('q', { config: { ...FAST, maxPortChecks: 0, watchLinks: 0 } });
  for (const s of survivors) assert.is(s.counters.linkSuspicions, 0);
  assert.ok(Math.min(...deadAt.values()) >= minSuspicion, 'never before the minimum suspicion timeout');
});

test('a graceful leave is seen everywhere within a few gossip rounds, without suspicion', async () => {
  const nodes = await udpCluster(5, 'l');
  assert.ok((await waitFor(() => nodes.every((n) => n.liveMembers().length === 5), 2000)) >= 0);
  const leaver = nodes[4] as GossipNode;
  const others = nodes.slice(0, 4);
  const suspects: string[] = [];
  for (const o of others) o.on('suspect', (m: MemberInfo) => suspects.push(m.name));
  const t0 = performance.now();
  const leaving = leaver.leave();
  const bound = 5 * G + TIMER_SLACK;
  const t = await waitFor(() => others.every((o) => o.member(leaver.name)?.state === 'left'), bound, 2);
  await leaving;
  try {
    assert.ok(t >= 0, `left everywhere within ${bound} ms (took ${(performance.now() - t0).toFixed(0)})`);
    assert.not.ok(suspects.includes(leaver.name), 'no suspicion of a leaver');
  } finally {
    await stopAll(nodes);
  }
});

test('a restarted node rejoins with a new incarnation and its old self is not resurrected', async () => {
  const nodes = await udpCluster(5, 'r');
  assert.ok((await waitFor(() => nodes.every((n) => n.liveMembers().length === 5), 2000)) >= 0);
  const old = nodes[3] as GossipNode;
  const oldAddr = old.address;
  const oldInc = old.machine.incarnation;
  const survivors = nodes.filter((n) => n !== old);
  await old.stop();
  assert.ok((await waitFor(() => survivors.some((s) => s.member(old.name)?.state === 'suspect'), 20 * P)) >= 0, 'old life suspected');
  const restartAt = performance.now();
  const reborn = new GossipNode({ name: old.name, keys: [KEY_A], config: FAST });
  await reborn.start();
  const deaths: number[] = [];
  for (const s of survivors) s.on('dead', (m: MemberInfo) => m.name === old.name && deaths.push(performance.now()));
  try {
    assert.ok(reborn.machine.incarnation > oldInc, 'incarnation seeded from the clock');
    assert.not.equal(reborn.address, oldAddr);
    await reborn.join([(nodes[0] as GossipNode).address]);
    const known = () => survivors.every((s) => {
      const m = s.member(old.name);
      return m?.state === 'alive' && m.addr === reborn.address && m.incarnation >= reborn.machine.incarnation - 5;
    });
    assert.ok((await waitFor(known, 2000)) >= 0, 'new life known everywhere');
    await sleep(6 * 4 * P + 500); // past every suspicion timeout of the old life
    assert.ok(known(), 'still the new life');
    assert.is(deaths.filter((t) => t >= restartAt).length, 0, 'no stale suspicion killed the new life');
    assert.is(liveNames(reborn.members()).length, 5);
  } finally {
    await stopAll([...nodes, reborn]);
  }
});

test('a node with another key or another label is never admitted and its packets are counted', async () => {
  const nodes = await udpCluster(3, 'p', { label: 'prod' });
  const spy = new GossipNode({ name: 'spy', keys: [KEY_B], label: 'prod', config: FAST });
  const stranger = new GossipNode({ name: 'stranger', keys: [KEY_A], label: 'staging', config: FAST });
  try {
    assert.ok((await waitFor(() => nodes.every((n) => n.liveMembers().length === 3), 2000)) >= 0);
    for (const outsider of [spy, stranger]) {
      await outsider.start();
      let err: unknown = null;
      await outsider.join([(nodes[1] as GossipNode).address], 1000).catch((e: unknown) => (err = e));
      assert.ok(err instanceof GossipJoinError && err.code === 'GOSSIP_ERR_JOIN', 'join refused');
      // Make it probe the cluster anyway, as if it had learned the addresses.
      outsider.machine.preload(nodes.map((n) => ({ name: n.name, addr: n.address, incarnation: 1 })), performance.now());
    }
    await sleep(1500);
    for (const n of nodes) {
      assert.equal(liveNames(n.members()), ['p0', 'p1', 'p2'], `${n.name} admitted an outsider`);
      assert.is(n.member('spy'), undefined);
      assert.is(n.member('stranger'), undefined);
    }
    const sum = (k: 'rejectedAuth' | 'rejectedLabel') => nodes.reduce((s, n) => s + n.counters[k], 0);
    assert.ok(sum('rejectedAuth') > 0, `auth rejects ${sum('rejectedAuth')}`);
    assert.ok(sum('rejectedLabel') > 0, `label rejects ${sum('rejectedLabel')}`);
  } finally {
    await stopAll([...nodes, spy, stranger]);
  }
});

test('hostile bytes on the UDP port and the TCP port are dropped and counted; the node keeps working', async () => {
  const nodes = await udpCluster(2, 'h');
  const target = nodes[0] as GossipNode;
  const { host, port } = parseAddr(target.address)!;
  const udp = createSocket('udp4');
  try {
    for (let i = 1; i <= 100; i++) {
      udp.send(Buffer.alloc(i * 13, i), port, host);
      if (i % 10 === 0) await sleep(5); // no burst: the kernel may drop a burst before we see it
    }
    // Garbage: refused from its first byte, before any buffering, with a refusal record.
    assert.equal([...(await streamAnswer(port, host, Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3])))], [WIRE_VERSION, Channel.Refusal, StreamRefusal.Version]);
    // A stream of the first format ([u32 length][sealed frame]): an incompatible version.
    assert.equal([...(await streamAnswer(port, host, Buffer.concat([Buffer.from([0, 0, 0, 64]), Buffer.alloc(64, 0x5a)])))], [WIRE_VERSION, Channel.Refusal, StreamRefusal.Version]);
    await sleep(200);
    const c = target.counters;
    assert.ok(c.rejectedMalformed + c.rejectedVersion + c.rejectedAuth + c.rejectedLabel >= 95, `counted ${c.rejectedMalformed}/${c.rejectedVersion}/${c.rejectedAuth}/${c.rejectedLabel}`);
    assert.ok(c.streamErrors >= 2, `stream errors ${c.streamErrors}`);
    assert.ok((await waitFor(() => target.liveMembers().length === 2, 1000)) >= 0, 'still a working member');
  } finally {
    udp.close();
    await stopAll(nodes);
  }
});

test('a node of wire version 1 is refused as an incompatible version, datagrams and streams, and the refusal names its address', async () => {
  const [node] = await udpCluster(1, 'v');
  const target = node as GossipNode;
  const { host, port } = parseAddr(target.address)!;
  const rejects: GossipReject[] = [];
  target.on('reject', (r: GossipReject) => rejects.push(r));
  const udp = createSocket('udp4');
  try {
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
    // A version-1 datagram: the same envelope with version byte 1.
    const v1 = Buffer.from(new AesGcmSealer(new Keyring([KEY_A])).seal(Buffer.from([MessageType.Ack, 0, 4, 0, 0, 0, 1]), Channel.Packet));
    v1[0] = 1;
    udp.send(v1, port, host);
    // A version-1 stream: [u32 length][sealed frame].
    assert.equal([...(await streamAnswer(port, host, Buffer.concat([Buffer.from([0, 0, 0, v1.length]), v1])))], [WIRE_VERSION, Channel.Refusal, StreamRefusal.Version]);
    assert.ok((await waitFor(() => rejects.length >= 2, 2000)) >= 0, `rejects: ${JSON.stringify(rejects)}`);
    const udpAddr = `127.0.0.1:${udp.address().port}`;
    assert.ok(rejects.some((r) => r.channel === 'packet' && r.addr === udpAddr && r.reason === 'incompatible version' && r.by === 'us'), JSON.stringify(rejects));
    assert.ok(rejects.some((r) => r.channel === 'stream' && r.addr.startsWith('127.0.0.1:') && r.reason === 'incompatible version' && r.by === 'us'), JSON.stringify(rejects));
  } finally {
    udp.close();
    await stopAll([target]);
  }
});

/** Writes `bytes` on a new stream and returns everything the node answered until it closed. */
async function streamAnswer(port: number, host: string, bytes: Buffer): Promise<Buffer> {
  const s = connect(port, host);
  const got: Buffer[] = [];
  s.on('data', (d: Buffer) => got.push(d));
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(bytes);
  await once(s, 'close');
  return Buffer.concat(got);
}

test.run();
