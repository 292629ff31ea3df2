/**
 * A small re-implementation of what the Autobahn|Testsuite fuzzing client does against a
 * server, written from the behaviour of its sources (autobahntestsuite/case/case.py,
 * fuzzing.py and autobahn's websocket/protocol.py, client side, default options):
 *
 * - failByDrop = true: a protocol violation or invalid UTF-8 from the server makes the
 *   client drop TCP at once (failedByMe, droppedByMe, not clean).
 * - closeHandshakeTimeout = 1 s after the client sent the first close; on expiry it drops.
 * - serverConnectionDropTimeout = 1 s after the client got the reply to its close: the
 *   server must drop TCP by then, else the client drops it and the close is unclean.
 * - A close received while open is answered with a close 1000; wasClean is set.
 * - Close codes from the server are checked (<1000, unassigned 1000-2999, >= 5000 are
 *   violations), close reasons must be UTF-8.
 * - killAfter(s) fails (drops) the connection if it is still there; closeAfter(s) sends a
 *   close (no code) if still open; continueLater(s, fn) runs fn unless the connection is gone.
 * - chopsize / sync writes go out one chunk per event-loop turn, in order.
 *
 * The verdict is Autobahn's Case.onConnectionLost: `behavior` from matching the received
 * events against the expected lists; `behaviorClose` from closedByMe / requireClean /
 * close code / droppedByMe, in that order.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { randomBytes, createHash } from 'node:crypto';
import { deflateRawSync, inflateRawSync, constants as zconst } from 'node:zlib';
import { Utf8Stream } from './utf8.js';

export const OK = 'OK';
export const NON_STRICT = 'NON-STRICT';
export const FAILED = 'FAILED';
export const WRONG_CODE = 'WRONG CODE';
export const UNCLEAN = 'UNCLEAN';
export const FAILED_BY_CLIENT = 'FAILED BY CLIENT';
export const INFORMATIONAL = 'INFORMATIONAL';

export const CLOSE_NORMAL = 1000;
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_INVALID_PAYLOAD = 1007;

/** Close codes autobahn accepts from a peer in 1000-2999 (CLOSE_STATUS_CODES_ALLOWED). */
const ALLOWED_CLOSE_CODES = new Set([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013]);

export type Event =
  | { kind: 'message'; data: Buffer; binary: boolean }
  | { kind: 'ping'; data: Buffer }
  | { kind: 'pong'; data: Buffer }
  | { kind: 'timeout'; tag: string };

export const msg = (data: Buffer | string, binary = false): Event => ({ kind: 'message', data: toBuf(data), binary });
export const pong = (data: Buffer | string = ''): Event => ({ kind: 'pong', data: toBuf(data) });
export const timeoutEv = (tag: string): Event => ({ kind: 'timeout', tag });

export interface ExpectedClose {
  closedByMe: boolean;
  closeCode: number[];
  requireClean: boolean;
}

export interface CaseSpec {
  id: string;
  description: string;
  /** Autobahn's Case.suppressClose: no automatic close once the expected events arrived. */
  suppressClose?: boolean;
  onOpen(c: FuzzClient): void;
  /** Replaces the default onMessage (record + finishWhenDone), as the section 9 cases do. */
  onMessage?(c: FuzzClient, data: Buffer, binary: boolean): void;
  /** Runs after the standard verdict, like the per-case onConnectionLost overrides. */
  afterVerdict?(c: FuzzClient): void;
  /** Hard upper bound for the whole case (a hang guard, not part of Autobahn). */
  guardMs?: number;
  /** permessage-deflate offers, as autobahn's PerMessageDeflateOffer list (sections 12, 13). */
  deflateOffers?: DeflateOffer[];
}

/**
 * autobahn's PerMessageDeflateOffer: accept* are what the client allows the server to ask of
 * it (client_no_context_takeover, client_max_window_bits), request* what it asks of the server.
 */
export interface DeflateOffer {
  acceptNoContextTakeover: boolean;
  acceptMaxWindowBits: boolean;
  requestNoContextTakeover: boolean;
  /** 0: not asked. */
  requestMaxWindowBits: number;
}

/** What the server's response agreed to (autobahn's PerMessageDeflate after accepting the response). */
interface DeflateState {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number;
  clientMaxWindowBits: number;
  /** Context takeover as a dictionary: the last window of what each side compressed. */
  txWindow: Buffer | null;
  rxWindow: Buffer | null;
}

const DEFLATE_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

function offerString(o: DeflateOffer): string {
  let s = 'permessage-deflate';
  if (o.acceptNoContextTakeover) s += '; client_no_context_takeover';
  if (o.acceptMaxWindowBits) s += '; client_max_window_bits';
  if (o.requestNoContextTakeover) s += '; server_no_context_takeover';
  if (o.requestMaxWindowBits !== 0) s += `; server_max_window_bits=${o.requestMaxWindowBits}`;
  return s;
}

/**
 * Checks a permessage-deflate response against the offers as RFC 7692 7.1 requires (stricter
 * than autobahn, which only checks the values): returns the agreement or why it is invalid.
 */
