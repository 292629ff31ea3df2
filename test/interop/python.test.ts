import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startServer, echoHandlers } from '../helpers/server.js';

// Python's websockets library (an independent implementation) as a client of murmur.
// Debian's python3-websockets installs for /usr/bin/python3, whatever python3 is on PATH.
const PYTHON = '/usr/bin/python3';
const script = fileURLToPath(new URL('../../../test/interop/python_client.py', import.meta.url));
const deflateScript = fileURLToPath(new URL('../../../test/interop/python_deflate.py', import.meta.url));

function run(url: string, file = script): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(PYTHON, [file, url], { timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : ((error as { code?: number }).code ?? 1), out: stdout, err: stderr });
    });
  });
}

test('python websockets client: echo of every size class, fragments, ping, close', async () => {
  if (!existsSync(PYTHON)) throw new Error('MISSING SYSTEM PACKAGE python3-websockets: /usr/bin/python3 not found (apt-get install python3-websockets)');
  let closeSeen: [number, string] | undefined;
  const { server, url } = await startServer({ handlers: { ...echoHandlers(), close: (_c, code, reason) => (closeSeen = [code, reason]) } });
  const r = await run(url);
  if (r.err.includes("No module named 'websockets'")) throw new Error('MISSING SYSTEM PACKAGE python3-websockets: no websockets module for /usr/bin/python3 (apt-get install python3-websockets)');
  assert.is(r.code, 0, r.err);
  const res = JSON.parse(r.out.trim()) as Record<string, unknown>;
  assert.equal(res, { sizes: 'ok', fragmented: 'ok', ping: 'ok', close_code: 4002 });
  assert.equal(closeSeen, [4002, 'python says bye']);
  await server.close();
});

test('python websockets client with permessage-deflate: every offer kind, a true 256-byte window at server_max_window_bits=8', async () => {
  if (!existsSync(PYTHON)) throw new Error('MISSING SYSTEM PACKAGE python3-websockets: /usr/bin/python3 not found (apt-get install python3-websockets)');
  const { server, url } = await startServer({ perMessageDeflate: { threshold: 0 }, limits: { maxPayload: 32 * 1024 * 1024 }, handlers: echoHandlers() });
  try {
    const r = await run(url, deflateScript);
    assert.is(r.code, 0, r.err);
    const res = JSON.parse(r.out.trim()) as Record<string, string[]>;
    for (const [name, agreed] of Object.entries(res)) assert.is(agreed.length, 1, `${name}: deflate agreed`);
    assert.match(res.window_8![0]!, /remote_max_window_bits=8,/);
  } finally {
    await server.close();
  }
});

test.run();
