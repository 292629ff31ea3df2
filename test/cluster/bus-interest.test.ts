// The hooks a bus builds on: Topics reports a topic's first and last subscriber, and the
// Server hands them, and the messages a bus brings, through useBus().
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Topics } from '../../src/pubsub/topics.js';
import type { Subscriber } from '../../src/pubsub/topics.js';
import { Server } from '../../src/server/server.js';
import type { Bus, BusInterest } from '../../src/pubsub/bus.js';

const sub = (): Subscriber & { got: number } => ({ topics: null, got: 0, sendEncoded(_f, n) { this.got += n; } });

test('Topics: onInterest fires on the first subscriber and on the last one leaving, by unsubscribe or close', () => {
  const t = new Topics(256, 100);
  const events: string[] = [];
  t.onInterest = (topic, on) => events.push(`${on ? '+' : '-'}${topic}`);
  const a = sub();
  const b = sub();
  t.subscribe(a, 'x');
  t.subscribe(b, 'x'); // not the first
  t.subscribe(a, 'y');
  t.subscribe(a, 'x'); // already
  assert.equal(events, ['+x', '+y']);
  t.unsubscribe(a, 'x'); // b is still there
  assert.equal(events, ['+x', '+y']);
  t.unsubscribe(b, 'x');
  t.unsubscribeAll(a);
  assert.equal(events, ['+x', '+y', '-x', '-y']);
  t.unsubscribe(a, 'nothing');
  assert.equal([...t.interestedTopics()], []);
  t.subscribe(b, 'z');
  assert.equal([...t.interestedTopics()], ['z']);
});

test('Topics: topics kept only for their history are no interest', () => {
  const t = new Topics(256, 100, (name) => (name === 'h' ? { maxMessages: 10, maxBytes: 1000, maxAgeMs: 60_000 } : undefined));
  t.publish('h', 'kept', false, null);
  assert.ok(t.topics.has('h'));
  assert.equal([...t.interestedTopics()], []);
});

class RecordingBus implements Bus {
  published: string[] = [];
  changes: string[] = [];
  interest: BusInterest | null = null;
  receiver: ((topic: string, data: Buffer, isBinary: boolean) => void) | null = null;
  publish(topic: string, data: Buffer): void {
    this.published.push(`${topic}:${data}`);
  }
  onMessage(receiver: (topic: string, data: Buffer, isBinary: boolean) => void): void {
    this.receiver = receiver;
  }
  watchInterest(interest: BusInterest): void {
    this.interest = interest;
  }
  interestChanged(topic: string, on: boolean): void {
    this.changes.push(`${on ? '+' : '-'}${topic}`);
  }
  close(): void {}
}

test('Server.useBus: interest is visible and reported; messages from the bus reach local subscribers only', async () => {
  const server = new Server({ handlers: {} });
  const s = sub();
  server.pubsub.subscribe(s, 'before');
  const bus = new RecordingBus();
  server.useBus(bus);
  assert.equal([...bus.interest!.topics()], ['before'], 'the interest that existed before the bus');
  assert.ok(bus.interest!.has('before'));
  assert.not.ok(bus.interest!.has('other'));
  server.pubsub.subscribe(s, 'after');
  assert.equal(bus.changes, ['+after']);
  bus.receiver!('after', Buffer.from('from-elsewhere'), false);
  await new Promise((r) => setImmediate(r));
  assert.is(s.got, 1, 'fanned out locally');
  assert.equal(bus.published, [], 'never back onto the bus');
  server.publish('after', 'local');
  assert.equal(bus.published, ['after:local']);
  // Detached: no more reports.
  server.useBus(null);
  server.pubsub.unsubscribeAll(s);
  assert.equal(bus.changes, ['+after']);
  assert.is(server.bus, null);
});

test.run();
