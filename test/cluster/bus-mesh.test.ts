// The mesh bus with three in-process nodes on loopback: exactly-once delivery in publisher
// order, interest filtering, a peer restarting, and gossip membership driving the links.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GossipNode } from '../../src/cluster/gossip/node.js';
import { FAST_LOCAL_CONFIG } from '../../src/cluster/gossip/gossip-config.js';
import { gossipMembership, httpAddressFromMeta, linkUrl } from '../../src/cluster/bus/membership.js';
import { MeshBus } from '../../src/cluster/bus/mesh.js';
import { Server } from '../../src/server/server.js';
import { KEY_A, Subscriber, busServer, linkAll, meshUrl, sleep, startMeshNode, stopMeshNode, until } from './bus-helpers.js';
import type { MeshNode } from './bus-helpers.js';

const synced = (n: MeshNode, peers: number) => n.mesh.links().filter((l) => l.state === 'synced').length === peers;
/** Until node `from` knows that peer `to` has subscribers for `count` topics. */
const interestOf = (from: MeshNode, to: MeshNode) => from.mesh.links().find((l) => l.id === to.id)?.interestTopics ?? 0;

test('3 nodes: every publish reaches the subscribers of every other node exactly once, in publisher order', async () => {
  // One node accepts its links through a node:http server (the way murmur serve mounts it).
  const nodes = [await startMeshNode('a'), await startMeshNode('b'), await startMeshNode('c', { mountOnHttp: true })];
  const subs: Subscriber[] = [];
  try {
    linkAll(nodes);
    for (const n of nodes) {
      const s = await Subscriber.connect(n.port);
      await s.command('sub:room');
      subs.push(s);
    }
    await until(() => nodes.every((n) => synced(n, 2) && n.mesh.links().every((l) => l.interestTopics === 1)), 5000, 'links synced with interest');
    const N = 300;
    // Interleaved, a few per tick, so batches hold publishes of one node only yet ticks mix nodes.
    for (let i = 0; i < N; i++) {
      for (const n of nodes) n.server.publish('room', `${n.id}:${i}`);
      if (i % 50 === 49) await sleep(1);
    }
    await until(() => subs.every((s) => s.received.length >= 3 * N), 10_000, `${3 * N} messages at every subscriber`);
    await sleep(100); // a duplicate would arrive now
    for (const [k, s] of subs.entries()) {
      assert.is(s.received.length, 3 * N, `subscriber on ${nodes[k]!.id}: exactly ${3 * N} messages`);
      const next = new Map<string, number>();
      for (const m of s.received) {
        const [from, seq] = m.split(':');
        const want = next.get(from!) ?? 0;
        assert.is(Number(seq), want, `subscriber on ${nodes[k]!.id}: ${from}'s messages in order, once`);
        next.set(from!, want + 1);
      }
      assert.equal([...next.values()], [N, N, N]);
    }
    for (const n of nodes) {
      const st = n.mesh.stats;
      assert.is(st.messagesSent, 2 * N, `${n.id} sent each publish once per peer`);
      assert.is(st.messagesReceived, 2 * N, `${n.id} received each peer's publishes once`);
      assert.is(st.dropped, 0);
      assert.is(st.linksUp, 2);
      assert.is(st.inboundLinks, 2);
      assert.is(st.protocolErrors, 0);
      // A received message is fanned out locally and never goes back on the bus.
      assert.is(n.server.pubsub.published, 3 * N);
    }
  } finally {
    for (const s of subs) await s.close();
    for (const n of nodes) await stopMeshNode(n);
  }
});

