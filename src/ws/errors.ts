/**
 * Errors as the ws package shapes them: the class (Error or RangeError), the message, the
 * `code` string. murmur's own errors (ProtocolError, ClientError) are translated here, in one
 * table, so an application written for ws that switches on `err.code` keeps working.
 */
import type { ProtocolError } from '../protocol/index.js';
import type { ClientError } from '../client/index.js';

/** An error of the ws door: ws's class, message and `code`; `closeCode` when the connection is failed with one. */
export type WsError = (Error | RangeError) & { code: string; closeCode?: number };

type Shape = readonly [ctor: ErrorConstructor | RangeErrorConstructor, code: string, message: (detail: string) => string];

/** ws's frame errors carry this prefix. */
const FRAME = 'Invalid WebSocket frame: ';

/**
 * murmur's protocol error code → ws's class, code and message. The detail is the number
 * murmur's message carries (an opcode, a close code), or ''.
 */
const PROTOCOL_SHAPES: Record<string, Shape> = {
  WS_ERR_UNEXPECTED_MASK: [RangeError, 'WS_ERR_UNEXPECTED_MASK', () => `${FRAME}MASK must be clear`],
  WS_ERR_EXPECTED_MASK: [RangeError, 'WS_ERR_EXPECTED_MASK', () => `${FRAME}MASK must be set`],
  WS_ERR_UNEXPECTED_RSV: [RangeError, 'WS_ERR_UNEXPECTED_RSV_1', () => `${FRAME}RSV1 must be clear`],
  // murmur's message names the bits (RSV2 or RSV3 before RSV1); ws has a code for each case.
  WS_ERR_UNEXPECTED_RSV_2_3: [RangeError, 'WS_ERR_UNEXPECTED_RSV_2_3', () => `${FRAME}RSV2 and RSV3 must be clear`],
  WS_ERR_INVALID_OPCODE: [RangeError, 'WS_ERR_INVALID_OPCODE', (d) => `${FRAME}invalid opcode ${d}`],
  WS_ERR_CONTROL_TOO_LARGE: [RangeError, 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', () => `${FRAME}invalid payload length`],
  WS_ERR_FRAGMENTED_CONTROL: [RangeError, 'WS_ERR_EXPECTED_FIN', () => `${FRAME}FIN must be set`],
  WS_ERR_UNEXPECTED_CONTINUATION: [RangeError, 'WS_ERR_INVALID_OPCODE', () => `${FRAME}invalid opcode 0`],
  WS_ERR_EXPECTED_CONTINUATION: [RangeError, 'WS_ERR_INVALID_OPCODE', () => `${FRAME}invalid opcode`],
  WS_ERR_INVALID_LENGTH: [RangeError, 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH', () => 'Unsupported WebSocket frame: payload length > 2^53 - 1'],
  WS_ERR_MESSAGE_TOO_BIG: [RangeError, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', () => 'Max payload size exceeded'],
  WS_ERR_INVALID_UTF8: [Error, 'WS_ERR_INVALID_UTF8', () => `${FRAME}invalid UTF-8 sequence`],
  WS_ERR_INVALID_CLOSE_PAYLOAD: [RangeError, 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', () => `${FRAME}invalid payload length 1`],
  WS_ERR_INVALID_CLOSE_CODE: [RangeError, 'WS_ERR_INVALID_CLOSE_CODE', (d) => `${FRAME}invalid status code ${d}`],
  WS_ERR_INVALID_CLOSE_REASON: [Error, 'WS_ERR_INVALID_UTF8', () => `${FRAME}invalid UTF-8 sequence`],
};

/** A peer's protocol violation, shaped as ws reports it; `cause` holds murmur's ProtocolError. */
export function wsProtocolError(err: ProtocolError): WsError {
  const key = err.code === 'WS_ERR_UNEXPECTED_RSV' && err.message.startsWith('RSV2') ? 'WS_ERR_UNEXPECTED_RSV_2_3' : err.code;
  const shape = PROTOCOL_SHAPES[key];
  if (shape === undefined) return withCode(new Error(err.message, { cause: err }), err.code, err.closeCode);
  const detail = /(\d+)/.exec(err.message)?.[1] ?? '';
  return withCode(new shape[0](shape[2](detail).trimEnd(), { cause: err }), shape[1], err.closeCode);
}

/**
 * A client connection's failure, shaped as ws reports it: a refused handshake says
 * "Unexpected server response: <status>" as ws does; other failures keep murmur's code.
 */
export function wsClientError(err: Error): Error {
  const code = (err as ClientError).code;
  const message = HANDSHAKE_MESSAGES[code];
  if (message !== undefined) return withCode(new Error(message(), { cause: err }), code);
  if (code === 'WS_ERR_HANDSHAKE_STATUS') return withCode(new Error(`Unexpected server response: ${(err as ClientError).status}`, { cause: err }), code);
  if (code === 'WS_ERR_HANDSHAKE_TIMEOUT') return withCode(new Error('Opening handshake has timed out', { cause: err }), code);
  if (code === 'WS_ERR_ABORTED') return withCode(new Error('WebSocket was closed before the connection was established', { cause: err }), code);
  if ((err as ProtocolError).closeCode !== undefined && err.name === 'ProtocolError') return wsProtocolError(err as ProtocolError);
  return err;
}

/** ws's messages for a 101 it refuses, by the code of murmur's client that refuses it. */
const HANDSHAKE_MESSAGES: Record<string, () => string> = {
  WS_ERR_INVALID_UPGRADE_HEADER: () => 'Invalid Upgrade header',
  WS_ERR_INVALID_ACCEPT: () => 'Invalid Sec-WebSocket-Accept header',
  WS_ERR_UNEXPECTED_EXTENSION: () => 'Server sent a Sec-WebSocket-Extensions header but no extension was requested',
};

/**
 * ws's check of the subprotocol a 101 selected, with ws's message, or undefined. Stricter than
 * murmur's client, which (as WHATWG) lets a server select none of those offered.
 */
export function subprotocolFailure(selected: string | undefined, offered: readonly string[]): string | undefined {
  if (selected !== undefined) {
    if (offered.length === 0) return 'Server sent a subprotocol but none was requested';
    if (!offered.includes(selected)) return 'Server sent an invalid subprotocol';
  } else if (offered.length > 0) return 'Server sent no subprotocol';
  return undefined;
}

/** A send, ping or pong after the connection left OPEN: ws's message, given to the callback. */
export function notOpenError(readyState: number): Error {
  return new Error(`WebSocket is not open: readyState ${readyState} (${READY_STATE_NAMES[readyState]})`);
}

/** A send refused because the connection's backlog is over maxBackpressure (murmur's bound; ws has none). */
export function backpressureError(limit: number): WsError {
  return withCode(new Error(`Message dropped: the connection has more than ${limit} bytes queued (maxBackpressure)`), 'WS_ERR_BACKPRESSURE');
}

export const READY_STATE_NAMES = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'] as const;

function withCode(err: Error, code: string, closeCode?: number): WsError {
  const e = err as WsError;
  e.code = code;
  if (closeCode !== undefined) e.closeCode = closeCode;
  return e;
}
