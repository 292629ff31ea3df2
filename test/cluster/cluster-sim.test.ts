import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SimNetwork, type SimHost } from '../../src/cluster/gossip/simnet.js';
import { AesGcmSealer, Channel, Keyring } from '../../src/cluster/gossip/security.js';
import { encodeRecord, MessageType } from '../../src/cluster/gossip/gossip-wire.js';
import type { GossipDelegate } from '../../src/cluster/gossip/transport.js';
import { FAST, simCluster } from './helpers.js';

// Multi-node scenarios in the deterministic simulator (virtual time, same protocol code).

const P = FAST.probeIntervalMs!;
const hosts = (net: SimNetwork, except: string[] = []) => [...net.hosts.values()].filter((h) => h.up && !except.includes(h.name));
const stateOf = (h: SimHost, name: string) => h.node.member(name)?.state;
const deadEvents = (net: SimNetwork, name?: string) => hosts(net).flatMap((h) => h.events.filter((e) => e.type === 'dead' && (name === undefined || e.member.name === name)));

test('joiners learn the cluster through one seed and the cluster learns them', () => {
  const net = new SimNetwork({ seed: 1, config: FAST });
  for (let i = 0; i < 12; i++) net.addNode(`n${i}`);
  for (let i = 1; i < 12; i++) net.join(`n${i}`, ['n0']);
  const t = net.runUntil(() => hosts(net).every((h) => h.node.liveCount === 12), 10_000);
  assert.ok(t >= 0 && t < 2000, `converged in ${t} ms`);
  assert.is(net.host('n5').events.filter((e) => e.type === 'join').length, 11);
});

test('a crashed member: first suspected within a pass of probes, dead everywhere within the bound', () => {
  const net = simCluster(10);
  net.crash('n3');
  const t0 = net.now;
  const n = 10;
  const minS = 4 * P; // 4 * max(1, log10 10) * P
  const maxS = 6 * minS;
  // Round-robin: every survivor probes n3 within one pass of n - 1 periods (+1 for the current one).
  const detectBound = n * P;
  const tSuspect = net.runUntil(() => hosts(net).some((h) => stateOf(h, 'n3') === 'suspect'), detectBound);
  assert.ok(tSuspect >= 0, `suspected within ${detectBound} ms`);
  const bound = detectBound + maxS + 10 * FAST.gossipIntervalMs!;
  const tDead = net.runUntil(() => hosts(net).every((h) => stateOf(h, 'n3') === 'dead'), bound);
  assert.ok(tDead >= 0 && tDead <= bound, `dead everywhere in ${tDead} ms (bound ${bound})`);
  assert.ok(net.now - t0 >= minS, 'never before the minimum suspicion timeout');
  assert.is(deadEvents(net).length, 9, 'one dead event per survivor, nobody else');
});

test('a member unreachable for a moment refutes the suspicion and is never declared dead', () => {
  const net = simCluster(8);
  const victim = net.host('n4');
  const inc = victim.node.incarnation;
  victim.lossIn = 1; // hears nothing: probes of it fail
  const t = net.runUntil(() => hosts(net).some((h) => stateOf(h, 'n4') === 'suspect'), 20 * P);
  assert.ok(t >= 0, 'suspected');
  victim.lossIn = 0;
  net.run(8000);
  assert.ok(victim.node.incarnation > inc, 'refuted with a higher incarnation');
  assert.ok(victim.node.counters.refutations >= 1);
  assert.is(deadEvents(net).length, 0);
  assert.ok(hosts(net).every((h) => stateOf(h, 'n4') === 'alive'));
  assert.ok(hosts(net).some((h) => h.events.some((e) => e.type === 'alive' && e.member.name === 'n4')), 'alive event after suspect');
});

