/**
 * The `WebSocketServer` of the ws door: ws 8's server API (port | server | noServer, path,
 * verifyClient, handleProtocols, clientTracking, 'connection', 'headers', 'listening',
 * 'error', 'close', handleUpgrade, close(cb)) over one murmur Server.
 *
 * With `port` the door listens itself, on murmur's own listener (the lean transport where
 * available); with `server` or `noServer` it takes upgrades from node:http, as ws does.
 */
import { EventEmitter } from 'node:events';
import { STATUS_CODES } from 'node:http';
import type { IncomingMessage, IncomingHttpHeaders } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Server, serverCore } from '../server/server.js';
import type { Connection } from '../server/connection.js';
import type { Handlers } from '../server/options.js';
import { HttpReject, getHeader, getHeaderList, httpResponse, reject, rejectResponse } from '../http/index.js';
import { listHasToken } from '../http/chars.js';
import type { RequestHead, UpgradeRequest } from '../http/index.js';
import { acceptKey } from '../protocol/index.js';
import { WebSocket } from './websocket.js';
import { wsProtocolError } from './errors.js';
import { checkServerOptions, serverDeflate } from './options.js';
import { WS_VERSIONS, handshakeFailure } from './handshake.js';
import type { HandshakeFailure } from './handshake.js';
import type { VerifyClientAsync, VerifyClientSync, WebSocketServerOptions } from './options.js';

/** RFC 9110 5.6.2 token: a header name. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const RUNNING = 0;
const CLOSING = 1;
const CLOSED = 2;

type ConnectionCallback = (ws: WebSocket, req: IncomingMessage) => void;

/** A handshake in progress: the request the application sees, and where the WebSocket goes. */
interface Pending {
  req: IncomingMessage;
  cb: ConnectionCallback | null;
  secure: boolean;
}

/** What a connection's `data` holds: the pending handshake, then its WebSocket. */
type Slot = Pending | WebSocket;

/**
 * A WebSocket server shaped as ws 8's. `new WebSocketServer({ port })` listens at once
 * ('listening', or the callback, says when); `{ server }` takes the upgrades of a node:http
 * server; `{ noServer: true }` takes only what handleUpgrade() is given.
 *
 * @throws TypeError unless exactly one of port, server, noServer is given, and for options
 *   murmur does not honour (a truthy perMessageDeflate).
 */
export class WebSocketServer extends EventEmitter {
  /** Open connections, when clientTracking is on (the default); undefined when it is off (typed as ws's types have it). */
  readonly clients: Set<WebSocket>;
  readonly options: WebSocketServerOptions;
  readonly #murmur: Server<Slot>;
  readonly #http: NonNullable<WebSocketServerOptions['server']> | null;
  #removeListeners: (() => void) | null = null;
  #state = RUNNING;
  #shouldEmitClose = false;
  /** The handshake handleUpgrade() is passing to murmur right now (its hook runs within that call). */
  #pending: Pending | null = null;
  /** Requests seen by the upgrade hook, for handleProtocols (which murmur gives the parsed request only). */
  readonly #requests = new WeakMap<UpgradeRequest, Pending>();

