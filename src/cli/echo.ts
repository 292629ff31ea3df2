import { hrtime } from 'node:process';
import { Server } from '../server/server.js';
import { Supervisor, WorkerStartError, reusePortSupported } from '../server/supervisor.js';
import type { SupervisedInfo } from '../server/supervisor.js';
import { runSupervisedWorker, sendUser, workerIndex } from '../server/supervised.js';
import { DEFAULT_LIMITS } from '../limits.js';
import { installStatsSignal } from '../server/stats-signal.js';
import { UsageError } from './args.js';
import { DEFAULT_SEMI_SPACE_MIB, applySemiSpace, checkSemiSpace } from './young-generation.js';
import type { FlagSpec, FlagValues } from './args.js';
import type { Handlers } from '../server/options.js';
import type { Connection } from '../server/connection.js';
import type { Bus } from '../pubsub/bus.js';

export const echoFlags: Record<string, FlagSpec> = {
  port: { type: 'number', describe: 'TCP port to listen on (0 picks a free one)', default: 8080 },
  host: { type: 'string', describe: 'address to bind', default: '127.0.0.1' },
  'max-payload': { type: 'number', describe: 'largest message in bytes', default: DEFAULT_LIMITS.maxPayload },
  'max-backpressure': { type: 'number', describe: 'bytes queued per connection before reading pauses', default: 64 * 1024 * 1024 },
  mode: { type: 'string', describe: "echo, or broadcast (every connection in one topic; 'pub M S' publishes M binary messages of S bytes; 'sub K' moves a connection to topic K, 'pubt M S' publishes to every topic)", default: 'echo' },
  workers: { type: 'number', describe: 'server processes sharing the port (past one process\'s descriptor limit, onto every core)', default: 1 },
  'semi-space': { type: 'number', describe: "MiB of V8's young generation (per semi-space) in the processes that hold connections (0 = V8's own sizing)", default: DEFAULT_SEMI_SPACE_MIB },
  'ping-interval': { type: 'number', describe: 'ms between server pings to a quiet connection (0 = none; the million-socket harness turns them off)', default: DEFAULT_LIMITS.pingIntervalMs },
  'idle-timeout': { type: 'number', describe: 'ms of silence before a connection is closed (0 = never)', default: DEFAULT_LIMITS.idleTimeoutMs },
  'max-connections': { type: 'number', describe: 'open connections per process; beyond it the upgrade is answered 503 (0 = unlimited)', default: DEFAULT_LIMITS.maxConnections },
  'max-handshakes': { type: 'number', describe: 'sockets in the handshake at once; beyond it 503 and close (0 = unlimited)', default: DEFAULT_LIMITS.maxHandshakes },
  'max-handshakes-per-address': { type: 'number', describe: 'sockets from one address in the handshake at once; beyond it 429 and close (0 = unlimited)', default: DEFAULT_LIMITS.maxHandshakesPerAddress },
  'max-connections-per-address': { type: 'number', describe: 'sockets from one address at once; beyond it 429 and close (0 = unlimited)', default: DEFAULT_LIMITS.maxConnectionsPerAddress },
  'no-idle-gc': { type: 'boolean', describe: "keep V8's young generation at its grown size when the process goes quiet (by default one full GC after 5 s of quiet gives it back)" },
  'no-deflate': { type: 'boolean', describe: 'do not negotiate permessage-deflate (on by default: compressed messages are inflated under --max-payload, replies above 64 bytes compressed)' },
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
  checkEchoFlags(flags);
  const bad = checkSemiSpace(flags['semi-space']);
  if (bad !== null) throw new UsageError(`murmur echo: ${bad}`);
  const notice = applySemiSpace(flags['semi-space'] as number, workers);
  if (notice !== null) process.stderr.write(`murmur echo: ${notice}\n`);
  if (workerIndex() !== -1) {
    runEchoWorker(echoServer(flags));
    return;
  }
  if (workers > 1) {
    await runEchoSupervisor(flags, workers);
    return;
  }
  const server = echoServer(flags);
  pingTarget = server;
  const addr = await server.listen(flags.port as number, flags.host as string);
  // Before LISTENING: a harness signals as soon as it reads the line, and an unhandled SIGUSR2
  // ends the process.
  installStatsHandler(server);
  installStopHandlers(() => server.close());
  process.stdout.write(`LISTENING ${addr.port} transport=${server.transportKind}\n`);
}

