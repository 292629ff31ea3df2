import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { IncomingMessage, createServer } from 'node:http';
import type { Duplex } from 'node:stream';
import { compat, listen, shut, once, show, errorShape, connected, pair, closeBoth, WS } from './helpers.js';

// The door's client (`new WebSocket(url, protocols, options)`) against a ws server, beside
// ws's own client against the same server; then pause/resume and createWebSocketStream.

compat(
  "client: 'open', 'message' (Buffer, isBinary) for text and binary, 'ping' answered, 'close' (code, reason Buffer)",
  async (impl) => {
    const { wss, url } = await listen(WS);
    wss.on('connection', (ws: { send(d: unknown): void; ping(d: string): void; on(e: string, f: (...a: unknown[]) => void): void; close(c: number, r: string): void }) => {
      ws.send('text');
      ws.send(Buffer.from('bin'));
      ws.ping('hb');
      ws.on('pong', (d) => ws.send(`pong ${String(d)}`));
      ws.on('message', (d, isBinary) => {
        ws.send(`echo ${String(d)} ${String(isBinary)}`);
        ws.close(4000, 'done');
      });
    });
    const c = new impl.WebSocket(`${url}/path`, ['p1'], { headers: { 'x-a': 'b' } });
    const log: string[] = [`readyState ${c.readyState} url ${String(c.url).replace(/:\d+\//, ':PORT/')}`];
    c.on('open', () => log.push(`open ${c.readyState} protocol=${JSON.stringify(c.protocol)}`));
    c.on('ping', (d: Buffer) => log.push(`ping ${show(d)}`));
    c.on('message', (d: unknown, isBinary: boolean) => {
      log.push(`message ${show(d)} ${isBinary}`);
      if (String(d) === 'pong hb') c.send('hello', { binary: false });
    });
    const [code, reason] = await once(c, 'close');
    log.push(`close ${code} ${show(reason)} ${c.readyState}`);
    await shut(wss);
    return log;
  },
  [
    'readyState 0 url ws://127.0.0.1:PORT/path',
    'open 1 protocol="p1"',
    'message Buffer(text) false',
    'message Buffer(bin) true',
    'ping Buffer(hb)',
    'message Buffer(pong hb) false',
    'message Buffer(echo hello false) false',
    'close 4000 Buffer(done) 3',
  ],
);

compat(
  "client: a refused handshake emits 'error' with ws's message, then 'close' 1006",
  async (impl) => {
    const { wss, url } = await listen(WS, { verifyClient: () => false });
    const c = new impl.WebSocket(url);
    const log: string[] = [];
    c.on('error', (e: Error) => log.push(`error ${e.message}`));
    const [code] = await once(c, 'close');
    log.push(`close ${code}`);
    await shut(wss);
    return log;
  },
  ['error Unexpected server response: 401', 'close 1006'],
);

compat(
  'client: send while CONNECTING throws; close() while CONNECTING fails the connection',
  async (impl) => {
    const { wss, url } = await listen(WS);
    const c = new impl.WebSocket(url);
    const log: string[] = [];
    try {
      c.send('early');
    } catch (e) {
      log.push(errorShape(e));
    }
    c.on('error', (e: Error) => log.push(`error ${e.message}`));
    c.close();
    const [code] = await once(c, 'close');
    log.push(`close ${code}`);
    await shut(wss);
    return log;
  },
  ['Error::WebSocket is not open: readyState 0 (CONNECTING)', 'error WebSocket was closed before the connection was established', 'close 1006'],
);

compat(
  "pause(): no 'message' until resume(); isPaused says so",
  async (impl) => {
    const { wss, c, ws } = await connected(impl);
    const log: string[] = [];
    ws.pause();
    log.push(`paused ${ws.isPaused}`);
    ws.on('message', (d: Buffer) => log.push(`message ${String(d)}`));
    c.send('one');
    await new Promise((r) => setTimeout(r, 100));
    log.push('resuming');
    const got = once(ws, 'message');
    ws.resume();
    await got;
    log.push(`paused ${ws.isPaused}`);
    await shut(wss);
    return log;
  },
  ['paused true', 'resuming', 'message one', 'paused false'],
);

