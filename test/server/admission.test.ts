import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { Server, serverCore } from '../../src/server/server.js';
import { Admission } from '../../src/server/admission.js';
import type { ServerOptions } from '../../src/server/options.js';
import type { Connection } from '../../src/server/connection.js';
import { startServer } from '../helpers/server.js';
import { upgradeRequest, until, delay } from '../helpers/net.js';

// Limits that act when a socket is accepted: handshakes in flight (in all and per address) and
// sockets per address. A refused socket gets a best-effort status line and is closed at once.

/** Opens a TCP connection from `from` (a loopback address) that sends nothing. */
function halfOpen(port: number, from: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** What a socket that sends nothing is told: the status code of a response, or 'held' (nothing yet), or 'closed' (no response). */
async function fate(s: Socket, waitMs: number): Promise<string> {
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString('latin1')));
  s.on('error', () => {});
  const closed = once(s, 'close').then(() => true);
  const ended = await Promise.race([closed, delay(waitMs).then(() => false)]);
  const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
  return status ?? (ended ? 'closed' : 'held');
}

async function upgradeFrom(port: number, from: string): Promise<{ client: { destroy(): void }; head: string }> {
  // RawClient cannot bind a source address: a raw upgrade over a socket bound to `from`.
  const raw = connect({ port, host: '127.0.0.1', localAddress: from });
  await once(raw, 'connect');
  raw.write(upgradeRequest());
  let head = '';
  raw.on('error', () => {});
  const done = new Promise<void>((resolve) => {
    raw.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) resolve();
    });
    raw.on('close', () => resolve());
  });
  await Promise.race([done, delay(5000)]);
  return { client: raw, head };
}

test('one address holding half-open sockets up to its limit: its extra sockets are refused 429, another address still upgrades', async () => {
  const { server, port } = await startServer({ handlers: {}, limits: { maxHandshakesPerAddress: 200 } });
  const held: Socket[] = [];
  // Bounded: 600 sockets from 127.0.0.2, three times the per-address limit.
  for (let i = 0; i < 600; i++) held.push(await halfOpen(port, '127.0.0.2'));
  await until(() => server.stats.accepted === 600, 10_000, 'every socket accepted');
  const fates = await Promise.all(held.map((s) => fate(s, 1000)));
  const count = (f: string): number => fates.filter((x) => x === f).length;
  // Counted per address from the moment 200 handshakes are in flight in all: 200 before, 200 counted.
  assert.is(count('held'), 400, 'the address keeps at most twice its limit of sockets in the handshake');
  assert.is(count('429') + count('closed'), 200, 'the rest are refused and closed at once');
  assert.ok(count('429') > 0, 'refusals say 429');
  assert.is(server.stats.rejected.ADDRESS_LIMIT, 200);
  assert.is(serverCore(server).admission.handshakes, 400);
  assert.is(serverCore(server).admission.addresses.get('127.0.0.2')?.handshakes, 200);
  const { client, head } = await upgradeFrom(port, '127.0.0.1');
  assert.match(head, /^HTTP\/1\.1 101/);
  client.destroy();
  for (const s of held) s.destroy();
  await until(() => server.socketCount === 0, 5000, 'every socket closed');
  assert.is(serverCore(server).admission.handshakes, 0);
  assert.is(serverCore(server).admission.addresses.size, 0, 'no entry left for the address');
  await server.close();
});

test('below maxHandshakesPerAddress handshakes in flight in all, no address is looked up or counted', async () => {
  const { server, port } = await startServer({ handlers: {}, limits: { maxHandshakesPerAddress: 50 } });
  const held: Socket[] = [];
  for (let i = 0; i < 49; i++) held.push(await halfOpen(port, '127.0.0.2'));
  await until(() => serverCore(server).admission.handshakes === 49);
  assert.is(serverCore(server).admission.addresses.size, 0, 'no per-address entry while fewer than the limit are in flight');
  held.push(await halfOpen(port, '127.0.0.2'), await halfOpen(port, '127.0.0.2'));
  await until(() => serverCore(server).admission.handshakes === 51);
  assert.is(serverCore(server).admission.addresses.get('127.0.0.2')?.handshakes, 1, 'counted from the limit on');
  for (const s of held) s.destroy();
  await until(() => server.socketCount === 0);
  assert.is(serverCore(server).admission.addresses.size, 0);
  await server.close();
});

