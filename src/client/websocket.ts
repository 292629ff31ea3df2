/**
 * A WebSocket client on node:net / node:tls with the WHATWG WebSocket API (the one
 * browsers ship): readyState, send, close, binaryType, bufferedAmount, on* handlers and
 * addEventListener. Node extensions: `ping()`, `ping`/`pong` events, the `nodebuffer`
 * binaryType, and options for headers, TLS, limits and timeouts.
 *
 * Framing, masking, UTF-8 validation and the handshake arithmetic come from the sans-I/O
 * protocol layer; this file owns the socket, the timers and the state machine
 * CONNECTING -> OPEN -> CLOSING -> CLOSED.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { isAnyArrayBuffer } from 'node:util/types';
import { DEFAULT_LIMITS } from '../limits.js';
import {
  CloseCode,
  FrameParser,
  MAX_CLOSE_REASON,
  MAX_CONTROL_PAYLOAD,
  MaskKeyPool,
  Opcode,
  acceptKey,
  frameHeaderSize,
  generateClientKey,
  maskInto,
  parseTokenList,
  unmaskInPlace,
  writeFrameHeader,
  isValidUtf8,
  protocolError,
  deflateOfferHeader,
  acceptDeflateResponse,
  ProtocolError,
  type FrameHandler,
  type DeflateAgreement,
  type DeflateClientOffer,
} from '../protocol/index.js';
import { deflatePayload, inflatePayload, slideWindow, deflateCounters, inflateBusy } from '../server/deflate.js';
import { inflateLater, syncInflateBytes } from '../server/bounded-inflate.js';
import type { InflateWait } from '../server/bounded-inflate.js';
import { ClientError, domError } from './errors.js';
import { CloseEvent, ErrorEvent, MessageEvent } from './events.js';
import { ResponseHeadReader, type ResponseHead } from './response-head.js';

/** Data `send` accepts. Blob is not supported. */
export type WebSocketData = string | Buffer | ArrayBuffer | ArrayBufferView;

/** How binary messages are handed out: a Buffer (Node's default) or an ArrayBuffer. */
export type BinaryType = 'nodebuffer' | 'arraybuffer';

export interface WebSocketOptions {
  /**
   * Extra request headers. Host, Origin and Authorization may be overridden this way; the
   * handshake's own headers (Upgrade, Connection, Sec-WebSocket-*) may not: a TypeError.
   */
  headers?: Record<string, string>;
  /** Largest message accepted, in bytes; a larger one fails the connection with 1009. Default 16 MiB. */
  maxPayload?: number;
  /** Time from the constructor to a validated 101 response. Default 10 s. */
  handshakeTimeoutMs?: number;
  /**
   * After close frames are sent or received, how long to wait for the server to close TCP
   * (RFC 6455 7.1.1: the server closes first) before destroying the socket. Default 5 s.
   */
  closeTimeoutMs?: number;
  /** Options for tls.connect on wss:// (ca, rejectUnauthorized, servername, cert, key...). */
  tls?: tls.ConnectionOptions;
  /** Value of the Origin request header; none is sent when absent. */
  origin?: string;
  /**
   * Offer permessage-deflate (RFC 7692): true (the defaults) or settings; default off. By
   * default the offer asks the server for no context takeover, so neither end keeps a window
   * between messages; `serverNoContextTakeover: false` lets the server keep one, and this
   * client then keeps the last window of what it received (up to 32 KiB) as a dictionary.
   * maxPayload bounds a compressed message once inflated.
   */
  perMessageDeflate?: boolean | ClientDeflateOptions;
}

/** The client's permessage-deflate settings. */
export interface ClientDeflateOptions {
  /** Ask the server to compress each message alone (server_no_context_takeover). Default true. */
  serverNoContextTakeover?: boolean;
  /** Compress each of our messages alone (client_no_context_takeover). Default true. */
  clientNoContextTakeover?: boolean;
  /** Largest window the server may compress with, 8..15 (server_max_window_bits). Default 15. */
  serverMaxWindowBits?: number;
  /** Messages shorter than this (bytes; characters for a string) go uncompressed. Default limits.deflateThreshold. */
  threshold?: number;
}

/** A connection's permessage-deflate state: the agreement and, with context takeover, each direction's window. */
interface ClientDeflate {
  agreement: DeflateAgreement;
  threshold: number;
  /** What we sent lately (when we keep our context), what we received lately (when the server keeps its). */
  txWindow: Buffer | undefined;
  rxWindow: Buffer | undefined;
}

/** Events this class dispatches and the type of each. `ping` and `pong` are Node extensions. */
export interface WebSocketEventMap {
  open: Event;
  message: MessageEvent<string | Buffer | ArrayBuffer>;
  error: ErrorEvent;
  close: CloseEvent;
  ping: MessageEvent<Buffer>;
  pong: MessageEvent<Buffer>;
}

