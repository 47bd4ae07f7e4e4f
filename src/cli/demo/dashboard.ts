import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import postgres from 'postgres';
import { loadDashboardConfig } from '../../dashboard/config.js';
import { startDashboard } from '../../dashboard/server.js';
import { createLogger, flushLogger } from '../../observability/logger.js';
import { DASHBOARD_ROLE, ensureRole } from '../../registry/gateway-role.js';

/** The dashboard's database role in the demo's registry, made as `migrate --dashboard-role` makes it. */
const ROLE = 'agent_gateway_dashboard';
const ENV = {
  token: 'AGENT_GATEWAY_DEMO_DASHBOARD_TOKEN',
  readonly: 'AGENT_GATEWAY_DEMO_DASHBOARD_READONLY_TOKEN',
  database: 'AGENT_GATEWAY_DEMO_DASHBOARD_DATABASE_URL',
  gateway: 'AGENT_GATEWAY_DEMO_ADMIN_TOKEN',
} as const;

export interface DemoDashboard {
  readonly url: string;
  readonly port: number;
  /** Demo logins, new on every run (the dashboard listens on loopback only). */
  readonly adminToken: string;
  readonly readonlyToken: string;
  stop(): Promise<void>;
}

/** A fresh random token for the demo's logins and its gateway's admin listener. */
export function demoToken(): string {
  return randomBytes(16).toString('hex');
}

/**
 * `agent-gateway dashboard` inside the demo, set up as a deployment would be: its own role on the
 * registry (read, revoke through the extension's functions, no write), its own config file, the gateway's
 * admin listener as its one gateway.
 */
export async function startDemoDashboard(opts: {
  readonly stateDir: string;
  /** The registry's superuser URL, to create the dashboard's role. */
  readonly adminDatabaseUrl: string;
  readonly gatewayAdminUrl: string;
  readonly gatewayAdminToken: string;
  readonly port: number;
  readonly logPath: string;
}): Promise<DemoDashboard> {
  const password = randomBytes(18).toString('base64url');
  const admin = postgres(opts.adminDatabaseUrl, { max: 1, onnotice: () => {} });
  try {
    await ensureRole(admin, DASHBOARD_ROLE, { name: ROLE, password });
  } finally {
    await admin.end({ timeout: 5 });
  }
  const roleUrl = new URL(opts.adminDatabaseUrl);
  roleUrl.username = ROLE;
  roleUrl.password = password;

  const configPath = join(opts.stateDir, 'dashboard.toml');
  await writeFile(
    configPath,
    [
      '# Written by `agent-gateway demo` on every start; edits are overwritten.',
      '[dashboard]',
      `listen_addr = "127.0.0.1:${opts.port}"`,
      `token_env = "${ENV.token}"`,
      `readonly_token_env = "${ENV.readonly}"`,
      '',
      '[registry]',
      `database_url_env = "${ENV.database}"`,
      '',
      '[[gateways]]',
      'name = "demo-gateway"',
      `admin_url = ${JSON.stringify(opts.gatewayAdminUrl)}`,
      `token_env = "${ENV.gateway}"`,
      '',
    ].join('\n'),
  );
  const adminToken = demoToken();
  const readonlyToken = demoToken();
  const loaded = await loadDashboardConfig(configPath, {
    ...process.env,
    [ENV.token]: adminToken,
    [ENV.readonly]: readonlyToken,
    [ENV.database]: roleUrl.toString(),
    [ENV.gateway]: opts.gatewayAdminToken,
  });
  const logStream = createWriteStream(opts.logPath, { flags: 'a' });
  const logger = createLogger('info', logStream);
  const running = await startDashboard(loaded, logger).catch((error: unknown) => {
    logStream.end();
    throw error;
  });
  return {
    url: running.url,
    port: running.address.port,
    adminToken,
    readonlyToken,
    async stop() {
      await running.stop();
      await flushLogger(logger);
      await new Promise<void>((done) => logStream.end(done));
    },
  };
}

/** The environment variable the demo gateway's `[admin] token_env` names. */
export const DEMO_GATEWAY_ADMIN_TOKEN_ENV = ENV.gateway;