function acceptResponse(value: string, offers: DeflateOffer[]): DeflateState | string {
  const exts = value.split(',').map((e) => e.trim()).filter((e) => e !== '');
  if (exts.length !== 1) return `expected one extension in the response, got '${value}'`;
  const parts = exts[0]!.split(';').map((p) => p.trim());
  if (parts[0]!.toLowerCase() !== 'permessage-deflate') return `response names ${parts[0]}`;
  const st: DeflateState = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 0, clientMaxWindowBits: 0, txWindow: null, rxWindow: null };
  const seen = new Set<string>();
  for (const p of parts.slice(1)) {
    const eq = p.indexOf('=');
    const name = (eq < 0 ? p : p.slice(0, eq)).trim().toLowerCase();
    const raw = eq < 0 ? null : p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
    if (seen.has(name)) return `parameter ${name} repeated`;
    seen.add(name);
    const bits = raw === null || !/^(8|9|1[0-5])$/.test(raw) ? NaN : Number(raw);
    if (name === 'server_no_context_takeover' && raw === null) st.serverNoContextTakeover = true;
    else if (name === 'client_no_context_takeover' && raw === null) st.clientNoContextTakeover = true;
    else if (name === 'server_max_window_bits' && !Number.isNaN(bits)) st.serverMaxWindowBits = bits;
    else if (name === 'client_max_window_bits' && !Number.isNaN(bits)) st.clientMaxWindowBits = bits;
    else return `invalid parameter '${p}'`;
  }
  // The response answers one of the offers: find one it is valid for (7.1.1, 7.1.2; a server
  // may ask client_no_context_takeover of any client, 7.1.1.1).
  const fits = offers.some(
    (o) =>
      (st.clientMaxWindowBits === 0 || o.acceptMaxWindowBits) &&
      (!o.requestNoContextTakeover || st.serverNoContextTakeover) &&
      (o.requestMaxWindowBits === 0 || (st.serverMaxWindowBits !== 0 && st.serverMaxWindowBits <= o.requestMaxWindowBits)),
  );
  if (!fits) return `response '${value}' does not answer any offer`;
  st.serverMaxWindowBits ||= 15;
  st.clientMaxWindowBits ||= 15;
  return st;
}

export interface RunOptions {
  port: number;
  host?: string;
  /** Multiplies the delays of continueLater() (Autobahn waits 1 s; 0.2 keeps the suite fast). */
  continueScale?: number;
}

export interface CaseResult {
  id: string;
  description: string;
  behavior: string;
  behaviorClose: string;
  result: string;
  resultClose: string;
  durationMs: number;
  received: Event[];
  expected: Array<[string, Event[]]>;
  expectedClose: ExpectedClose | null;
  closedByMe: boolean;
  failedByMe: boolean;
  droppedByMe: boolean;
  wasClean: boolean;
  wasNotCleanReason: string | null;
  remoteCloseCode: number | null;
  remoteCloseReason: string | null;
  hung: boolean;
  /** Checks stricter than Autobahn's (e.g. section 9 payload contents), failed ones. */
  strictNotes: string[];
  trace: string[];
}

type State = 'connecting' | 'open' | 'closing' | 'closed';

const EMPTY = Buffer.alloc(0);
const TRACE_LIMIT = 60;

function toBuf(d: Buffer | string): Buffer {
  return typeof d === 'string' ? Buffer.from(d, 'utf8') : d;
}

/** payload repeated/cut to exactly len bytes (autobahn's payload_len). */
export function repeatTo(payload: Buffer, len: number): Buffer {
  const out = Buffer.allocUnsafe(len);
  if (len === 0) return out;
  out.fill(payload);
  return out;
}

/** XORs data with mask starting at mask offset `offset`, into a new buffer. */
function maskBytes(data: Buffer, mask: Buffer, offset = 0): Buffer {
  const n = data.length;
  const out = Buffer.allocUnsafe(n);
  if (n === 0) return out;
  const m0 = mask[offset & 3]!;
  const m1 = mask[(offset + 1) & 3]!;
  const m2 = mask[(offset + 2) & 3]!;
  const m3 = mask[(offset + 3) & 3]!;
  let i = 0;
  const words = n & ~3;
  if (words >= 64) {
    // 32-bit at a time; the rotated mask as one little-endian word.
    const w = (m0 | (m1 << 8) | (m2 << 16) | (m3 << 24)) >>> 0;
    for (; i < words; i += 4) out.writeUInt32LE((data.readUInt32LE(i) ^ w) >>> 0, i);
  }
  for (; i < n; i++) {
    const k = (i & 3) === 0 ? m0 : (i & 3) === 1 ? m1 : (i & 3) === 2 ? m2 : m3;
    out[i] = data[i]! ^ k;
  }
  return out;
}

function frameHeader(opcode: number, fin: boolean, rsv: number, len: number, mask: Buffer | null): Buffer {
  const ext = len <= 125 ? 0 : len <= 0xffff ? 2 : 8;
  const h = Buffer.allocUnsafe(2 + ext + (mask ? 4 : 0));
  h[0] = (fin ? 0x80 : 0) | ((rsv % 8) << 4) | (opcode % 128);
  h[1] = (mask ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127);
  if (ext === 2) h.writeUInt16BE(len, 2);
  else if (ext === 8) h.writeBigUInt64BE(BigInt(len), 2);
  if (mask) mask.copy(h, 2 + ext);
  return h;
}

