// `murmur serve` apps in a cluster with a bus, in one process: a message published on one
// node (by a client, in binary, or by POST /api/publish) reaches subscribers on every node
// once, wrapped in each node's own envelope (its own history position); records that do
// not decode are dropped and counted; the bus metrics; both bus transports.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { FAST_LOCAL_CONFIG } from '../../src/cluster/gossip/gossip-config.js';
import { encodeBinaryPublish } from '../../src/app/serve-protocol.js';
import { TestClient, testApp, closeAll, http, type Json } from '../app/helpers.js';
import { KEY_A, waitFor } from './helpers.js';

test.after.each(closeAll);

const open = { anonymous: { subscribe: ['*'], publish: ['*'], presence: ['*'] }, apiKey: 'k', historyTopics: ['room:*'] };
type BusKind = 'mesh' | 'redis';
const cluster = (id: string, bus: BusKind, seeds: string[], redisUrl?: string) => ({
  nodeId: id,
  port: 0,
  seeds,
  keys: [KEY_A],
  label: 'bus-test',
  gossip: FAST_LOCAL_CONFIG,
  bus,
  ...(redisUrl !== undefined ? { redisUrl } : {}),
});

async function threeNodes(bus: BusKind, redisUrl?: string) {
  const a = await testApp({ ...open, cluster: cluster('a', bus, [], redisUrl) });
  const seed = a.app.cluster!.node.address;
  const b = await testApp({ ...open, cluster: cluster('b', bus, [seed], redisUrl) });
  const c = await testApp({ ...open, cluster: cluster('c', bus, [seed], redisUrl) });
  const nodes = [a, b, c];
  assert.ok((await waitFor(() => nodes.every((x) => x.app.cluster!.members().filter((m) => m.state === 'alive').length === 3), 5000)) >= 0, 'three members');
  return nodes;
}

/** Publishes on `node` until every client got one probe (topic interest crossed the bus). */
async function settle(publisher: TestClient, clients: TestClient[], topic: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    await publisher.request({ type: 'publish', topic, data: { probe: i } });
    const ok = await Promise.all(clients.map((c) => c.next((m) => m.type === 'message' && m.topic === topic && m.data?.probe === i, 300).then(() => true, () => false)));
    if (ok.every(Boolean)) {
      for (const c of clients) c.inbox.length = 0;
      return;
    }
  }
  throw new Error('topic interest never crossed the bus');
}

