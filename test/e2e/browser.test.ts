// The demo chat in a real browser (headless Chromium through playwright-core): two tabs see
// each other in presence and exchange messages; one tab reloads while a message is published
// through POST /api/publish, and after the reload it shows that message, recovered from the
// room's history with the position kept in sessionStorage. The layout holds at desktop and
// phone widths with a 300-character word in the log (boxes asserted; screenshots kept in
// $MURMUR_SCREENSHOTS, default <tmp>/murmur-demo-screenshots, for a person to look at), and a
// resync replaces the lines on screen.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { testApp, closeAll, http } from '../app/helpers.js';
import { closeBrowser, joinRoom, launch, logLines, sees } from './chromium.js';

// Browser globals used inside page functions (the project compiles without the DOM library).
interface Element {
  textContent: string | null;
  dataset: Record<string, string | undefined>;
}
declare const document: { querySelectorAll(selector: string): ArrayLike<Element>; documentElement: { scrollWidth: number; clientWidth: number } };
declare const window: { innerWidth: number; innerHeight: number };
declare const sessionStorage: { getItem(key: string): string | null };

const API_KEY = 'e2e-key';

async function say(page: Page, text: string): Promise<void> {
  await page.fill('#text', text);
  await page.click('#send-button');
}

/** Waits until the page lists `name` as online. */
async function seesMember(page: Page, name: string): Promise<void> {
  await page.waitForFunction((n) => Array.from(document.querySelectorAll('#members li')).some((li) => li.dataset.name === n), name, { timeout: 10_000 });
}

/** Publishes `text` as "server" through POST /api/publish. */
async function publish(base: string, topic: string, text: string): Promise<void> {
  const r = await http(`${base}/api/publish`, {
    method: 'POST',
    headers: { 'X-Api-Key': API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify({ topic, data: { name: 'server', text } }),
  });
  assert.is(r.status, 200, r.body);
}

let context: BrowserContext | null = null;

/** Screenshots of the layout tests, kept for a person to look at (the test asserts boxes, not pixels). */
const SHOTS = process.env.MURMUR_SCREENSHOTS ?? join(tmpdir(), 'murmur-demo-screenshots');

interface Box { x: number; y: number; width: number; height: number }

/** Layout problems of the page at its viewport: horizontal scroll, and the named elements not wholly on screen. */
async function layoutProblems(page: Page, visible: string[]): Promise<string[]> {
  const problems: string[] = [];
  const { scrollWidth, clientWidth, innerWidth, innerHeight } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    innerWidth: window.innerWidth,
    innerHeight: window.innerHeight,
  }));
  if (scrollWidth > clientWidth) problems.push(`the page scrolls sideways: ${scrollWidth} px wide in a ${clientWidth} px viewport`);
  for (const selector of visible) {
    const box: Box | null = await page.locator(selector).first().boundingBox();
    if (box === null) problems.push(`${selector} is not rendered`);
    else if (box.x < 0 || box.y < 0 || box.x + box.width > innerWidth + 0.5 || box.y + box.height > innerHeight + 0.5) {
      problems.push(`${selector} is off-screen: x ${box.x}..${box.x + box.width}, y ${box.y}..${box.y + box.height} in ${innerWidth}x${innerHeight}`);
    }
  }
  const lines: Box[] = await page.$$eval('#log li', (lis) => lis.map((li) => (li as unknown as { getBoundingClientRect(): Box }).getBoundingClientRect()));
  for (const b of lines) if (b.x + b.width > innerWidth + 0.5) problems.push(`a chat line reaches x ${b.x + b.width} past the ${innerWidth} px viewport`);
  return problems;
}

test('two tabs chat with presence; a reload recovers what was published meanwhile', async () => {
  const { http: base } = await testApp({ apiKey: API_KEY });
  context = await launch();
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
      await publish(base, 'room:e2e', 'while Bob was reloading');
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
  // Alice may see Bob's message before Bob's own tab has it back (and stores its position).
  await b.waitForFunction(() => (JSON.parse(sessionStorage.getItem('murmur:pos:room:e2e') ?? 'null') as { offset: number } | null)?.offset === 4, undefined, { timeout: 10_000 }).catch(() => undefined);
  const stored = await b.evaluate(() => sessionStorage.getItem('murmur:pos:room:e2e'));
  assert.is((JSON.parse(stored ?? 'null') as { offset: number } | null)?.offset, 4);
  assert.equal(pageErrors, []);
});

