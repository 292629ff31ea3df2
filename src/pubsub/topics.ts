import { nextTick } from 'node:process';
import { encodeServerFrame, Opcode } from '../protocol/index.js';
import { TopicHistory, HistoryLedger } from './history.js';
import type { HistoryOptions, RecoveryInfo, StreamPosition } from './history.js';
import type { ApplyResult, Bus, BusOrdering, OrderedDone, OrderingHost, RestartReason } from './bus.js';
import { Buffer, isUtf8 } from 'node:buffer';
import { encodeBusRecord, busRecordPayloadStart, busRecordIsBinary, busRecordFrom } from './bus-record.js';

/**
 * What a topic kept for its history costs besides the history itself, counted in the history
 * ledger: the Topic object, its empty subscriber Set, its entries in the topic map and the idle
 * list, plus its name (measured: about 450 bytes a topic over 10,000 idle topics).
 */
const TOPIC_FIXED_BYTES = 400;

/**
 * Wraps a message that has a publisher before it is encoded, once per node: `position` is
 * the place the message takes in this node's history of the topic (null when the topic keeps
 * none). Messages from the bus go through it too, so each node stamps its own positions.
 * Text comes as a string, binary as a Buffer valid only until the hook returns. Returns the
 * message as subscribers get it (string: a text frame, Buffer: binary).
 */
export type EnvelopeHook = (topic: string, position: StreamPosition | null, from: string, data: string | Buffer, isBinary: boolean) => string | Buffer;

/** What crossed the bus through these Topics. */
export interface BusCounters {
  /** Messages published here and handed to the bus. */
  sent: number;
  /** Messages from the bus delivered here. */
  received: number;
  /** Records from the bus that did not decode (another version, or damage): dropped (envelope hook set only). */
  rejected: number;
  /** Messages from the bus handed to local subscribers (one per subscriber per message), and their payload bytes. */
  deliveries: number;
  deliveredBytes: number;
}

/** Which topics keep a history, and how much: undefined for none. */
export type HistoryPolicy = (topic: string) => HistoryOptions | undefined;

/**
 * What a topic needs of a subscriber: a place to keep its subscriptions (so unsubscribing
 * everything on close costs O(its topics)), and a way to take an encoded batch of frames.
 */
export interface Subscriber {
  /** The topics this subscriber is in; null while it is in none (nothing allocated). */
  topics: Topic[] | null;
  /** Writes already-encoded frames, `messages` of them; subject to the subscriber's budget. */
  sendEncoded(frames: Buffer, messages: number): unknown;
  /** Which compressed form of a frame this subscriber takes (see Topics.compressFrame): 0 or absent, none. */
  readonly compression?: number;
}

export class Topic {
  readonly name: string;
  readonly subscribers: Set<Subscriber>;
  /** Frames published in this tick, not yet written; null when none. */
  pending: Buffer[] | null;
  /** For each pending frame, the subscriber it must skip (conn.publish skips its sender), or null. */
  pendingExcept: Array<Subscriber | null> | null;
  /** Recent messages with offsets, for topics the history policy names; else null. */
  readonly history: TopicHistory | null;

  constructor(name: string, history: TopicHistory | null) {
    this.name = name;
    this.subscribers = new Set();
    this.pending = null;
    this.pendingExcept = null;
    this.history = history;
  }
}

export type SubscribeResult = 'subscribed' | 'already' | 'topic-too-long' | 'too-many';

/**
 * Topics and fan-out. A message is encoded once; every message published to a topic in one
 * tick is appended to one batch, and at the end of the tick the batch is written as the same
 * bytes to every subscriber: one write per subscriber per tick however many messages, no copy
 * and no re-encoding per subscriber.
 */
