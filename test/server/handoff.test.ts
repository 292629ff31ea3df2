// ServerOptions.handoff: requests on the server's own listener that the application takes
// elsewhere (plain HTTP on a WebSocket port) leave the server as a net.Socket with the bytes
// read so far, on either transport; the server no longer counts, times or closes them.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Socket } from 'node:net';
import { startServer, echoHandlers } from '../helpers/server.js';
import { RawClient, upgradeRequest, until, delay } from '../helpers/net.js';
import type { RequestHead } from '../../src/http/index.js';
import { serverCore } from '../../src/server/server.js';

interface Taken {
  socket: Socket;
  bytes: Buffer;
}

async function handoffServer() {
  const taken: Taken[] = [];
  const heads: RequestHead[] = [];
  const { server, port } = await startServer({
    handlers: echoHandlers(),
    limits: { handshakeTimeoutMs: 200 },
    handoff: (head) => {
      heads.push(head);
      if (head.target === '/ws') return undefined;
      return (socket, bytes) => taken.push({ socket, bytes });
    },
  });
  return { server, port, taken, heads };
}

test('a plain request is handed over with its head and what followed it; the socket reads on and writes', async () => {
  const { server, port, taken } = await handoffServer();
  const raw = await RawClient.connect(port);
  raw.write('POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody' + 'GET /next HTTP/1.1\r\nHost: a\r\n\r\n');
  await until(() => taken.length === 1, 5000, 'the hand-over');
  const { socket, bytes } = taken[0]!;
  assert.is(bytes.toString('latin1'), 'POST /api HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\n\r\nbodyGET /next HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.is(server.socketCount, 0, 'no longer counted');
  let later = '';
  socket.on('data', (d: Buffer) => (later += d.toString()));
  raw.write('more');
  await delay(100);
  assert.is(later, '', 'handed over paused');
  socket.resume();
  await until(() => later === 'more', 5000, 'bytes sent after the hand-over reach the new owner');
  socket.write('HTTP/1.1 204 No Content\r\n\r\n');
  assert.match(await raw.readHead(), /^HTTP\/1\.1 204 /);
  // Well past the handshake timeout: the server no longer times the connection out.
  await delay(1500);
  assert.not.ok(raw.closed);
  await server.close(500);
  assert.not.ok(raw.closed, 'closing the server leaves the handed-over socket alone');
  socket.destroy();
  await raw.waitClosed();
});

test('an upgrade the hook keeps opens as usual; a head over the limits never reaches the hook', async () => {
  const { server, port, heads } = await handoffServer();
  const ws = await RawClient.connect(port);
  ws.write(upgradeRequest({ path: '/ws' }));
  assert.match(await ws.readHead(), /^HTTP\/1\.1 101 /);
  const big = await RawClient.connect(port);
  big.write(`GET /x HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  assert.match(await big.readHead(), /^HTTP\/1\.1 431 /);
  assert.equal(heads.map((h) => h.target), ['/ws']);
  ws.destroy();
  await server.close(500);
});

test('a handed-over request gives back its handshake slot at once and its address share when its socket closes', async () => {
  const { server, port } = await startServer({
    handlers: echoHandlers(),
    limits: { maxHandshakes: 3, maxHandshakesPerAddress: 2, maxConnectionsPerAddress: 2 },
    handoff: (head) => {
      if (head.target === '/ws') return undefined;
      return (socket) => {
        socket.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n');
      };
    },
  });
  // Many more plain requests, one after another, than any of the limits: each is answered.
  for (let i = 0; i < 12; i++) {
    const raw = await RawClient.connect(port);
    raw.write('GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.match(await raw.readHead(), /^HTTP\/1\.1 204 /, `request ${i}`);
    await raw.waitClosed();
  }
  await until(() => serverCore(server).admission.handshakes === 0 && serverCore(server).admission.addresses.get('127.0.0.1') === undefined, 5000, 'every slot given back');
  const ws = await RawClient.connect(port);
  ws.write(upgradeRequest({ path: '/ws' }));
  assert.match(await ws.readHead(), /^HTTP\/1\.1 101 /);
  ws.destroy();
  await server.close(500);
});

test.run();
