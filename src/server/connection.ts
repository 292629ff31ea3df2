import { Buffer } from 'node:buffer';
import { FrameParser, Opcode, CloseCode, encodeServerFrame, serverCloseFrame, encodeCloseFrame, EMPTY_PING_FRAME, EMPTY_PONG_FRAME, acceptKey, isValidUtf8, protocolError } from '../protocol/index.js';
import { inflatePayload, maybeDeflate, inflateBusy } from './deflate.js';
import { inflateLater, syncInflateBytes } from './bounded-inflate.js';
import type { InflateWait } from './bounded-inflate.js';
import type { Socket } from 'node:net';
import { ProtocolError } from '../protocol/index.js';
import type { FrameHandler, DeflateAgreement } from '../protocol/index.js';
import { RequestHeadParser, requestHeadBytes, validateUpgrade, rejectResponse, switchingProtocolsResponse, HttpReject, reject as rejectFor, rejectOrigin, rejectServerFull, rejectHandshakeTimeout } from '../http/index.js';
import type { ParsedHead, UpgradeRequest } from '../http/index.js';
import { TRANSPORT_FLAG_BITS } from '../transport/transport.js';
import type { Transport, TransportSink } from '../transport/transport.js';
import { leanTransport } from '../transport/lean-transport.js';
import { socketTransport } from '../transport/socket-transport.js';
import type { SweepEntry } from './sweeper.js';
import { SendResult } from './options.js';
import type { ServerCore } from './core.js';
import type { Server } from './server.js';
import type { Subscriber, Topic, Topics, SubscribeResult } from '../pubsub/topics.js';
import type { StreamPosition } from '../pubsub/history.js';

export const ConnState = { Handshake: 0, Open: 1, Closing: 2, Closed: 3 } as const;
export type ConnState = (typeof ConnState)[keyof typeof ConnState];

// `flags` is shared with the transport, which owns the bits below TRANSPORT_FLAG_BITS. Ours
// sit above them: the state (two bits), then one bit per condition. One small integer (a Smi,
// stored in place) instead of a field each.
const S_SHIFT = TRANSPORT_FLAG_BITS;
const S_MASK = 3 << S_SHIFT;
const S_OPEN = ConnState.Open << S_SHIFT;
const S_CLOSED = ConnState.Closed << S_SHIFT;
const F_CORKED = 1 << (S_SHIFT + 2); // corked for this tick, on the server's flush list
const F_NEED_DRAIN = 1 << (S_SHIFT + 3); // a send returned 'queued': tell the application on drain
const F_PAUSED = 1 << (S_SHIFT + 4); // reading paused because the backlog is over budget
const F_PING_OUT = 1 << (S_SHIFT + 5); // a heartbeat ping is unanswered
const F_CLOSE_SENT = 1 << (S_SHIFT + 6);
const F_CLOSE_RECEIVED = 1 << (S_SHIFT + 7);
const F_HOOK = 1 << (S_SHIFT + 8); // the async upgrade hook is running
const F_NOTIFIED = 1 << (S_SHIFT + 9); // the close handler ran
const F_OPENED = 1 << (S_SHIFT + 10); // the upgrade completed (counted in openCount)
const F_LEAN = 1 << (S_SHIFT + 11); // carried by the lean transport, else by the socket transport
const F_HEAD_DONE = 1 << (S_SHIFT + 12); // the request head was read (or the request rejected): no more head bytes
const F_PONG_OWED = 1 << (S_SHIFT + 13); // a pong is owed (in server.owedPongs), held back by the control budget
const F_HS_COUNTED = 1 << (S_SHIFT + 14); // counted in the server's handshakes in flight
const F_ADDR_HS = 1 << (S_SHIFT + 15); // counted in the handshakes of its address (the peer is cached in the side slot)
const F_ADDR_SOCKET = 1 << (S_SHIFT + 16); // counted in the sockets of its address (the peer is cached in the side slot)
// Bits only the handshake uses, taken again once the connection is open (the Smi has no free
// bit left): F_HOOK is clear once the hook settled, F_ADDR_HS once handshakeOver ran (and with
// F_HS_COUNTED clear nothing reads it again).
const F_DEFLATE = F_HOOK; // open: permessage-deflate was negotiated
const F_DEFLATE_SMALL = F_ADDR_HS; // open, with F_DEFLATE: the client asked for a window below the server's; frames are compressed with the smallest

/** The pong owed to a connection whose backlog is over the control budget: the latest ping's payload. */
export class OwedPong {
  readonly payload: Buffer;
  length: number;
  /** Pings that arrived since the pong was first owed. */
  pings: number;

  constructor() {
    this.payload = Buffer.allocUnsafe(125);
    this.length = 0;
    this.pings = 0;
  }
}

/** Frames up to this size are copied behind their header into one buffer: one write, one allocation. */
const COPY_THRESHOLD = 1024;
const EMPTY = Buffer.alloc(0);

/**
 * What few connections ever need, or need only at once with something else: made on first
 * use, and given up again once it holds nothing a parser or a topic list alone cannot hold.
 */
class ConnectionExtra {
  /** The head parser during the handshake, a frame parser while a frame is cut off mid-way. */
  reader: RequestHeadParser | FrameParser | null;
  topics: Topic[] | null;
  protocol: string;
  closeCode: number;
  closeReason: string;
  /** The peer's address, cached on the first remoteAddress read (after a close it cannot be asked). */
  peer: string | undefined;

  constructor(reader: RequestHeadParser | FrameParser | null, topics: Topic[] | null, peer?: string) {
    this.reader = reader;
    this.topics = topics;
    this.protocol = '';
    this.closeCode = CloseCode.Abnormal;
    this.closeReason = '';
    this.peer = peer;
  }

