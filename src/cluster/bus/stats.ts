/**
 * Counters every bus transport keeps, for metrics. All are monotonic except the gauges
 * (`linksUp`, and the transport's own gauges where marked).
 */
export interface BusStats {
  /** Message copies handed to the transport: one per peer link (mesh), one per PUBLISH (redis). */
  messagesSent: number;
  bytesSent: number;
  /** Messages from other nodes handed to local fan-out. */
  messagesReceived: number;
  bytesReceived: number;
  /** Messages not sent or lost: a link over its byte budget, data lost with a link that closed, Redis unreachable or over budget. */
  dropped: number;
  droppedBytes: number;
  /** Gauge: mesh: outbound links open and synced; redis: connections ready (0-2). */
  linksUp: number;
  /** Link requests refused for their credentials (mesh); Redis authentication errors (redis). */
  authFailures: number;
  /** Links (mesh) or Redis connections re-established after a drop. */
  reconnects: number;
  /** Links closed, or Redis messages ignored, for malformed or hostile input. */
  protocolErrors: number;
}

export function newBusStats(): BusStats {
  return {
    messagesSent: 0,
    bytesSent: 0,
    messagesReceived: 0,
    bytesReceived: 0,
    dropped: 0,
    droppedBytes: 0,
    linksUp: 0,
    authFailures: 0,
    reconnects: 0,
    protocolErrors: 0,
  };
}

/** Logs a line at most once per `intervalMs` per key: a peer refused every 100 ms must not flood stderr. */
export class LogLimiter {
  readonly #last = new Map<string, number>();
  readonly #log: (line: string) => void;
  readonly #intervalMs: number;

  constructor(log: (line: string) => void, intervalMs = 10_000) {
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  line(key: string, text: string): void {
    const now = Date.now();
    const last = this.#last.get(key);
    if (last !== undefined && now - last < this.#intervalMs) return;
    if (this.#last.size > 1000) this.#last.clear();
    this.#last.set(key, now);
    this.#log(text);
  }

  /** Logs now and forgets the key's quiet period (state changes are always worth a line). */
  always(key: string, text: string): void {
    this.#last.delete(key);
    this.#log(text);
  }
}

export function defaultLog(line: string): void {
  process.stderr.write(`${line}\n`);
}
