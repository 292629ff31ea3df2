/**
 * The events a WebSocket dispatches, as small subclasses of Node's global Event (Node 20
 * has Event and EventTarget, but no CloseEvent or ErrorEvent; its MessageEvent runs WebIDL
 * conversions on every construction and costs about twice as much per message).
 */

/** A received message (`message`), or a ping/pong payload (`ping`, `pong`; a Node extension). */
export class MessageEvent<T = unknown> extends Event {
  /** string for text; Buffer or ArrayBuffer (per binaryType) for binary. Always a copy the application owns. */
  readonly data: T;
  /** Origin of the WebSocket URL, as the WHATWG standard sets it. */
  readonly origin: string;

  constructor(type: string, data: T, origin: string) {
    super(type);
    this.data = data;
    this.origin = origin;
  }
}

/** The connection is closed (`close`). */
export class CloseEvent extends Event {
  /**
   * The code of the server's close frame; 1005 when its frame had no code; 1006 when no
   * close frame arrived or the client failed the connection (WHATWG).
   */
  readonly code: number;
  /** The reason of the server's close frame ('' when none). */
  readonly reason: string;
  /** true when close frames went both ways before TCP closed (RFC 6455 7.1.5). */
  readonly wasClean: boolean;

  constructor(type: string, code: number, reason: string, wasClean: boolean) {
    super(type);
    this.code = code;
    this.reason = reason;
    this.wasClean = wasClean;
  }
}

/** The connection failed (`error`); a `close` event follows. */
export class ErrorEvent extends Event {
  /** A ClientError, or the protocol layer's ProtocolError when the server broke RFC 6455. */
  readonly error: Error;
  readonly message: string;

  constructor(type: string, error: Error) {
    super(type);
    this.error = error;
    this.message = error.message;
  }
}
