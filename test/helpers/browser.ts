import { type Browser, chromium } from 'playwright-core';

/** Debian's chromium (`.ci/run` installs it when missing); playwright cannot download browsers here. */
export const CHROMIUM_PATH = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

/**
 * Headless Chromium for the browser tests. As root it needs --no-sandbox; the background-networking
 * flags keep it from trying to reach the outside network (which would only be refused here). Playwright
 * gives every launch a fresh temporary profile of its own.
 */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}
