/**
 * Incremental HTTP/1.1 request-head parser (RFC 7230 3) over raw socket bytes, with hard
 * limits. Bytes in, a {@link RequestHead} or an {@link HttpReject} out; no sockets, no timers.
 *
 * Choices, where the RFC leaves one:
 * - Bare LF line endings are accepted (RFC 7230 3.5 allows it).
 * - Leading empty lines before the request line are not skipped: a fresh upgrade connection
 *   has no previous body whose trailing CRLF they could be. They give 400.
 * - Only HTTP/1.x is accepted; others give 400 BAD_HTTP_VERSION. HTTP/1.0 parses (a plain
 *   request on a shared port may be one: health checkers send it) and validateUpgrade refuses
 *   it as an upgrade with the same 400 BAD_HTTP_VERSION.
 * - obs-fold (a line starting with SP/HTAB), whitespace between a name and its colon, and
 *   any CTL other than HTAB inside a value give 400 (RFC 7230 3.2.4).
 * - A request line longer than maxLineLength gives 414; a header line, 431.
 * The head is decoded as latin1 only, so every byte maps to one char and nothing is replaced.
 */
import { Buffer } from 'node:buffer';
import { COLON, CR, FIELD_CHAR, HTAB, LF, SP, TCHAR } from './chars.js';
import { HttpReject, reject } from './reject.js';

export interface HeadLimits {
  /** Bytes of the whole head, request line through the blank line that ends it (terminators included). */
  maxHeadBytes: number;
  /** Header lines (the request line not counted). */
  maxHeaders: number;
  /** Bytes of one line, its CRLF/LF terminator not counted. */
  maxLineLength: number;
}

export interface RequestHead {
  method: string;
  /** request-target as sent, e.g. "/chat?x=1". */
  target: string;
  /** The x of HTTP/1.x. */
  versionMinor: number;
  /** Header names lower-cased; values trimmed of OWS. Repeated headers are kept, in order. */
  headers: Array<[name: string, value: string]>;
}

export interface ParsedHead {
  kind: 'head';
  head: RequestHead;
  /** The bytes after the head (may be empty). A view into the chunk passed to the last `push`. */
  rest: Buffer;
}

/** The first value of header `name` (give it lower-case), or undefined. */
export function getHeader(head: RequestHead, name: string): string | undefined {
  const { headers } = head;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    if (h[0] === name) return h[1];
  }
  return undefined;
}

/**
 * All values of header `name` (give it lower-case) joined with ", ", as RFC 7230 3.2.2 says a
 * repeated list header means; undefined if absent.
 */
export function getHeaderList(head: RequestHead, name: string): string | undefined {
  let out: string | undefined;
  const { headers } = head;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    if (h[0] === name) out = out === undefined ? h[1] : `${out}, ${h[1]}`;
  }
  return out;
}

/** How many times header `name` (lower-case) occurs. */
export function countHeader(head: RequestHead, name: string): number {
  let n = 0;
  const { headers } = head;
  for (let i = 0; i < headers.length; i++) if (headers[i]![0] === name) n++;
  return n;
}

/**
 * Finds the end of a request head across any number of chunks, enforcing the limits as bytes
 * arrive, then parses it.
 *
 * Each byte is scanned once: the scan state (bytes so far, current line length, lines seen)
 * carries over between pushes. A head that arrives in one chunk is parsed in place without a
 * copy. A head split across chunks is copied into one owned buffer that grows by doubling up
 * to maxHeadBytes, so byte-by-byte feeding stays linear and the parser never keeps a
 * reference to a caller's chunk (a transport may reuse its read buffer).
 */
export class RequestHeadParser {
  private readonly maxHeadBytes: number;
  private readonly maxHeaders: number;
  private readonly maxLineLength: number;
  /** Head bytes scanned so far. */
  private scanned: number;
  /** Bytes of the current, unterminated line, including a CR it may end with. */
  private lineBytes: number;
  /** The last byte scanned was CR (it belongs to the current line). */
  private lastWasCr: boolean;
  /** Lines terminated so far (the request line is line 0). */
  private lines: number;
  /** Head bytes of earlier chunks, when the head spans chunks; `pendingLength` of them are used. */
  private pending: Buffer | undefined;
  private pendingLength: number;
  private done: boolean;

  constructor(limits: HeadLimits) {
    this.maxHeadBytes = limits.maxHeadBytes;
    this.maxHeaders = limits.maxHeaders;
    this.maxLineLength = limits.maxLineLength;
    this.scanned = 0;
    this.lineBytes = 0;
    this.lastWasCr = false;
    this.lines = 0;
    this.pending = undefined;
    this.pendingLength = 0;
    this.done = false;
  }

