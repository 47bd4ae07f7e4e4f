/**
 * `node --import tsx scripts/dashboard-screenshots.ts`: the README's pictures of the dashboard
 * (docs/dashboard/*.png), taken by Debian's chromium from a real setup: two gateways on one registry,
 * several agents with live traffic (one held at its upload limit), a refused agent and a revoked
 * permission, watched for about a minute so the bandwidth chart has a history. Not part of `npm test`;
 * run it after changing the front end, then look at the pictures. Uses TEST_DATABASE_URL when set.
 */
import { mkdir } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { launchBrowser } from '../test/helpers/browser.js';
import { http1Connect } from '../test/helpers/clients.js';
import {
  dashboardRole,
  startDashboardProcess,
  writeDashboardConfig,
} from '../test/helpers/dashboard-process.js';
import { freshDatabase } from '../test/helpers/db.js';
import {
  type GatewayProcess,
  startGatewayProcess,
  writeGatewayConfig,
} from '../test/helpers/gateway-process.js';
import { LiveTunnels } from '../test/helpers/live-tunnels.js';
import { startHashSink } from '../test/helpers/loopback-servers.js';
import { createTestPki } from '../test/helpers/pki.js';

const OUT = fileURLToPath(new URL('../docs/dashboard/', import.meta.url));
const WATCH_MS = 70_000;
const TOKEN = 'screenshot-admin-token-0123456789';

const pki = await createTestPki();
const db = await freshDatabase();
const role = await dashboardRole(db);
const sink = await startHashSink();
const cleanups: Array<() => Promise<unknown>> = [];
try {
  const gateways: Array<{ name: string; g: GatewayProcess; token: string; adminUrl: string }> = [];
  for (const [name, token] of [
    ['gw-eu-1', 'e'.repeat(32)],
    ['gw-eu-2', 'f'.repeat(32)],
  ] as const) {
    const g = await startGatewayProcess(
      await writeGatewayConfig({
        dir: pki.dir,
        databaseUrl: db.url,
        certPath: pki.serverCertPath,
        keyPath: pki.serverKeyPath,
        extraTables: [
          '[rate_limit]',
          'bytes_per_second = 4194304',
          '[rate_limit.identities."agent-research-3"]',
          'bytes_per_second = 262144',
          'burst_bytes = 65536',
          '[admin]',
          'listen_addr = "127.0.0.1:0"',
        ].join('\n'),
      }),
      { AGENT_GATEWAY_ADMIN_TOKEN: token },
    );
    cleanups.push(() => g.stop());
    const line = await g.waitForLog((l) => l.msg === 'admin listening');
    gateways.push({ name, g, token, adminUrl: `http://${String(line['admin_addr'])}` });
  }
  const env: Record<string, string> = {
    TEST_DASHBOARD_TOKEN: TOKEN,
    TEST_DASHBOARD_READ_TOKEN: 'screenshot-read-token-0123456789ab',
    TEST_DASHBOARD_INGEST_TOKEN: 'screenshot-ingest-token-012345678',
  };
  gateways.forEach((gw, i) => {
    env[`GW_${i}`] = gw.token;
  });
  const dashboard = await startDashboardProcess(
    await writeDashboardConfig({
      dir: pki.dir,
      databaseUrl: role.url,
      gateways: gateways.map((gw, i) => ({ name: gw.name, adminUrl: gw.adminUrl, tokenEnv: `GW_${i}` })),
      sampleIntervalMs: 1000,
    }),
    env,
  );
  cleanups.push(() => dashboard.stop());

  const destination = `127.0.0.1:${sink.port}`;
  // Permissions live in the registry, so one fixture serves both gateways.
  const fixture = new LiveTunnels(
    pki,
    () => db.sql,
    destination,
    () => gateways[0]!.g,
    'research',
  );
  const talkers: Array<{ socket: Duplex; chunk: number }> = [];
  // Four agents, spread over both gateways; agent-research-3 is held at 256 KiB/s.
  for (let i = 0; i < 4; i++) {
    const granted = await fixture.granted();
    for (let t = 0; t < (i === 2 ? 2 : 1); t++) {
      const open = await http1Connect(gateways[i % 2]!.g.port, granted.tls, destination);
      talkers.push({ socket: open.socket, chunk: [16_384, 4096, 65_536, 1024][i]! });
    }
    if (i === 3) {
      await db.sql`UPDATE permission_registry SET revoked_at = now() WHERE permission_id = ${granted.permissionId}`;
    }
  }
  const rogue = await pki.agent('agent-unknown');
  const started = Date.now();
  const timer = setInterval(() => {
    // Traffic that rises and falls, so the chart has a shape; the limited agent stays pinned at its limit.
    const wave = 1 + Math.sin((Date.now() - started) / 6000);
    for (const t of talkers) {
      if (t.socket.destroyed || t.socket.writableLength > 1 << 20) continue;
      t.socket.write(Buffer.alloc(Math.max(1, Math.round(t.chunk * wave))));
    }
  }, 50);
  const refusals = setInterval(() => {
    void http1Connect(gateways[0]!.g.port, { caPath: pki.caCertPath, agent: rogue }, 'weights.example:443')
      .then((r) => r.socket.destroy())
      .catch(() => {});
  }, 7000);
  for (const t of talkers) t.socket.on('error', () => {});

  const browser = await launchBrowser();
  cleanups.push(() => browser.close());
  const page = await (await browser.newContext({ viewport: { width: 1360, height: 860 } })).newPage();
  await page.goto(dashboard.url);
  await page.fill('input[name=token]', TOKEN);
  await page.fill('input[name=name]', 'alice');
  await page.click('button[type=submit]');
  await page.waitForURL(`${dashboard.url}/`);
  await new Promise((r) => setTimeout(r, WATCH_MS));
  // A fresh decision so the topology shows lit edges.
  const fresh = await fixture.granted();
  (await http1Connect(gateways[0]!.g.port, fresh.tls, destination)).socket.destroy();
  void http1Connect(
    gateways[1]!.g.port,
    { caPath: pki.caCertPath, agent: rogue },
    'weights.example:443',
  ).catch(() => {});
  await mkdir(OUT, { recursive: true });
  for (const name of ['overview', 'tunnels', 'bandwidth', 'registry', 'decisions']) {
    await page.click(`nav [data-tab=${name}]`);
    await page.waitForTimeout(400);
    await page.screenshot({ path: `${OUT}${name}.png` });
    process.stdout.write(`wrote ${OUT}${name}.png\n`);
  }
  clearInterval(timer);
  clearInterval(refusals);
  for (const t of talkers) t.socket.destroy();
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  await sink.close();
  await role.drop();
  await db.drop();
  await pki.cleanup();
}
process.exit(0);
