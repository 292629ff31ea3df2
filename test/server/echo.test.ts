import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { WebSocket as WsClient } from 'ws';
import { startServer, echoHandlers } from '../helpers/server.js';
import { until } from '../helpers/net.js';

// Integration over loopback with the `ws` package as an independent client.

async function openWs(url: string, protocols?: string[]): Promise<WsClient> {
  const ws = new WsClient(url, protocols, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  await once(ws, 'open');
  return ws;
}

function nextMessage(ws: WsClient): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data: Buffer, isBinary: boolean) => resolve({ data, isBinary })));
}

test('echoes text and binary messages of every length class', async () => {
  const { server, url } = await startServer({ handlers: echoHandlers() });
  const ws = await openWs(url);
  for (const size of [0, 1, 125, 126, 65535, 65536, 100_000]) {
    const bin = Buffer.alloc(size, size & 0xff);
    let p = nextMessage(ws);
    ws.send(bin);
    let m = await p;
    assert.ok(m.isBinary, `binary ${size}`);
    assert.ok(m.data.equals(bin), `binary payload ${size}`);
    const text = 'é'.repeat(Math.floor(size / 2));
    p = nextMessage(ws);
    ws.send(text);
    m = await p;
    assert.not.ok(m.isBinary, `text ${size}`);
    assert.is(m.data.toString('utf8'), text);
  }
  ws.close();
  await once(ws, 'close');
  await server.close();
});

test('echoes a 16 MiB message', async () => {
  const { server, url } = await startServer({ handlers: echoHandlers() });
  const ws = await openWs(url);
  const big = Buffer.alloc(16 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
  const p = nextMessage(ws);
  ws.send(big);
  const m = await p;
  assert.is(m.data.length, big.length);
  assert.ok(m.data.equals(big));
  ws.close();
  await server.close();
});

test('assembles fragmented messages, with a ping between fragments', async () => {
  const { server, url } = await startServer({ handlers: echoHandlers() });
  const ws = await openWs(url);
  const p = nextMessage(ws);
  const pong = once(ws, 'pong');
  ws.send('Hello, ', { fin: false });
  ws.ping('in the middle');
  ws.send('fragmented ', { fin: false });
  ws.send('world', { fin: true });
  const [pongData] = (await pong) as [Buffer];
  assert.is(pongData.toString(), 'in the middle');
  const m = await p;
  assert.is(m.data.toString(), 'Hello, fragmented world');
  ws.close();
  await server.close();
});

test('answers a ping with a pong carrying the same payload', async () => {
  let pings = 0;
  const { server, url } = await startServer({ handlers: { ...echoHandlers(), ping: () => pings++ } });
  const ws = await openWs(url);
  ws.ping(Buffer.from([1, 2, 3]));
  const [data] = (await once(ws, 'pong')) as [Buffer];
  assert.equal([...data], [1, 2, 3]);
  assert.is(pings, 1);
  ws.close();
  await server.close();
});

test('client close: the code and reason reach the close handler and are echoed', async () => {
  let seen: [number, string] | undefined;
  const { server, url } = await startServer({ handlers: { close: (_c, code, reason) => (seen = [code, reason]) } });
  const ws = await openWs(url);
  ws.close(4001, 'bye now');
  const [code] = (await once(ws, 'close')) as [number, Buffer];
  assert.is(code, 4001);
  await until(() => seen !== undefined, 2000, 'close handler');
  assert.equal(seen, [4001, 'bye now']);
  assert.is(server.openCount, 0);
  await server.close();
});

test('server close: the client sees the code and reason, the handshake completes', async () => {
  let closed = -1;
  const { server, url } = await startServer({
    handlers: {
      open: (conn) => conn.close(4000, 'server says bye'),
      close: (_c, code) => (closed = code),
    },
  });
  const ws = new WsClient(url);
  const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
  assert.is(code, 4000);
  assert.is(reason.toString(), 'server says bye');
  await until(() => closed !== -1, 2000, 'server close handler');
  assert.is(closed, 4000);
  await server.close();
});

test('frames sent in one tick reach the socket as one write', async () => {
  let writes = 0;
  const { server, url } = await startServer({
    handlers: {
      open(conn) {
        // Count what reaches the kernel, whichever transport carries the connection.
        const target = conn.io as Record<string, Function>;
        for (const name of conn.transport.kind === 'socket' ? ['_writev', '_write'] : ['writev', 'writeBuffer']) {
          const original = target[name]!.bind(target);
          target[name] = (...a: unknown[]) => (writes++, original(...a));
        }
      },
      message(conn) {
        // The 101 went out in the tick of open (corked with whatever open sent): not counted.
        writes = 0;
        for (let i = 0; i < 50; i++) conn.send(`reply ${i}`);
      },
    },
  });
  const ws = await openWs(url);
  let got = 0;
  ws.on('message', () => got++);
  ws.send('go');
  await until(() => got === 50, 3000, '50 replies');
  assert.is(writes, 1);
  ws.close();
  await server.close();
});

test('the 101 and what the open handler sends reach the socket as one write', async () => {
  let writes = -1;
  const written: string[] = [];
  // The bytes of one write, whichever transport and call: writev(req, chunks) / writeBuffer(req, buf)
  // on a handle, _writev([{ chunk }], cb) / _write(chunk, enc, cb) on a net.Socket.
  const bytesOf = (name: string, a: unknown[]): string => {
    const parts = name === 'writev' ? (a[1] as Buffer[]) : name === '_writev' ? (a[0] as Array<{ chunk: Buffer }>).map((c) => c.chunk) : [(name === 'writeBuffer' ? a[1] : a[0]) as Buffer];
    return Buffer.concat(parts.map((b) => Buffer.from(b))).toString('latin1');
  };
  const { server, url } = await startServer({
    handlers: {
      open(conn) {
        writes = 0;
        const target = conn.io as Record<string, Function>;
        for (const name of conn.transport.kind === 'socket' ? ['_writev', '_write'] : ['writev', 'writeBuffer']) {
          const original = target[name]!.bind(target);
          target[name] = (...a: unknown[]) => (writes++, written.push(bytesOf(name, a)), original(...a));
        }
        conn.send('welcome');
        conn.send('and more');
        assert.is(writes, 0, 'held while the handler runs');
      },
    },
  });
  const ws = new WsClient(url);
  const got: string[] = [];
  ws.on('message', (d: Buffer) => got.push(d.toString()));
  await until(() => got.length === 2, 3000, 'the two messages');
  assert.equal(got, ['welcome', 'and more']);
  assert.is(writes, 1, 'one write for the 101 and both frames');
  assert.ok(written[0]!.startsWith('HTTP/1.1 101 '), 'the 101 went out in that write');
  assert.ok(written[0]!.endsWith('welcome\x81\x08and more'), 'followed by the two frames');
  ws.close();
  await server.close();
});

test('send reports written, and dropped once the connection is closed', async () => {
  let results: string[] = [];
  const { server, url } = await startServer({
    handlers: {
      message(conn) {
        results.push(conn.send('one'));
        conn.close();
        results.push(conn.send('two'));
      },
    },
  });
  const ws = await openWs(url);
  ws.send('x');
  await once(ws, 'close');
  assert.equal(results, ['written', 'dropped']);
  await server.close();
});

test.run();
