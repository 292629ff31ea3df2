import { FrameParser, Opcode, CloseCode, writeFrameHeader, frameHeaderSize, serverCloseFrame, encodeCloseFrame, EMPTY_PING_FRAME, acceptKey } from '../protocol/index.js';
import type { FrameHandler, ProtocolError } from '../protocol/index.js';
import { RequestHeadParser, validateUpgrade, rejectResponse, switchingProtocolsResponse, HttpReject, reject as rejectFor, rejectOrigin, rejectServerFull, rejectHandshakeTimeout } from '../http/index.js';
import type { ParsedHead, UpgradeRequest } from '../http/index.js';
import type { Transport, TransportSink } from '../transport/transport.js';
import type { WheelEntry } from './timer-wheel.js';
import { SendResult } from './options.js';
import type { Server } from './server.js';
import type { Subscriber, Topic, Topics, SubscribeResult } from '../pubsub/topics.js';
import type { StreamPosition } from '../pubsub/history.js';

export const ConnState = { Handshake: 0, Open: 1, Closing: 2, Closed: 3 } as const;
export type ConnState = (typeof ConnState)[keyof typeof ConnState];

// Bit flags: one small integer instead of a field each.
const F_CORKED = 1; // corked for this tick, on the server's flush list
const F_NEED_DRAIN = 2; // a send returned 'queued': tell the application on drain
const F_PAUSED = 4; // reading paused because the backlog is over budget
const F_PING_OUT = 8; // a heartbeat ping is unanswered
const F_CLOSE_SENT = 16;
const F_CLOSE_RECEIVED = 32;
const F_HOOK = 64; // the async upgrade hook is running
const F_NOTIFIED = 128; // the close handler ran
const F_OPENED = 256; // the upgrade completed (counted in openCount)

/** Frames up to this size are copied behind their header into one buffer: one write, one allocation. */
const COPY_THRESHOLD = 1024;

/**
 * One WebSocket connection. Small and flat: the behaviour lives on the server, this object
 * holds the state (about a dozen fields) plus the frame parser. No timers, no closures, no
 * buffers while idle.
 */
export class Connection<T = unknown> implements TransportSink, FrameHandler, WheelEntry, Subscriber {
  /** Application data, set freely (for example by the upgrade hook). */
  data: T;
  /** The selected subprotocol, or '' when none. */
  protocol: string;
  state: ConnState;
  flags: number;
  /** Wheel time of the last byte from the peer. */
  lastSeen: number;
  closeCode: number;
  closeReason: string;
  wheelNext: WheelEntry | null;
  wheelPrev: WheelEntry | null;
  wheelDue: number;
  /** The topics this connection is subscribed to; null while none. */
  topics: Topic[] | null;
  readonly server: Server<T>;
  readonly transport: Transport;
  private parser: FrameParser | null;
  private head: RequestHeadParser | null;

  constructor(server: Server<T>, transport: Transport) {
    this.data = undefined as T;
    this.protocol = '';
    this.state = ConnState.Handshake;
    this.flags = 0;
    this.lastSeen = server.wheel.now;
    this.closeCode = CloseCode.Abnormal;
    this.closeReason = '';
    this.wheelNext = null;
    this.wheelPrev = null;
    this.wheelDue = -1;
    this.topics = null;
    this.server = server;
    this.transport = transport;
    this.parser = null;
    this.head = null;
  }

  /** Starts reading an HTTP upgrade request from the transport. */
  startHandshake(): void {
    this.head = new RequestHeadParser(this.server.limits);
    this.server.wheel.schedule(this, this.server.wheel.now + this.server.limits.handshakeTimeoutMs);
    this.transport.attach(this);
  }

  /** Takes over a request already parsed elsewhere (node:http upgrade). */
  startFromUpgrade(req: UpgradeRequest | HttpReject, rest: Buffer): void {
    this.server.wheel.schedule(this, this.server.wheel.now + this.server.limits.handshakeTimeoutMs);
    this.transport.attach(this);
    if (req instanceof HttpReject) this.reject(req);
    else this.accept(req, rest);
  }

