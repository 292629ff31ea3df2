import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createServer, request } from 'node:http';
import { connect } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { compat, connected, listen, shut, once, RefClient } from './helpers.js';
import type { Impl } from './helpers.js';

// The opening handshake as ws 8 documents it: verifyClient (both forms), handleProtocols, path,
// the 'headers' event, the server and noServer modes, clientTracking, and the server's close.

/** Connects a reference client; resolves with what it saw: opened with a protocol, or refused with a status. */
function attempt(url: string, protocols?: string[], headers?: Record<string, string>): Promise<string> {
  return new Promise((resolve) => {
    const c = new RefClient(url, protocols, { headers });
    c.on('open', () => {
      const protocol = c.protocol;
      c.close();
      resolve(`open protocol=${JSON.stringify(protocol)}`);
    });
    c.on('unexpected-response', (_req: unknown, res: IncomingMessage) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        c.terminate();
        resolve(`refused ${res.statusCode} ${body} x-why=${String(res.headers['x-why'])}`);
      });
    });
    c.on('error', (e: Error) => resolve(`error ${e.message}`));
  });
}

async function withServer<R>(impl: Impl, options: Record<string, unknown>, fn: (url: string) => Promise<R>): Promise<R> {
  const { wss, url } = await listen(impl, options);
  wss.on('connection', () => {});
  try {
    return await fn(url);
  } finally {
    await shut(wss);
  }
}

compat(
  'verifyClient(info): false refuses with 401; info has origin, secure and the request',
  (impl) => {
    const seen: string[] = [];
    return withServer(
      impl,
      {
        verifyClient: (info: { origin?: string; secure: boolean; req: IncomingMessage }) => {
          seen.push(`${info.origin} ${info.secure} ${info.req.url} ${info.req.headers['x-token']}`);
          return info.req.headers['x-token'] === 'good';
        },
      },
      async (url) => [await attempt(`${url}/a?q=1`, undefined, { 'x-token': 'good', Origin: 'http://o.example' }), await attempt(url, undefined, { 'x-token': 'bad' }), ...seen],
    );
  },
  ['open protocol=""', 'refused 401 Unauthorized x-why=undefined', 'http://o.example false /a?q=1 good', 'undefined false / bad'],
);

compat(
  'verifyClient(info, cb): cb(false, code, message, headers) refuses with them; cb(true) accepts, later',
  (impl) =>
    withServer(
      impl,
      {
        verifyClient: (info: { req: IncomingMessage }, cb: (ok: boolean, code?: number, message?: string, headers?: Record<string, string>) => void) => {
          setTimeout(() => (info.req.url === '/ok' ? cb(true) : cb(false, 403, 'go away', { 'X-Why': 'because' })), 10);
        },
      },
      async (url) => [await attempt(`${url}/ok`), await attempt(`${url}/no`)],
    ),
  ['open protocol=""', 'refused 403 go away x-why=because'],
);

test('the door: verifyClient cb(false) with a status or headers no response can carry refuses with 401, never throws into the app', async () => {
  const { DOOR } = await import('./helpers.js');
  const calls: Array<[number, Record<string, string>]> = [
    [99, {}],
    [403, { 'X-Bad': 'a\r\nInjected: yes' }],
  ];
  const got: string[] = [];
  for (const [code, headers] of calls) {
    got.push(await withServer(DOOR, { verifyClient: (_info: unknown, cb: (ok: boolean, code: number, message: string, headers: Record<string, string>) => void) => cb(false, code, 'no', headers) }, (url) => attempt(url)));
  }
  assert.equal(got, ['refused 401 Unauthorized x-why=undefined', 'refused 401 Unauthorized x-why=undefined']);
});

compat(
  'handleProtocols(protocols Set, req) picks; without it the first is chosen; false chooses none',
  async (impl) => {
    const out: string[] = [];
    let given = '';
    out.push(
      await withServer(
        impl,
        {
          handleProtocols: (p: Set<string>, req: IncomingMessage) => {
            given = `${p instanceof Set} ${[...p].join('|')} ${req.url}`;
            return 'b';
          },
        },
        (url) => attempt(`${url}/p`, ['a', 'b', 'c']),
      ),
    );
    out.push(given);
    out.push(await withServer(impl, {}, (url) => attempt(url, ['x', 'y'])));
    out.push(await withServer(impl, { handleProtocols: () => false }, (url) => attempt(url, ['x'])));
    return out;
  },
  // ws's client refuses a 101 without one of the subprotocols it asked for.
  ['open protocol="b"', 'true a|b|c /p', 'open protocol="x"', 'error Server sent no subprotocol'],
);

