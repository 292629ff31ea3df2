import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { createServer as createHttpServer, get as httpGet } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket as WsClient } from 'ws';
import { Server } from '../../src/server/server.js';
import { echoHandlers } from '../helpers/server.js';
import { selfSignedCert } from '../helpers/tls.js';
import { RawClient, upgradeRequest } from '../helpers/net.js';

test('handleUpgrade shares a port with a node:http server', async () => {
  const ws = new Server({ handlers: echoHandlers() });
  const http = createHttpServer((_req, res) => res.end('plain http'));
  http.on('upgrade', (req, socket, head) => ws.handleUpgrade(req, socket, head));
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  const port = (http.address() as AddressInfo).port;

  const body = await new Promise<string>((resolve, reject) => {
    httpGet(`http://127.0.0.1:${port}/`, (res) => {
      let s = '';
      res.on('data', (d) => (s += d));
      res.on('end', () => resolve(s));
    }).on('error', reject);
  });
  assert.is(body, 'plain http');

  const client = new WsClient(`ws://127.0.0.1:${port}/chat`);
  await once(client, 'open');
  client.send('through http');
  const [msg] = (await once(client, 'message')) as [Buffer];
  assert.is(msg.toString(), 'through http');
  client.close();
  await once(client, 'close');

  // A bad upgrade through node:http is rejected with its status too.
  const bad = await RawClient.connect(port);
  bad.write(upgradeRequest({ headers: { 'Sec-WebSocket-Version': '8' } }));
  assert.match(await bad.readHead(), /^HTTP\/1\.1 426 [^]*\r\nSec-WebSocket-Version: 13\r\n/i);
  await bad.waitClosed();

  await ws.close();
  http.close();
});

test('wss: the same server over node:tls', async () => {
  const { key, cert } = selfSignedCert();
  const server = new Server({ handlers: echoHandlers(), tls: { key, cert } });
  const { port } = await server.listen(0, '127.0.0.1');
  const client = new WsClient(`wss://localhost:${port}/`, { ca: cert });
  await once(client, 'open');
  const big = Buffer.alloc(200_000, 9);
  client.send(big);
  const [msg] = (await once(client, 'message')) as [Buffer];
  assert.ok(msg.equals(big));
  client.close();
  await once(client, 'close');
  await server.close();
});

test.run();
