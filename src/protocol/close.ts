/**
 * Close frame bodies (RFC 6455 5.5.1): empty, or a 2-byte big-endian status code followed
 * by a UTF-8 reason. The whole body is a control payload, so the reason is at most 123 bytes.
 */
import { Buffer } from 'node:buffer';
import { CloseCode, isValidWireCloseCode, MAX_CONTROL_PAYLOAD } from './constants.js';
import { protocolError, type ProtocolError } from './errors.js';
import { isValidUtf8 } from './utf8.js';

/** Longest close reason in UTF-8 bytes: a control payload minus the 2-byte code. */
export const MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2;

/** A decoded close frame body. `code` is 1005 (NoStatus) when the body was empty. */
export interface CloseInfo {
  code: number;
  reason: string;
}

/**
 * Decodes and validates a received close body. Returns the ProtocolError to fail the
 * connection with instead of throwing: a 1-byte body (WS_ERR_INVALID_CLOSE_PAYLOAD), a code
 * not allowed on the wire (WS_ERR_INVALID_CLOSE_CODE), a reason that is not UTF-8
 * (WS_ERR_INVALID_CLOSE_REASON, 1007).
 */
export function parseClosePayload(payload: Buffer): CloseInfo | ProtocolError {
  if (payload.length === 0) return { code: CloseCode.NoStatus, reason: '' };
  if (payload.length === 1) {
    return protocolError('WS_ERR_INVALID_CLOSE_PAYLOAD', 'Close frame body of 1 byte: a status code needs 2');
  }
  const code = (payload[0]! << 8) | payload[1]!;
  if (!isValidWireCloseCode(code)) {
    return protocolError('WS_ERR_INVALID_CLOSE_CODE', `Close code ${code} is not allowed on the wire`);
  }
  if (payload.length === 2) return { code, reason: '' };
  const reason = payload.subarray(2);
  if (!isValidUtf8(reason)) return protocolError('WS_ERR_INVALID_CLOSE_REASON', 'Close reason is not valid UTF-8');
  return { code, reason: reason.toString('utf8') };
}

/**
 * Encodes a close body. Code 1005 (NoStatus) gives an empty body, and then `reason` must be
 * empty too, since a reason cannot be sent without a code.
 * @throws RangeError when the code is not allowed on the wire (other than 1005), or the
 * reason is longer than 123 UTF-8 bytes.
 */
export function encodeClosePayload(code: number, reason: string): Buffer {
  if (code === CloseCode.NoStatus) {
    if (reason.length !== 0) throw new RangeError('A close reason needs a status code; 1005 sends an empty body');
    return Buffer.alloc(0);
  }
  if (!isValidWireCloseCode(code)) throw new RangeError(`Close code ${code} may not be sent on the wire`);
  const reasonBytes = Buffer.byteLength(reason);
  if (reasonBytes > MAX_CLOSE_REASON) {
    throw new RangeError(`Close reason is ${reasonBytes} bytes; at most ${MAX_CLOSE_REASON} fit in a control frame`);
  }
  const out = Buffer.allocUnsafe(2 + reasonBytes);
  out[0] = code >>> 8;
  out[1] = code & 0xff;
  out.write(reason, 2, 'utf8');
  return out;
}
