// Mesh links under attack and under load: authentication (missing, malformed, wrong key,
// replayed, stale, misaddressed; rotation), a peer that stops reading (bounded, counted),
// hostile bytes on either side of a link (closed, counted, never a crash).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RawClient, upgradeRequest, clientFrame } from '../helpers/net.js';
import { LinkAuth } from '../../src/cluster/bus/auth.js';
import { LinkRecord, SYNCED_RECORD, encodeHello, encodeInterest, encodePublish } from '../../src/cluster/bus/mesh-wire.js';
import { KEY_A, KEY_B, KEY_C, Subscriber, fakeAcceptor, linkAll, meshUrl, serverFrame, sleep, startMeshNode, stopMeshNode, until } from './bus-helpers.js';
import type { FakeLink, MeshNode } from './bus-helpers.js';

const PROTOCOL = { 'Sec-WebSocket-Protocol': 'murmur-bus.1' };
/** The client's answer to the server's close frame, after which the server closes TCP. */
const CLOSE_REPLY = clientFrame(8, Buffer.from([0x03, 0xea]));

/** Sends a link request to `node` with `headers`; returns the status line's code and the client. */
async function request(node: MeshNode, headers: Record<string, string>, path = '/cluster/bus'): Promise<{ status: number; client: RawClient }> {
  const client = await RawClient.connect(node.meshPort);
  client.write(upgradeRequest({ path, headers }));
  const head = await client.readHead();
  return { status: Number(head.split(' ')[1]), client };
}

async function status(node: MeshNode, headers: Record<string, string>, path?: string): Promise<number> {
  const r = await request(node, headers, path);
  r.client.destroy();
  return r.status;
}

test('auth: requests without, or with wrong, stale, replayed or misaddressed credentials are refused and counted', async () => {
  const a = await startMeshNode('a');
  try {
    const good = new LinkAuth([KEY_A]);
    const st = a.mesh.stats;
    assert.is(await status(a, { ...PROTOCOL }), 401, 'no credentials');
    assert.is(await status(a, { ...PROTOCOL, 'Murmur-Bus-Auth': '1.x.y' }), 401, 'malformed');
    assert.is(await status(a, { ...PROTOCOL, 'Murmur-Bus-Auth': good.sign('x', 'a').header.replace(/\.[^.]+$/, '.AAAA') }), 401, 'a MAC of the wrong size');
    assert.is(await status(a, { ...PROTOCOL, 'Murmur-Bus-Auth': new LinkAuth([KEY_B]).sign('x', 'a').header }), 403, 'another key');
    assert.is(await status(a, { ...PROTOCOL, 'Murmur-Bus-Auth': new LinkAuth([KEY_A], { label: 'other' }).sign('x', 'a').header }), 403, 'another cluster label');
    assert.is(await status(a, { ...PROTOCOL, 'Murmur-Bus-Auth': good.sign('x', 'b').header }), 403, 'addressed to another node');
    assert.is(await status(a, { ...PROTOCOL, 'Murmur-Bus-Auth': good.sign('a', 'a').header }), 403, 'claims to be the acceptor itself');
    const old = new LinkAuth([KEY_A], { now: () => Date.now() - 60_000 });
    assert.is(await status(a, { ...PROTOCOL, 'Murmur-Bus-Auth': old.sign('x', 'a').header }), 403, 'outside the replay window');
    const captured = good.sign('x', 'a').header;
    const first = await request(a, { ...PROTOCOL, 'Murmur-Bus-Auth': captured });
    assert.is(first.status, 101, 'the genuine request opens a link');
    first.client.destroy();
    assert.is(await status(a, { ...PROTOCOL, 'Murmur-Bus-Auth': captured }), 403, 'the same request replayed');
    assert.is(await status(a, { 'Murmur-Bus-Auth': good.sign('x', 'a').header }), 400, 'without the subprotocol');
    assert.is(await status(a, { ...PROTOCOL, 'Murmur-Bus-Auth': good.sign('x', 'a').header }, '/elsewhere'), 404, 'another path');
    assert.equal(st.authFailuresByReason, { missing: 1, malformed: 2, 'wrong-node': 2, stale: 1, invalid: 2, replay: 1, busy: 0 });
    assert.is(st.authFailures, 9);
  } finally {
    await stopMeshNode(a);
  }
});