  /** What the slot can hold instead of this extra: the one thing it still holds (or null), else itself. */
  collapse(): Side {
    if (this.protocol !== '' || this.closeCode !== CloseCode.Abnormal || this.closeReason !== '') return this;
    const held = (this.reader !== null ? 1 : 0) + (this.topics !== null ? 1 : 0) + (this.peer !== undefined ? 1 : 0);
    return held > 1 ? this : (this.reader ?? this.topics ?? this.peer ?? null);
  }
}

/**
 * The connection's one slot for what an idle connection rarely holds: null (the usual idle
 * connection), its reader alone (the head parser, or a frame parser holding a cut-off frame),
 * its topic list alone (an idle subscriber), its peer address alone (a string shared by every
 * connection of that address when the server counts sockets per address), or a
 * ConnectionExtra for anything more.
 */
type Side = RequestHeadParser | FrameParser | Topic[] | string | ConnectionExtra | null;

/** Shared by the frame parsers that connections hand back: no connection gets a parser's calls through it. */
const DETACHED: FrameHandler = {
  onMessage() {},
  onPing() {},
  onPong() {},
  onClose() {},
  onProtocolError() {},
};

/**
 * One WebSocket connection, and the only object murmur keeps per connection: the transport's
 * state lives in two of its slots (io, flags; see TransportSink) and in the handle or socket,
 * the transport itself is shared (which one: a bit of flags). Small and flat: the behaviour
 * lives on the server; no timers, no closures, no buffers while idle, no parser between
 * frames (frames that arrive whole are read by a parser the server lends).
 *
 * Six fields, 72 bytes: `server` is not one of them. Each server makes its own subclass and
 * puts itself on that subclass's prototype (see Server), so a connection reaches its server
 * through its hidden class, for no bytes.
 */
export class Connection<T = unknown> implements TransportSink, FrameHandler, SweepEntry, Subscriber {
  /** Transport slot: the TCP handle or net.Socket. Only the transport touches it. */
  io: unknown;
  /** Transport slot and this connection's own bits (see above). */
  flags: number;
  /** Application data, set freely (for example by the upgrade hook). */
  data: T;
  /**
   * Sweeper time the current deadline counts from: the last byte from the peer while open,
   * else the start of the handshake or of the closing.
   */
  mark: number;
  sweepNext: SweepEntry | null;
  private side: Side;
  /** The server's internal core: on the prototype of the server's own subclass, not on the instance. */
  private declare readonly core: ServerCore<T>;

  /** `io` is what `transport` drives: an accepted TCP handle (leanTransport) or a net.Socket (socketTransport). */
  constructor(transport: Transport, io: unknown) {
    if (transport !== leanTransport && transport !== socketTransport) throw new TypeError('Connection: unknown transport');
    if (this.core === undefined) throw new TypeError('Connection: made by a Server (each server has its own subclass), not directly');
    this.io = io;
    this.flags = transport === leanTransport ? F_LEAN : 0;
    this.data = undefined as T;
    this.mark = this.core.sweeper.now;
    this.sweepNext = null;
    this.side = null;
  }

  /** The server that accepted this connection. */
  get server(): Server<T> {
    return this.core.facade;
  }

  /** The transport carrying this connection (shared by all connections of its kind). */
  get transport(): Transport {
    return (this.flags & F_LEAN) !== 0 ? leanTransport : socketTransport;
  }

  get state(): ConnState {
    return ((this.flags & S_MASK) >>> S_SHIFT) as ConnState;
  }

  private setState(s: ConnState): void {
    this.flags = (this.flags & ~S_MASK) | (s << S_SHIFT);
  }

  /** The selected subprotocol, or '' when none. */
  get protocol(): string {
    const x = this.side;
    return x instanceof ConnectionExtra ? x.protocol : '';
  }

  /** The code of the peer's close frame (1006 when none came). */
  get closeCode(): number {
    const x = this.side;
    return x instanceof ConnectionExtra ? x.closeCode : CloseCode.Abnormal;
  }

  /** The reason of the peer's close frame ('' when none came). */
  get closeReason(): string {
    const x = this.side;
    return x instanceof ConnectionExtra ? x.closeReason : '';
  }

  /** The topics this connection is subscribed to; null while none. Kept for the server's pub/sub. */
  get topics(): Topic[] | null {
    const x = this.side;
    if (x === null || typeof x === 'string') return null;
    if (Array.isArray(x)) return x;
    return x instanceof ConnectionExtra ? x.topics : null;
  }

  set topics(topics: Topic[] | null) {
    const x = this.side;
    if (x instanceof ConnectionExtra) {
      x.topics = topics;
      if (topics === null) this.side = x.collapse();
    } else if (x === null || Array.isArray(x)) this.side = topics;
    else if (topics !== null) this.side = typeof x === 'string' ? new ConnectionExtra(null, topics, x) : new ConnectionExtra(x, topics);
  }

  /** The head parser or this connection's own frame parser, else null. */
  private get reader(): RequestHeadParser | FrameParser | null {
    const x = this.side;
    if (x === null || Array.isArray(x) || typeof x === 'string') return null;
    return x instanceof ConnectionExtra ? x.reader : x;
  }

  private set reader(reader: RequestHeadParser | FrameParser | null) {
    const x = this.side;
    if (x instanceof ConnectionExtra) {
      x.reader = reader;
      if (reader === null) this.side = x.collapse();
    } else if (Array.isArray(x)) {
      if (reader !== null) this.side = new ConnectionExtra(reader, x);
    } else if (typeof x === 'string') {
      if (reader !== null) this.side = new ConnectionExtra(reader, null, x);
    } else this.side = reader;
  }