/** A FIFO of received bytes that avoids re-concatenating on every chunk. */
class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }

  peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let o = 0;
    for (const c of this.chunks) {
      const k = Math.min(c.length, n - o);
      c.copy(out, o, 0, k);
      o += k;
      if (o === n) break;
    }
    return out;
  }

  take(n: number): Buffer {
    if (n === 0) return EMPTY;
    const first = this.chunks[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.length -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let o = 0;
    while (o < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - o);
      c.copy(out, o, 0, k);
      o += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.length -= n;
    return out;
  }
}

function eventsEqual(a: Event[], b: Event[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.kind !== y.kind) return false;
    if (x.kind === 'timeout') {
      if (x.tag !== (y as typeof x).tag) return false;
      continue;
    }
    if (!x.data.equals((y as typeof x).data)) return false;
    if (x.kind === 'message' && x.binary !== (y as typeof x).binary) return false;
  }
  return true;
}

function shortBytes(b: Buffer): string {
  if (b.length <= 24) {
    const printable = /^[\x20-\x7e]*$/.test(b.toString('latin1'));
    return printable ? JSON.stringify(b.toString('latin1')) : `0x${b.toString('hex')}`;
  }
  return `${b.length} bytes`;
}

export function describeEvents(evs: Event[]): string {
  if (evs.length === 0) return '[]';
  const parts = evs.slice(0, 6).map((e) => {
    if (e.kind === 'timeout') return `timeout ${e.tag}`;
    if (e.kind === 'message') return `${e.binary ? 'binary' : 'text'} ${shortBytes(e.data)}`;
    return `${e.kind} ${shortBytes(e.data)}`;
  });
  if (evs.length > 6) parts.push(`... ${evs.length - 6} more`);
  return `[${parts.join(', ')}]`;
}

/**
 * One case run: connects, performs the opening handshake, runs the case, plays the client
 * side of the protocol and returns Autobahn's verdict once the TCP connection is gone.
 */
export class FuzzClient {
  readonly spec: CaseSpec;
  readonly opts: RunOptions;
  state: State = 'connecting';
  received: Event[] = [];
  expected: Array<[string, Event[]]> = [];
  expectedClose: ExpectedClose | null = null;
  behavior: string = FAILED;
  behaviorClose: string = FAILED;
  result = 'Actual events differ from any expected.';
  resultClose = 'TCP connection was dropped without close handshake';
  strictNotes: string[] = [];

  closedByMe = false;
  failedByMe = false;
  droppedByMe = false;
  wasClean = false;
  wasNotCleanReason: string | null = null;
  remoteCloseCode: number | null = null;
  remoteCloseReason: string | null = null;
  connectionWasOpen = false;
  /** Frames sent per opcode (autobahn's txFrameStats), for case 10.1.1. */
  txFrameStats: Record<number, number> = {};
  autoFragmentSize = 0;

  /** The permessage-deflate agreement, once the handshake negotiated one. */
  deflate: DeflateState | null = null;
  private messageCompressed = false;
  private socket!: Socket;
  private key = randomBytes(16).toString('base64');
  private headBuf = EMPTY;
  private q = new ByteQueue();
  private frame: { fin: boolean; opcode: number; len: number; mask: Buffer | null } | null = null;
  private insideMessage = false;
  private messageBinary = false;
  private messageParts: Buffer[] = [];
  private utf8 = new Utf8Stream();
  private utf8Last: [boolean, boolean] = [true, true];
  private sendQueue: Buffer[] = [];
  private triggered = false;
  private timers = new Set<NodeJS.Timeout>();
  private closeHandshakeTimer: NodeJS.Timeout | null = null;
  private dropTimer: NodeJS.Timeout | null = null;
  private streamMask: Buffer | null = null;
  private streamOffset = 0;
  private started = 0;
  private openedAt = 0;
  private trace: string[] = [];
  private traceDropped = 0;
  private finished = false;
  private hung = false;
  private resolve!: (r: CaseResult) => void;

  constructor(spec: CaseSpec, opts: RunOptions) {
    this.spec = spec;
    this.opts = opts;
  }

  static run(spec: CaseSpec, opts: RunOptions): Promise<CaseResult> {
    return new FuzzClient(spec, opts).start();
  }

  // ---- the API the cases use (autobahn's names) ----------------------------------------