type HandlerType = 'open' | 'message' | 'error' | 'close';
type Listener<E> = ((this: WebSocket, ev: E) => void) | { handleEvent(ev: E): void };
type ListenerOptions = boolean | { capture?: boolean; once?: boolean; passive?: boolean; signal?: AbortSignal };

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** Request headers the handshake itself sets; an application may not override them. */
const RESERVED_HEADERS = new Set([
  'upgrade',
  'connection',
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-protocol',
  'sec-websocket-extensions',
]);
/** RFC 9110 5.6.2 token: header names and subprotocol names (RFC 6455 4.1 requires tokens). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Header values must not split the request (CR, LF) or smuggle a NUL. */
const BAD_HEADER_VALUE = /[\0\r\n]/;

/**
 * Hooks for the ws door (src/ws), which speaks ws's API on this client: ws lets a client send
 * fragments, close with any code RFC 6455 7.4 allows an endpoint to send, and leave pings to
 * the application. Symbols keep them off the WHATWG surface.
 */
export const kSendFragment = Symbol('murmur.client.sendFragment');
export const kCloseWith = Symbol('murmur.client.closeWith');
export const kNoAutoPong = Symbol('murmur.client.noAutoPong');
/** Called with the handshake's response head, before it is checked, and the bytes read behind it (ws's 'upgrade' and 'unexpected-response'). */
export const kOnResponse = Symbol('murmur.client.onResponse');

/** One pool of mask keys for every client in the process: one CSPRNG call per 2048 frames. */
const maskPool = new MaskKeyPool();
const EMPTY = Buffer.alloc(0);

/**
 * A WebSocket client connection (RFC 6455), shaped like the WHATWG WebSocket.
 *
 * Events (both `on<type>` properties and addEventListener): `open`; `message` with `data`
 * a string for text or a Buffer/ArrayBuffer per binaryType for binary (a copy the
 * application owns); `error` (an ErrorEvent whose `error` is a ClientError or a
 * ProtocolError), always followed by `close`; `close` with `code`, `reason`, `wasClean`.
 * Node extensions: `ping` and `pong` events with the payload as a Buffer in `data`.
 *
 * Differences from WHATWG: no Blob; binaryType 'nodebuffer' (the default) instead of
 * 'blob'; an error event also fires when the socket errors (reset, TLS verification) after
 * the connection opened, unless the closing handshake had completed; messages that arrive
 * after close() was called are dropped, as WHATWG says.
 */
export class WebSocket extends EventTarget {
  static readonly CONNECTING = CONNECTING;
  static readonly OPEN = OPEN;
  static readonly CLOSING = CLOSING;
  static readonly CLOSED = CLOSED;

  readonly #url: string;
  readonly #origin: string;
  readonly #protocols: readonly string[];
  readonly #maxPayload: number;
  readonly #closeTimeoutMs: number;
  readonly #expectedAccept: string;
  readonly #socket: net.Socket;

  #readyState: number = CONNECTING;
  #protocol = '';
  #binaryType: BinaryType = 'nodebuffer';
  #headReader: ResponseHeadReader | null;
  #parser: FrameParser | null = null;
  #handshakeTimer: NodeJS.Timeout | null;
  #closeTimer: NodeJS.Timeout | null = null;
  /** Whether a cork is pending its nextTick uncork: frames sent in one tick leave in one write. */
  #corked = false;
  /** Bytes passed to send() after the closing handshake started: never sent, counted as WHATWG says. */
  #discarded = 0;
  /** The permessage-deflate offer made, or null; then the agreement once open. */
  readonly #deflateOffer: (DeflateClientOffer & { threshold: number }) | null;
  #deflate: ClientDeflate | null = null;
  #extensions = '';
  /** A large message being inflated (the parser is suspended meanwhile), else null. */
  #inflating: InflateWait | null = null;
  /** Reading paused by pause() (as opposed to by an inflation's read-ahead). */
  #userPaused = false;

  #closeSent = false;
  #closeReceived = false;
  #closeCode: number = CloseCode.Abnormal;
  #closeReason = '';
  /** Set when the client failed the connection (RFC 6455 7.1.7); the close event then says 1006. */
  #error: Error | null = null;
  #errorDispatched = false;
  /** Set by the ws door's autoPong: false: pings are left to the application. */
  [kNoAutoPong] = false;
  /** The ws door's view of the response head (see kOnResponse). */
  [kOnResponse]: ((head: ResponseHead, rest: Buffer) => void) | null = null;
  readonly #handlers = new Map<HandlerType, { fn: (ev: Event) => void; wrapper: (ev: Event) => void }>();