  private ext(): ConnectionExtra {
    const x = this.side;
    if (x instanceof ConnectionExtra) return x;
    const made =
      x === null ? new ConnectionExtra(null, null) : Array.isArray(x) ? new ConnectionExtra(null, x) : typeof x === 'string' ? new ConnectionExtra(null, null, x) : new ConnectionExtra(x, null);
    this.side = made;
    return made;
  }

  /** The cached peer address, if any. */
  private get cachedPeer(): string | undefined {
    const x = this.side;
    return typeof x === 'string' ? x : x instanceof ConnectionExtra ? x.peer : undefined;
  }

  /** Caches the peer address: alone in the slot when it is empty, else in the extra. */
  private set cachedPeer(peer: string | undefined) {
    const x = this.side;
    if (x instanceof ConnectionExtra) {
      x.peer = peer;
      if (peer === undefined) this.side = x.collapse();
    } else if (x === null || typeof x === 'string') this.side = peer ?? null;
    else if (peer !== undefined) this.ext().peer = peer;
  }

  /** Starts reading an HTTP upgrade request from the transport, unless a limit refuses the socket at once. */
  startHandshake(): void {
    if (this.admitted()) this.transport.attach(this);
  }

  /** Takes over a request already parsed elsewhere (node:http upgrade), unless a limit refuses the socket at once. */
  startFromUpgrade(req: UpgradeRequest | HttpReject, rest: Buffer): void {
    this.flags |= F_HEAD_DONE;
    if (!this.admitted()) return;
    this.transport.attach(this);
    if (req instanceof HttpReject) this.reject(req);
    else this.accept(req, rest);
  }

  /**
   * Counts this socket against the handshake and address limits, or refuses it: a best-effort
   * response (the bytes go if the kernel takes them at once) and an immediate close, so a
   * refused socket holds no descriptor and no slot. Returns whether the socket was admitted.
   */
  private admitted(): boolean {
    const server = this.core;
    server.sweeper.add(this);
    const refusal = this.admit();
    if (refusal === null) return true;
    server.rejected(refusal);
    this.flags |= F_HEAD_DONE;
    this.transport.attach(this);
    this.transport.write(this, rejectResponse(refusal));
    this.terminate();
    return false;
  }

  private admit(): HttpReject | null {
    const server = this.core;
    const a = server.admission;
    const limits = server.limits;
    if (a.descriptorsExhausted) return rejectFor('DESCRIPTORS_EXHAUSTED');
    if (limits.maxHandshakes > 0 && a.handshakes >= limits.maxHandshakes) return rejectFor('TOO_MANY_HANDSHAKES');
    // Handshakes are counted per address only once that many are in flight in all: below it no
    // address can be over the limit, and a server that is not under a flood of half-open sockets
    // pays nothing for the count (no address lookup per accept). Those admitted before the count
    // started are at most the limit, so one address holds at most twice the limit.
    const perHandshake = a.handshakes >= limits.maxHandshakesPerAddress ? limits.maxHandshakesPerAddress : 0;
    const perSocket = limits.maxConnectionsPerAddress;
    if (perHandshake > 0 || perSocket > 0) {
      const peer = this.remoteAddress;
      if (peer !== undefined && !a.isTrusted(peer)) {
        const known = a.addresses.get(peer);
        if (perSocket > 0 && known !== undefined && known.sockets >= perSocket) return rejectFor('ADDRESS_LIMIT');
        if (perHandshake > 0 && known !== undefined && known.handshakes >= perHandshake) return rejectFor('ADDRESS_LIMIT');
        const entry = known ?? a.addresses.add(peer);
        if (perHandshake > 0) {
          entry.handshakes++;
          this.flags |= F_ADDR_HS;
        }
        if (perSocket > 0) {
          entry.sockets++;
          this.flags |= F_ADDR_SOCKET;
        }
        // The table's string, shared by every connection of the address: no string per connection.
        this.cachedPeer = entry.peer;
      }
    }
    a.handshakes++;
    this.flags |= F_HS_COUNTED;
    if ((this.flags & F_ADDR_SOCKET) === 0) this.forgetPeer();
    return null;
  }

  /** The handshake is over (opened, refused by a check or the hook, timed out, closed): gives back its slots. */
  private handshakeOver(): void {
    const f = this.flags;
    if ((f & F_HS_COUNTED) === 0) return;
    this.flags = f & ~(F_HS_COUNTED | F_ADDR_HS);
    const a = this.core.admission;
    a.handshakes--;
    if ((f & F_ADDR_HS) !== 0) {
      const entry = a.addresses.get(this.cachedPeer ?? '');
      if (entry !== undefined) {
        entry.handshakes--;
        a.addresses.release(entry);
      }
      // Only the socket count needs the address for the rest of the connection's life.
      this.forgetPeer();
    }
  }

  /** Drops the cached peer address unless a per-address count still needs it. */
  private forgetPeer(): void {
    if ((this.flags & (F_ADDR_HS | F_ADDR_SOCKET)) === 0) this.cachedPeer = undefined;
  }

  /** The peer's IP address (cached on first read; undefined when first asked after the close). */
  get remoteAddress(): string | undefined {
    const known = this.cachedPeer;
    if (known !== undefined) return known;
    const peer = this.transport.remoteAddress(this);
    if (peer !== undefined) this.cachedPeer = peer;
    return peer;
  }

  /** Bytes queued for this connection that the kernel has not taken yet. */
  get bufferedAmount(): number {
    return this.transport.bufferedBytes(this);
  }

  get isOpen(): boolean {
    return this.state === ConnState.Open;
  }