test('maxHandshakes: beyond it every new socket is refused 503 until a handshake ends', async () => {
  const { server, port } = await startServer({ handlers: {}, limits: { maxHandshakes: 20 } });
  const held: Socket[] = [];
  for (let i = 0; i < 20; i++) held.push(await halfOpen(port, '127.0.0.2'));
  await until(() => serverCore(server).admission.handshakes === 20, 5000, '20 handshakes');
  const other = await halfOpen(port, '127.0.0.3');
  const f = await fate(other, 2000);
  assert.ok(f === '503' || f === 'closed', f);
  assert.is(server.stats.rejected.TOO_MANY_HANDSHAKES, 1);
  held.pop()!.destroy();
  await until(() => serverCore(server).admission.handshakes === 19, 5000, 'a slot freed');
  const { client, head } = await upgradeFrom(port, '127.0.0.3');
  assert.match(head, /^HTTP\/1\.1 101/);
  assert.is(serverCore(server).admission.handshakes, 19, 'an upgraded connection leaves the handshake count');
  client.destroy();
  for (const s of held) s.destroy();
  await until(() => server.socketCount === 0);
  assert.is(serverCore(server).admission.handshakes, 0);
  await server.close();
});

test('maxConnectionsPerAddress counts open connections; trusted addresses are exempt; slots come back on close', async () => {
  const conns: Connection[] = [];
  const options: ServerOptions = { handlers: { open: (c) => conns.push(c) }, limits: { maxConnectionsPerAddress: 3 }, trustedAddresses: ['127.0.0.4', '127.0.5.0/24'] };
  const { server, port } = await startServer(options);
  const open: Array<{ destroy(): void }> = [];
  for (let i = 0; i < 3; i++) {
    const { client, head } = await upgradeFrom(port, '127.0.0.2');
    assert.match(head, /^HTTP\/1\.1 101/);
    open.push(client);
  }
  const fourth = await upgradeFrom(port, '127.0.0.2');
  assert.ok(fourth.head === '' || /^HTTP\/1\.1 429/.test(fourth.head), fourth.head);
  assert.is(server.stats.rejected.ADDRESS_LIMIT, 1);
  for (const from of ['127.0.0.1', '127.0.0.4', '127.0.0.4', '127.0.0.4', '127.0.0.4', '127.0.5.9', '127.0.5.9', '127.0.5.9', '127.0.5.9']) {
    const { client, head } = await upgradeFrom(port, from);
    assert.match(head, /^HTTP\/1\.1 101/, from);
    open.push(client);
  }
  assert.is(serverCore(server).admission.addresses.get('127.0.0.2')?.sockets, 3);
  // An idle connection of a counted address holds the address alone in its slot (a string shared by the address's connections), a trusted one nothing.
  assert.is((conns[0] as unknown as { side: unknown }).side, '127.0.0.2');
  assert.is((conns[4] as unknown as { side: unknown }).side, null);
  assert.is(serverCore(server).admission.addresses.get('127.0.0.4'), undefined, 'trusted: not counted');
  open.shift()!.destroy();
  await until(() => serverCore(server).admission.addresses.get('127.0.0.2')?.sockets === 2, 5000, 'the slot back');
  const again = await upgradeFrom(port, '127.0.0.2');
  assert.match(again.head, /^HTTP\/1\.1 101/);
  again.client.destroy();
  fourth.client.destroy();
  for (const c of open) c.destroy();
  await until(() => server.socketCount === 0);
  assert.is(serverCore(server).admission.addresses.size, 0, 'no entry left');
  await server.close();
});

test('handleUpgrade: the per-address and handshake limits count upgrades taken from node:http', async () => {
  const server = new Server({ handlers: {}, limits: { maxConnectionsPerAddress: 1 } });
  const http = createHttpServer();
  http.on('upgrade', (req, socket, head) => server.handleUpgrade(req, socket, head));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  const first = await upgradeFrom(port, '127.0.0.2');
  assert.match(first.head, /^HTTP\/1\.1 101/);
  const second = await upgradeFrom(port, '127.0.0.2');
  assert.ok(second.head === '' || /^HTTP\/1\.1 429/.test(second.head), second.head);
  assert.is(server.stats.rejected.ADDRESS_LIMIT, 1);
  first.client.destroy();
  second.client.destroy();
  await until(() => server.socketCount === 0);
  assert.is(serverCore(server).admission.addresses.size, 0);
  await server.close();
  await new Promise<void>((resolve) => http.close(() => resolve()));
});

test('Admission: IPv4-mapped addresses are trusted as IPv4; bad trusted entries throw', () => {
  assert.is(Admission.unmapped('::ffff:10.1.2.3'), '10.1.2.3');
  assert.is(Admission.unmapped('::1'), '::1');
  const a = new Admission(['10.0.0.0/8', 'fd00::/8', '192.0.2.1']);
  assert.ok(a.isTrusted('10.200.0.1'));
  assert.ok(a.isTrusted('::ffff:10.200.0.1'));
  assert.ok(a.isTrusted('fd12::1'));
  assert.ok(a.isTrusted('192.0.2.1'));
  assert.not.ok(a.isTrusted('192.0.2.2'));
  for (const bad of ['10.0.0.0/33', 'example.com', '10.0.0.0/', '10.0.0.0/8x']) assert.throws(() => new Admission([bad]), /neither an IP address nor a CIDR block/, bad);
});

test.run();
