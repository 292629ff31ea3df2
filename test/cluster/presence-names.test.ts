// Names clients choose, through cluster presence: "__proto__", "constructor" and
// "hasOwnProperty" as user ids, topics, connection ids and meta keys replicate like any
// other name, and a peer's payload holding bytes that are not UTF-8 (what a lone surrogate
// would become) is dropped, counted and logged at a bounded rate, never stored.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeDelta, encodeSet } from '../../src/cluster/presence/presence-wire.js';
import { DROP_LOG_INTERVAL_MS } from '../../src/cluster/presence/store.js';
import { ScriptedNet, askOnline, entry, view } from './presence-helpers.js';

const NAMES = ['__proto__', 'constructor', 'hasOwnProperty'];

test('"__proto__", "constructor", "hasOwnProperty" as users, topics, conns and meta keys replicate to the other node', () => {
  const net = new ScriptedNet();
  const a = net.add('a');
  const b = net.add('b');
  const meta = JSON.parse('{"__proto__":{"x":1},"constructor":2,"hasOwnProperty":3}') as Record<string, unknown>;
  for (const name of NAMES) {
    a.connect(name, name);
    assert.is(a.join(name, entry(name, name, meta)), 'joined');
  }
  net.deliver();
  assert.equal(view(b, NAMES), view(a, NAMES));
  assert.is(view(b, NAMES).length, 3);
  for (const name of NAMES) {
    assert.is(b.count(name), 1);
    const e = b.list(name)[0]!;
    assert.is(e.user, name);
    assert.equal(Object.keys(e.meta!), NAMES);
  }
  assert.equal(askOnline(b, [...NAMES, 'toString'], () => net.deliver()), [...NAMES].sort(), 'online as b asks a');
  // The same through a full state (push-pull), as a node that joins later gets it.
  const c = net.add('c');
  net.advance(60_000);
  net.deliver();
  assert.equal(view(c, NAMES), view(a, NAMES));
  assert.equal(askOnline(c, NAMES, () => net.deliver()), [...NAMES].sort());
  for (const name of NAMES) a.disconnect(name, name);
  net.deliver();
  for (const p of [b, c]) assert.equal(askOnline(p, NAMES, () => net.deliver()), [], 'offline everywhere');
});

test('a delta whose topic is not UTF-8 (an encoded lone surrogate) is dropped, counted and logged once per interval', () => {
  const net = new ScriptedNet();
  const lines: string[] = [];
  const a = net.add('a');
  const b = net.add('b', { log: (l) => lines.push(l) });
  net.deliver();
  const op = encodeSet('room:abc', entry('ada', 'a.1'), null);
  const at = op.indexOf('abc');
  op.set([0xed, 0xa0, 0xbd], at); // U+D83D as if UTF-8 could carry it
  const bad = encodeDelta('a', a.epoch, 0, [op]);
  for (let i = 0; i < 20; i++) b.delegate.notifyMessage?.(bad);
  assert.is(b.counters.deltasDropped, 20);
  assert.is(b.stats().entries, 0);
  assert.is(lines.length, 1);
  assert.match(lines[0]!, /malformed delta/);
  net.now += DROP_LOG_INTERVAL_MS;
  b.delegate.notifyMessage?.(bad);
  assert.is(lines.length, 2);
  assert.match(lines[1]!, /and 19 more/);
});

test.run();
