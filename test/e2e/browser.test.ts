// The demo chat in a real browser (headless Chromium through playwright-core): two tabs see
// each other in presence and exchange messages; one tab reloads while a message is published
// through POST /api/publish, and after the reload it shows that message, recovered from the
// room's history with the position kept in sessionStorage.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { BrowserContext, Page } from 'playwright-core';
import { testApp, closeAll, http } from '../app/helpers.js';

// Browser globals used inside page functions (the project compiles without the DOM library).
interface Element {
  textContent: string | null;
  dataset: Record<string, string | undefined>;
}
declare const document: { querySelectorAll(selector: string): ArrayLike<Element> };
declare const sessionStorage: { getItem(key: string): string | null };

const CHROMIUM = '/usr/bin/chromium';
const API_KEY = 'e2e-key';

function requireChromium(): void {
  if (!existsSync(CHROMIUM)) throw new Error(`MISSING SYSTEM PACKAGE chromium: ${CHROMIUM} not found (apt-get install chromium)`);
}

async function joinRoom(page: Page, base: string, name: string, room: string): Promise<void> {
  await page.goto(base);
  await page.fill('#name', name);
  await page.fill('#room', room);
  await page.click('#join-button');
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill('#text', text);
  await page.click('#send-button');
}

/** Waits until the page's chat log has a line containing `text`. */
async function sees(page: Page, text: string): Promise<void> {
  await page.waitForFunction((t) => Array.from(document.querySelectorAll('#log li')).some((li) => (li.textContent ?? '').includes(t)), text, { timeout: 10_000 });
}

/** Waits until the page lists `name` as online. */
async function seesMember(page: Page, name: string): Promise<void> {
  await page.waitForFunction((n) => Array.from(document.querySelectorAll('#members li')).some((li) => li.dataset.name === n), name, { timeout: 10_000 });
}

const logLines = (page: Page) => page.$$eval('#log li', (lis) => lis.map((li) => li.textContent ?? ''));

let context: BrowserContext | null = null;
let profile: string | null = null;

test('two tabs chat with presence; a reload recovers what was published meanwhile', async () => {
  requireChromium();
  const { http: base } = await testApp({ apiKey: API_KEY });
  profile = mkdtempSync(join(tmpdir(), 'murmur-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const pageErrors: string[] = [];
  const a = context.pages()[0] ?? (await context.newPage());
  const b = await context.newPage();
  for (const p of [a, b]) p.on('pageerror', (err) => pageErrors.push(err.message));

  await joinRoom(a, base, 'Alice', 'e2e');
  await joinRoom(b, base, 'Bob', 'e2e');
  await seesMember(a, 'Bob');
  await seesMember(b, 'Alice');

  await say(a, 'hello from Alice');
  await sees(b, 'hello from Alice');
  await say(b, 'hi Alice, Bob here');
  await sees(a, 'hi Alice, Bob here');

  // Reload Bob's tab; while the new document is loading (its old one, and socket, are gone),
  // publish through the HTTP API. The request for the client library is held until then.
  let published = false;
  await b.route('**/murmur-client.js', async (route) => {
    if (!published) {
      published = true;
      const r = await http(`${base}/api/publish`, {
        method: 'POST',
        headers: { 'X-Api-Key': API_KEY, 'Content-Type': 'application/json' },
        body: JSON.stringify({ topic: 'room:e2e', data: { name: 'server', text: 'while Bob was reloading' } }),
      });
      assert.is(r.status, 200, r.body);
    }
    await route.continue();
  });
  await b.reload();
  await sees(b, 'while Bob was reloading');
  assert.ok(published);
  const lines = await logLines(b);
  assert.is(lines.filter((l) => l.includes('while Bob was reloading')).length, 1, 'recovered exactly once');
  assert.ok(
    lines.some((l) => l.includes('hello from Alice')),
    'the log from before the reload is still shown',
  );
  assert.is(lines.filter((l) => l.includes('hello from Alice')).length, 1, 'no duplicate after the reload');
  await sees(a, 'while Bob was reloading');

  // Back in the room: presence and chat still work both ways.
  await seesMember(a, 'Bob');
  await seesMember(b, 'Alice');
  await say(b, 'back again');
  await sees(a, 'back again');
  const stored = await b.evaluate(() => sessionStorage.getItem('murmur:pos:room:e2e'));
  assert.is((JSON.parse(stored ?? 'null') as { offset: number } | null)?.offset, 4);
  assert.equal(pageErrors, []);
});

test.after.each(async () => {
  await context?.close();
  context = null;
  if (profile !== null) rmSync(profile, { recursive: true, force: true });
  profile = null;
  await closeAll();
});

test.run();