export class Topics {
  readonly topics: Map<string, Topic>;
  /** Topics with a pending batch, flushed at the end of the tick. */
  private dirty: Topic[];
  private scheduled: boolean;
  private readonly maxTopicLength: number;
  private readonly maxSubscriptions: number;
  private readonly historyPolicy: HistoryPolicy | null;
  private readonly maxHistoryTopics: number;
  /**
   * Topics that hold a history and no subscriber, least recently used first (a Map keeps
   * insertion order; a use moves the topic to the end): the ones evicted when a new topic
   * needs a history beyond maxHistoryTopics. A subscribed topic is never evicted.
   */
  private readonly idleHistory: Map<string, Topic>;
  private readonly maxHistoryBytes: number;
  /** Memory held by every history together (TopicHistory.heldBytes summed, kept up to date). */
  readonly historyLedger: HistoryLedger;
  /** Topics holding a history, subscribed or not. */
  historyTopicCount: number;
  /**
   * Topics whose name does not start with "$" (the app's internal ones), and subscriptions over
   * every topic: kept as they change, so reading them (a metrics scrape) costs nothing per topic.
   */
  publicTopicCount: number;
  subscriptionCount: number;
  /** Histories dropped to make room for newer topics (beyond maxHistoryTopics). */
  historyEvictions: number;
  /** Messages published to a topic with at least one subscriber. */
  published: number;
  /** Messages handed to subscribers (one per subscriber per message). */
  deliveries: number;
  /**
   * Told when a topic gains its first subscriber (true) or loses its last one (false): the
   * interest a cluster bus replicates to other nodes. Called synchronously; it must only
   * record the change.
   */
  onInterest: ((topic: string, interested: boolean) => void) | null;
  /** Stamps messages that have a publisher (see EnvelopeHook); null: they go out as given. */
  envelope: EnvelopeHook | null;
  /** Told when a record from the bus does not decode (after it is counted). */
  onRejected: (() => void) | null;
  /**
   * What the subscribers of an ordered topic are told when its stream skips (offsets that could
   * not be filled, another epoch over a history that held messages, or another line of the same
   * epoch: 'conflict'): a text sent before the message after the skip, never kept in the
   * history; null (or returning null): nothing.
   */
  onRestart: ((topic: string, position: StreamPosition, reason: RestartReason) => string | null) | null;
  readonly busCounters: BusCounters;
  /** Payload bytes of the last message publish() encoded: what each subscriber it reaches is sent. */
  lastPayloadBytes: number;
  /**
   * The frame a subscriber whose `compression` is 1 or 2 gets instead of an encoded frame
   * (permessage-deflate: 2 asks for the smallest window), or the frame itself when not worth
   * compressing. Called at most once per frame and kind in a batch, whatever the number of
   * such subscribers: a fan-out compresses once. null: no subscriber ever takes compressed frames.
   */
  compressFrame: ((frame: Buffer, small: boolean) => Buffer) | null;
  private bus: Bus | null;
  /** The bus, when it orders history topics cluster-wide; else null. */
  private order: BusOrdering | null;

  /**
   * Beyond maxHistoryTopics histories, or maxHistoryBytes held by all of them, the least
   * recently used topics nobody subscribes to lose theirs.
   */
  constructor(maxTopicLength: number, maxSubscriptions: number, historyPolicy: HistoryPolicy | null = null, maxHistoryTopics = Infinity, maxHistoryBytes = Infinity) {
    this.historyPolicy = historyPolicy;
    this.maxHistoryTopics = maxHistoryTopics;
    this.maxHistoryBytes = maxHistoryBytes;
    this.historyLedger = new HistoryLedger();
    this.idleHistory = new Map();
    this.historyTopicCount = 0;
    this.publicTopicCount = 0;
    this.subscriptionCount = 0;
    this.historyEvictions = 0;
    this.topics = new Map();
    this.dirty = [];
    this.scheduled = false;
    this.maxTopicLength = maxTopicLength;
    this.maxSubscriptions = maxSubscriptions;
    this.published = 0;
    this.deliveries = 0;
    this.onInterest = null;
    this.envelope = null;
    this.onRejected = null;
    this.onRestart = null;
    this.busCounters = { sent: 0, received: 0, rejected: 0, deliveries: 0, deliveredBytes: 0 };
    this.lastPayloadBytes = 0;
    this.compressFrame = null;
    this.bus = null;
    this.order = null;
  }

