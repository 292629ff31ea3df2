/**
 * A small, strict reader for the HTTP/1.1 response head a server answers an upgrade with
 * (RFC 9112 4 status line, 5 fields). The client only needs the status and a handful of
 * headers, so this reads the head and nothing else: no bodies, no chunked encoding.
 *
 * Limits: the head (status line through the empty line) may take at most `maxHeadBytes`
 * bytes and hold at most `maxHeaders` header lines; a server that sends more is hostile or
 * broken and the handshake fails (DESIGN.md principle 5).
 */
import { ClientError } from './errors.js';

export interface ResponseHeadLimits {
  /** Bytes from the status line through the terminating empty line. */
  maxHeadBytes: number;
  /** Header lines. */
  maxHeaders: number;
}

/** A parsed response head. Header names are lower-cased; repeated headers are joined with ", " (RFC 9110 5.3). */
export interface ResponseHead {
  /** "1.1" or "1.0". */
  version: string;
  status: number;
  statusText: string;
  headers: Map<string, string>;
}

/** The head and the bytes that followed it in the same reads (the first frames, if any). */
export interface ResponseHeadResult {
  head: ResponseHead;
  rest: Buffer;
}

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

/** RFC 9110 5.6.2 tchar, for header field names. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9112 4: HTTP-version SP 3DIGIT SP reason-phrase (the reason may be empty; some servers drop the SP too). */
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([^\r\n]*))?$/;
/** Field values may hold visible characters, SP, HTAB and obs-text; never CR, LF or NUL (RFC 9110 5.5). */
const BAD_VALUE_CHAR = /[\0\r\n]/;

/**
 * Accumulates received chunks until the response head is complete.
 * `push` returns undefined while more bytes are needed, the result once the head is
 * complete, and throws a ClientError (WS_ERR_RESPONSE_HEAD_TOO_LARGE,
 * WS_ERR_TOO_MANY_HEADERS, WS_ERR_MALFORMED_RESPONSE) when the head breaks a limit or
 * the grammar. Do not push after a result or an error.
 */
export class ResponseHeadReader {
  readonly #limits: ResponseHeadLimits;
  /** Bytes of a head cut off by a read boundary: capacity doubles, so a head that trickles in costs linear time. */
  #buf: Buffer | null = null;
  #len = 0;

  constructor(limits: ResponseHeadLimits) {
    this.#limits = limits;
  }

  push(chunk: Buffer): ResponseHeadResult | undefined {
    const max = this.#limits.maxHeadBytes;
    const prev = this.#len;
    if (prev === 0) {
      // The usual case: the whole head in one read, parsed where it lies.
      const at = chunk.indexOf(CRLFCRLF);
      if (at !== -1) return this.#done(chunk, at, chunk.subarray(at + 4));
      if (chunk.length >= max) throw tooLarge(max);
    }
    // Only the first `max` bytes can hold the head; what follows it is the caller's (rest).
    const n = Math.min(chunk.length, max - prev);
    const buf = this.#reserve(prev + n);
    chunk.copy(buf, prev, 0, n);
    this.#len = prev + n;
    // The terminator may straddle the previous chunk's end: back up 3 bytes.
    const at = buf.subarray(0, prev + n).indexOf(CRLFCRLF, Math.max(0, prev - 3));
    if (at === -1) {
      if (prev + n >= max) throw tooLarge(max);
      return undefined;
    }
    return this.#done(buf, at, chunk.subarray(at + 4 - prev));
  }

  #done(buf: Buffer, at: number, rest: Buffer): ResponseHeadResult {
    const max = this.#limits.maxHeadBytes;
    if (at + 4 > max) throw tooLarge(max);
    const head = parseHead(buf.toString('latin1', 0, at), this.#limits.maxHeaders);
    this.#buf = null;
    this.#len = 0;
    return { head, rest };
  }

  /** The held buffer with room for `size` bytes, grown by doubling (never past maxHeadBytes). */
  #reserve(size: number): Buffer {
    const held = this.#buf;
    if (held !== null && held.length >= size) return held;
    let cap = held === null ? 512 : held.length * 2;
    while (cap < size) cap *= 2;
    const grown = Buffer.allocUnsafe(Math.min(cap, this.#limits.maxHeadBytes));
    if (held !== null) held.copy(grown, 0, 0, this.#len);
    this.#buf = grown;
    return grown;
  }
}

function tooLarge(max: number): ClientError {
  return new ClientError('WS_ERR_RESPONSE_HEAD_TOO_LARGE', `Response head longer than ${max} bytes`);
}

function malformed(what: string): ClientError {
  return new ClientError('WS_ERR_MALFORMED_RESPONSE', `Malformed response head: ${what}`);
}

/** Parses the head text without its terminating CRLFCRLF. */
function parseHead(text: string, maxHeaders: number): ResponseHead {
  const lines = text.split('\r\n');
  const m = STATUS_LINE.exec(lines[0]!);
  if (m === null) throw malformed(`bad status line ${JSON.stringify(lines[0]!.slice(0, 64))}`);
  if (lines.length - 1 > maxHeaders) {
    throw new ClientError('WS_ERR_TOO_MANY_HEADERS', `Response has more than ${maxHeaders} header lines`);
  }
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    // No colon, an empty name, or whitespace before the colon (RFC 9112 5.1 forbids it);
    // a line starting with whitespace is obs-fold, which a recipient may reject (5.2).
    if (colon <= 0) throw malformed(`bad header line ${JSON.stringify(line.slice(0, 64))}`);
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw malformed(`bad header name ${JSON.stringify(name.slice(0, 64))}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (BAD_VALUE_CHAR.test(value)) throw malformed(`bad character in header ${name}`);
    const key = name.toLowerCase();
    const seen = headers.get(key);
    headers.set(key, seen === undefined ? value : `${seen}, ${value}`);
  }
  return { version: `1.${m[1]!}`, status: Number(m[2]), statusText: m[3] ?? '', headers };
}