compat(
  'createWebSocketStream: messages read as chunks, chunks written as messages, end() closes',
  async (impl) => {
    const { wss, c, ws } = await connected(impl);
    const duplex = impl.createWebSocketStream(ws, { encoding: 'utf8' });
    const log: string[] = [];
    duplex.on('data', (chunk: string) => {
      log.push(`read ${chunk}`);
      duplex.write(chunk.toUpperCase());
      duplex.end();
    });
    c.on('message', (d: Buffer) => log.push(`client got ${String(d)}`));
    c.send('abc');
    const [code] = await once(c, 'close');
    log.push(`client close ${code}`);
    await shut(wss);
    return log;
  },
  ['read abc', 'client got ABC', 'client close 1005'],
);

compat(
  'client: a URL that does not parse, or names another scheme, throws a SyntaxError',
  async (impl) =>
    ['not a url', 'ftp://example.com/'].map((url) => {
      try {
        new impl.WebSocket(url);
        return 'no throw';
      } catch (e) {
        return (e as Error).constructor.name;
      }
    }),
  ['SyntaxError', 'SyntaxError'],
);

test('readyState constants on the class and on instances, as ws has them', async () => {
  const { DOOR } = await import('./helpers.js');
  for (const impl of [WS, DOOR]) {
    const C = impl.WebSocket;
    const values = [C.CONNECTING, C.OPEN, C.CLOSING, C.CLOSED, C.prototype.CONNECTING, C.prototype.OPEN, C.prototype.CLOSING, C.prototype.CLOSED];
    if (values.join() !== '0,1,2,3,0,1,2,3') throw new Error(`${impl.name}: ${values.join()}`);
  }
});

compat(
  "client: send(data, { fin: false }) sends fragments; the server gets one message",
  async (impl) => {
    const { wss, url } = await listen(WS);
    const got = new Promise<string>((resolve) =>
      wss.on('connection', (ws: { on(e: string, f: (d: Buffer, b: boolean) => void): void }) => {
        const seen: string[] = [];
        ws.on('message', (d, isBinary) => {
          seen.push(`${String(d)} ${isBinary}`);
          if (seen.length === 2) resolve(seen.join(' | '));
        });
      }),
    );
    const c = new impl.WebSocket(url);
    await once(c, 'open');
    c.send('fra', { fin: false });
    c.send('gm', { fin: false });
    c.send('ent', { fin: true });
    c.send(Buffer.from('bi'), { fin: false });
    c.send(Buffer.from('nary'));
    const out = await got;
    await closeBoth(c, wss);
    return out;
  },
  'fragment false | binary true',
);

compat(
  "client: autoPong: false leaves the server's ping unanswered; 'ping' still fires and pong() answers it",
  async (impl) => {
    const { wss, url } = await listen(WS);
    const log: string[] = [];
    const done = new Promise<void>((resolve) =>
      wss.on('connection', (ws: { ping(d: string): void; on(e: string, f: (d: Buffer) => void): void }) => {
        ws.on('pong', (d) => {
          log.push(`server pong ${String(d)}`);
          if (String(d) === 'by hand') resolve();
        });
        ws.ping('one');
      }),
    );
    const c = new impl.WebSocket(url, { autoPong: false });
    c.on('ping', (d: Buffer) => {
      log.push(`client ping ${String(d)}`);
      setTimeout(() => c.pong('by hand'), 50);
    });
    await done;
    await closeBoth(c, wss);
    return log;
  },
  ['client ping one', 'server pong by hand'],
);