  get remoteAddress(): string | undefined {
    return this.transport.remoteAddress();
  }

  /** Bytes queued for this connection that the kernel has not taken yet. */
  get bufferedAmount(): number {
    return this.transport.bufferedBytes;
  }

  get isOpen(): boolean {
    return this.state === ConnState.Open;
  }

  // ---- sending -------------------------------------------------------------------------

  /**
   * Sends one message: text for a string, binary for bytes (override with isBinary).
   * A Buffer larger than 1 KiB is written without copying, so it must not change afterwards.
   */
  send(data: string | Buffer | Uint8Array, isBinary: boolean = typeof data !== 'string'): SendResult {
    if (this.state !== ConnState.Open) return SendResult.Dropped;
    const server = this.server;
    // Published messages of this tick go first: a direct message never overtakes them.
    if (server.pubsub.hasPending) server.pubsub.flush();
    if (this.transport.bufferedBytes >= server.limits.maxBackpressure) return this.overBudget(1);
    const opcode = isBinary ? Opcode.Binary : Opcode.Text;
    let frame: Buffer;
    if (typeof data === 'string') {
      const len = Buffer.byteLength(data);
      const hs = frameHeaderSize(len, false);
      frame = Buffer.allocUnsafe(hs + len);
      writeFrameHeader(frame, 0, opcode, len, true, false, null, 0);
      frame.write(data, hs, len, "utf8");
    } else {
      const payload = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      const len = payload.length;
      const hs = frameHeaderSize(len, false);
      if (len > COPY_THRESHOLD) {
        const header = Buffer.allocUnsafe(hs);
        writeFrameHeader(header, 0, opcode, len, true, false, null, 0);
        this.cork();
        this.transport.write(header);
        return this.written(this.transport.write(payload));
      }
      frame = Buffer.allocUnsafe(hs + len);
      writeFrameHeader(frame, 0, opcode, len, true, false, null, 0);
      payload.copy(frame, hs);
    }
    this.cork();
    return this.written(this.transport.write(frame));
  }

  /**
   * Writes a frame that is already encoded (a header and payload built once and shared by
   * many connections, as fan-out does). Subject to the same budget as send().
   */
  sendEncoded(frame: Buffer, messages = 1): SendResult {
    if (this.state !== ConnState.Open) return SendResult.Dropped;
    if (this.transport.bufferedBytes >= this.server.limits.maxBackpressure) return this.overBudget(messages);
    this.cork();
    return this.written(this.transport.write(frame));
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
    this.sendClose(code, reason);
    this.state = ConnState.Closing;
    this.server.wheel.schedule(this, this.server.wheel.now + this.server.limits.closeTimeoutMs);
  }

  /** Destroys the socket at once, without a closing handshake. */
  terminate(): void {
    this.state = ConnState.Closed;
    this.transport.destroy();
  }

  // ---- topics ----------------------------------------------------------------------------

  /** Subscribes to a topic. Limits: maxTopicLength bytes per name, maxSubscriptions per connection. */
  subscribe(topic: string): SubscribeResult | 'closed' {
    if (this.state !== ConnState.Open) return 'closed';
    return this.server.pubsub.subscribe(this, topic);
  }

  /**
   * Subscribes and, if the topic keeps history, first sends the messages missed since
   * `since` (in order, before any new one). `recovery` says whether that worked; when it did
   * not (epoch changed, history trimmed) the client must resync.
   */
  subscribeFrom(topic: string, since: StreamPosition): { result: SubscribeResult | 'closed'; recovery: ReturnType<Topics['recover']> } {
    const result = this.subscribe(topic);
    if (result !== 'subscribed' && result !== 'already') return { result, recovery: undefined };
    return { result, recovery: this.server.pubsub.recover(this, topic, since) };
  }

