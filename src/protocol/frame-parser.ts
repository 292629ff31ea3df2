/**
 * Incremental RFC 6455 frame parser: bytes in, messages and control frames out through a
 * handler. Sans-I/O: no sockets, no timers.
 *
 * Memory: the parser keeps no reference to a chunk after `push` returns. A payload that lies
 * wholly in one chunk is unmasked in place and handed out as a view of that chunk; a payload
 * that spans chunks is copied into a buffer that grows as its bytes arrive (64 KiB, then
 * doubling, capped at the declared length: a declared length alone allocates nothing, at the
 * price of about one extra copy of a large payload); a fragmented message is assembled the
 * same way up to maxPayload. Between messages the parser holds no buffer at all.
 *
 * Failures go through one funnel (`fail`): the handler's onProtocolError is called once,
 * with the ProtocolError carrying the close code, and the parser switches to a state that
 * discards all further input (RFC 6455 7.1.7).
 */
import { Buffer } from 'node:buffer';
import { Opcode, MAX_CONTROL_PAYLOAD } from './constants.js';
import { protocolError, ProtocolError, type ProtocolErrorCode } from './errors.js';
import { unmaskWord, unmaskInto } from './mask.js';
import { parseClosePayload } from './close.js';
import { isValidUtf8, utf8Step, UTF8_ACCEPT, UTF8_REJECT } from './utf8.js';

/** Receives what the parser decodes. Every Buffer argument is a view: see each method. */
export interface FrameHandler {
  /**
   * A complete data message. `data` may be a view into a reused or socket-owned buffer:
   * valid only until the callback returns (copy it to keep it). Text is delivered as bytes,
   * already validated as UTF-8 unless `rsv` has bits (an extension's message: the extension
   * decodes and validates it). `rsv`: the RSV bits of the message's first frame (0x40 RSV1).
   * Returning false halts the parser (the message failed the connection); returning 'suspend'
   * suspends it (see FrameParser.suspend: the handler finishes the message later).
   */
  onMessage(data: Buffer, isBinary: boolean, rsv: number): void | boolean | 'suspend';
  /** A ping's payload (at most 125 bytes). A view: valid only until the callback returns. */
  onPing(data: Buffer): void;
  /** A pong's payload (at most 125 bytes). A view: valid only until the callback returns. */
  onPong(data: Buffer): void;
  /**
   * A valid close frame arrived. `code` is 1005 when the frame had no payload. After this
   * the parser discards all further input.
   */
  onClose(code: number, reason: string): void;
  /**
   * A protocol violation; fail the connection with `err.closeCode`. After this the parser
   * discards all further input (RFC 6455 7.1.7). Called at most once.
   */
  onProtocolError(err: ProtocolError): void;
}

/** Read on every frame, never copied: do not change the object while a parser uses it. */
export interface FrameParserOptions {
  /**
   * Largest message in bytes (the sum of its fragments); larger fails with 1009 as soon as
   * a frame header announces it, before its payload is buffered.
   */
  maxPayload: number;
  /** true on a server: every frame must be masked; false on a client: none may be (RFC 6455 5.1). */
  expectMasked: boolean;
  /**
   * RSV bits a negotiated extension defines, as a mask of the first header byte (0x40 RSV1,
   * 0x20 RSV2, 0x10 RSV3). Default 0: any RSV bit fails the connection (RFC 6455 5.2).
   * Allowed bits are accepted on the first frame of a data message only (as RFC 7692
   * requires for RSV1); `FrameParser.messageRsv` reports them during onMessage, and a text
   * message with any RSV bit set skips UTF-8 validation (the extension validates the
   * decoded text).
   */
  rsvAllowed?: number;
}

// Parser states. One loop in push() switches on them.
const S_HEAD0 = 0; // first header byte: FIN, RSV1-3, opcode
const S_HEAD1 = 1; // second header byte: MASK, 7-bit length
const S_LENGTH = 2; // 2 or 8 bytes of extended length, byte by byte
const S_MASK = 3; // 4 bytes of mask key, byte by byte
const S_PAYLOAD = 4; // payload bytes
const S_DISCARD = 5; // failed, closed or halted: all input is ignored
const S_SUSPENDED = 6; // a handler took a message to finish later (suspend()): push() stops until resume()

