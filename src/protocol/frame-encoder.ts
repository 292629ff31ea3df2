/**
 * RFC 6455 5.2 frame encoding. The hot path is `frameHeaderSize` + `writeFrameHeader`: the
 * caller writes the header into its own buffer and sends it with the payload (corked), so
 * the payload is never copied to prepend a header. `encodeFrame` builds one buffer for
 * small control frames, clients (which must copy to mask) and tests.
 */
import { Buffer } from 'node:buffer';
import { Opcode, MAX_CONTROL_PAYLOAD } from './constants.js';
import { encodeClosePayload } from './close.js';
import { maskInto, type MaskKeySource } from './mask.js';

/** Largest length a 64-bit field can carry here: above 2^53 a JS number is not exact. */
const MAX_LENGTH = Number.MAX_SAFE_INTEGER;

/** Header bytes for a payload of `payloadLength`: 2, 4 or 10, plus 4 for a mask key. */
export function frameHeaderSize(payloadLength: number, masked: boolean): number {
  const size = payloadLength < 126 ? 2 : payloadLength < 0x10000 ? 4 : 10;
  return masked ? size + 4 : size;
}

/**
 * Writes a frame header at target[offset..]: FIN, RSV1 (for an extension such as
 * permessage-deflate), opcode, the shortest length encoding, and the 4 mask key bytes
 * key[maskKeyOffset..+4) when `maskKey` is given. The payload is not touched: a masked
 * payload must be masked with the same key by the caller. Returns the bytes written
 * (`frameHeaderSize(payloadLength, maskKey !== null)`).
 * @throws RangeError for a control frame that is fragmented or longer than 125 bytes
 * (RFC 6455 5.5), or a length that is negative or above 2^53 - 1.
 */
export function writeFrameHeader(
  target: Buffer,
  offset: number,
  opcode: number,
  payloadLength: number,
  fin: boolean,
  rsv1: boolean,
  maskKey: Buffer | null,
  maskKeyOffset: number,
): number {
  if (opcode >= Opcode.Close && (payloadLength > MAX_CONTROL_PAYLOAD || !fin)) {
    throw new RangeError('A control frame must be final and carry at most 125 bytes');
  }
  if (!(payloadLength >= 0 && payloadLength <= MAX_LENGTH)) throw new RangeError(`Invalid payload length ${payloadLength}`);
  let b0 = opcode & 0x0f;
  if (fin) b0 |= 0x80;
  if (rsv1) b0 |= 0x40;
  const maskBit = maskKey === null ? 0 : 0x80;
  target[offset] = b0;
  let at = offset + 2;
  if (payloadLength < 126) {
    target[offset + 1] = maskBit | payloadLength;
  } else if (payloadLength < 0x10000) {
    target[offset + 1] = maskBit | 126;
    target[offset + 2] = payloadLength >>> 8;
    target[offset + 3] = payloadLength & 0xff;
    at += 2;
  } else {
    target[offset + 1] = maskBit | 127;
    target.writeUInt32BE(Math.floor(payloadLength / 0x100000000), offset + 2);
    target.writeUInt32BE(payloadLength >>> 0, offset + 6);
    at += 8;
  }
  if (maskKey !== null) {
    target[at] = maskKey[maskKeyOffset]!;
    target[at + 1] = maskKey[maskKeyOffset + 1]!;
    target[at + 2] = maskKey[maskKeyOffset + 2]!;
    target[at + 3] = maskKey[maskKeyOffset + 3]!;
    at += 4;
  }
  return at - offset;
}

/**
 * The one encoder of a server's data frames (RFC 6455 5.2, unmasked, final): header and payload
 * in one new buffer, or with `headerOnly` the header alone, for a payload the caller writes
 * right after it (corked) rather than copy. A string payload is encoded as UTF-8. `compressed`
 * sets RSV1: the payload is a permessage-deflate message (RFC 7692 6).
 * @throws RangeError as writeFrameHeader.
 */
export function encodeServerFrame(opcode: number, payload: string | Buffer, headerOnly = false, compressed = false): Buffer {
  const length = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  const headerSize = frameHeaderSize(length, false);
  const out = Buffer.allocUnsafe(headerOnly ? headerSize : headerSize + length);
  writeFrameHeader(out, 0, opcode, length, true, compressed, null, 0);
  if (headerOnly) return out;
  if (typeof payload === 'string') out.write(payload, headerSize, length, 'utf8');
  else payload.copy(out, headerSize);
  return out;
}

/**
 * Builds one frame, header and payload in one new buffer. With a mask source (client side,
 * RFC 6455 5.3) the payload is masked into the copy with a fresh key; `payload` itself is
 * never modified.
 * @throws RangeError as writeFrameHeader.
 */
export function encodeFrame(opcode: number, payload: Buffer, fin: boolean, maskPool: MaskKeySource | null): Buffer {
  if (maskPool === null && fin) return encodeServerFrame(opcode, payload);
  const length = payload.length;
  const headerSize = frameHeaderSize(length, maskPool !== null);
  const out = Buffer.allocUnsafe(headerSize + length);
  if (maskPool === null) {
    writeFrameHeader(out, 0, opcode, length, fin, false, null, 0);
    payload.copy(out, headerSize);
  } else {
    const keyOffset = maskPool.next();
    writeFrameHeader(out, 0, opcode, length, fin, false, maskPool.buf, keyOffset);
    maskInto(payload, maskPool.buf, keyOffset, out, headerSize);
  }
  return out;
}

/**
 * Builds a close frame (RFC 6455 5.5.1). Code 1005 (NoStatus) sends an empty body.
 * @throws RangeError when the code may not be sent, or the reason exceeds 123 UTF-8 bytes.
 */
export function encodeCloseFrame(code: number, reason: string, maskPool: MaskKeySource | null): Buffer {
  return encodeFrame(Opcode.Close, encodeClosePayload(code, reason), true, maskPool);
}

/** A server's ping with an empty payload, built once. Shared: never modify it. */
export const EMPTY_PING_FRAME: Buffer = encodeFrame(Opcode.Ping, Buffer.alloc(0), true, null);
/** A server's pong with an empty payload, built once. Shared: never modify it. */
export const EMPTY_PONG_FRAME: Buffer = encodeFrame(Opcode.Pong, Buffer.alloc(0), true, null);

/** Reasonless close frames a server sends often, built once. */
const CACHED_CLOSE_FRAMES = new Map<number, Buffer>();
for (const code of [1000, 1001, 1002, 1007, 1008, 1009, 1011]) CACHED_CLOSE_FRAMES.set(code, encodeCloseFrame(code, '', null));

/**
 * An unmasked close frame with `code` and no reason, as a server sends it. For 1000, 1001,
 * 1002, 1007, 1008, 1009 and 1011 the same shared buffer is returned every time: never
 * modify it.
 * @throws RangeError as encodeCloseFrame.
 */
export function serverCloseFrame(code: number): Buffer {
  return CACHED_CLOSE_FRAMES.get(code) ?? encodeCloseFrame(code, '', null);
}
