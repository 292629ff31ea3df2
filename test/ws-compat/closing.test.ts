import { test } from 'uvu';
import { compat, connected, listen, shut, once, errorShape, rawClient, frame, pair, WS } from './helpers.js';

// Closing and failing connections as ws 8 documents them: close codes and reasons both ways,
// close()'s argument checks, terminate(), and the errors a peer's protocol violation raises.

compat(
  "the client's close(code, reason) reaches 'close' as (code, reason Buffer), and both are echoed back; readyState is CLOSED by then",
  async (impl) => {
    const { wss, c, ws } = await connected(impl);
    const closed = once(ws, 'close');
    const echoed = once(c, 'close');
    c.close(4001, 'bye now');
    const [code, reason] = await closed;
    const [echoCode, echoReason] = await echoed;
    const out = [code, Buffer.isBuffer(reason), String(reason), ws.readyState, `echoed ${echoCode} ${String(echoReason)}`];
    await shut(wss);
    return out;
  },
  [4001, true, 'bye now', 3, 'echoed 4001 bye now'],
);

compat(
  "close() without a code: the peer sees 1005; close(code, reason) sends them; readyState is CLOSING meanwhile",
  async (impl) => {
    const out: unknown[] = [];
    for (const args of [[], [1001, 'going'], [4999, Buffer.from('buf reason')]]) {
      const { wss, c, ws } = await connected(impl);
      const clientClosed = once(c, 'close');
      const serverClosed = once(ws, 'close');
      ws.close(...args);
      out.push(ws.readyState);
      const [code, reason] = await clientClosed;
      const [serverCode] = await serverClosed;
      out.push(`${code} ${String(reason)} server=${serverCode}`);
      await shut(wss);
    }
    return out;
  },
  [2, '1005  server=1005', 2, '1001 going server=1001', 2, '4999 buf reason server=4999'],
);

compat(
  'close() checks its arguments as ws does: a bad code is a TypeError, a long reason a RangeError, the socket stays open until a valid call',
  async (impl) => {
    const { wss, ws } = await connected(impl);
    const out: string[] = [];
    for (const args of [[999], [1005], [1006], [1004], [2000], [5000], ['1000'], [1000, 'x'.repeat(124)], [1000, 42]]) {
      try {
        ws.close(...args);
        out.push(`no throw ${String(args[0])}`);
      } catch (e) {
        out.push(errorShape(e));
      }
    }
    out.push(`readyState ${ws.readyState}`);
    await shut(wss);
    return out;
  },
  [
    ...Array(7).fill('TypeError::First argument must be a valid error code number'),
    'RangeError::The message must not be greater than 123 bytes',
    // A reason without a length is no reason: ws closes with the code alone.
    'no throw 1000',
    'readyState 2',
  ],
);

compat(
  "terminate(): both sides see 1006 and an empty reason; readyState is CLOSING until 'close'",
  async (impl) => {
    const { wss, c, ws } = await connected(impl);
    const clientClosed = once(c, 'close');
    const serverClosed = once(ws, 'close');
    ws.terminate();
    const during = ws.readyState;
    const [code, reason] = await clientClosed;
    const [serverCode, serverReason] = await serverClosed;
    await shut(wss);
    return [during, code, String(reason), serverCode, serverReason.length, ws.readyState];
  },
  [2, 1006, '', 1006, 0, 3],
);

compat(
  'send() while the server closes: the queued callback gets an error once the connection is gone, or none if the bytes left',
  async (impl) => {
    const { wss, c, ws } = await connected(impl);
    const got: string[] = [];
    ws.send('before', (err?: Error) => got.push(`cb ${err === undefined || err === null ? 'ok' : 'error'}`));
    ws.close(1000);
    const [msg] = await once(c, 'message');
    got.push(`client got ${String(msg)}`);
    await once(ws, 'close');
    await shut(wss);
    return got;
  },
  ['cb ok', 'client got before'],
);

/** A protocol violation sent by a raw client: the server's 'error' (class, code, message), its close code on the wire, then 'close'. */
function violation(name: string, bytes: Buffer, expected: unknown[], options: Record<string, unknown> = {}): void {
  compat(`a peer's ${name}: 'error' as ws shapes it, the close code on the wire, then 'close' with 1006`, async (impl) => {
    const { wss, port } = await listen(impl, options);
    const log: unknown[] = [];
    const closed = new Promise<void>((resolve) => {
      wss.on('connection', (ws: { on(e: string, f: (...a: unknown[]) => void): void }) => {
        ws.on('error', (err) => log.push(errorShape(err)));
        ws.on('close', (code) => {
          log.push(`close ${String(code)}`);
          resolve();
        });
      });
    });
    const { closeCode } = await rawClient(port, bytes);
    await closed;
    log.push(`wire ${closeCode}`);
    await shut(wss);
    return log;
  }, expected);
}