  /** Sends one frame exactly as given (may be invalid on purpose). */
  sendFrame(
    opcode: number,
    payload: Buffer | string = EMPTY,
    o: { fin?: boolean; rsv?: number; payloadLen?: number; chopsize?: number; sync?: boolean } = {},
  ): void {
    let pl = toBuf(payload);
    if (o.payloadLen !== undefined) pl = repeatTo(pl, o.payloadLen);
    const mask = randomBytes(4);
    const header = frameHeader(opcode, o.fin ?? true, o.rsv ?? 0, pl.length, mask);
    const raw = Buffer.concat([header, maskBytes(pl, mask)]);
    this.txFrameStats[opcode] = (this.txFrameStats[opcode] ?? 0) + 1;
    this.note(`tx op=${opcode}${o.fin === false ? ' fin=0' : ''}${o.rsv ? ` rsv=${o.rsv}` : ''} len=${pl.length}${o.chopsize ? ` chop=${o.chopsize}` : ''}${o.sync ? ' sync' : ''}`);
    this.sendData(raw, o.sync ?? false, o.chopsize);
  }

  /** autobahn sendMessage(): one frame, or fragments of fragmentSize (autoFragmentSize). */
  sendMessage(payload: Buffer | string, binary = false, fragmentSize?: number): void {
    let pl = toBuf(payload);
    const opcode = binary ? 2 : 1;
    // With permessage-deflate every message is compressed, then fragmented (RSV1 on the first frame).
    const rsv1 = this.deflate !== null ? 4 : 0;
    if (this.deflate !== null) pl = this.compress(pl);
    const pfs = fragmentSize ?? (this.autoFragmentSize > 0 ? this.autoFragmentSize : undefined);
    if (pfs === undefined || pl.length <= pfs) {
      this.sendFrame(opcode, pl, { rsv: rsv1 });
      return;
    }
    // Same loop as autobahn: when the length is a multiple of the fragment size, the last
    // frame is an empty FIN continuation.
    const frames: Buffer[] = [];
    const n = pl.length;
    let i = 0;
    let first = true;
    let done = false;
    while (!done) {
      let j = i + pfs;
      if (j > n) {
        done = true;
        j = n;
      }
      const op = first ? opcode : 0;
      const rsv = first ? rsv1 : 0;
      first = false;
      const mask = randomBytes(4);
      const part = pl.subarray(i, j);
      frames.push(frameHeader(op, done, rsv, part.length, mask), maskBytes(part, mask));
      this.txFrameStats[op] = (this.txFrameStats[op] ?? 0) + 1;
      i += pfs;
    }
    this.note(`tx message ${binary ? 'binary' : 'text'} len=${n} in ${frames.length / 2} frames of ${pfs}`);
    this.sendData(Buffer.concat(frames), false);
  }

  /** Streaming API: header of a frame of `length` bytes, no FIN (autobahn beginMessage + beginMessageFrame). */
  beginMessageFrame(binary: boolean, length: number): void {
    this.streamMask = randomBytes(4);
    this.streamOffset = 0;
    const opcode = binary ? 2 : 1;
    this.txFrameStats[opcode] = (this.txFrameStats[opcode] ?? 0) + 1;
    this.note(`tx frame header op=${opcode} fin=0 len=${length}`);
    this.sendData(frameHeader(opcode, false, 0, length, this.streamMask), false);
  }

  sendMessageFrameData(data: Buffer): void {
    const m = maskBytes(data, this.streamMask!, this.streamOffset);
    this.streamOffset += data.length;
    this.note(`tx frame data ${data.length} bytes`);
    this.sendData(m, false);
  }

  /** autobahn endMessage(): an empty FIN continuation frame. */
  endMessage(): void {
    if (this.state !== 'open') return;
    this.sendFrame(0, EMPTY, { fin: true });
  }

  /** autobahn sendClose(): a close frame (code 1000 / 3000-4999, optional reason) when open. */
  sendClose(code?: number, reason?: string): void {
    this.sendCloseFrame(code, reason === undefined ? undefined : Buffer.from(reason, 'utf8'), false);
  }

  /** autobahn sendCloseFrame(): sends whatever it is given, moves to closing, sets the timeout. */
  sendCloseFrame(code?: number, reason?: Buffer, isReply = false): void {
    if (this.state !== 'open') return;
    const parts: Buffer[] = [];
    if (code !== undefined) {
      const c = Buffer.allocUnsafe(2);
      c.writeUInt16BE(code, 0);
      parts.push(c);
    }
    if (reason !== undefined) parts.push(reason);
    const payload = Buffer.concat(parts);
    const mask = randomBytes(4);
    this.txFrameStats[8] = (this.txFrameStats[8] ?? 0) + 1;
    this.note(`tx close${code !== undefined ? ` ${code}` : ''}${reason !== undefined ? ` reason=${reason.length}B` : ''}${isReply ? ' (reply)' : ''}`);
    this.sendData(Buffer.concat([frameHeader(8, true, 0, payload.length, mask), maskBytes(payload, mask)]), false);
    this.state = 'closing';
    this.closedByMe = !isReply;
    if (this.closedByMe) {
      this.closeHandshakeTimer = this.later(1000, () => {
        this.closeHandshakeTimer = null;
        if (this.state === 'closed') return;
        this.note('close handshake timeout (1 s): server did not answer our close');
        this.wasClean = false;
        this.wasNotCleanReason = 'peer did not finish the closing handshake in time';
        this.dropConnection();
      });
    }
  }

  killAfter(seconds: number): void {
    this.later(seconds * 1000, () => {
      if (this.state === 'closed') return;
      this.note(`killAfter(${seconds}) fired`);
      this.failConnection('killAfter timeout');
    });
  }

