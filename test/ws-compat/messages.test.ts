import { test } from 'uvu';
import { openAsBlob, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compat, listen, shut, once, show, errorShape, RefClient } from './helpers.js';
import type { Impl } from './helpers.js';

// Messages, sends and their callbacks, pings and pongs, as ws 8 documents them, on the server side.

/** A server of `impl` whose connection runs `onConnection`, a reference client that runs `client`; resolves with the log. */
async function session(
  impl: Impl,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onConnection: (ws: any, log: string[], done: () => void) => void,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  client: (c: any, log: string[], done: () => void) => void,
  options: Record<string, unknown> = {},
): Promise<string[]> {
  const { wss, url } = await listen(impl, options);
  const log: string[] = [];
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  wss.on('connection', (ws: any) => onConnection(ws, log, finish));
  const c = new RefClient(url);
  c.on('error', () => {}); // the scenario may end before the client opened
  client(c, log, finish);
  await finished;
  c.terminate();
  await shut(wss);
  return log;
}

compat(
  "'message' gives (Buffer, false) for text and (Buffer, true) for binary",
  (impl) =>
    session(
      impl,
      (ws, log, done) => {
        ws.on('message', (data: unknown, isBinary: boolean) => {
          log.push(`${show(data)} ${isBinary}`);
          if (log.length === 2) done();
        });
      },
      (c) => c.on('open', () => (c.send('hello'), c.send(Buffer.from('bin')))),
    ),
  ['Buffer(hello) false', 'Buffer(bin) true'],
);

for (const [binaryType, expected] of [
  ['arraybuffer', ['Buffer(t) false', 'ArrayBuffer(b) true']],
  ['fragments', ['Buffer(t) false', '[Buffer(b)] true']],
  ['nodebuffer', ['Buffer(t) false', 'Buffer(b) true']],
  ['blob', ['Buffer(t) false', 'Blob(1) true']],
  ['blob-or-other', ['Buffer(t) false', 'Buffer(b) true']],
] as const) {
  compat(
    `binaryType '${binaryType}': binary messages as ws hands them out, text always a Buffer`,
    (impl) =>
      session(
        impl,
        (ws, log, done) => {
          if (binaryType !== 'blob-or-other') ws.binaryType = binaryType;
          else ws.binaryType = 'nonsense';
          ws.on('message', (data: unknown, isBinary: boolean) => {
            log.push(`${show(data)} ${isBinary}`);
            if (log.length === 2) done();
          });
        },
        (c) => c.on('open', () => (c.send('t'), c.send(Buffer.from('b')))),
      ),
    [...expected],
  );
}

compat(
  'send(data, cb): the callback runs without an error; the options pick the opcode; fin: false sends fragments',
  (impl) =>
    session(
      impl,
      (ws, log) => {
        ws.send('text', (err?: Error) => log.push(`cb1 ${String(err ?? 'none')}`));
        ws.send('as-binary', { binary: true }, (err?: Error) => log.push(`cb2 ${String(err ?? 'none')}`));
        ws.send(Buffer.from('as-text'), { binary: false });
        ws.send(new Uint8Array([104, 105]));
        ws.send(42);
        ws.send('frag-', { fin: false });
        ws.send('ment', { fin: true });
      },
      (c, log, done) => {
        c.on('message', (data: Buffer, isBinary: boolean) => {
          log.push(`got ${show(data)} ${isBinary}`);
          if (log.filter((l) => l.startsWith('got')).length === 6) done();
        });
      },
    ).then((log) => log.sort()),
);

compat(
  'send() with no data sends an empty binary message; _socket.remoteAddress is the peer\'s',
  (impl) =>
    session(
      impl,
      (ws, log) => {
        log.push(`address ${ws._socket.remoteAddress}`);
        ws.send(undefined);
        ws.send(null);
      },
      (c, log, done) =>
        c.on('message', (d: Buffer, isBinary: boolean) => {
          log.push(`got ${d.length} ${isBinary}`);
          if (log.length === 3) done();
        }),
    ),
  ['address 127.0.0.1', 'got 0 true', 'got 0 true'],
);

