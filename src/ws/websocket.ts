/**
 * The `WebSocket` of the ws door: ws 8's class (an EventEmitter with `message (data,
 * isBinary)`, `close (code, reason)`, `ping`, `pong`, `error`, send with options and a
 * callback, pause/resume, terminate) over murmur's own connection: a server Connection on the
 * server side, murmur's client on the client side.
 *
 * An EventEmitter per connection is what this door costs, and only its users pay it: the
 * Connection underneath keeps its size. The object holds three fields of its own (the peer,
 * a flags integer, the lazily made list of send callbacks waiting for a drain).
 */
import { EventEmitter } from 'node:events';
import { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { isAnyArrayBuffer } from 'node:util/types';
import { CloseCode, Opcode, MAX_CLOSE_REASON, MAX_CONTROL_PAYLOAD, encodeServerFrame, frameHeaderSize, writeFrameHeader } from '../protocol/index.js';
import { Connection } from '../server/connection.js';
import { SendResult } from '../server/options.js';
import { WebSocket as MurmurClient } from '../client/index.js';
import { kCloseWith, kNoAutoPong, kOnResponse, kSendFragment } from '../client/websocket.js';
import type { ResponseHead } from '../client/response-head.js';
import type { WebSocketOptions as MurmurClientOptions, MessageEvent, CloseEvent, ErrorEvent } from '../client/index.js';
import { backpressureError, notOpenError, subprotocolFailure, wsClientError } from './errors.js';
import { clientDeflate } from './options.js';
import type { WsDeflateOptions } from './options.js';

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** How binary messages are handed out, as ws names them. */
export type BinaryType = 'nodebuffer' | 'arraybuffer' | 'fragments' | 'blob';
/**
 * What a 'message' listener gets: a Buffer, an ArrayBuffer or an array of Buffers, per
 * binaryType (typed as ws's types have it: with binaryType 'blob' it is a Blob).
 */
export type RawData = Buffer | ArrayBuffer | Buffer[];
/** What send() takes. */
export type SendData = string | number | Buffer | ArrayBuffer | ArrayBufferView | Blob | readonly Uint8Array[];
export interface SendOptions {
  /** Binary frame (default: true for anything but a string). */
  binary?: boolean;
  /** false sends a fragment; the message ends with a send whose fin is true. */
  fin?: boolean;
  /** Accepted and ignored: no extension is negotiated. */
  compress?: boolean;
  /** Accepted and ignored: a server never masks, the client always does (RFC 6455 5.1). */
  mask?: boolean;
}
type Callback = (err?: Error) => void;

/** Options of a client WebSocket: ws's names, mapped onto murmur's client. */
export interface ClientOptions {
  protocols?: string | string[];
  headers?: Record<string, string>;
  origin?: string;
  /** Largest message accepted (default murmur's 16 MiB; ws's is 100 MiB). */
  maxPayload?: number;
  /** Milliseconds allowed for the opening handshake. */
  handshakeTimeout?: number;
  /** Milliseconds to wait for the server to close TCP after the closing handshake. */
  closeTimeout?: number;
  /** permessage-deflate: offered only when given (ws's client offers it by default); see WsDeflateOptions. */
  perMessageDeflate?: boolean | WsDeflateOptions;
  /** false: pings are not answered automatically; the application answers 'ping' with pong(). Default true. */
  autoPong?: boolean;
  /** 13 (default) or 8, as ws checks it; murmur's client always sends 13, which servers taking 8 take too. */
  protocolVersion?: number;
  ca?: string | Buffer | Array<string | Buffer>;
  cert?: string | Buffer | Array<string | Buffer>;
  key?: string | Buffer | Array<string | Buffer>;
  rejectUnauthorized?: boolean;
  servername?: string;
}

// flags: the binaryType in the low two bits, then one bit per condition.
const BT_MASK = 3;
const BT_ARRAYBUFFER = 1;
const BT_FRAGMENTS = 2;
const BT_BLOB = 3;
const F_PAUSED = 1 << 2;
const F_CLOSE_EMITTED = 1 << 3;
const F_FRAGMENTING = 1 << 4; // a send with fin: false started a message
const F_CLIENT = 1 << 5;
const F_ERROR_EMITTED = 1 << 6;
const F_UNEXPECTED = 1 << 7; // an 'unexpected-response' listener took a refused handshake: CONNECTING until close()/terminate()
const F_ABORTED = 1 << 8; // ... and the application ended it
const F_CLOSE_HELD = 1 << 9; // ... and the client's 'close' waits for that

const BINARY_TYPES: readonly BinaryType[] = ['nodebuffer', 'arraybuffer', 'fragments', 'blob'];
const EMPTY = Buffer.alloc(0);
const kListener = Symbol('kListener');
/**
 * State only some connections ever need, kept beside them instead of in a field each: the
 * sends waiting behind a Blob being read (ws keeps the order), and the bytes passed to send,
 * ping or pong after the connection left OPEN (ws counts them in bufferedAmount).
 */
const sendQueues = new WeakMap<WebSocket, Array<[data: SendData, options: SendOptions | undefined, cb: Callback | undefined]>>();
const discarded = new WeakMap<WebSocket, number>();
/** A 101 the door refuses where murmur's client would open (ws's subprotocol check): the error to report. */
const handshakeFailures = new WeakMap<WebSocket, Error>();
const kOnAttribute = Symbol('kOnAttribute');

/**
 * A WebSocket as ws 8 shapes it. Server-side instances come from WebSocketServer's
 * 'connection' event; `new WebSocket(url, protocols?, options?)` opens a client connection.
 *
 * Differences from ws, on purpose: an 'error' is emitted only to listeners (a socket with
 * none stays up and closes as the RFC says, instead of crashing the process); a send over the
 * connection's backlog budget (maxBackpressure) is dropped and its callback gets an error with
 * code WS_ERR_BACKPRESSURE, where ws buffers without bound. See docs/ws-compat.md.
 */
export class WebSocket extends EventEmitter {
  declare static readonly CONNECTING: 0;
  declare static readonly OPEN: 1;
  declare static readonly CLOSING: 2;
  declare static readonly CLOSED: 3;
  declare readonly CONNECTING: 0;
  declare readonly OPEN: 1;
  declare readonly CLOSING: 2;
  declare readonly CLOSED: 3;

  /** A server Connection, or murmur's client. */
  private readonly _peer: Connection<WebSocket> | MurmurClient;
  private _flags: number;
  /** Callbacks of sends that were queued, run in order when the backlog drains. */
  private _callbacks: Callback[] | null;

  /**
   * Opens a client connection to `address` (ws:, wss:, http:, https:).
   * @throws SyntaxError (a DOMException) for a bad URL or subprotocol, TypeError for bad options.
   */
  constructor(address: string | URL, protocols?: string | string[] | ClientOptions, options?: ClientOptions);
  /** @internal the server side: wraps a server connection. */
  constructor(address: null, protocols: undefined, options: undefined, conn: Connection<WebSocket>);
  constructor(address: string | URL | null, protocols?: string | string[] | ClientOptions, options?: ClientOptions, conn?: Connection<WebSocket>) {
    super();
    this._callbacks = null;
    if (address === null) {
      this._peer = conn!;
      this._flags = 0;
      return;
    }
    // As ws: the options may come second; a lone protocol (even null) is a list of one.
    if (protocols !== undefined && protocols !== null && !Array.isArray(protocols) && typeof protocols === 'object') {
      options = protocols;
      protocols = undefined;
    }
    const opts = options ?? {};
    const list = protocols === undefined ? opts.protocols : protocols;
    const offered = list === undefined ? [] : Array.isArray(list) ? list : [list as string];
    checkClientArguments(address, offered, opts);
    let client: MurmurClient;
    try {
      client = new MurmurClient(address, offered as string[], clientOptions(opts));
    } catch (err) {
      // What murmur's client refuses beyond ws's checks (an empty fragment): a plain SyntaxError, as ws throws.
      if (err instanceof DOMException && err.name === 'SyntaxError') throw new SyntaxError(err.message);
      throw err;
    }
    if (opts.autoPong === false) client[kNoAutoPong] = true;
    this._peer = client;
    this._flags = F_CLIENT;
    listenToClient(this, client, offered as string[]);
  }

  /** 'nodebuffer' (default), 'arraybuffer', 'fragments' or 'blob'; other values are ignored, as ws does. */
  get binaryType(): BinaryType {
    return BINARY_TYPES[this._flags & BT_MASK]!;
  }
  set binaryType(type: BinaryType) {
    const i = BINARY_TYPES.indexOf(type);
    if (i >= 0) this._flags = (this._flags & ~BT_MASK) | i;
  }

  /**
   * Bytes queued and not yet taken by the kernel, plus (as ws counts them) the bytes of every
   * send, ping and pong made after the connection left OPEN, and of Blobs being read.
   */
  get bufferedAmount(): number {
    return this._peer.bufferedAmount + (discarded.get(this) ?? 0);
  }

  /** 'permessage-deflate' when it was negotiated, else '' (as ws names its extensions). */
  get extensions(): string {
    const peer = this._peer;
    const on = peer instanceof MurmurClient ? peer.extensions !== '' : peer.compression !== 0;
    return on ? 'permessage-deflate' : '';
  }

  get isPaused(): boolean {
    return (this._flags & F_PAUSED) !== 0;
  }

  /** The selected subprotocol, or ''. */
  get protocol(): string {
    return this._peer.protocol;
  }

  /** 0 CONNECTING, 1 OPEN, 2 CLOSING, 3 CLOSED (CLOSED once 'close' is emitted). */
  get readyState(): number {
    if ((this._flags & (F_UNEXPECTED | F_ABORTED)) === F_UNEXPECTED) return CONNECTING;
    const peer = this._peer;
    const state = peer instanceof Connection ? peer.state : peer.readyState;
    return state === CLOSED && (this._flags & F_CLOSE_EMITTED) === 0 ? CLOSING : state;
  }

  /**
   * What apps written for ws read from ws's private `_socket`: `remoteAddress` (and on the client,
   * nothing more). Prefer the request's `req.socket.remoteAddress`.
   */
  get _socket(): { remoteAddress: string | undefined } {
    const peer = this._peer;
    return { remoteAddress: peer instanceof Connection ? peer.remoteAddress : undefined };
  }

  /** The URL of a client connection; undefined on the server side, as in ws. */
  get url(): string | undefined {
    const peer = this._peer;
    return peer instanceof Connection ? undefined : peer.url;
  }

  /**
   * Sends a message. `cb(err?)` runs once the bytes are handed to the kernel, or with an error
   * when the connection is not open or its backlog is over maxBackpressure (then the message
   * is dropped).
   * @throws Error while CONNECTING, as ws does.
   */
  send(data: SendData, options?: SendOptions | Callback, cb?: Callback): void {
    if (typeof options === 'function') {
      cb = options;
      options = undefined;
    }
    const state = this.readyState;
    if (state === CONNECTING) throw notOpenError(CONNECTING);
    if (typeof data === 'number') data = data.toString();
    if (state !== OPEN) return this.afterClose(data, cb);
    // As ws: a Blob is read first, and sends made meanwhile wait behind it, in order.
    const queue = sendQueues.get(this);
    if (queue !== undefined) queue.push([data, options, cb]);
    else if (data instanceof Blob) this.readBlobs([[data, options, cb]]);
    else this.sendNow(data, options, cb);
  }

  private sendNow(data: Exclude<SendData, number | Blob>, options: SendOptions | undefined, cb: Callback | undefined): void {
    // As ws: no data (undefined, null) is an empty binary message.
    const payload = typeof data === 'string' ? data : data == null ? EMPTY : toBuffer(data);
    const binary = options?.binary ?? typeof data !== 'string';
    const fin = options?.fin ?? true;
    const peer = this._peer;
    if (!(peer instanceof Connection)) {
      if (fin && (this._flags & F_FRAGMENTING) === 0) {
        peer.send(binary ? (typeof payload === 'string' ? Buffer.from(payload) : payload) : typeof payload === 'string' ? payload : payload.toString('utf8'));
      } else {
        peer[kSendFragment](this.fragmentOpcode(binary, fin), typeof payload === 'string' ? Buffer.from(payload) : payload, fin);
      }
      if (cb !== undefined) process.nextTick(cb);
      return;
    }
    this.settle(fin && (this._flags & F_FRAGMENTING) === 0 ? peer.send(payload, binary) : this.sendFragment(peer, payload, binary, fin), cb);
  }

  /** The opcode of the next fragment of a message sent in pieces; remembers whether one is open. */
  private fragmentOpcode(binary: boolean, fin: boolean): number {
    const opcode = (this._flags & F_FRAGMENTING) !== 0 ? Opcode.Continuation : binary ? Opcode.Binary : Opcode.Text;
    this._flags = fin ? this._flags & ~F_FRAGMENTING : this._flags | F_FRAGMENTING;
    return opcode;
  }

  /** One frame of a message sent in pieces (send with fin: false, ..., then fin: true). */
  private sendFragment(conn: Connection<WebSocket>, payload: string | Buffer, binary: boolean, fin: boolean): SendResult {
    const flags = this._flags;
    const opcode = this.fragmentOpcode(binary, fin);
    const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
    const headerSize = frameHeaderSize(body.length, false);
    const frame = Buffer.allocUnsafe(headerSize + body.length);
    writeFrameHeader(frame, 0, opcode, body.length, fin, false, null, 0);
    body.copy(frame, headerSize);
    const result = conn.sendEncoded(frame);
    // A dropped first fragment starts nothing; a dropped later one leaves the message open,
    // so the peer sees the next fragment as its continuation only if ours went out.
    if (result === SendResult.Dropped) this._flags = flags;
    return result;
  }

  /**
   * Sends queued messages in order, reading each Blob first (its size counts in
   * bufferedAmount meanwhile). A Blob that cannot be read fails the callbacks of its send and
   * of those behind it, emits 'error' and ends the connection, as ws does; the connection
   * left OPEN meanwhile fails the rest with ws's message.
   */
  private readBlobs(queue: Array<[SendData, SendOptions | undefined, Callback | undefined]>): void {
    sendQueues.set(this, queue);
    const next = async (): Promise<void> => {
      while (queue.length > 0) {
        const [data, options, cb] = queue.shift()!;
        let bytes: SendData = data;
        if (data instanceof Blob) {
          this.countDiscarded(data.size);
          try {
            bytes = Buffer.from(await data.arrayBuffer());
          } catch (err) {
            for (const [, , later] of [[data, options, cb], ...queue.splice(0)] as const) later?.(err as Error);
            this._error(err as Error);
            this.terminate();
            continue;
          } finally {
            if (this.readyState === OPEN) this.countDiscarded(-data.size);
          }
        }
        if (this.readyState !== OPEN) {
          if (cb !== undefined) cb(new Error('The socket was closed while the blob was being read'));
          continue;
        }
        this.sendNow(bytes as Exclude<SendData, number | Blob>, options, cb);
      }
      sendQueues.delete(this);
    };
    void next();
  }

  private countDiscarded(bytes: number): void {
    const total = (discarded.get(this) ?? 0) + bytes;
    if (total === 0) discarded.delete(this);
    else discarded.set(this, total);
  }

  /** ws's answer to a send, ping or pong once the connection left OPEN: the bytes are counted in bufferedAmount, the callback gets an error, nothing is thrown. */
  private afterClose(data: SendData | Callback | undefined, cb: Callback | undefined): void {
    if (data != null && typeof data !== 'function') {
      this.countDiscarded(data instanceof Blob ? data.size : typeof data === 'string' ? Buffer.byteLength(data) : toBuffer(data as Exclude<SendData, number | string | Blob>).length);
    }
    if (cb !== undefined) process.nextTick(cb, notOpenError(this.readyState));
  }

  /** Runs or parks a send's callback by what murmur did with it. */
  private settle(result: SendResult, cb: Callback | undefined): void {
    if (cb === undefined) return;
    if (result === SendResult.Written) process.nextTick(cb);
    else if (result === SendResult.Queued) (this._callbacks ??= []).push(cb);
    else {
      const conn = this._peer as Connection<WebSocket>;
      process.nextTick(cb, conn.isOpen ? backpressureError(conn.server.limits.maxBackpressure) : notOpenError(this.readyState));
    }
  }

  /**
   * Sends a ping; the peer's pong comes as a 'pong' event.
   * @throws Error while CONNECTING; RangeError for a payload over 125 bytes.
   */
  ping(data?: SendData | Callback, mask?: boolean | Callback, cb?: Callback): void {
    this.control(Opcode.Ping, data, mask, cb);
  }

  /**
   * Sends a pong (murmur answers pings by itself; this one is unsolicited).
   * @throws Error while CONNECTING; RangeError for a payload over 125 bytes.
   */
  pong(data?: SendData | Callback, mask?: boolean | Callback, cb?: Callback): void {
    this.control(Opcode.Pong, data, mask, cb);
  }

  private control(opcode: number, data: SendData | Callback | undefined, mask: boolean | Callback | undefined, cb: Callback | undefined): void {
    const state = this.readyState;
    if (state === CONNECTING) throw notOpenError(CONNECTING);
    if (typeof data === 'function') {
      cb = data;
      data = undefined;
    } else if (typeof mask === 'function') cb = mask;
    if (typeof data === 'number') data = data.toString();
    if (state !== OPEN) return this.afterClose(data, cb);
    if (data instanceof Blob) throw new TypeError('A Blob is not sent as a ping or pong payload by the ws door: pass await blob.arrayBuffer()');
    const payload = data === undefined ? EMPTY : typeof data === 'string' ? Buffer.from(data) : toBuffer(data);
    if (payload.length > MAX_CONTROL_PAYLOAD) throw new RangeError('The data size must not be greater than 125 bytes');
    const peer = this._peer;
    if (!(peer instanceof Connection)) {
      if (opcode === Opcode.Ping) peer.ping(payload);
      else peer.pong(payload);
    } else if (opcode === Opcode.Ping) peer.ping(payload);
    else return this.settle(peer.sendEncoded(encodeServerFrame(Opcode.Pong, payload)), cb);
    if (cb !== undefined) process.nextTick(cb);
  }

  /**
   * Starts the closing handshake with `code` (none when absent) and `reason`.
   * @throws TypeError for a code ws would refuse; RangeError for a reason over 123 bytes.
   */
  close(code?: number, reason?: string | Buffer): void {
    const state = this.readyState;
    if (state === CLOSED || state === CLOSING) return;
    const peer = this._peer;
    if (state === CONNECTING) {
      if ((this._flags & F_UNEXPECTED) !== 0) return this.abortRefused();
      (peer as MurmurClient).close();
      return;
    }
    const text = closeReason(code, reason);
    if (peer instanceof Connection) peer.close(code ?? CloseCode.NoStatus, text);
    else peer[kCloseWith](code, code === undefined ? undefined : text);
  }

  /** Destroys the connection at once; 'close' follows with 1006. */
  terminate(): void {
    const state = this.readyState;
    if (state === CLOSED) return;
    if (state === CONNECTING && (this._flags & F_UNEXPECTED) !== 0) return this.abortRefused();
    this._peer.terminate();
  }

  /**
   * close() or terminate() after an 'unexpected-response' listener took a refused handshake:
   * as ws, 'error' ("closed before the connection was established") then 'close' with 1006.
   */
  private abortRefused(): void {
    this._flags |= F_ABORTED;
    process.nextTick(() => {
      this._error(wsClientError(Object.assign(new Error('aborted'), { code: 'WS_ERR_ABORTED' })));
      if ((this._flags & F_CLOSE_HELD) !== 0) this._closed(CloseCode.Abnormal, '');
    });
  }

  /**
   * @internal the handshake's response head, before murmur's client checks it: 'upgrade' for
   * a 101; for another status, 'unexpected-response' (req, res) when the application listens
   * for it (then the connection waits for close() or terminate(), as in ws), else murmur's
   * client fails it ("Unexpected server response: <status>").
   */
  _response(head: ResponseHead, rest: Buffer, offered: readonly string[]): void {
    if (head.status === 101) {
      this.emit('upgrade', responseOf(head, EMPTY));
      const failure = subprotocolFailure(head.headers.get('sec-websocket-protocol'), offered);
      if (failure !== undefined && this.readyState === CONNECTING) {
        handshakeFailures.set(this, new Error(failure));
        (this._peer as MurmurClient).close();
      }
      return;
    }
    if (this.listenerCount('unexpected-response') === 0) return;
    this._flags |= F_UNEXPECTED;
    const request = { method: 'GET', path: new URL(this.url!).pathname, abort: () => this.terminate(), destroy: () => this.terminate() };
    this.emit('unexpected-response', request, responseOf(head, rest));
  }

  /** Stops reading: no more 'message' once the frames already read are handed out. */
  pause(): void {
    const state = this.readyState;
    if (state === CONNECTING || state === CLOSED) return;
    this._flags |= F_PAUSED;
    const peer = this._peer;
    if (peer instanceof Connection) peer.transport.pause(peer);
    else peer.pause();
  }

  /** Reads again after pause(). */
  resume(): void {
    const state = this.readyState;
    if (state === CONNECTING || state === CLOSED) return;
    this._flags &= ~F_PAUSED;
    const peer = this._peer;
    if (peer instanceof Connection) peer.transport.resume(peer);
    else peer.resume();
  }

  // ---- ws's EventTarget flavour: addEventListener and on<event> ------------------------

  /** As ws's: the listener gets an event object ({ data } for message, { code, reason, wasClean } for close, { error, message } for error). */
  addEventListener(type: string, handler: ((ev: WsEvent) => void) | { handleEvent(ev: WsEvent): void }, options: { once?: boolean } = {}): void {
    for (const l of this.listeners(type) as Array<{ [kListener]?: unknown; [kOnAttribute]?: boolean }>) {
      if (l[kListener] === handler && l[kOnAttribute] !== true) return;
    }
    const wrapper = eventWrapper(this, type, handler);
    if (wrapper === undefined) return;
    if (options.once === true) this.once(type, wrapper);
    else this.on(type, wrapper);
  }

  removeEventListener(type: string, handler: unknown): void {
    for (const l of this.listeners(type) as Array<((...args: unknown[]) => void) & { [kListener]?: unknown; [kOnAttribute]?: boolean }>) {
      if (l[kListener] === handler && l[kOnAttribute] !== true) {
        this.removeListener(type, l);
        return;
      }
    }
  }

  get onopen(): ((ev: WsEvent) => void) | null {
    return this.onAttribute('open');
  }
  set onopen(fn: ((ev: WsEvent) => void) | null) {
    this.setOnAttribute('open', fn);
  }
  get onmessage(): ((ev: WsEvent) => void) | null {
    return this.onAttribute('message');
  }
  set onmessage(fn: ((ev: WsEvent) => void) | null) {
    this.setOnAttribute('message', fn);
  }
  get onclose(): ((ev: WsEvent) => void) | null {
    return this.onAttribute('close');
  }
  set onclose(fn: ((ev: WsEvent) => void) | null) {
    this.setOnAttribute('close', fn);
  }
  get onerror(): ((ev: WsEvent) => void) | null {
    return this.onAttribute('error');
  }
  set onerror(fn: ((ev: WsEvent) => void) | null) {
    this.setOnAttribute('error', fn);
  }

  private onAttribute(type: string): ((ev: WsEvent) => void) | null {
    for (const l of this.listeners(type) as Array<{ [kListener]?: (ev: WsEvent) => void; [kOnAttribute]?: boolean }>) {
      if (l[kOnAttribute] === true) return l[kListener] ?? null;
    }
    return null;
  }

  private setOnAttribute(type: string, fn: ((ev: WsEvent) => void) | null): void {
    for (const l of this.listeners(type) as Array<((...args: unknown[]) => void) & { [kOnAttribute]?: boolean }>) {
      if (l[kOnAttribute] === true) {
        this.removeListener(type, l);
        break;
      }
    }
    if (typeof fn !== 'function') return;
    const wrapper = eventWrapper(this, type, fn);
    if (wrapper === undefined) return;
    wrapper[kOnAttribute] = true;
    this.on(type, wrapper);
  }

  // ---- from the server's handlers (see server.ts) ----------------------------------------

  /** @internal a message arrived: `data` is murmur's view, copied here as binaryType asks. */
  _message(data: Buffer, isBinary: boolean): void {
    this.emit('message', messageData(data, isBinary, this._flags & BT_MASK), isBinary);
  }

  /** @internal */
  _control(event: 'ping' | 'pong', data: Buffer): void {
    if (this.listenerCount(event) > 0) this.emit(event, Buffer.from(data));
  }

  /** @internal the backlog drained: the queued sends' callbacks run; a paused socket stays paused. */
  _drain(): void {
    const peer = this._peer;
    if ((this._flags & F_PAUSED) !== 0 && peer instanceof Connection) peer.transport.pause(peer);
    const callbacks = this._callbacks;
    if (callbacks === null) return;
    this._callbacks = null;
    for (const cb of callbacks) cb();
  }

  /** @internal the peer broke the protocol: 'error' to listeners only (murmur closes the connection either way). */
  _error(err: Error): void {
    if ((this._flags & (F_ERROR_EMITTED | F_UNEXPECTED)) !== 0 && (this._flags & F_ABORTED) === 0) return;
    if ((this._flags & F_ERROR_EMITTED) !== 0) return;
    this._flags |= F_ERROR_EMITTED;
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** @internal the connection is gone. */
  _closed(code: number, reason: string): void {
    if ((this._flags & (F_UNEXPECTED | F_ABORTED)) === F_UNEXPECTED) {
      this._flags |= F_CLOSE_HELD;
      return;
    }
    if ((this._flags & F_CLOSE_EMITTED) !== 0) return;
    this._flags |= F_CLOSE_EMITTED;
    const callbacks = this._callbacks;
    this._callbacks = null;
    if (callbacks !== null) for (const cb of callbacks) cb(notOpenError(CLOSED));
    this.emit('close', code, reason === '' ? EMPTY : Buffer.from(reason));
  }
}

/** The events of a WebSocket and their arguments, as ws (and @types/ws) have them. */
type Listener = (this: WebSocket, ...args: any[]) => void; // eslint-disable-line @typescript-eslint/no-explicit-any
interface WebSocketEvents {
  message: (this: WebSocket, data: RawData, isBinary: boolean) => void;
  close: (this: WebSocket, code: number, reason: Buffer) => void;
  error: (this: WebSocket, err: Error) => void;
  ping: (this: WebSocket, data: Buffer) => void;
  pong: (this: WebSocket, data: Buffer) => void;
  open: (this: WebSocket) => void;
}

// Typed overloads of the inherited EventEmitter methods (declaration merging).
export interface WebSocket {
  on<K extends keyof WebSocketEvents>(event: K, listener: WebSocketEvents[K]): this;
  on(event: string | symbol, listener: Listener): this;
  once<K extends keyof WebSocketEvents>(event: K, listener: WebSocketEvents[K]): this;
  once(event: string | symbol, listener: Listener): this;
  off<K extends keyof WebSocketEvents>(event: K, listener: WebSocketEvents[K]): this;
  off(event: string | symbol, listener: Listener): this;
  addListener<K extends keyof WebSocketEvents>(event: K, listener: WebSocketEvents[K]): this;
  addListener(event: string | symbol, listener: Listener): this;
  removeListener<K extends keyof WebSocketEvents>(event: K, listener: WebSocketEvents[K]): this;
  removeListener(event: string | symbol, listener: Listener): this;
}

// As ws: the constants are enumerable, read-only properties of the class and its prototype,
// and the attributes enumerable accessors.
const READY_STATES = {
  CONNECTING: { enumerable: true, value: CONNECTING },
  OPEN: { enumerable: true, value: OPEN },
  CLOSING: { enumerable: true, value: CLOSING },
  CLOSED: { enumerable: true, value: CLOSED },
};
Object.defineProperties(WebSocket, READY_STATES);
Object.defineProperties(WebSocket.prototype, READY_STATES);
for (const name of ['binaryType', 'bufferedAmount', 'extensions', 'isPaused', 'protocol', 'readyState', 'url', 'onopen', 'onmessage', 'onclose', 'onerror']) {
  Object.defineProperty(WebSocket.prototype, name, { enumerable: true });
}

/** The event object ws's addEventListener and on<event> listeners get. */
export interface WsEvent {
  type: string;
  target: WebSocket;
  data?: string | RawData;
  code?: number;
  reason?: string;
  wasClean?: boolean;
  error?: Error;
  message?: string;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Wrapper = ((...args: any[]) => void) & { [kListener]?: unknown; [kOnAttribute]?: boolean };

function eventWrapper(ws: WebSocket, type: string, handler: ((ev: WsEvent) => void) | { handleEvent(ev: WsEvent): void }): Wrapper | undefined {
  const call = (ev: WsEvent): void => {
    if (typeof handler === 'function') handler.call(ws, ev);
    else handler.handleEvent.call(handler, ev);
  };
  let wrapper: Wrapper;
  switch (type) {
    case 'message':
      wrapper = (data: RawData, isBinary: boolean) => call({ type, target: ws, data: isBinary ? data : String(data) });
      break;
    case 'close':
      wrapper = (code: number, reason: Buffer) => call({ type, target: ws, code, reason: reason.toString(), wasClean: code !== CloseCode.Abnormal });
      break;
    case 'error':
      wrapper = (error: Error) => call({ type, target: ws, error, message: error.message });
      break;
    case 'open':
      wrapper = () => call({ type, target: ws });
      break;
    default:
      return undefined;
  }
  wrapper[kListener] = handler;
  return wrapper;
}

/** A copy of murmur's view, as ws hands messages out: text always as a Buffer; binary per binaryType. */
function messageData(data: Buffer, isBinary: boolean, binaryType: number): RawData {
  if (isBinary && binaryType === BT_ARRAYBUFFER) {
    const out = new ArrayBuffer(data.length);
    new Uint8Array(out).set(data);
    return out;
  }
  const copy = Buffer.from(data);
  if (!isBinary) return copy;
  return binaryType === BT_FRAGMENTS ? [copy] : binaryType === BT_BLOB ? (new Blob([copy]) as unknown as Buffer) : copy;
}

/** ws's checks of close(code, reason), with ws's errors; returns the reason as text. */
function closeReason(code: number | undefined, reason: string | Buffer | undefined): string {
  if (code === undefined) return '';
  if (typeof code !== 'number' || !isValidStatusCode(code)) throw new TypeError('First argument must be a valid error code number');
  // As ws: anything without a length (a number...) is no reason at all.
  if (reason === undefined || !(reason as { length?: number }).length) return '';
  if (typeof reason !== 'string' && !(reason instanceof Uint8Array)) throw new TypeError('Second argument must be a string or a Uint8Array');
  const bytes = typeof reason === 'string' ? Buffer.byteLength(reason) : reason.length;
  if (bytes > MAX_CLOSE_REASON) throw new RangeError('The message must not be greater than 123 bytes');
  return typeof reason === 'string' ? reason : Buffer.from(reason.buffer, reason.byteOffset, reason.length).toString('utf8');
}

/** Codes an application may send (RFC 6455 7.4.1 and 7.4.2), as ws checks them. */
function isValidStatusCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/** A Buffer over binary data, without copying (an array of pieces, as binaryType 'fragments' gives them, is joined). */
function toBuffer(data: Buffer | ArrayBuffer | ArrayBufferView | readonly Uint8Array[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  if (isAnyArrayBuffer(data)) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('The data must be a string, a Buffer, an ArrayBuffer, an ArrayBufferView or a Blob');
}

/**
 * A handshake response as node:http's IncomingMessage, as ws's 'upgrade' and
 * 'unexpected-response' give it: status, headers (lower-case names), and as its body the
 * bytes that came with the head (what the server sent in the same writes).
 */
function responseOf(head: ResponseHead, body: Buffer): IncomingMessage {
  const res = new IncomingMessage(null as unknown as Socket);
  res.httpVersion = head.version;
  res.httpVersionMajor = 1;
  res.httpVersionMinor = head.version === '1.0' ? 0 : 1;
  res.statusCode = head.status;
  res.statusMessage = head.statusText;
  for (const [name, value] of head.headers) {
    res.headers[name] = value;
    res.rawHeaders.push(name, value);
  }
  if (head.status !== 101 && body.length > 0) res.push(Buffer.from(body));
  res.push(null);
  res.complete = true;
  return res;
}

/** RFC 6455 4.1 / RFC 9110 5.6.2 token: a subprotocol name. */
const TOKEN = /^[!#$%&'*+\-.0-9A-Z^_`|a-z~]+$/;

/**
 * ws's checks of the client's arguments, with ws's errors (murmur's client checks the same
 * things with WHATWG's DOMExceptions): a SyntaxError for a URL or subprotocols ws refuses, a
 * RangeError for a protocolVersion other than 8 or 13.
 */
function checkClientArguments(address: string | URL, protocols: unknown[], opts: ClientOptions): void {
  const version = opts.protocolVersion;
  if (version !== undefined && version !== 8 && version !== 13) {
    throw new RangeError(`Unsupported protocol version: ${String(version)} (supported versions: 8, 13)`);
  }
  let url: URL;
  try {
    url = address instanceof URL ? address : new URL(address);
  } catch {
    throw new SyntaxError(`Invalid URL: ${String(address)}`);
  }
  if (url.protocol === 'ws+unix:') {
    if (!url.pathname) throw new SyntaxError("The URL's pathname is empty");
    throw new TypeError('ws+unix: URLs are not supported by the ws door\'s client');
  }
  if (!['ws:', 'wss:', 'http:', 'https:'].includes(url.protocol)) {
    throw new SyntaxError('The URL\'s protocol must be one of "ws:", "wss:", "http:", "https:", or "ws+unix:"');
  }
  if (url.hash) throw new SyntaxError('The URL contains a fragment identifier');
  const seen = new Set<unknown>();
  for (const p of protocols) {
    if (typeof p !== 'string' || !TOKEN.test(p) || seen.has(p)) throw new SyntaxError('An invalid or duplicated subprotocol was specified');
    seen.add(p);
  }
}

/** ws's client options → murmur's client options. */
function clientOptions(o: ClientOptions): MurmurClientOptions {
  const tls: Record<string, unknown> = {};
  for (const k of ['ca', 'cert', 'key', 'rejectUnauthorized', 'servername'] as const) if (o[k] !== undefined) tls[k] = o[k];
  return {
    ...(o.headers !== undefined ? { headers: o.headers } : {}),
    ...(o.origin !== undefined ? { origin: o.origin } : {}),
    ...(o.maxPayload !== undefined ? { maxPayload: o.maxPayload } : {}),
    ...(o.handshakeTimeout !== undefined ? { handshakeTimeoutMs: o.handshakeTimeout } : {}),
    ...(o.closeTimeout !== undefined ? { closeTimeoutMs: o.closeTimeout } : {}),
    ...(Object.keys(tls).length > 0 ? { tls } : {}),
    perMessageDeflate: clientDeflate(o.perMessageDeflate),
  };
}

/** Turns murmur's client events into ws's. */
function listenToClient(ws: WebSocket, client: MurmurClient, offered: readonly string[]): void {
  client.binaryType = 'nodebuffer';
  client[kOnResponse] = (head, rest) => ws._response(head, rest, offered);
  client.addEventListener('open', () => ws.emit('open'));
  client.addEventListener('message', (ev: MessageEvent<string | Buffer | ArrayBuffer>) => {
    const d = ev.data;
    if (typeof d === 'string') ws._message(Buffer.from(d), false);
    else ws._message(d as Buffer, true);
  });
  client.addEventListener('ping', (ev: MessageEvent<Buffer>) => ws._control('ping', ev.data));
  client.addEventListener('pong', (ev: MessageEvent<Buffer>) => ws._control('pong', ev.data));
  client.addEventListener('error', (ev: ErrorEvent) => ws._error(handshakeFailures.get(ws) ?? wsClientError(ev.error)));
  client.addEventListener('close', (ev: CloseEvent) => ws._closed(ev.code, ev.reason));
}