  /**
   * Opens a connection to `url` (ws:, wss:, or http:/https: as aliases).
   * @param protocols subprotocols to offer, in order of preference.
   * @throws DOMException SyntaxError for a URL that does not parse, has another scheme or a
   *   fragment, and for protocols that are not tokens or repeat.
   * @throws TypeError for invalid options (a reserved or malformed header, a bad limit).
   */
  constructor(url: string | URL, protocols?: string | string[], options: WebSocketOptions = {}) {
    super();
    const u = parseWebSocketUrl(url);
    const list = parseProtocols(protocols);
    this.#url = u.href;
    this.#origin = u.origin;
    this.#protocols = list;
    this.#maxPayload = positiveInteger(options.maxPayload, DEFAULT_LIMITS.maxPayload, 'maxPayload');
    this.#closeTimeoutMs = positiveInteger(options.closeTimeoutMs, DEFAULT_LIMITS.closeTimeoutMs, 'closeTimeoutMs');
    const handshakeTimeoutMs = positiveInteger(options.handshakeTimeoutMs, DEFAULT_LIMITS.handshakeTimeoutMs, 'handshakeTimeoutMs');

    this.#deflateOffer = deflateOffer(options.perMessageDeflate);
    const key = generateClientKey();
    this.#expectedAccept = acceptKey(key);
    const request = buildRequest(u, key, list, options, this.#deflateOffer === null ? null : deflateOfferHeader(this.#deflateOffer));

    const secure = u.protocol === 'wss:';
    // URL keeps IPv6 literals in brackets; sockets want them bare.
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    const port = u.port === '' ? (secure ? 443 : 80) : Number(u.port);
    this.#socket = secure
      ? // SNI carries host names only (RFC 6066 3); an IP literal gets none.
        tls.connect({ ...(net.isIP(host) === 0 ? { servername: host } : {}), ...options.tls, host, port })
      : net.connect({ host, port });
    // Messages are latency-sensitive, and writes are already coalesced per tick.
    this.#socket.setNoDelay(true);
    this.#headReader = new ResponseHeadReader({
      maxHeadBytes: DEFAULT_LIMITS.maxHeadBytes,
      maxHeaders: DEFAULT_LIMITS.maxHeaders,
    });
    this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on('error', (err: Error) => this.#onSocketError(err));
    this.#socket.on('close', () => this.#onSocketClose());
    // Queued until the connection (and TLS) is up.
    this.#socket.write(request, 'latin1');
    this.#handshakeTimer = setTimeout(() => {
      this.#handshakeTimer = null;
      this.#fail(new ClientError('WS_ERR_HANDSHAKE_TIMEOUT', `No handshake response within ${handshakeTimeoutMs} ms`));
    }, handshakeTimeoutMs);
  }

  get CONNECTING(): 0 {
    return CONNECTING;
  }
  get OPEN(): 1 {
    return OPEN;
  }
  get CLOSING(): 2 {
    return CLOSING;
  }
  get CLOSED(): 3 {
    return CLOSED;
  }

  /** The URL, with http(s) turned into ws(s). */
  get url(): string {
    return this.#url;
  }
  /** 0 CONNECTING, 1 OPEN, 2 CLOSING, 3 CLOSED. */
  get readyState(): number {
    return this.#readyState;
  }
  /** The subprotocol the server selected; '' when none. */
  get protocol(): string {
    return this.#protocol;
  }
  /** The extensions the server selected (its Sec-WebSocket-Extensions), '' when none. */
  get extensions(): string {
    return this.#extensions;
  }

  /**
   * Bytes handed to the socket but not yet written to the kernel (frame headers included),
   * plus, as WHATWG says, every byte passed to send() after the closing handshake started
   * (those are never sent). 0 while CONNECTING.
   */
  get bufferedAmount(): number {
    if (this.#readyState === CONNECTING) return 0;
    return (this.#socket.destroyed ? 0 : this.#socket.writableLength) + this.#discarded;
  }

  /** 'nodebuffer' (default: binary messages are Buffers) or 'arraybuffer'. */
  get binaryType(): BinaryType {
    return this.#binaryType;
  }
  /** @throws TypeError for any other value ('blob' is not supported). */
  set binaryType(value: BinaryType) {
    if (value !== 'nodebuffer' && value !== 'arraybuffer') {
      throw new TypeError(`binaryType must be 'nodebuffer' or 'arraybuffer', got ${String(value)}`);
    }
    this.#binaryType = value;
  }

  get onopen(): ((ev: Event) => void) | null {
    return this.#getHandler('open');
  }
  set onopen(fn: ((ev: Event) => void) | null) {
    this.#setHandler('open', fn);
  }
  get onmessage(): ((ev: WebSocketEventMap['message']) => void) | null {
    return this.#getHandler('message');
  }
  set onmessage(fn: ((ev: WebSocketEventMap['message']) => void) | null) {
    this.#setHandler('message', fn as ((ev: Event) => void) | null);
  }
  get onerror(): ((ev: ErrorEvent) => void) | null {
    return this.#getHandler('error');
  }
  set onerror(fn: ((ev: ErrorEvent) => void) | null) {
    this.#setHandler('error', fn as ((ev: Event) => void) | null);
  }
  get onclose(): ((ev: CloseEvent) => void) | null {
    return this.#getHandler('close');
  }
  set onclose(fn: ((ev: CloseEvent) => void) | null) {
    this.#setHandler('close', fn as ((ev: Event) => void) | null);
  }

  /**
   * Sends a message: a string as text, anything else as binary. The payload is masked into
   * a new buffer (RFC 6455 5.3), so the caller's data is never modified and may be reused
   * at once. Frames sent in the same tick leave in one socket write.
   * After the closing handshake started the data is dropped and counted in bufferedAmount.
   * @throws DOMException InvalidStateError while CONNECTING.
   * @throws TypeError for data of another type (Blob included).
   */
  send(data: WebSocketData): void {
    if (this.#readyState === CONNECTING) throw domError('InvalidStateError', 'send() before the connection is open');
    if (typeof data === 'string') {
      if (!this.#canSend()) {
        this.#discarded += Buffer.byteLength(data);
        return;
      }
      if (this.#deflate !== null && data.length >= this.#deflate.threshold) this.#sendCompressed(Opcode.Text, Buffer.from(data, 'utf8'));
      else this.#sendText(data);
      return;
    }
    const payload = toBuffer(data);
    if (!this.#canSend()) {
      this.#discarded += payload.length;
      return;
    }
    if (this.#deflate !== null && payload.length >= this.#deflate.threshold) this.#sendCompressed(Opcode.Binary, payload);
    else this.#writeFrame(Opcode.Binary, payload);
  }

  /** RFC 7692 7.2.1: one compressed message, RSV1 set; with context takeover the window we sent lately is the dictionary. */
  #sendCompressed(opcode: number, payload: Buffer): void {
    const d = this.#deflate!;
    const bits = Math.max(9, d.agreement.clientMaxWindowBits);
    const z = deflatePayload(payload, bits, DEFAULT_LIMITS.deflateLevel, DEFAULT_LIMITS.deflateMemLevel, d.txWindow);
    if (!d.agreement.clientNoContextTakeover) d.txWindow = slideWindow(d.txWindow, payload, 1 << bits);
    deflateCounters.compressedMessages++;
    deflateCounters.compressedBytesIn += payload.length;
    deflateCounters.compressedBytesOut += z.length;
    this.#writeFrame(opcode, z, true);
  }

  /**
   * Sends a ping (a Node extension; browsers cannot). The server's pong fires a `pong` event.
   * Ignored once the closing handshake started.
   * @throws DOMException InvalidStateError while CONNECTING.
   * @throws RangeError when the payload is longer than 125 bytes (RFC 6455 5.5).
   */
  ping(data?: WebSocketData): void {
    this.#control(Opcode.Ping, 'ping', data);
  }

  /**
   * Sends an unsolicited pong (a Node extension; RFC 6455 5.5.3 allows one as a heartbeat).
   * Ignored once the closing handshake started.
   * @throws DOMException InvalidStateError while CONNECTING.
   * @throws RangeError when the payload is longer than 125 bytes (RFC 6455 5.5).
   */
  pong(data?: WebSocketData): void {
    this.#control(Opcode.Pong, 'pong', data);
  }

  /**
   * One data frame of a message sent in pieces (RFC 6455 5.4): `opcode` Text or Binary for
   * the first, Continuation for the others, `fin` on the last. The caller keeps the sequence
   * (the ws door's send with fin: false). Dropped and counted in bufferedAmount once the
   * closing handshake started, as send() does.
   * @internal
   */
  [kSendFragment](opcode: number, payload: Buffer, fin: boolean): void {
    if (!this.#canSend()) {
      this.#discarded += payload.length;
      return;
    }
    this.#writeFrame(opcode, payload, false, fin);
  }

  #control(opcode: number, name: string, data: WebSocketData | undefined): void {
    if (this.#readyState === CONNECTING) throw domError('InvalidStateError', `${name}() before the connection is open`);
    const payload = data === undefined ? EMPTY : typeof data === 'string' ? Buffer.from(data, 'utf8') : toBuffer(data);
    if (payload.length > MAX_CONTROL_PAYLOAD) {
      throw new RangeError(`A ${name} carries at most ${MAX_CONTROL_PAYLOAD} bytes, got ${payload.length}`);
    }
    if (this.#canSend()) this.#writeFrame(opcode, payload);
  }

  /**
   * Stops reading from the socket (a Node extension): no message arrives until resume(); the
   * server's frames wait in the kernel, and TCP flow control holds the server back.
   */
  pause(): void {
    this.#userPaused = true;
    this.#socket.pause();
  }

  /** Reads from the socket again after pause() (once a large message being inflated is delivered). */
  resume(): void {
    this.#userPaused = false;
    if (this.#inflating === null) this.#socket.resume();
  }

  /**
   * Destroys the socket at once, without a closing handshake (a Node extension); the close
   * event follows with 1006. While CONNECTING the connection is failed as by close().
   */
  terminate(): void {
    if (this.#readyState === CLOSED) return;
    if (this.#readyState === CONNECTING) {
      this.#fail(new ClientError('WS_ERR_ABORTED', 'terminate() called before the connection was established'));
      return;
    }
    this.#readyState = CLOSING;
    this.#socket.destroy();
  }

  /**
   * Starts the closing handshake (RFC 6455 7.1.2): sends a close frame, then waits for the
   * server's close frame and for the server to close TCP, destroying the socket after
   * closeTimeoutMs. While CONNECTING the connection is failed instead (error, then close
   * with 1006). Does nothing when already CLOSING or CLOSED.
   * @throws DOMException InvalidAccessError when `code` is not 1000 or 3000-4999.
   * @throws DOMException SyntaxError when `reason` is longer than 123 UTF-8 bytes.
   */
  close(code?: number, reason?: string): void {
    if (code !== undefined && code !== CloseCode.Normal && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
      throw domError('InvalidAccessError', `close code must be 1000 or 3000-4999, got ${code}`);
    }
    if (reason !== undefined && Buffer.byteLength(reason) > MAX_CLOSE_REASON) {
      throw domError('SyntaxError', `close reason is longer than ${MAX_CLOSE_REASON} UTF-8 bytes`);
    }
    this[kCloseWith](code, reason);
  }

  /**
   * close() without WHATWG's restriction of the code: the caller has checked it against
   * RFC 6455 7.4 (the ws door, whose API allows 1000-1014 as ws does).
   * @internal
   */
  [kCloseWith](code: number | undefined, reason: string | undefined): void {
    if (this.#readyState === CLOSING || this.#readyState === CLOSED) return;
    if (this.#readyState === CONNECTING) {
      this.#fail(new ClientError('WS_ERR_ABORTED', 'close() called before the connection was established'));
      return;
    }
    this.#readyState = CLOSING;
    // A reason cannot travel without a code; WHATWG supplies 1000.
    const sendCode = code ?? (reason !== undefined && reason !== '' ? CloseCode.Normal : undefined);
    this.#sendClose(sendCode, reason ?? '');
    this.#startCloseTimer();
  }

  // --- receiving -------------------------------------------------------------------

  #onData(chunk: Buffer): void {
    if (this.#parser !== null) {
      this.#read(this.#parser, chunk);
      return;
    }
    const reader = this.#headReader;
    if (reader === null) return; // failed or aborted: input is discarded
    let result;
    try {
      result = reader.push(chunk);
    } catch (err) {
      this.#fail(err as ClientError);
      return;
    }
    if (result === undefined) return;
    this.#headReader = null;
    this[kOnResponse]?.(result.head, result.rest);
    // The hook may have closed the connection.
    if (this.#readyState !== CONNECTING || this.#error !== null) return;
    const rejection = this.#checkResponse(result.head);
    if (rejection !== null) {
      this.#fail(rejection);
      return;
    }
    const parser = this.#open(result.head);
    // Frames the server sent right behind its 101, parsed after `open` was dispatched.
    if (result.rest.length > 0) this.#read(parser, result.rest);
  }

  /** Parses a chunk, unless a large message is being inflated: then the chunk waits behind it. */
  #read(parser: FrameParser, chunk: Buffer): void {
    const used = parser.suspended ? 0 : parser.push(chunk);
    const wait = this.#inflating;
    if (parser.suspended && wait !== null && wait.hold(chunk, used)) this.#socket.pause();
  }

  /** The end of a large message's inflation: delivers it, then parses what was read behind it. */
  #inflated(wait: InflateWait, result: Buffer | ProtocolError): void {
    if (this.#inflating !== wait) return;
    this.#inflating = null;
    const parser = this.#parser;
    if (parser === null || !parser.suspended) return;
    const rest = wait.takeRest();
    if (this.#deliverInflated(result, wait.isBinary)) parser.resume();
    if (rest !== null && !parser.halted) this.#read(parser, rest);
    if (this.#inflating === null && !this.#userPaused) this.#socket.resume();
  }

  /** Validates a complete response head (RFC 6455 4.1, the client's steps 1-6). Returns the failure, or null. */
  #checkResponse(head: ResponseHead): ClientError | null {
    const h = head.headers;
    if (head.status !== 101) {
      return new ClientError('WS_ERR_HANDSHAKE_STATUS', `Unexpected server response: ${head.status} ${head.statusText}`.trim(), {
        status: head.status,
        headers: h,
      });
    }
    const meta = { status: 101, headers: h };
    if (h.get('upgrade')?.toLowerCase() !== 'websocket') {
      return new ClientError('WS_ERR_INVALID_UPGRADE_HEADER', 'The 101 response lacks "Upgrade: websocket"', meta);
    }
    if (!parseTokenList(h.get('connection') ?? '').some((t) => t.toLowerCase() === 'upgrade')) {
      return new ClientError('WS_ERR_INVALID_CONNECTION_HEADER', 'The 101 response lacks "Connection: upgrade"', meta);
    }
    if (h.get('sec-websocket-accept') !== this.#expectedAccept) {
      return new ClientError('WS_ERR_INVALID_ACCEPT', 'Sec-WebSocket-Accept does not match the key sent', meta);
    }
    const extensions = h.get('sec-websocket-extensions');
    if (this.#deflateOffer !== null) {
      const agreed = acceptDeflateResponse(extensions, this.#deflateOffer);
      if (typeof agreed === 'string') return new ClientError('WS_ERR_UNEXPECTED_EXTENSION', `Invalid extension response (${agreed}): ${extensions}`, meta);
      if (agreed !== null) {
        this.#deflate = { agreement: agreed, threshold: this.#deflateOffer.threshold, txWindow: undefined, rxWindow: undefined };
        this.#extensions = extensions!;
      }
    } else if (extensions !== undefined && parseTokenList(extensions).length > 0) {
      return new ClientError('WS_ERR_UNEXPECTED_EXTENSION', `The server selected extensions we did not offer: ${extensions}`, meta);
    }
    const protocol = h.get('sec-websocket-protocol');
    if (protocol !== undefined && !this.#protocols.includes(protocol)) {
      return new ClientError('WS_ERR_UNEXPECTED_SUBPROTOCOL', `The server selected a subprotocol we did not offer: ${protocol}`, meta);
    }
    return null;
  }

  #open(head: ResponseHead): FrameParser {
    this.#clearHandshakeTimer();
    this.#protocol = head.headers.get('sec-websocket-protocol') ?? '';
    this.#readyState = OPEN;
    // Servers never mask (RFC 6455 5.1): a masked frame fails the connection with 1002.
    // RFC 7692 6: RSV1 marks a compressed message once deflate is agreed.
    const parser = new FrameParser(this.#frameHandler(), { maxPayload: this.#maxPayload, expectMasked: false, rsvAllowed: this.#deflate === null ? 0 : 0x40 });
    this.#parser = parser;
    this.dispatchEvent(new Event('open'));
    // If the open handler failed the connection, the parser is halted and discards the rest.
    return parser;
  }

  #frameHandler(): FrameHandler {
    return {
      onMessage: (data, isBinary, rsv) => this.#onMessage(data, isBinary, rsv),
      onPing: (data) => this.#onPing(data),
      onPong: (data) => {
        if (this.#readyState === OPEN) this.dispatchEvent(new MessageEvent('pong', Buffer.from(data), this.#origin));
      },
      onClose: (code, reason) => this.#onCloseFrame(code, reason),
      onProtocolError: (err) => this.#onProtocolError(err),
    };
  }

  #onMessage(data: Buffer, isBinary: boolean, rsv: number): boolean | 'suspend' {
    // WHATWG: a message received once the closing handshake started is not delivered.
    if (this.#readyState !== OPEN) return true;
    if (rsv === 0) return this.#deliver(data, isBinary);
    const d = this.#deflate!;
    const out = inflatePayload(data, this.#maxPayload, d.rxWindow, syncInflateBytes());
    if (out !== null) return this.#deliverInflated(out, isBinary);
    // Too large for one call: inflated in bounded slices while the parser waits (order kept).
    const wait = inflateLater({ inflated: (w, r) => this.#inflated(w, r) }, data, this.#maxPayload, d.rxWindow, isBinary);
    if (wait === null) return this.#deliverInflated(inflateBusy(), isBinary);
    this.#inflating = wait;
    return 'suspend';
  }

  /** An inflated message, or why it failed: delivered (true), or the connection failed (false). */
  #deliverInflated(out: Buffer | ProtocolError, isBinary: boolean): boolean {
    if (this.#readyState !== OPEN) return true; // closing meanwhile: not delivered
    const err = out instanceof ProtocolError ? out : !isBinary && !isValidUtf8(out) ? protocolError('WS_ERR_INVALID_UTF8', 'Invalid UTF-8 in a text message') : null;
    if (err !== null) {
      this.#fail(err, err.closeCode);
      return false;
    }
    const d = this.#deflate!;
    if (!d.agreement.serverNoContextTakeover) d.rxWindow = slideWindow(d.rxWindow, out as Buffer, 1 << d.agreement.serverMaxWindowBits);
    return this.#deliver(out as Buffer, isBinary);
  }

  #deliver(data: Buffer, isBinary: boolean): true {
    // `data` is valid only during this call: every branch copies.
    let value: string | Buffer | ArrayBuffer;
    if (!isBinary) {
      value = data.toString('utf8');
    } else if (this.#binaryType === 'arraybuffer') {
      value = new ArrayBuffer(data.length);
      new Uint8Array(value).set(data);
    } else {
      value = Buffer.from(data);
    }
    this.dispatchEvent(new MessageEvent('message', value, this.#origin));
    return true;
  }

  #onPing(data: Buffer): void {
    // RFC 6455 5.5.2: answer with a pong carrying the same payload, unless we already sent close.
    if (this.#canSend() && !this[kNoAutoPong]) this.#writeFrame(Opcode.Pong, data);
    if (this.#readyState === OPEN) this.dispatchEvent(new MessageEvent('ping', Buffer.from(data), this.#origin));
  }

  #onCloseFrame(code: number, reason: string): void {
    this.#closeReceived = true;
    this.#closeCode = code;
    this.#closeReason = reason;
    if (!this.#closeSent) {
      // RFC 6455 5.5.1: reply with a close frame, echoing the code (none when there was none).
      this.#readyState = CLOSING;
      this.#sendClose(code === CloseCode.NoStatus ? undefined : code, '');
    }
    // RFC 6455 7.1.1: the server closes TCP first; wait for it, for a while.
    this.#startCloseTimer();
  }

  #onProtocolError(err: ProtocolError): void {
    this.#fail(err, err.closeCode);
  }

  // --- sending ---------------------------------------------------------------------

  #canSend(): boolean {
    return this.#readyState === OPEN && !this.#closeSent;
  }

  #sendClose(code: number | undefined, reason: string): void {
    this.#closeSent = true;
    let payload = EMPTY;
    if (code !== undefined) {
      payload = Buffer.allocUnsafe(2 + Buffer.byteLength(reason));
      payload.writeUInt16BE(code, 0);
      payload.write(reason, 2, 'utf8');
    }
    this.#writeFrame(Opcode.Close, payload);
  }

  /** A text frame, the string encoded straight into the frame buffer and masked there. */
  #sendText(text: string): void {
    const length = Buffer.byteLength(text);
    const headerSize = frameHeaderSize(length, true);
    const out = Buffer.allocUnsafe(headerSize + length);
    const keyOffset = maskPool.next();
    writeFrameHeader(out, 0, Opcode.Text, length, true, false, maskPool.buf, keyOffset);
    out.write(text, headerSize, 'utf8');
    // The key was copied into the header; mask with that copy.
    unmaskInPlace(out, headerSize, out.length, out, headerSize - 4, 0);
    this.#write(out);
  }

  /**
   * One frame, header and masked payload in one new buffer: a client must copy to mask
   * (the payload is the caller's), so the header costs no extra copy.
   */
  #writeFrame(opcode: number, payload: Buffer, compressed = false, fin = true): void {
    const headerSize = frameHeaderSize(payload.length, true);
    const out = Buffer.allocUnsafe(headerSize + payload.length);
    const keyOffset = maskPool.next();
    writeFrameHeader(out, 0, opcode, payload.length, fin, compressed, maskPool.buf, keyOffset);
    maskInto(payload, out, headerSize - 4, out, headerSize);
    this.#write(out);
  }

  #write(frame: Buffer): void {
    const socket = this.#socket;
    if (!socket.writable) return;
    if (!this.#corked) {
      this.#corked = true;
      socket.cork();
      process.nextTick(this.#uncork);
    }
    socket.write(frame);
  }

  readonly #uncork = (): void => {
    this.#corked = false;
    this.#socket.uncork();
  };

  // --- failing and closing ---------------------------------------------------------

  /**
   * Fails the connection (RFC 6455 7.1.7), the one funnel for every failure: input is
   * discarded from here on; with `closeCode` (a protocol error after open) a close frame
   * tells the server why and our side of TCP is ended, otherwise the socket is destroyed.
   * The error event is dispatched on the next tick (never inside an API call), and always
   * before the close event.
   */
  #fail(err: Error, closeCode?: number): void {
    if (this.#error !== null || this.#readyState === CLOSED) return;
    this.#error = err;
    this.#clearHandshakeTimer();
    this.#headReader = null;
    this.#parser?.halt();
    this.#readyState = CLOSING;
    if (closeCode !== undefined && !this.#closeSent && this.#socket.writable) {
      this.#sendClose(closeCode, '');
      this.#socket.end();
      this.#startCloseTimer();
    } else {
      this.#socket.destroy();
    }
    process.nextTick(() => this.#dispatchError());
  }

  #dispatchError(): void {
    if (this.#error === null || this.#errorDispatched) return;
    this.#errorDispatched = true;
    this.dispatchEvent(new ErrorEvent('error', this.#error));
  }

  #onSocketError(err: Error): void {
    // A reset after close frames went both ways changes nothing: the handshake completed.
    if (this.#closeSent && this.#closeReceived) {
      this.#socket.destroy();
      return;
    }
    this.#fail(new ClientError('WS_ERR_SOCKET', `Socket error: ${err.message}`, { cause: err }));
  }

  #onSocketClose(): void {
    this.#clearHandshakeTimer();
    if (this.#closeTimer !== null) {
      clearTimeout(this.#closeTimer);
      this.#closeTimer = null;
    }
    if (this.#readyState === CONNECTING) {
      this.#error = new ClientError('WS_ERR_CLOSED_BEFORE_OPEN', 'The connection closed before the handshake completed');
    }
    this.#readyState = CLOSED;
    this.#headReader = null;
    this.#parser?.halt();
    this.#parser = null;
    this.#inflating?.cancel();
    this.#inflating = null;
    this.#dispatchError();
    // WHATWG: a failed connection reports 1006 whatever frames were exchanged.
    const failed = this.#error !== null;
    const code = failed || !this.#closeReceived ? CloseCode.Abnormal : this.#closeCode;
    const reason = failed || !this.#closeReceived ? '' : this.#closeReason;
    const wasClean = !failed && this.#closeSent && this.#closeReceived;
    this.dispatchEvent(new CloseEvent('close', code, reason, wasClean));
  }

  #startCloseTimer(): void {
    if (this.#closeTimer !== null) return;
    this.#closeTimer = setTimeout(() => {
      this.#closeTimer = null;
      this.#socket.destroy();
    }, this.#closeTimeoutMs);
  }

  #clearHandshakeTimer(): void {
    if (this.#handshakeTimer !== null) {
      clearTimeout(this.#handshakeTimer);
      this.#handshakeTimer = null;
    }
  }

  // --- on<event> handler properties ---------------------------------------------------

  #getHandler<E>(type: HandlerType): ((ev: E) => void) | null {
    return (this.#handlers.get(type)?.fn as ((ev: E) => void) | undefined) ?? null;
  }

  /**
   * WHATWG event handler semantics: the listener keeps the place in the listener list it got
   * when first set; assigning null (or a non-function) removes it.
   */
  #setHandler(type: HandlerType, fn: ((ev: Event) => void) | null): void {
    const slot = this.#handlers.get(type);
    if (typeof fn !== 'function') {
      if (slot !== undefined) {
        this.removeEventListener(type, slot.wrapper);
        this.#handlers.delete(type);
      }
      return;
    }
    if (slot !== undefined) {
      slot.fn = fn;
      return;
    }
    const entry = {
      fn,
      wrapper: (ev: Event): void => {
        entry.fn.call(this, ev);
      },
    };
    this.#handlers.set(type, entry);
    this.addEventListener(type, entry.wrapper);
  }
}

// Typed overloads of the inherited EventTarget methods (declaration merging).
export interface WebSocket {
  addEventListener<K extends keyof WebSocketEventMap>(type: K, listener: Listener<WebSocketEventMap[K]>, options?: ListenerOptions): void;
  addEventListener(type: string, listener: Listener<Event> | null, options?: ListenerOptions): void;
  removeEventListener<K extends keyof WebSocketEventMap>(
    type: K,
    listener: Listener<WebSocketEventMap[K]>,
    options?: boolean | { capture?: boolean },
  ): void;
  removeEventListener(type: string, listener: Listener<Event> | null, options?: boolean | { capture?: boolean }): void;
}

// --- constructor helpers ---------------------------------------------------------------

/** WHATWG WebSocket constructor steps 1-5: parse, map http(s) to ws(s), refuse other schemes and fragments. */
function parseWebSocketUrl(url: string | URL): URL {
  let u: URL;
  try {
    u = new URL(String(url));
  } catch {
    throw domError('SyntaxError', `Invalid URL: ${String(url)}`);
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw domError('SyntaxError', `The URL's scheme must be ws, wss, http or https, got ${u.protocol.slice(0, -1)}`);
  }
  // `hash` is '' both for no fragment and for an empty one; href tells them apart.
  if (u.hash !== '' || u.href.endsWith('#')) throw domError('SyntaxError', 'The URL must not have a fragment');
  return u;
}

/** RFC 6455 4.1: each subprotocol a token, no repeats (WHATWG constructor step 7). */
function parseProtocols(protocols: string | string[] | undefined): string[] {
  const list = protocols === undefined ? [] : typeof protocols === 'string' ? [protocols] : [...protocols];
  const seen = new Set<string>();
  for (const p of list) {
    if (typeof p !== 'string' || !TOKEN.test(p)) throw domError('SyntaxError', `Invalid subprotocol ${JSON.stringify(p)}`);
    if (seen.has(p)) throw domError('SyntaxError', `Duplicate subprotocol ${JSON.stringify(p)}`);
    seen.add(p);
  }
  return list;
}

function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) throw new TypeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

/** The GET request of the opening handshake (RFC 6455 4.1), as a latin1 string. */
/** The offer `perMessageDeflate` asks for, or null for none. @throws TypeError on a window outside 8..15. */
function deflateOffer(option: WebSocketOptions['perMessageDeflate']): (DeflateClientOffer & { threshold: number }) | null {
  if (option === undefined || option === false) return null;
  const o = option === true ? {} : option;
  const bits = o.serverMaxWindowBits ?? 15;
  if (!Number.isInteger(bits) || bits < 8 || bits > 15) throw new TypeError('perMessageDeflate.serverMaxWindowBits must be an integer from 8 to 15');
  return {
    serverNoContextTakeover: o.serverNoContextTakeover ?? true,
    clientNoContextTakeover: o.clientNoContextTakeover ?? true,
    serverMaxWindowBits: bits,
    threshold: Math.max(0, o.threshold ?? DEFAULT_LIMITS.deflateThreshold),
  };
}

function buildRequest(u: URL, key: string, protocols: readonly string[], options: WebSocketOptions, extensions: string | null): string {
  const headers = new Map<string, [string, string]>();
  const set = (name: string, value: string): void => void headers.set(name.toLowerCase(), [name, value]);
  set('Host', u.host);
  if (u.username !== '' || u.password !== '') {
    const credentials = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
    set('Authorization', `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`);
  }
  if (options.origin !== undefined) set('Origin', options.origin);
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (!TOKEN.test(name)) throw new TypeError(`Invalid header name ${JSON.stringify(name)}`);
    if (RESERVED_HEADERS.has(name.toLowerCase())) throw new TypeError(`Header ${name} is set by the handshake itself`);
    if (typeof value !== 'string' || BAD_HEADER_VALUE.test(value)) throw new TypeError(`Invalid value for header ${name}`);
    set(name, value);
  }
  for (const [name, value] of headers.values()) {
    if (BAD_HEADER_VALUE.test(value)) throw new TypeError(`Invalid value for header ${name}`);
  }
  let head = `GET ${u.pathname}${u.search} HTTP/1.1\r\n`;
  for (const [name, value] of headers.values()) head += `${name}: ${value}\r\n`;
  head += 'Upgrade: websocket\r\nConnection: Upgrade\r\n';
  head += `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`;
  if (protocols.length > 0) head += `Sec-WebSocket-Protocol: ${protocols.join(', ')}\r\n`;
  if (extensions !== null) head += `Sec-WebSocket-Extensions: ${extensions}\r\n`;
  return `${head}\r\n`;
}

/** A Buffer over binary send() data, without copying. */
function toBuffer(data: Exclude<WebSocketData, string>): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (isAnyArrayBuffer(data)) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('send() takes a string, Buffer, ArrayBuffer or ArrayBufferView (Blob is not supported)');
}
