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

/** A bus: delivery, and interest when it forwards by interest. */
export type Bus = BusDelivery & Partial<BusInterestFeed>;

/** The local interest of a process: the topics that have at least one local subscriber. */
export interface BusInterest {
  /** Every topic with a local subscriber, now. */
  topics(): Iterable<string>;
  /** Whether `topic` has a local subscriber now. */
  has(topic: string): boolean;
}