  /**
   * Attaches the bus (replacing any other; null detaches): every message published here goes
   * onto it (as a record when an envelope hook is set), and every message it brings is published here, to local subscribers
   * only, through the same envelope, history and encode-once batch as a local publish. A bus
   * that forwards by interest is given this node's interest and told of every change.
   */
  useBus(bus: Bus | null): void {
    this.onInterest = null;
    this.bus = bus;
    this.order = null;
    if (bus === null) return;
    if (bus.attachOrdering !== undefined && bus.publishOrdered !== undefined && this.historyPolicy !== null) {
      this.order = bus as BusOrdering;
      bus.attachOrdering(this.orderingHost());
    }
    bus.onMessage((topic, data, isBinary) => this.receive(topic, data, isBinary));
    if (bus.watchInterest !== undefined) {
      bus.watchInterest({ topics: () => this.interestedTopics(), has: (topic) => this.subscriberCount(topic) > 0 });
      if (bus.interestChanged !== undefined) this.onInterest = (topic, interested) => bus.interestChanged!(topic, interested);
    }
  }

  /**
   * A message from the bus: published here, to local subscribers only. With an envelope hook
   * it is a record (the publisher and the payload); without one, the bare message.
   */
  receive(topic: string, data: Buffer, isBinary: boolean): void {
    if (this.envelope === null) return this.delivered(this.deliver(topic, data, isBinary, null, null, 0));
    // Read in place (no view or object per record): the payload is copied once, into the frame.
    const start = busRecordPayloadStart(data);
    const from = this.checkRecord(data, start);
    if (from !== undefined) this.delivered(this.deliver(topic, data, busRecordIsBinary(data), null, from, start));
  }

  /** The publisher of a record from the bus whose payload starts at `start`; undefined (counted as rejected) when it does not decode. */
  private checkRecord(data: Buffer, start: number): string | null | undefined {
    const from = start < 0 ? undefined : busRecordFrom(data, start);
    if (from === undefined || (!busRecordIsBinary(data) && !isUtf8(data.subarray(start)))) {
      this.busCounters.rejected++;
      this.onRejected?.();
      return undefined;
    }
    return from;
  }

  private delivered(subscribers: number): void {
    const c = this.busCounters;
    c.received++;
    c.deliveries += subscribers;
    c.deliveredBytes += subscribers * this.lastPayloadBytes;
  }

  /** Every topic with at least one subscriber (topics kept only for their history are not). */
  *interestedTopics(): IterableIterator<string> {
    for (const topic of this.topics.values()) if (topic.subscribers.size > 0) yield topic.name;
  }

  /** True while published messages wait for the end of the tick. */
  get hasPending(): boolean {
    return this.dirty.length > 0;
  }

  subscribe(sub: Subscriber, name: string): SubscribeResult {
    if (name.length > this.maxTopicLength || Buffer.byteLength(name) > this.maxTopicLength) return 'topic-too-long';
    let topic = this.topics.get(name);
    if (topic !== undefined && topic.subscribers.has(sub)) return 'already';
    const mine = sub.topics;
    if (mine !== null && mine.length >= this.maxSubscriptions) return 'too-many';
    // Messages already published in this tick were published before this subscription.
    if (topic !== undefined && topic.pending !== null) this.flush();
    if (topic === undefined) topic = this.create(name);
    else if (topic.subscribers.size === 0) this.idleHistory.delete(name);
    topic.subscribers.add(sub);
    this.subscriptionCount++;
    if (mine === null) sub.topics = [topic];
    else mine.push(topic);
    if (topic.subscribers.size === 1 && this.onInterest !== null) this.onInterest(name, true);
    return 'subscribed';
  }

  unsubscribe(sub: Subscriber, name: string): boolean {
    const topic = this.topics.get(name);
    if (topic === undefined || !topic.subscribers.has(sub)) return false;
    if (topic.pending !== null) this.flush();
    topic.subscribers.delete(sub);
    this.subscriptionCount--;
    const mine = sub.topics!;
    const i = mine.indexOf(topic);
    mine[i] = mine[mine.length - 1]!;
    mine.pop();
    if (mine.length === 0) sub.topics = null;
    if (topic.subscribers.size === 0 && this.onInterest !== null) this.onInterest(name, false);
    this.dropIfEmpty(topic);
    return true;
  }

  /** On close: O(topics of this subscriber). Pending batches are not delivered to it. */
  unsubscribeAll(sub: Subscriber): void {
    const mine = sub.topics;
    if (mine === null) return;
    sub.topics = null;
    this.subscriptionCount -= mine.length;
    for (const topic of mine) {
      topic.subscribers.delete(sub);
      if (topic.subscribers.size === 0 && this.onInterest !== null) this.onInterest(topic.name, false);
      this.dropIfEmpty(topic);
    }
  }