compat(
  'path: only upgrades to that path (the query aside) are taken; others get 400',
  (impl) => withServer(impl, { path: '/chat' }, async (url) => [await attempt(`${url}/chat?room=1`), await attempt(`${url}/other`)]),
  ['open protocol=""', 'refused 400 Bad Request x-why=undefined'],
);

compat(
  "'headers' (headers, req): lines pushed by a listener are sent in the 101",
  async (impl) => {
    const { wss, url } = await listen(impl);
    let shape = '';
    wss.on('headers', (headers: string[], req: IncomingMessage) => {
      shape = `${headers[0]} ${headers.length} ${typeof req.headers}`;
      headers.push('Set-Cookie: session=abc');
    });
    const c = new RefClient(url);
    const upgraded = once(c, 'upgrade');
    const opened = once(c, 'open');
    const [res] = (await upgraded) as [IncomingMessage];
    await opened;
    c.close();
    await shut(wss);
    return [shape, String(res.headers['set-cookie'])];
  },
  ['HTTP/1.1 101 Switching Protocols 4 object', 'session=abc'],
);

compat(
  "server option: attaches to a node:http server; 'listening' is forwarded; plain requests stay with it",
  async (impl) => {
    const http = createServer((_req, res) => res.end('plain'));
    const wss = new impl.WebSocketServer({ server: http });
    const log: string[] = [];
    wss.on('listening', () => log.push('listening'));
    wss.on('connection', (ws: { send(s: string): void }, req: IncomingMessage) => {
      log.push(`connection ${req.url}`);
      ws.send('hi');
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const port = (http.address() as { port: number }).port;
    const c = new RefClient(`ws://127.0.0.1:${port}/x`);
    const [msg] = await once(c, 'message');
    log.push(`client got ${String(msg)}`);
    const body = await new Promise<string>((resolve) => {
      request({ port, host: '127.0.0.1', path: '/' }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(b));
      }).end();
    });
    log.push(`http ${body}`);
    c.close();
    await once(c, 'close');
    await new Promise<void>((r) => wss.close(() => r()));
    http.closeAllConnections();
    await new Promise<void>((r) => http.close(() => r()));
    return log;
  },
  ['listening', 'connection /x', 'client got hi', 'http plain'],
);

compat(
  'noServer + handleUpgrade(req, socket, head, cb): cb gets (ws, req); address() throws',
  async (impl) => {
    const http = createServer();
    const wss = new impl.WebSocketServer({ noServer: true });
    const log: string[] = [];
    try {
      wss.address();
    } catch (e) {
      log.push((e as Error).message);
    }
    http.on('upgrade', (req, socket, head) => {
      wss.handleUpgrade(req, socket, head, (ws: { send(s: string): void; readyState: number }, r: IncomingMessage) => {
        log.push(`cb readyState=${ws.readyState} url=${r.url} same=${r === req}`);
        wss.emit('connection', ws, r);
      });
    });
    wss.on('connection', (ws: { send(s: string): void }) => ws.send('welcome'));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const port = (http.address() as { port: number }).port;
    const c = new RefClient(`ws://127.0.0.1:${port}/n`);
    const [msg] = await once(c, 'message');
    log.push(String(msg));
    c.close();
    await once(c, 'close');
    await new Promise<void>((r) => wss.close(() => r()));
    await new Promise<void>((r) => http.close(() => r()));
    return log;
  },
  ['The server is operating in "noServer" mode', 'cb readyState=1 url=/n same=true', 'welcome'],
);

compat(
  'clientTracking: wss.clients holds open connections (a Set), none after they close; off leaves it undefined',
  async (impl) => {
    const { wss, c, ws } = await connected(impl);
    const log: string[] = [];
    log.push(`${wss.clients instanceof Set} ${wss.clients.size} ${wss.clients.has(ws)}`);
    c.close();
    await once(ws, 'close');
    log.push(`after close ${wss.clients.size}`);
    await shut(wss);
    const off = new impl.WebSocketServer({ noServer: true, clientTracking: false });
    log.push(`off ${String(off.clients)}`);
    off.close();
    return log;
  },
  ['true 1 true', 'after close 0', 'off undefined'],
);

