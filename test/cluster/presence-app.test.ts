// The cluster side of the app, in one process: apps joined into a cluster on 127.0.0.1
// (members API behind the API key, 'member' events on the App, gossip and presence metrics,
// presence events reaching watchers on another node), a single-node app, and the serve
// settings for a cluster from flags, environment and config file.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FAST_LOCAL_CONFIG } from '../../src/cluster/gossip/gossip-config.js';
import type { ClusterMemberEvent } from '../../src/app/cluster.js';
import { encodeNodeMeta, httpOfMeta, parseClusterKey, checkNodeId } from '../../src/app/cluster.js';
import { resolveSettings } from '../../src/cli/args.js';
import { serveFlags, serveOptions } from '../../src/cli/serve.js';
import { ConfigError } from '../../src/app/config.js';
import { App } from '../../src/app/app.js';
import { TestClient, testApp, closeAll, http, type Json } from '../app/helpers.js';
import { KEY_A, KEY_B, waitFor } from './helpers.js';

test.after.each(closeAll);

const open = { anonymous: { subscribe: ['*'], publish: ['*'], presence: ['*'] }, apiKey: 'k' };
const cluster = (id: string, seeds: string[] = []) => ({ nodeId: id, port: 0, seeds, keys: [KEY_A], label: 'test', gossip: FAST_LOCAL_CONFIG });

