// The sans-I/O RFC 6455 layer: re-exports only.
export { Opcode, CloseCode, isValidWireCloseCode, MAX_CONTROL_PAYLOAD } from './constants.js';
export { ProtocolError, ProtocolErrorCode, protocolError } from './errors.js';
export { unmaskInPlace, unmaskWord, maskInto, maskKeyWord, MaskKeyPool } from './mask.js';
export type { MaskKeySource } from './mask.js';
export { Utf8Validator, isValidUtf8, utf8Step, UTF8_ACCEPT, UTF8_REJECT } from './utf8.js';
export { parseClosePayload, encodeClosePayload, MAX_CLOSE_REASON } from './close.js';
export type { CloseInfo } from './close.js';
export { FrameParser } from './frame-parser.js';
export type { FrameHandler, FrameParserOptions } from './frame-parser.js';
export {
  frameHeaderSize,
  writeFrameHeader,
  encodeFrame,
  encodeServerFrame,
  encodeCloseFrame,
  serverCloseFrame,
  EMPTY_PING_FRAME,
  EMPTY_PONG_FRAME,
} from './frame-encoder.js';
export { WS_GUID, acceptKey, isValidClientKey, generateClientKey, parseTokenList } from './handshake.js';
export { parseExtensions, negotiateDeflate, deflateOfferHeader, acceptDeflateResponse, PERMESSAGE_DEFLATE } from './permessage-deflate.js';
export type { ExtensionOffer, DeflateAgreement, DeflateServerPolicy, DeflateClientOffer } from './permessage-deflate.js';
