/**
 * What the app's side of `murmur serve --workers` (workers.ts) and its worker processes
 * (worker.ts) say to each other beyond the supervisor's own messages (src/server/supervisor.ts),
 * and the bounds both sides use.
 */
import type { AppOptions } from './app.js';
import type { ClusterOptions } from './cluster.js';
import { MESH_DEFAULTS } from '../cluster/bus/bus-config.js';

/**
 * Connections a peer listener holds at once: the mesh's inbound links (its own bound, 1,024)
 * plus room for health checks; past it new ones are closed at once.
 */
export const PEER_MAX_CONNECTIONS = MESH_DEFAULTS.maxInboundLinks + 64;
/** A peer connection must send its request head within this (a link handshake takes milliseconds). */
export const PEER_HEADERS_TIMEOUT_MS = 5_000;
/** The argument that makes worker.ts run as a worker process. */
export const WORKER_ARG = '--murmur-app-worker';

/** What a worker needs to start (the supervisor's init settings): everything cloneable. */
export interface WorkerSettings {
  options: Omit<AppOptions, 'presence'> & { cluster: ClusterOptions };
  peer: { host: string; port: number; advertise: string };
}

/** What a worker reports with its ready message. */
export interface WorkerReady {
  node: string;
  gossip: string;
  peer: string;
}

/** A worker's GET /metrics asks the primary for every worker's (scrape), and gets them (scraped). */
export type AppMessage = { kind: 'scrape'; id: number } | { kind: 'scraped'; id: number; text: string };

export function isAppMessage(m: unknown): m is AppMessage {
  return typeof m === 'object' && m !== null && typeof (m as { kind?: unknown }).kind === 'string';
}