test('interest: a node without subscribers for a topic receives nothing for it; it does once one subscribes, and stops after', async () => {
  const nodes = [await startMeshNode('a'), await startMeshNode('b'), await startMeshNode('c')];
  const [a, b, c] = nodes as [MeshNode, MeshNode, MeshNode];
  const subs: Subscriber[] = [];
  try {
    linkAll(nodes);
    const sb = await Subscriber.connect(b.port);
    await sb.command('sub:t');
    const sc = await Subscriber.connect(c.port);
    await sc.command('sub:other'); // c has interest, but not in t
    subs.push(sb, sc);
    await until(() => interestOf(a, b) === 1 && interestOf(a, c) === 1 && synced(a, 2), 5000, 'a knows the interest of b and c');
    for (let i = 0; i < 50; i++) a.server.publish('t', `x${i}`);
    await until(() => sb.received.length === 50, 5000, 'b gets 50');
    await sleep(100);
    assert.is(c.mesh.stats.messagesReceived, 0, 'c received nothing for t');
    assert.is(c.mesh.stats.bytesReceived, 0);
    assert.is(a.mesh.stats.filtered, 50, 'a filtered every message for c');
    assert.is(a.mesh.stats.messagesSent, 50, 'and sent each to b only');
    assert.is(sc.received.length, 0);

    await sc.command('sub:t');
    await until(() => interestOf(a, c) === 2, 5000, 'a learns that c subscribed to t');
    a.server.publish('t', 'after-sub');
    await until(() => sc.received.length === 1, 5000, 'c gets the message');
    assert.is(sc.received[0], 'after-sub');
    assert.is(c.mesh.stats.messagesReceived, 1);

    await sc.command('unsub:t');
    await until(() => interestOf(a, c) === 1, 5000, 'a learns that c left t');
    a.server.publish('t', 'after-unsub');
    await until(() => sb.received.length === 52, 5000, 'b gets it');
    await sleep(100);
    assert.is(c.mesh.stats.messagesReceived, 1, 'nothing more reached c');
    // A subscriber that closes takes its interest with it.
    await sb.close();
    await until(() => interestOf(a, b) === 0 && interestOf(c, b) === 0, 5000, 'b advertises nothing once its only subscriber is gone');
    assert.equal(b.mesh.advertisedTopics(), []);
  } finally {
    for (const s of subs) await s.close();
    for (const n of nodes) await stopMeshNode(n);
  }
});

test('a peer that restarts is redialled with backoff and delivery resumes both ways', async () => {
  const a = await startMeshNode('a', { limits: { reconnectMinMs: 50, reconnectMaxMs: 400 } });
  let b = await startMeshNode('b');
  const subs: Subscriber[] = [];
  try {
    linkAll([a, b]);
    const sa = await Subscriber.connect(a.port);
    await sa.command('sub:r');
    subs.push(sa);
    let sb = await Subscriber.connect(b.port);
    await sb.command('sub:r');
    await until(() => synced(a, 1) && synced(b, 1) && interestOf(a, b) === 1 && interestOf(b, a) === 1, 5000, 'linked');
    a.server.publish('r', 'before');
    await until(() => sb.received.length === 1, 5000, 'b gets the first message');
    await sb.close();

    // b goes away; a keeps it as a member (it is only restarting) and keeps redialling.
    const port = b.meshPort;
    await stopMeshNode(b);
    await until(() => a.mesh.links()[0]!.state !== 'synced', 5000, 'a sees the link drop');
    assert.is(a.mesh.stats.linksUp, 0);
    a.server.publish('r', 'while-down'); // no link: not sent, counted
    assert.ok(a.mesh.stats.noLink >= 1);
    await sleep(300); // a few failed dials
    assert.ok(a.mesh.stats.dialFailures >= 1, `dial failures counted (${a.mesh.stats.dialFailures})`);

    b = await startMeshNode('b', { meshPort: port });
    b.membership.set([{ id: 'a', url: meshUrl(a) }]);
    b.mesh.start();
    sb = await Subscriber.connect(b.port);
    subs.push(sb);
    await sb.command('sub:r');
    await until(() => synced(a, 1) && interestOf(a, b) === 1 && synced(b, 1), 5000, 'a redialled b');
    assert.is(a.mesh.stats.reconnects, 1);
    assert.ok(a.logs.some((l) => l.includes('link to b lost')), 'the drop was logged');
    assert.ok(a.logs.some((l) => l.includes('link to b re-established')), 'the reconnect was logged');
    a.server.publish('r', 'after-a');
    b.server.publish('r', 'after-b');
    await until(() => sb.received.includes('after-a') && sa.received.includes('after-b'), 5000, 'delivery both ways');
    assert.not.ok(sb.received.includes('while-down'));
  } finally {
    for (const s of subs) await s.close();
    await stopMeshNode(a);
    await stopMeshNode(b);
  }
});