  closeAfter(seconds: number): void {
    this.later(seconds * 1000, () => {
      if (this.state === 'closed') return;
      this.note(`closeAfter(${seconds}) fired`);
      this.sendClose();
    });
  }

  continueLater(seconds: number, fn: () => void): void {
    this.later(seconds * 1000 * (this.opts.continueScale ?? 0.2), () => {
      if (this.state === 'closed') return;
      fn();
    });
  }

  /** Events as autobahn's Case.onMessage / onPong record them, then finishWhenDone. */
  record(ev: Event): void {
    this.received.push(ev);
    this.finishWhenDone();
  }

  note(s: string): void {
    if (this.trace.length >= TRACE_LIMIT) {
      this.traceDropped++;
      return;
    }
    const t = this.openedAt === 0 ? 0 : Date.now() - this.openedAt;
    this.trace.push(`+${t}ms ${s}`);
  }

  // ---- internals -------------------------------------------------------------------------

  /** RFC 7692 7.2.1, as the client: deflate with the agreed window, drop the sync-flush tail. */
  private compress(data: Buffer): Buffer {
    const d = this.deflate!;
    const windowBits = Math.max(9, d.clientMaxWindowBits);
    const out = deflateRawSync(data, { windowBits, finishFlush: zconst.Z_SYNC_FLUSH, dictionary: d.clientNoContextTakeover ? undefined : (d.txWindow ?? undefined) });
    if (!d.clientNoContextTakeover) d.txWindow = keepWindow(d.txWindow, data, 1 << windowBits);
    return out.subarray(0, out.length - 4);
  }

  /** RFC 7692 7.2.2: append the tail, inflate with the server's window (a larger distance fails). */
  private decompress(data: Buffer): Buffer | null {
    const d = this.deflate!;
    try {
      const out = inflateRawSync(Buffer.concat([data, DEFLATE_TAIL]), {
        windowBits: d.serverMaxWindowBits,
        finishFlush: zconst.Z_SYNC_FLUSH,
        dictionary: d.serverNoContextTakeover ? undefined : (d.rxWindow ?? undefined),
      });
      if (!d.serverNoContextTakeover) d.rxWindow = keepWindow(d.rxWindow, out, 1 << d.serverMaxWindowBits);
      return out;
    } catch (err) {
      this.note(`inflate failed: ${(err as Error).message}`);
      return null;
    }
  }

  private later(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  private start(): Promise<CaseResult> {
    this.started = Date.now();
    return new Promise((resolve) => {
      this.resolve = resolve;
      const host = this.opts.host ?? '127.0.0.1';
      const s = connect(this.opts.port, host);
      this.socket = s;
      s.setNoDelay(true);
      s.on('connect', () => {
        const req =
          'GET / HTTP/1.1\r\n' +
          'User-Agent: murmur-conformance (Autobahn-like fuzzing client)\r\n' +
          `Host: ${host}:${this.opts.port}\r\n` +
          'Upgrade: WebSocket\r\n' +
          'Connection: Upgrade\r\n' +
          'Pragma: no-cache\r\n' +
          'Cache-Control: no-cache\r\n' +
          `Sec-WebSocket-Key: ${this.key}\r\n` +
          'Sec-WebSocket-Version: 13\r\n' +
          (this.spec.deflateOffers ? `Sec-WebSocket-Extensions: ${this.spec.deflateOffers.map(offerString).join(', ')}\r\n` : '') +
          '\r\n';
        s.write(req);
      });
      s.on('data', (d: Buffer) => this.onData(d));
      s.on('end', () => this.connectionLost('end'));
      s.on('close', () => this.connectionLost('close'));
      s.on('error', (e: NodeJS.ErrnoException) => this.note(`socket error ${e.code ?? e.message}`));
      const guard = this.spec.guardMs ?? 30_000;
      this.later(guard, () => {
        if (this.finished) return;
        this.hung = true;
        this.note(`hang guard (${guard} ms) fired; destroying the socket`);
        this.droppedByMe = true;
        this.state = 'closed';
        this.socket.destroy();
        this.connectionLost('guard');
      });
    });
  }

  private onData(d: Buffer): void {
    if (this.state === 'connecting') {
      this.headBuf = Buffer.concat([this.headBuf, d]);
      const end = this.headBuf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.headBuf.subarray(0, end).toString('latin1');
      const rest = this.headBuf.subarray(end + 4);
      this.headBuf = EMPTY;
      const problem = this.checkHandshake(head);
      if (problem !== null) {
        this.note(`handshake failed: ${problem}`);
        this.wasNotCleanReason = problem;
        this.dropConnection();
        return;
      }
      this.state = 'open';
      this.connectionWasOpen = true;
      this.openedAt = Date.now();
      this.note('open');
      this.spec.onOpen(this);
      if (rest.length > 0) this.onData(rest);
      return;
    }
    if (this.state === 'closed') return;
    this.q.push(d);
    this.processData();
  }

  private checkHandshake(head: string): string | null {
    const lines = head.split('\r\n');
    const status = lines[0]!.split(' ');
    if (status[0] !== 'HTTP/1.1') return `bad status line ${lines[0]}`;
    if (status[1] !== '101') return `status ${lines[0]}`;
    const headers = new Map<string, string[]>();
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i < 0) continue;
      const k = l.slice(0, i).trim().toLowerCase();
      const v = l.slice(i + 1).trim();
      headers.set(k, [...(headers.get(k) ?? []), v]);
    }
    if (headers.get('upgrade')?.[0]?.toLowerCase() !== 'websocket') return 'Upgrade header missing or not websocket';
    if (!(headers.get('connection') ?? []).join(',').split(',').some((t) => t.trim().toLowerCase() === 'upgrade')) return 'Connection header lacks upgrade';
    const accept = headers.get('sec-websocket-accept');
    if (accept === undefined) return 'Sec-WebSocket-Accept missing';
    if (accept.length > 1) return 'Sec-WebSocket-Accept more than once';
    const want = createHash('sha1').update(this.key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    if (accept[0] !== want) return `Sec-WebSocket-Accept ${accept[0]} != ${want}`;
    const ext = headers.get('sec-websocket-extensions');
    if (ext !== undefined) {
      if (this.spec.deflateOffers === undefined) return 'server selected an extension we did not offer';
      const st = acceptResponse(ext.join(', '), this.spec.deflateOffers);
      if (typeof st === 'string') return st;
      this.deflate = st;
      this.note(`deflate agreed: ${ext.join(', ')}`);
    }
    const proto = headers.get('sec-websocket-protocol');
    if (proto !== undefined && proto.join('') !== '') return 'server selected a subprotocol we did not offer';
    return null;
  }

