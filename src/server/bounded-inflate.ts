/**
 * Inflation of large compressed messages (RFC 7692) without stalling the event loop.
 *
 * A message whose inflated form passes `PROCESS_LIMITS.inflateSyncBytes` leaves the one-call
 * synchronous path (deflate.ts) for a job here. Jobs run under a process-wide cap
 * (`maxInflations`) and wait beyond it in a bounded FIFO (`maxQueuedInflations`); a job that
 * finds the queue full is refused, and its connection is failed with 1013. Two engines behind
 * one interface; 'chunked' by measurement (docs/compression.md: half the CPU of 'thread' per
 * message, and with a worker process per core there is no idle core for the threadpool):
 *
 * - 'chunked': zlib's synchronous engine on the event loop, in slices of `inflateSyncBytes` of
 *   output, the running jobs in turn, for at most `inflateTurnMs` (plus one slice) per turn of
 *   the loop; setImmediate between turns. Falls back to 'thread' where node:zlib lacks the
 *   internal call it needs.
 * - 'thread': zlib's asynchronous API on the libuv threadpool, `inflateSyncBytes` of output per
 *   round trip; the event loop only copies the output into place.
 *
 * Either way the output is bounded while it is made (1009 once it passes maxPayload), a
 * cancelled job gives back its slot, its context and its output at once (a threadpool round
 * trip in flight finishes first, into memory freed with it), and the result always arrives
 * asynchronously, never from inside submit().
 */
import { createInflateRaw, constants } from 'node:zlib';
import { Buffer, kMaxLength } from 'node:buffer';
import type { InflateRaw } from 'node:zlib';
import type { ProtocolError } from '../protocol/index.js';
import { PROCESS_LIMITS } from '../limits.js';
import { withTail, inflateTooBig, inflateInvalid, inflateDone, inflateJobs } from './deflate.js';

export { inflateJobs };

/** What waits for a job's result. */
export interface InflateSink {
  /** The inflated message, or the error to fail the connection with. Called once, unless the job was cancelled. */
  inflated(result: Buffer | ProtocolError): void;
}

/** The side of a connection (server or client) whose reading waits for an inflation. */
export interface InflateOwner {
  /** The message `wait` stood for is inflated (or failed): deliver it, then read on from `wait`'s held bytes. */
  inflated(wait: InflateWait, result: Buffer | ProtocolError): void;
}

/**
 * A connection whose reading waits for a large message's inflation: the job, the message's
 * kind, and the bytes read behind it (a copy), to be parsed once it is delivered. About 40
 * bytes, plus what it holds (at most inflateReadAhead and one read).
 */
export class InflateWait implements InflateSink {
  readonly owner: InflateOwner;
  readonly isBinary: boolean;
  job: InflateJob | null;
  rest: Buffer | null;

  constructor(owner: InflateOwner, isBinary: boolean) {
    this.owner = owner;
    this.isBinary = isBinary;
    this.job = null;
    this.rest = null;
  }

  /**
   * Keeps the unread end of a chunk (appended to what is held). Returns true once the held
   * bytes reach PROCESS_LIMITS.inflateReadAhead: reading must pause until the delivery. Below
   * it reading goes on, so a peer's FIN or reset during the inflation is seen (and frees it).
   */
  hold(chunk: Buffer, from: number): boolean {
    if (from < chunk.length) {
      // A copy: the chunk may be the transport's shared read buffer.
      const tail = chunk.subarray(from);
      this.rest = this.rest === null ? Buffer.from(tail) : Buffer.concat([this.rest, tail]);
    }
    return this.rest !== null && this.rest.length >= PROCESS_LIMITS.inflateReadAhead;
  }

  /** Takes the held bytes (null when none). */
  takeRest(): Buffer | null {
    const rest = this.rest;
    this.rest = null;
    return rest;
  }

  inflated(result: Buffer | ProtocolError): void {
    this.job = null;
    this.owner.inflated(this, result);
  }

  /** The connection went away: the job and what is held are dropped. */
  cancel(): void {
    if (this.job !== null) cancelInflate(this.job);
    this.job = null;
    this.rest = null;
  }
}

/**
 * Starts inflating one large message for `owner` (a copy of `data` is taken). Returns the wait
 * to hold the connection's later bytes in, or null when the queue is full (the caller fails
 * the connection with WS_ERR_INFLATE_BUSY, 1013).
 */
export function inflateLater(owner: InflateOwner, data: Buffer, maxPayload: number, dictionary: Buffer | undefined, isBinary: boolean): InflateWait | null {
  const wait = new InflateWait(owner, isBinary);
  const job = new InflateJob(data, maxPayload, dictionary, wait);
  if (!submitInflate(job)) return null;
  wait.job = job;
  return wait;
}

/** 'sync': every message in one call, as before bounded inflation (benchmarks compare against it). */
export type InflateMode = 'thread' | 'chunked' | 'sync';

