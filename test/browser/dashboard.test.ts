import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchBrowser } from '../helpers/browser.js';
import { http1Connect } from '../helpers/clients.js';
import {
  type DashboardProcess,
  type DashboardRole,
  dashboardRole,
  startDashboardProcess,
  writeDashboardConfig,
} from '../helpers/dashboard-process.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import { closed, echoes, LiveTunnels } from '../helpers/live-tunnels.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';

/**
 * Issue 15: the dashboard in a real browser (Debian's chromium through playwright-core) against a real
 * gateway and PostgreSQL: login and refusal, decisions within a second, growing byte counts, closing and
 * revoking from the UI (the client's tunnels end), and a read-only login that can do neither.
 * (The README's screenshots come from scripts/dashboard-screenshots.ts.)
 */
const ADMIN = 'dashboard-admin-token-0123456789';
const READER = 'dashboard-read-token-0123456789ab';
const INGEST = 'dashboard-ingest-token-0123456789';
const GATEWAY_ADMIN = 'g'.repeat(32);

let pki: TestPki;
let db: FreshDatabase;
let role: DashboardRole;
let gateway: GatewayProcess;
let dashboard: DashboardProcess;
let echo: Awaited<ReturnType<typeof startEchoServer>>;
let live: LiveTunnels;
let browser: Browser;

before(async () => {
  pki = await createTestPki();
  db = await freshDatabase();
  role = await dashboardRole(db);
  echo = await startEchoServer();
  gateway = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraTables: '[admin]\nlisten_addr = "127.0.0.1:0"',
    }),
    { AGENT_GATEWAY_ADMIN_TOKEN: GATEWAY_ADMIN },
  );
  const admin = await gateway.waitForLog((l) => l.msg === 'admin listening', 'admin listening');
  dashboard = await startDashboardProcess(
    await writeDashboardConfig({
      dir: pki.dir,
      databaseUrl: role.url,
      gateways: [
        { name: 'gw-1', adminUrl: `http://${String(admin['admin_addr'])}`, tokenEnv: 'TEST_GW1_TOKEN' },
      ],
    }),
    {
      TEST_DASHBOARD_TOKEN: ADMIN,
      TEST_DASHBOARD_READ_TOKEN: READER,
      TEST_DASHBOARD_INGEST_TOKEN: INGEST,
      TEST_GW1_TOKEN: GATEWAY_ADMIN,
    },
  );
  live = new LiveTunnels(
    pki,
    () => db.sql,
    `127.0.0.1:${echo.port}`,
    () => gateway,
    'ui',
  );
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await dashboard?.stop();
  await gateway?.stop();
  await echo?.close();
  await role?.drop();
  await db?.drop();
  await pki?.cleanup();
});

/** A logged-in page in a context of its own (its own cookie jar). */
async function loggedIn(token: string, name: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  await page.goto(dashboard.url);
  await page.waitForURL(/\/login$/);
  await page.fill('input[name=token]', token);
  await page.fill('input[name=name]', name);
  await page.click('button[type=submit]');
  await page.waitForURL(`${dashboard.url}/`);
  await page.locator('[data-testid=who]').filter({ hasText: name }).waitFor();
  return { context, page };
}

async function tab(page: Page, name: string): Promise<void> {
  await page.click(`nav [data-tab=${name}]`);
}

/** A tunnel that keeps moving bytes (one echo every 100 ms) until it closes. */
function keepTalking(stream: NodeJS.ReadWriteStream & { destroyed: boolean }): () => void {
  stream.on('data', () => {});
  const timer = setInterval(() => {
    if (!stream.destroyed) stream.write('x'.repeat(512));
  }, 100);
  return () => clearInterval(timer);
}

