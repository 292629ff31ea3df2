import { Buffer } from 'node:buffer';
import type { HistoryOptions, StreamPosition } from './history.js';

/**
 * The seam between pub/sub and the processes beyond this one: the workers of one machine
 * (the relay of `murmur echo --workers`) and the nodes of a cluster (src/cluster/bus: a direct mesh, Redis). Two
 * concerns, two interfaces: delivery (messages out, messages in) and interest (which topics
 * this process has subscribers to, for buses that forward a topic only where it is wanted).
 * Topics (topics.ts) drives both: it puts every message published here on the bus as a
 * record (bus-record.ts) and feeds every record that arrives into its own publish path,
 * local subscribers only (never back onto a bus).
 */
export interface BusDelivery {
  /** Sends a message published here to every other process (that wants it). */
  publish(topic: string, data: Buffer, isBinary: boolean): void;
  /** Registers the one receiver of messages published elsewhere. */
  onMessage(receiver: (topic: string, data: Buffer, isBinary: boolean) => void): void;
  /** Stops the bus. May finish asynchronously (closing links or connections). */
  close(): void | Promise<void>;
}

/** For buses that forward a topic only to processes with subscribers to it. */
export interface BusInterestFeed {
  /**
   * Called once when the bus is attached, with a view of this process's local interest.
   * After it, `interestChanged` reports every change.
   */
  watchInterest(interest: BusInterest): void;
  /**
   * `topic` gained its first local subscriber (true) or lost its last one (false). Called
   * synchronously from subscribe/unsubscribe: it must only record the change.
   */
  interestChanged(topic: string, interested: boolean): void;
}

/**
 * For buses that order the messages of history-keeping topics cluster-wide (one writer per
 * topic): every node then gives a message the same {epoch, offset}, so a client can recover
 * on any node. Topics hands such publishes to publishOrdered instead of delivering them at
 * once; the bus calls back the host's apply() on every node, in offset order.
 */
export interface BusOrdering {
  /** Called once when the bus is attached. */
  attachOrdering(host: OrderingHost): void;
  /**
   * A publish made here to a topic the host orders. `record` is the bus record (publisher and
   * payload); `except` is handed back to apply() on this node (the subscriber to skip).
   * `done`, when given, is called once: with the message's position once it is ordered and
   * held on two nodes (OrderedDone), or with why it will not be (then it was not published).
   */
  publishOrdered(topic: string, record: Buffer, except: object | null, done?: OrderedDone): void;
  /**
   * Fetches the messages after `since` from the nodes that hold the topic (its owner or
   * replica, or Redis) into the history here (the host's backfill), when this node's history
   * does not reach back that far (it started late: a restarted node). With `since` null: makes
   * the history here hold the cluster's line of the topic (its epoch and last offset) when it
   * holds none yet, so that a position given here is the cluster's. Returns null when there is
   * nothing to wait for; else resolves (bounded in time, never rejects) with true once the
   * history here holds what the cluster has (or the cluster answered that it has none of it),
   * false when this node could not ask in time (its bus not ready, too many catch-ups at once,
   * no answer within the bus's timeout): then a failed recovery here says nothing about the
   * cluster's line.
   */
  catchUp?(topic: string, since: StreamPosition | null): Promise<boolean> | null;
  /**
   * Resolves once the publishes made here have come back ordered (bounded in time); never
   * rejects. A graceful drain awaits it before it closes its connections, so a client that
   * moves to another node cannot overtake its own earlier publishes there.
   */
  settle?(): Promise<void>;
}

/**
 * The outcome of an ordered publish: its cluster-wide position (null when the bus knows it was
 * ordered but not where: confirmed by a later message of the same publisher), or why it was not
 * published: 'unavailable' (not ordered within the bus's timeout, the bus closed or lost it),
 * 'busy' (over the bus's bound on publishes waiting to be ordered).
 */
export type OrderedDone = (position: StreamPosition | null, failure: OrderedFailure | null) => void;
export type OrderedFailure = 'unavailable' | 'busy';

/** What an ordering bus needs from the topics of its process. */
export interface OrderingHost {
  /** Whether `topic` is ordered cluster-wide (it keeps a history). */
  ordered(topic: string): boolean;
  /**
   * Drops `topic`'s history here when nobody here subscribes to it (a bus that stops hearing a
   * topic's stream on this node: a history left behind would serve recoveries from a stale past).
   */
  drop(topic: string): void;
  /** The bounds of `topic`'s history (a bus that keeps a second copy caps it alike); null when it keeps none. */
  historyLimits(topic: string): HistoryOptions | null;
  /** The last position applied here, if the topic has a history here (never creates it). */
  known(topic: string): StreamPosition | null;
  /** The last position applied here (creating the topic's history when the policy grants it); null when none can be kept. */
  position(topic: string): StreamPosition | null;
  /** The frame subscribers get for `record` at `position`, built once by the topic's owner; null when the record does not decode. */
  frame(topic: string, position: StreamPosition, record: Buffer): Buffer | null;
  /**
   * Applies an ordered frame here: into the history and to local subscribers (but `except`).
   * 'duplicate': an offset already applied (dropped); 'gap': offsets were missing (the
   * history restarted at this one); 'epoch': another epoch (the history restarted in it).
   * 'conflict': an offset already applied, held here with another message (two lines of one
   * epoch met: a partition healed, or two owners ordered at once); the subscribers are told, and
   * the history restarts at this message. `keep`: this node orders the topic and the message is
   * not its own: it keeps its line, and anything but a duplicate of it is a 'conflict' (told,
   * not applied). `local`: the message was published here (publish() counted its local deliveries).
   */
  apply(topic: string, position: StreamPosition, frame: Buffer, except: object | null, local: boolean, keep?: boolean): ApplyResult;
  /**
   * Frames of the topic's history here from offset `from` on (at most `maxMessages`, and
   * `maxBytes` but at least one), with the offset of the first (above `from` when older ones are
   * trimmed); null when it keeps none.
   */
  range(topic: string, from: number, maxMessages: number, maxBytes: number): { epoch: string; first: number; frames: Buffer[] } | null;
  /** Puts older frames (offsets first..) in front of the topic's history here (TopicHistory.backfill); false when they do not fit its line. */
  backfill(topic: string, epoch: string, first: number, frames: readonly Buffer[]): boolean;
  /** The last `n` frames of the topic's history here, with the position before the first; null when it keeps none. */
  tail(topic: string, n: number): { epoch: string; first: number; frames: Buffer[] } | null;
}

export type ApplyResult = 'applied' | 'duplicate' | 'gap' | 'epoch' | 'conflict';

/** Why the stream of an ordered topic skipped here (Topics.onRestart). */
export type RestartReason = 'gap' | 'epoch' | 'conflict';

/** A bus: delivery, and interest when it forwards by interest, and ordering when it orders history topics. */
export type Bus = BusDelivery & Partial<BusInterestFeed> & Partial<BusOrdering>;

/** The local interest of a process: the topics that have at least one local subscriber. */
export interface BusInterest {
  /** Every topic with a local subscriber, now. */
  topics(): Iterable<string>;
  /** Whether `topic` has a local subscriber now. */
  has(topic: string): boolean;
}