/** The process-wide settings of large inflations: tests and benchmarks change them. */
export const inflateSettings: { mode: InflateMode; maxInflations: number; maxQueuedInflations: number; sliceBytes: number; turnMs: number } = {
  mode: 'chunked',
  maxInflations: PROCESS_LIMITS.maxInflations,
  maxQueuedInflations: PROCESS_LIMITS.maxQueuedInflations,
  sliceBytes: PROCESS_LIMITS.inflateSyncBytes,
  turnMs: PROCESS_LIMITS.inflateTurnMs,
};

const J_QUEUED = 0;
const J_RUNNING = 1;
const J_OVER = 2;
/** The 4 octets withTail() appends (RFC 7692 7.2.2). */
const TAIL_LENGTH = 4;

/**
 * One large message being inflated. What it holds: the compressed bytes with their 4-byte
 * tail (a copy: the frame's bytes belong to the transport) and, while it runs, one zlib
 * inflate context (about 7 KiB plus its 32 KiB window), its output buffer of maxPayload + 1
 * bytes (allocated, not touched: the pages the output reaches are what it costs) and, in
 * 'thread' mode, one output slice on its way. The output is written in place, slice by slice,
 * so the turn that delivers the message copies nothing (a 16 MiB concatenation of slices,
 * page faults included, stalls the loop 10-15 ms on the loaded test machine).
 */
export class InflateJob {
  state: number;
  readonly input: Buffer;
  readonly maxPayload: number;
  readonly dictionary: Buffer | undefined;
  sink: InflateSink | null;
  engine: InflateRaw | null;
  /** The output, maxPayload + 1 bytes (one more than allowed says "too big"), once running. */
  out: Buffer | null;
  length: number;
  /** 'chunked': input bytes consumed so far. */
  inputOffset: number;

  constructor(data: Buffer, maxPayload: number, dictionary: Buffer | undefined, sink: InflateSink) {
    this.state = J_QUEUED;
    this.input = withTail(data);
    this.maxPayload = maxPayload;
    this.dictionary = dictionary;
    this.sink = sink;
    this.engine = null;
    this.out = null;
    this.length = 0;
    this.inputOffset = 0;
  }
}

const queue: InflateJob[] = [];
let queueHead = 0;
/** 'chunked': the jobs taking turns, and whether a turn is scheduled. */
const turns: InflateJob[] = [];
let turnIndex = 0;
let turnScheduled = false;

/**
 * Starts `job` now, or queues it behind the cap. Returns false when the queue is full (the job
 * is dropped: the caller fails the connection with 1013).
 */
export function submitInflate(job: InflateJob): boolean {
  if (inflateJobs.running < inflateSettings.maxInflations) {
    start(job);
    return true;
  }
  if (inflateJobs.queued >= inflateSettings.maxQueuedInflations) {
    inflateJobs.refused++;
    job.state = J_OVER;
    job.sink = null;
    return false;
  }
  inflateJobs.queued++;
  queue.push(job);
  return true;
}

/** Forgets a job whose connection went away: frees its slot, context and output at once. */
export function cancelInflate(job: InflateJob): void {
  if (job.state === J_OVER) return;
  const wasRunning = job.state === J_RUNNING;
  // A queued job stays in the array until the queue reaches it (skipped there): O(1) here.
  if (!wasRunning) inflateJobs.queued--;
  end(job);
  if (wasRunning) next();
}

function start(job: InflateJob): void {
  job.state = J_RUNNING;
  inflateJobs.running++;
  inflateJobs.started++;
  // 'chunked' needs node:zlib's internal handle (see ZlibHandle); without it, the threadpool.
  const thread = inflateSettings.mode === 'thread' || !canSlice();
  // A 15-bit window reads whatever window the peer used (8..15). The stream's own output
  // buffer serves only the threadpool; on the loop zlib writes into job.out.
  const chunkSize = thread ? inflateSettings.sliceBytes : constants.Z_MIN_CHUNK;
  const engine = createInflateRaw({ windowBits: 15, chunkSize, finishFlush: constants.Z_SYNC_FLUSH, dictionary: job.dictionary });
  job.engine = engine;
  // One byte more than allowed says "too big" (a Buffer cannot be longer than kMaxLength).
  job.out = Buffer.allocUnsafe(Math.min(job.maxPayload + 1, kMaxLength));
  if (thread) startThread(job, engine);
  else {
    // Errors reach us through engine.destroyed after each call; the event that follows is not ours.
    engine.on('error', ignore);
    turns.push(job);
    scheduleTurn();
  }
}

let sliceable: boolean | undefined;

/** Whether this Node's zlib streams have the internal call 'chunked' slices with (asked once). */
function canSlice(): boolean {
  if (sliceable === undefined) {
    const probe = createInflateRaw({ chunkSize: constants.Z_MIN_CHUNK });
    const internal = probe as unknown as Partial<ZlibInternals>;
    sliceable = typeof internal._handle?.writeSync === 'function' && internal._writeState instanceof Uint32Array;
    probe.close();
  }
  return sliceable;
}

function ignore(): void {}