test('apps in a cluster: members API behind the key, member events, metrics, presence events across nodes', async () => {
  const a = await testApp({ ...open, cluster: cluster('a') });
  const events: ClusterMemberEvent[] = [];
  a.app.on('member', (e: ClusterMemberEvent) => events.push(e));
  const gossipA = a.app.cluster!.node.address;
  const b = await testApp({ ...open, cluster: cluster('b', [gossipA]) });
  const c = await testApp({ ...open, cluster: cluster('c', [gossipA]) });
  assert.ok((await waitFor(() => [a, b, c].every((x) => x.app.cluster!.members().filter((m) => m.state === 'alive').length === 3), 3000)) >= 0);
  assert.equal(events.filter((e) => e.type === 'join').map((e) => e.member.id).sort(), ['b', 'c']);
  const joinB = events.find((e) => e.member.id === 'b')!;
  assert.is(joinB.member.http, `127.0.0.1:${b.port}`);
  assert.is(joinB.member.state, 'alive');

  assert.is((await http(`${a.http}/api/cluster/members`)).status, 401);
  const r = await http(`${a.http}/api/cluster/members`, { headers: { 'X-Api-Key': 'k' } });
  assert.is(r.status, 200);
  const body = JSON.parse(r.body) as Json;
  assert.is(body.cluster, true);
  assert.is(body.self, 'a');
  assert.equal(
    (body.members as Json[]).map((m) => [m.id, m.http, m.state]).sort(),
    [
      ['a', `127.0.0.1:${a.port}`, 'alive'],
      ['b', `127.0.0.1:${b.port}`, 'alive'],
      ['c', `127.0.0.1:${c.port}`, 'alive'],
    ],
  );

  // A watcher on c sees a's client join, update and leave; the API on b lists it.
  const watcher = await TestClient.connect(c.ws);
  await watcher.request({ type: 'presence', action: 'watch', topic: 'room:x' });
  const ada = await TestClient.connect(a.ws);
  await ada.request({ type: 'presence', action: 'join', topic: 'room:x', meta: { name: 'Ada' } });
  const j = await watcher.next((m) => m.type === 'presence');
  assert.equal([j.event, j.member.conn, j.member.meta], ['join', ada.welcome!.conn, { name: 'Ada' }]);
  // c has the entry; b gets the same delta on its own gossip round: poll (bounded) for it.
  let listed: Json = {};
  for (let i = 0; i < 60; i++) {
    listed = JSON.parse((await http(`${b.http}/api/presence?topic=room:x`, { headers: { 'X-Api-Key': 'k' } })).body) as Json;
    if (listed.count === 1) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.is(listed.count, 1);
  const online = JSON.parse((await http(`${c.http}/api/presence?user=${encodeURIComponent(ada.welcome!.user as string)}`, { headers: { 'X-Api-Key': 'k' } })).body) as Json;
  assert.is(online.online, true);
  await ada.request({ type: 'presence', action: 'join', topic: 'room:x', meta: { name: 'Ada L.' } });
  assert.is((await watcher.next((m) => m.type === 'presence')).event, 'update');
  ada.close();
  const l = await watcher.next((m) => m.type === 'presence');
  assert.equal([l.event, l.member.conn], ['leave', ada.welcome!.conn]);

  const metrics = (await http(`${a.http}/metrics`)).body;
  for (const name of [
    'murmur_cluster_members{state="alive"} 3',
    'murmur_gossip_packets_total{direction="sent"}',
    'murmur_gossip_bytes_total{direction="received"}',
    'murmur_gossip_rejected_total{reason="auth"} 0',
    'murmur_gossip_probes_total',
    'murmur_gossip_suspicions_total',
    'murmur_gossip_refutations_total',
    'murmur_cluster_presence_entries{origin="local"}',
    'murmur_cluster_presence_entries{origin="remote"}',
    'murmur_presence_deltas_total{event="sent"}',
    'murmur_presence_deltas_total{event="received"}',
    'murmur_presence_deltas_total{event="dropped"} 0',
  ]) {
    assert.ok(metrics.includes(name), `${name} in /metrics`);
  }
  assert.match(metrics, /murmur_presence_deltas_total\{event="sent"\} [1-9]/);
  // Each of the three watches the other two over liveness links.
  assert.match(metrics, /murmur_gossip_liveness_links\{direction="out"\} 2\n/);
  assert.match(metrics, /murmur_gossip_liveness_links_lost_total 0\n/);

  // Leave events on the App when a member shuts down gracefully.
  await c.app.shutdown();
  assert.ok((await waitFor(() => events.some((e) => e.type === 'leave' && e.member.id === 'c'), 2000)) >= 0);
});

test('a key of another cluster is rejected and counted; the members stay apart', async () => {
  const a = await testApp({ ...open, cluster: cluster('a2') });
  const intruder = new App({ port: 0, host: '127.0.0.1', cluster: { ...cluster('x', [a.app.cluster!.node.address]), keys: [KEY_B] } });
  await intruder.listen();
  try {
    assert.ok((await waitFor(() => a.app.cluster!.node.counters.rejectedAuth > 0, 3000)) >= 0);
    assert.equal(a.app.cluster!.members().map((m) => m.id), ['a2']);
    assert.match((await http(`${a.http}/metrics`)).body, /murmur_gossip_rejected_total\{reason="auth"\} [1-9]/);
  } finally {
    await intruder.cluster!.stop();
    await intruder.shutdown();
  }
});

test('a single-node app answers the members API with cluster: false and shows no gossip metrics', async () => {
  const a = await testApp(open);
  const r = await http(`${a.http}/api/cluster/members`, { headers: { 'X-Api-Key': 'k' } });
  assert.equal(JSON.parse(r.body), { cluster: false, self: null, members: [] });
  assert.not.match((await http(`${a.http}/metrics`)).body, /murmur_gossip_/);
  assert.is(a.app.cluster, null);
});

test('cluster settings: flags, MURMUR_* variables and the config file; keys as base64 or hex; the keyring', () => {
  const key = KEY_A.toString('base64');
  const old = KEY_B.toString('hex');
  const file = JSON.stringify({ seeds: ['10.0.0.1:7946', '10.0.0.2:7946'], 'cluster-label': 'prod', 'gossip-profile': 'local', 'gossip-probe-interval-ms': 200 });
  const s = resolveSettings(['--node-id', 'web-1', '--gossip-port', '7000', '--config', 'c.json'], serveFlags, {
    env: { MURMUR_CLUSTER_KEY: key, MURMUR_CLUSTER_KEYRING: old, MURMUR_ADVERTISE_HOST: '10.0.0.9' },
    configFlag: 'config',
    readFile: () => file,
  });
  const o = serveOptions(s.values);
  const c = o.cluster!;
  assert.is(c.nodeId, 'web-1');
  assert.is(c.port, 7000);
  assert.is(c.advertiseHost, '10.0.0.9');
  assert.equal(c.seeds, ['10.0.0.1:7946', '10.0.0.2:7946']);
  assert.is(c.label, 'prod');
  assert.equal(c.keys.map((k) => Buffer.from(k).toString('hex')), [KEY_A.toString('hex'), old]);
  assert.is(c.gossip!.probeIntervalMs, 200, 'an override beats the profile');
  assert.is(c.gossip!.gossipIntervalMs, FAST_LOCAL_CONFIG.gossipIntervalMs, 'the local profile');
  assert.is(serveOptions(resolveSettings([], serveFlags, { env: {} }).values).cluster, undefined, 'no key, no seeds: single node');
  assert.throws(() => parseClusterKey('abc'), /32 bytes/);
  assert.throws(() => parseClusterKey(Buffer.alloc(16).toString('base64')), /32 bytes/);
  assert.throws(() => checkNodeId('a b'), /node id/);
  assert.throws(() => new App({ cluster: { nodeId: 'x', keys: [KEY_A], gossip: { probeTimeoutMs: 2000, probeIntervalMs: 1000 } } }), (e: unknown) => e instanceof ConfigError);
});

test('member meta: a JSON object with the http key; other or broken meta reads as no address', () => {
  assert.is(httpOfMeta(encodeNodeMeta('10.0.0.1:8080')), '10.0.0.1:8080');
  assert.is(httpOfMeta(Buffer.from('{"http":"h:1","bus":"b:2"}')), 'h:1', 'other keys are ignored');
  assert.is(httpOfMeta(Buffer.from('ws=8080')), null);
  assert.is(httpOfMeta(Buffer.from('{"http":5}')), null);
  assert.is(httpOfMeta(new Uint8Array(0)), null);
});

test.run();
