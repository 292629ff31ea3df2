import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { deflateRawSync, constants } from 'node:zlib';
import { createHash } from 'node:crypto';
import { startServer } from '../helpers/server.js';
import { serverCore } from '../../src/server/server.js';
import type { Server } from '../../src/server/server.js';
import { RawClient, upgradeRequest, clientFrame, until } from '../helpers/net.js';
import { inflateSettings, inflateJobs } from '../../src/server/bounded-inflate.js';
import type { InflateMode } from '../../src/server/bounded-inflate.js';
import type { Connection } from '../../src/server/connection.js';
import type { ServerOptions } from '../../src/server/options.js';

// A large compressed message (RFC 7692) is inflated in bounded slices, never in one call that
// blocks the event loop: on the threadpool ('thread') or in turns of the loop ('chunked').
// Both engines run every test.

const MiB = 1024 * 1024;

/** Compressed payload as a client sends it (RFC 7692 7.2.1: the sync flush tail removed). */
function deflated(data: Buffer | string): Buffer {
  const out = deflateRawSync(data, { finishFlush: constants.Z_SYNC_FLUSH, level: 1 });
  return out.subarray(0, out.length - 4);
}

/** 16 MiB of zeros: about 16 KiB compressed, one read on loopback. */
const ZEROS_16M = deflated(Buffer.alloc(16 * MiB));

