// Headless Chromium for the end-to-end tests (playwright-core drives the system's chromium):
// one persistent context at a time, in a profile directory of its own, closed after each test.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { BrowserContext, Page } from 'playwright-core';

// Browser globals used inside page functions (the project compiles without the DOM library).
interface Element {
  textContent: string | null;
  dataset: Record<string, string | undefined>;
}
declare const document: { querySelectorAll(selector: string): ArrayLike<Element> };

const CHROMIUM = '/usr/bin/chromium';

let context: BrowserContext | null = null;
let profile: string | null = null;

/** A fresh browser context (a missing chromium says so loudly). */
export async function launch(): Promise<BrowserContext> {
  if (!existsSync(CHROMIUM)) throw new Error(`MISSING SYSTEM PACKAGE chromium: ${CHROMIUM} not found (apt-get install chromium)`);
  profile = mkdtempSync(join(tmpdir(), 'murmur-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return context;
}

/** Closes the context launch() made, and its profile. */
export async function closeBrowser(): Promise<void> {
  await context?.close();
  context = null;
  if (profile !== null) rmSync(profile, { recursive: true, force: true });
  profile = null;
}

/** Opens the demo at `base`, as `name`, in `room`. */
export async function joinRoom(page: Page, base: string, name: string, room: string): Promise<void> {
  await page.goto(base);
  await page.fill('#name', name);
  await page.fill('#room', room);
  await page.click('#join-button');
}

/** Waits until the page's chat log has a line containing `text`. */
export async function sees(page: Page, text: string, timeoutMs = 10_000): Promise<void> {
  await page.waitForFunction((t) => Array.from(document.querySelectorAll('#log li')).some((li) => (li.textContent ?? '').includes(t)), text, { timeout: timeoutMs });
}

export const logLines = (page: Page): Promise<string[]> => page.$$eval('#log li', (lis) => lis.map((li) => li.textContent ?? ''));