  /**
   * Sends `sub` the messages of `name` it missed since `since`, before any new one, if the
   * topic's history still covers that position; otherwise says why not (the client must
   * resync). Call right after subscribe().
   */
  recover(sub: Subscriber, name: string, since: StreamPosition): RecoveryInfo | undefined {
    const history = this.topics.get(name)?.history;
    if (history === null || history === undefined) return undefined;
    const r = history.recover(since, Date.now());
    if (!r.recovered) return r;
    this.replay(sub, r.frames, r.messages);
    return { recovered: true, messages: r.messages, position: r.position };
  }

  /** The history of a topic, if it keeps one (creating the topic when the policy names it). */
  history(name: string): TopicHistory | undefined {
    let topic = this.topics.get(name);
    if (topic === undefined) {
      topic = this.create(name);
      if (topic.history === null) this.forget(name); // refused (policy or bound): nothing to keep
      else this.idleHistory.set(name, topic);
    }
    return topic.history ?? undefined;
  }

  /**
   * Drops the histories of unsubscribed topics whose messages all aged out (call it now and
   * then: an idle topic's messages expire only when something looks at them).
   */
  sweepHistory(now: number): void {
    for (const topic of this.idleHistory.values()) {
      topic.history!.expire(now);
      if (topic.history!.size === 0 && topic.pending === null) this.remove(topic);
    }
  }

  subscriberCount(name: string): number {
    return this.topics.get(name)?.subscribers.size ?? 0;
  }

  /** Whether `sub` is subscribed to `name`. */
  isSubscribed(sub: Subscriber, name: string): boolean {
    return this.topics.get(name)?.subscribers.has(sub) ?? false;
  }

  /**
   * Publishes one message to every subscriber of `name` (but `except`), and onto the bus when
   * one is attached. `from`, the publisher, is what the envelope hook stamps. Returns the number
   * of local subscribers it will reach. The bytes are copied once into the encoded frame, so
   * the caller may reuse `data` at once. `done` is for topics the bus orders (isOrdered): called
   * once the message is ordered and held on two nodes, or failed (BusOrdering.publishOrdered).
   */
  publish(name: string, data: string | Buffer, isBinary: boolean, except: Subscriber | null, from: string | null = null, done?: OrderedDone): number {
    if (this.isOrdered(name)) {
      // The bus delivers it here too, once ordered: this node's subscribers get it at its
      // cluster-wide position, like every other node's.
      this.order!.publishOrdered(name, encodeBusRecord(from, data, isBinary), except, done);
      this.busCounters.sent++;
      return this.subscriberCount(name) - (except !== null && this.isSubscribed(except, name) ? 1 : 0);
    }
    if (this.bus !== null) {
      // The publisher crosses the bus only where an envelope hook stamps it (every node of a
      // cluster is configured alike); otherwise the bus carries the bare message.
      if (this.envelope !== null) this.bus.publish(name, encodeBusRecord(from, data, isBinary), true);
      else this.bus.publish(name, typeof data === 'string' ? Buffer.from(data) : data, isBinary);
      this.busCounters.sent++;
    }
    return this.deliver(name, data, isBinary, except, from, 0);
  }

  /**
   * Whether publishes to `name` are ordered cluster-wide by the bus (a history topic with an
   * ordering bus attached): they reach subscribers later, and their position is not known
   * when publish() returns.
   */
  isOrdered(name: string): boolean {
    return this.order !== null && this.historyPolicy!(name) !== undefined;
  }

  /** What an ordering bus needs of these topics (bus.ts). */
  private orderingHost(): OrderingHost {
    return {
      ordered: (topic) => this.historyPolicy!(topic) !== undefined,
      historyLimits: (topic) => this.historyPolicy!(topic) ?? null,
      drop: (topic) => {
        const t = this.topics.get(topic);
        if (t !== undefined && t.history !== null && t.subscribers.size === 0 && t.pending === null) this.remove(t);
      },
      known: (topic) => this.historyOf(topic)?.position ?? null,
      position: (topic) => this.history(topic)?.position ?? null,
      frame: (topic, position, record) => this.orderedFrame(topic, position, record),
      apply: (topic, position, frame, except, local, keep) => this.applyOrdered(topic, position, frame, except as Subscriber | null, local, keep === true),
      range: (topic, from, maxMessages, maxBytes) => {
        const h = this.historyOf(topic);
        if (h === null) return null;
        const r = h.range(from, maxMessages, maxBytes);
        return { epoch: h.epoch, first: r.first, frames: r.frames };
      },
      backfill: (topic, epoch, first, frames) => this.history(topic)?.backfill(epoch, first, frames, Date.now()) ?? false,
      tail: (topic, n) => {
        const h = this.historyOf(topic);
        if (h === null) return null;
        const t = h.tail(n);
        return { epoch: h.epoch, first: t.first, frames: t.frames };
      },
    };
  }

