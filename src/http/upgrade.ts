/**
 * Validates a parsed request head as a WebSocket opening handshake (RFC 6455 4.2.1).
 * The checks run in a fixed order and the first failure is returned as an {@link HttpReject}:
 *
 *  1. method is not GET                                  → 405 METHOD_NOT_ALLOWED (Allow: GET)
 *  2. HTTP version below 1.1                             → 400 BAD_HTTP_VERSION;
 *     request-target neither origin-form nor absolute-form → 400 MALFORMED_REQUEST
 *  3. Host missing or empty / repeated                   → 400 MISSING_HOST / BAD_HOST
 *  4. Upgrade lacks the token `websocket`                → 400 BAD_UPGRADE (400, not 426: 426 is
 *     kept for version negotiation, and a request without the token is simply not an upgrade)
 *  5. Connection lacks the token `upgrade`               → 400 BAD_CONNECTION
 *  6. Sec-WebSocket-Version missing or repeated          → 400 BAD_VERSION (malformed request);
 *     present but not 13                                 → 426 UNSUPPORTED_VERSION
 *     (Sec-WebSocket-Version: 13), as RFC 6455 4.2.2 asks for a version it does not understand
 *  7. Sec-WebSocket-Key missing, repeated, or not base64 of 16 bytes → 400 BAD_KEY
 *  8. Sec-WebSocket-Protocol (all lines joined) not a list of distinct tokens → 400 BAD_PROTOCOL
 *
 * Origin and connection limits are the server's policy: see rejectOrigin/rejectServerFull.
 */
import { isToken, listHasToken } from './chars.js';
import { type HttpReject, reject } from './reject.js';
import { countHeader, getHeader, getHeaderList, type RequestHead } from './request-head.js';
import { isValidClientKey, parseTokenList } from '../protocol/handshake.js';

export interface UpgradeRequest {
  head: RequestHead;
  /** Sec-WebSocket-Key as sent (validated). */
  key: string;
  /** Requested subprotocols, in the client's order of preference. */
  protocols: string[];
  /** Raw Sec-WebSocket-Extensions value (repeated lines joined), or ''. */
  extensions: string;
  origin: string | undefined;
  host: string;
  /** The request-target's path, without the query (for absolute-form targets, without scheme and authority). */
  path: string;
  /** The query, without '?', or ''. */
  query: string;
}

/** True if the request asks to upgrade to WebSocket (its Upgrade header lists `websocket`); other requests are plain HTTP. */
export function isWebSocketUpgrade(head: RequestHead): boolean {
  const upgrade = getHeaderList(head, 'upgrade');
  return upgrade !== undefined && listHasToken(upgrade, 'websocket');
}

/** The Sec-WebSocket-Version RFC 6455 defines, the only one taken unless a server says otherwise. */
export const RFC6455_VERSIONS: readonly string[] = ['13'];

/**
 * Checks a head against RFC 6455 4.2.1 (order and statuses in the module comment). Never throws.
 * `versions`: the Sec-WebSocket-Version values taken (the ws door adds '8', a draft whose framing is 13's).
 */
export function validateUpgrade(head: RequestHead, versions: readonly string[] = RFC6455_VERSIONS): UpgradeRequest | HttpReject {
  // RFC 6455 4.1 item 2: "The method of the request MUST be GET" (methods are case-sensitive).
  if (head.method !== 'GET') return reject('METHOD_NOT_ALLOWED');
  // RFC 6455 4.1 item 2: "the HTTP version MUST be at least 1.1".
  if (head.versionMinor < 1) return reject('BAD_HTTP_VERSION');
  // RFC 7230 5.3: a GET names a resource by origin-form or absolute-form, never "*" or authority-form.
  const target = splitTarget(head.target);
  if (target === undefined) return reject('MALFORMED_REQUEST');

  // RFC 7230 5.4: a request with more than one Host is answered 400.
  const hosts = countHeader(head, 'host');
  if (hosts > 1) return reject('BAD_HOST');
  const host = getHeader(head, 'host');
  if (host === undefined || host === '') return reject('MISSING_HOST');

  // RFC 6455 4.2.1 items 3 and 4.
  const upgrade = getHeaderList(head, 'upgrade');
  if (upgrade === undefined || !listHasToken(upgrade, 'websocket')) return reject('BAD_UPGRADE');
  const connection = getHeaderList(head, 'connection');
  if (connection === undefined || !listHasToken(connection, 'upgrade')) return reject('BAD_CONNECTION');

  // RFC 6455 4.2.1 item 6 and 4.2.2: only version 13 is spoken.
  if (countHeader(head, 'sec-websocket-version') !== 1) return reject('BAD_VERSION');
  if (!versions.includes(getHeader(head, 'sec-websocket-version')!)) return reject('UNSUPPORTED_VERSION');

  // RFC 6455 4.2.1 item 5: base64 of 16 bytes, sent once.
  if (countHeader(head, 'sec-websocket-key') !== 1) return reject('BAD_KEY');
  const key = getHeader(head, 'sec-websocket-key')!;
  if (!isValidClientKey(key)) return reject('BAD_KEY');

  // RFC 6455 4.1 item 10 / 11.3.4: 1#token; a name asked for twice is meaningless, so refused.
  let protocols: string[] = [];
  const protocolHeader = getHeaderList(head, 'sec-websocket-protocol');
  if (protocolHeader !== undefined) {
    protocols = parseTokenList(protocolHeader);
    if (protocols.length === 0) return reject('BAD_PROTOCOL');
    // A Set, not indexOf: thousands of one-letter names fit in a head, so stay linear.
    const seen = new Set<string>();
    for (const p of protocols) {
      if (!isToken(p) || seen.has(p)) return reject('BAD_PROTOCOL');
      seen.add(p);
    }
  }

  return {
    head,
    key,
    protocols,
    extensions: getHeaderList(head, 'sec-websocket-extensions') ?? '',
    origin: getHeader(head, 'origin'),
    host,
    path: target.path,
    query: target.query,
  };
}

/**
 * Path and query of a request-target. origin-form ("/chat?x=1") is the norm; absolute-form
 * ("http://host/chat?x=1") must be accepted too (RFC 7230 5.3.2), and gives the same path.
 * undefined for any other form.
 */
export function splitTarget(target: string): { path: string; query: string } | undefined {
  let start = 0;
  if (target.charCodeAt(0) !== 0x2f /* / */) {
    const scheme = target.indexOf('://');
    if (scheme <= 0 || !isScheme(target, scheme)) return undefined;
    const slash = target.indexOf('/', scheme + 3);
    const q = target.indexOf('?', scheme + 3);
    if (slash === -1 || (q !== -1 && q < slash)) {
      // "http://host" or "http://host?x": an empty path means "/" (RFC 7230 5.3.1).
      return { path: '/', query: q === -1 ? '' : target.slice(q + 1) };
    }
    start = slash;
  }
  const q = target.indexOf('?', start);
  return q === -1 ? { path: target.slice(start), query: '' } : { path: target.slice(start, q), query: target.slice(q + 1) };
}

/** scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 3.1), over target[0, end). */
function isScheme(target: string, end: number): boolean {
  for (let i = 0; i < end; i++) {
    const c = target.charCodeAt(i) | 0x20;
    const alpha = c >= 0x61 && c <= 0x7a;
    if (i === 0 ? !alpha : !(alpha || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e)) {
      return false;
    }
  }
  return true;
}
