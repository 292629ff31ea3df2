/**
 * ws's own checks of an upgrade request, in ws's order, with its status, body and headers.
 * They run before murmur validates the request (RFC 6455 4.2.1), so a request ws refuses
 * gets ws's answer, or reaches the 'wsClientError' listeners as in ws 8.
 */

/** A refusal: status, body (ws's message), extra headers. */
export type HandshakeFailure = readonly [status: number, message: string, headers?: Record<string, string>];

/** base64 of 16 bytes, as ws checks Sec-WebSocket-Key. */
const KEY = /^[+/0-9A-Za-z]{22}==$/;
/** RFC 9110 5.6.2 token: a subprotocol name. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** As ws: version 13 (RFC 6455) and 8, a draft whose framing is 13's; murmur's Server is told to take both. */
export const WS_VERSIONS: readonly string[] = ['13', '8'];
const VERSION_HEADER = { 'Sec-WebSocket-Version': '13, 8' };

/** The first of ws's checks a request fails, or null. `header` reads a header by lower-case name. */
export function handshakeFailure(method: string, header: (name: string) => string | undefined): HandshakeFailure | null {
  if (method !== 'GET') return [405, 'Invalid HTTP method'];
  if (header('upgrade')?.toLowerCase() !== 'websocket') return [400, 'Invalid Upgrade header'];
  const key = header('sec-websocket-key');
  if (key === undefined || !KEY.test(key)) return [400, 'Missing or invalid Sec-WebSocket-Key header'];
  if (!WS_VERSIONS.includes(header('sec-websocket-version') ?? '')) return [400, 'Missing or invalid Sec-WebSocket-Version header', VERSION_HEADER];
  const protocols = header('sec-websocket-protocol');
  if (protocols !== undefined && !isProtocolList(protocols)) return [400, 'Invalid Sec-WebSocket-Protocol header'];
  return null;
}

/** A comma-separated list of distinct tokens (spaces around the commas allowed), as ws parses it. */
function isProtocolList(value: string): boolean {
  const seen = new Set<string>();
  for (const item of value.split(',')) {
    const name = item.trim();
    if (!TOKEN.test(name) || seen.has(name)) return false;
    seen.add(name);
  }
  return true;
}
