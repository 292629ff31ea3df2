// permessage-deflate with a real browser (headless Chromium through playwright-core): Chromium
// offers `permessage-deflate; client_max_window_bits`; murmur answers with no context takeover
// both ways. The page sends JSON chat messages and checks the echoes; the server's counters
// show the frames really were compressed in both directions.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../helpers/server.js';
import { deflateCounters } from '../../src/server/deflate.js';

const CHROMIUM = '/usr/bin/chromium';

declare class WebSocket {
  constructor(url: string);
  extensions: string;
  onopen: (() => void) | null;
  onmessage: ((ev: { data: string }) => void) | null;
  onerror: (() => void) | null;
  send(data: string): void;
  close(): void;
}

test('Chromium negotiates permessage-deflate; messages go compressed both ways and come back intact', async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`MISSING SYSTEM PACKAGE chromium: ${CHROMIUM} not found (apt-get install chromium)`);
  let offered = '';
  const { server, url } = await startServer({
    perMessageDeflate: true,
    handlers: {
      upgrade(req) {
        offered = req.extensions;
      },
      message(conn, data, isBinary) {
        conn.send(isBinary ? data : data.toString('utf8'), isBinary);
      },
    },
  });
  const profile = mkdtempSync(join(tmpdir(), 'murmur-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await context.newPage();
    const inflatedBefore = deflateCounters.inflatedMessages;
    const compressedBefore = deflateCounters.compressedMessages;
    const result = await page.evaluate(
      (u) =>
        new Promise<{ extensions: string; echoed: number }>((resolve, reject) => {
          const ws = new WebSocket(u);
          const sent: string[] = [];
          for (let i = 0; i < 20; i++) sent.push(JSON.stringify({ type: 'chat', seq: i, room: 'general', user: 'alice', text: `message ${i}: the deploy went fine and the dashboards are green` }));
          let n = 0;
          ws.onerror = () => reject(new Error('websocket error'));
          ws.onopen = () => ws.send(sent[0]!);
          ws.onmessage = (ev) => {
            if (ev.data !== sent[n]) return reject(new Error(`echo ${n} differs`));
            n++;
            if (n < sent.length) ws.send(sent[n]!);
            else {
              resolve({ extensions: ws.extensions, echoed: n });
              ws.close();
            }
          };
        }),
      url,
    );
    assert.match(offered, /permessage-deflate/);
    assert.is(result.extensions, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
    assert.is(result.echoed, 20);
    assert.is(deflateCounters.compressedMessages - compressedBefore, 20, 'every echo went compressed');
    assert.ok(deflateCounters.inflatedMessages - inflatedBefore >= 20, 'Chromium compressed what it sent');
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    await server.close();
  }
});

test.run();