  /**
   * How fan-out compresses for this connection: 0 not at all (permessage-deflate not
   * negotiated), 1 with the server's window, 2 with the smallest (the client asked for less).
   */
  get compression(): number {
    const f = this.flags;
    if ((f & F_DEFLATE) === 0 || (f & S_MASK) === 0) return 0;
    return (f & F_DEFLATE_SMALL) !== 0 ? 2 : 1;
  }

  // ---- sending -------------------------------------------------------------------------

  /**
   * Sends one message: text for a string, binary for bytes (override with isBinary).
   * A Buffer larger than 1 KiB is written without copying, so it must not change afterwards.
   */
  send(data: string | Buffer | Uint8Array, isBinary: boolean = typeof data !== 'string'): SendResult {
    if (this.state !== ConnState.Open) return SendResult.Dropped;
    const server = this.core;
    // Published messages of this tick go first: a direct message never overtakes them.
    if (server.pubsub.hasPending) server.pubsub.flush();
    if (this.transport.bufferedBytes(this) >= server.limits.maxBackpressure) return this.overBudget(1);
    const opcode = isBinary ? Opcode.Binary : Opcode.Text;
    let payload = typeof data === 'string' || Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    let compressed = false;
    if ((this.flags & F_DEFLATE) !== 0) {
      const z = maybeDeflate(server.deflate!, payload, isBinary, (this.flags & F_DEFLATE_SMALL) !== 0);
      if (z !== null) {
        payload = z;
        compressed = true;
      }
    }
    if (typeof payload !== 'string' && payload.length > COPY_THRESHOLD) {
      this.cork();
      this.transport.write(this, encodeServerFrame(opcode, payload, true, compressed));
      return this.written(this.transport.write(this, payload));
    }
    const frame = encodeServerFrame(opcode, payload, false, compressed);
    this.cork();
    return this.written(this.transport.write(this, frame));
  }

  /**
   * Writes a frame that is already encoded (a header and payload built once and shared by
   * many connections, as fan-out does). Subject to the same budget as send().
   */
  sendEncoded(frame: Buffer, messages = 1): SendResult {
    if (this.state !== ConnState.Open) return SendResult.Dropped;
    if (this.transport.bufferedBytes(this) >= this.core.limits.maxBackpressure) return this.overBudget(messages);
    this.cork();
    return this.written(this.transport.write(this, frame));
  }

  /** Sends a ping (payload at most 125 bytes). Control frames are never dropped by the budget. */
  ping(data?: Buffer | string): boolean {
    if (this.state !== ConnState.Open) return false;
    this.writeControl(Opcode.Ping, data === undefined ? undefined : Buffer.from(data));
    return true;
  }

  /**
   * Starts the closing handshake: sends a close frame and waits up to closeTimeoutMs for the
   * peer's, then destroys the socket. code must be valid on the wire (or 1005 for none).
   */
  close(code: number = CloseCode.Normal, reason = ''): void {
    if (this.state === ConnState.Handshake) {
      this.terminate();
      return;
    }
    if (this.state !== ConnState.Open) return;
    this.beginClosing(code, reason, false);
  }

  /** Destroys the socket at once, without a closing handshake. */
  terminate(): void {
    this.setState(ConnState.Closed);
    this.transport.destroy(this);
  }

  // ---- topics ----------------------------------------------------------------------------

  /** Subscribes to a topic. Limits: maxTopicLength bytes per name, maxSubscriptions per connection. */
  subscribe(topic: string): SubscribeResult | 'closed' {
    if (this.state !== ConnState.Open) return 'closed';
    return this.core.pubsub.subscribe(this, topic);
  }

  /**
   * Subscribes and, if the topic keeps history, first sends the messages missed since
   * `since` (in order, before any new one). `recovery` says whether that worked; when it did
   * not (epoch changed, history trimmed) the client must resync.
   */
  subscribeFrom(topic: string, since: StreamPosition): { result: SubscribeResult | 'closed'; recovery: ReturnType<Topics['recover']> } {
    const result = this.subscribe(topic);
    if (result !== 'subscribed' && result !== 'already') return { result, recovery: undefined };
    return { result, recovery: this.core.pubsub.recover(this, topic, since) };
  }

  unsubscribe(topic: string): boolean {
    return this.core.pubsub.unsubscribe(this, topic);
  }

  isSubscribed(topic: string): boolean {
    return this.core.pubsub.isSubscribed(this, topic);
  }

  /** Publishes to every subscriber of `topic` but this connection (`from`: as server.publish). Returns how many it reaches. */
  publish(topic: string, data: string | Buffer, isBinary: boolean = typeof data !== 'string', from: string | null = null): number {
    return this.core.pubsub.publish(topic, data, isBinary, this, from);
  }

  private overBudget(messages: number): SendResult {
    this.core.stats.droppedMessages += messages;
    if (this.core.slowConsumer === 'close') {
      this.core.stats.slowConsumerCloses++;
      this.close(CloseCode.PolicyViolation, 'slow consumer');
    }
    return SendResult.Dropped;
  }

  private written(ok: boolean): SendResult {
    if (ok) return SendResult.Written;
    this.flags |= F_NEED_DRAIN;
    // Over budget with a drain on its way: stop reading until the peer catches up.
    if ((this.flags & F_PAUSED) === 0 && this.transport.bufferedBytes(this) >= this.core.limits.maxBackpressure) {
      this.flags |= F_PAUSED;
      this.transport.pause(this);
    }
    return SendResult.Queued;
  }

  private cork(): void {
    if ((this.flags & F_CORKED) !== 0) return;
    this.flags |= F_CORKED;
    this.transport.cork(this);
    this.core.scheduleFlush(this);
  }