test('one 300-character word (a long URL, replayed from history) fits the page at desktop and phone widths; Join and Send stay on screen', async () => {
  const { http: base } = await testApp({ apiKey: API_KEY });
  // Published before anyone joins: every visitor gets it through the history replay.
  const url = `https://example.com/${'a1b2c3d4e5'.repeat(28)}`;
  assert.ok(url.length >= 300);
  await publish(base, 'room:layout', url);
  context = await launch();
  mkdirSync(SHOTS, { recursive: true });
  const problems: string[] = [];
  for (const [label, width, height] of [['desktop', 1280, 800], ['phone', 390, 844]] as const) {
    const page = await context.newPage();
    await page.setViewportSize({ width, height });
    await page.goto(base);
    await page.screenshot({ path: join(SHOTS, `join-${label}.png`) });
    problems.push(...(await layoutProblems(page, ['#name', '#room', '#join-button'])).map((p) => `${label} join form: ${p}`));
    await page.fill('#name', `Someone-with-a-long-name-${label}`);
    await page.fill('#room', 'layout');
    await page.click('#join-button');
    await sees(page, url);
    await say(page, `and a word from the ${label}: ${'x'.repeat(300)}`);
    await sees(page, `from the ${label}`);
    await page.screenshot({ path: join(SHOTS, `chat-${label}.png`) });
    problems.push(...(await layoutProblems(page, ['#text', '#send-button', '#members'])).map((p) => `${label} chat: ${p}`));
    await page.close();
  }
  assert.equal(problems, [], `screenshots in ${SHOTS}`);
});

test('a server that keeps fewer messages than the demo rewinds (--history-max-messages 3): the room opens with what it keeps', async () => {
  const { http: base } = await testApp({ apiKey: API_KEY, historyMaxMessages: 3 });
  for (let i = 1; i <= 5; i++) await publish(base, 'room:layout', `kept ${i}`);
  context = await launch();
  const page = context.pages()[0] ?? (await context.newPage());
  await joinRoom(page, base, 'Dan', 'layout');
  await sees(page, 'kept 5');
  assert.equal((await logLines(page)).map((l) => l.replace(/^server:/, '')), ['kept 3', 'kept 4', 'kept 5']);
  await say(page, 'and the room works');
  await sees(page, 'and the room works');
});

test('a resync replaces the lines on screen with the latest messages instead of leaving the old ones above them', async () => {
  // A history of 50 (the demo rewinds 50): publishing 60 while the tab is away trims its
  // position away, so the reload resyncs.
  const { http: base } = await testApp({ apiKey: API_KEY, historyMaxMessages: 50 });
  context = await launch();
  const page = context.pages()[0] ?? (await context.newPage());
  await joinRoom(page, base, 'Carol', 'layout');
  await say(page, 'old line before the gap');
  await sees(page, 'old line before the gap');
  let published = false;
  await page.route('**/murmur-client.js', async (route) => {
    if (!published) {
      published = true;
      for (let i = 1; i <= 60; i++) await publish(base, 'room:layout', `new line ${i}`);
    }
    await route.continue();
  });
  await page.reload();
  await sees(page, 'new line 60');
  await sees(page, 'showing the latest instead');
  const lines = await logLines(page);
  assert.not.ok(lines.some((l) => l.includes('old line before the gap')), `old lines still shown: ${lines.join(' | ')}`);
  assert.ok(lines[0]!.includes('showing the latest instead'), lines.join(' | '));
  assert.equal(lines.slice(1).map((l) => l.replace(/^server:/, '')), Array.from({ length: 50 }, (_, i) => `new line ${i + 11}`));
});

test.after.each(async () => {
  await closeBrowser();
  context = null;
  await closeAll();
});

test.run();
