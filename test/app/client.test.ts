// The browser client library (/murmur-client.js) run in Node: murmur's own WHATWG-like
// WebSocket stands in for the browser's, a Map for sessionStorage. Recovery across a server
// close, resync, backoff decisions (read from the close events, never timed), token refresh.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocket } from '../../src/client/index.js';
import { MurmurClient } from '../../src/app/public/murmur-client.js';
import type { MurmurClientOptions, MurmurMessage, StorageLike, WebSocketConstructor, WebSocketLike, CloseInfo } from '../../src/app/public/murmur-client.js';
import { mintToken } from '../../src/app/token.js';
import { testApp, cleanup, closeAll } from './helpers.js';
import { until } from '../helpers/net.js';
import { encodeBusRecord } from '../../src/pubsub/bus-record.js';
import type { OrderingHost } from '../../src/pubsub/bus.js';

const open = { anonymous: { subscribe: ['*'], publish: ['*'], presence: ['*'] } };

class MapStorage implements StorageLike {
  readonly map = new Map<string, string>();
  getItem(k: string): string | null {
    return this.map.get(k) ?? null;
  }
  setItem(k: string, v: string): void {
    this.map.set(k, v);
  }
  removeItem(k: string): void {
    this.map.delete(k);
  }
}

async function rejection(p: Promise<unknown>): Promise<{ code: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: string };
  }
  throw new Error('expected a rejection');
}

const clients: MurmurClient[] = [];
function client(url: string, o: Partial<MurmurClientOptions> = {}): MurmurClient {
  const c = new MurmurClient({ url, WebSocket: WebSocket as unknown as WebSocketConstructor, storage: new MapStorage(), ...o });
  clients.push(c);
  return c;
}

function nextEvent<T>(c: MurmurClient, type: 'open' | 'message' | 'resync' | 'close' | 'presence', pred: (ev: T) => boolean = () => true): Promise<T> {
  return new Promise((resolve) => {
    const off = c.on(type, ((ev: T) => {
      if (!pred(ev)) return;
      off();
      resolve(ev);
    }) as never);
  });
}

test('subscribe, publish JSON and bytes, presence members: the basics through the client', async () => {
  const { app, ws } = await testApp(open);
  const a = client(ws);
  const b = client(ws);
  const got: MurmurMessage[] = [];
  b.on('message', (m) => got.push(m));
  const sub = await b.subscribe('room:c', { presence: true });
  assert.is(sub.type, 'reply');
  await a.join('room:c', { name: 'A' });
  await until(() => b.members('room:c').length === 1, 5000, 'presence join');
  assert.equal(b.members('room:c')[0]!.meta, { name: 'A' });
  await a.publish('room:c', { text: 'hi' });
  await a.publish('room:c', new Uint8Array([9, 8, 7]));
  await until(() => got.length === 2, 5000, 'two messages');
  assert.equal(got[0]!.data, { text: 'hi' });
  assert.is(got[1]!.binary, true);
  assert.equal([...(got[1]!.data as Uint8Array)], [9, 8, 7]);
  assert.equal([got[0]!.offset, got[1]!.offset], [1, 2]);
  assert.equal(b.position('room:c'), { epoch: got[0]!.epoch!, offset: 2 });
  const h = await a.history('room:c', { limit: 5 });
  assert.equal(
    h.messages.map((m) => m.offset),
    [1, 2],
  );
  assert.is(typeof (await a.ping()), 'number');
  // a joined room:c; b, anonymous and in no topic, is no one's to ask about.
  assert.equal(await a.online([String(a.welcome!.user), String(b.welcome!.user), 'ghost']), { [String(a.welcome!.user)]: true, [String(b.welcome!.user)]: false, ghost: false });
  assert.is((await rejection(a.publish('$p:x', 1))).code, 'BAD_TOPIC');
  a.close();
  await until(() => b.members('room:c').length === 0, 5000, 'presence leave');
  b.close();
  await cleanup(app);
});