  unsubscribe(topic: string): boolean {
    return this.server.pubsub.unsubscribe(this, topic);
  }

  isSubscribed(topic: string): boolean {
    return this.server.pubsub.topics.get(topic)?.subscribers.has(this) ?? false;
  }

  /** Publishes to every subscriber of `topic` but this connection. Returns how many it reaches. */
  publish(topic: string, data: string | Buffer, isBinary: boolean = typeof data !== 'string'): number {
    this.server.bus?.publish(topic, typeof data === 'string' ? Buffer.from(data) : data, isBinary);
    return this.server.pubsub.publish(topic, data, isBinary, this);
  }

  private overBudget(messages: number): SendResult {
    this.server.stats.droppedMessages += messages;
    if (this.server.slowConsumer === 'close') {
      this.server.stats.slowConsumerCloses++;
      this.close(CloseCode.PolicyViolation, 'slow consumer');
    }
    return SendResult.Dropped;
  }

  private written(ok: boolean): SendResult {
    if (ok) return SendResult.Written;
    this.flags |= F_NEED_DRAIN;
    // Over budget with a drain on its way: stop reading until the peer catches up.
    if ((this.flags & F_PAUSED) === 0 && this.transport.bufferedBytes >= this.server.limits.maxBackpressure) {
      this.flags |= F_PAUSED;
      this.transport.pause();
    }
    return SendResult.Queued;
  }

  private cork(): void {
    if ((this.flags & F_CORKED) !== 0) return;
    this.flags |= F_CORKED;
    this.transport.cork();
    this.server.scheduleFlush(this);
  }

  /** Called by the server once per tick for every connection that wrote in it. */
  flush(): void {
    if ((this.flags & F_CORKED) === 0) return;
    this.flags &= ~F_CORKED;
    this.transport.uncork();
  }

  private writeControl(opcode: number, payload: Buffer | undefined): void {
    if (payload === undefined || payload.length === 0) {
      this.cork();
      if (opcode === Opcode.Ping) this.transport.write(EMPTY_PING_FRAME);
      else {
        const frame = Buffer.allocUnsafe(2);
        writeFrameHeader(frame, 0, opcode, 0, true, false, null, 0);
        this.transport.write(frame);
      }
      return;
    }
    if (payload.length > 125) throw new RangeError('control frame payload over 125 bytes');
    const frame = Buffer.allocUnsafe(2 + payload.length);
    writeFrameHeader(frame, 0, opcode, payload.length, true, false, null, 0);
    payload.copy(frame, 2);
    this.cork();
    this.transport.write(frame);
  }

  private sendClose(code: number, reason: string): void {
    if ((this.flags & F_CLOSE_SENT) !== 0) return;
    this.flags |= F_CLOSE_SENT;
    this.cork();
    this.transport.write(reason === '' ? serverCloseFrame(code) : encodeCloseFrame(code, reason, null));
  }

  // ---- transport events ----------------------------------------------------------------

  onTransportData(chunk: Buffer): void {
    this.lastSeen = this.server.wheel.now;
    this.flags &= ~F_PING_OUT;
    const parser = this.parser;
    if (parser !== null) {
      parser.push(chunk);
      return;
    }
    if (this.state === ConnState.Open || this.state === ConnState.Closing) {
      // The parser is made on the first frame bytes: an idle connection never holds one.
      if ((this.flags & F_OPENED) === 0) return;
      this.parser = new FrameParser(this, this.server.parserOptions);
      this.parser.push(chunk);
      return;
    }
    const head = this.head;
    if (head === null) return; // rejected or waiting on the upgrade hook: discard
    const result = head.push(chunk);
    if (result === undefined) return;
    this.head = null;
    if (result instanceof HttpReject) {
      this.reject(result);
      return;
    }
    this.onHead(result);
  }