  /**
   * Feeds bytes. Returns undefined while the head is incomplete; a {@link ParsedHead} once the
   * blank line arrived; an {@link HttpReject} for a malformed or oversized head (as soon as a
   * limit is exceeded, without waiting for more bytes).
   * @throws Error if called again after it returned a result.
   */
  push(chunk: Buffer): ParsedHead | HttpReject | undefined {
    if (this.done) throw new Error('RequestHeadParser: push() after the head was already parsed or rejected');
    let pos = 0;
    // Never look further than one byte past what the head may still take: a huge chunk
    // of garbage costs a scan of maxHeadBytes, not of its own length.
    const len = Math.min(chunk.length, this.maxHeadBytes - this.scanned + 1);
    const view = len < chunk.length ? chunk.subarray(0, len) : chunk;
    while (pos < len) {
      const nl = view.indexOf(LF, pos);
      if (nl === -1) {
        const n = len - pos;
        this.scanned += n;
        this.lineBytes += n;
        this.lastWasCr = chunk[len - 1] === CR;
        const over = this.checkOpenLine();
        if (over !== undefined) return this.finish(over);
        break;
      }
      this.scanned += nl - pos + 1;
      this.lineBytes += nl - pos;
      if (nl > pos) this.lastWasCr = chunk[nl - 1] === CR;
      const content = this.lastWasCr ? this.lineBytes - 1 : this.lineBytes;
      // The more specific limit is reported first when both are broken.
      if (content > this.maxLineLength) {
        return this.finish(reject(this.lines === 0 ? 'URI_TOO_LONG' : 'HEADER_LINE_TOO_LONG'));
      }
      if (this.scanned > this.maxHeadBytes) return this.finish(reject('HEAD_TOO_LARGE'));
      pos = nl + 1;
      if (content === 0) {
        // The blank line: the head ends here (or, as line 0, the request line is missing).
        if (this.lines === 0) return this.finish(reject('MALFORMED_REQUEST'));
        return this.complete(chunk, pos);
      }
      if (this.lines > this.maxHeaders) return this.finish(reject('TOO_MANY_HEADERS'));
      this.lines++;
      this.lineBytes = 0;
      this.lastWasCr = false;
    }
    this.append(view);
    return undefined;
  }

  /** Limits that an unterminated line can already break. */
  private checkOpenLine(): HttpReject | undefined {
    // A trailing CR may be the start of the terminator, so it does not count yet.
    const content = this.lastWasCr ? this.lineBytes - 1 : this.lineBytes;
    if (content > this.maxLineLength) return reject(this.lines === 0 ? 'URI_TOO_LONG' : 'HEADER_LINE_TOO_LONG');
    if (this.scanned > this.maxHeadBytes) return reject('HEAD_TOO_LARGE');
    return undefined;
  }

  private complete(chunk: Buffer, end: number): ParsedHead | HttpReject {
    this.done = true;
    const rest = chunk.subarray(end);
    if (this.pending === undefined) return wrap(parseHead(chunk, end), rest);
    this.append(chunk.subarray(0, end));
    const buf = this.pending;
    const headLength = this.pendingLength;
    this.pending = undefined;
    return wrap(parseHead(buf, headLength), rest);
  }

  private append(bytes: Buffer): void {
    const need = this.pendingLength + bytes.length;
    if (need === 0) return;
    if (this.pending === undefined || this.pending.length < need) {
      // Doubling keeps byte-by-byte feeding linear; the limit caps what one connection can make us hold.
      const size = Math.min(Math.max(need, 2 * (this.pending?.length ?? 0), 256), Math.max(need, this.maxHeadBytes));
      const grown = Buffer.allocUnsafe(size);
      if (this.pending !== undefined) this.pending.copy(grown, 0, 0, this.pendingLength);
      this.pending = grown;
    }
    bytes.copy(this.pending, this.pendingLength);
    this.pendingLength = need;
  }

  private finish(r: HttpReject): HttpReject {
    this.done = true;
    this.pending = undefined;
    return r;
  }
}

/**
 * The head as bytes again, followed by `rest`: for handing a request to another HTTP parser
 * (node:http) after this one read it. Header names come out lower-cased and values trimmed,
 * which means the same to any HTTP/1.1 parser; every byte was validated on the way in.
 */
export function requestHeadBytes(head: RequestHead, rest: Buffer): Buffer {
  let text = `${head.method} ${head.target} HTTP/1.${head.versionMinor}\r\n`;
  const { headers } = head;
  for (let i = 0; i < headers.length; i++) text += `${headers[i]![0]}: ${headers[i]![1]}\r\n`;
  text += '\r\n';
  const length = Buffer.byteLength(text, 'latin1');
  const out = Buffer.allocUnsafe(length + rest.length);
  out.write(text, 0, 'latin1');
  rest.copy(out, length);
  return out;
}

function wrap(r: RequestHead | HttpReject, rest: Buffer): ParsedHead | HttpReject {
  return r instanceof HttpReject ? r : { kind: 'head', head: r, rest };
}