  /** The frame of an ordered record at `position`: the envelope (when set) and the encoding, once for the cluster. */
  private orderedFrame(topic: string, position: StreamPosition, record: Buffer): Buffer | null {
    const start = busRecordPayloadStart(record);
    const from = this.checkRecord(record, start);
    if (from === undefined) return null;
    const binary = busRecordIsBinary(record);
    let data: string | Buffer = binary ? record.subarray(start) : record.toString('utf8', start);
    let isBinary = binary;
    if (from !== null && this.envelope !== null) {
      data = this.envelope(topic, position, from, data, isBinary);
      isBinary = typeof data !== 'string';
    }
    return encodeServerFrame(isBinary ? Opcode.Binary : Opcode.Text, data);
  }

  /** An ordered frame, applied in offset order: see OrderingHost.apply. */
  private applyOrdered(name: string, position: StreamPosition, frame: Buffer, except: Subscriber | null, local: boolean, keep: boolean): ApplyResult {
    let topic = this.topics.get(name);
    if (topic === undefined) {
      topic = this.create(name);
      if (topic.history === null && topic.subscribers.size === 0) this.forget(name);
    }
    let result: ApplyResult = 'applied';
    const h = topic.history;
    if (h !== null) {
      const before = { epoch: position.epoch, offset: position.offset - 1 };
      if (keep && (h.epoch !== position.epoch || position.offset > h.lastOffset)) {
        // Not of the line this node orders: another line met it.
        if (topic.subscribers.size > 0) this.signalRestart(topic, h.position, 'conflict');
        return 'conflict';
      }
      if (h.epoch !== position.epoch) {
        // A history that never held a message simply takes the cluster's epoch.
        if (h.lastOffset !== 0 || h.size !== 0) result = 'epoch';
        h.restart(before);
      } else if (position.offset <= h.lastOffset) {
        // The same message again, or another one at this offset: another line of the epoch.
        const held = h.range(position.offset, 1, Number.MAX_SAFE_INTEGER);
        if (held.first !== position.offset || held.frames.length === 0 || held.frames[0]!.equals(frame)) return 'duplicate';
        if (keep) {
          if (topic.subscribers.size > 0) this.signalRestart(topic, h.position, 'conflict');
          return 'conflict';
        }
        result = 'conflict';
        h.restart(before);
      } else if (position.offset > h.lastOffset + 1) {
        result = 'gap';
        h.restart(before);
      }
    }
    if (result !== 'applied' && topic.subscribers.size > 0) this.signalRestart(topic, { epoch: position.epoch, offset: position.offset - 1 }, result);
    this.lastPayloadBytes = framePayloadBytes(frame);
    const size = topic.subscribers.size - (except !== null && topic.subscribers.has(except) ? 1 : 0);
    if (h !== null || size > 0) this.enqueue(topic, frame, except, size);
    if (!local) this.delivered(size);
    return result;
  }

  /**
   * When the bus orders `name`: fetches its messages after `since` into the history here from
   * the nodes that hold them (a history that started late), or with `since` null the line
   * itself (BusOrdering.catchUp); null when there is no such bus or nothing to wait for.
   */
  catchUp(name: string, since: StreamPosition | null): Promise<boolean> | null {
    if (this.order === null || this.order.catchUp === undefined || !this.isOrdered(name)) return null;
    return this.order.catchUp(name, since);
  }

  /** Queues onRestart's text for every subscriber of `topic`, ahead of the message after the skip. */
  private signalRestart(topic: Topic, position: StreamPosition, reason: RestartReason): void {
    const text = this.onRestart?.(topic.name, position, reason) ?? null;
    if (text !== null) this.queue(topic, encodeServerFrame(Opcode.Text, text), null, topic.subscribers.size);
  }

