import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import type { Bus } from './bus.js';

/**
 * Worker processes: one machine, N processes, one port. Connections are spread by the
 * kernel: with SO_REUSEPORT where Node exposes it (listen({ reusePort }) from Node 22.12/23.1:
 * every worker binds its own socket and the kernel balances new connections), otherwise
 * through one listening socket shared by all workers (node:cluster's SCHED_NONE: the primary
 * never touches a connection, and each worker accepts on the real TCP handle, so the lean
 * transport works there too). Publishes reach every worker through the primary (IPC).
 */

/** Whether this Node's net.Server.listen accepts `reusePort`. */
export function reusePortSupported(): boolean {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return major >= 23 || (major === 22 && minor >= 12);
}

interface PubMessage {
  murmur: 'pub';
  topic: string;
  data: Uint8Array;
  binary: boolean;
}

interface ReadyMessage {
  murmur: 'ready';
  port: number;
  transport: string;
}

function isMurmurMessage(m: unknown): m is PubMessage | ReadyMessage {
  return typeof m === 'object' && m !== null && typeof (m as { murmur?: unknown }).murmur === 'string';
}

/** The bus of a worker: publishes go to the primary, which relays them to every other worker. */
export class WorkerBus implements Bus {
  private receiver: ((topic: string, data: Buffer, isBinary: boolean) => void) | null = null;
  private readonly onIpc = (m: unknown): void => {
    if (!isMurmurMessage(m) || m.murmur !== 'pub' || this.receiver === null) return;
    const d = m.data;
    this.receiver(m.topic, Buffer.from(d.buffer, d.byteOffset, d.byteLength), m.binary);
  };

  constructor() {
    process.on('message', this.onIpc);
  }

  publish(topic: string, data: Buffer, isBinary: boolean): void {
    const msg: PubMessage = { murmur: 'pub', topic, data, binary: isBinary };
    process.send?.(msg);
  }

  onMessage(receiver: (topic: string, data: Buffer, isBinary: boolean) => void): void {
    this.receiver = receiver;
  }

  close(): void {
    process.off('message', this.onIpc);
  }
}

export interface PrimaryOptions {
  workers: number;
  /** Extra environment for the workers. */
  env?: Record<string, string>;
  /** Called once every worker listens (with the port and transport the first one reported). */
  onReady?(port: number, transport: string): void;
  log?(line: string): void;
}

/**
 * Runs in the primary: forks the workers, relays publishes between them, restarts a worker
 * that dies unexpectedly (with backoff), and on SIGTERM/SIGINT asks every worker to drain and
 * exits when all are gone. Resolves when the workers have exited.
 */
export function runPrimary(options: PrimaryOptions): Promise<void> {
  const log = options.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  // Structured clone over IPC: Buffers cross as bytes, not as JSON arrays.
  cluster.setupPrimary({ serialization: 'advanced' });
  if (!reusePortSupported()) cluster.schedulingPolicy = cluster.SCHED_NONE;
  const workers = new Set<Worker>();
  let stopping = false;
  let ready = 0;
  let firstPort = -1;
  let firstTransport = '';
  let restarts = 0;

  const relay = (from: Worker, m: unknown): void => {
    if (!isMurmurMessage(m)) return;
    if (m.murmur === 'ready') {
      if (firstPort === -1) {
        firstPort = m.port;
        firstTransport = m.transport;
      }
      if (++ready === options.workers) options.onReady?.(firstPort, firstTransport);
      return;
    }
    for (const w of workers) if (w !== from && w.isConnected()) w.send(m);
  };

  const fork = (): void => {
    const w = cluster.fork({ ...options.env, MURMUR_WORKER: '1' });
    workers.add(w);
    w.on('message', (m: unknown) => relay(w, m));
    w.on('exit', (code, signal) => {
      workers.delete(w);
      if (stopping) {
        if (workers.size === 0) done();
        return;
      }
      restarts++;
      const delay = Math.min(30_000, 250 * 2 ** Math.min(restarts, 7));
      log(`[murmur] worker ${w.process.pid} exited (${signal ?? code}); starting another in ${delay} ms`);
      setTimeout(fork, delay).unref();
    });
  };

  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => (done = resolve));
  for (let i = 0; i < options.workers; i++) fork();

  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    if (workers.size === 0) done();
    for (const w of workers) w.process.kill('SIGTERM');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // STATS on SIGUSR2 goes to every worker (each prints its own line).
  process.on('SIGUSR2', () => {
    for (const w of workers) w.process.kill('SIGUSR2');
  });
  return finished;
}

/** Called in a worker once its server listens, so the primary can report readiness. */
export function reportWorkerReady(port: number, transport: string): void {
  const msg: ReadyMessage = { murmur: 'ready', port, transport };
  process.send?.(msg);
}

export const isWorker = (): boolean => cluster.isWorker;
export const isPrimary = (): boolean => cluster.isPrimary;