test('presence-batch: the client applies every change of a batch, in order, and tells each one', async () => {
  const { app, ws } = await testApp(open);
  const b = client(ws);
  const seen: string[] = [];
  b.on('presence', (ev) => seen.push(`${ev.event}:${ev.member?.conn ?? ''}`));
  await b.subscribe('room:pb', { presence: true });
  const p = app.realtime.presence;
  for (const c of ['x', 'y', 'z']) p.join('room:pb', { user: c, conn: c, meta: null, since: 1 });
  p.leave('room:pb', 'y');
  await until(() => seen.length === 5, 5000, 'four changes after the sync');
  assert.equal(seen, ['sync:', 'join:x', 'join:y', 'join:z', 'leave:y']);
  assert.equal(
    b.members('room:pb').map((m) => m.conn),
    ['x', 'z'],
  );
  b.close();
  await cleanup(app);
});

test('recovery: messages published while the client is away arrive once, in order, after it reconnects', async () => {
  const { app, ws } = await testApp(open);
  const storage = new MapStorage();
  const c = client(ws, { storage, random: () => 0, backoffBaseMs: 10 });
  const got: number[] = [];
  c.on('message', (m) => got.push(m.data as number));
  await c.subscribe('room:r');
  for (let i = 1; i <= 3; i++) app.realtime.publish('room:r', String(i), 'server');
  await until(() => got.length === 3, 5000, 'live messages');
  const closeInfo = new Promise<CloseInfo>((resolve) => {
    const off = c.on('close', (ev) => {
      off();
      // The server already closed this connection: these can only come back through recovery.
      for (let i = 4; i <= 6; i++) app.realtime.publish('room:r', String(i), 'server');
      resolve(ev);
    });
  });
  const reopened = nextEvent(c, 'open');
  app.realtime.server.forEachConnection((conn) => conn.close(1012, 'server restarting; retry-after=0'));
  const info = await closeInfo;
  assert.is(info.code, 1012);
  assert.is(info.reconnect, true);
  await reopened;
  for (let i = 7; i <= 8; i++) app.realtime.publish('room:r', String(i), 'server');
  await until(() => got.length >= 8, 5000, 'all eight');
  assert.equal(got, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.is(JSON.parse(storage.getItem('murmur:pos:room:r')!).offset, 8);
  c.close();
  await cleanup(app);
});

test('a reload (a new client on the same storage) recovers from the stored position', async () => {
  const { app, ws } = await testApp(open);
  const storage = new MapStorage();
  const first = client(ws, { storage });
  await first.subscribe('room:reload');
  app.realtime.publish('room:reload', '"a"', 'server');
  await until(() => first.position('room:reload')?.offset === 1, 5000, 'first message');
  first.close();
  app.realtime.publish('room:reload', '"b"', 'server');
  app.realtime.publish('room:reload', '"c"', 'server');
  const second = client(ws, { storage });
  const got: unknown[] = [];
  second.on('message', (m) => got.push(m.data));
  const reply = await second.subscribe('room:reload', { rewind: 50 });
  assert.is(reply.recovered, true, 'a stored position wins over rewind');
  assert.equal(got, ['b', 'c']);
  second.close();
  await cleanup(app);
});

test('resync: a stored position from another epoch emits resync and moves to the server position', async () => {
  const { app, ws } = await testApp(open);
  app.realtime.publish('room:s', '1', 'server');
  const storage = new MapStorage();
  storage.setItem('murmur:pos:room:s', JSON.stringify({ epoch: 'from-a-previous-server', offset: 7 }));
  const c = client(ws, { storage });
  const resync = nextEvent<{ topic: string; reason: string; position: { epoch: string; offset: number } }>(c, 'resync');
  await c.subscribe('room:s');
  const ev = await resync;
  assert.is(ev.topic, 'room:s');
  assert.is(ev.reason, 'epoch-changed');
  assert.is(ev.position.offset, 1);
  assert.equal(JSON.parse(storage.getItem('murmur:pos:room:s')!), ev.position);
  c.close();
  await cleanup(app);
});

test('resync: a live stream that skips (a gap the cluster could not fill) is told; the client emits resync and moves to the position before the next message', async () => {
  const { app, ws } = await testApp(open);
  app.realtime.publish('room:g', '1', 'server');
  const c = client(ws);
  const got: Array<number | undefined> = [];
  c.on('message', (m) => got.push(m.offset));
  await c.subscribe('room:g');
  // What the mesh bus does when a gap cannot be filled: the ordered message after it is applied with the skip.
  const host = (app.realtime.server.pubsub as unknown as { orderingHost(): OrderingHost }).orderingHost();
  const epoch = app.realtime.server.pubsub.position('room:g')!.epoch;
  const resync = nextEvent<{ topic: string; reason: string; position: { epoch: string; offset: number } }>(c, 'resync');
  const frame = host.frame('room:g', { epoch, offset: 5 }, encodeBusRecord('ada', '"after the gap"'))!;
  assert.is(host.apply('room:g', { epoch, offset: 5 }, frame, null, false), 'gap');
  assert.equal(await resync, { topic: 'room:g', reason: 'gap', position: { epoch, offset: 4 } });
  await until(() => got.length === 1, 5000, 'the message after the gap');
  assert.equal(got, [5]);
  assert.equal(c.position('room:g'), { epoch, offset: 5 });
  c.close();
  await cleanup(app);
});

/** A WebSocket that never touches the network: the test plays the server. */
class FakeSocket implements WebSocketLike {
  static made: FakeSocket[] = [];
  readyState = 0;
  binaryType = 'blob';
  sent: string[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.made.push(this);
  }
  send(data: string | ArrayBuffer | Uint8Array): void {
    this.sent.push(String(data));
  }
  close(): void {
    this.readyState = 3;
  }
  welcome(): void {
    this.readyState = 1;
    this.onmessage?.({ data: JSON.stringify({ type: 'welcome', conn: 'c', user: 'u' }) });
  }
  drop(code: number, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

test('onlineStatus: the reply\'s partial flag reaches the caller; online() keeps the map alone', async () => {
  FakeSocket.made = [];
  const c = new MurmurClient({ url: 'ws://fake/ws', WebSocket: FakeSocket as unknown as WebSocketConstructor, storage: null });
  await until(() => FakeSocket.made.length === 1);
  const sock = FakeSocket.made[0]!;
  sock.welcome();
  const answer = (partial: boolean | undefined): void => {
    const req = JSON.parse(sock.sent.at(-1)!) as { id: unknown; action: string; users: string[] };
    assert.is(req.action, 'online');
    assert.equal(req.users, ['a', 'b']);
    sock.onmessage?.({ data: JSON.stringify({ type: 'reply', id: req.id, online: { a: true, b: false }, ...(partial === undefined ? {} : { partial }) }) });
  };
  const status = c.onlineStatus(['a', 'b']);
  answer(true);
  assert.equal(await status, { online: { a: true, b: false }, partial: true });
  const whole = c.onlineStatus(['a', 'b']);
  answer(undefined);
  assert.equal(await whole, { online: { a: true, b: false }, partial: false });
  const map = c.online(['a', 'b']);
  answer(true);
  assert.equal(await map, { a: true, b: false });
  c.close();
});

test('backoff: full jitter doubling per attempt, retry-after hints for 1012/1013, a floor after 1008, no reconnect after 1002', async () => {
  FakeSocket.made = [];
  const closes: CloseInfo[] = [];
  const c = new MurmurClient({ url: 'ws://fake/ws', WebSocket: FakeSocket as unknown as WebSocketConstructor, storage: null, random: () => 0.5, backoffBaseMs: 4, backoffMaxMs: 20, policyDelayMs: 5000 });
  c.on('close', (ev) => closes.push(ev));
  await until(() => FakeSocket.made.length === 1);
  const sock = (i: number) => FakeSocket.made[i]!;
  sock(0).drop(1006);
  assert.is(closes.at(-1)!.delayMs, 2); // 0.5 x min(20, 4 x 2^0)
  await until(() => FakeSocket.made.length === 2);
  sock(1).drop(1006);
  assert.is(closes.at(-1)!.delayMs, 4); // 0.5 x 8
  await until(() => FakeSocket.made.length === 3);
  sock(2).drop(1006);
  assert.is(closes.at(-1)!.delayMs, 8);
  await until(() => FakeSocket.made.length === 4);
  sock(3).drop(1006);
  assert.is(closes.at(-1)!.delayMs, 10, 'capped at backoffMaxMs');
  await until(() => FakeSocket.made.length === 5);
  // A welcome resets the attempts.
  sock(4).welcome();
  assert.is(c.state, 'open');
  sock(4).drop(1006);
  assert.is(closes.at(-1)!.delayMs, 2);
  await until(() => FakeSocket.made.length === 6);
  sock(5).welcome();
  // The server's hint: between N and 2N seconds.
  sock(5).drop(1013, 'server full; retry-after=3');
  assert.is(closes.at(-1)!.delayMs, 4500);
  c.close();
  assert.is(c.state, 'closed');

  const d = new MurmurClient({ url: 'ws://fake/ws', WebSocket: FakeSocket as unknown as WebSocketConstructor, storage: null, random: () => 0.5, policyDelayMs: 5000 });
  const dCloses: CloseInfo[] = [];
  d.on('close', (ev) => dCloses.push(ev));
  FakeSocket.made.at(-1)!.welcome();
  FakeSocket.made.at(-1)!.drop(1008, 'too many errors');
  assert.is(dCloses.at(-1)!.delayMs, 5000, 'an abusive client waits at least policyDelayMs');
  d.close();

  const e = new MurmurClient({ url: 'ws://fake/ws', WebSocket: FakeSocket as unknown as WebSocketConstructor, storage: null });
  const eCloses: CloseInfo[] = [];
  e.on('close', (ev) => eCloses.push(ev));
  const before = FakeSocket.made.length;
  FakeSocket.made.at(-1)!.drop(1002);
  assert.is(eCloses.at(-1)!.reconnect, false);
  assert.is(e.state, 'closed');
  assert.is(FakeSocket.made.length, before);
});

test('requests made while connecting wait for the welcome; close() fails what is pending', async () => {
  FakeSocket.made = [];
  const c = new MurmurClient({ url: 'ws://fake/ws', WebSocket: FakeSocket as unknown as WebSocketConstructor, storage: null });
  const sub = c.subscribe('room:q');
  const ping = c.ping();
  await until(() => FakeSocket.made.length === 1);
  const s = FakeSocket.made[0]!;
  assert.equal(s.sent, []);
  s.welcome();
  const sent = s.sent.map((x) => JSON.parse(x) as { type: string; id: number });
  assert.equal(
    sent.map((x) => x.type),
    ['subscribe', 'ping'],
    'one subscribe (the restore), then the queued ping',
  );
  s.onmessage?.({ data: JSON.stringify({ type: 'reply', id: sent[0]!.id, topic: 'room:q', position: null }) });
  assert.is((await sub).topic, 'room:q');
  c.close();
  assert.is((await rejection(ping)).code, 'DISCONNECTED');
});

test('token provider: called before every connect, so a 4001 (token expired) reconnects with a fresh token', async () => {
  const secret = 'client-test-secret';
  const { app, ws } = await testApp({ secret, requireToken: true });
  let minted = 0;
  const c = client(ws, {
    random: () => 0,
    token: () => {
      minted++;
      return mintToken(secret, { user: 'ada', subscribe: ['*'], ttlSeconds: 3600 });
    },
  });
  await nextEvent(c, 'open');
  assert.is(minted, 1);
  const reopened = nextEvent(c, 'open');
  app.realtime.sweep(Date.now() + 7200_000);
  await reopened;
  assert.is(minted, 2);
  assert.is(c.welcome!.user, 'ada');
  c.close();
  await cleanup(app);
});

test.after.each(async () => {
  for (const c of clients.splice(0)) c.close();
  await closeAll();
});

test.run();
