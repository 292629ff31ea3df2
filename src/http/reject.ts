/**
 * Handshake rejections as values. Every reason code a handshake can fail with, and the HTTP
 * status it maps to, lives in {@link REJECT_STATUS}: one table, one status per reason.
 * The server turns an {@link HttpReject} into bytes with `rejectResponse()` and closes.
 */

/** Reason code → HTTP status. Codes are stable strings; the table only ever grows. */
export const REJECT_STATUS = {
  /** The head (request line + headers + blank line) exceeds maxHeadBytes. */
  HEAD_TOO_LARGE: 431,
  /** More header lines than maxHeaders. */
  TOO_MANY_HEADERS: 431,
  /** One header line longer than maxLineLength. */
  HEADER_LINE_TOO_LONG: 431,
  /** The request line is longer than maxLineLength: in practice a huge request-target (RFC 7231 6.5.12). */
  URI_TOO_LONG: 414,
  /** Request line or header syntax is broken (RFC 7230 3.1.1, 3.2, 3.2.4). */
  MALFORMED_REQUEST: 400,
  /** Not HTTP/1.1 or a later 1.x: an upgrade needs HTTP/1.1 (RFC 6455 4.1, RFC 7230 6.7). */
  BAD_HTTP_VERSION: 400,
  /** Method is not GET (RFC 6455 4.1 item 2). Carries `Allow: GET`. */
  METHOD_NOT_ALLOWED: 405,
  /** No Host header, or an empty one (RFC 6455 4.1 item 4, RFC 7230 5.4). */
  MISSING_HOST: 400,
  /** More than one Host header (RFC 7230 5.4). */
  BAD_HOST: 400,
  /** Upgrade does not list `websocket`. 400, not 426: 426 is kept for the version negotiation of RFC 6455 4.2.2. */
  BAD_UPGRADE: 400,
  /** Connection does not list `upgrade` (RFC 6455 4.2.1 item 4). */
  BAD_CONNECTION: 400,
  /** Sec-WebSocket-Version missing or repeated: malformed, not a version we could negotiate. */
  BAD_VERSION: 400,
  /** Sec-WebSocket-Version present but not 13 (RFC 6455 4.2.2). Carries `Sec-WebSocket-Version: 13`. */
  UNSUPPORTED_VERSION: 426,
  /** Sec-WebSocket-Key missing, repeated, or not base64 of 16 bytes (RFC 6455 4.2.1 item 5). */
  BAD_KEY: 400,
  /** Sec-WebSocket-Protocol is not a list of distinct RFC 7230 tokens (RFC 6455 4.1 item 10). */
  BAD_PROTOCOL: 400,
  /** Sec-WebSocket-Extensions does not follow its grammar (RFC 6455 9.1) on a server that negotiates permessage-deflate. */
  BAD_EXTENSIONS: 400,
  /** The server's origin policy refused the Origin header (RFC 6455 4.2.2 item 4 allows 403). */
  ORIGIN_FORBIDDEN: 403,
  /** The server is at its connection limit. Carries `Retry-After`. */
  SERVER_FULL: 503,
  /** The upgrade request did not arrive in time. */
  HANDSHAKE_TIMEOUT: 408,
  /** The application's upgrade hook threw or its promise rejected. */
  UPGRADE_HOOK_FAILED: 500,
  /** Refused at accept: the server has maxHandshakes sockets in the handshake already. Carries `Retry-After`. */
  TOO_MANY_HANDSHAKES: 503,
  /** Refused at accept: the peer's address is at maxHandshakesPerAddress or maxConnectionsPerAddress. Carries `Retry-After`. */
  ADDRESS_LIMIT: 429,
  /** Refused at accept: the process ran out of file descriptors (EMFILE/ENFILE). Carries `Retry-After`. */
  DESCRIPTORS_EXHAUSTED: 503,
} as const;

export type RejectReason = keyof typeof REJECT_STATUS;

/** A refused handshake: the status, a stable reason code, extra response headers and an optional body. */
export class HttpReject {
  constructor(
    readonly status: number,
    /** A stable code: one of REJECT_STATUS, or an application's own (e.g. "UNAUTHORIZED" from an upgrade hook). */
    readonly reason: RejectReason | (string & {}),
    readonly headers: Record<string, string> = {},
    readonly body?: string,
  ) {}
}

/** The reason code of a rejection made with an explicit status (`reject(401, ...)`) by an application. */
export const APP_REJECT_REASON = 'REFUSED';

/**
 * A refused handshake, in one of two forms:
 * - `reject(status, body?, headers?)`: any status from 300 to 599 (an upgrade hook refusing
 *   with 401, 403, 429, a 3xx redirect with `Location`...), with the reason code `REFUSED`;
 *   the body defaults to the status's reason phrase;
 * - `reject(reason, body?)`: a reason code of {@link REJECT_STATUS} with its status and the
 *   headers the RFCs require for it (405 → `Allow: GET`, 426 → `Sec-WebSocket-Version: 13`).
 * @throws RangeError for a status that is not an integer from 300 to 599.
 * @throws TypeError for a reason code that is not in REJECT_STATUS (from JavaScript).
 */
export function reject(status: number, body?: string, headers?: Record<string, string>): HttpReject;
export function reject(reason: RejectReason, body?: string): HttpReject;
export function reject(what: number | RejectReason, body?: string, headers: Record<string, string> = {}): HttpReject {
  if (typeof what === 'number') {
    if (!Number.isInteger(what) || what < 300 || what > 599) throw new RangeError(`reject: status must be an integer from 300 to 599, got ${what}`);
    return new HttpReject(what, APP_REJECT_REASON, { ...headers }, body);
  }
  if (!Object.prototype.hasOwnProperty.call(REJECT_STATUS, what)) {
    throw new TypeError(`reject: unknown reason ${JSON.stringify(what)}; use reject(status, body) for an application's own refusal`);
  }
  switch (what) {
    case 'METHOD_NOT_ALLOWED':
      return new HttpReject(REJECT_STATUS[what], what, { Allow: 'GET' }, body);
    case 'UNSUPPORTED_VERSION':
      return new HttpReject(REJECT_STATUS[what], what, { 'Sec-WebSocket-Version': '13' }, body);
    case 'TOO_MANY_HANDSHAKES':
    case 'ADDRESS_LIMIT':
    case 'DESCRIPTORS_EXHAUSTED':
      return new HttpReject(REJECT_STATUS[what], what, { 'Retry-After': '1' }, body);
    default:
      return new HttpReject(REJECT_STATUS[what], what, {}, body);
  }
}

/** 403 ORIGIN_FORBIDDEN, for the server's origin check. */
export function rejectOrigin(): HttpReject {
  return reject('ORIGIN_FORBIDDEN');
}

/**
 * 503 SERVER_FULL with `Retry-After: <seconds>`, for the server's connection limit.
 * @throws RangeError if `retryAfterSeconds` is not a finite number >= 0 (it is rounded up).
 */
export function rejectServerFull(retryAfterSeconds: number): HttpReject {
  if (!Number.isFinite(retryAfterSeconds) || retryAfterSeconds < 0) {
    throw new RangeError(`rejectServerFull: retryAfterSeconds must be a finite number >= 0, got ${retryAfterSeconds}`);
  }
  return new HttpReject(REJECT_STATUS.SERVER_FULL, 'SERVER_FULL', { 'Retry-After': String(Math.ceil(retryAfterSeconds)) });
}

/** 408 HANDSHAKE_TIMEOUT, for the server's handshake timer. */
export function rejectHandshakeTimeout(): HttpReject {
  return reject('HANDSHAKE_TIMEOUT');
}