compat(
  "wss.close(cb): open connections stay open; 'close' once they are gone; a second close gets 'The server is not running'",
  async (impl) => {
    const { wss, c, ws } = await connected(impl);
    const log: string[] = [];
    const closed = new Promise<void>((r) =>
      wss.close((err?: Error) => {
        log.push(`close cb ${String(err ?? 'none')}`);
        r();
      }),
    );
    await new Promise((r) => setTimeout(r, 50));
    log.push(`still open ${ws.readyState}`);
    ws.send('still here');
    const [msg] = await once(c, 'message');
    log.push(String(msg));
    c.close();
    await closed;
    await new Promise<void>((r) => wss.close((err?: Error) => (log.push(`again ${err?.message}`), r())));
    return log;
  },
  ['still open 1', 'still here', 'close cb none', 'again The server is not running'],
);

compat(
  'noServer: wss.close() with no clients emits close; handleUpgrade afterwards answers 503',
  async (impl) => {
    const http = createServer();
    const wss = new impl.WebSocketServer({ noServer: true });
    http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, () => {}));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const log: string[] = [];
    await new Promise<void>((r) => wss.close(() => (log.push('closed'), r())));
    const port = (http.address() as { port: number }).port;
    log.push(await attempt(`ws://127.0.0.1:${port}`));
    await new Promise<void>((r) => http.close(() => r()));
    return log;
  },
  ['closed', 'refused 503 Service Unavailable x-why=undefined'],
);

compat(
  'server mode, clientTracking off: wss.close() emits close at once and leaves open connections open',
  async (impl) => {
    const http = createServer();
    const wss = new impl.WebSocketServer({ server: http, clientTracking: false });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const port = (http.address() as { port: number }).port;
    const opened = once(wss, 'connection');
    const c = new RefClient(`ws://127.0.0.1:${port}`);
    const [ws] = await opened;
    await once(c, 'open');
    await new Promise<void>((r) => wss.close(() => r()));
    await new Promise((r) => setTimeout(r, 50));
    const log = [`after close ${ws.readyState}`];
    ws.send('still');
    const [msg] = await once(c, 'message');
    log.push(String(msg));
    c.close();
    await once(ws, 'close');
    http.close();
    return log;
  },
  ['after close 1', 'still'],
);

compat(
  'port mode: a request that is not an upgrade gets 426',
  async (impl) => {
    const { wss, port } = await listen(impl);
    const status = await new Promise<number | undefined>((resolve) => {
      request({ port, host: '127.0.0.1', path: '/' }, (res) => {
        res.resume();
        resolve(res.statusCode);
      }).end();
    });
    await shut(wss);
    return status;
  },
  426,
);

compat(
  'constructor: exactly one of port, server, noServer, or a TypeError',
  async (impl) => {
    const out: string[] = [];
    for (const o of [undefined, {}, { port: 0, noServer: true }, { server: createServer(), noServer: true }]) {
      try {
        new impl.WebSocketServer(o);
        out.push('no throw');
      } catch (e) {
        out.push(`${(e as Error).constructor.name}: ${(e as Error).message}`);
      }
    }
    return out;
  },
  Array(4).fill('TypeError: One and only one of the "port", "server", or "noServer" options must be specified'),
);



