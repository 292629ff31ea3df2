// Presence: the LocalPresence store on its own (bounds, online-anywhere, change events), then
// through the protocol: join/leave events to watchers, list, online, limits, cleanup on close.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalPresence } from '../../src/app/presence.js';
import type { OnlineResult, PresenceChange } from '../../src/app/presence.js';
import { TestClient, testApp, cleanup, closeAll } from './helpers.js';

const open = { anonymous: { subscribe: ['*'], publish: ['*'], presence: ['*'] } };
const entry = (user: string, conn: string, meta: Record<string, unknown> | null = null) => ({ user, conn, meta, since: 0 });

test('LocalPresence: join, update, leave, list, and one change event each', () => {
  const p = new LocalPresence({ maxMembers: 10, maxMetaBytes: 64, maxTopicsPerConn: 5 });
  const changes: PresenceChange[] = [];
  const stop = p.onChange((c) => changes.push(c));
  assert.is(p.join('t', entry('ada', 'c1', { name: 'Ada' })), 'joined');
  assert.is(p.join('t', entry('ada', 'c1', { name: 'Ada L.' })), 'updated');
  assert.is(p.join('t', entry('bob', 'c2')), 'joined');
  assert.equal(
    p.list('t').map((e) => [e.user, e.conn, e.meta]),
    [
      ['ada', 'c1', { name: 'Ada L.' }],
      ['bob', 'c2', null],
    ],
  );
  assert.is(p.leave('t', 'c2')?.user, 'bob');
  assert.is(p.leave('t', 'c2'), undefined);
  assert.equal(
    changes.map((c) => c.kind),
    ['join', 'update', 'join', 'leave'],
  );
  stop();
  p.leave('t', 'c1');
  assert.is(changes.length, 4, 'no events after the listener stopped');
  assert.equal(p.stats(), { topics: 0, entries: 0, users: 0 });
});

test('LocalPresence: bounds on members per topic, meta bytes and topics per connection', () => {
  const p = new LocalPresence({ maxMembers: 2, maxMetaBytes: 20, maxTopicsPerConn: 2 });
  assert.is(p.join('t', entry('a', 'c1')), 'joined');
  assert.is(p.join('t', entry('b', 'c2')), 'joined');
  assert.is(p.join('t', entry('c', 'c3')), 'full');
  assert.is(p.join('u', entry('a', 'c1', { x: 'y'.repeat(30) })), 'meta-too-large');
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.is(p.join('u', entry('a', 'c1', cyclic)), 'meta-too-large');
  assert.is(p.join('u', entry('a', 'c1')), 'joined');
  assert.is(p.join('v', entry('a', 'c1')), 'too-many-topics');
  assert.is(p.count('t'), 2);
});

test('LocalPresence: a connection in one topic, then three, then one again: the bound, leave and disconnect see every topic', () => {
  const p = new LocalPresence({ maxMembers: 10, maxMetaBytes: 64, maxTopicsPerConn: 3 });
  assert.is(p.join('t1', entry('ada', 'c1')), 'joined');
  assert.is(p.join('t2', entry('ada', 'c1')), 'joined');
  assert.is(p.join('t3', entry('ada', 'c1')), 'joined');
  assert.is(p.join('t4', entry('ada', 'c1')), 'too-many-topics');
  p.leave('t1', 'c1');
  p.leave('t3', 'c1');
  assert.is(p.join('t4', entry('ada', 'c1')), 'joined', 'two slots free again');
  p.leave('t4', 'c1');
  assert.equal(p.stats(), { topics: 1, entries: 1, users: 0 });
  p.connect('ada', 'c1');
  p.disconnect('ada', 'c1');
  assert.equal(p.stats(), { topics: 0, entries: 0, users: 0 }, 'the last topic left with the connection');
  assert.is(p.join('t1', entry('ada', 'c1')), 'joined');
  p.leave('t1', 'c1');
  assert.is(p.join('t1', entry('ada', 'c1')), 'joined', 'a single topic leaves no trace when left');
});

