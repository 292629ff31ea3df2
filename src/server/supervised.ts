/**
 * The worker side of supervisor.ts: waits for its settings over IPC, starts the caller's
 * server on the shared port (a handed listening socket, or its own with reusePort), reports
 * ready (handing its socket back when asked), answers the supervisor's questions, and drains
 * on 'shutdown', SIGTERM or when the supervisor goes away: it never outlives it.
 */
import type { SendHandle, Serializable } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { isOp, START_TIMEOUT_MS, WORKER_ENV } from './supervisor.js';
import type { ToSupervisor, ToWorker } from './supervisor.js';

/** Where a worker listens: the socket the supervisor handed over, or a port of its own. */
export type ListenTarget = { handle: object; backlog: number } | { port: number; host: string; reusePort: boolean; backlog: number };

/** What runs in a supervised worker process. */
export interface WorkerBody {
  /**
   * Starts serving on `target`; resolves with the address, the listening handle (to share
   * with the other workers) and details for the supervisor's 'worker' event.
   */
  start(settings: unknown, index: number, target: ListenTarget): Promise<{ address: AddressInfo; handle: object | null; info?: unknown }>;
  /** Drains and closes (resolves when done); the process then exits. */
  stop(): Promise<void>;
  /** Time stop() gets before the process exits anyway. */
  stopTimeoutMs(): number;
  /** The answer to a supervisor's question (Supervisor.ask). */
  answer?(what: string): unknown;
  /** A message of the caller's from the supervisor (Supervisor.send/broadcast). */
  onMessage?(body: unknown): void;
}

/** The index of this process in its group, or -1 when it is not a supervised worker. */
export function workerIndex(): number {
  const v = process.env[WORKER_ENV];
  return v !== undefined && process.send !== undefined && /^\d+$/.test(v) ? Number(v) : -1;
}

/** Sends to the supervisor; resolves once it is written (or at once when the channel is gone). */
export function sendToSupervisor(m: ToSupervisor, handle?: unknown): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) return resolve();
    process.send(m as Serializable, handle as SendHandle | undefined, {}, () => resolve());
  });
}

/** Sends a message of the caller's to the supervisor (its 'message' event). */
export function sendUser(body: unknown): Promise<void> {
  return sendToSupervisor({ op: 'user', body });
}

/**
 * Runs this process as a supervised worker. One message listener for the whole life of the
 * process: a message that arrives while none is attached is lost, and 'shutdown' may come at
 * any point of the start.
 */
/**
 * A reader of this process's stdout or stderr that went away (`murmur serve | head`, a log
 * collector that died) must not take a server down with it: what is written there is lost,
 * the service goes on. Any other error on them still throws.
 */
export function survivePipes(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
    });
  }
}

export function runSupervisedWorker(body: WorkerBody): void {
  survivePipes();
  // Not handed down to the processes this one may start.
  delete process.env[WORKER_ENV];
  let index = -1;
  let listening = false;
  let stopRequested = false;
  let stopping = false;
  const startTimer = setTimeout(() => process.exit(1), START_TIMEOUT_MS);

  const stop = (): void => {
    stopRequested = true;
    // Not started yet: nothing to drain. Starting: stop once listening (start() checks).
    if (index === -1) process.exit(0);
    if (!listening || stopping) return;
    stopping = true;
    setTimeout(() => process.exit(1), body.stopTimeoutMs()).unref();
    body.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };

  const start = async (init: Extract<ToWorker, { op: 'init' }>, handle: unknown): Promise<void> => {
    index = init.index;
    try {
      const l = init.listen;
      const target: ListenTarget = l.kind === 'handle' ? { handle: handle as object, backlog: l.backlog } : { port: l.port, host: l.host, reusePort: l.reusePort, backlog: l.backlog };
      const { address, handle: own, info } = await body.start(init.settings, index, target);
      clearTimeout(startTimer);
      listening = true;
      await sendToSupervisor({ op: 'ready', index, port: address.port, address: address.address, family: address.family, info }, init.shareHandle ? own : undefined);
    } catch (err) {
      await sendToSupervisor({ op: 'failed', index, message: (err as Error).message });
      process.exit(1);
    }
    if (stopRequested) stop();
  };

  process.on('message', (m: unknown, handle: unknown) => {
    if (!isOp<ToWorker>(m)) return;
    switch (m.op) {
      case 'init':
        if (index === -1) void start(m, handle);
        return;
      case 'ask':
        if (listening) void sendToSupervisor({ op: 'answer', id: m.id, value: body.answer?.(m.what) ?? null });
        return;
      case 'user':
        body.onMessage?.(m.body);
        return;
      case 'shutdown':
        stop();
        return;
    }
  });
  // The supervisor went away (killed): do not outlive it.
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  // Ctrl-C reaches every process of the group: the supervisor decides, and tells the workers.
  process.on('SIGINT', () => {});
}
