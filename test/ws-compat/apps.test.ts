import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { get } from 'node:http';
import { createInterface } from 'node:readline';
import { RefClient, once } from './helpers.js';

// Real apps written for ws (test/ws-compat/apps), run unchanged and then with only their
// import of ws changed to murmur-ws/ws: driven the same way, they must answer the same.

const APPS = fileURLToPath(new URL('../../../test/ws-compat/apps/', import.meta.url));
// Inside the package, so that 'murmur-ws/ws' resolves to this build (a package imports itself by name).
const DOOR_APPS = fileURLToPath(new URL('./apps-door/', import.meta.url));

/** The app's source with the import of ws changed to the door: exactly one line differs. */
function doorVariant(name: string): string {
  const source = readFileSync(`${APPS}${name}`, 'utf8');
  const changed = source.replace(/from 'ws';/, "from 'murmur-ws/ws';");
  const differing = source.split('\n').filter((line, i) => line !== changed.split('\n')[i]);
  assert.is(differing.length, 1, 'only the import changes');
  mkdirSync(DOOR_APPS, { recursive: true });
  writeFileSync(`${DOOR_APPS}${name}`, changed);
  return `${DOOR_APPS}${name}`;
}

async function start(file: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<number>((resolve, reject) => {
    lines.once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code}`)));
  });
  return { child, port };
}

function httpGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ port, host: '127.0.0.1', path }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(`${res.statusCode} ${body}`));
    }).on('error', reject);
  });
}

/** A reference client that logs what it sees under `name`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function client(url: string, name: string, log: string[]): Promise<any> {
  const c = new RefClient(url);
  c.on('message', (d: Buffer, isBinary: boolean) => log.push(`${name} got ${String(d)} ${isBinary}`));
  c.on('error', (e: Error) => log.push(`${name} error ${e.message}`));
  c.on('close', (code: number, reason: Buffer) => log.push(`${name} close ${code} ${String(reason)}`));
  await Promise.race([once(c, 'open'), once(c, 'close')]);
  return c;
}

/** Log lines by their first word (a client's name, or an HTTP status), each group in order. */
function byClient(log: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const line of log) (out[line.split(' ')[0]!] ??= []).push(line);
  return out;
}

const settle = (ms = 100): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function driveBroadcast(port: number): Promise<string[]> {
  const log: string[] = [await httpGet(port, '/')];
  const base = `ws://127.0.0.1:${port}`;
  const alice = await client(`${base}/chat?name=alice`, 'alice', log);
  await settle();
  const bob = await client(`${base}/chat?name=bob`, 'bob', log);
  await settle();
  alice.send('hi bob');
  await settle();
  alice.send(Buffer.from('bytes'));
  await settle();
  log.push(await httpGet(port, '/'));
  bob.close(4001, 'later');
  await settle();
  await client(`${base}/elsewhere`, 'stranger', log);
  await settle();
  alice.close();
  await settle();
  return log;
}

async function driveExpress(port: number): Promise<string[]> {
  const log: string[] = [await httpGet(port, '/health')];
  const base = `ws://127.0.0.1:${port}`;
  await client(`${base}/ws?token=wrong`, 'intruder', log);
  const ann = await client(`${base}/ws?token=secret&user=ann`, 'ann', log);
  ann.send(JSON.stringify({ type: 'echo', text: 'x' }));
  await settle();
  ann.send(JSON.stringify({ type: 'count' }));
  await settle();
  ann.send(Buffer.from([1, 2, 3]));
  await settle();
  log.push(await httpGet(port, '/health'));
  ann.send('not json');
  await settle();
  const bo = await client(`${base}/ws?token=secret&user=bo`, 'bo', log);
  bo.send(JSON.stringify({ type: 'bye' }));
  await settle();
  const big = await client(`${base}/ws?token=secret&user=big`, 'big', log);
  big.send(Buffer.alloc(70 * 1024));
  await settle(200);
  return log;
}

for (const [name, drive] of [
  ['broadcast-http.mjs', driveBroadcast],
  ['express-echo.mjs', driveExpress],
] as const) {
  test(`${name}: written for ws, runs unchanged on the door (only the import changes)`, async () => {
    const results: string[][] = [];
    for (const file of [`${APPS}${name}`, doorVariant(name)]) {
      const { child, port } = await start(file);
      try {
        results.push(await drive(port));
      } finally {
        child.kill();
      }
    }
    // Events of one client keep their order; between clients it is the network's.
    assert.equal(byClient(results[1]!), byClient(results[0]!));
    assert.ok(results[0]!.length > 5);
  });
}

test.run();
