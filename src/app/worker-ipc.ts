/**
 * What the supervisor of `murmur serve --workers` (workers.ts) and its worker processes
 * (worker.ts) say to each other over the IPC channel, and the bounds both sides use.
 */
import type { AppOptions } from './app.js';
import type { ClusterOptions } from './cluster.js';
import { MESH_DEFAULTS } from '../cluster/bus/bus-config.js';

/** Time a new worker gets to listen and report ready. */
export const START_TIMEOUT_MS = 30_000;
/**
 * Connections a peer listener holds at once: the mesh's inbound links (its own bound, 1,024)
 * plus room for health checks; past it new ones are closed at once.
 */
export const PEER_MAX_CONNECTIONS = MESH_DEFAULTS.maxInboundLinks + 64;
/** A peer connection must send its request head within this (a link handshake takes milliseconds). */
export const PEER_HEADERS_TIMEOUT_MS = 5_000;
/** The argument that makes worker.ts run as a worker process. */
export const WORKER_ARG = '--murmur-app-worker';

export type ListenPlan = { kind: 'create'; port: number; host: string; reusePort: boolean } | { kind: 'handle' };

/** What a worker needs to start: everything cloneable (structured clone over IPC). */
export interface InitMessage {
  op: 'init';
  index: number;
  options: Omit<AppOptions, 'presence'> & { cluster: ClusterOptions };
  listen: ListenPlan;
  /** Hand the listening socket back to the primary (the first worker, without reusePort). */
  shareHandle: boolean;
  peer: { host: string; port: number; advertise: string };
}

/** Questions the primary asks every worker: its metrics, the peers its mesh links are synced with. */
export type Question = 'metrics' | 'links';

export type ToWorker = InitMessage | { op: 'ask'; id: number; what: Question } | { op: 'scraped'; id: number; text: string } | { op: 'shutdown' };

export type ToPrimary =
  | { op: 'ready'; index: number; port: number; address: string; family: string; node: string; gossip: string; peer: string }
  | { op: 'failed'; index: number; message: string }
  | { op: 'answer'; id: number; value: unknown }
  | { op: 'scrape'; id: number };

export function isOp<T extends { op: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && typeof (m as { op?: unknown }).op === 'string';
}