const FIN = 0x80;
const RSV_BITS = 0x70;
const OPCODE_BITS = 0x0f;
const MASK_BIT = 0x80;
/** Stored in `head` above the byte-0 bits: the frame is masked. */
const MASKED = 0x100;

/** First capacity of a buffer that collects a payload spanning chunks (then doubling). */
const GROW_START = 64 * 1024;

/** Handed out for empty payloads: nothing to hold, nothing to mutate. */
const EMPTY = Buffer.alloc(0);

/**
 * Parses the frames of one connection. Feed it every received chunk with `push`.
 *
 * Not re-entrant: a handler callback may call `halt()` or return 'suspend' but must not call `push()`.
 */
export class FrameParser {
  /**
   * RSV bits of the first frame of the message being delivered; read it during onMessage.
   * Always 0 unless `rsvAllowed` permits bits.
   */
  messageRsv: number;

  private handler: FrameHandler;
  /** Kept by reference, not copied: one options object is usually shared by every connection. */
  private options: FrameParserOptions;

  private state: number;
  /** First header byte of the current frame (FIN, RSV, opcode), plus MASKED when the MASK bit was set. */
  private head: number;
  /** Header bytes still to read in S_LENGTH or S_MASK. */
  private headerLeft: number;
  private payloadLength: number;
  private payloadRead: number;
  /** Mask key as a little-endian int32; 0 when unmasked (XOR with 0 is a no-op). */
  private maskKey: number;
  /** Copy target for a payload that spans chunks and is not part of a fragmented message. */
  private frameBuf: Buffer | null;
  /** Opcode of the fragmented message in progress (Text or Binary), 0 when none. */
  private msgOpcode: number;
  /** Assembly buffer of the fragmented message in progress; capacity >= msgLength. */
  private msgBuf: Buffer | null;
  private msgLength: number;
  /** Streaming UTF-8 state of the text being received piece by piece. */
  private utf8: number;

  constructor(handler: FrameHandler, options: FrameParserOptions) {
    this.messageRsv = 0;
    this.handler = handler;
    this.options = options;
    this.state = S_HEAD0;
    this.head = 0;
    this.headerLeft = 0;
    this.payloadLength = 0;
    this.payloadRead = 0;
    this.maskKey = 0;
    this.frameBuf = null;
    this.msgOpcode = 0;
    this.msgBuf = null;
    this.msgLength = 0;
    this.utf8 = UTF8_ACCEPT;
  }

  /** True once the parser discards input: after a protocol error, a close frame or halt(). */
  get halted(): boolean {
    return this.state === S_DISCARD;
  }

  /**
   * Between frames, with no fragmented message in progress and not halted: the parser holds
   * nothing of a connection, so it may be handed to another one (rebind).
   */
  get idle(): boolean {
    return this.state === S_HEAD0 && this.msgOpcode === 0;
  }

  /**
   * True while suspended: onMessage returned 'suspend' (the handler finishes the message later,
   * say an inflation that must not run in one go). push() then returned at once with the bytes
   * it consumed, the message's included; the caller keeps the rest of the chunk and pushes it
   * after resume(), so messages stay in order. The parser holds no buffer meanwhile (the
   * message was handed out) and consumes nothing until resume().
   */
  get suspended(): boolean {
    return this.state === S_SUSPENDED;
  }

  /** Ends a suspend(): the parser reads the next frame header. No effect unless suspended (a halt wins). */
  resume(): void {
    if (this.state === S_SUSPENDED) this.state = S_HEAD0;
  }

  /** Sends further calls to another handler, with its options if given. Only while idle: state is not carried over. */
  rebind(handler: FrameHandler, options?: FrameParserOptions): void {
    this.handler = handler;
    if (options !== undefined) this.options = options;
  }