test('graceful leave: every member sees "leave" within a few gossip rounds, no suspicion, no death', () => {
  const net = simCluster(10);
  net.leave('n7');
  const bound = 10 * FAST.gossipIntervalMs!;
  const t = net.runUntil(() => hosts(net, ['n7']).every((h) => stateOf(h, 'n7') === 'left'), bound);
  assert.ok(t >= 0, `left everywhere in ${t} ms (bound ${bound})`);
  net.run(3000);
  const about = hosts(net, ['n7']).flatMap((h) => h.events.filter((e) => e.member.name === 'n7' && e.type !== 'join').map((e) => e.type));
  assert.equal([...new Set(about)], ['leave']);
  assert.is(about.length, 9);
});

test('a restarted node with a new incarnation replaces its old self; late news of the old life changes nothing', () => {
  const net = simCluster(8);
  const old = net.host('n5');
  const oldInc = old.node.incarnation;
  net.crash('n5');
  assert.ok(net.runUntil(() => hosts(net).some((h) => stateOf(h, 'n5') === 'suspect'), 20 * P) >= 0);
  const restartAt = net.now;
  net.addNode('n5', { addr: 'n5-second-life', incarnation: oldInc + 1000 });
  net.join('n5', ['n0']);
  const t = net.runUntil(() => hosts(net).every((h) => h.node.member('n5')?.incarnation === oldInc + 1000 && stateOf(h, 'n5') === 'alive'), 3000);
  assert.ok(t >= 0, `new life known everywhere in ${t} ms`);
  // Late packets about the old life: its alive and a dead at the old incarnation.
  const sealer = net.defaultSealer();
  const n1 = net.host('n1');
  n1.node.receivePacket(sealer.seal(Buffer.concat([
    encodeRecord({ type: MessageType.Alive, incarnation: oldInc, name: 'n5', addr: 'n5', meta: new Uint8Array(0) }),
    encodeRecord({ type: MessageType.Dead, incarnation: oldInc, name: 'n5', from: 'n2' }),
  ]), Channel.Packet), 'n2', net.now);
  net.run(6 * 4 * P + 2000); // past any suspicion raised against the old life
  for (const h of hosts(net, ['n5'])) {
    const m = h.node.member('n5');
    assert.equal([m?.state, m?.addr, m?.incarnation], ['alive', 'n5-second-life', oldInc + 1000], h.name);
    assert.is(h.events.filter((e) => e.member.name === 'n5' && e.type === 'dead' && e.at >= restartAt).length, 0);
  }
});

test('a partition longer than the suspicion timeout, then healed: the cluster re-forms', () => {
  const net = simCluster(8);
  const a = ['n0', 'n1', 'n2', 'n3'];
  const b = ['n4', 'n5', 'n6', 'n7'];
  net.partition([a, b]);
  const split = net.runUntil(() => hosts(net).every((h) => h.node.liveCount === 4), 20_000);
  assert.ok(split >= 0, `each side declared the other dead (${split} ms)`);
  net.run(5000); // well past gossip-to-the-dead: only reconnect attempts cross now
  net.heal();
  const bound = FAST.reconnectIntervalMs! + 2 * FAST.pushPullIntervalMs!;
  const t = net.runUntil(() => hosts(net).every((h) => h.node.liveCount === 8), bound);
  assert.ok(t >= 0 && t <= bound, `re-formed in ${t} ms (bound ${bound})`);
  net.run(5000);
  assert.ok(hosts(net).every((h) => h.node.liveCount === 8), 'and stays formed');
});

test('a node with another key or another label is never admitted; its packets are counted', () => {
  const net = simCluster(5, { label: 'prod' });
  net.addNode('spy', { sealer: new AesGcmSealer(new Keyring([Buffer.alloc(32, 9)]), 'prod') });
  net.addNode('stranger', { sealer: new AesGcmSealer(new Keyring([Buffer.alloc(32, 7)]), 'staging') });
  for (const name of ['spy', 'stranger']) {
    const h = net.host(name);
    h.node.preload(['n0', 'n1', 'n2', 'n3', 'n4'].map((n) => ({ name: n, addr: n, incarnation: 1 })), net.now);
    net.join(name, ['n0']);
  }
  net.run(5000);
  const members = hosts(net, ['spy', 'stranger']);
  assert.ok(members.every((h) => h.node.member('spy') === undefined && h.node.member('stranger') === undefined));
  const auth = members.reduce((s, h) => s + h.node.counters.rejectedAuth, 0);
  const label = members.reduce((s, h) => s + h.node.counters.rejectedLabel, 0);
  assert.ok(auth > 0, `rejectedAuth ${auth}`);
  assert.ok(label > 0, `rejectedLabel ${label}`);
  assert.ok(members.every((h) => h.node.liveCount === 5));
});