  onTransportDrain(): void {
    if ((this.flags & F_PAUSED) !== 0) {
      this.flags &= ~F_PAUSED;
      if (this.state === ConnState.Open || this.state === ConnState.Closing) this.transport.resume();
    }
    if ((this.flags & F_NEED_DRAIN) !== 0) {
      this.flags &= ~F_NEED_DRAIN;
      if (this.state === ConnState.Open) this.server.handlers.drain?.(this);
    }
  }

  onTransportEnd(): void {
    // The peer half-closed. Without a close frame this is an abnormal closure (1006). End our
    // side too (sockets from node:http allow half-open ones) and let 'close' follow.
    if (this.state === ConnState.Closed) return;
    this.state = ConnState.Closing;
    this.flush();
    this.transport.end();
    this.server.wheel.schedule(this, this.server.wheel.now + this.server.limits.closeTimeoutMs);
  }

  onTransportClose(): void {
    const opened = (this.flags & F_OPENED) !== 0;
    this.state = ConnState.Closed;
    this.server.wheel.cancel(this);
    this.parser = null;
    this.head = null;
    if (this.topics !== null) this.server.pubsub.unsubscribeAll(this);
    this.server.connectionClosed(opened);
    if (opened && (this.flags & F_NOTIFIED) === 0) {
      this.flags |= F_NOTIFIED;
      this.server.handlers.close?.(this, this.closeCode, this.closeReason);
    }
  }

  // ---- wheel ----------------------------------------------------------------------------

  onWheel(now: number): number {
    const limits = this.server.limits;
    switch (this.state) {
      case ConnState.Handshake:
        this.server.stats.handshakeTimeouts++;
        if ((this.flags & F_HOOK) !== 0) this.terminate();
        else this.reject(rejectHandshakeTimeout());
        return -1;
      case ConnState.Open: {
        const quiet = now - this.lastSeen;
        if (limits.idleTimeoutMs > 0 && quiet >= limits.idleTimeoutMs) {
          this.server.stats.idleTimeouts++;
          this.sendClose(CloseCode.GoingAway, 'idle timeout');
          this.state = ConnState.Closing;
          this.transport.end();
          return now + limits.closeTimeoutMs;
        }
        if (limits.pingIntervalMs > 0 && quiet >= limits.pingIntervalMs && (this.flags & F_PING_OUT) === 0) {
          this.flags |= F_PING_OUT;
          this.cork();
          this.transport.write(EMPTY_PING_FRAME);
        }
        return this.nextHeartbeat(now);
      }
      default:
        // Closing (or a rejected handshake) that the peer did not finish in time.
        this.terminate();
        return -1;
    }
  }

  private nextHeartbeat(now: number): number {
    const limits = this.server.limits;
    let due = Infinity;
    if (limits.pingIntervalMs > 0) {
      due = (this.flags & F_PING_OUT) === 0 ? this.lastSeen + limits.pingIntervalMs : now + limits.pingIntervalMs;
    }
    if (limits.idleTimeoutMs > 0) due = Math.min(due, this.lastSeen + limits.idleTimeoutMs);
    // With heartbeats off the connection stays on the wheel (shutdown walks it) with a long period.
    if (due === Infinity) due = now + 3_600_000;
    return Math.max(due, now + 1);
  }

  // ---- handshake ------------------------------------------------------------------------

  private onHead(parsed: ParsedHead): void {
    const req = validateUpgrade(parsed.head);
    if (req instanceof HttpReject) {
      this.reject(req);
      return;
    }
    this.accept(req, parsed.rest);
  }

