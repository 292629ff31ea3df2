/**
 * Cross-process delivery of published messages: between the workers of one machine
 * (WorkerBus) and between the nodes of a cluster (src/cluster/bus: a direct mesh, Redis).
 * The server publishes locally and hands the message to the bus; the bus delivers it to the
 * other processes, which publish it to their local subscribers only (never back onto a bus).
 */
export interface Bus {
  /** Sends a message published here to every other process (that wants it). */
  publish(topic: string, data: Buffer, isBinary: boolean): void;
  /** Registers the one receiver of messages published elsewhere. */
  onMessage(receiver: (topic: string, data: Buffer, isBinary: boolean) => void): void;
  /**
   * Optional, for buses that forward a topic only to processes with subscribers to it:
   * called once when the bus is attached to a server, with a view of that server's local
   * interest. After it, `interestChanged` reports every change.
   */
  watchInterest?(interest: BusInterest): void;
  /**
   * Optional: `topic` gained its first local subscriber (true) or lost its last one (false).
   * Called synchronously from subscribe/unsubscribe: it must only record the change.
   */
  interestChanged?(topic: string, interested: boolean): void;
  /** Stops the bus. May finish asynchronously (closing links or connections). */
  close(): void | Promise<void>;
}

/** The local interest of a server: the topics that have at least one local subscriber. */
export interface BusInterest {
  /** Every topic with a local subscriber, now. */
  topics(): Iterable<string>;
  /** Whether `topic` has a local subscriber now. */
  has(topic: string): boolean;
}