  /** Publishes to local subscribers only, never onto the bus (events every node derives itself). */
  publishLocal(name: string, data: string | Buffer, isBinary: boolean): number {
    return this.deliver(name, data, isBinary, null, null, 0);
  }

  /** The position of the last message of `name`'s history; null when it keeps none. */
  position(name: string): StreamPosition | null {
    return this.topics.get(name)?.history?.position ?? null;
  }

  /** Whether `name` exists now (it has subscribers, or keeps a history). */
  has(name: string): boolean {
    return this.topics.has(name);
  }

  /** The history of `name` if it exists and keeps one; never creates it (history() does). */
  historyOf(name: string): TopicHistory | null {
    return this.topics.get(name)?.history ?? null;
  }

  /**
   * Sends `sub` kept frames (a replay of history), after every message published in this tick:
   * replayed messages never overtake live ones already queued.
   */
  replay(sub: Subscriber, frames: Buffer[], messages: number): void {
    if (messages === 0) return;
    if (this.dirty.length > 0) this.flush();
    sub.sendEncoded(frames.length === 1 ? frames[0]! : Buffer.concat(frames), messages);
  }

  /** The publish path of every message, local or from the bus; a Buffer's payload starts at `start`. */
  private deliver(name: string, data: string | Buffer, isBinary: boolean, except: Subscriber | null, from: string | null, start: number): number {
    let topic = this.topics.get(name);
    if (topic === undefined) {
      // Without subscribers a message matters only to a history that keeps it.
      if (this.historyPolicy === null || this.historyPolicy(name) === undefined) return 0;
      topic = this.create(name);
      if (topic.history === null) {
        this.forget(name); // over maxHistoryTopics with nothing to evict
        return 0;
      }
    }
    const size = topic.subscribers.size - (except !== null && topic.subscribers.has(except) ? 1 : 0);
    if (size === 0 && topic.history === null) return 0;
    if (from !== null && this.envelope !== null) {
      // The offset history.append will give this message: nothing can append in between.
      const position = topic.history === null ? null : { epoch: topic.history.epoch, offset: topic.history.lastOffset + 1 };
      // The hook gets text as a string (a record from the bus brings it as checked UTF-8 bytes).
      const given = typeof data === 'string' ? data : isBinary ? data.subarray(start) : data.toString('utf8', start);
      data = this.envelope(name, position, from, given, isBinary);
      isBinary = typeof data !== 'string';
      start = 0;
    }
    const frame = encodeServerFrame(isBinary ? Opcode.Binary : Opcode.Text, typeof data === 'string' || start === 0 ? data : data.subarray(start));
    this.lastPayloadBytes = framePayloadBytes(frame);
    return this.enqueue(topic, frame, except, size);
  }

  /** Keeps an encoded frame in the topic's history (if any) and queues it for its subscribers (`size` of them). */
  private enqueue(topic: Topic, frame: Buffer, except: Subscriber | null, size: number): number {
    const name = topic.name;
    if (topic.history !== null) {
      topic.history.append(frame, Date.now());
      if (topic.subscribers.size === 0) {
        // Used now: the most recent of the idle ones.
        this.idleHistory.delete(name);
        this.idleHistory.set(name, topic);
      }
      while (this.historyLedger.held > this.maxHistoryBytes && this.evictIdleHistory(topic));
    }
    return this.queue(topic, frame, except, size);
  }

  /** Queues an encoded frame for the topic's subscribers (`size` of them), written at the end of the tick. */
  private queue(topic: Topic, frame: Buffer, except: Subscriber | null, size: number): number {
    if (size === 0) return 0;
    this.published++;
    if (topic.pending === null) {
      topic.pending = [frame];
      topic.pendingExcept = [except];
      this.dirty.push(topic);
      if (!this.scheduled) {
        this.scheduled = true;
        nextTick(topicsFlush, this);
      }
    } else {
      topic.pending.push(frame);
      topic.pendingExcept!.push(except);
    }
    return size;
  }

  /** Writes every pending batch now (end of tick, or before a direct send to keep order). */
  flush(): void {
    this.scheduled = false;
    const dirty = this.dirty;
    if (dirty.length === 0) return;
    this.dirty = [];
    for (let i = 0; i < dirty.length; i++) this.flushTopic(dirty[i]!);
  }