compat(
  'send(blob): a Blob is sent as binary, in order with the sends around it, from the server and the client',
  async (impl) => {
    const { wss, c, ws } = await pair(impl, impl);
    const log: string[] = [];
    const received = (side: string, peer: { on(e: string, f: (d: Buffer, b: boolean) => void): void }, n: number): Promise<void> =>
      new Promise((resolve) => {
        let count = 0;
        peer.on('message', (d, isBinary) => {
          log.push(`${side} got ${String(d)} ${isBinary}`);
          if (++count === n) resolve();
        });
      });
    const clientGot = received('client', c, 3);
    const cbs: string[] = [];
    ws.send('before');
    ws.send(new Blob(['blob-from-server']), (err?: Error) => cbs.push(`server cb ${String(err ?? 'none')}`));
    ws.send('after');
    log.push(`server bufferedAmount while reading ${ws.bufferedAmount >= 16}`);
    await clientGot;
    const serverGot = received('server', ws, 2);
    c.send(new Blob(['blob-from-client']), { binary: false });
    c.send('after');
    await serverGot;
    log.push(...cbs);
    await closeBoth(c, wss);
    return log;
  },
  [
    'server bufferedAmount while reading true',
    'client got before false',
    'client got blob-from-server true',
    'client got after false',
    'server got blob-from-client false',
    'server got after false',
    'server cb none',
  ],
);

test('the readyState constants and the attributes are described as ws describes them', async () => {
  const { DOOR } = await import('./helpers.js');
  const describe = (C: { prototype: object }): string[] => {
    const out: string[] = [];
    for (const name of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) {
      for (const target of [C, C.prototype]) out.push(`${name} ${JSON.stringify(Object.getOwnPropertyDescriptor(target, name))}`);
    }
    for (const name of ['binaryType', 'bufferedAmount', 'extensions', 'isPaused', 'protocol', 'readyState', 'url', 'onopen', 'onmessage', 'onclose', 'onerror']) {
      const d = Object.getOwnPropertyDescriptor(C.prototype, name);
      out.push(`${name} enumerable=${d?.enumerable} configurable=${d?.configurable} get=${typeof d?.get} set=${typeof d?.set}`);
    }
    return out;
  };
  assert.equal(describe(DOOR.WebSocket), describe(WS.WebSocket));
});

compat(
  "client: 'upgrade' (res) with the 101 as an IncomingMessage, before 'open'",
  async (impl) => {
    const { wss, url } = await listen(WS);
    wss.on('headers', (headers: string[]) => headers.push('X-Extra: yes'));
    const c = new impl.WebSocket(url);
    const log: string[] = [];
    c.on('upgrade', (res: IncomingMessage) => log.push(`upgrade ${res instanceof IncomingMessage} ${res.statusCode} ${res.headers.upgrade} ${res.headers['x-extra']} ${c.readyState}`));
    c.on('open', () => log.push('open'));
    await once(c, 'open');
    await closeBoth(c, wss);
    return log;
  },
  ['upgrade true 101 websocket yes 0', 'open'],
);

compat(
  "client: 'unexpected-response' (req, res) takes a refused handshake: no 'error'; the body is readable; terminate() then gives ws's error and 'close' 1006",
  async (impl) => {
    const { wss, url } = await listen(WS, {
      verifyClient: (_info: unknown, cb: (ok: boolean, code: number, message: string, headers: Record<string, string>) => void) => cb(false, 403, 'no entry', { 'X-Why': 'test' }),
    });
    const c = new impl.WebSocket(url);
    const log: string[] = [];
    c.on('error', (e: Error) => log.push(`error ${e.message}`));
    c.on('close', (code: number) => log.push(`close ${code}`));
    const [req, res] = (await once(c, 'unexpected-response')) as [{ method: string; path: string }, IncomingMessage];
    log.push(`unexpected-response ${req.method} ${req.path} ${res instanceof IncomingMessage} ${res.statusCode} ${res.headers['x-why']}`);
    let body = '';
    res.on('data', (d: Buffer) => (body += d.toString()));
    await once(res, 'end');
    log.push(`body ${body}`);
    await new Promise((r) => setTimeout(r, 50));
    log.push(`readyState ${c.readyState}`);
    const closed = once(c, 'close');
    c.terminate();
    await closed;
    await shut(wss);
    return log;
  },
  [
    'unexpected-response GET / true 403 test',
    'body no entry',
    'readyState 0',
    'error WebSocket was closed before the connection was established',
    'close 1006',
  ],
);