  constructor(options: WebSocketServerOptions = {}, callback?: () => void) {
    super();
    const limits = checkServerOptions(options);
    this.options = options;
    this.clients = (options.clientTracking === false ? undefined : new Set()) as Set<WebSocket>;
    const handlers: Handlers<Slot> = {
      upgrade: (req, conn) => this.#onUpgrade(req, conn),
      open: (conn) => this.#onOpen(conn),
      message: onMessage,
      ping: onPing,
      pong: onPong,
      drain: onDrain,
      error: onError,
      close: (conn, code, reason) => this.#onClose(conn, code, reason),
    };
    this.#murmur = new Server<Slot>({
      handlers,
      limits,
      ...(options.slowConsumer !== undefined ? { slowConsumer: options.slowConsumer } : {}),
      ...(options.backlog != null ? { backlog: options.backlog } : {}),
      selectProtocol: (protocols, req) => this.#selectProtocol(protocols, req),
      upgradeHeaders: (req, conn, protocol) => this.#upgradeHeaders(req, conn, protocol),
      handoff: (head) => this.#handoff(head),
      versions: WS_VERSIONS,
      autoPong: options.autoPong !== false,
      perMessageDeflate: serverDeflate(options.perMessageDeflate),
    });
    this.#http = options.server ?? null;
    if (options.port != null) this.#listen(options.port, options.host, callback);
    else if (options.server) {
      const server = options.server;
      const map: Record<string, (...args: any[]) => void> = { // eslint-disable-line @typescript-eslint/no-explicit-any
        listening: () => this.emit('listening'),
        error: (err: Error) => this.emit('error', err),
        upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => this.handleUpgrade(req, socket, head, this.#emitConnection),
      };
      for (const [event, fn] of Object.entries(map)) server.on(event, fn);
      this.#removeListeners = () => {
        for (const [event, fn] of Object.entries(map)) server.removeListener(event, fn);
      };
    }
  }

  /**
   * A request on the door's own port. A plain one gets 426, as ws's internal HTTP server
   * answers; an upgrade ws would refuse gets ws's answer (or goes to 'wsClientError'); the
   * others are murmur's to validate and open.
   */
  #handoff(head: RequestHead): ((socket: Socket) => void) | undefined {
    // node:http (under ws) sees an upgrade where Connection lists `upgrade` and Upgrade is present.
    const connection = getHeaderList(head, 'connection');
    if (getHeader(head, 'upgrade') === undefined || connection === undefined || !listHasToken(connection, 'upgrade')) {
      return (socket) => answerAndClose(socket, 426, STATUS_CODES[426]!, this.#murmur.limits.closeTimeoutMs, { 'Content-Type': 'text/plain' });
    }
    const failure = handshakeFailure(head.method, (name) => getHeader(head, name));
    if (failure === null) return undefined;
    return (socket) => this.#refuse(failure, socket, incomingFrom(head, socket.remoteAddress));
  }

  /** ws's refusal of an invalid upgrade: to the 'wsClientError' listeners when there are any, else ws's answer. */
  #refuse([status, message, headers]: HandshakeFailure, socket: Duplex, req: IncomingMessage): void {
    if (this.listenerCount('wsClientError') > 0) {
      // The listener answers; a socket it leaves open is destroyed after the handshake timeout,
      // so no refused request holds a descriptor longer than an accepted handshake may.
      destroyAfter(socket, this.#murmur.limits.handshakeTimeoutMs);
      this.emit('wsClientError', new Error(message), socket, req);
      return;
    }
    answerAndClose(socket, status, message, this.#murmur.limits.closeTimeoutMs, { 'Content-Type': 'text/html', ...headers });
  }

  readonly #emitConnection = (ws: WebSocket, req: IncomingMessage): void => {
    this.emit('connection', ws, req);
  };

  #listen(port: number, host: string | undefined, callback: (() => void) | undefined): void {
    if (callback !== undefined) this.once('listening', callback);
    this.#murmur.listen(port, host).then(
      () => this.emit('listening'),
      (err: Error) => this.emit('error', err),
    );
    this.#removeListeners = () => {};
  }

  /**
   * The bound address: of the door's own listener with `port`, of the node:http server with
   * `server` (null before it listens).
   * @throws Error in noServer mode, as ws does.
   */
  address(): AddressInfo | string | null {
    if (this.options.noServer) throw new Error('The server is operating in "noServer" mode');
    if (this.#http != null) return this.#http.address();
    return this.#murmur.address();
  }

  /**
   * Stops taking connections; open ones stay open (ws 8). 'close' is emitted (and `cb`
   * called) once the listener is closed and, when clients are tracked or the door listens
   * itself, once every connection is gone.
   */
  close(cb?: (err?: Error) => void): void {
    if (this.#state === CLOSED) {
      if (cb !== undefined) this.once('close', () => cb(new Error('The server is not running')));
      process.nextTick(emitClose, this);
      return;
    }
    if (cb !== undefined) this.once('close', cb);
    if (this.#state === CLOSING) return;
    this.#state = CLOSING;
    this.#removeListeners?.();
    this.#removeListeners = null;
    if (this.options.port != null) {
      const core = serverCore(this.#murmur);
      void core.stopListening().then(async () => {
        while (!(await core.whenIdle(60_000)));
        await this.#murmur.close();
        emitClose(this);
      });
    } else if ((this.clients as Set<WebSocket> | undefined) !== undefined && this.clients.size > 0) this.#shouldEmitClose = true;
    else process.nextTick(emitClose, this);
  }

  /** @internal 'close' is emitted once. */
  _closed(): void {
    this.#state = CLOSED;
    // With nothing left to sweep the sweep's timer stops with the core; connections still
    // open (clientTracking off) stay open, as in ws 8, and keep their deadlines.
    if (this.options.port == null && this.#murmur.socketCount === 0) void this.#murmur.close();
  }

  /** Whether a request's path is this server's (always, without the `path` option). */
  shouldHandle(req: IncomingMessage): boolean {
    const path = this.options.path;
    if (!path) return true;
    const url = req.url ?? '';
    const q = url.indexOf('?');
    return (q === -1 ? url : url.slice(0, q)) === path;
  }

  /**
   * Takes an upgrade from a node:http server's 'upgrade' event; `cb(ws, req)` gets the
   * connection once it is open (noServer apps usually emit 'connection' from it).
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, cb: ConnectionCallback): void {
    const failure = handshakeFailure(req.method ?? '', (name) => headerValue(req.headers[name]));
    if (failure !== null) return this.#refuse(failure, socket, req);
    if (this.#state > RUNNING) {
      answerAndClose(socket, 503, STATUS_CODES[503]!, this.#murmur.limits.closeTimeoutMs, { 'Content-Type': 'text/html' });
      return;
    }
    this.#pending = { req, cb, secure: isSecure(req.socket) };
    try {
      this.#murmur.handleUpgrade(req, socket, head);
    } finally {
      this.#pending = null;
    }
  }

  // ---- murmur's handlers -------------------------------------------------------------

  #onUpgrade(req: UpgradeRequest, conn: Connection<Slot>): void | HttpReject | Promise<void | HttpReject> {
    const pending = this.#pending ?? { req: incomingFrom(req.head, conn.remoteAddress), cb: this.#emitConnection, secure: false };
    conn.data = pending;
    this.#requests.set(req, pending);
    if (!this.shouldHandle(pending.req)) return reject(400, STATUS_CODES[400]);
    const verify = this.options.verifyClient;
    if (verify === undefined) return undefined;
    // A version 8 client (a draft of RFC 6455) names its origin in Sec-WebSocket-Origin, as ws reads it.
    const origin = getHeader(req.head, 'sec-websocket-version') === '8' ? getHeader(req.head, 'sec-websocket-origin') : req.origin;
    const info = { origin, secure: pending.secure, req: pending.req };
    if (verify.length < 2) return (verify as VerifyClientSync)(info) ? undefined : reject(401);
    return new Promise<void | HttpReject>((resolve) => {
      (verify as VerifyClientAsync)(info, (result, code, message, headers) => {
        resolve(result ? undefined : refusal(code, message, headers));
      });
    });
  }

  #selectProtocol(protocols: string[], req: UpgradeRequest): string | undefined {
    const choose = this.options.handleProtocols;
    if (choose === undefined) return protocols[0];
    const pending = this.#requests.get(req);
    const chosen = choose(new Set(protocols), pending?.req ?? incomingFrom(req.head, undefined));
    return typeof chosen === 'string' ? chosen : undefined;
  }

  /** The 'headers' event: the 101's lines as ws shows them; lines a listener adds are sent too. */
  #upgradeHeaders(req: UpgradeRequest, conn: Connection<Slot>, protocol: string | undefined): Array<[string, string]> | undefined {
    if (this.listenerCount('headers') === 0) return undefined;
    const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${acceptKey(req.key)}`];
    if (protocol !== undefined) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
    const given = lines.length;
    this.emit('headers', lines, (conn.data as Pending).req);
    const extra: Array<[string, string]> = [];
    for (const line of lines.slice(given)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon);
      const value = line.slice(colon + 1).trim();
      // A line that would split the response is never written.
      if (colon > 0 && TOKEN.test(name) && !/[\0\r\n]/.test(value)) extra.push([name, value]);
    }
    return extra;
  }

  #onOpen(conn: Connection<Slot>): void {
    const pending = conn.data as Pending;
    const ws = new (this.options.WebSocket ?? WebSocket)(null, undefined, undefined, conn as Connection<never>);
    conn.data = ws;
    (this.clients as Set<WebSocket> | undefined)?.add(ws);
    (pending.cb ?? this.#emitConnection)(ws, pending.req);
  }

  #onClose(conn: Connection<Slot>, code: number, reason: string): void {
    const ws = conn.data as WebSocket;
    const clients = this.clients as Set<WebSocket> | undefined;
    if (clients !== undefined) {
      clients.delete(ws);
      if (this.#shouldEmitClose && clients.size === 0) process.nextTick(emitClose, this);
    }
    ws._closed(code, reason);
  }
}

/** The events of a WebSocketServer and their arguments, as ws (and @types/ws) have them. */
type Listener = (this: WebSocketServer, ...args: any[]) => void; // eslint-disable-line @typescript-eslint/no-explicit-any
interface ServerEvents {
  connection: (this: WebSocketServer, ws: WebSocket, req: IncomingMessage) => void;
  headers: (this: WebSocketServer, headers: string[], req: IncomingMessage) => void;
  wsClientError: (this: WebSocketServer, err: Error, socket: Duplex, req: IncomingMessage) => void;
  error: (this: WebSocketServer, err: Error) => void;
  listening: (this: WebSocketServer) => void;
  close: (this: WebSocketServer) => void;
}

// Typed overloads of the inherited EventEmitter methods (declaration merging).
export interface WebSocketServer {
  on<K extends keyof ServerEvents>(event: K, listener: ServerEvents[K]): this;
  on(event: string | symbol, listener: Listener): this;
  once<K extends keyof ServerEvents>(event: K, listener: ServerEvents[K]): this;
  once(event: string | symbol, listener: Listener): this;
  off<K extends keyof ServerEvents>(event: K, listener: ServerEvents[K]): this;
  off(event: string | symbol, listener: Listener): this;
}

function emitClose(server: WebSocketServer): void {
  server._closed();
  server.emit('close');
}

function onMessage(conn: Connection<Slot>, data: Buffer, isBinary: boolean): void {
  (conn.data as WebSocket)._message(data, isBinary);
}
function onPing(conn: Connection<Slot>, data: Buffer): void {
  (conn.data as WebSocket)._control('ping', data);
}
function onPong(conn: Connection<Slot>, data: Buffer): void {
  (conn.data as WebSocket)._control('pong', data);
}
function onDrain(conn: Connection<Slot>): void {
  (conn.data as WebSocket)._drain();
}
function onError(conn: Connection<Slot>, err: Parameters<NonNullable<Handlers['error']>>[1]): void {
  const ws = conn.data;
  if (ws instanceof WebSocket) ws._error(wsProtocolError(err));
}

/**
 * verifyClient's cb(false, code, message, headers) as a rejection. Called from the
 * application's callback, so it never throws: a status murmur cannot send (outside 300-599) or
 * headers that would not make a valid response give a plain 401 instead.
 */
function refusal(code: number | undefined, message: string | undefined, headers: Record<string, string> | undefined): HttpReject {
  try {
    const r = reject(code ?? 401, message ?? STATUS_CODES[code ?? 401], headers);
    rejectResponse(r);
    return r;
  } catch {
    return reject(401, STATUS_CODES[401]);
  }
}

/**
 * Answers a socket murmur no longer counts with `status` and closes it; a peer that does not
 * take the answer within `timeoutMs` (a zero window) has its socket destroyed, so no such
 * socket outlives the close timeout.
 */
function answerAndClose(socket: Duplex, status: number, body: string, timeoutMs: number, headers: Record<string, string>): void {
  destroyAfter(socket, timeoutMs);
  socket.end(httpResponse(status, headers, body), () => socket.destroy());
}

/** Destroys a socket murmur no longer counts once `timeoutMs` passed, or on an error. */
function destroyAfter(socket: Duplex, timeoutMs: number): void {
  socket.on('error', () => socket.destroy());
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

/** A header of node:http's request as one string (repeats joined, as ws reads them). */
function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function isSecure(socket: Socket | undefined): boolean {
  const s = socket as (Socket & { encrypted?: boolean; authorized?: boolean }) | undefined;
  return s?.authorized === true || s?.encrypted === true;
}

/**
 * The request an application sees on the door's own listener, where no node:http parsed it:
 * method, url, httpVersion, headers (lower-case names, repeats joined with ", ", set-cookie an
 * array) and rawHeaders as node:http gives them, and a `socket` with remoteAddress.
 */
function incomingFrom(head: RequestHead, remoteAddress: string | undefined): IncomingMessage {
  const headers: IncomingHttpHeaders = {};
  const rawHeaders: string[] = [];
  for (const [name, value] of head.headers) {
    rawHeaders.push(name, value);
    const known = headers[name];
    if (name === 'set-cookie') headers[name] = [...((known as string[] | undefined) ?? []), value];
    else headers[name] = known === undefined ? value : `${known as string}, ${value}`;
  }
  return {
    method: head.method,
    url: head.target,
    httpVersion: `1.${head.versionMinor}`,
    httpVersionMajor: 1,
    httpVersionMinor: head.versionMinor,
    headers,
    rawHeaders,
    socket: { remoteAddress, encrypted: false },
  } as unknown as IncomingMessage;
}