function startThread(job: InflateJob, engine: InflateRaw): void {
  engine.on('data', (part: Buffer) => {
    if (job.state !== J_RUNNING) return;
    const out = job.out!;
    if (job.length + part.length > Math.min(job.maxPayload, out.length)) return finish(job, inflateTooBig(job.maxPayload));
    job.length += part.copy(out, job.length);
  });
  engine.on('error', (err: Error) => {
    if (job.state === J_RUNNING) finish(job, inflateInvalid(err));
  });
  engine.on('end', () => {
    if (job.state === J_RUNNING) finish(job, joined(job));
  });
  engine.end(job.input);
}

function scheduleTurn(): void {
  if (turnScheduled || turns.length === 0) return;
  turnScheduled = true;
  setImmediate(turn);
}

/** 'chunked': slices of the running jobs in turn (one each, round robin) until the turn's time is up, then yield to the loop. */
function turn(): void {
  turnScheduled = false;
  const until = performance.now() + inflateSettings.turnMs;
  try {
    do {
      if (turnIndex >= turns.length) turnIndex = 0;
      const job = turns[turnIndex];
      if (job === undefined) break;
      if (job.state === J_RUNNING) slice(job);
      if (job.state !== J_RUNNING) turns.splice(turnIndex, 1);
      else turnIndex++;
    } while (performance.now() < until);
  } finally {
    // A message handler that throws (from a delivery inside slice) leaves the others running.
    scheduleTurn();
  }
}

/**
 * Internal API of node:zlib, used by its own synchronous calls (processChunkSync): the handle's
 * writeSync stops when the output slice is full, which no public synchronous call does (they
 * all run to the end of the input). The stream's public `destroyed`/`errored` carry errors.
 */
interface ZlibHandle {
  writeSync(flush: number, input: Buffer, inOff: number, inLen: number, out: Buffer, outOff: number, outLen: number): void;
}

/** The stream's internal fields: its handle (null once closed) and the [availOut, availIn] zlib left after the last call. */
interface ZlibInternals {
  _handle: ZlibHandle | null;
  _writeState: Uint32Array;
}

function slice(job: InflateJob): void {
  const engine = job.engine!;
  const internal = engine as unknown as ZlibInternals;
  const handle = internal._handle;
  if (handle === null) return finish(job, inflateInvalid(engine.errored ?? new Error('zlib engine closed')));
  const input = job.input;
  const out = job.out!;
  const room = Math.min(inflateSettings.sliceBytes, out.length - job.length);
  if (room === 0) return finish(job, inflateTooBig(job.maxPayload));
  const inLen = input.length - job.inputOffset;
  handle.writeSync(constants.Z_SYNC_FLUSH, input, job.inputOffset, inLen, out, job.length, room);
  if (engine.destroyed) return finish(job, inflateInvalid(engine.errored ?? new Error('zlib error')));
  const availOut = internal._writeState[0]!;
  const availIn = internal._writeState[1]!;
  const produced = room - availOut;
  job.inputOffset += inLen - availIn;
  job.length += produced;
  if (job.length > job.maxPayload) return finish(job, inflateTooBig(job.maxPayload));
  // Done when zlib left output room (everything is flushed) with no input left, or made no
  // progress at all (the stream ended with a final block: the rest of the input is ignored).
  if ((availOut > 0 && availIn === 0) || (produced === 0 && inLen === availIn)) finish(job, joined(job));
}

function joined(job: InflateJob): Buffer {
  return inflateDone(job.input.length - TAIL_LENGTH, job.out!.subarray(0, job.length));
}

function finish(job: InflateJob, result: Buffer | ProtocolError): void {
  const sink = job.sink;
  end(job);
  next();
  sink?.inflated(result);
}

/** Releases what a job holds; a running job gives its slot back. */
function end(job: InflateJob): void {
  if (job.state === J_RUNNING) inflateJobs.running--;
  job.state = J_OVER;
  job.sink = null;
  job.out = null;
  const engine = job.engine;
  job.engine = null;
  if (engine !== null) {
    engine.removeAllListeners('data');
    engine.removeAllListeners('end');
    // node:zlib frees the context now, or once a threadpool round trip in flight comes back.
    engine.close();
  }
}

/** Starts queued jobs while slots are free. */
function next(): void {
  while (inflateJobs.running < inflateSettings.maxInflations && queueHead < queue.length) {
    const job = queue[queueHead]!;
    queue[queueHead++] = undefined as unknown as InflateJob;
    if (job.state !== J_QUEUED) continue;
    inflateJobs.queued--;
    start(job);
  }
  if (queueHead === queue.length) {
    queue.length = 0;
    queueHead = 0;
  } else if (queueHead > 1024 && queueHead * 2 > queue.length) {
    queue.splice(0, queueHead);
    queueHead = 0;
  }
}

/** The output bound of the one-call synchronous path (deflate.ts inflatePayload's syncBytes): unbounded in 'sync' mode. */
export function syncInflateBytes(): number {
  return inflateSettings.mode === 'sync' ? Infinity : inflateSettings.sliceBytes;
}
