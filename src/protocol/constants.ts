/**
 * RFC 6455 constants: opcodes, close codes and the rule for which close codes may
 * appear on the wire. One table, boundary-tested in test/protocol/close.test.ts.
 */

/** Frame opcodes (RFC 6455 5.2). 3-7 and 11-15 are reserved and fail the connection. */
export const Opcode = {
  Continuation: 0,
  Text: 1,
  Binary: 2,
  Close: 8,
  Ping: 9,
  Pong: 10,
} as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

/** Close status codes (RFC 6455 7.4.1 and the IANA registry, 1012-1014 included). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  /** Local only: "no status code was present" (7.4.1). Never sent. */
  NoStatus: 1005,
  /** Local only: the connection dropped without a close frame (7.4.1). Never sent. */
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  BadGateway: 1014,
  /** Local only: the TLS handshake failed (7.4.1). Never sent. */
  TlsHandshake: 1015,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * Whether `code` may appear in a close frame on the wire (RFC 6455 7.4.1, 7.4.2).
 * Allowed: 1000-1003, 1007-1014 (registered), 3000-4999 (libraries, applications).
 * Not allowed: below 1000, 1004 (reserved), 1005/1006/1015 (local only),
 * 1016-2999 (reserved for future RFCs), 5000 and above.
 */
export function isValidWireCloseCode(code: number): boolean {
  if (code !== (code | 0)) return false; // not an integer (or NaN)
  if (code >= 1000 && code <= 1014) return code < 1004 || code > 1006;
  return code >= 3000 && code <= 4999;
}

/** Control frames carry at most 125 payload bytes (RFC 6455 5.5). */
export const MAX_CONTROL_PAYLOAD = 125;