  private flushTopic(topic: Topic): void {
    const frames = topic.pending!;
    const excepts = topic.pendingExcept!;
    topic.pending = null;
    topic.pendingExcept = null;
    const batch = frames.length === 1 ? frames[0]! : Buffer.concat(frames);
    const count = frames.length;
    // Usually nobody is skipped; otherwise the skipped ones get their own batch without
    // their own messages (conn.publish: everybody but the sender).
    let skipped: Set<Subscriber> | null = null;
    for (let i = 0; i < excepts.length; i++) {
      const e = excepts[i];
      if (e !== null && e !== undefined) (skipped ??= new Set()).add(e);
    }
    // Compressed forms, made on the first subscriber that takes them: [kind 1, kind 2].
    const compress = this.compressFrame;
    let zframes: Array<Buffer[] | null> | null = null;
    let zbatches: Array<Buffer | null> | null = null;
    let delivered = 0;
    for (const sub of topic.subscribers) {
      const kind = compress === null ? 0 : (sub.compression ?? 0);
      let mine = frames;
      if (kind !== 0) {
        zframes ??= [null, null];
        mine = zframes[kind - 1] ??= frames.map((f) => compress!(f, kind === 2));
      }
      if (skipped !== null && skipped.has(sub)) {
        const own: Buffer[] = [];
        for (let i = 0; i < count; i++) if (excepts[i] !== sub) own.push(mine[i]!);
        if (own.length > 0) sub.sendEncoded(own.length === 1 ? own[0]! : Buffer.concat(own), own.length);
        delivered += own.length;
        continue;
      }
      if (kind === 0) sub.sendEncoded(batch, count);
      else {
        zbatches ??= [null, null];
        sub.sendEncoded((zbatches[kind - 1] ??= mine.length === 1 ? mine[0]! : Buffer.concat(mine)), count);
      }
      delivered += count;
    }
    this.deliveries += delivered;
    this.dropIfEmpty(topic);
  }

  private create(name: string): Topic {
    const options = this.historyPolicy?.(name);
    const keep = options !== undefined && (this.historyTopicCount < this.maxHistoryTopics || this.evictIdleHistory(null));
    const topic = new Topic(name, keep ? new TopicHistory(options, undefined, this.historyLedger) : null);
    if (keep) {
      this.historyTopicCount++;
      this.historyLedger.held += TOPIC_FIXED_BYTES + name.length;
    }
    this.topics.set(name, topic);
    if (name.charCodeAt(0) !== 36 /* $ */) this.publicTopicCount++;
    return topic;
  }

  /** Takes a topic out of the map (and out of the public count). */
  private forget(name: string): void {
    if (this.topics.delete(name) && name.charCodeAt(0) !== 36 /* $ */) this.publicTopicCount--;
  }

  /** Drops the history of the least recently used topic nobody subscribes to (but `keep`); false when there is none. */
  private evictIdleHistory(keep: Topic | null): boolean {
    for (const topic of this.idleHistory.values()) {
      if (topic.pending !== null || topic === keep) continue;
      this.remove(topic);
      this.historyEvictions++;
      return true;
    }
    return false;
  }

  private remove(topic: Topic): void {
    this.forget(topic.name);
    if (topic.history !== null) {
      topic.history.release();
      this.historyLedger.held -= TOPIC_FIXED_BYTES + topic.name.length;
      this.idleHistory.delete(topic.name);
      this.historyTopicCount--;
    }
  }

  /**
   * A topic goes when nobody is subscribed and nothing is pending, unless it still holds
   * history (dropping it would start a new epoch and make every client resync).
   */
  private dropIfEmpty(topic: Topic): void {
    if (topic.subscribers.size !== 0 || topic.pending !== null) return;
    if (topic.history !== null) {
      topic.history.expire(Date.now());
      if (topic.history.size > 0) {
        if (!this.idleHistory.has(topic.name)) this.idleHistory.set(topic.name, topic);
        return;
      }
    }
    this.remove(topic);
  }
}

/** The payload's length from a server frame's own header: no second UTF-8 scan of a string. */
function framePayloadBytes(frame: Buffer): number {
  const b1 = frame[1]! & 0x7f;
  return frame.length - (b1 < 126 ? 2 : b1 === 126 ? 4 : 10);
}

function topicsFlush(topics: Topics): void {
  topics.flush();
}

