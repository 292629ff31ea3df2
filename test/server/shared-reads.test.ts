import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { WebSocket as WsClient } from 'ws';

// On the lean transport an open WebSocket reads into one buffer shared by every connection
// (readShared): each read overwrites the last. Whatever the server hands to a handler must be
// the handler's to keep. MURMUR_POISON_READS makes the transport overwrite the shared buffer
// after every read, so a payload that is still a view of it reads back as 0xa5 bytes here.
process.env.MURMUR_POISON_READS = '1';
const { Server } = await import('../../src/server/server.js');
const { leanTransportAvailable } = await import('../../src/transport/lean-support.js');

test('payloads and pings kept by the handler stay intact across later reads (every length class, pipelined, two connections)', async () => {
  assert.ok(leanTransportAvailable(), 'the lean transport runs here');
  const kept: Buffer[][] = [[], []];
  const pings: Buffer[] = [];
  let opened = 0;
  const server = new Server<number>({
    transport: 'lean',
    handlers: {
      open(conn) {
        conn.data = opened++;
      },
      message(conn, data) {
        kept[conn.data]!.push(data);
      },
      ping(_conn, data) {
        pings.push(data);
      },
    },
  });
  const { port } = await server.listen(0, '127.0.0.1');
  try {
    const clients = await Promise.all([0, 1].map(async () => {
      const ws = new WsClient(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
      await once(ws, 'open');
      return ws;
    }));
    // Sizes below, at and above the copy thresholds and the 64 KiB read buffer, interleaved on
    // two connections so that every read overwrites what the other one just read.
    const sizes = [1, 32, 125, 126, 1000, 4096, 16_384, 65_535, 70_000, 200_000];
    const sent: Buffer[][] = [[], []];
    for (let round = 0; round < 3; round++) {
      for (const size of sizes) {
        for (const i of [0, 1]) {
          const b = randomBytes(size);
          sent[i]!.push(b);
          clients[i]!.send(b);
        }
      }
      clients[0]!.ping(Buffer.from(`ping ${round}`));
    }
    const total = sizes.length * 3;
    for (let t = 0; t < 400 && (kept[0]!.length < total || kept[1]!.length < total || pings.length < 3); t++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    for (const i of [0, 1]) {
      assert.is(kept[i]!.length, total, `messages on connection ${i}`);
      for (let k = 0; k < total; k++) assert.ok(kept[i]![k]!.equals(sent[i]![k]!), `connection ${i} message ${k} (${sent[i]![k]!.length} B) intact`);
    }
    assert.equal(pings.map((p) => p.toString()), ['ping 0', 'ping 1', 'ping 2']);
    for (const ws of clients) ws.close();
  } finally {
    await server.close();
  }
});

test.run();