test('local health: a node losing most of its packets stretches its probes and gets no healthy member killed', () => {
  const net = simCluster(10);
  const sick = net.host('n9');
  sick.lossIn = 0.5;
  sick.lossOut = 0.5;
  let maxScore = 0;
  for (let i = 0; i < 300; i++) {
    net.run(100);
    maxScore = Math.max(maxScore, sick.node.awareness);
  }
  assert.ok(maxScore >= 2, `health score rose to ${maxScore}`);
  const healthyDeaths = hosts(net).flatMap((h) => h.events.filter((e) => e.type === 'dead' && e.member.name !== 'n9'));
  assert.is(healthyDeaths.length, 0, JSON.stringify(healthyDeaths.map((e) => e.member.name)));
});

test('delegate: application broadcasts reach every node; full state is exchanged on join', () => {
  // A tiny versioned key-value "presence" delegate: re-broadcast what is new, merge full state.
  const stores = new Map<string, Map<string, number>>();
  const net = new SimNetwork({ seed: 3, config: FAST });
  const delegate = (name: string): GossipDelegate => {
    const store = new Map<string, number>();
    stores.set(name, store);
    const apply = (key: string, v: number) => {
      if ((store.get(key) ?? -1) >= v) return false;
      store.set(key, v);
      return true;
    };
    return {
      notifyMessage(payload) {
        const [key, v] = Buffer.from(payload).toString().split('=') as [string, string];
        if (apply(key, Number(v))) net.host(name).node.broadcast(payload, key);
      },
      localState: () => Buffer.from(JSON.stringify([...store])),
      mergeRemoteState(state) {
        for (const [k, v] of JSON.parse(Buffer.from(state).toString()) as [string, number][]) apply(k, v);
      },
    };
  };
  for (let i = 0; i < 8; i++) net.addNode(`n${i}`, { delegate: delegate(`n${i}`) });
  for (let i = 1; i < 8; i++) net.join(`n${i}`, ['n0']);
  net.run(1000);
  stores.get('n3')!.set('user:alice', 1);
  net.host('n3').node.broadcast(Buffer.from('user:alice=1'), 'user:alice');
  const t = net.runUntil(() => [...stores.values()].every((s) => s.get('user:alice') === 1), 3000);
  assert.ok(t >= 0, `delta everywhere in ${t} ms`);
  net.addNode('late', { delegate: delegate('late') });
  net.join('late', ['n0']);
  net.run(100);
  assert.is(stores.get('late')!.get('user:alice'), 1, 'full state arrived with the join reply');
});

test('the same seed gives the same run', () => {
  const run = () => {
    const net = simCluster(6, { seed: 11, loss: 0.05 });
    net.crash('n2');
    net.run(8000);
    return hosts(net).flatMap((h) => h.events.map((e) => `${h.name}:${e.type}:${e.member.name}:${e.at.toFixed(3)}`));
  };
  assert.equal(run(), run());
});

test('packets stay within maxPacketBytes during a join storm of 40 nodes', () => {
  const net = new SimNetwork({ seed: 8, config: { ...FAST, maxPacketBytes: 700 } });
  for (let i = 0; i < 40; i++) net.addNode(`node-with-a-longer-name-${i}`);
  for (let i = 1; i < 40; i++) net.join(`node-with-a-longer-name-${i}`, ['node-with-a-longer-name-0']);
  const t = net.runUntil(() => hosts(net).every((h) => h.node.liveCount === 40), 10_000);
  assert.ok(t >= 0, `converged in ${t}`);
  assert.ok(net.stats.maxPacketBytes <= 700, `largest ${net.stats.maxPacketBytes}`);
});

test.run();