test('a link request head over maxRequestHeadBytes is refused (431) before its credentials are read', async () => {
  const a = await startMeshNode('a');
  try {
    const good = new LinkAuth([KEY_A]);
    assert.is(await status(a, { ...PROTOCOL, 'X-Pad': 'p'.repeat(5000), 'Murmur-Bus-Auth': good.sign('x', 'a').header }), 431);
    assert.is(a.mesh.stats.authFailures, 0);
    const ok = await request(a, { ...PROTOCOL, 'X-Pad': 'p'.repeat(1000), 'Murmur-Bus-Auth': good.sign('x', 'a').header });
    assert.is(ok.status, 101, 'a request with room to spare links');
    ok.client.destroy();
  } finally {
    await stopMeshNode(a);
  }
});

test('auth: a node with another key never links (refused, counted on both sides); rotated keys link', async () => {
  const a = await startMeshNode('a', { keys: [KEY_A, KEY_C] });
  const d = await startMeshNode('d', { keys: [KEY_B] });
  // Mid-rotation: e already sends with the new key, a still with the old one; both hold both.
  const e = await startMeshNode('e', { keys: [KEY_C, KEY_A] });
  try {
    linkAll([a, d, e]);
    await until(() => a.mesh.stats.authFailures >= 1 && d.mesh.stats.authRefused >= 1, 5000, 'd refused by a and a by d');
    await until(() => a.mesh.links().find((l) => l.id === 'e')?.state === 'synced' && e.mesh.links().find((l) => l.id === 'a')?.state === 'synced', 5000, 'a and e linked');
    await sleep(300);
    assert.is(d.mesh.stats.linksUp, 0, 'd has no link');
    assert.ok(!a.mesh.inboundPeers().includes('d'));
    assert.ok(a.mesh.stats.authFailuresByReason.invalid >= 1);
    assert.ok(d.logs.some((l) => l.includes('refused our link (403)')), d.logs.join('\n'));
    assert.ok(a.mesh.stats.authRefused >= 1, 'a was refused by d too');
  } finally {
    for (const n of [a, d, e]) await stopMeshNode(n);
  }
});

test('nonces: only authenticated requests are remembered, and at most maxNonces of them (then busy)', () => {
  let now = 1_000_000;
  const auth = new LinkAuth([KEY_A], { maxNonces: 2, replayWindowMs: 1000, now: () => now });
  const dialer = new LinkAuth([KEY_A], { now: () => now });
  const bad = new LinkAuth([KEY_B], { now: () => now });
  for (let i = 0; i < 5; i++) assert.equal(auth.verify(bad.sign('x', 'a').header, 'a'), { ok: false, reason: 'invalid' });
  assert.ok(auth.verify(dialer.sign('x', 'a').header, 'a').ok);
  assert.ok(auth.verify(dialer.sign('y', 'a').header, 'a').ok);
  assert.equal(auth.verify(dialer.sign('z', 'a').header, 'a'), { ok: false, reason: 'busy' });
  now += 1001; // the first two can no longer pass the window check: forgotten
  assert.ok(auth.verify(dialer.sign('z', 'a').header, 'a').ok);
});

