/**
 * HTTP/1.1 response writers. Each returns the whole response as one Buffer, so the server
 * writes it with one call. Every header name and value is checked before it is written:
 * a CR or LF from application data must never split the response (RFC 7230 9.4).
 */
import { Buffer } from 'node:buffer';
import { isFieldValue, isToken } from './chars.js';
import type { HttpReject } from './reject.js';

/** Reason phrases for the statuses murmur sends. A status missing here is sent with an empty phrase. */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  101: 'Switching Protocols',
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  301: 'Moved Permanently',
  302: 'Found',
  304: 'Not Modified',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  505: 'HTTP Version Not Supported',
};

/** Headers this module sets itself; a caller may not pass them (they would contradict ours). */
const RESERVED = new Set(['content-length', 'transfer-encoding', 'connection']);

type HeaderInput = Array<[string, string]> | Record<string, string>;

/**
 * The response to a refused handshake: status line, `Connection: close`, a text/plain body
 * (the reject's body, or the reason phrase), then the reject's own headers.
 * @throws TypeError if a header name is not a token or a value holds CR, LF or another CTL.
 */
export function rejectResponse(r: HttpReject): Buffer {
  const phrase = STATUS_TEXT[r.status] ?? '';
  const body = r.body ?? phrase;
  let head =
    `${statusLine(r.status)}Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body, 'utf8')}\r\n`;
  head += headerLines(r.headers);
  return assemble(head, body);
}

/**
 * The 101 response that completes a WebSocket handshake (RFC 6455 4.2.2 item 5).
 * @param accept the Sec-WebSocket-Accept value computed from the client's key.
 * @param protocol the selected subprotocol, or undefined to send none.
 * @param extraHeaders e.g. Sec-WebSocket-Extensions, or application headers.
 * @throws TypeError if a header name is not a token, a value holds CR, LF or another CTL,
 *   or `protocol` is not a token.
 */
export function switchingProtocolsResponse(
  accept: string,
  protocol: string | undefined,
  extraHeaders?: Array<[string, string]>,
): Buffer {
  checkValue('Sec-WebSocket-Accept', accept);
  let head = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${accept}\r\n`;
  if (protocol !== undefined) {
    // RFC 6455 4.3: the selected subprotocol is a token.
    if (!isToken(protocol)) throw new TypeError(`invalid subprotocol ${JSON.stringify(protocol)}: not an RFC 7230 token`);
    head += `Sec-WebSocket-Protocol: ${protocol}\r\n`;
  }
  if (extraHeaders !== undefined) head += headerLines(extraHeaders);
  return Buffer.from(`${head}\r\n`, 'latin1');
}

/**
 * A complete response for a small HTTP endpoint on the WebSocket port. Always sends
 * `Connection: close` (no keep-alive) and a computed Content-Length (none for 204 and 304,
 * whose body must then be empty).
 * @throws RangeError for a status outside 200-599 (101 has its own writer).
 * @throws TypeError for a bad header name or value, a Content-Length, Transfer-Encoding or
 *   Connection header given by the caller, or a body with a 204/304.
 */
export function httpResponse(status: number, headers: HeaderInput, body: string | Buffer): Buffer {
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw new RangeError(`httpResponse: status must be an integer in 200-599, got ${status}`);
  }
  const bodyBytes = typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : body.length;
  let head = `${statusLine(status)}Connection: close\r\n`;
  if (status === 204 || status === 304) {
    // RFC 7230 3.3.2/3.3.3: these have no body and a server must not frame one.
    if (bodyBytes !== 0) throw new TypeError(`httpResponse: a ${status} response has no body`);
  } else {
    head += `Content-Length: ${bodyBytes}\r\n`;
  }
  const list = Array.isArray(headers) ? headers : Object.entries(headers);
  for (const [name] of list) {
    if (RESERVED.has(name.toLowerCase())) throw new TypeError(`httpResponse: the ${name} header is set by murmur`);
  }
  head += headerLines(list);
  return assemble(head, body);
}

function statusLine(status: number): string {
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}\r\n`;
}

function headerLines(headers: HeaderInput): string {
  const list = Array.isArray(headers) ? headers : Object.entries(headers);
  let out = '';
  for (const [name, value] of list) {
    if (!isToken(name)) throw new TypeError(`invalid header name ${JSON.stringify(name)}`);
    checkValue(name, value);
    out += `${name}: ${value}\r\n`;
  }
  return out;
}

function checkValue(name: string, value: string): void {
  if (!isFieldValue(value)) throw new TypeError(`invalid value for header ${name}: ${JSON.stringify(value)}`);
}

/** Head (latin1: every char already checked to be <= 0xFF) + CRLF + body (UTF-8 if a string) in one Buffer. */
function assemble(head: string, body: string | Buffer): Buffer {
  head += '\r\n';
  const headLength = head.length;
  const bodyLength = typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : body.length;
  const out = Buffer.allocUnsafe(headLength + bodyLength);
  out.write(head, 0, 'latin1');
  if (typeof body === 'string') out.write(body, headLength, 'utf8');
  else body.copy(out, headLength);
  return out;
}