describe('dashboard in a browser', { timeout: 120_000 }, () => {
  test('every page and API needs a login; a wrong token is refused; the right one logs in', async () => {
    const api = await fetch(`${dashboard.url}/api/state`);
    assert.equal(api.status, 401);
    assert.equal(((await api.json()) as { error: { code: string } }).error.code, 'ADMIN_UNAUTHORIZED');
    const page = await fetch(`${dashboard.url}/`, { redirect: 'manual' });
    assert.equal(page.status, 303);
    assert.equal(page.headers.get('location'), '/login');
    const events = await fetch(`${dashboard.url}/api/events`);
    assert.equal(events.status, 401);
    const login = await fetch(`${dashboard.url}/login`);
    assert.match(
      login.headers.get('content-security-policy') ?? '',
      /script-src 'self'.*frame-ancestors 'none'/,
    );
    assert.equal(login.headers.get('x-frame-options'), 'DENY');
    assert.doesNotMatch(await login.text(), /<script/);

    const context = await browser.newContext();
    const tab1 = await context.newPage();
    await tab1.goto(`${dashboard.url}/`);
    await tab1.fill('input[name=token]', 'not-the-token-not-the-token-00');
    await tab1.click('button[type=submit]');
    await tab1.waitForURL(/\/login\?failed=1$/);
    await tab1.getByRole('alert').filter({ hasText: 'not accepted' }).waitFor();
    await context.close();

    const { context: ok, page: app } = await loggedIn(ADMIN, 'alice');
    const cookies = await ok.cookies();
    const session = cookies.find((c) => c.name === 'agd_session');
    assert.ok(session !== undefined, JSON.stringify(cookies));
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    // The page cannot read its own session cookie, nor does anything it is sent hold a gateway or DB secret.
    assert.equal(await app.evaluate('document.cookie'), '');
    const state = await app.evaluate(async () => (await fetch('/api/state')).text());
    for (const secret of [GATEWAY_ADMIN, role.url, new URL(role.url).password])
      assert.ok(!state.includes(secret));
    await app.locator('[data-testid=gateway-status]').filter({ hasText: 'gw-1 live' }).waitFor();
    const audit = await dashboard.waitForLog((l) => l.msg === 'operator action' && l['action'] === 'login');
    assert.equal(audit['operator_name'], 'alice');
    await ok.close();
  });

  test('an allowed and a denied CONNECT show up in decisions within a second', async () => {
    const { context, page } = await loggedIn(ADMIN, 'alice');
    await tab(page, 'decisions');
    const g = await live.granted();
    const opened = await http1Connect(gateway.port, g.tls, live.destination);
    assert.equal(opened.status, 200);
    await page
      .locator(`[data-testid=decisions] tr[data-identity="${g.identity}"][data-result=allowed]`)
      .waitFor({ timeout: 1000 });
    opened.socket.destroy();
    const refused = await http1Connect(gateway.port, g.tls, '127.0.0.1:9');
    assert.equal(refused.status, 403);
    const row = page.locator(`[data-testid=decisions] tr[data-identity="${g.identity}"][data-result=denied]`);
    await row.waitFor({ timeout: 1000 });
    assert.match((await row.textContent()) ?? '', /no_matching_permission/);
    await context.close();
  });

  test('a live tunnel shows growing byte counts; closing it from the UI ends the client’s tunnel', async () => {
    const { context, page } = await loggedIn(ADMIN, 'alice');
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    const stop = keepTalking(tunnels.h1);
    try {
      await tab(page, 'tunnels');
      const row = page.locator(
        `[data-testid=identity-group][data-identity="${g.identity}"] tr[data-permission]`,
      );
      await until(async () => (await row.count()) === 2, 'both tunnels listed');
      const cell = page.locator(
        `[data-testid=identity-group][data-identity="${g.identity}"] tr:has(td:text-is("HTTP/1.1")) [data-testid=bytes-up]`,
      );
      const first = Number(await cell.getAttribute('data-bytes'));
      // The tunnel moves ~5 KB/s and the dashboard samples every 250 ms: the count grows on screen.
      await until(async () => Number(await cell.getAttribute('data-bytes')) > first + 1000, 'bytes to grow');
      await page
        .locator(
          `[data-testid=identity-group][data-identity="${g.identity}"] tr:has(td:text-is("HTTP/1.1")) [data-testid=close-tunnel]`,
        )
        .click();
      await closed(tunnels.h1);
      const line = await gateway.waitForLog(
        (l) =>
          l.msg === 'tunnel closed' && l['permission_id'] === g.permissionId && l['protocol'] === 'HTTP/1.1',
      );
      assert.equal(line['close_cause'], 'operator');
      assert.match(String(line['close_reason']), /for "alice \(admin login, session [0-9a-f]{8}\)"/);
      await page.locator('[data-testid=notice]').filter({ hasText: '1 closed' }).waitFor();
      // The other protocol's tunnel of the same identity is untouched, then "close all" ends it.
      await echoes(tunnels.h2);
      const closeAll = page.locator(
        `[data-testid=identity-group][data-identity="${g.identity}"] [data-testid=close-all]`,
      );
      await closeAll.click();
      await closeAll.filter({ hasText: 'close all 1?' }).click();
      await closed(tunnels.h2);
    } finally {
      stop();
      tunnels.h1.destroy();
      tunnels.h2.close();
    }
    await context.close();
  });

  test('revoking a permission from the UI closes its tunnels through live authorization', async () => {
    const { context, page } = await loggedIn(ADMIN, 'alice');
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    await tab(page, 'registry');
    const row = page.locator(`[data-testid=permissions] tr[data-permission="${g.permissionId}"]`);
    await row.and(page.locator('[data-status=active]')).waitFor();
    const revoke = row.locator('[data-testid=revoke-permission]');
    await revoke.click();
    await revoke.filter({ hasText: 'confirm revoke' }).click();
    await live.expectClosed(g, tunnels, 'revoked', /permission/);
    await page
      .locator(`[data-testid=permissions] tr[data-permission="${g.permissionId}"][data-status=revoked]`)
      .waitFor();
    const [stored] =
      await db.sql`SELECT revoked_at FROM permission_registry WHERE permission_id = ${g.permissionId}`;
    assert.ok(stored?.['revoked_at'] instanceof Date);
    const audit = await dashboard.waitForLog(
      (l) =>
        l.msg === 'operator action' &&
        l['action'] === 'revoke' &&
        (l['target'] as Record<string, unknown>)['id'] === g.permissionId,
    );
    assert.deepEqual(audit['target'], { kind: 'permission', id: g.permissionId });
    assert.deepEqual(audit['result'], { result: 'revoked' });
    await tab(page, 'audit');
    await page
      .locator('[data-testid=audit] tr[data-action=revoke]')
      .filter({ hasText: g.permissionId })
      .waitFor();
    await context.close();
  });

  test('revoking a signer from the UI closes the tunnels of every permission it signed', async () => {
    const { context, page } = await loggedIn(ADMIN, 'alice');
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    await tab(page, 'registry');
    const signer = page.locator(`[data-testid=principal][data-key="${g.principal.keyId}"]`);
    const revoke = signer.locator('[data-testid=revoke-signer]');
    await revoke.click();
    await revoke.filter({ hasText: `revoke ${g.principal.keyId} and all it signed?` }).click();
    await live.expectClosed(g, tunnels, 'revoked', /signer_revoked/);
    await signer.locator('.status', { hasText: 'revoked' }).first().waitFor();
    await signer.locator(`tr[data-permission="${g.permissionId}"][data-status=signer-inactive]`).waitFor();
    const [stored] =
      await db.sql`SELECT revoked_at FROM principal_signing_keys WHERE key_id = ${g.principal.keyId}`;
    assert.ok(stored?.['revoked_at'] instanceof Date);
    await context.close();
  });

  test('a read-only login sees tunnels and the registry but can neither close nor revoke', async () => {
    const { context, page } = await loggedIn(READER, 'bob');
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    try {
      await tab(page, 'tunnels');
      const group = page.locator(`[data-testid=identity-group][data-identity="${g.identity}"]`);
      // Both tunnels (HTTP/1.1 and HTTP/2) before counting: the second row may arrive a moment later.
      await group.locator('tr[data-tunnel]').nth(1).waitFor();
      assert.equal(await group.locator('tr[data-tunnel]').count(), 2);
      assert.equal(await group.locator('[data-testid=close-tunnel]:disabled').count(), 2);
      assert.equal(await group.locator('[data-testid=close-all]').isDisabled(), true);
      await tab(page, 'registry');
      const revoke = page.locator(`tr[data-permission="${g.permissionId}"] [data-testid=revoke-permission]`);
      await revoke.waitFor();
      assert.equal(await revoke.isDisabled(), true);
      // The server refuses too, whatever the page shows: the API with a valid session and CSRF token.
      const answers = [];
      for (const [path, body] of [
        ['/api/revoke', { kind: 'permission', id: g.permissionId }],
        ['/api/tunnels/close', { identity: g.identity }],
      ] as const) {
        // One anonymous function per call: tsx would wrap a named inner function in a helper the page lacks.
        answers.push(
          await page.evaluate(
            async ([path, body]) => {
              const session = (await (await fetch('/api/session')).json()) as { csrf: string };
              const res = await fetch(path, {
                method: 'POST',
                headers: { 'content-type': 'application/json', 'x-csrf-token': session.csrf },
                body: JSON.stringify(body),
              });
              return {
                status: res.status,
                code: ((await res.json()) as { error?: { code: string } }).error?.code,
              };
            },
            [path, body] as const,
          ),
        );
      }
      assert.deepEqual(answers, [
        { status: 403, code: 'ADMIN_FORBIDDEN' },
        { status: 403, code: 'ADMIN_FORBIDDEN' },
      ]);
      await echoes(tunnels.h1);
      await echoes(tunnels.h2);
      const [stored] =
        await db.sql`SELECT revoked_at FROM permission_registry WHERE permission_id = ${g.permissionId}`;
      assert.equal(stored?.['revoked_at'], null);
    } finally {
      tunnels.h1.destroy();
      tunnels.h2.close();
    }
    await context.close();
  });

  test('an action with the session cookie but without its CSRF token is refused', async () => {
    const { context, page } = await loggedIn(ADMIN, 'alice');
    const g = await live.granted();
    const status = await page.evaluate(async (id) => {
      const res = await fetch('/api/revoke', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ kind: 'permission', id }),
      });
      return res.status;
    }, g.permissionId);
    assert.equal(status, 403);
    const [stored] =
      await db.sql`SELECT revoked_at FROM permission_registry WHERE permission_id = ${g.permissionId}`;
    assert.equal(stored?.['revoked_at'], null);
    await context.close();
  });
});

/** Polls `condition` (the page's CSP forbids evaluating strings, so not page.waitForFunction), bounded. */
async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