violation('invalid UTF-8 in a text message', frame(1, Buffer.from([0xff, 0xfe])), ['Error:WS_ERR_INVALID_UTF8:Invalid WebSocket frame: invalid UTF-8 sequence', 'close 1006', 'wire 1007']);
violation('unmasked frame', frame(1, Buffer.from('x'), { masked: false }), ['RangeError:WS_ERR_EXPECTED_MASK:Invalid WebSocket frame: MASK must be set', 'close 1006', 'wire 1002']);
violation('message over maxPayload', frame(2, Buffer.alloc(20)), ['RangeError:WS_ERR_UNSUPPORTED_MESSAGE_LENGTH:Max payload size exceeded', 'close 1006', 'wire 1009'], { maxPayload: 10 });
violation('reserved opcode', frame(3, Buffer.alloc(0)), ['RangeError:WS_ERR_INVALID_OPCODE:Invalid WebSocket frame: invalid opcode 3', 'close 1006', 'wire 1002']);
violation('fragmented ping', frame(9, Buffer.alloc(0), { fin: false }), ['RangeError:WS_ERR_EXPECTED_FIN:Invalid WebSocket frame: FIN must be set', 'close 1006', 'wire 1002']);
violation('continuation with no message', frame(0, Buffer.from('x')), ['RangeError:WS_ERR_INVALID_OPCODE:Invalid WebSocket frame: invalid opcode 0', 'close 1006', 'wire 1002']);
violation('close code 1005 on the wire', frame(8, Buffer.from([0x03, 0xed])), ['RangeError:WS_ERR_INVALID_CLOSE_CODE:Invalid WebSocket frame: invalid status code 1005', 'close 1006', 'wire 1002']);
violation('RSV1 without an extension', frame(1, Buffer.from('x'), { rsv: 0x40 }), ['RangeError:WS_ERR_UNEXPECTED_RSV_1:Invalid WebSocket frame: RSV1 must be clear', 'close 1006', 'wire 1002']);
violation('RSV2 bit (reported as RSV1 before)', frame(1, Buffer.from('x'), { rsv: 0x20 }), ['RangeError:WS_ERR_UNEXPECTED_RSV_2_3:Invalid WebSocket frame: RSV2 and RSV3 must be clear', 'close 1006', 'wire 1002']);
violation('RSV3 bit on a ping', frame(9, Buffer.alloc(0), { rsv: 0x10 }), ['RangeError:WS_ERR_UNEXPECTED_RSV_2_3:Invalid WebSocket frame: RSV2 and RSV3 must be clear', 'close 1006', 'wire 1002']);

compat(
  "the client closes with any code ws's isValidStatusCode allows (1001, 1011, 1014...), not only 1000 and 3000-4999",
  async (impl) => {
    const out: string[] = [];
    for (const code of [1001, 1008, 1011, 1014, 3000]) {
      const { wss, c, ws } = await pair(WS, impl);
      const serverClosed = once(ws, 'close');
      const clientClosed = once(c, 'close');
      c.close(code, 'why');
      const [got, reason] = await serverClosed;
      const [echo] = await clientClosed;
      out.push(`${got} ${String(reason)} echo ${echo}`);
      await shut(wss);
    }
    const { wss, url } = await listen(WS);
    const c = new impl.WebSocket(url);
    await once(c, 'open');
    for (const code of [1004, 1005, 1006, 1015, 2999]) {
      try {
        c.close(code);
        out.push(`no throw ${code}`);
      } catch (e) {
        out.push(`${code} ${errorShape(e)}`);
      }
    }
    c.terminate();
    await shut(wss);
    return out;
  },
  [
    '1001 why echo 1001',
    '1008 why echo 1008',
    '1011 why echo 1011',
    '1014 why echo 1014',
    '3000 why echo 3000',
    ...[1004, 1005, 1006, 1015, 2999].map((c) => `${c} TypeError::First argument must be a valid error code number`),
  ],
);

compat(
  'bufferedAmount counts what was passed to send, ping and pong after close(), on both sides',
  async (impl) => {
    const { wss, c, ws } = await pair(impl, impl);
    const out: number[] = [];
    for (const side of [ws, c]) {
      side.close();
      side.send('hello');
      side.send(Buffer.alloc(3));
      side.ping('ab');
      side.pong();
      side.send(7);
    }
    // The close frames have gone to the kernel by then (murmur writes them at the end of the tick).
    await new Promise((r) => setImmediate(r));
    out.push(ws.bufferedAmount, c.bufferedAmount);
    await once(c, 'close');
    out.push(c.bufferedAmount);
    await shut(wss);
    return out;
  },
  [11, 11, 11],
);

test('the door: a protocol error on a socket with no error listener does not throw (ws would crash the process)', async () => {
  const { DOOR } = await import('./helpers.js');
  const { wss, port } = await listen(DOOR);
  const closed = new Promise<number>((resolve) => wss.on('connection', (ws: { on(e: string, f: (code: number) => void): void }) => ws.on('close', resolve)));
  const { closeCode } = await rawClient(port, frame(1, Buffer.from([0xff])));
  const code = await closed;
  await shut(wss);
  if (closeCode !== 1007 || code !== 1006) throw new Error(`expected wire 1007 and close 1006, got ${closeCode} and ${code}`);
});

test.run();