async function crossNode(bus: BusKind, redisUrl?: string): Promise<void> {
  const [a, b, c] = await threeNodes(bus, redisUrl);
  const onA = await TestClient.connect(a!.ws);
  const onB = await TestClient.connect(b!.ws);
  const onC = await TestClient.connect(c!.ws);
  for (const cl of [onA, onB, onC]) await cl.request({ type: 'subscribe', topic: 'room:x' });
  await settle(onA, [onB, onC], 'room:x');
  await settle(onB, [onA, onC], 'room:x');
  await settle(onC, [onA, onB], 'room:x');
  for (const cl of [onA, onB, onC]) cl.inbox.length = 0;

  // A client's publish on a: every node delivers it once.
  const reply = await onA.request({ type: 'publish', topic: 'room:x', data: { text: 'hi' } });
  assert.is(reply.type, 'reply');
  const got = await Promise.all([onA, onB, onC].map((cl) => cl.next((m) => m.type === 'message' && m.data?.text === 'hi')));
  for (const m of got) assert.is(m.from, onA.welcome!.user);
  // Both buses order history topics cluster-wide (the mesh by the topic's owner, Redis by a
  // script): one position on every node, which the reply to the publish carries (it comes once
  // the message is held on two nodes).
  for (const m of got) assert.equal([m.epoch, m.offset], [got[0]!.epoch, got[0]!.offset]);
  assert.equal([reply.epoch, reply.offset], [got[0]!.epoch, got[0]!.offset], 'the reply carries the position');
  // A history that replays the message to a late subscriber there.
  const late = await TestClient.connect(c!.ws);
  await late.request({ type: 'subscribe', topic: 'room:x', since: { epoch: got[2]!.epoch, offset: got[2]!.offset - 1 } });
  assert.is((await late.next((m) => m.type === 'message')).data.text, 'hi');

  // A history read with a position on a node that never heard the topic (b: no subscriber to it).
  const onlyA = await TestClient.connect(a!.ws);
  await onlyA.request({ type: 'subscribe', topic: 'room:y' });
  for (let i = 1; i <= 3; i++) await onlyA.request({ type: 'publish', topic: 'room:y', data: { y: i } });
  const ys = [];
  for (let i = 0; i < 3; i++) ys.push(await onlyA.next((m) => m.type === 'message' && m.topic === 'room:y'));
  const reader = await TestClient.connect(b!.ws);
  const read = await reader.request({ type: 'history', topic: 'room:y', since: { epoch: ys[0]!.epoch, offset: ys[0]!.offset } });
  assert.is(read.recovered, true, JSON.stringify(read));
  assert.is(read.replayed, 2);
  assert.equal(read.position, { epoch: ys[2]!.epoch, offset: ys[2]!.offset });

  // POST /api/publish on b reaches a and c.
  const r = await http(`${b!.http}/api/publish`, { method: 'POST', headers: { 'X-Api-Key': 'k', 'content-type': 'application/json' }, body: JSON.stringify({ topic: 'room:x', data: { text: 'api' }, from: 'backend' }) });
  assert.is(r.status, 200, r.body);
  const apiReply = JSON.parse(r.body) as { epoch?: string; offset?: number };
  for (const cl of [onA, onB, onC]) {
    const m = await cl.next((x) => x.type === 'message' && x.data?.text === 'api');
    assert.is(m.from, 'backend');
    assert.equal([apiReply.epoch, apiReply.offset], [m.epoch, m.offset], 'POST /api/publish answers with the position too');
  }

  // Binary publish on c crosses as bytes.
  onC.send(encodeBinaryPublish({ topic: 'room:x' }, Buffer.from([0, 1, 2, 255])));
  for (const cl of [onA, onB]) {
    const m = await cl.nextBinary((h) => h.type === 'message');
    assert.equal([...m.payload], [0, 1, 2, 255]);
  }

  // Nothing arrived twice.
  await new Promise((res) => setTimeout(res, 200));
  for (const cl of [onA, onB, onC]) assert.is(cl.inbox.filter((x) => x.kind === 'json' && x.msg.type === 'message' && (x.msg.data as Json)?.text !== undefined).length, 0, 'no duplicate');

  // Deliveries of messages from other nodes count as messages sent on the node that delivers them.
  const bRt = b!.app.realtime;
  assert.ok(bRt.server.pubsub.busCounters.deliveries >= 2, 'hi from a and the bytes from c, to b\'s client');
  const sentOnB = Number(/^murmur_messages_sent_total (\d+)$/m.exec((await http(`${b!.http}/metrics`)).body)![1]);
  assert.ok(sentOnB >= bRt.counters.messagesOut + 2, `murmur_messages_sent_total on b: ${sentOnB}`);

  const metrics = (await http(`${a!.http}/metrics`)).body;
  assert.match(metrics, new RegExp(`murmur_bus_messages_total\\{transport="${bus}",direction="out"\\} [1-9]`));
  assert.match(metrics, new RegExp(`murmur_bus_messages_total\\{transport="${bus}",direction="in"\\} [1-9]`));
  assert.match(metrics, /murmur_remote_published_total [1-9]/);
  assert.match(metrics, new RegExp(`murmur_bus_records_rejected_total\\{transport="${bus}"\\} 0`));
}

test('mesh: a publish on any node reaches every node once, at one cluster-wide position', async () => {
  await crossNode('mesh');
});

test('redis: the same through redis-server', async () => {
  const bin = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => spawnSync(p, ['--version']).status === 0);
  if (bin === undefined) throw new Error('MISSING SYSTEM PACKAGE redis-server: this test needs redis-server (apt-get install redis-server)');
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const dir = mkdtempSync(join(tmpdir(), 'murmur-app-redis-'));
  const redis: ChildProcess = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  try {
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      up = await new Promise<boolean>((resolve) => {
        const s = createServer();
        s.once('error', () => resolve(true)); // taken: redis listens
        s.listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
      });
      if (!up) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(up, 'redis-server listens');
    await crossNode('redis', `redis://127.0.0.1:${port}`);
  } finally {
    await closeAll();
    redis.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
