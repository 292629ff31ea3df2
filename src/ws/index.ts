// The ws door (`murmur-ws/ws`): ws 8's API on murmur's server and client. Re-exports only.
import { WebSocket } from './websocket.js';
import { WebSocketServer } from './server.js';
import { createWebSocketStream } from './stream.js';

export { WebSocket, WebSocketServer, createWebSocketStream };
export type { BinaryType, RawData, SendData, SendOptions, ClientOptions, WsEvent } from './websocket.js';
export type { WebSocketServerOptions, VerifyClientInfo, VerifyClientSync, VerifyClientAsync } from './options.js';
export type { WsError } from './errors.js';

/** As ws's default export: the WebSocket class, with the server and the stream helper on it. */
const ws = Object.assign(WebSocket, { WebSocket, WebSocketServer, Server: WebSocketServer, createWebSocketStream });
export default ws;