  /** Called by the server once per tick for every connection that wrote in it. */
  flush(): void {
    if ((this.flags & F_CORKED) === 0) return;
    this.flags &= ~F_CORKED;
    this.transport.uncork(this);
  }

  private writeControl(opcode: number, payload: Buffer | undefined): void {
    if (payload !== undefined && payload.length > 125) throw new RangeError('control frame payload over 125 bytes');
    const empty = payload === undefined || payload.length === 0;
    const frame = empty && opcode === Opcode.Ping ? EMPTY_PING_FRAME : empty && opcode === Opcode.Pong ? EMPTY_PONG_FRAME : encodeServerFrame(opcode, payload ?? EMPTY);
    this.cork();
    this.transport.write(this, frame);
  }

  /**
   * The one close sequence: our close frame with `code` (none when code is -1 or one went
   * already), the Closing state and its deadline from now, and with `endTcp` the end of our
   * side of the TCP connection once what is queued has gone. The sweep destroys the socket if
   * the peer has not closed within closeTimeoutMs.
   */
  private beginClosing(code: number, reason: string, endTcp: boolean): void {
    if (code >= 0) this.sendClose(code, reason);
    this.setState(ConnState.Closing);
    this.mark = this.core.sweeper.now;
    if (!endTcp) return;
    this.flush();
    this.transport.end(this);
  }

  private sendClose(code: number, reason: string): void {
    if ((this.flags & F_CLOSE_SENT) !== 0) return;
    this.flags |= F_CLOSE_SENT;
    // Nothing follows a close frame; an owed pong is forgotten.
    this.dropOwedPong();
    this.cork();
    this.transport.write(this, reason === '' ? serverCloseFrame(code) : encodeCloseFrame(code, reason, null));
  }

  // ---- transport events ----------------------------------------------------------------

  onTransportData(chunk: Buffer, transient: boolean = false): void {
    const flags = this.flags;
    const server = this.core;
    // Only bytes of an open connection postpone its deadline: a handshake or a closing that
    // trickles bytes still times out.
    if ((flags & S_MASK) === S_OPEN) this.chunkArrived();
    if ((flags & F_OPENED) !== 0) {
      // A WebSocket is never handed to another owner: its next reads can use the shared buffer.
      if (!transient) this.transport.readShared(this);
      const side = this.side;
      if (side instanceof FrameParser) return this.readOwn(side, chunk, transient);
      if (side instanceof ConnectionExtra && side.reader !== null) return this.readOwn(side.reader as FrameParser, chunk, transient);
      if ((flags & S_MASK) === S_CLOSED) return;
      // No frame is cut off: read with the server's spare parser, and keep it only if this
      // chunk ends inside a frame or a fragmented message. An idle connection holds none.
      const options = (flags & F_DEFLATE) !== 0 ? server.deflateParserOptions : server.parserOptions;
      let parser = server.spareParser;
      if (parser !== null) {
        server.spareParser = null;
        parser.rebind(this, options);
      } else parser = new FrameParser(this, options);
      const used = parser.push(chunk, transient);
      if (parser.suspended) this.holdRead(chunk, used);
      if (parser.idle) {
        parser.rebind(DETACHED);
        if (server.spareParser === null) server.spareParser = parser;
      } else this.reader = parser;
      return;
    }
    // Before the upgrade. Once the head is read, bytes before the 101 (the client may not send
    // any) are discarded: the request was rejected or the upgrade hook is running.
    if ((this.flags & F_HEAD_DONE) !== 0) return;
    // The head parser is made on the first bytes, not at accept: a head that arrives in one
    // chunk (the usual case) is parsed by an object that dies at once, and an accepted socket
    // whose request is not here yet holds nothing.
    let head = this.reader as RequestHeadParser | null;
    if (head === null) this.reader = head = new RequestHeadParser(this.core.limits);
    const result = head.push(chunk);
    if (result === undefined) return;
    this.reader = null;
    this.flags |= F_HEAD_DONE;
    if (result instanceof HttpReject) {
      this.reject(result);
      return;
    }
    this.onHead(result);
  }

  /** Bytes from the peer of an open connection: its idle deadline counts from now (pings put it back: see onPing). */
  private chunkArrived(): void {
    const server = this.core;
    server.markBeforeChunk = this.mark;
    this.mark = server.sweeper.now;
  }

  /** Reading may resume: open or closing, and no large message's inflation holds it. */
  private mayRead(): boolean {
    const state = this.state;
    if (state !== ConnState.Open && state !== ConnState.Closing) return false;
    const reader = this.reader;
    return !(reader instanceof FrameParser && reader.suspended);
  }

  onTransportDrain(): void {
    if ((this.flags & F_PONG_OWED) !== 0) this.payPong();
    if ((this.flags & F_PAUSED) !== 0) {
      this.flags &= ~F_PAUSED;
      if (this.mayRead()) this.transport.resume(this);
    }
    if ((this.flags & F_NEED_DRAIN) !== 0) {
      this.flags &= ~F_NEED_DRAIN;
      if (this.state === ConnState.Open) this.core.handlers.drain?.(this);
    }
  }

  /** Continues a frame cut off in an earlier chunk; gives the parser back once between frames. */
  private readOwn(parser: FrameParser, chunk: Buffer, transient: boolean): void {
    if (parser.suspended) return this.holdRead(chunk, 0);
    const used = parser.push(chunk, transient);
    if (parser.suspended) this.holdRead(chunk, used);
    if (!parser.idle) return;
    this.giveBack(parser);
  }

