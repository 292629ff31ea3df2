/**
 * ws's options, checked and mapped onto murmur's: the one place where an option of ws that
 * murmur does not (yet) honour is refused with a clear error instead of being ignored.
 */
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Limits } from '../limits.js';
import type { SlowConsumerPolicy } from '../server/options.js';
import type { PerMessageDeflateOptions } from '../server/deflate.js';
import type { ClientDeflateOptions } from '../client/websocket.js';
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
  /** permessage-deflate (RFC 7692): off when false or absent, as ws's server; see WsDeflateOptions. */
  perMessageDeflate?: boolean | WsDeflateOptions;
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
 * ws's perMessageDeflate settings that mean something here. murmur never keeps a compression
 * context between messages (no context takeover either way, whatever is asked), and never
 * compresses off-thread, so serverNoContextTakeover/clientNoContextTakeover, zlibInflateOptions
 * and concurrencyLimit change nothing.
 */
export interface WsDeflateOptions {
  serverNoContextTakeover?: boolean;
  clientNoContextTakeover?: boolean;
  serverMaxWindowBits?: number | boolean;
  clientMaxWindowBits?: number | boolean;
  /** Messages below this many bytes go uncompressed (ws's default 1024). */
  threshold?: number;
  zlibDeflateOptions?: { level?: number; memLevel?: number };
  zlibInflateOptions?: object;
  concurrencyLimit?: number;
}

/** ws's default threshold: smaller messages are not worth compressing. */
const WS_DEFLATE_THRESHOLD = 1024;

/** The server's perMessageDeflate as murmur's Server option: off when false or absent (as ws's server). */
export function serverDeflate(v: boolean | WsDeflateOptions | undefined): false | PerMessageDeflateOptions {
  if (v === undefined || v === false) return false;
  const o: WsDeflateOptions = v === true ? {} : v;
  return {
    threshold: o.threshold ?? WS_DEFLATE_THRESHOLD,
    ...(typeof o.serverMaxWindowBits === 'number' ? { serverMaxWindowBits: o.serverMaxWindowBits } : {}),
    ...(typeof o.clientMaxWindowBits === 'number' ? { clientMaxWindowBits: o.clientMaxWindowBits } : {}),
    ...(o.zlibDeflateOptions?.level !== undefined ? { level: o.zlibDeflateOptions.level } : {}),
    ...(o.zlibDeflateOptions?.memLevel !== undefined ? { memLevel: o.zlibDeflateOptions.memLevel } : {}),
  };
}

/** The client's perMessageDeflate as murmur's client option: an offer only when given (ws offers by default). */
export function clientDeflate(v: boolean | WsDeflateOptions | undefined): false | ClientDeflateOptions {
  if (v === undefined || v === false) return false;
  const o: WsDeflateOptions = v === true ? {} : v;
  return {
    threshold: o.threshold ?? WS_DEFLATE_THRESHOLD,
    ...(typeof o.serverMaxWindowBits === 'number' ? { serverMaxWindowBits: o.serverMaxWindowBits } : {}),
  };
}

/** ws's checks of the server options, with ws's errors, and the murmur limits they set. */
export function checkServerOptions(o: WebSocketServerOptions): Partial<Limits> {
  if ((o.port == null && !o.server && !o.noServer) || (o.port != null && (o.server || o.noServer)) || (o.server && o.noServer)) {
    throw new TypeError('One and only one of the "port", "server", or "noServer" options must be specified');
  }
  const limits: Partial<Limits> = { ...o.limits };
  if (o.maxPayload !== undefined) limits.maxPayload = o.maxPayload;
  if (o.closeTimeout !== undefined) limits.closeTimeoutMs = o.closeTimeout;
  return limits;
}