test('gossip membership: links follow the live members advertising {"http":"host:port"}; a member that leaves has its links closed', async () => {
  const gossips: GossipNode[] = [];
  const meshes: MeshBus[] = [];
  const servers: Server[] = [];
  const subs: Subscriber[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const g = new GossipNode({ name: `g${i}`, keys: [KEY_A], config: FAST_LOCAL_CONFIG });
      // Shares the keyring with gossip: one rotation covers both.
      const mesh = new MeshBus({ membership: gossipMembership(g), keys: g.keyring, log: () => {} });
      const server = busServer(mesh);
      await server.listen(0, '127.0.0.1');
      const meshPort = (await mesh.listen(0, '127.0.0.1')).port;
      await g.start();
      g.setMeta(Buffer.from(JSON.stringify({ http: `127.0.0.1:${meshPort}` })));
      gossips.push(g);
      meshes.push(mesh);
      servers.push(server);
    }
    for (const m of meshes) m.start();
    for (let i = 1; i < 3; i++) await gossips[i]!.join([gossips[0]!.address]);
    for (const s of servers) {
      const sub = await Subscriber.connect(s.address()!.port);
      await sub.command('sub:g');
      subs.push(sub);
    }
    await until(() => meshes.every((m) => m.stats.linksUp === 2 && m.links().every((l) => l.interestTopics === 1)), 10_000, 'every mesh linked to both others');
    servers[0]!.publish('g', 'hello');
    await until(() => subs[1]!.received.length === 1 && subs[2]!.received.length === 1, 5000, 'delivered over gossip-found links');

    await gossips[2]!.leave();
    await until(() => meshes[0]!.links().length === 1 && meshes[1]!.links().length === 1, 5000, 'g2 dropped from the others');
    await until(() => !meshes[0]!.inboundPeers().includes('g2') && !meshes[1]!.inboundPeers().includes('g2'), 5000, "g2's inbound links closed");
    assert.is(meshes[0]!.stats.linksUp, 1);
    servers[0]!.publish('g', 'after-leave');
    await until(() => subs[1]!.received.length === 2, 5000, 'g1 still gets messages');
    await sleep(100);
    assert.is(subs[2]!.received.length, 1, 'g2 is out of the mesh');
  } finally {
    for (const s of subs) await s.close();
    for (const m of meshes) await m.close();
    for (const s of servers) await s.close(1000);
    for (const g of gossips) await g.stop();
  }
});

test('a peer declared dead whose link still answers keeps it (no message lost to a false suspicion); once it closes, no redial', async () => {
  const nodes = [await startMeshNode('a'), await startMeshNode('b')];
  const [a, b] = nodes as [MeshNode, MeshNode];
  const sub = await Subscriber.connect(b.port);
  try {
    linkAll(nodes);
    await sub.command('sub:t');
    await until(() => interestOf(a, b) === 1, 5000, 'a knows b wants t');
    // Failure detection gives up on b (it did not leave): a's membership drops it without "departed".
    let departed = false;
    (a.membership as unknown as { departed: (id: string) => boolean }).departed = () => departed;
    a.membership.set([]);
    assert.is(a.mesh.links().length, 1, 'the answering link stays');
    a.server.publish('t', 'during-suspicion');
    await until(() => sub.received.length === 1, 5000, 'delivered over the kept link');
    // The link then closes (b goes away): a forgets b and does not redial it.
    await stopMeshNode(b);
    await until(() => a.mesh.links().length === 0, 5000, 'the orphan link is forgotten when it closes');
    const dials = a.mesh.stats.dialFailures;
    await sleep(400);
    assert.is(a.mesh.stats.dialFailures, dials, 'no redial of a peer out of the membership');
    // A departed peer's links close at once.
    const c = await startMeshNode('c');
    nodes.push(c);
    a.membership.set([{ id: 'c', url: meshUrl(c) }]);
    c.membership.set([{ id: 'a', url: meshUrl(a) }]);
    c.mesh.start();
    await until(() => synced(a, 1) && c.mesh.inboundPeers().includes('a'), 5000, 'a linked to c');
    departed = true;
    a.membership.set([]);
    assert.is(a.mesh.links().length, 0, 'a departed peer is dropped at once');
  } finally {
    await sub.close();
    for (const n of nodes) if (n !== b) await stopMeshNode(n);
  }
});

test('member metadata: the http address is read from UTF-8 JSON, anything else is ignored', () => {
  const meta = (s: string) => Buffer.from(s);
  assert.is(httpAddressFromMeta(meta('{"http":"10.0.0.1:8080"}')), '10.0.0.1:8080');
  assert.is(httpAddressFromMeta(meta('{"http":"[::1]:8080","x":1}')), '[::1]:8080');
  assert.is(httpAddressFromMeta(meta('')), null);
  assert.is(httpAddressFromMeta(meta('not json')), null);
  assert.is(httpAddressFromMeta(meta('{"http":8080}')), null);
  assert.is(httpAddressFromMeta(meta('{"http":"no-port"}')), null);
  assert.is(httpAddressFromMeta(meta('["http"]')), null);
  assert.is(httpAddressFromMeta(Buffer.from([0xff, 0xfe])), null);
  assert.is(linkUrl('10.0.0.1:8080'), 'ws://10.0.0.1:8080/cluster/bus');
  assert.is(linkUrl('[::1]:8080', '/bus', true), 'wss://[::1]:8080/bus');
});

test.run();