test('LocalPresence: online anywhere while any connection of the user is open; disconnect leaves every topic', () => {
  const p = new LocalPresence({ maxMembers: 10, maxMetaBytes: 64, maxTopicsPerConn: 5 });
  const kinds: string[] = [];
  p.onChange((c) => kinds.push(c.kind));
  p.connect('ada', 'c1');
  p.connect('ada', 'c2');
  p.join('t1', entry('ada', 'c1'));
  p.join('t2', entry('ada', 'c1'));
  assert.ok(p.isOnline('ada'));
  p.disconnect('ada', 'c1');
  assert.ok(p.isOnline('ada'), 'still online through c2');
  assert.is(p.count('t1') + p.count('t2'), 0);
  p.disconnect('ada', 'c2');
  assert.not.ok(p.isOnline('ada'));
  assert.equal(kinds, ['online', 'join', 'join', 'leave', 'leave', 'offline']);
});

test('protocol: watchers get join, update and leave events; list and the subscribe reply show members', async () => {
  const { app, ws } = await testApp(open);
  const watcher = await TestClient.connect(ws);
  const sub = await watcher.request({ type: 'subscribe', topic: 'room:p', presence: true });
  assert.equal(sub.members, []);
  const ada = await TestClient.connect(ws);
  const joined = await ada.request({ type: 'presence', action: 'join', topic: 'room:p', meta: { name: 'Ada' } });
  assert.is(joined.joined, 'joined');
  const ev = await watcher.next((m) => m.type === 'presence');
  assert.equal(ev, { type: 'presence', topic: 'room:p', event: 'join', member: { user: ada.welcome!.user, conn: ada.welcome!.conn, meta: { name: 'Ada' }, since: ev.member.since } });
  await ada.request({ type: 'presence', action: 'join', topic: 'room:p', meta: { name: 'Ada L.' } });
  const upd = await watcher.next((m) => m.type === 'presence');
  assert.is(upd.event, 'update');
  assert.equal(upd.member.meta, { name: 'Ada L.' });

  const list = await watcher.request({ type: 'presence', action: 'list', topic: 'room:p' });
  assert.equal(
    list.members.map((m: { conn: string }) => m.conn),
    [ada.welcome!.conn],
  );
  // A second watcher through the watch action gets the list in its reply.
  const w2 = await TestClient.connect(ws);
  const watch = await w2.request({ type: 'presence', action: 'watch', topic: 'room:p' });
  assert.is(watch.members.length, 1);

  const left = await ada.request({ type: 'presence', action: 'leave', topic: 'room:p' });
  assert.is(left.left, true);
  assert.is((await watcher.next((m) => m.type === 'presence')).event, 'leave');
  assert.is((await w2.next((m) => m.type === 'presence')).event, 'leave');
  assert.is((await ada.request({ type: 'presence', action: 'leave', topic: 'room:p' })).left, false);

  // unwatch stops events.
  assert.is((await w2.request({ type: 'presence', action: 'unwatch', topic: 'room:p' })).unwatched, true);
  await ada.request({ type: 'presence', action: 'join', topic: 'room:p' });
  await watcher.next((m) => m.type === 'presence');
  assert.is((await w2.request({ type: 'ping' })).type, 'reply');
  assert.not.ok(w2.inbox.some((x) => x.msg.type === 'presence'));
  await cleanup(app, watcher, ada, w2);
});

test('one presence event per watcher per change stalled the loop: a turn\'s changes reach each watcher as one presence-batch', async () => {
  const { app, ws } = await testApp(open);
  const watchers = await Promise.all(Array.from({ length: 20 }, () => TestClient.connect(ws)));
  for (const w of watchers) await w.request({ type: 'presence', action: 'watch', topic: 'room:b' });
  const before = app.realtime.counters.messagesOut;
  // 50 changes in one turn (as many joins read from many sockets in one poll would make).
  for (let i = 0; i < 50; i++) app.realtime.presence.join('room:b', { user: `u${i}`, conn: `c${i}`, meta: { i }, since: 1 });
  app.realtime.presence.leave('room:b', 'c0');
  for (const w of watchers) {
    const batch = await w.next((m) => m.type === 'presence-batch' || (m.type === 'presence' && m.batched !== true));
    assert.is(batch.type, 'presence-batch');
    assert.is(batch.topic, 'room:b');
    assert.is(batch.events.length, 51);
    assert.equal(batch.events[0], { event: 'join', member: { user: 'u0', conn: 'c0', meta: { i: 0 }, since: 1 } });
    assert.equal(batch.events[50].event, 'leave');
  }
  assert.is(app.realtime.counters.messagesOut - before, 20, 'one message per watcher, not one per watcher per change');
  // A turn with a single change still sends the single-event form.
  app.realtime.presence.join('room:b', { user: 'solo', conn: 'solo', meta: null, since: 2 });
  const one = await watchers[0]!.next((m) => m.type === 'presence-batch' || (m.type === 'presence' && m.batched !== true));
  assert.equal(one, { type: 'presence', topic: 'room:b', event: 'join', member: { user: 'solo', conn: 'solo', meta: null, since: 2 } });
  await cleanup(app, ...watchers);
});

