// Gossip tells a mesh of every membership event: joins and deaths, but also every member's load
// update (once a second from each member) and passing suspicions. Only a change of the members
// moves owners; the work of an ownership change (comparing lines with new owners and new members,
// re-sending waiting forwards) is done once per change, never again on each load update: in a
// cluster of many members that work would repeat tens of times a second for every topic.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MeshBus } from '../../src/cluster/bus/mesh.js';
import { StaticMembership } from '../../src/cluster/bus/membership.js';
import type { MeshPeer } from '../../src/cluster/bus/membership.js';
import { MESH_PATH } from '../../src/cluster/bus/bus-config.js';
import { ownerAndReplica } from '../../src/cluster/bus/ordering.js';
import { FrameRecorder as Recorder } from '../helpers/recorder.js';
import { KEY_A, historyNode, sleep, until } from './bus-helpers.js';
import type { HistoryNode } from './bus-helpers.js';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

type Node = HistoryNode;
const HISTORY = { maxMessages: 100, maxBytes: 1 << 20, maxAgeMs: 0 };
const node = (id: string): Promise<Node> => historyNode(id, HISTORY);

const peersOf = (n: Node, all: Node[]): MeshPeer[] => all.filter((o) => o !== n).map((o) => ({ id: o.id, url: o.url }));

test('membership events that change no member (load updates, passing suspicions) do not repeat the work of an ownership change', async () => {
  const a = await node('A');
  const b = await node('B');
  const c = await node('C');
  const nodes = [a, b, c];
  try {
    // A topic A owns while the members are A and B, and C owns once C joins.
    let i = 0;
    while (ownerAndReplica(`room:${i}`, ['A', 'B'])[0] !== 'A' || ownerAndReplica(`room:${i}`, ['A', 'B', 'C'])[0] !== 'C') i++;
    const topic = `room:${i}`;
    a.membership.set(peersOf(a, [a, b]));
    b.membership.set(peersOf(b, [a, b]));
    for (const n of nodes) n.mesh.start();
    await until(() => [a, b].every((n) => n.mesh.links().length === 1 && n.mesh.links().every((l) => l.state === 'synced')), 5000, 'A and B linked');
    const sub = new Recorder();
    b.server.pubsub.subscribe(sub, topic);
    for (const m of ['m1', 'm2', 'm3']) a.server.publish(topic, m);
    await until(() => sub.payloads.length === 3, 5000, 'm1..m3 at B');

    // C joins: B's topic changes owner (A -> C), so B compares its last message with C's copy.
    for (const n of nodes) n.membership.set(peersOf(n, nodes));
    await until(() => nodes.every((n) => n.mesh.links().length === 2 && n.mesh.links().every((l) => l.state === 'synced')), 5000, 'all linked');
    await until(() => c.mesh.stats.fillsServed > 0, 5000, "B's comparison answered by C");
    await sleep(300);
    const served = c.mesh.stats.fillsServed;

    // Twenty events with the same members, as gossip's load updates bring them.
    for (let k = 0; k < 20; k++) {
      b.membership.set(peersOf(b, nodes));
      a.membership.set(peersOf(a, nodes));
      c.membership.set(peersOf(c, nodes));
    }
    await sleep(500);
    assert.is(c.mesh.stats.fillsServed, served, 'no comparison repeated for events that changed no member');

    // Publishing still works through the new owner, in the same line.
    a.server.publish(topic, 'm4');
    await until(() => sub.payloads.length === 4, 5000, 'm4 at B');
    assert.equal(sub.payloads, ['m1', 'm2', 'm3', 'm4']);
  } finally {
    for (const n of nodes) {
      await n.mesh.close();
      await n.server.close(1000);
    }
  }
});

test('a node that sees many peers at once dials at most maxDialsInFlight of them at a time, and every one in turn', async () => {
  // Twenty peers that accept TCP and never answer the handshake: each dial ends only at handshakeTimeoutMs.
  const open = new Set<Socket>();
  const dialled = new Set<number>();
  let most = 0;
  const servers = await Promise.all(
    Array.from({ length: 20 }, async () => {
      const srv = createNetServer((socket) => {
        open.add(socket);
        dialled.add((srv.address() as AddressInfo).port);
        most = Math.max(most, open.size);
        socket.on('error', () => {});
        socket.resume(); // reads (and drops) the request, so the client's close is seen
        socket.on('close', () => open.delete(socket));
      });
      await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
      return srv;
    }),
  );
  const membership = new StaticMembership('self');
  const mesh = new MeshBus({ membership, keys: [KEY_A], log: () => {}, limits: { maxDialsInFlight: 4, handshakeTimeoutMs: 200, reconnectMinMs: 5_000, reconnectMaxMs: 5_000 } });
  try {
    membership.set(servers.map((srv, k) => ({ id: `peer${k}`, url: `ws://127.0.0.1:${(srv.address() as AddressInfo).port}${MESH_PATH}` })));
    mesh.start();
    await until(() => dialled.size === 20, 10_000, 'every peer dialled once');
    assert.ok(most <= 4, `at most 4 handshakes at once, saw ${most}`);
    assert.ok(most >= 2, `handshakes run side by side (saw ${most})`);
  } finally {
    await mesh.close();
    for (const s of open) s.destroy();
    await Promise.all(servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
  }
});

test.run();