async function open(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  c.write(upgradeRequest({ headers: { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' } }));
  assert.match(await c.readHead(), /^HTTP\/1.1 101[^]*permessage-deflate/);
  return c;
}

/** Turns of the event loop, counted by a setImmediate chain until stopped. */
function loopTurns(): { readonly count: number; stop(): void } {
  let count = 0;
  let on = true;
  const tick = (): void => {
    count++;
    if (on) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    get count() {
      return count;
    },
    stop() {
      on = false;
    },
  };
}

/** A server that answers each message with its length and kind ("<length> text|binary"), and records them. */
async function lengthServer(options: Partial<ServerOptions> = {}): Promise<{ server: Server; port: number; got: string[]; digests: string[]; turnsAt: number[]; turns: ReturnType<typeof loopTurns>; close(): Promise<void> }> {
  const got: string[] = [];
  const digests: string[] = [];
  const turnsAt: number[] = [];
  const turns = loopTurns();
  const { server, port } = await startServer<unknown>({
    perMessageDeflate: true,
    limits: { maxPayload: 32 * MiB },
    ...options,
    handlers: {
      message(conn: Connection, data: Buffer, isBinary: boolean) {
        turnsAt.push(turns.count);
        const line = `${data.length} ${isBinary ? 'binary' : 'text'}`;
        got.push(line);
        digests.push(sha1(data));
        conn.send(line);
      },
    },
  });
  return {
    server,
    port,
    got,
    digests,
    turnsAt,
    turns,
    async close() {
      turns.stop();
      await server.close(100);
    },
  };
}

function sha1(data: Buffer | string): string {
  return createHash('sha1').update(data).digest('hex');
}

async function readText(c: RawClient): Promise<string> {
  for (;;) {
    const f = await c.readFrame(20_000);
    if (f.opcode === 1) return f.payload.toString();
    if (f.opcode === 8) throw new Error(`closed with ${f.payload.readUInt16BE(0)}`);
  }
}

/** Runs `fn` with the engine `mode` and the given settings, then puts the settings back. */
async function withSettings(mode: InflateMode, settings: Partial<typeof inflateSettings>, fn: () => Promise<void>): Promise<void> {
  const saved = { ...inflateSettings };
  Object.assign(inflateSettings, { mode }, settings);
  try {
    await fn();
  } finally {
    Object.assign(inflateSettings, saved);
  }
}

for (const mode of ['thread', 'chunked'] as const) {
  test(`${mode}: a 16 MiB message that arrives in one read is inflated over many turns of the event loop, not in one call`, async () => {
    // One slice per turn (no time budget): 16 MiB in 256 KiB slices is 64 turns at least.
    await withSettings(mode, { turnMs: 0 }, async () => {
      const s = await lengthServer();
      const c = await open(s.port);
      try {
        // Right behind the frame, a small message: delivered after the large one.
        const before = s.turns.count;
        c.write(Buffer.concat([clientFrame(2, ZEROS_16M, { rsv: 4 }), clientFrame(1, 'after')]));
        assert.is(await readText(c), `${16 * MiB} binary`);
        assert.is(await readText(c), '5 text');
        // One call would deliver it in the turn its bytes were read (the one-call path: 0-3
        // turns after the write, the loopback's own).
        const turns = s.turnsAt[0]! - before;
        assert.ok(turns >= 16, `delivered ${turns} turns after the write`);
        assert.is(inflateJobs.running, 0, 'the slot is given back');
      } finally {
        c.destroy();
        await s.close();
      }
    });
  });

  test(`${mode}: order kept: a large text message, then small ones, a ping and a close, in one write`, async () => {
    await withSettings(mode, {}, async () => {
      const s = await lengthServer();
      const c = await open(s.port);
      try {
        const text = JSON.stringify({ rows: Array.from({ length: 40_000 }, (_, i) => ({ id: i, name: `user ${i}`, ok: i % 3 === 0 })) });
        assert.ok(text.length > 1 * MiB);
        c.write(
          Buffer.concat([
            clientFrame(1, deflated(text), { rsv: 4 }),
            clientFrame(1, deflated('small one, compressed'), { rsv: 4 }),
            clientFrame(2, Buffer.from([1, 2, 3])),
            clientFrame(9, 'ping?'),
            clientFrame(8, Buffer.from([0x03, 0xe8])),
          ]),
        );
        const frames: string[] = [];
        for (;;) {
          const f = await c.readFrame(20_000);
          frames.push(f.opcode === 1 ? f.payload.toString() : f.opcode === 10 ? `pong ${f.payload}` : `close ${f.payload.readUInt16BE(0)}`);
          if (f.opcode === 8) break;
        }
        assert.equal(frames, [`${Buffer.byteLength(text)} text`, '21 text', '3 binary', 'pong ping?', 'close 1000']);
        assert.is(s.digests[0], sha1(text), 'the bytes inflated in slices are the message');
        await c.waitClosed();
      } finally {
        c.destroy();
        await s.close();
      }
    });
  });

  test(`${mode}: a bomb is refused with 1009 after at most maxPayload of output; a 16 MiB bomb under the limit is not refused`, async () => {
    await withSettings(mode, {}, async () => {
      const s = await lengthServer({ limits: { maxPayload: 4 * MiB } });
      const c = await open(s.port);
      try {
        c.write(clientFrame(2, deflated(Buffer.alloc(64 * MiB)), { rsv: 4 }));
        assert.is(await c.readClose(20_000), 1009);
        assert.equal(s.got, []);
        await until(() => inflateJobs.running === 0, 5000, 'the slot given back');
      } finally {
        c.destroy();
        await s.close();
      }
    });
  });

  test(`${mode}: a connection closed during the inflation frees its job; the message is not delivered`, async () => {
    // Small slices: the inflation takes hundreds of turns, the reset arrives during it.
    await withSettings(mode, { sliceBytes: 16 * 1024 }, async () => {
      const s = await lengthServer({ limits: { maxPayload: 64 * MiB } });
      const c = await open(s.port);
      try {
        const started = inflateJobs.started;
        c.socket.end(clientFrame(2, deflated(Buffer.alloc(64 * MiB)), { rsv: 4 }));
        c.destroy();
        await until(() => inflateJobs.started > started, 5000, 'the inflation started');
        await until(() => inflateJobs.running === 0 && inflateJobs.queued === 0, 5000, 'the job dropped');
        await new Promise((r) => setTimeout(r, 50));
        assert.equal(s.got, []);
      } finally {
        c.destroy();
        await s.close();
      }
    });
  });

  test(`${mode}: a peer that keeps sending during an inflation is held to the read-ahead; afterwards the connection holds nothing`, async () => {
    await withSettings(mode, { sliceBytes: 16 * 1024, turnMs: 0 }, async () => {
      const s = await lengthServer({ limits: { maxPayload: 64 * MiB } });
      const c = await open(s.port);
      const inflating = serverCore(s.server).inflating;
      let maxHeld = 0;
      const probe = setInterval(() => {
        for (const wait of inflating.values()) maxHeld = Math.max(maxHeld, wait.rest?.length ?? 0);
      }, 1);
      try {
        c.write(clientFrame(2, deflated(Buffer.alloc(64 * MiB)), { rsv: 4 }));
        // 2 MiB of small messages behind it, written at once: the kernel holds what we do not read.
        const small = clientFrame(1, 'x'.repeat(1000));
        c.write(Buffer.concat(Array.from({ length: 2048 }, () => small)));
        assert.is(await readText(c), `${64 * MiB} binary`);
        for (let i = 0; i < 2048; i++) assert.is(await readText(c), '1000 text');
        // One read of either transport beyond the read-ahead at most.
        assert.ok(maxHeld > 0 && maxHeld <= 64 * 1024 + 64 * 1024, `held ${maxHeld} bytes`);
        assert.is(inflating.size, 0);
        assert.is(inflateJobs.running, 0);
      } finally {
        clearInterval(probe);
        c.destroy();
        await s.close();
      }
    });
  });

  test(`${mode}: the process-wide cap: one inflation at a time, one waiting, the next refused with 1013`, async () => {
    await withSettings(mode, { maxInflations: 1, maxQueuedInflations: 1, sliceBytes: 16 * 1024 }, async () => {
      const s = await lengthServer();
      const clients = [await open(s.port), await open(s.port), await open(s.port)];
      let maxRunning = 0;
      const probe = setInterval(() => (maxRunning = Math.max(maxRunning, inflateJobs.running)), 1);
      try {
        const refused = inflateJobs.refused;
        for (const c of clients) c.write(clientFrame(2, ZEROS_16M, { rsv: 4 }));
        const answers = await Promise.all(clients.map((c) => readText(c).catch((err: Error) => err.message)));
        assert.equal(answers.sort(), [`${16 * MiB} binary`, `${16 * MiB} binary`, 'closed with 1013']);
        assert.is(inflateJobs.refused, refused + 1);
        assert.is(maxRunning, 1);
      } finally {
        clearInterval(probe);
        for (const c of clients) c.destroy();
        await s.close();
      }
    });
  });
}

test.run();