test('protocol: entries go when the connection closes (leave events), and the user goes offline', async () => {
  const { app, ws } = await testApp(open);
  const watcher = await TestClient.connect(ws);
  await watcher.request({ type: 'presence', action: 'watch', topic: 'room:q' });
  const a = await TestClient.connect(ws);
  await a.request({ type: 'presence', action: 'join', topic: 'room:q', meta: { name: 'A' } });
  await a.request({ type: 'presence', action: 'join', topic: 'room:r' });
  await watcher.next((m) => m.type === 'presence' && m.event === 'join');
  const user = a.welcome!.user as string;
  assert.equal((await watcher.request({ type: 'presence', action: 'online', users: [user, 'nobody'] })).online, { [user]: true, nobody: false });
  a.close();
  const leave = await watcher.next((m) => m.type === 'presence');
  assert.is(leave.event, 'leave');
  assert.is(leave.member.conn, a.welcome!.conn);
  assert.equal((await watcher.request({ type: 'presence', action: 'list', topic: 'room:r' })).members, []);
  assert.equal((await watcher.request({ type: 'presence', action: 'online', users: [user] })).online, { [user]: false });
  assert.equal(app.realtime.presence.stats().entries, 0);
  await cleanup(app, watcher);
});

test('protocol: online anywhere counts every connection of a token user', async () => {
  const { mintToken } = await import('../../src/app/token.js');
  const secret = 's3cret-for-presence';
  const { app, ws } = await testApp({ secret, ...open });
  const tok = mintToken(secret, { user: 'ada', subscribe: ['*'], presence: ['*'], ttlSeconds: 60 });
  const one = await TestClient.connect(`${ws}?token=${tok}`);
  const two = await TestClient.connect(`${ws}?token=${tok}`);
  const q = await TestClient.connect(ws);
  const isOnline = async () => (await q.request({ type: 'presence', action: 'online', users: ['ada'] })).online.ada as boolean;
  assert.ok(await isOnline());
  one.close();
  await one.waitClosed();
  assert.ok(await isOnline(), 'the second connection keeps ada online');
  two.close();
  await two.waitClosed();
  // The server handles the close after the client sees it: poll through the protocol.
  let online = true;
  for (let i = 0; i < 50 && online; i++) online = await isOnline();
  assert.not.ok(online);
  await cleanup(app, q);
});

test('protocol: anonymous viewers are not online users; an anonymous member of a topic is, until it closes', async () => {
  const { app, ws } = await testApp(open);
  const viewers = await Promise.all(Array.from({ length: 20 }, () => TestClient.connect(ws)));
  assert.is(app.realtime.presence.stats().users, 0, 'anonymous connections in no topic hold no presence state');
  const [q, a] = viewers as [TestClient, TestClient];
  const user = a.welcome!.user as string;
  const isOnline = async () => (await q.request({ type: 'presence', action: 'online', users: [user] })).online[user] as boolean;
  assert.not.ok(await isOnline());
  await a.request({ type: 'presence', action: 'join', topic: 'room:o' });
  assert.ok(await isOnline(), 'online once present in a topic');
  await a.request({ type: 'presence', action: 'leave', topic: 'room:o' });
  assert.ok(await isOnline(), 'still online after leaving: until the connection closes');
  await a.request({ type: 'presence', action: 'join', topic: 'room:o' });
  assert.is(app.realtime.presence.stats().users, 1, 'a second join does not count the connection twice');
  a.close();
  await a.waitClosed();
  let online = true;
  for (let i = 0; i < 50 && online; i++) online = await isOnline();
  assert.not.ok(online);
  assert.is(app.realtime.presence.stats().users, 0);
  await cleanup(app, ...viewers);
});

