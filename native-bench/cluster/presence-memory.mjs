#!/usr/bin/env node
// What one replicated presence entry costs in the JS heap of the node that holds it.
// A ClusterPresence receives the presence of 10 other nodes (full states as a pull brings
// them, or deltas) and the heap is measured before and after, with a forced GC. Build first:
//
//   node --expose-gc native-bench/cluster/presence-memory.mjs [--entries=100000]
//
// Shapes: no meta; a small meta {"name": "User 12345"}; the same entries with each user
// present in 4 topics (4 entries, one user id); and entries that arrived as deltas (online +
// join ops) rather than in a full state. User ids ~10 characters, connection ids ~10, topics
// shared by 100 entries each. Last, online users in no topic (token users) from full states:
// what every node held per user of every other node before 2026-12-07 (nodes no longer send
// their users, so on a build from that day the row is the cost of an older node's users).
import { ClusterPresence } from '../../dist/src/cluster/presence/store.js';
import { encodeDelta, encodeOnline, encodeSet, encodeState } from '../../dist/src/cluster/presence/presence-wire.js';

if (typeof globalThis.gc !== 'function') {
  console.error('run with node --expose-gc');
  process.exit(2);
}
const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const TOTAL = Number(args.entries ?? 100_000);
const OWNERS = 10;

function measure(label, make) {
  const host = { broadcast() {}, maxPayloadBytes: 1300, syncWith: () => true, isLive: () => true, query: () => false };
  const p = new ClusterPresence({ name: 'me', epoch: 1, limits: { maxEntriesPerNode: TOTAL, maxUsersPerNode: TOTAL } });
  p.attach(host);
  // Encode first: the encoded states are garbage once merged, not part of the figure.
  const states = [];
  for (let o = 0; o < OWNERS; o++) states.push(...make(`node-${o}`, TOTAL / OWNERS));
  globalThis.gc();
  globalThis.gc();
  const before = process.memoryUsage().heapUsed;
  for (const s of states) {
    if (s[0] === 0x12) p.delegate.mergeRemoteState(s, false);
    else p.delegate.notifyMessage(s);
  }
  states.length = 0;
  globalThis.gc();
  globalThis.gc();
  const after = process.memoryUsage().heapUsed;
  const entries = p.stats().entries;
  const users = p.stats().users;
  console.log(`| ${label} | ${entries.toLocaleString('en')} | ${users.toLocaleString('en')} | ${((after - before) / (entries || users)).toFixed(0)} |`);
  return p;
}

const state = (owner, n, topicsPerUser, meta) => {
  const topics = new Map();
  const users = [];
  const perTopic = 100;
  for (let i = 0; i < n / topicsPerUser; i++) {
    const user = `user-${owner.slice(5)}${String(i).padStart(5, '0')}`;
    users.push(user);
    const conn = `${owner.slice(5)}f3a9.${i.toString(36)}`;
    for (let k = 0; k < topicsPerUser; k++) {
      const t = `room:${Math.floor(i / perTopic) * topicsPerUser + k}`;
      if (!topics.has(t)) topics.set(t, []);
      topics.get(t).push({ user, conn, meta: meta ? { name: `User ${i}` } : null, since: 1764280000000 + i });
    }
  }
  return [encodeState(owner, 1, n, users, topics, [], n * 64)];
};

/** The same entries as they arrive in steady state: deltas of (online, join) per connection. */
const deltas = (owner, n) => {
  const out = [];
  let version = 0;
  let batch = [];
  for (let i = 0; i < n; i++) {
    const user = `user-${owner.slice(5)}${String(i).padStart(5, '0')}`;
    const conn = `${owner.slice(5)}f3a9.${i.toString(36)}`;
    batch.push(encodeOnline(user, true), encodeSet(`room:${Math.floor(i / 100)}`, { user, conn, meta: { name: `User ${i}` }, since: 1764280000000 + i }, JSON.stringify({ name: `User ${i}` })));
    if (batch.length >= 20) {
      out.push(encodeDelta(owner, 1, version, batch));
      version += batch.length;
      batch = [];
    }
  }
  if (batch.length > 0) out.push(encodeDelta(owner, 1, version, batch));
  return out;
};

console.log(`murmur presence: heap per replicated entry (${TOTAL.toLocaleString('en')} entries from ${OWNERS} nodes, Node ${process.version})`);
console.log('');
console.log('| shape | entries | users online | heap bytes per entry (users included) |');
console.log('|---|---|---|---|');
let keep = measure('no meta, one topic per user', (o, n) => state(o, n, 1, false));
keep = measure('meta {"name": "User 12345"}, one topic per user', (o, n) => state(o, n, 1, true));
keep = measure('meta, each user in 4 topics', (o, n) => state(o, n, 4, true));
keep = measure('meta, one topic per user, arrived as deltas', deltas);
keep = measure('online users in no topic (bytes per user)', (o, n) => {
  const users = Array.from({ length: n }, (_, i) => `user-${o.slice(5)}${String(i).padStart(5, '0')}`);
  return [encodeState(o, 1, n, users, new Map(), [], n * 32)];
});
void keep;