  private accept(req: UpgradeRequest, rest: Buffer): void {
    const server = this.server;
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
    const hook = server.handlers.upgrade;
    if (hook === undefined) {
      this.complete(req, rest);
      return;
    }
    let outcome: ReturnType<NonNullable<typeof hook>>;
    try {
      outcome = hook(req, this);
    } catch (err) {
      server.reportError(err);
      this.reject(rejectFor('UPGRADE_HOOK_FAILED'));
      return;
    }
    if (outcome instanceof Promise) {
      this.flags |= F_HOOK;
      this.transport.pause();
      outcome.then(
        (value) => {
          this.flags &= ~F_HOOK;
          if (this.state !== ConnState.Handshake) return; // timed out or closed meanwhile
          this.transport.resume();
          if (value instanceof HttpReject) this.reject(value);
          else this.complete(req, rest);
        },
        (err: unknown) => {
          this.flags &= ~F_HOOK;
          if (this.state !== ConnState.Handshake) return;
          server.reportError(err);
          this.reject(rejectFor('UPGRADE_HOOK_FAILED'));
        },
      );
      return;
    }
    if (outcome instanceof HttpReject) this.reject(outcome);
    else this.complete(req, rest);
  }

  private complete(req: UpgradeRequest, rest: Buffer): void {
    const server = this.server;
    let protocol: string | undefined;
    if (req.protocols.length > 0 && server.selectProtocol !== undefined) {
      protocol = server.selectProtocol(req.protocols, req);
      if (protocol !== undefined && !req.protocols.includes(protocol)) protocol = undefined;
    }
    this.protocol = protocol ?? '';
    this.transport.write(switchingProtocolsResponse(acceptKey(req.key), protocol));
    this.state = ConnState.Open;
    this.flags |= F_OPENED;
    server.connectionOpened(this);
    server.wheel.schedule(this, this.nextHeartbeat(server.wheel.now));
    server.handlers.open?.(this);
    if (rest.length > 0 && this.state === ConnState.Open) this.onTransportData(rest);
  }

  private reject(r: HttpReject): void {
    this.server.rejected(r);
    this.state = ConnState.Closing;
    this.head = null;
    if (!this.transport.destroyed) {
      this.transport.write(rejectResponse(r));
      this.transport.end();
    }
    // If the peer never closes its side, the wheel destroys the socket.
    this.server.wheel.schedule(this, this.server.wheel.now + this.server.limits.closeTimeoutMs);
  }

  // ---- frame events (FrameHandler) -------------------------------------------------------

  onMessage(data: Buffer, isBinary: boolean): void {
    if (this.state !== ConnState.Open) return; // after our close frame, data is discarded
    this.server.stats.messagesIn++;
    this.server.stats.bytesIn += data.length;
    this.server.handlers.message?.(this, data, isBinary);
  }

  onPing(data: Buffer): void {
    if (this.state === ConnState.Open) {
      // RFC 6455 5.5.2: the pong carries the ping's application data.
      this.writeControl(Opcode.Pong, data);
      this.server.handlers.ping?.(this, data);
    }
  }

  onPong(data: Buffer): void {
    if (this.state === ConnState.Open) this.server.handlers.pong?.(this, data);
  }

  onClose(code: number, reason: string): void {
    this.flags |= F_CLOSE_RECEIVED;
    this.closeCode = code;
    this.closeReason = reason;
    // RFC 6455 5.5.1: answer a close with a close, echoing the status code; then the server
    // closes the TCP connection (RFC 6455 7.1.1).
    if ((this.flags & F_CLOSE_SENT) === 0) this.sendClose(code === CloseCode.NoStatus ? CloseCode.NoStatus : code, '');
    this.state = ConnState.Closing;
    this.flush();
    this.transport.end();
    this.server.wheel.schedule(this, this.server.wheel.now + this.server.limits.closeTimeoutMs);
  }

  onProtocolError(err: ProtocolError): void {
    this.server.stats.protocolErrors++;
    this.server.handlers.error?.(this, err);
    // RFC 6455 7.1.7: fail the connection: send the close frame, then close the TCP
    // connection; the parser already discards everything after the error.
    this.sendClose(err.closeCode, '');
    this.state = ConnState.Closing;
    this.flush();
    this.transport.end();
    this.server.wheel.schedule(this, this.server.wheel.now + this.server.limits.closeTimeoutMs);
  }
}