/** @throws UsageError for a bad flag (checked before any fork). */
function checkEchoFlags(flags: FlagValues): void {
  const mode = flags.mode;
  if (mode !== 'echo' && mode !== 'broadcast') throw new UsageError(`murmur echo: --mode must be echo or broadcast, not '${String(mode)}'`);
  for (const name of ['ping-interval', 'idle-timeout', 'max-connections', 'max-handshakes', 'max-handshakes-per-address', 'max-connections-per-address']) {
    const v = flags[name] as number;
    if (!Number.isInteger(v) || v < 0) throw new UsageError(`murmur echo: --${name} must be a whole number >= 0`);
  }
}

/** The server of `murmur echo` as the (checked) flags ask. */
function echoServer(flags: FlagValues): Server {
  const maxPayload = flags['max-payload'] as number;
  return new Server({
    limits: {
      maxPayload,
      // Echo answers each message with one of the same size: let a whole maximum message
      // queue before reading pauses, so a conformance run never sees a drop.
      maxBackpressure: Math.max(flags['max-backpressure'] as number, maxPayload),
      pingIntervalMs: flags['ping-interval'] as number,
      idleTimeoutMs: flags['idle-timeout'] as number,
      maxConnections: flags['max-connections'] as number,
      maxHandshakes: flags['max-handshakes'] as number,
      maxHandshakesPerAddress: flags['max-handshakes-per-address'] as number,
      maxConnectionsPerAddress: flags['max-connections-per-address'] as number,
    },
    handlers: flags.mode === 'echo' ? echoHandlers : broadcastHandlers,
    perMessageDeflate: flags['no-deflate'] !== true,
    idleGc: flags['no-idle-gc'] !== true,
    bus: workerIndex() !== -1 ? new ControlBus(new RelayBus()) : undefined,
  });
}

/** Time every echo worker gets to close its connections on SIGTERM before it is killed. */
const ECHO_DRAIN_MS = 30_000;

/** One worker process of `murmur echo --workers N`: the server, on the supervisor's shared port. */
function runEchoWorker(server: Server): void {
  pingTarget = server;
  installStatsHandler(server);
  runSupervisedWorker({
    async start(_settings, _index, target) {
      const address = 'handle' in target ? await server.listen(0, undefined, { handle: target.handle, backlog: target.backlog }) : await server.listen(target.port, target.host, { reusePort: target.reusePort, backlog: target.backlog });
      return { address, handle: server.listeningHandle, info: server.transportKind };
    },
    stop: () => server.close(),
    stopTimeoutMs: () => ECHO_DRAIN_MS - 5_000,
    onMessage(m) {
      if (isRelayed(m)) relayReceiver?.(m.topic, Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength), m.binary);
    },
  });
}

/**
 * The supervisor of `murmur echo --workers N`: starts the workers on one port, relays publishes
 * between them, prints LISTENING once all listen; SIGUSR2 goes to every worker (each prints its
 * own STATS line), SIGTERM/SIGINT drain them all.
 */
async function runEchoSupervisor(flags: FlagValues, workers: number): Promise<void> {
  const group = new Supervisor({
    workers,
    module: process.argv[1]!,
    args: process.argv.slice(2),
    port: flags.port as number,
    host: flags.host as string,
    settings: () => null,
    drainTimeoutMs: ECHO_DRAIN_MS,
  });
  group.on('message', (from: number, m: unknown) => {
    // A worker that does not keep up loses relayed publishes beyond its unsent budget.
    if (!isRelayed(m)) return;
    const refused = group.broadcast(m, from, relayedBytes(m));
    if (refused === 0) return;
    relayStats.refused += refused;
    const now = Date.now();
    if (now - relayStats.loggedAt < 10_000) return;
    relayStats.loggedAt = now;
    process.stderr.write(`murmur echo: ${relayStats.refused} relayed publishes not delivered so far: a worker does not read its channel fast enough (64 MiB unsent)\n`);
  });
  process.on('SIGUSR2', () => group.signal('SIGUSR2'));
  installStopHandlers(() => group.shutdown());
  try {
    await group.start();
  } catch (err) {
    // A worker that cannot listen (port taken...): one line, as a single process says it.
    if (!(err instanceof WorkerStartError)) throw err;
    process.stderr.write(`murmur: ${err.message}\n`);
    process.exit(1);
  }
  const transport = String((group.list()[0] as SupervisedInfo).info);
  process.stdout.write(`LISTENING ${group.port} transport=${transport} workers=${workers} distribution=${reusePortSupported() ? 'reuseport' : 'shared-socket'}\n`);
}

/** A publish relayed between echo workers through the supervisor. */
interface Relayed {
  topic: string;
  data: Uint8Array;
  binary: boolean;
}

function isRelayed(m: unknown): m is Relayed {
  const r = m as Partial<Relayed> | null;
  return typeof r === 'object' && r !== null && typeof r.topic === 'string' && r.data instanceof Uint8Array && typeof r.binary === 'boolean';
}