test('a peer that stops reading: the link holds at most its byte budget, the rest is dropped and counted', async () => {
  const budget = 256 * 1024;
  const slow = await fakeAcceptor('slow', [KEY_A], (l: FakeLink) => {
    l.socket.write(
      Buffer.concat([
        serverFrame(encodeHello(l.auth.acceptProof(l.keyIndex, 'slow', l.from, l.nonce))),
        serverFrame(encodeInterest(LinkRecord.InterestAdd, ['big'], 65536)[0]!),
        serverFrame(SYNCED_RECORD),
      ]),
    );
    l.socket.pause(); // and never reads again: the kernel's buffers fill, then ours
  });
  const a = await startMeshNode('a', { limits: { maxLinkBufferBytes: budget } });
  try {
    a.membership.set([{ id: 'slow', url: `ws://127.0.0.1:${slow.port}/cluster/bus` }]);
    a.mesh.start();
    await until(() => a.mesh.stats.linksUp === 1, 5000, 'linked to the slow peer');
    const payload = Buffer.alloc(64 * 1024, 0x61);
    const total = 600; // ~38 MiB: far beyond what loopback's socket buffers hold
    let maxBuffered = 0;
    for (let i = 0; i < total; i++) {
      a.server.publish('big', payload);
      if (i % 4 === 3) {
        await sleep(1);
        maxBuffered = Math.max(maxBuffered, a.mesh.links()[0]!.bufferedBytes);
      }
    }
    await sleep(20);
    const st = a.mesh.stats;
    assert.ok(st.dropped > 0, 'publishes dropped');
    assert.is(st.messagesSent + st.dropped, total, 'every publish either went to the link or was counted as dropped');
    assert.ok(st.droppedBytes >= st.dropped * payload.length);
    assert.ok(maxBuffered <= budget + 64, `the link held ${maxBuffered} bytes, budget ${budget}`);
    assert.is(st.linksUp, 1, 'dropping does not close the link');
  } finally {
    await stopMeshNode(a);
    await slow.close();
  }
});

