/**
 * Protocol errors: every RFC 6455 violation the parser can detect has one stable code
 * string and exactly one close code, both in `ProtocolErrorCode`. `protocolError()` is the
 * only way the protocol layer builds one (the failure funnel).
 */

/**
 * Each protocol error code and the close code the connection is failed with.
 * 1002 for framing violations, 1007 for invalid text, 1009 for oversized messages.
 */
export const ProtocolErrorCode = {
  /** A client received a masked frame (RFC 6455 5.1). */
  WS_ERR_UNEXPECTED_MASK: 1002,
  /** A server received an unmasked frame (RFC 6455 5.1). */
  WS_ERR_EXPECTED_MASK: 1002,
  /** An RSV bit is set that no negotiated extension defines (RFC 6455 5.2). */
  WS_ERR_UNEXPECTED_RSV: 1002,
  /** Reserved opcode 3-7 or 11-15 (RFC 6455 5.2). */
  WS_ERR_INVALID_OPCODE: 1002,
  /** Control frame payload longer than 125 bytes (RFC 6455 5.5). */
  WS_ERR_CONTROL_TOO_LARGE: 1002,
  /** Control frame with FIN clear (RFC 6455 5.5). */
  WS_ERR_FRAGMENTED_CONTROL: 1002,
  /** Continuation frame with no fragmented message in progress (RFC 6455 5.4). */
  WS_ERR_UNEXPECTED_CONTINUATION: 1002,
  /** Text or binary frame while a fragmented message is in progress (RFC 6455 5.4). */
  WS_ERR_EXPECTED_CONTINUATION: 1002,
  /** 64-bit payload length with the most significant bit set (RFC 6455 5.2). */
  WS_ERR_INVALID_LENGTH: 1002,
  /** Message longer than the configured maxPayload (RFC 6455 7.4.1, code 1009). */
  WS_ERR_MESSAGE_TOO_BIG: 1009,
  /** Text message that is not valid UTF-8 (RFC 6455 8.1). */
  WS_ERR_INVALID_UTF8: 1007,
  /** Close frame with a 1-byte payload (RFC 6455 5.5.1: a body starts with a 2-byte code). */
  WS_ERR_INVALID_CLOSE_PAYLOAD: 1002,
  /** Close code not allowed on the wire (RFC 6455 7.4). */
  WS_ERR_INVALID_CLOSE_CODE: 1002,
  /** Close reason that is not valid UTF-8 (RFC 6455 5.5.1). */
  WS_ERR_INVALID_CLOSE_REASON: 1007,
  /** A compressed message (RSV1, permessage-deflate) that is not valid DEFLATE data (RFC 7692 7.2.2). */
  WS_ERR_INVALID_COMPRESSED: 1007,
  /** A large compressed message found the process's queue of inflations full (RFC 6455 7.4.1, 1013: try again later). */
  WS_ERR_INFLATE_BUSY: 1013,
} as const;
export type ProtocolErrorCode = keyof typeof ProtocolErrorCode;

/** A violation of RFC 6455 by the peer. The connection must be failed with `closeCode`. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  /** Stable machine-readable code, e.g. `WS_ERR_INVALID_UTF8`. */
  readonly code: string;
  /** The close code to fail the connection with (RFC 6455 7.4.1). */
  readonly closeCode: number;

  constructor(code: string, closeCode: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.closeCode = closeCode;
  }
}

/** Builds the ProtocolError for `code`, taking its close code from `ProtocolErrorCode`. */
export function protocolError(code: ProtocolErrorCode, message: string, options?: { cause?: unknown }): ProtocolError {
  return new ProtocolError(code, ProtocolErrorCode[code], message, options);
}
