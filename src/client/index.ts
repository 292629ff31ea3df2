// The WebSocket client: re-exports only.
export { WebSocket } from './websocket.js';
export type { WebSocketOptions, WebSocketData, WebSocketEventMap, BinaryType } from './websocket.js';
export { MessageEvent, CloseEvent, ErrorEvent } from './events.js';
export { ClientError, ClientErrorCode } from './errors.js';