compat(
  "client: the constructor refuses a URL, subprotocols or a protocolVersion with ws's errors and messages",
  async (impl) => {
    const out: string[] = [];
    const attempt = (...args: unknown[]): void => {
      try {
        const c = new impl.WebSocket(...args);
        c.on('error', () => {});
        c.terminate();
        out.push('no throw');
      } catch (e) {
        out.push(errorShape(e));
      }
    };
    for (const url of ['foo', 'bad-scheme://example.com', 'wss://example.com#foo', 'ws+unix:']) attempt(url);
    for (const protocols of [null, '', 'a,b', ['a', 'a'], ['a', 'b']]) attempt('ws://127.0.0.1:9', protocols);
    attempt('ws://127.0.0.1:9', { protocolVersion: 1000 });
    return out;
  },
  [
    'SyntaxError::Invalid URL: foo',
    'SyntaxError::The URL\'s protocol must be one of "ws:", "wss:", "http:", "https:", or "ws+unix:"',
    'SyntaxError::The URL contains a fragment identifier',
    "SyntaxError::The URL's pathname is empty",
    ...Array(4).fill('SyntaxError::An invalid or duplicated subprotocol was specified'),
    'no throw',
    'RangeError::Unsupported protocol version: 1000 (supported versions: 8, 13)',
  ],
);

compat(
  "the server's WebSocket option: connections are instances of the given subclass",
  async (impl) => {
    class Custom extends impl.WebSocket {
      get foo(): string {
        return 'foo';
      }
    }
    const { wss, c, ws } = await connected(impl, { WebSocket: Custom });
    const out = [ws instanceof Custom, ws.foo];
    await closeBoth(c, wss);
    return out;
  },
  [true, 'foo'],
);

compat(
  "client: a 101 ws refuses (Upgrade, Sec-WebSocket-Accept, subprotocols, extensions) fails with ws's message, then 'close' 1006",
  async (impl) => {
    const { createHash } = await import('node:crypto');
    const http = createServer();
    let answer: (key: string) => string = () => '';
    const sockets: Duplex[] = [];
    http.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
      sockets.push(socket);
      const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.on('error', () => {});
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n${answer(accept)}\r\n`);
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const url = `ws://127.0.0.1:${(http.address() as { port: number }).port}`;
    const cases: Array<[string[], (accept: string) => string]> = [
      [[], () => 'Upgrade: foo\r\n'],
      [[], () => 'Upgrade: websocket\r\nSec-WebSocket-Accept: CxYS6+NgJSBG74mdgLvGscRvpns=\r\n'],
      [['a'], (accept) => `Upgrade: websocket\r\nSec-WebSocket-Accept: ${accept}\r\n`],
      [[], (accept) => `Upgrade: websocket\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: x\r\n`],
      [['a'], (accept) => `Upgrade: websocket\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: b\r\n`],
      [[], (accept) => `Upgrade: websocket\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Extensions: foo\r\n`],
    ];
    const out: string[] = [];
    for (const [protocols, respond] of cases) {
      answer = respond;
      const c = new impl.WebSocket(url, protocols, { perMessageDeflate: false });
      c.on('open', () => out.push('open'));
      c.on('error', (e: Error) => out.push(`error ${e.message}`));
      const [code] = await once(c, 'close');
      out.push(`close ${code}`);
    }
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((r) => http.close(() => r()));
    return out;
  },
  [
    'error Invalid Upgrade header',
    'close 1006',
    'error Invalid Sec-WebSocket-Accept header',
    'close 1006',
    'error Server sent no subprotocol',
    'close 1006',
    'error Server sent a subprotocol but none was requested',
    'close 1006',
    'error Server sent an invalid subprotocol',
    'close 1006',
    'error Server sent a Sec-WebSocket-Extensions header but no extension was requested',
    'close 1006',
  ],
);

test.run();