/** A request with these headers; resolves with status, body and the Sec-WebSocket-Version header of the answer. */
function refusedWith(port: number, method: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ agent: false, port, host: '127.0.0.1', path: '/', method, headers: { Connection: 'Upgrade', ...headers } });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(`${res.statusCode} ${body} version=${String(res.headers['sec-websocket-version'])}`));
    });
    req.on('upgrade', (_res, socket) => {
      socket.destroy();
      resolve('upgraded');
    });
    req.on('error', reject);
    req.end();
  });
}

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const INVALID_UPGRADES: Array<[string, Record<string, string>]> = [
  ['POST', { Upgrade: 'websocket' }],
  ['GET', { Upgrade: 'foo' }],
  ['GET', { Upgrade: 'websocket' }],
  ['GET', { Upgrade: 'websocket', 'Sec-WebSocket-Key': 'P5l8BJcZwRc=' }],
  ['GET', { Upgrade: 'websocket', 'Sec-WebSocket-Key': KEY }],
  ['GET', { Upgrade: 'websocket', 'Sec-WebSocket-Key': KEY, 'Sec-WebSocket-Version': '12' }],
  ['GET', { Upgrade: 'websocket', 'Sec-WebSocket-Key': KEY, 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Protocol': 'foo;bar' }],
  ['GET', { Upgrade: 'websocket', 'Sec-WebSocket-Key': KEY, 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Protocol': 'a, b, a' }],
];
const WS_ANSWERS = [
  '405 Invalid HTTP method version=undefined',
  '400 Invalid Upgrade header version=undefined',
  '400 Missing or invalid Sec-WebSocket-Key header version=undefined',
  '400 Missing or invalid Sec-WebSocket-Key header version=undefined',
  '400 Missing or invalid Sec-WebSocket-Version header version=13, 8',
  '400 Missing or invalid Sec-WebSocket-Version header version=13, 8',
  '400 Invalid Sec-WebSocket-Protocol header version=undefined',
  '400 Invalid Sec-WebSocket-Protocol header version=undefined',
];

for (const mode of ['port', 'noServer'] as const) {
  test(`${mode} mode: an invalid upgrade gets ws's status and body, checked in ws's order (method, Upgrade, key, version, subprotocols)`, async () => {
    const { WS, DOOR } = await import('./helpers.js');
    const results: string[][] = [];
    for (const impl of [WS, DOOR]) {
      const got: string[] = [];
      if (mode === 'port') {
        const { wss, port } = await listen(impl);
        for (const [method, headers] of INVALID_UPGRADES) got.push(await refusedWith(port, method, headers));
        await shut(wss);
      } else {
        const http = createServer();
        const wss = new impl.WebSocketServer({ noServer: true });
        http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, () => {}));
        await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
        const port = (http.address() as { port: number }).port;
        for (const [method, headers] of INVALID_UPGRADES) got.push(await refusedWith(port, method, headers));
        await new Promise<void>((r) => wss.close(() => r()));
        await new Promise<void>((r) => http.close(() => r()));
      }
      results.push(got);
    }
    assert.equal(results[0], WS_ANSWERS, 'ws itself');
    assert.equal(results[1], WS_ANSWERS, 'the door');
  });
}

compat(
  "'wsClientError' (err, socket, req): an invalid upgrade goes to the listener, which answers it itself",
  async (impl) => {
    const { wss, port } = await listen(impl);
    const log: string[] = [];
    wss.on('wsClientError', (err: Error, socket: { end(s: string): void }, req: IncomingMessage) => {
      log.push(`${err instanceof Error} ${err.message} ${req.method} ${req.url} ${String(req.headers.upgrade)}`);
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno');
    });
    wss.on('connection', () => log.push('connection'));
    log.push(await refusedWith(port, 'POST', { Upgrade: 'websocket' }));
    log.push(await refusedWith(port, 'GET', { Upgrade: 'websocket', 'Sec-WebSocket-Key': KEY, 'Sec-WebSocket-Version': '7' }));
    await shut(wss);
    return log;
  },
  [
    'true Invalid HTTP method POST / websocket',
    '400 no version=undefined',
    'true Missing or invalid Sec-WebSocket-Version header GET / websocket',
    '400 no version=undefined',
  ],
);
compat(
  'Sec-WebSocket-Version 8 is taken as 13 is: verifyClient decides (its origin from Sec-WebSocket-Origin), and the upgrade completes',
  async (impl) => {
    const log: string[] = [];
    const { wss, port } = await listen(impl, {
      verifyClient: (info: { origin?: string; req: IncomingMessage }) => {
        log.push(`verifyClient origin=${info.origin}`);
        return info.req.headers['x-ok'] === 'yes';
      },
    });
    const v8 = { Upgrade: 'websocket', 'Sec-WebSocket-Key': KEY, 'Sec-WebSocket-Version': '8', 'Sec-WebSocket-Origin': 'http://draft.example' };
    log.push(await refusedWith(port, 'GET', v8));
    log.push(await refusedWith(port, 'GET', { ...v8, 'X-Ok': 'yes' }));
    await shut(wss);
    return log;
  },
  ['verifyClient origin=http://draft.example', '401 Unauthorized version=undefined', 'verifyClient origin=http://draft.example', 'upgraded'],
);

test("the door: a socket a 'wsClientError' listener leaves open is destroyed after the handshake timeout (ws would keep it)", async () => {
  const { DOOR } = await import('./helpers.js');
  const { wss, port } = await listen(DOOR, { limits: { handshakeTimeoutMs: 200 } });
  wss.on('wsClientError', () => {});
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write('POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  // Bound: the 200 ms timeout plus generous slack for a loaded machine.
  const closed = await Promise.race([once(socket, 'close').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
  socket.destroy();
  await shut(wss);
  assert.ok(closed, 'the refused socket is still open');
});

test.run();
