/**
 * Cross-node delivery for `murmur serve`: what a node puts on the cluster bus (src/cluster/bus)
 * and what it does with what arrives.
 *
 * The bus does not carry the envelope a node sends its own clients: that envelope holds the
 * publishing node's history position ({epoch, offset}), which means nothing elsewhere. It
 * carries the message itself — who published it and the payload, as a small record — and
 * every receiving node wraps it in its own envelope, with a position in its own history, and
 * fans it out to its local subscribers only. So history and recovery stay correct per node
 * (a client that moves to another node is told to resync, never given offsets of a history
 * that node does not have), and nothing received is ever sent back onto the bus.
 *
 * Record (the bus's payload, always binary): [u8 version = 1][u8 flags][u16 BE fromLength]
 * [from, UTF-8][payload]. flags bit 0: the payload is binary (else JSON text, the data
 * already serialised). A record that does not decode is dropped and counted.
 */
import type { Bus, BusInterest } from '../server/bus.js';
import type { BusStats } from '../cluster/bus/stats.js';
import { LogLimiter, defaultLog } from '../cluster/bus/stats.js';

export const BUS_RECORD_VERSION = 1;
const FLAG_BINARY = 1;
/** Longest publisher id in bytes: the protocol allows 128 characters, up to 4 UTF-8 bytes each. */
const MAX_FROM_BYTES = 512;
const HEADER_BYTES = 4;

export type BusKind = 'mesh' | 'redis' | 'none';

/** What a node receives from the bus, decoded. */
export interface RemotePublish {
  topic: string;
  from: string;
  /** JSON text (the data, serialised) or bytes. */
  payload: string | Buffer;
}

export function encodeBusRecord(from: string, payload: string | Buffer): Buffer {
  const fromBytes = Buffer.from(from, 'utf8');
  if (fromBytes.length > MAX_FROM_BYTES) throw new RangeError(`publisher id over ${MAX_FROM_BYTES} bytes`);
  const isBinary = typeof payload !== 'string';
  const body = isBinary ? payload : Buffer.from(payload, 'utf8');
  const out = Buffer.allocUnsafe(HEADER_BYTES + fromBytes.length + body.length);
  out[0] = BUS_RECORD_VERSION;
  out[1] = isBinary ? FLAG_BINARY : 0;
  out.writeUInt16BE(fromBytes.length, 2);
  fromBytes.copy(out, HEADER_BYTES);
  body.copy(out, HEADER_BYTES + fromBytes.length);
  return out;
}

/** Decodes a record; null when it is not one (wrong version, truncated, unknown flags, bad UTF-8). */
export function decodeBusRecord(topic: string, data: Buffer): RemotePublish | null {
  if (data.length < HEADER_BYTES || data[0] !== BUS_RECORD_VERSION) return null;
  const flags = data[1]!;
  if ((flags & ~FLAG_BINARY) !== 0) return null;
  const fromLength = data.readUInt16BE(2);
  if (fromLength === 0 || fromLength > MAX_FROM_BYTES || data.length < HEADER_BYTES + fromLength) return null;
  const fromBytes = data.subarray(HEADER_BYTES, HEADER_BYTES + fromLength);
  const body = data.subarray(HEADER_BYTES + fromLength);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  try {
    const from = decoder.decode(fromBytes);
    const payload = (flags & FLAG_BINARY) !== 0 ? Buffer.from(body) : decoder.decode(body);
    return { topic, from, payload };
  } catch {
    return null;
  }
}

export interface BusRelayStats {
  /** Records handed to the bus. */
  sent: number;
  /** Records received and delivered locally. */
  received: number;
  /** Records received that did not decode (another version, or damage). */
  rejected: number;
}

/**
 * Adapts a cluster Bus to the app: the app's publishes go out as records, what comes in is
 * handed to `receive`. It is also the Bus attached to the murmur Server, so that the server's
 * topic interest (first subscriber, last unsubscribe) reaches buses that forward by interest;
 * the server itself never publishes through it (the app fans out locally on its own).
 */
export class BusRelay implements Bus {
  readonly kind: Exclude<BusKind, 'none'>;
  readonly bus: Bus;
  /** The transport's own counters (links, drops, reconnects). */
  readonly busStats: BusStats;
  readonly stats: BusRelayStats;
  #receive: (msg: RemotePublish) => void;
  readonly #log: LogLimiter;

  /** `log` gets a line (at most one per 10 s) when records from other nodes do not decode. */
  constructor(kind: Exclude<BusKind, 'none'>, bus: Bus & { readonly stats: BusStats }, receive: (msg: RemotePublish) => void, log: (line: string) => void = defaultLog) {
    this.kind = kind;
    this.bus = bus;
    this.busStats = bus.stats;
    this.stats = { sent: 0, received: 0, rejected: 0 };
    this.#receive = receive;
    this.#log = new LogLimiter(log);
    bus.onMessage((topic, data) => {
      const msg = decodeBusRecord(topic, data);
      if (msg === null) {
        // Every node checks names where they enter, so this is another version or damage.
        this.stats.rejected++;
        this.#log.line('rejected', `[murmur] bus: dropped a record from another node that does not decode (${this.stats.rejected} so far)`);
        return;
      }
      this.stats.received++;
      this.#receive(msg);
    });
  }

  /** Sends a message published on this node to the other nodes (those that want the topic). */
  send(topic: string, from: string, payload: string | Buffer): void {
    this.bus.publish(topic, encodeBusRecord(from, payload), true);
    this.stats.sent++;
  }

  // The Bus interface, as the Server sees it: interest flows through, messages do not.
  publish(): void {
    // The server's own publishes (server.publish, conn.publish) are local-only in the app:
    // the app sends records itself, with the publisher, through send().
  }

  onMessage(): void {
    // Incoming messages go to the app (constructor), not to the server's Topics directly.
  }

  watchInterest(interest: BusInterest): void {
    this.bus.watchInterest?.(interest);
  }

  interestChanged(topic: string, interested: boolean): void {
    this.bus.interestChanged?.(topic, interested);
  }

  close(): void | Promise<void> {
    return this.bus.close();
  }
}