  /** Bytes of buffer the parser currently holds (a spanning payload, a message being assembled). 0 when idle. */
  get bufferedBytes(): number {
    return (this.frameBuf === null ? 0 : this.frameBuf.length) + (this.msgBuf === null ? 0 : this.msgBuf.length);
  }

  /** Stops parsing: all further input is discarded and held buffers are released. */
  halt(): void {
    this.state = S_DISCARD;
    this.frameBuf = null;
    this.msgBuf = null;
  }

  /**
   * Feeds received bytes. The caller gives up `chunk`: the parser unmasks payloads in place
   * and hands out views into it, so the caller must not reuse or modify the chunk while a
   * view may be alive. With `transient`, the chunk is a read buffer the caller reuses as soon
   * as push returns: every payload handed out is then a buffer of its own (filled by the pass
   * that unmasks it), which the handler may keep.
   * The parser keeps no reference to `chunk` after push returns: bytes of an incomplete
   * frame are copied. If a callback calls halt(), the rest of the chunk is discarded at once.
   * Returns the bytes consumed: the chunk's length unless a callback called suspend(), when
   * the bytes from the returned offset on are the caller's to push again after resume().
   */
  push(chunk: Buffer, transient: boolean = false): number {
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      switch (this.state) {
        case S_HEAD0: {
          // Fast path: the whole header is in this chunk.
          if (end - pos >= 2) {
            const b1 = chunk[pos + 1]!;
            const len7 = b1 & 0x7f;
            let size = len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
            if ((b1 & MASK_BIT) !== 0) size += 4;
            if (end - pos >= size) {
              if (!this.readHead0(chunk[pos]!) || !this.readHead1(b1)) return end;
              pos += 2;
              let length = len7;
              if (len7 === 126) {
                length = (chunk[pos]! << 8) | chunk[pos + 1]!;
                pos += 2;
              } else if (len7 === 127) {
                const high = chunk.readUInt32BE(pos);
                // RFC 6455 5.2: "the most significant bit MUST be 0".
                if (high > 0x7fffffff) return this.failAt(end, 'WS_ERR_INVALID_LENGTH', 'Payload length has the most significant bit set');
                length = high * 0x100000000 + chunk.readUInt32BE(pos + 4);
                pos += 8;
              }
              this.payloadLength = length;
              if (!this.checkLength()) return end;
              if ((this.head & MASKED) !== 0) {
                this.maskKey = chunk[pos]! | (chunk[pos + 1]! << 8) | (chunk[pos + 2]! << 16) | (chunk[pos + 3]! << 24);
                pos += 4;
              }
              this.startPayload();
              break;
            }
          }
          if (!this.readHead0(chunk[pos++]!)) return end;
          this.state = S_HEAD1;
          break;
        }

        case S_HEAD1: {
          const b1 = chunk[pos++]!;
          if (!this.readHead1(b1)) return end;
          const len7 = b1 & 0x7f;
          if (len7 < 126) {
            this.payloadLength = len7;
            this.lengthDone();
          } else {
            // Extended length (RFC 6455 5.2). Non-minimal encodings (a 16-bit field holding
            // a value below 126, say) are accepted, as browsers and Autobahn accept them.
            this.payloadLength = 0;
            this.headerLeft = len7 === 126 ? 2 : 8;
            this.state = S_LENGTH;
          }
          break;
        }

        case S_LENGTH: {
          const b = chunk[pos++]!;
          if (this.headerLeft === 8 && b > 0x7f) return this.failAt(end, 'WS_ERR_INVALID_LENGTH', 'Payload length has the most significant bit set');
          // Exact up to 2^53; anything larger is far above any maxPayload anyway.
          this.payloadLength = this.payloadLength * 256 + b;
          if (--this.headerLeft === 0) this.lengthDone();
          break;
        }

        case S_MASK: {
          this.maskKey |= chunk[pos++]! << ((4 - this.headerLeft) << 3);
          if (--this.headerLeft === 0) this.startPayload();
          break;
        }

        case S_PAYLOAD: {
          const need = this.payloadLength - this.payloadRead;
          const start = pos;
          pos = end - pos < need ? end : pos + need;
          this.readPayload(chunk, start, pos, transient);
          break;
        }

        case S_SUSPENDED:
          return pos;

        default:
          // S_DISCARD (RFC 6455 7.1.7: no further data is processed after a failure or close).
          return end;
      }
    }
    return end;
  }

  /** RFC 6455 5.2, 5.4, 5.5: checks the first header byte. False after failing. */
  private readHead0(b0: number): boolean {
    const opcode = b0 & OPCODE_BITS;
    const rsv = b0 & RSV_BITS;
    if (opcode >= Opcode.Close) {
      if (opcode > Opcode.Pong) return this.fail('WS_ERR_INVALID_OPCODE', `Reserved opcode ${opcode}`);
      // 5.5: "All control frames MUST have a payload length of 125 bytes or less and MUST NOT be fragmented."
      if ((b0 & FIN) === 0) return this.fail('WS_ERR_FRAGMENTED_CONTROL', 'Control frame with FIN clear');
      if (rsv !== 0) return this.fail('WS_ERR_UNEXPECTED_RSV', `${rsvName(rsv)} set on a control frame`);
    } else if (opcode === Opcode.Continuation) {
      // 5.4: a continuation frame continues a message whose first frame had FIN clear.
      if (this.msgOpcode === 0) return this.fail('WS_ERR_UNEXPECTED_CONTINUATION', 'Continuation frame with no message in progress');
      if (rsv !== 0) return this.fail('WS_ERR_UNEXPECTED_RSV', `${rsvName(rsv)} set on a continuation frame`);
    } else if (opcode <= Opcode.Binary) {
      // 5.4: fragments of one message are not interleaved with another message.
      if (this.msgOpcode !== 0) return this.fail('WS_ERR_EXPECTED_CONTINUATION', 'New data frame while a fragmented message is in progress');
      // 5.2: "MUST be 0 unless an extension is negotiated that defines meanings".
      const unexpected = rsv & ~(this.options.rsvAllowed ?? 0);
      if (unexpected !== 0) return this.fail('WS_ERR_UNEXPECTED_RSV', `${rsvName(unexpected)} set without a negotiated extension`);
    } else {
      return this.fail('WS_ERR_INVALID_OPCODE', `Reserved opcode ${opcode}`);
    }
    this.head = b0;
    return true;
  }

  /** RFC 6455 5.1, 5.5: checks the second header byte. False after failing. */
  private readHead1(b1: number): boolean {
    const masked = (b1 & MASK_BIT) !== 0;
    if (masked !== this.options.expectMasked) {
      // 5.1: a server MUST close on an unmasked frame; a client MUST close on a masked one.
      return masked
        ? this.fail('WS_ERR_UNEXPECTED_MASK', 'Masked frame from a server')
        : this.fail('WS_ERR_EXPECTED_MASK', 'Unmasked frame from a client');
    }
    if ((this.head & OPCODE_BITS) >= Opcode.Close && (b1 & 0x7f) > MAX_CONTROL_PAYLOAD) {
      return this.fail('WS_ERR_CONTROL_TOO_LARGE', 'Control frame payload longer than 125 bytes');
    }
    if (masked) this.head |= MASKED;
    this.maskKey = 0;
    return true;
  }

  /** Payload length known (byte-by-byte path): check it, then read the mask key or start the payload. */
  private lengthDone(): void {
    if (!this.checkLength()) return;
    if ((this.head & MASKED) !== 0) {
      this.headerLeft = 4;
      this.state = S_MASK;
    } else {
      this.startPayload();
    }
  }

  /** Enforces maxPayload from the header alone, before any payload byte is buffered. */
  private checkLength(): boolean {
    // A fragment counts with the fragments before it (msgLength is 0 when none are pending).
    const maxPayload = this.options.maxPayload;
    if ((this.head & OPCODE_BITS) < Opcode.Close && this.msgLength + this.payloadLength > maxPayload) {
      return this.fail('WS_ERR_MESSAGE_TOO_BIG', `Message longer than maxPayload (${maxPayload} bytes)`);
    }
    return true;
  }

  /** Header complete: set up the message bookkeeping and read the payload. */
  private startPayload(): void {
    const head = this.head;
    const opcode = head & OPCODE_BITS;
    if (opcode === Opcode.Text || opcode === Opcode.Binary) {
      this.messageRsv = head & RSV_BITS;
      this.utf8 = UTF8_ACCEPT;
      if ((head & FIN) === 0) this.msgOpcode = opcode;
    }
    this.payloadRead = 0;
    this.state = S_PAYLOAD;
    if (this.payloadLength === 0) this.frameDone(EMPTY, false);
  }

  /**
   * A buffer of at least `need` bytes holding the first `used` bytes of `old`. Grows as bytes
   * arrive, doubling from GROW_START up to `cap`, never on the strength of a declared length
   * alone: a peer that announces a 16 MiB frame and sends one byte costs 64 KiB, not 16 MiB.
   */
  private static grow(old: Buffer | null, used: number, need: number, cap: number): Buffer {
    const capacity = old === null ? 0 : old.length;
    if (capacity >= need) return old!;
    let size = capacity === 0 ? GROW_START : capacity * 2;
    if (size < need) size = need;
    if (size > cap) size = cap;
    const next = Buffer.allocUnsafe(size);
    if (old !== null && used > 0) old.copy(next, 0, 0, used);
    return next;
  }

  /** Whether the current data frame's text must be UTF-8 checked (RSV bits hand that to the extension). */
  private isCheckedText(): boolean {
    const opcode = this.msgOpcode !== 0 ? this.msgOpcode : this.head & OPCODE_BITS;
    return opcode === Opcode.Text && this.messageRsv === 0;
  }

  /** Consumes payload bytes chunk[start..end) of the current frame (`transient`: see push). */
  private readPayload(chunk: Buffer, start: number, end: number, transient: boolean): void {
    const n = end - start;
    const read = this.payloadRead;
    const isData = (this.head & OPCODE_BITS) < Opcode.Close;

    if (isData && this.msgOpcode !== 0) {
      // A fragment: append it, once, and validate text as it arrives (8.1, fail fast).
      const at = this.msgLength;
      const buf = (this.msgBuf = FrameParser.grow(this.msgBuf, at, at + n, this.options.maxPayload));
      this.unmaskInto(chunk, start, end, read, buf, at);
      if (this.isCheckedText()) {
        this.utf8 = utf8Step(this.utf8, buf, at, at + n);
        if (this.utf8 === UTF8_REJECT) return void this.fail('WS_ERR_INVALID_UTF8', 'Invalid UTF-8 in a text message');
      }
      this.msgLength = at + n;
      this.payloadRead = read + n;
      if (this.payloadRead === this.payloadLength) this.frameDone(EMPTY, true);
      return;
    }

    if (read === 0 && n === this.payloadLength) {
      if (transient) {
        // The chunk is reused after push: unmask (5.3) into a buffer of the payload's own.
        const own = Buffer.allocUnsafe(n);
        this.unmaskInto(chunk, start, end, 0, own, 0);
        this.frameDone(own, false);
        return;
      }
      // The whole payload is in this chunk: unmask it in place (5.3) and hand out a view, no copy.
      if (this.maskKey !== 0) unmaskWord(chunk, start, end, this.maskKey, 0);
      this.frameDone(chunk.subarray(start, end), false);
      return;
    }

    // The payload spans chunks: collect it in a buffer that grows with the bytes received.
    const buf = (this.frameBuf = FrameParser.grow(this.frameBuf, read, read + n, this.payloadLength));
    this.unmaskInto(chunk, start, end, read, buf, read);
    if (isData && this.isCheckedText()) {
      // Fail at the piece where invalid text appears, not when the frame completes.
      this.utf8 = utf8Step(this.utf8, buf, read, read + n);
      if (this.utf8 === UTF8_REJECT) return void this.fail('WS_ERR_INVALID_UTF8', 'Invalid UTF-8 in a text message');
    }
    this.payloadRead = read + n;
    if (this.payloadRead === this.payloadLength) {
      this.frameBuf = null;
      // grow() caps the capacity at payloadLength, so the buffer is exactly the payload.
      this.frameDone(buf, true);
    }
  }

  /**
   * Copies payload bytes chunk[start..end) into dst at dstOffset, unmasked (5.3; `read`: the
   * frame's payload bytes before them, for the key's phase). The chunk is given up: it may be
   * left masked or unmasked.
   */
  private unmaskInto(chunk: Buffer, start: number, end: number, read: number, dst: Buffer, dstOffset: number): void {
    if (this.maskKey !== 0) unmaskInto(chunk, start, end, this.maskKey, read, dst, dstOffset);
    else chunk.copy(dst, dstOffset, start, end);
  }

  /**
   * The current frame is complete; `payload` holds it unless it was a fragment (then it is
   * in msgBuf). `streamed`: text was already validated piece by piece. Every path sets the
   * next state before calling the handler, so a handler may halt() the parser.
   */
  private frameDone(payload: Buffer, streamed: boolean): void {
    const head = this.head;
    const opcode = head & OPCODE_BITS;
    this.state = S_HEAD0;

    if (opcode >= Opcode.Close) {
      if (opcode === Opcode.Ping) this.handler.onPing(payload);
      else if (opcode === Opcode.Pong) this.handler.onPong(payload);
      else this.readClose(payload);
      return;
    }

    if (this.msgOpcode === 0) {
      // An unfragmented message (8.1: text must be valid UTF-8).
      if (opcode === Opcode.Text && this.messageRsv === 0) {
        if (streamed ? this.utf8 !== UTF8_ACCEPT : !isValidUtf8(payload)) {
          return void this.fail('WS_ERR_INVALID_UTF8', 'Invalid UTF-8 in a text message');
        }
      }
      this.delivered(this.handler.onMessage(payload, opcode === Opcode.Binary, this.messageRsv));
      return;
    }

    if ((head & FIN) === 0) return;
    // The final fragment: the message is complete. Pieces were validated as they came; a
    // code point cut off at the end is still an error.
    if (this.isCheckedText() && this.utf8 !== UTF8_ACCEPT) {
      return void this.fail('WS_ERR_INVALID_UTF8', 'Text message ends inside a UTF-8 sequence');
    }
    const buf = this.msgBuf;
    const length = this.msgLength;
    const isBinary = this.msgOpcode === Opcode.Binary;
    // Drop the assembly buffer: an idle connection holds none.
    this.msgBuf = null;
    this.msgOpcode = 0;
    this.msgLength = 0;
    this.delivered(this.handler.onMessage(buf === null ? EMPTY : buf.subarray(0, length), isBinary, this.messageRsv));
  }

  /** What onMessage returned: false halts, 'suspend' suspends (unless the handler halted meanwhile). */
  private delivered(answer: void | boolean | 'suspend'): void {
    if (answer === false) this.halt();
    else if (answer === 'suspend' && this.state === S_HEAD0) this.state = S_SUSPENDED;
  }

  /** RFC 6455 5.5.1: a close frame ends the input, whatever follows it. */
  private readClose(payload: Buffer): void {
    const result = parseClosePayload(payload);
    if (result instanceof ProtocolError) return void this.failWith(result);
    this.halt();
    this.handler.onClose(result.code, result.reason);
  }

  /** The failure funnel: discard all further input, release buffers, report once. Returns false. */
  private fail(code: ProtocolErrorCode, message: string): false {
    return this.failWith(protocolError(code, message));
  }

  /** fail() from push(): returns `end` (the rest of the chunk is discarded, as consumed). */
  private failAt(end: number, code: ProtocolErrorCode, message: string): number {
    this.fail(code, message);
    return end;
  }

  private failWith(err: ProtocolError): false {
    this.halt();
    this.handler.onProtocolError(err);
    return false;
  }
}

/** Names the unexpected RSV bits in an error message: RSV2/RSV3 first, as peers report them (ws checks those before RSV1). */
function rsvName(rsv: number): string {
  return (rsv & 0x30) !== 0 ? 'RSV2 or RSV3' : 'RSV1';
}
