/**
 * createWebSocketStream: a Duplex over a ws-door WebSocket, as ws offers. Each message read
 * is one chunk; each chunk written is one message. Reading applies backpressure by pausing
 * the socket while the readable side is full; ending the writable side closes the
 * connection; destroying the stream terminates it.
 */
import { Duplex } from 'node:stream';
import type { DuplexOptions } from 'node:stream';
import { WebSocket } from './websocket.js';
import type { RawData } from './websocket.js';

/** A Duplex over `ws`; `options` are the Duplex's (objectMode, highWaterMark, encoding...). */
export function createWebSocketStream(ws: WebSocket, options: DuplexOptions = {}): Duplex {
  let terminateOnDestroy = true;
  const duplex = new Duplex({
    ...options,
    autoDestroy: false,
    emitClose: false,
    objectMode: false,
    writableObjectMode: false,
  });

  ws.on('message', (msg: RawData, isBinary: boolean) => {
    const data = !isBinary && duplex.readableObjectMode ? String(msg) : msg;
    if (!duplex.push(data)) ws.pause();
  });
  ws.once('error', (err: Error) => {
    if (duplex.destroyed) return;
    // The connection is failing already: destroying the stream must not terminate it too.
    terminateOnDestroy = false;
    duplex.destroy(err);
  });
  ws.once('close', () => {
    if (duplex.destroyed) return;
    duplex.push(null);
  });

  duplex._destroy = (err, callback) => {
    if (ws.readyState === WebSocket.CLOSED) {
      callback(err);
      process.nextTick(() => duplex.emit('close'));
      return;
    }
    let called = false;
    ws.once('error', (e: Error) => {
      called = true;
      callback(e);
    });
    ws.once('close', () => {
      if (!called) callback(err);
      process.nextTick(() => duplex.emit('close'));
    });
    if (terminateOnDestroy) ws.terminate();
  };

  duplex._final = (callback) => {
    if (ws.readyState === WebSocket.CONNECTING) {
      ws.once('open', () => duplex._final(callback));
      return;
    }
    if (ws.readyState === WebSocket.CLOSED) {
      callback();
      return;
    }
    ws.once('close', () => {
      callback();
      if (duplex.readableEnded || duplex.destroyed) duplex.destroy();
    });
    ws.close();
  };

  duplex._read = () => {
    if (ws.isPaused) ws.resume();
  };

  duplex._write = (chunk: Buffer | string, _encoding, callback) => {
    if (ws.readyState === WebSocket.CONNECTING) {
      ws.once('open', () => duplex._write(chunk, _encoding, callback));
      return;
    }
    ws.send(chunk, callback);
  };

  duplex.on('end', () => {
    if (!duplex.destroyed && duplex.writableFinished) duplex.destroy();
  });
  return duplex;
}