test('hostile bytes on an inbound link close that link with the right code; the node keeps serving', async () => {
  const a = await startMeshNode('a');
  const b = await startMeshNode('b');
  const subs: Subscriber[] = [];
  try {
    linkAll([a, b]);
    const sa = await Subscriber.connect(a.port);
    await sa.command('sub:t');
    subs.push(sa);
    await until(() => b.mesh.links()[0]?.interestTopics === 1, 5000, 'b knows a wants t');
    const dialer = new LinkAuth([KEY_A]);
    const open = async (): Promise<RawClient> => {
      const r = await request(a, { ...PROTOCOL, 'Murmur-Bus-Auth': dialer.sign('evil', 'a').header });
      assert.is(r.status, 101);
      return r.client;
    };
    const pub = (topic: Buffer, data: Buffer, type = LinkRecord.Publish, flags = 0): Buffer => {
      const rec = Buffer.alloc(8 + topic.length + data.length);
      rec[0] = type;
      rec[1] = flags;
      rec.writeUInt16BE(topic.length, 2);
      topic.copy(rec, 4);
      rec.writeUInt32BE(data.length, 4 + topic.length);
      data.copy(rec, 8 + topic.length);
      return rec;
    };
    const cases: Array<[string, Buffer, number]> = [
      ['an unknown record type', clientFrame(2, Buffer.from([0x99, 1, 2, 3])), 1002],
      ['an interest record from a dialer', clientFrame(2, encodeInterest(LinkRecord.InterestAdd, ['t'], 1000)[0]!), 1002],
      ['a text message', clientFrame(1, 'hello'), 1002],
      ['an empty message', clientFrame(2, Buffer.alloc(0)), 1002],
      ['a truncated publish', clientFrame(2, pub(Buffer.from('t'), Buffer.from('data')).subarray(0, 10)), 1002],
      ['a publish whose data length runs past the message', clientFrame(2, Buffer.concat([pub(Buffer.from('t'), Buffer.alloc(0)).subarray(0, 5), Buffer.from([0xff, 0xff, 0xff, 0xff])])), 1002],
      ['an empty topic', clientFrame(2, pub(Buffer.alloc(0), Buffer.from('x'))), 1002],
      ['a topic over maxTopicBytes', clientFrame(2, pub(Buffer.alloc(2000, 0x61), Buffer.from('x'))), 1002],
      ['a topic that is not UTF-8', clientFrame(2, pub(Buffer.from([0xc3, 0x28]), Buffer.from('x'))), 1002],
      ['unknown flags', clientFrame(2, pub(Buffer.from('t'), Buffer.from('x'), LinkRecord.Publish, 0x80)), 1002],
      ['an unmasked frame', clientFrame(2, pub(Buffer.from('t'), Buffer.from('x')), { mask: false }), 1002],
    ];
    let errors = a.mesh.stats.protocolErrors;
    for (const [what, bytes, code] of cases) {
      const c = await open();
      c.write(bytes);
      assert.is(await c.readClose(), code, what);
      c.write(CLOSE_REPLY);
      await c.waitClosed();
      assert.is(a.mesh.stats.protocolErrors, ++errors, `${what}: counted`);
    }
    // A frame header announcing 1 TiB: refused from the header (1009), nothing buffered.
    const big = await open();
    const head = Buffer.from([0x82, 0xff, 0, 0, 0x01, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    big.write(head);
    assert.is(await big.readClose(), 1009, 'oversized message');
    await big.waitClosed(); // a protocol error ends TCP at once
    assert.is(a.mesh.stats.protocolErrors, ++errors);
    // Valid records before a bad one in the same message are delivered; the rest is not.
    const mixed = await open();
    mixed.write(clientFrame(2, Buffer.concat([pub(Buffer.from('t'), Buffer.from('valid')), Buffer.from([0x42])])));
    assert.is(await mixed.readClose(), 1002);
    await until(() => sa.received.includes('valid'), 5000, 'the valid record before the garbage');
    // Not HTTP at all.
    const junk = await RawClient.connect(a.meshPort);
    junk.write('\x16\x03\x01 not http at all\r\n\r\n');
    const r = await junk.readHead();
    assert.ok(r.startsWith('HTTP/1.1 400'), r);
    junk.destroy();
    // The real link was never disturbed.
    b.server.publish('t', 'still-works');
    await until(() => sa.received.includes('still-works'), 5000, 'b -> a still delivers');
    assert.is(b.mesh.stats.linksUp, 1);
  } finally {
    for (const s of subs) await s.close();
    await stopMeshNode(a);
    await stopMeshNode(b);
  }
});

test('hostile bytes from an acceptor fail the outbound link (counted) and it is redialled; never a crash', async () => {
  const behaviours: Array<[string, (l: FakeLink) => void]> = [
    ['a wrong proof', (l) => l.socket.write(serverFrame(encodeHello(Buffer.alloc(32, 7))))],
    ['interest before the proof', (l) => l.socket.write(serverFrame(encodeInterest(LinkRecord.InterestAdd, ['t'], 1000)[0]!))],
    ['a publish record from an acceptor', (l) => l.socket.write(Buffer.concat([serverFrame(encodeHello(l.auth.acceptProof(l.keyIndex, 'x', l.from, l.nonce))), serverFrame(encodePublish('t', 1, Buffer.from('x'), false))]))],
    ['a text message', (l) => l.socket.write(serverFrame(Buffer.from('hi'), 1))],
    ['a message over maxInboundInterestBytes', (l) => l.socket.write(serverFrame(Buffer.alloc(70_000)))],
    ['garbage instead of frames', (l) => l.socket.write(Buffer.from([0x8f, 0x8f, 0x8f, 0x8f, 1, 2, 3]))],
  ];
  for (const [what, behave] of behaviours) {
    let accepted = 0;
    const peer = await fakeAcceptor('x', [KEY_A], (l) => {
      accepted++;
      behave(l);
    });
    const a = await startMeshNode('a', { limits: { maxInboundInterestBytes: 64 * 1024, reconnectMinMs: 20, reconnectMaxMs: 50 } });
    try {
      a.membership.set([{ id: 'x', url: `ws://127.0.0.1:${peer.port}/cluster/bus` }]);
      a.mesh.start();
      await until(() => accepted >= 2, 5000, `${what}: the link is redialled after failing`);
      const st = a.mesh.stats;
      assert.ok(st.protocolErrors + st.peerAuthFailures >= 1, `${what}: counted (${st.protocolErrors} protocol errors, ${st.peerAuthFailures} proof failures)`);
      assert.is(st.linksUp, 0, `${what}: never synced`);
      if (what === 'a wrong proof') assert.ok(st.peerAuthFailures >= 1);
    } finally {
      await stopMeshNode(a);
      await peer.close();
    }
  }
});

test('an acceptor that proves the key and answers, but never sends its interest, is dropped after three heartbeats and redialled (it holds no dial slot for good)', async () => {
  let accepted = 0;
  const timers = new Set<NodeJS.Timeout>();
  const peer = await fakeAcceptor('x', [KEY_A], (l) => {
    accepted++;
    l.socket.write(serverFrame(encodeHello(l.auth.acceptProof(l.keyIndex, 'x', l.from, l.nonce))));
    // Alive on the wire (a pong every 50 ms), never synced.
    const t = setInterval(() => l.socket.writable && l.socket.write(serverFrame(Buffer.alloc(0), 0xa)), 50);
    timers.add(t);
    l.socket.on('close', () => clearInterval(t));
  });
  const a = await startMeshNode('a', { limits: { heartbeatMs: 100, reconnectMinMs: 20, reconnectMaxMs: 50 } });
  try {
    a.membership.set([{ id: 'x', url: `ws://127.0.0.1:${peer.port}/cluster/bus` }]);
    a.mesh.start();
    await until(() => accepted >= 2, 5000, 'the unsynced link dropped and redialled');
    assert.is(a.mesh.stats.linksUp, 0);
  } finally {
    for (const t of timers) clearInterval(t);
    await stopMeshNode(a);
    await peer.close();
  }
});

test('a publish larger than maxPublishBytes stays local and is counted', async () => {
  const a = await startMeshNode('a', { limits: { maxPublishBytes: 1000 } });
  const b = await startMeshNode('b');
  const subs: Subscriber[] = [];
  try {
    linkAll([a, b]);
    const sb = await Subscriber.connect(b.port);
    await sb.command('sub:t');
    subs.push(sb);
    await until(() => a.mesh.links()[0]?.interestTopics === 1, 5000, 'a knows b wants t');
    a.server.publish('t', Buffer.alloc(1001));
    a.server.publish('t', 'small');
    await until(() => sb.received.length === 1, 5000, 'the small one arrives');
    assert.is(a.mesh.stats.oversized, 1);
    assert.is(sb.received[0], 'small');
    assert.ok(meshUrl(a).endsWith('/cluster/bus'));
  } finally {
    for (const s of subs) await s.close();
    await stopMeshNode(a);
    await stopMeshNode(b);
  }
});


test('a synced link that closes without a close frame is reported to the failure detector; a goodbye is not', async () => {
  for (const crash of [true, false]) {
    const peer = await fakeAcceptor('x', [KEY_A], (l) => {
      l.socket.write(Buffer.concat([serverFrame(encodeHello(l.auth.acceptProof(l.keyIndex, 'x', l.from, l.nonce))), serverFrame(SYNCED_RECORD)]));
    });
    const a = await startMeshNode('a', { limits: { reconnectMinMs: 5_000, reconnectMaxMs: 5_000 } });
    const lost: string[] = [];
    Object.assign(a.membership, { linkLost: (id: string) => lost.push(id) });
    try {
      a.membership.set([{ id: 'x', url: `ws://127.0.0.1:${peer.port}/cluster/bus` }]);
      a.mesh.start();
      await until(() => a.mesh.stats.linksUp === 1, 5000, 'the link synced');
      for (const s of peer.sockets) {
        // A killed process: its kernel closes the TCP connection, no close frame. A graceful
        // stop sends one (1001 going away) first.
        if (crash) s.destroy();
        else s.end(serverFrame(Buffer.from([0x03, 0xe9]), 8));
      }
      await until(() => a.mesh.stats.linksUp === 0 && a.mesh.links()[0]?.state === 'backoff', 5000, 'the link closed');
      assert.equal(lost, crash ? ['x'] : [], crash ? 'a crash is evidence' : 'a goodbye is not');
      assert.is(a.mesh.stats.linksLost, crash ? 1 : 0);
    } finally {
      await stopMeshNode(a);
      await peer.close();
    }
  }
});

test.run();
