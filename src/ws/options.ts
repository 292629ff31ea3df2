/**
 * ws's options, checked and mapped onto murmur's: the one place where an option of ws that
 * murmur does not (yet) honour is refused with a clear error instead of being ignored.
 */
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Limits } from '../limits.js';
import type { SlowConsumerPolicy } from '../server/options.js';
import type { WebSocket } from './websocket.js';

/** What verifyClient is given, as in ws. */
export interface VerifyClientInfo {
  origin: string | undefined;
  /** The connection is over TLS. */
  secure: boolean;
  req: IncomingMessage;
}
export type VerifyClientSync = (info: VerifyClientInfo) => boolean;
export type VerifyClientAsync = (info: VerifyClientInfo, cb: (result: boolean, code?: number, message?: string, headers?: Record<string, string>) => void) => void;

export interface WebSocketServerOptions {
  /** Listen on this port (murmur's own listener: the lean transport). One of port, server, noServer. */
  port?: number;
  host?: string;
  backlog?: number;
  /** Take upgrades from this node:http(s) server. */
  server?: HttpServer | HttpsServer;
  /** Take upgrades only through handleUpgrade(). */
  noServer?: boolean;
  /** Accept only upgrades whose path (without the query) is this; others get 400. */
  path?: string;
  verifyClient?: VerifyClientSync | VerifyClientAsync;
  /** Picks the subprotocol from the client's (a Set, in its order); false or a value not offered selects none. Default: the first. */
  handleProtocols?: (protocols: Set<string>, request: IncomingMessage) => string | false;
  /** Largest message accepted, in bytes (murmur's limits.maxPayload; default 16 MiB where ws's is 100 MiB). */
  maxPayload?: number;
  /** Keep `wss.clients` (default true). */
  clientTracking?: boolean;
  /** Must be false or absent until murmur negotiates compression. */
  perMessageDeflate?: boolean | object;
  /** Milliseconds to wait for the peer's close frame (murmur's limits.closeTimeoutMs). */
  closeTimeout?: number;
  /** Accepted for compatibility; murmur always validates UTF-8 (RFC 6455 8.1). */
  skipUTF8Validation?: boolean;
  /** false: pings are not answered automatically; the application answers 'ping' with pong(). Default true. */
  autoPong?: boolean;
  /** Accepted for compatibility; events are always emitted as frames are read. */
  allowSynchronousEvents?: boolean;
  /** The class of server-side connections: WebSocket or a subclass of it (ws's `WebSocket` option). */
  WebSocket?: typeof WebSocket;
  /** murmur's own: overrides of DEFAULT_LIMITS (src/limits.ts). */
  limits?: Partial<Limits>;
  /** murmur's own: what a send over maxBackpressure does (default 'drop'; see SendResult). */
  slowConsumer?: SlowConsumerPolicy;
}

/**
 * permessage-deflate: false or absent means no compression. A truthy value is refused until
 * the Server has a compression option; then this is the single place that maps it onto that
 * option (and returns it).
 * @throws TypeError for a truthy value.
 */
export function refuseCompression(perMessageDeflate: unknown): void {
  if (perMessageDeflate === undefined || perMessageDeflate === false) return;
  throw new TypeError('perMessageDeflate is not supported by murmur yet: pass false or leave it out (messages are sent uncompressed)');
}

/** ws's checks of the server options, with ws's errors, and the murmur limits they set. */
export function checkServerOptions(o: WebSocketServerOptions): Partial<Limits> {
  if ((o.port == null && !o.server && !o.noServer) || (o.port != null && (o.server || o.noServer)) || (o.server && o.noServer)) {
    throw new TypeError('One and only one of the "port", "server", or "noServer" options must be specified');
  }
  refuseCompression(o.perMessageDeflate);
  const limits: Partial<Limits> = { ...o.limits };
  if (o.maxPayload !== undefined) limits.maxPayload = o.maxPayload;
  if (o.closeTimeout !== undefined) limits.closeTimeoutMs = o.closeTimeout;
  return limits;
}