/**
 * Parses a complete head: `buf[0, end)` holds the request line, header lines and the blank
 * line, each ended by LF (optionally preceded by CR). Limits were enforced by the scan.
 */
function parseHead(buf: Buffer, end: number): RequestHead | HttpReject {
  let nl = buf.indexOf(LF);
  let lineEnd = nl > 0 && buf[nl - 1] === CR ? nl - 1 : nl;

  // request-line = method SP request-target SP HTTP-version (RFC 7230 3.1.1), single SPs.
  let i = 0;
  while (i < lineEnd && TCHAR[buf[i]!] === 1) i++;
  if (i === 0 || i === lineEnd || buf[i] !== SP) return reject('MALFORMED_REQUEST');
  const method = buf.toString('latin1', 0, i);
  const targetStart = ++i;
  // request-target: visible ASCII only (RFC 3986 has no raw spaces, CTLs or non-ASCII).
  while (i < lineEnd && buf[i]! > 0x20 && buf[i]! < 0x7f) i++;
  if (i === targetStart || i === lineEnd || buf[i] !== SP) return reject('MALFORMED_REQUEST');
  const target = buf.toString('latin1', targetStart, i);
  i++;
  // HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 7230 2.6)
  if (
    lineEnd - i !== 8 ||
    buf[i] !== 0x48 || buf[i + 1] !== 0x54 || buf[i + 2] !== 0x54 || buf[i + 3] !== 0x50 || buf[i + 4] !== 0x2f ||
    !isDigit(buf[i + 5]!) || buf[i + 6] !== 0x2e || !isDigit(buf[i + 7]!)
  ) {
    return reject('MALFORMED_REQUEST');
  }
  const major = buf[i + 5]! - 0x30;
  const versionMinor = buf[i + 7]! - 0x30;
  // HTTP/2+ never arrives as text on this port; 1.0 is refused by validateUpgrade (RFC 6455 4.1).
  if (major !== 1) return reject('BAD_HTTP_VERSION');

  const headers: Array<[string, string]> = [];
  let pos = nl + 1;
  while (pos < end) {
    nl = buf.indexOf(LF, pos);
    lineEnd = nl > pos && buf[nl - 1] === CR ? nl - 1 : nl;
    if (lineEnd === pos) break; // the blank line
    // obs-fold: a continuation line (RFC 7230 3.2.4 says reject with 400).
    const first = buf[pos]!;
    if (first === SP || first === HTAB) return reject('MALFORMED_REQUEST');
    // field-name = token, then ":" with no whitespace before it (RFC 7230 3.2.4).
    let j = pos;
    while (j < lineEnd && TCHAR[buf[j]!] === 1) j++;
    if (j === pos || j === lineEnd || buf[j] !== COLON) return reject('MALFORMED_REQUEST');
    const name = knownName(buf, pos, j) ?? buf.toString('latin1', pos, j).toLowerCase();
    let vStart = j + 1;
    let vEnd = lineEnd;
    while (vStart < vEnd && (buf[vStart] === SP || buf[vStart] === HTAB)) vStart++;
    while (vEnd > vStart && (buf[vEnd - 1] === SP || buf[vEnd - 1] === HTAB)) vEnd--;
    // field-value: no CTLs but HTAB, so no NUL, and no CR apart from the line terminator.
    for (let k = vStart; k < vEnd; k++) if (FIELD_CHAR[buf[k]!] !== 1) return reject('MALFORMED_REQUEST');
    headers.push([name, buf.toString('latin1', vStart, vEnd)]);
    pos = nl + 1;
  }
  return { method, target, versionMinor, headers };
}

/**
 * Header names every upgrade carries, lower-case. A name matching one of them (in any case)
 * comes back as this shared string: no allocation per header for the common ones.
 */
const KNOWN_NAMES = [
  'host', 'upgrade', 'connection', 'origin', 'cookie', 'user-agent', 'pragma', 'cache-control',
  'accept-encoding', 'accept-language', 'authorization', 'sec-websocket-key', 'sec-websocket-version',
  'sec-websocket-protocol', 'sec-websocket-extensions', 'x-forwarded-for', 'x-forwarded-proto', 'x-real-ip',
];
const KNOWN_BY_LENGTH: string[][] = [];
for (const n of KNOWN_NAMES) (KNOWN_BY_LENGTH[n.length] ??= []).push(n);

function knownName(buf: Buffer, start: number, end: number): string | undefined {
  const candidates = KNOWN_BY_LENGTH[end - start];
  if (candidates === undefined) return undefined;
  for (const name of candidates) {
    let k = 0;
    // ASCII letters only differ from their lower case by bit 0x20; '-' already has it set.
    while (k < name.length && (buf[start + k]! | 0x20) === name.charCodeAt(k)) k++;
    if (k === name.length) return name;
  }
  return undefined;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}