  /**
   * Keeps what is read behind a message being inflated, for after it. Reading goes on up to
   * PROCESS_LIMITS.inflateReadAhead held (so the peer's FIN or reset is seen and frees the job
   * at once), then pauses until the message is delivered (drains and pongs leave it paused:
   * see mayRead).
   */
  private holdRead(chunk: Buffer, from: number): void {
    if (this.core.inflating.get(this)?.hold(chunk, from) === true) this.transport.pause(this);
  }

  /** Gives the connection's parser back to the server once it is between frames. */
  private giveBack(parser: FrameParser): void {
    this.reader = null;
    parser.rebind(DETACHED);
    const server = this.core;
    if (server.spareParser === null) server.spareParser = parser;
  }

  onTransportEnd(): void {
    // The peer half-closed. Without a close frame this is an abnormal closure (1006). End our
    // side too (sockets from node:http allow half-open ones) and let 'close' follow.
    if (this.state === ConnState.Closed) return;
    this.beginClosing(-1, '', true);
  }

  onTransportClose(): void {
    const opened = (this.flags & F_OPENED) !== 0;
    this.setState(ConnState.Closed);
    if (this.core.inflating.size !== 0) this.stopInflating();
    this.reader = null;
    this.dropOwedPong();
    this.handshakeOver();
    if ((this.flags & F_ADDR_SOCKET) !== 0) {
      this.flags &= ~F_ADDR_SOCKET;
      releaseAddressSocket(this.core.admission.addresses, this.cachedPeer);
    }
    if (this.topics !== null) this.core.pubsub.unsubscribeAll(this);
    this.core.connectionClosed(opened);
    if (opened && (this.flags & F_NOTIFIED) === 0) {
      this.flags |= F_NOTIFIED;
      this.core.handlers.close?.(this, this.closeCode, this.closeReason);
    }
  }

  // ---- deadlines (visited by the server's sweeper about once per period) ------------------

  onSweep(now: number): boolean {
    const limits = this.core.limits;
    const since = now - this.mark;
    switch (this.state) {
      case ConnState.Handshake:
        if (since < limits.handshakeTimeoutMs) return true;
        this.core.stats.handshakeTimeouts++;
        if ((this.flags & F_HOOK) !== 0) this.terminate();
        else this.reject(rejectHandshakeTimeout());
        break;
      case ConnState.Open:
        if ((this.flags & F_PONG_OWED) !== 0) this.payPong();
        if (limits.idleTimeoutMs > 0 && since >= limits.idleTimeoutMs) {
          this.core.stats.idleTimeouts++;
          this.beginClosing(CloseCode.GoingAway, 'idle timeout', true);
        } else if (limits.pingIntervalMs > 0 && since >= limits.pingIntervalMs && (this.flags & F_PING_OUT) === 0) {
          this.flags |= F_PING_OUT;
          this.cork();
          this.transport.write(this, EMPTY_PING_FRAME);
        }
        break;
      case ConnState.Closing:
        // A closing handshake (or a rejected request) the peer did not finish in time.
        if (since >= limits.closeTimeoutMs) this.terminate();
        break;
      default:
        break;
    }
    // A closed connection leaves the sweep's list.
    return this.state !== ConnState.Closed;
  }

  // ---- handshake ------------------------------------------------------------------------

  private onHead(parsed: ParsedHead): void {
    const take = this.core.handoff?.(parsed.head);
    if (take !== undefined) {
      this.handOff(take, parsed);
      return;
    }
    const req = validateUpgrade(parsed.head, this.core.versions);
    if (req instanceof HttpReject) {
      this.reject(req);
      return;
    }
    this.accept(req, parsed.rest);
  }

  /** Gives the connection to the application's other owner (Handoff); this object is done with it. */
  private handOff(take: (socket: Socket, bytes: Buffer) => void, parsed: ParsedHead): void {
    const transport = this.transport;
    if (transport.destroyed(this)) return; // the close is on its way and will be reported
    this.setState(ConnState.Closed);
    // The handshake is over; the socket still holds a descriptor of its address's share, given
    // back when the new owner's socket closes (a plain request must not keep a slot for ever).
    this.handshakeOver();
    const socket = transport.detach(this);
    if ((this.flags & F_ADDR_SOCKET) !== 0) {
      this.flags &= ~F_ADDR_SOCKET;
      const addresses = this.core.admission.addresses;
      const peer = this.cachedPeer;
      socket.once('close', () => releaseAddressSocket(addresses, peer));
    }
    this.core.connectionClosed(false);
    take(socket, requestHeadBytes(parsed.head, parsed.rest));
  }

  private accept(req: UpgradeRequest, rest: Buffer): void {
    const server = this.core;
    if (server.draining) {
      this.reject(rejectServerFull(5));
      return;
    }
    const max = server.limits.maxConnections;
    if (max > 0 && server.openCount >= max) {
      this.reject(rejectServerFull(1));
      return;
    }
    if (server.verifyOrigin !== undefined && !server.verifyOrigin(req.origin, req)) {
      this.reject(rejectOrigin());
      return;
    }
    let deflate: { agreement: DeflateAgreement; header: string } | null = null;
    if (server.deflate !== null && req.extensions !== '') {
      const answer = server.answerExtensions(req.extensions);
      if (answer === undefined) {
        this.reject(rejectFor('BAD_EXTENSIONS'));
        return;
      }
      deflate = answer;
    }
    const hook = server.handlers.upgrade;
    if (hook === undefined) {
      this.complete(req, rest, deflate);
      return;
    }
    let outcome: ReturnType<NonNullable<typeof hook>>;
    try {
      outcome = hook(req, this);
    } catch (err) {
      server.reportError(err, 'upgrade-hook');
      this.reject(rejectFor('UPGRADE_HOOK_FAILED'));
      return;
    }
    if (outcome instanceof Promise) {
      this.flags |= F_HOOK;
      this.transport.pause(this);
      outcome.then(
        (value) => {
          this.flags &= ~F_HOOK;
          if (this.state !== ConnState.Handshake) return; // timed out or closed meanwhile
          this.transport.resume(this);
          if (value instanceof HttpReject) this.reject(value);
          else this.complete(req, rest, deflate);
        },
        (err: unknown) => {
          this.flags &= ~F_HOOK;
          if (this.state !== ConnState.Handshake) return;
          server.reportError(err, 'upgrade-hook');
          this.reject(rejectFor('UPGRADE_HOOK_FAILED'));
        },
      );
      return;
    }
    if (outcome instanceof HttpReject) this.reject(outcome);
    else this.complete(req, rest, deflate);
  }

