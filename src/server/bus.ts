/**
 * Cross-process delivery of published messages: between the workers of one machine today,
 * between the nodes of a cluster later. The server publishes locally and hands the message
 * to the bus; the bus delivers it to the other processes, which publish it locally only.
 */
export interface Bus {
  /** Sends a message published here to every other process. */
  publish(topic: string, data: Buffer, isBinary: boolean): void;
  /** Registers the one receiver of messages published elsewhere. */
  onMessage(receiver: (topic: string, data: Buffer, isBinary: boolean) => void): void;
  close(): void;
}
