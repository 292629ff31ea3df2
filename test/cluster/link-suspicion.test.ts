import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SimulatedSealer, type SimHost, type SimNetwork } from '../../src/cluster/gossip/simnet.js';
import { SwimNode } from '../../src/cluster/gossip/state.js';
import { Suspicion } from '../../src/cluster/gossip/suspicion.js';
import { FAST, simCluster } from './helpers.js';

// A link of the layer above (the mesh bus) that closes without a goodbye is evidence of a
// crash: suspicion starts at once, confirmations from several members shorten it to
// linkSuspicionMs, and a live suspect refutes it. Simulated cluster, virtual time.

const P = FAST.probeIntervalMs!;
const G = FAST.gossipIntervalMs!;
const LINK = FAST.linkSuspicionMs!;
/** The ordinary minimum suspicion timeout at 10 nodes: 4 * max(1, log10 10) * P. */
const MIN_S = 4 * P;

const hosts = (net: SimNetwork, except: string[] = []) => [...net.hosts.values()].filter((h) => h.up && !except.includes(h.name));
const stateOf = (h: SimHost, name: string) => h.node.member(name)?.state;
const deaths = (net: SimNetwork) => hosts(net).reduce((s, h) => s + h.events.filter((e) => e.type === 'dead').length, 0);

function linkLost(net: SimNetwork, at: SimHost[], name: string): void {
  for (const h of at) {
    h.node.linkLost(name, net.now);
    net.poke(h.name);
  }
}

test('suspicion math: confirmations take a link suspicion from the ordinary minimum down to the link floor', () => {
  const s = new Suspicion('a', 2, LINK, MIN_S, 0);
  assert.is(s.deadline, MIN_S, 'alone: the ordinary minimum');
  assert.ok(s.confirm('b'));
  assert.ok(s.deadline < MIN_S && s.deadline > LINK);
  assert.ok(s.confirm('c'));
  assert.is(s.deadline, LINK, 'k confirmations: the link floor');
  // An ordinary suspicion shortened by our own lost link keeps its start and never moves later.
  const o = new Suspicion('b', 2, MIN_S, 6 * MIN_S, 100);
  assert.is(o.deadline, 100 + 6 * MIN_S);
  o.strengthen(LINK, MIN_S);
  assert.is(o.deadline, 100 + MIN_S);
  assert.ok(o.confirm('self'));
  assert.ok(o.confirm('c'));
  assert.is(o.deadline, 100 + LINK);
  o.strengthen(MIN_S, 6 * MIN_S);
  assert.is(o.deadline, 100 + LINK, 'weaker bounds never lengthen it');
});

test('a crash seen as lost links by every survivor: dead everywhere within the link floor plus gossip, long before the ordinary minimum', () => {
  const net = simCluster(10);
  net.crash('n3');
  linkLost(net, hosts(net), 'n3');
  assert.ok(hosts(net).every((h) => stateOf(h, 'n3') === 'suspect'), 'suspected at once');
  const bound = LINK + 5 * G;
  const t = net.runUntil(() => hosts(net).every((h) => stateOf(h, 'n3') === 'dead'), MIN_S + P);
  assert.ok(t >= 0 && t <= bound, `dead everywhere after ${t} ms (link floor ${LINK}, bound ${bound}, ordinary minimum ${MIN_S})`);
  assert.ok(t >= LINK, 'never before the link floor');
  assert.ok(hosts(net).every((h) => h.node.counters.linkSuspicions === 1));
});

test('a lost link to a live member (a flapping link): it refutes, nobody declares it dead', () => {
  const net = simCluster(10);
  const victim = net.host('n4');
  const inc = victim.node.incarnation;
  linkLost(net, [net.host('n0')], 'n4');
  net.run(MIN_S + 10 * P);
  assert.ok(victim.node.incarnation > inc, 'refuted');
  assert.is(deaths(net), 0);
  assert.ok(hosts(net).every((h) => stateOf(h, 'n4') === 'alive'));
});

test('a live suspect told by its accuser answers it directly: the accuser clears it within a round trip, not a gossip round', () => {
  const net = simCluster(10, { latencyMs: 1, jitterMs: 0 });
  const n0 = net.host('n0');
  net.run(G); // no gossip round is due at the same instant as the accusation
  linkLost(net, [n0], 'n4');
  assert.is(stateOf(n0, 'n4'), 'suspect');
  const t = net.runUntil(() => stateOf(n0, 'n4') === 'alive', G, 0.5);
  assert.ok(t >= 0 && t <= 3, `alive again on the accuser after ${t} ms (round trip 2 ms, gossip round ${G} ms)`);
});

test('every link to a live member drops at once (its network blipped): the accusers hear its refutation directly and nobody declares it dead', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const net = simCluster(10, { seed });
    const victim = net.host('n6');
    linkLost(net, hosts(net, ['n6']), 'n6');
    net.run(MIN_S + 10 * P);
    assert.is(deaths(net), 0, `seed ${seed}: no death`);
    assert.ok(hosts(net).every((h) => stateOf(h, 'n6') === 'alive'), `seed ${seed}: alive everywhere`);
    assert.ok(victim.node.counters.refutations >= 1);
  }
});

test('a direct probe that goes unanswered asks the runtime for harder evidence before any suspicion', () => {
  const missed: string[] = [];
  const sent: string[] = [];
  const node = new SwimNode({
    name: 'a',
    addr: 'a:1',
    config: FAST,
    transport: { sendPacket: (to) => sent.push(to), sendStream: () => {} },
    sealer: new SimulatedSealer(),
    random: () => 0,
    onProbeMissed: (name, addr) => missed.push(`${name}@${addr}`),
  });
  node.preload([{ name: 'b', addr: 'b:1', incarnation: 1 }], 0);
  node.start(0);
  let now = 0;
  while (sent.length === 0 && now < 2 * P) node.tick((now = node.nextDeadline()));
  assert.ok(sent.every((to) => to === 'b:1'), 'the ping');
  assert.equal(missed, []);
  const pingAt = now;
  while (missed.length === 0 && now < pingAt + P) node.tick((now = node.nextDeadline()));
  assert.equal(missed, ['b@b:1']);
  assert.ok(now - pingAt >= FAST.probeTimeoutMs!, 'at the direct ack timeout');
  assert.is(node.member('b')?.state, 'alive', 'not yet suspected');
  assert.ok(node.linkLost('b', now), 'evidence reported back starts the suspicion');
  assert.is(node.member('b')?.state, 'suspect');
});

test('a lost link only starts suspicion once; a dead or unknown member is no evidence', () => {
  const net = simCluster(4);
  const n0 = net.host('n0').node;
  assert.ok(n0.linkLost('n1', net.now));
  assert.not.ok(n0.linkLost('n1', net.now), 'the same evidence twice');
  assert.not.ok(n0.linkLost('nobody', net.now));
  assert.not.ok(n0.linkLost('n0', net.now), 'ourselves');
  net.crash('n2');
  net.runUntil(() => stateOf(net.host('n0'), 'n2') === 'dead', MIN_S * 8);
  assert.not.ok(n0.linkLost('n2', net.now), 'already dead');
});

test.run();