/** What a relayed publish is counted as against an IPC budget: its payload and topic, plus framing. */
function relayedBytes(m: Relayed): number {
  return m.data.byteLength + m.topic.length + 64;
}

/**
 * Publishes of one echo worker on their way to the supervisor and not yet written to its
 * channel: beyond this, publishes are not relayed (counted in STATS as relay.dropped), so
 * clients publishing faster than the IPC channel drains cannot grow a worker's memory.
 */
const RELAY_MAX_UNSENT_BYTES = 64 * 1024 * 1024;

/** Relay counters: this worker's dropped publishes; in the supervisor, refused deliveries to workers. */
const relayStats = { unsent: 0, dropped: 0, refused: 0, loggedAt: 0 };

let relayReceiver: ((topic: string, data: Buffer, isBinary: boolean) => void) | null = null;

/** The bus of an echo worker: publishes go to the supervisor, which relays them to every other worker. */
class RelayBus implements Bus {
  publish(topic: string, data: Buffer, isBinary: boolean): void {
    const m: Relayed = { topic, data, binary: isBinary };
    const bytes = relayedBytes(m);
    if (relayStats.unsent + bytes > RELAY_MAX_UNSENT_BYTES) {
      relayStats.dropped++;
      return;
    }
    relayStats.unsent += bytes;
    void sendUser(m).then(() => {
      relayStats.unsent -= bytes;
    });
  }

  onMessage(receiver: (topic: string, data: Buffer, isBinary: boolean) => void): void {
    relayReceiver = receiver;
  }

  close(): void {
    relayReceiver = null;
  }
}

const echoHandlers: Handlers = {
  message(conn, data, isBinary) {
    conn.send(data, isBinary);
  },
};

const BROADCAST_TOPIC = 'broadcast';
/**
 * Messages and bytes that `pub`/`pubt` commands may have waiting to be published, all commands
 * of the process together: the benchmarks ask for 100 x 64 B; a command that would go beyond
 * what is left is ignored, so no number of commands can stall the process or fill memory.
 */
const MAX_PUB_MESSAGES = 100_000;
const MAX_PUB_BYTES = 64 * 1024 * 1024;
/**
 * Topic publishes made per loop turn for those commands (a `pubt` message counts once per
 * topic): 1,000 keeps a turn to a few milliseconds, and a benchmark's 100 messages still go
 * out in one turn, as one batch per subscriber.
 */
const PUB_SLICE = 1000;

/** One accepted `pub`/`pubt` command: `left` messages of `payload` still to publish. */
interface PubJob {
  server: Server;
  payload: Buffer;
  left: number;
  everyTopic: boolean;
}

/** The process-wide queue of pub commands, served in slices of PUB_SLICE publishes per turn. */
const pubQueue: PubJob[] = [];
let pubPendingMessages = 0;
let pubPendingBytes = 0;

/** Queues a pub command if it fits in what is left of the process-wide budget; else ignores it. */
function queuePub(server: Server, count: number, size: number, everyTopic: boolean): void {
  const bytes = count * (size + 14);
  if (size > server.limits.maxPayload || pubPendingMessages + count > MAX_PUB_MESSAGES || pubPendingBytes + bytes > MAX_PUB_BYTES) return;
  pubPendingMessages += count;
  pubPendingBytes += bytes;
  pubQueue.push({ server, payload: Buffer.alloc(size, 0x2a), left: count, everyTopic });
  // From a fresh turn, as the contract asks of every server.
  if (pubQueue.length === 1) setImmediate(drainPubQueue);
}

function drainPubQueue(): void {
  let budget = PUB_SLICE;
  while (budget > 0 && pubQueue.length > 0) {
    const job = pubQueue[0]!;
    const perMessage = job.everyTopic ? 1 + extraTopics.size : 1;
    const n = Math.min(job.left, Math.max(1, Math.floor(budget / perMessage)));
    for (let i = 0; i < n; i++) {
      job.server.publish(BROADCAST_TOPIC, job.payload, true);
      if (job.everyTopic) for (const topic of extraTopics) job.server.publish(topic, job.payload, true);
    }
    budget -= n * perMessage;
    job.left -= n;
    pubPendingMessages -= n;
    pubPendingBytes -= n * (job.payload.length + 14);
    if (job.left === 0) pubQueue.shift();
  }
  if (pubQueue.length > 0) setImmediate(drainPubQueue);
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
    // `pingall K`: every worker pings every open connection once (round K), see pingAll.
    const pa = /^pingall ([1-9]\d{0,8})$/.exec(text);
    if (pa !== null) {
      const round = Number(pa[1]);
      const bus = conn.server.bus;
      if (bus instanceof ControlBus) bus.sendControl(round);
      setImmediate(pingAll, round);
      return;
    }
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
    // `pub M S`: M messages of S bytes to the broadcast topic.
    const m = /^(pubt?) (\d{1,9}) (\d{1,9})$/.exec(text);
    if (m !== null) queuePub(conn.server, Number(m[2]), Number(m[3]), m[1] === 'pubt');
  },
  pong(_conn, data) {
    if (ping.doneNs !== 0 || ping.round === 0 || data.length !== ping.payload.length || !data.equals(ping.payload)) return;
    if (++ping.pongs === ping.pinged) finishPing(true);
  },
};