  private complete(req: UpgradeRequest, rest: Buffer, deflate: { agreement: DeflateAgreement; header: string } | null): void {
    const server = this.core;
    let protocol: string | undefined;
    if (req.protocols.length > 0 && server.selectProtocol !== undefined) {
      protocol = server.selectProtocol(req.protocols, req);
      if (protocol !== undefined && !req.protocols.includes(protocol)) protocol = undefined;
    }
    if (protocol !== undefined) this.ext().protocol = protocol;
    const extra = server.upgradeHeaders?.(req, this, protocol);
    const headers = deflate === null ? extra : [['Sec-WebSocket-Extensions', deflate.header] as [string, string], ...(extra ?? [])];
    // With an open handler, the 101 is held while the handler runs and goes out in one write
    // with what it sends (a server's welcome): one syscall per handshake, not two, and no tick
    // scheduled for it (the connection is not on the server's flush list: it is flushed below,
    // as soon as the handler returns).
    const open = server.handlers.open;
    const held = open !== undefined && (this.flags & F_CORKED) === 0;
    if (held) {
      this.flags |= F_CORKED;
      this.transport.cork(this);
    }
    this.transport.write(this, switchingProtocolsResponse(acceptKey(req.key), protocol, headers));
    this.handshakeOver();
    if (deflate !== null) {
      // After handshakeOver: the two bits were the handshake's until now.
      this.flags |= F_DEFLATE;
      if (deflate.agreement.serverMaxWindowBits < server.deflate!.policy.serverMaxWindowBits) this.flags |= F_DEFLATE_SMALL;
    }
    this.setState(ConnState.Open);
    this.flags |= F_OPENED;
    server.connectionOpened(this);
    // Heartbeats count from the upgrade.
    this.mark = server.sweeper.now;
    if (open !== undefined) {
      try {
        server.handlers.open!(this);
      } finally {
        if (held) this.flush();
      }
    }
    if (rest.length > 0 && this.state === ConnState.Open) this.onTransportData(rest);
  }

  private reject(r: HttpReject): void {
    this.core.rejected(r);
    this.handshakeOver();
    this.setState(ConnState.Closing);
    this.reader = null;
    this.flags |= F_HEAD_DONE;
    if (!this.transport.destroyed(this)) {
      this.transport.write(this, rejectResponse(r));
      this.transport.end(this);
    }
    // If the peer never closes its side, the sweep destroys the socket after closeTimeoutMs.
    this.mark = this.core.sweeper.now;
  }

  // ---- frame events (FrameHandler) -------------------------------------------------------

  onMessage(data: Buffer, isBinary: boolean, rsv: number): boolean | 'suspend' {
    if (this.state !== ConnState.Open) return true; // after our close frame, data is discarded
    this.activity();
    if (rsv !== 0) {
      // RFC 7692 6.2: RSV1 marks a compressed message (the parser lets RSV1 through only when
      // deflate was negotiated). maxPayload bounds it once inflated.
      const out = inflatePayload(data, this.core.limits.maxPayload, undefined, syncInflateBytes());
      if (out === null) return this.suspendFor(data, isBinary);
      return this.deliverInflated(out, isBinary);
    }
    this.deliver(data, isBinary);
    return true;
  }

  private deliver(data: Buffer, isBinary: boolean): void {
    this.core.stats.messagesIn++;
    this.core.stats.bytesIn += data.length;
    this.core.handlers.message?.(this, data, isBinary);
  }

  /** An inflated message, or why it failed: delivered, or the connection failed (false). */
  private deliverInflated(out: Buffer | ProtocolError, isBinary: boolean): boolean {
    if (out instanceof ProtocolError) return this.failMessage(out);
    if (!isBinary && !isValidUtf8(out)) return this.failMessage(protocolError('WS_ERR_INVALID_UTF8', 'Invalid UTF-8 in a text message'));
    this.deliver(out, isBinary);
    return true;
  }

  /**
   * A message too large to inflate in one call: a bounded job inflates it (bounded-inflate.ts)
   * while the parser is suspended, so later frames (pings and a close included) wait behind it
   * in order (held up to inflateReadAhead, then reading pauses: see holdRead). A full queue of
   * jobs fails the connection with 1013.
   */
  private suspendFor(data: Buffer, isBinary: boolean): false | 'suspend' {
    // An owner object per large message (rare), so that `inflated` stays off the public surface.
    const wait = inflateLater({ inflated: (w, result) => this.inflated(w, result) }, data, this.core.limits.maxPayload, undefined, isBinary);
    if (wait === null) return this.failMessage(inflateBusy());
    this.core.inflating.set(this, wait);
    return 'suspend';
  }