test('protocol: limits: members per topic, meta bytes, topics per connection', async () => {
  const { app, ws } = await testApp({ ...open, presenceMaxMembers: 2, presenceMaxMetaBytes: 32, presenceMaxTopics: 2 });
  const cs = [await TestClient.connect(ws), await TestClient.connect(ws), await TestClient.connect(ws)];
  const [a, b, c] = cs as [TestClient, TestClient, TestClient];
  assert.is((await a.request({ type: 'presence', action: 'join', topic: 'room:x' })).type, 'reply');
  assert.is((await b.request({ type: 'presence', action: 'join', topic: 'room:x' })).type, 'reply');
  await c.expectError({ type: 'presence', action: 'join', topic: 'room:x' }, 'PRESENCE_FULL');
  await c.expectError({ type: 'presence', action: 'join', topic: 'room:y', meta: { name: 'x'.repeat(40) } }, 'META_TOO_LARGE');
  await a.request({ type: 'presence', action: 'join', topic: 'room:y' });
  await a.expectError({ type: 'presence', action: 'join', topic: 'room:z' }, 'TOO_MANY_PRESENCE_TOPICS');
  await a.expectError({ type: 'presence', action: 'online', users: Array(101).fill('u') }, 'BAD_FIELD');
  await cleanup(app, ...cs);
});

test('the HTTP presence API sees the same store', async () => {
  const { http } = await import('./helpers.js');
  const t = await testApp({ ...open, apiKey: 'k' });
  const a = await TestClient.connect(t.ws);
  await a.request({ type: 'presence', action: 'join', topic: 'room:api', meta: { name: 'A' } });
  const r = await http(`${t.http}/api/presence?topic=room:api`, { headers: { 'X-Api-Key': 'k' } });
  assert.is(r.status, 200);
  const body = JSON.parse(r.body) as { count: number; members: Array<{ meta: unknown; user: string }> };
  assert.is(body.count, 1);
  assert.equal(body.members[0]!.meta, { name: 'A' });
  const u = JSON.parse((await http(`${t.http}/api/presence?user=${encodeURIComponent(a.welcome!.user as string)}`, { headers: { 'X-Api-Key': 'k' } })).body) as { online: boolean };
  assert.is(u.online, true);
  await cleanup(t.app, a);
});

test.after.each(closeAll);


/** A LocalPresence whose `askOnline` waits for the test to answer (as a cluster's asks of other nodes do). */
class AskedPresence extends LocalPresence {
  readonly pending: Array<(r: OnlineResult) => void> = [];
  override askOnline(_users: readonly string[], done: (r: OnlineResult) => void): void {
    this.pending.push(done);
  }
}

test('online that waits for other nodes: later commands wait behind it, replies in order; partial and busy answers; too many frames behind it close 1008', async () => {
  const presence = new AskedPresence({ maxMembers: 10, maxMetaBytes: 64, maxTopicsPerConn: 5 });
  const { app, ws } = await testApp({ ...open, presence, onlineHeldFrames: 3 });
  const a = await TestClient.connect(ws);
  a.send({ type: 'presence', action: 'online', users: ['ada', 'bob'], id: 'o1' });
  a.send({ type: 'ping', id: 'p1' });
  await new Promise((r) => setTimeout(r, 100));
  assert.not.ok(a.inbox.some((x) => x.msg.type === 'reply' && x.msg.id === 'p1'), 'the ping waits behind the online');
  assert.is(presence.pending.length, 1);
  presence.pending.shift()!({ online: new Set(['ada']), partial: true });
  const first = await a.next((x) => x.type === 'reply', 2000);
  assert.equal([first.id, first.online, first.partial], ['o1', { ada: true, bob: false }, true]);
  assert.is((await a.next((x) => x.type === 'reply', 2000)).id, 'p1');
  // 'busy' (too many asks waiting on this node) is an error reply, in order too.
  a.send({ type: 'presence', action: 'online', users: ['ada'], id: 'o2' });
  await new Promise((r) => setTimeout(r, 50));
  presence.pending.shift()!('busy');
  const busy = await a.next((x) => x.type === 'error', 2000);
  assert.equal([busy.id, busy.code], ['o2', 'ONLINE_BUSY']);
  // Four frames behind a waiting online, with room for three: the connection is closed.
  a.send({ type: 'presence', action: 'online', users: ['ada'], id: 'o3' });
  for (let i = 0; i < 4; i++) a.send({ type: 'ping', id: `q${i}` });
  const closed = await a.waitClosed(2000);
  assert.is(closed.code, 1008);
  presence.pending.shift()!({ online: new Set(), partial: false }); // answered after the close: nothing is sent, nothing throws
  assert.not.ok(a.inbox.some((x) => x.msg.id === 'o3' || x.msg.id === 'q0'), 'nothing handled after the close');
  await cleanup(app, a);
});

test.run();