  private processData(): void {
    while (this.state === 'open' || this.state === 'closing') {
      if (this.frame === null) {
        if (this.q.length < 2) return;
        const h = this.q.peek(2);
        const fin = (h[0]! & 0x80) !== 0;
        const rsv = (h[0]! & 0x70) >> 4;
        const opcode = h[0]! & 0x0f;
        const masked = (h[1]! & 0x80) !== 0;
        const len1 = h[1]! & 0x7f;
        // RFC 7692 6: RSV1 only with deflate, only on the first frame of a data message.
        const rsvOk = rsv === 4 && this.deflate !== null && opcode !== 0 && opcode <= 7 && !this.insideMessage;
        if (rsv !== 0 && !rsvOk) return this.protocolViolation(`RSV = ${rsv} ${this.deflate === null ? 'and no extension negotiated' : 'not allowed on this frame'}`);
        if (masked) return this.protocolViolation('masked server-to-client frame');
        if (opcode > 7) {
          if (!fin) return this.protocolViolation('fragmented control frame');
          if (len1 > 125) return this.protocolViolation('control frame with payload length > 125 octets');
          if (opcode !== 8 && opcode !== 9 && opcode !== 10) return this.protocolViolation(`control frame using reserved opcode ${opcode}`);
          if (opcode === 8 && len1 === 1) return this.protocolViolation('received close control frame with payload len 1');
        } else {
          if (opcode !== 0 && opcode !== 1 && opcode !== 2) return this.protocolViolation(`data frame using reserved opcode ${opcode}`);
          if (!this.insideMessage && opcode === 0) return this.protocolViolation('continuation data frame outside fragmented message');
          if (this.insideMessage && opcode !== 0) return this.protocolViolation('non-continuation data frame while inside fragmented message');
        }
        const hlen = 2 + (len1 === 126 ? 2 : len1 === 127 ? 8 : 0) + (masked ? 4 : 0);
        if (this.q.length < hlen) return;
        const hb = this.q.take(hlen);
        let len = len1;
        if (len1 === 126) {
          len = hb.readUInt16BE(2);
          if (len < 126) return this.protocolViolation('invalid data frame length (not using minimal length encoding)');
        } else if (len1 === 127) {
          const big = hb.readBigUInt64BE(2);
          if (big > 0x7fffffffffffffffn) return this.protocolViolation('invalid data frame length (>2^63)');
          if (big < 65536n) return this.protocolViolation('invalid data frame length (not using minimal length encoding)');
          len = Number(big);
        }
        this.frame = { fin, opcode, len, mask: null };
        if (opcode <= 7 && !this.insideMessage) {
          this.insideMessage = true;
          this.messageCompressed = rsv === 4;
          this.messageBinary = opcode === 2;
          this.messageParts = [];
          if (!this.messageBinary) {
            this.utf8.reset();
            this.utf8Last = [true, true];
          }
        }
      }
      const f = this.frame;
      if (this.q.length < f.len) return;
      const payload = this.q.take(f.len);
      this.frame = null;
      if (f.opcode > 7) {
        this.onControl(f.opcode, payload);
        continue;
      }
      if (!this.messageBinary && !this.messageCompressed) {
        this.utf8Last = this.utf8.validate(payload);
        if (!this.utf8Last[0]) return this.invalidPayload('encountered invalid UTF-8 while processing text message');
      }
      this.messageParts.push(payload);
      if (f.fin) {
        let data = this.messageParts.length === 1 ? this.messageParts[0]! : Buffer.concat(this.messageParts);
        if (this.messageCompressed) {
          const out = this.decompress(data);
          if (out === null) return this.protocolViolation('compressed message does not inflate');
          data = out;
          if (!this.messageBinary) this.utf8Last = new Utf8Stream().validate(data);
          if (!this.messageBinary && !this.utf8Last[0]) return this.invalidPayload('encountered invalid UTF-8 while processing text message');
        }
        if (!this.messageBinary && !this.utf8Last[1]) return this.invalidPayload('UTF-8 text message payload ended within Unicode code point');
        this.messageParts = [];
        this.insideMessage = false;
        this.note(`rx ${this.messageBinary ? 'binary' : 'text'} message ${shortBytes(data)}`);
        if (this.spec.onMessage) this.spec.onMessage(this, data, this.messageBinary);
        else this.record({ kind: 'message', data, binary: this.messageBinary });
      }
    }
  }