  /** The end of an inflation started by suspendFor: delivers, then reads on from where the parser stopped. */
  private inflated(wait: InflateWait, result: Buffer | ProtocolError): void {
    const server = this.core;
    server.inflating.delete(this);
    const parser = this.reader;
    if (!(parser instanceof FrameParser) || !parser.suspended) return;
    // Our close frame may have gone meanwhile (close(), idle timeout): the message is dropped,
    // and reading goes on for the peer's close.
    const rest = wait.takeRest();
    if (this.state === ConnState.Open && !this.deliverInflated(result, wait.isBinary)) parser.halt();
    else parser.resume();
    if (rest !== null && !parser.halted) {
      if (this.state === ConnState.Open) this.chunkArrived();
      const used = parser.push(rest);
      // Another large message in the same read: its inflation holds the rest of the rest.
      if (parser.suspended) return this.holdRead(rest, used);
    }
    if (parser.idle) this.giveBack(parser);
    if ((this.flags & F_PAUSED) === 0 && this.mayRead()) this.transport.resume(this);
  }

  /** The connection closed while a message inflates: the job and what it holds are dropped. */
  private stopInflating(): void {
    const wait = this.core.inflating.get(this);
    if (wait === undefined) return;
    this.core.inflating.delete(this);
    wait.cancel();
  }

  /** A message that failed after framing (its inflated form): fail the connection as for a protocol error; false halts the parser. */
  private failMessage(err: ProtocolError): false {
    this.onProtocolError(err);
    return false;
  }

  onPing(data: Buffer): void {
    if (this.state !== ConnState.Open) return;
    const server = this.core;
    // A ping is not activity: it leaves the idle deadline where it was before this chunk,
    // unless another frame of the chunk moved it (see onTransportData).
    if (server.markBeforeChunk >= 0) this.mark = server.markBeforeChunk;
    // RFC 6455 5.5.2: the pong carries the ping's application data. It is queued only under
    // the control budget; above it one pong is owed, for the latest ping (5.5.3).
    if (server.autoPong) {
      if ((this.flags & F_PONG_OWED) === 0 && this.transport.bufferedBytes(this) < server.limits.maxControlBacklog) this.writeControl(Opcode.Pong, data);
      else if (!this.owePong(data)) return;
    }
    server.handlers.ping?.(this, data);
  }

  /** Holds back the pong for `data` and stops reading until it can be sent; false when the peer went past maxOwedPings (closed with 1008). */
  private owePong(data: Buffer): boolean {
    const server = this.core;
    let owed = server.owedPongs.get(this);
    if (owed === undefined) {
      owed = new OwedPong();
      server.owedPongs.set(this, owed);
      this.flags |= F_PONG_OWED;
      if ((this.flags & F_PAUSED) === 0) {
        this.flags |= F_PAUSED;
        this.transport.pause(this);
      }
    } else if (++owed.pings > server.limits.maxOwedPings && server.limits.maxOwedPings > 0) {
      server.stats.pingFloodCloses++;
      this.close(CloseCode.PolicyViolation, 'ping flood');
      return false;
    }
    owed.length = data.copy(owed.payload, 0, 0, 125);
    return true;
  }

  /** Sends the owed pong once the backlog is under the control budget again (after a drain, or on the sweep). */
  private payPong(): void {
    if ((this.flags & F_PONG_OWED) === 0 || this.transport.bufferedBytes(this) >= this.core.limits.maxControlBacklog) return;
    const owed = this.dropOwedPong();
    if (owed !== undefined && this.state === ConnState.Open) this.writeControl(Opcode.Pong, owed.payload.subarray(0, owed.length));
    if ((this.flags & F_PAUSED) !== 0 && this.transport.bufferedBytes(this) < this.core.limits.maxBackpressure) {
      this.flags &= ~F_PAUSED;
      if (this.mayRead()) this.transport.resume(this);
    }
  }

  private dropOwedPong(): OwedPong | undefined {
    if ((this.flags & F_PONG_OWED) === 0) return undefined;
    this.flags &= ~F_PONG_OWED;
    const owedPongs = this.core.owedPongs;
    const owed = owedPongs.get(this);
    owedPongs.delete(this);
    return owed;
  }

  onPong(data: Buffer): void {
    if (this.state !== ConnState.Open) return;
    this.activity();
    this.core.handlers.pong?.(this, data);
  }

  /**
   * A frame other than a ping completed: the idle deadline counts from now, whatever pings the
   * chunk held, and the peer has answered any heartbeat (its own pings do not answer ours).
   */
  private activity(): void {
    const server = this.core;
    if (server.markBeforeChunk < 0) return;
    server.markBeforeChunk = -1;
    this.mark = server.sweeper.now;
    this.flags &= ~F_PING_OUT;
  }

  onClose(code: number, reason: string): void {
    this.flags |= F_CLOSE_RECEIVED;
    const x = this.ext();
    x.closeCode = code;
    x.closeReason = reason;
    // RFC 6455 5.5.1: answer a close with a close, echoing the status code (and the reason, as
    // ws does: a peer may show it); then the server closes the TCP connection (RFC 6455 7.1.1).
    this.beginClosing(code, reason, true);
  }

  onProtocolError(err: ProtocolError): void {
    this.core.stats.protocolErrors++;
    this.core.handlers.error?.(this, err);
    // RFC 6455 7.1.7: fail the connection: send the close frame, then close the TCP
    // connection; the parser already discards everything after the error.
    this.beginClosing(err.closeCode, '', true);
  }
}

/** One socket of a counted address is gone: its count goes down, and the entry with it at zero. */
function releaseAddressSocket(addresses: ServerCore['admission']['addresses'], peer: string | undefined): void {
  const entry = addresses.get(peer ?? '');
  if (entry === undefined) return;
  entry.sockets--;
  addresses.release(entry);
}
