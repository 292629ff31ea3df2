/**
 * Errors of the WebSocket client. Failures of the connection (a refused handshake, a
 * timeout, a socket error) reach the application as the `error` of an ErrorEvent, as a
 * ClientError with a stable `code`. Protocol violations by the server arrive as the
 * protocol layer's ProtocolError (with its `code` and `closeCode`) instead.
 *
 * Misuse of the API (a bad URL, close(999), send() while connecting) throws a DOMException
 * named as the WHATWG WebSocket standard says (SyntaxError, InvalidAccessError,
 * InvalidStateError), so code written for browsers catches the same errors.
 */

/** Every code a ClientError can carry, with what it means. */
export const ClientErrorCode = {
  /** The server answered with a status other than 101; `status` and `headers` say what it sent. */
  WS_ERR_HANDSHAKE_STATUS: 'WS_ERR_HANDSHAKE_STATUS',
  /** No complete 101 response within handshakeTimeoutMs. */
  WS_ERR_HANDSHAKE_TIMEOUT: 'WS_ERR_HANDSHAKE_TIMEOUT',
  /** The 101 response lacks `Upgrade: websocket` (RFC 6455 4.1, client step 2). */
  WS_ERR_INVALID_UPGRADE_HEADER: 'WS_ERR_INVALID_UPGRADE_HEADER',
  /** The 101 response lacks `Connection: upgrade` (RFC 6455 4.1, client step 3). */
  WS_ERR_INVALID_CONNECTION_HEADER: 'WS_ERR_INVALID_CONNECTION_HEADER',
  /** Sec-WebSocket-Accept is missing or does not match our key (RFC 6455 4.1, client step 4). */
  WS_ERR_INVALID_ACCEPT: 'WS_ERR_INVALID_ACCEPT',
  /** The server selected a subprotocol we did not offer (RFC 6455 4.1, client step 6). */
  WS_ERR_UNEXPECTED_SUBPROTOCOL: 'WS_ERR_UNEXPECTED_SUBPROTOCOL',
  /** The server answered with extensions; we offer none (RFC 6455 4.1, client step 5). */
  WS_ERR_UNEXPECTED_EXTENSION: 'WS_ERR_UNEXPECTED_EXTENSION',
  /** The response head is longer than the limit. */
  WS_ERR_RESPONSE_HEAD_TOO_LARGE: 'WS_ERR_RESPONSE_HEAD_TOO_LARGE',
  /** The response head has more header lines than the limit. */
  WS_ERR_TOO_MANY_HEADERS: 'WS_ERR_TOO_MANY_HEADERS',
  /** The response head is not HTTP/1.x. */
  WS_ERR_MALFORMED_RESPONSE: 'WS_ERR_MALFORMED_RESPONSE',
  /** The connection ended before the handshake completed. */
  WS_ERR_CLOSED_BEFORE_OPEN: 'WS_ERR_CLOSED_BEFORE_OPEN',
  /** The application called close() before the handshake completed. */
  WS_ERR_ABORTED: 'WS_ERR_ABORTED',
  /** The socket failed (refused, reset, TLS verification...); `cause` holds Node's error. */
  WS_ERR_SOCKET: 'WS_ERR_SOCKET',
} as const;
export type ClientErrorCode = keyof typeof ClientErrorCode;

/** A failure of a client connection. */
export class ClientError extends Error {
  override readonly name = 'ClientError';
  /** Stable machine-readable code (see ClientErrorCode). */
  readonly code: ClientErrorCode;
  /** The HTTP status of the handshake response, when one was read; 0 otherwise. */
  readonly status: number;
  /** The handshake response headers (lower-cased names), when one was read. */
  readonly headers: ReadonlyMap<string, string> | undefined;

  constructor(
    code: ClientErrorCode,
    message: string,
    options?: { cause?: unknown; status?: number; headers?: ReadonlyMap<string, string> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options?.status ?? 0;
    this.headers = options?.headers;
  }
}

/** A DOMException named as the WHATWG standard names API misuse. */
export function domError(name: 'SyntaxError' | 'InvalidStateError' | 'InvalidAccessError', message: string): DOMException {
  return new DOMException(message, name);
}