// ---- ping-all: how long a ping to every connection takes to come back ------------------------
//
// The million-socket harness (native-bench/ramp) measures the time for one server ping to reach
// every connection and its pong to return. A client sends `pingall K`; the worker that gets it
// tells the others over the worker bus (a control message, never a topic), and each worker pings
// its open connections with payload K and counts the pongs carrying K. Each worker prints one
// line `PINGS {json}` when all its pongs are in (or after PING_REPORT_MS with what it got);
// STATS carries the same counters. Times are process.hrtime (CLOCK_MONOTONIC: comparable across
// the processes of one machine). A round number already seen is ignored, so a relayed command
// cannot loop, and a client can make each worker send at most one ping per connection per round.

/** A ping round still missing pongs reports this long after it started. */
const PING_REPORT_MS = 120_000;

const ping = {
  round: 0,
  payload: Buffer.alloc(0),
  pinged: 0,
  pongs: 0,
  startNs: 0,
  sentNs: 0,
  doneNs: 0,
  timer: undefined as NodeJS.Timeout | undefined,
};

/** The server of this process: the one pingAll walks. */
let pingTarget: Server | null = null;

function pingAll(round: number): void {
  const server = pingTarget;
  if (server === null || round === ping.round) return;
  clearTimeout(ping.timer);
  ping.round = round;
  ping.payload = Buffer.from(String(round));
  ping.pinged = 0;
  ping.pongs = 0;
  ping.doneNs = 0;
  ping.startNs = Number(hrtime.bigint());
  server.forEachConnection((c: Connection) => {
    if (c.ping(ping.payload)) ping.pinged++;
  });
  ping.sentNs = Number(hrtime.bigint());
  if (ping.pinged === 0) {
    finishPing(true);
    return;
  }
  ping.timer = setTimeout(finishPing, PING_REPORT_MS, false);
  ping.timer.unref();
}

function finishPing(complete: boolean): void {
  clearTimeout(ping.timer);
  ping.doneNs = Number(hrtime.bigint());
  process.stdout.write(`PINGS ${JSON.stringify({ pid: process.pid, ...pingCounters(), complete })}\n`);
}

function pingCounters(): { round: number; pinged: number; pongs: number; startNs: number; sentNs: number; doneNs: number } {
  const { round, pinged, pongs, startNs, sentNs, doneNs } = ping;
  return { round, pinged, pongs, startNs, sentNs, doneNs };
}

/** Bus "topic" of the ping-all control message: not a name a client can subscribe to. */
const CONTROL_PING = '\u0000murmur:pingall';

/** The worker bus, plus the ping-all control message (handled here, never published to a topic). */
class ControlBus implements Bus {
  private readonly inner: Bus;

  constructor(inner: Bus) {
    this.inner = inner;
  }

  sendControl(round: number): void {
    this.inner.publish(CONTROL_PING, Buffer.from(String(round)), false);
  }

  publish(topic: string, data: Buffer, isBinary: boolean): void {
    this.inner.publish(topic, data, isBinary);
  }

  onMessage(receiver: (topic: string, data: Buffer, isBinary: boolean) => void): void {
    this.inner.onMessage((topic, data, isBinary) => {
      if (topic !== CONTROL_PING) {
        receiver(topic, data, isBinary);
        return;
      }
      const round = Number(data.toString('latin1'));
      if (Number.isInteger(round) && round > 0) setImmediate(pingAll, round);
    });
  }

  close(): void | Promise<void> {
    return this.inner.close();
  }
}

/** SIGUSR2: one `STATS {json}` line (the benchmark contract), with echo's ping and relay counters. */
export function installStatsHandler(server: Server<never> | Server<unknown>): void {
  installStatsSignal(() => server, () => ({ pings: pingCounters(), relay: { dropped: relayStats.dropped, unsentBytes: relayStats.unsent } }));
}

/** SIGTERM and SIGINT: close gracefully once, then exit. */
function installStopHandlers(close: () => Promise<void>): void {
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