compat(
  'send, ping and pong after close(): no throw, the callback gets ws\'s "not open" error',
  (impl) =>
    session(
      impl,
      (ws, log, done) => {
        ws.close();
        log.push(`readyState ${ws.readyState}`);
        ws.send('late', (err: Error) => log.push(errorShape(err)));
        ws.ping('late', undefined, (err: Error) => log.push(errorShape(err)));
        ws.pong((err: Error) => {
          log.push(errorShape(err));
          done();
        });
      },
      () => {},
    ),
  [
    'readyState 2',
    'Error::WebSocket is not open: readyState 2 (CLOSING)',
    'Error::WebSocket is not open: readyState 2 (CLOSING)',
    'Error::WebSocket is not open: readyState 2 (CLOSING)',
  ],
);

compat(
  "ping/pong: the peer's ping reaches 'ping' with its payload as a Buffer, our ping comes back as 'pong'",
  (impl) =>
    session(
      impl,
      (ws, log, done) => {
        ws.on('ping', (data: unknown) => log.push(`server ping ${show(data)}`));
        ws.on('pong', (data: unknown) => {
          log.push(`server pong ${show(data)}`);
          done();
        });
        ws.on('message', () => ws.ping('from-server'));
      },
      (c) => c.on('open', () => (c.ping('from-client'), c.send('now'))),
    ),
  ['server ping Buffer(from-client)', 'server pong Buffer(from-server)'],
);

compat(
  'ping and pong with more than 125 bytes throw a RangeError; a number payload is sent as text',
  (impl) =>
    session(
      impl,
      (ws, log) => {
        for (const m of ['ping', 'pong']) {
          try {
            ws[m](Buffer.alloc(126));
            log.push(`${m} did not throw`);
          } catch (e) {
            log.push(errorShape(e));
          }
        }
        ws.pong(7);
      },
      (c, log, done) => c.on('pong', (d: Buffer) => (log.push(`client pong ${show(d)}`), done())),
    ),
);

compat(
  "autoPong: false: the client's ping is not answered by the server; 'ping' fires and the application's pong() answers it",
  (impl) =>
    session(
      impl,
      (ws, log) => {
        ws.on('ping', (data: Buffer) => {
          log.push(`server ping ${show(data)}`);
          setTimeout(() => ws.pong(`re ${String(data)}`), 100);
        });
      },
      (c, log, done) => {
        c.on('open', () => c.ping('p1'));
        c.on('pong', (d: Buffer) => {
          log.push(`client pong ${show(d)}`);
          done();
        });
      },
      { autoPong: false },
    ),
  ['server ping Buffer(p1)', 'client pong Buffer(re p1)'],
);

compat(
  "send(blob) of a Blob that cannot be read: the callbacks get the error, 'error' (NotReadableError) is emitted, the connection ends",
  async (impl) => {
    const file = join(tmpdir(), `murmur-ws-blob-${process.pid}-${impl.name}.txt`);
    writeFileSync(file, 'x'.repeat(64));
    const blob = await openAsBlob(file);
    // A file changed after openAsBlob cannot be read through the Blob any more.
    writeFileSync(file, 'x'.repeat(32));
    try {
      return await session(
        impl,
        (ws, log, done) => {
          ws.on('error', (err: Error) => log.push(`error ${err.constructor.name} ${err.name} ${err.message}`));
          ws.on('close', (code: number) => {
            log.push(`close ${code}`);
            done();
          });
          ws.send(blob, (err?: Error) => log.push(`cb ${err?.name}`));
          ws.send('behind', (err?: Error) => log.push(`cb behind ${err?.name}`));
        },
        () => {},
      );
    } finally {
      unlinkSync(file);
    }
  },
  ['cb NotReadableError', 'cb behind NotReadableError', 'error DOMException NotReadableError The blob could not be read', 'close 1006'],
);

test.run();