  private onControl(opcode: number, payload: Buffer): void {
    if (opcode === 8) {
      let code: number | null = null;
      let reason: Buffer | null = null;
      if (payload.length > 1) {
        code = payload.readUInt16BE(0);
        if (payload.length > 2) reason = payload.subarray(2);
      }
      this.note(`rx close ${code ?? '(no code)'}${reason ? ` reason ${shortBytes(reason)}` : ''}`);
      this.onCloseFrame(code, reason);
    } else if (opcode === 9) {
      this.note(`rx ping ${shortBytes(payload)}`);
      this.record({ kind: 'ping', data: payload });
      if (this.state === 'open') {
        const mask = randomBytes(4);
        this.sendData(Buffer.concat([frameHeader(10, true, 0, payload.length, mask), maskBytes(payload, mask)]), false);
      }
    } else {
      this.note(`rx pong ${shortBytes(payload)}`);
      this.record({ kind: 'pong', data: payload });
    }
  }

  private onCloseFrame(code: number | null, reason: Buffer | null): void {
    this.remoteCloseCode = null;
    this.remoteCloseReason = null;
    if (code !== null && (code < 1000 || (code <= 2999 && !ALLOWED_CLOSE_CODES.has(code)) || code >= 5000)) {
      this.protocolViolation(`invalid close code ${code}`);
      return;
    }
    this.remoteCloseCode = code;
    if (reason !== null) {
      const v = new Utf8Stream().validate(reason);
      if (!(v[0] && v[1])) {
        this.invalidPayload('invalid close reason (non-UTF8 payload)');
        return;
      }
      this.remoteCloseReason = reason.toString('utf8');
    }
    if (this.state === 'closing') {
      if (this.closeHandshakeTimer !== null) {
        clearTimeout(this.closeHandshakeTimer);
        this.timers.delete(this.closeHandshakeTimer);
        this.closeHandshakeTimer = null;
      }
      this.wasClean = true;
      this.dropTimer = this.later(1000, () => {
        if (this.state === 'closed') return;
        this.note('server connection drop timeout (1 s): server did not drop TCP');
        this.wasClean = false;
        this.wasNotCleanReason = 'server did not drop TCP connection in time';
        this.dropConnection();
      });
    } else if (this.state === 'open') {
      this.wasClean = true;
      this.sendCloseFrame(CLOSE_NORMAL, undefined, true);
    }
  }

  private finishWhenDone(): void {
    for (const [, exp] of this.expected) if (!eventsEqual(this.received, exp)) return;
    if (this.expectedClose?.closedByMe && !this.spec.suppressClose) this.sendClose(this.expectedClose.closeCode[0]);
  }

  private protocolViolation(reason: string): void {
    this.note(`protocol violation by server: ${reason}`);
    this.failConnection(reason);
  }

  private invalidPayload(reason: string): void {
    this.note(`invalid payload from server: ${reason}`);
    this.failConnection(reason);
  }

  /** failByDrop: mark failed and drop TCP. */
  private failConnection(reason: string): void {
    if (this.state === 'closed') return;
    this.failedByMe = true;
    this.wasClean = false;
    this.wasNotCleanReason = `I dropped the WebSocket TCP connection: ${reason}`;
    this.dropConnection();
  }

  private dropConnection(): void {
    if (this.state === 'closed') return;
    this.note('tcp dropped by me');
    this.droppedByMe = true;
    this.state = 'closed';
    this.socket.destroy();
    this.connectionLost('dropped');
  }

  private sendData(data: Buffer, sync: boolean, chopsize?: number): void {
    if (chopsize !== undefined && chopsize > 0) {
      for (let i = 0; i < data.length; i += chopsize) this.sendQueue.push(data.subarray(i, i + chopsize));
      this.trigger();
    } else if (sync || this.sendQueue.length > 0) {
      this.sendQueue.push(data);
      this.trigger();
    } else if (this.state !== 'closed') {
      this.socket.write(data);
    }
  }

  private trigger(): void {
    if (this.triggered) return;
    this.triggered = true;
    this.pump();
  }

