import { getHeapSpaceStatistics } from 'node:v8';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Server } from '../server/server.js';
import { WorkerBus, runPrimary, reportWorkerReady, reusePortSupported, isPrimary, isWorker } from '../server/workers.js';
import { DEFAULT_LIMITS } from '../limits.js';
import { UsageError } from './args.js';
import type { FlagSpec, FlagValues } from './args.js';
import type { Handlers } from '../server/options.js';

export const echoFlags: Record<string, FlagSpec> = {
  port: { type: 'number', describe: 'TCP port to listen on (0 picks a free one)', default: 8080 },
  host: { type: 'string', describe: 'address to bind', default: '127.0.0.1' },
  'max-payload': { type: 'number', describe: 'largest message in bytes', default: DEFAULT_LIMITS.maxPayload },
  'max-backpressure': { type: 'number', describe: 'bytes queued per connection before reading pauses', default: 64 * 1024 * 1024 },
  mode: { type: 'string', describe: "echo, or broadcast (every connection in one topic; 'pub M S' publishes M binary messages of S bytes; 'sub K' moves a connection to topic K, 'pubt M S' publishes to every topic)", default: 'echo' },
  workers: { type: 'number', describe: 'server processes sharing the port (past one process\'s descriptor limit, onto every core)', default: 1 },
  help: { type: 'boolean', describe: 'show this help' },
};

/**
 * `murmur echo`: every data message goes back unchanged with the same opcode. The server
 * that conformance suites and benchmarks start. Prints `LISTENING <port>` when ready; on
 * SIGUSR2 prints `STATS {json}` (after a full GC when run with --expose-gc); SIGTERM and
 * SIGINT close gracefully.
 */
export async function runEcho(flags: FlagValues): Promise<void> {
  const workers = flags.workers as number;
  if (!Number.isInteger(workers) || workers < 1) throw new UsageError('murmur echo: --workers must be a whole number >= 1');
  if (workers > 1 && isPrimary()) {
    await runEchoPrimary(flags, workers);
    return;
  }
  const mode = flags.mode;
  if (mode !== 'echo' && mode !== 'broadcast') throw new UsageError(`murmur echo: --mode must be echo or broadcast, not '${String(mode)}'`);
  const maxPayload = flags['max-payload'] as number;
  const server = new Server({
    limits: {
      maxPayload,
      // Echo answers each message with one of the same size: let a whole maximum message
      // queue before reading pauses, so a conformance run never sees a drop.
      maxBackpressure: Math.max(flags['max-backpressure'] as number, maxPayload),
    },
    handlers: mode === 'echo' ? echoHandlers : broadcastHandlers,
    bus: isWorker() ? new WorkerBus() : undefined,
  });
  if (isWorker()) {
    const port = Number(process.env.MURMUR_WORKER_PORT ?? flags.port);
    const addr = await server.listen(port, flags.host as string, { reusePort: reusePortSupported() });
    installProcessHandlers(server);
    reportWorkerReady(addr.port, server.transportKind);
    return;
  }
  const addr = await server.listen(flags.port as number, flags.host as string);
  process.stdout.write(`LISTENING ${addr.port} transport=${server.transportKind}\n`);
  installProcessHandlers(server);
}

/** The primary of `murmur echo --workers N`: forks, relays publishes, prints LISTENING once all listen. */
async function runEchoPrimary(flags: FlagValues, workers: number): Promise<void> {
  let port = flags.port as number;
  // With SO_REUSEPORT every worker binds on its own: port 0 must be resolved once, here.
  if (port === 0 && reusePortSupported()) port = await freePort(flags.host as string);
  await runPrimary({
    workers,
    env: { MURMUR_WORKER_PORT: String(port) },
    onReady: (p, transport) =>
      process.stdout.write(`LISTENING ${p} transport=${transport} workers=${workers} distribution=${reusePortSupported() ? 'reuseport' : 'shared-socket'}\n`),
  });
  process.exit(0);
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

const echoHandlers: Handlers = {
  message(conn, data, isBinary) {
    conn.send(data, isBinary);
  },
};

const BROADCAST_TOPIC = 'broadcast';
/**
 * A `pub`/`pubt` command may ask for at most this many messages and this many bytes in all:
 * the benchmarks ask for 100 x 64 B; anything near these bounds is a mistake or an attack,
 * and is ignored rather than allowed to stall the process or fill memory.
 */
const MAX_PUB_MESSAGES = 100_000;
const MAX_PUB_BYTES = 64 * 1024 * 1024;

function pubAllowed(count: number, size: number, maxPayload: number): boolean {
  return count <= MAX_PUB_MESSAGES && size <= maxPayload && count * (size + 14) <= MAX_PUB_BYTES;
}

/** Topics some connection joined with `sub K` (the many-topics extension of broadcast mode). */
const extraTopics = new Set<string>();

/** The benchmark contract's broadcast mode, on the public pub/sub API. */
const broadcastHandlers: Handlers = {
  open(conn) {
    conn.subscribe(BROADCAST_TOPIC);
  },
  message(conn, data, isBinary) {
    if (isBinary || data.length > 64) return;
    const text = data.toString('latin1');
    // `sub K`: leave the default topic for topic K, then answer with the same text.
    const sub = /^sub (\d{1,6})$/.exec(text);
    if (sub !== null) {
      const topic = `t:${sub[1]}`;
      conn.unsubscribe(BROADCAST_TOPIC);
      conn.subscribe(topic);
      extraTopics.add(topic);
      conn.send(text, false);
      return;
    }
    // `pubt M S`: M messages of S bytes to every topic, message by message across the topics.
    const pubt = /^pubt (\d{1,9}) (\d{1,9})$/.exec(text);
    if (pubt !== null) {
      const count = Number(pubt[1]);
      const size = Number(pubt[2]);
      if (!pubAllowed(count, size, conn.server.limits.maxPayload)) return;
      setImmediate(() => {
        const payload = Buffer.alloc(size, 0x2a);
        for (let i = 0; i < count; i++) {
          conn.server.publish(BROADCAST_TOPIC, payload, true);
          for (const topic of extraTopics) conn.server.publish(topic, payload, true);
        }
      });
      return;
    }
    const m = /^pub (\d{1,9}) (\d{1,9})$/.exec(text);
    if (m === null) return;
    const count = Number(m[1]);
    const size = Number(m[2]);
    if (!pubAllowed(count, size, conn.server.limits.maxPayload)) return;
    // From a fresh tick, as the contract asks of every server.
    setImmediate(() => {
      const payload = Buffer.alloc(size, 0x2a);
      for (let i = 0; i < count; i++) conn.server.publish(BROADCAST_TOPIC, payload, true);
    });
  },
};

export function installProcessHandlers(server: Server<never> | Server<unknown>): void {
  process.on('SIGUSR2', () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    // Twice, as the rivals' scripts do: the second pass frees what the first only unlinked.
    if (gc !== undefined) {
      gc();
      gc();
    }
    const spaces: Record<string, number> = {};
    for (const sp of getHeapSpaceStatistics()) spaces[sp.space_name] = sp.physical_space_size;
    const stats = { ...process.memoryUsage(), connections: server.openCount, transport: server.transportKind, spaces };
    process.stdout.write(`STATS ${JSON.stringify(stats)}\n`);
  });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