  /** One queued chunk per event-loop turn, like autobahn's _send() re-entering the reactor. */
  private pump = (): void => {
    const e = this.sendQueue.shift();
    if (e === undefined) {
      this.triggered = false;
      return;
    }
    if (this.state !== 'closed') this.socket.write(e);
    if (this.state === 'closed') {
      this.sendQueue = [];
      this.triggered = false;
      return;
    }
    setImmediate(this.pump);
  };

  private connectionLost(how: string): void {
    if (this.finished) return;
    if (how !== 'dropped' && how !== 'guard') {
      if (this.state !== 'closed') this.note(`tcp closed by server (${how})`);
      if (!this.wasClean && !this.droppedByMe && this.wasNotCleanReason === null) {
        this.wasNotCleanReason = 'peer dropped the TCP connection without previous WebSocket closing handshake';
      }
      this.state = 'closed';
      if (!this.socket.destroyed) this.socket.destroy();
    }
    this.finished = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const durationMs = Date.now() - this.started;
    if (this.connectionWasOpen && this.expectedClose !== null) this.verdict();
    else if (!this.connectionWasOpen) {
      this.behavior = FAILED;
      this.behaviorClose = FAILED;
      this.result = `WebSocket connection was never open (${this.wasNotCleanReason ?? 'no handshake'})`;
    }
    this.spec.afterVerdict?.(this);
    if (this.traceDropped > 0) this.trace.push(`... ${this.traceDropped} more trace lines`);
    this.resolve({
      id: this.spec.id,
      description: this.spec.description,
      behavior: this.behavior,
      behaviorClose: this.behaviorClose,
      result: this.result,
      resultClose: this.resultClose,
      durationMs,
      received: this.received,
      expected: this.expected,
      expectedClose: this.expectedClose,
      closedByMe: this.closedByMe,
      failedByMe: this.failedByMe,
      droppedByMe: this.droppedByMe,
      wasClean: this.wasClean,
      wasNotCleanReason: this.wasNotCleanReason,
      remoteCloseCode: this.remoteCloseCode,
      remoteCloseReason: this.remoteCloseReason,
      hung: this.hung,
      strictNotes: this.strictNotes,
      trace: this.trace,
    });
  }

  /** Autobahn's Case.onConnectionLost. */
  private verdict(): void {
    for (const [b, exp] of this.expected) {
      if (eventsEqual(this.received, exp)) {
        this.behavior = b;
        this.result = 'Actual events match at least one expected.';
        break;
      }
    }
    const ec = this.expectedClose!;
    if (ec.closedByMe !== this.closedByMe) {
      this.behaviorClose = FAILED;
      this.resultClose = 'The connection was failed by the wrong endpoint';
    } else if (ec.requireClean && !this.wasClean) {
      this.behaviorClose = UNCLEAN;
      this.resultClose = 'The spec requires the connection to be failed cleanly here';
    } else if (this.remoteCloseCode !== null && !ec.closeCode.includes(this.remoteCloseCode)) {
      this.behaviorClose = WRONG_CODE;
      this.resultClose = `The close code should have been ${ec.closeCode.join(',')} or empty`;
    } else if (this.droppedByMe) {
      this.behaviorClose = FAILED_BY_CLIENT;
      this.resultClose = 'It is preferred that the server close the TCP connection';
    } else {
      this.behaviorClose = OK;
      this.resultClose = 'Connection was properly closed';
    }
  }
}

/** True when Autobahn would show this case as anything but Pass / Info with an OK close. */
export function deviates(r: CaseResult): boolean {
  const good = (b: string): boolean => b === OK || b === INFORMATIONAL;
  return r.hung || !good(r.behavior) || !good(r.behaviorClose) || r.strictNotes.length > 0;
}

/** A compact, readable account of one deviating case. */
export function explain(r: CaseResult): string {
  const lines = [
    `Case ${r.id} (${r.description}): behavior=${r.behavior} close=${r.behaviorClose}${r.hung ? ' HUNG' : ''}`,
    `  ${r.result} / ${r.resultClose}`,
    `  received ${describeEvents(r.received)}; expected ${r.expected.map(([b, e]) => `${b}=${describeEvents(e)}`).join(' or ') || '(set by the case)'}`,
    `  closedByMe=${r.closedByMe} droppedByMe=${r.droppedByMe} wasClean=${r.wasClean} remoteCloseCode=${r.remoteCloseCode ?? 'none'}` +
      `${r.expectedClose ? ` (allowed ${r.expectedClose.closeCode.join('/')}, want closedByMe=${r.expectedClose.closedByMe}, requireClean=${r.expectedClose.requireClean})` : ''}` +
      `${r.wasNotCleanReason ? `; not clean: ${r.wasNotCleanReason}` : ''}`,
  ];
  for (const n of r.strictNotes) lines.push(`  strict: ${n}`);
  lines.push(`  trace: ${r.trace.join(' | ')}`);
  return lines.join('\n');
}

/** The last `size` bytes of `prev` followed by `data`: the window a peer with context takeover refers back into. */
function keepWindow(prev: Buffer | null, data: Buffer, size: number): Buffer {
  const joined = prev === null ? data : Buffer.concat([prev, data]);
  return Buffer.from(joined.subarray(Math.max(0, joined.length - size)));
}
