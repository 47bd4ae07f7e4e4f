import type { AddressInfo } from 'node:net';
import postgres from 'postgres';
import { type AdminContext, AdminServer } from '../admin/admin-server.js';
import { TokenAuthority, tokenCredential } from '../admin/auth.js';
import { AdminRequestError, sendJson } from '../admin/http-json.js';
import type { OperatorActionRecord } from '../eventfeed/records.js';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import { RegistryChangeListener } from '../registry/change-listener.js';
import { actionRoutes } from './action-routes.js';
import { authRoutes } from './auth-routes.js';
import type { LoadedDashboardConfig } from './config.js';
import { DashboardHub } from './hub.js';
import { ingestRoutes } from './ingest-routes.js';
import { OperatorCertificates } from './operator-certificates.js';
import { readRegistry } from './registry-view.js';
import { SessionStore, sessionCredential } from './sessions.js';
import { SECURITY_HEADERS, staticRoutes } from './static-routes.js';

export interface RunningDashboard {
  readonly address: AddressInfo;
  /** `http://127.0.0.1:PORT` (or https://). */
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * `agent-gateway dashboard`: a process of its own, not a route of the gateway's admin listener, because
 * - revoking needs a registry credential that can revoke, and the gateway's role must stay read-only;
 * - one dashboard watches every gateway on the registry, none of them special;
 * - the browser-facing code (logins, cookies, pages, OTLP parsing) stays out of the gateway process.
 * It talks to each gateway's admin listener with that gateway's token (the feed, tunnels, limits, the
 * kill switch) and reads the registry with the dashboard role. Browsers get a session cookie and never
 * see a token of the gateways or the registry's URL.
 */
export async function startDashboard(
  loaded: LoadedDashboardConfig,
  logger: Logger,
): Promise<RunningDashboard> {
  const d = loaded.config.dashboard;
  const sql = postgres(loaded.databaseUrl, {
    max: 4,
    onnotice: () => {},
    connect_timeout: Math.ceil(loaded.config.registry.connect_timeout_ms / 1000),
    connection: {
      statement_timeout: loaded.config.registry.query_timeout_ms,
      application_name: 'agent-gateway dashboard',
    },
  });
  const hub = new DashboardHub({
    gateways: loaded.gateways,
    historyRecords: d.history_records,
    sampleIntervalMs: d.sample_interval_ms,
    bandwidthWindowMs: d.bandwidth_window_s * 1000,
  });
  const sessions = new SessionStore({
    ttlMs: d.session_ttl_s * 1000,
    maxSessions: 1000,
    secure: loaded.tls !== undefined,
  });
  const tokens = new TokenAuthority(loaded.tokens);
  const certificates = new OperatorCertificates(loaded.operators);
  const statics = await staticRoutes();
  const csrf = { sessions, certificates };

  const audit = (
    ctx: AdminContext,
    action: string,
    target: Record<string, string>,
    result: Record<string, string | number>,
  ): void => {
    const record: OperatorActionRecord = {
      type: 'operator_action',
      time: new Date().toISOString(),
      action,
      operator_role: ctx.role ?? 'none',
      operator_addr: ctx.peer,
      operator_name: ctx.credential?.name ?? null,
      target,
      result,
    };
    logger.warn(
      {
        action,
        operator_role: record.operator_role,
        operator_name: record.operator_name,
        operator_addr: ctx.peer,
        target,
        result,
      },
      LogEvent.operatorAction,
    );
    hub.add('dashboard', record);
  };

  const server = new AdminServer({
    host: loaded.listen.host,
    port: loaded.listen.port,
    ...(loaded.tls ? { tls: { ...loaded.tls, requestCert: certificates.enabled } } : {}),
    // A bearer token (scripts), else an operator certificate, else a login session.
    authenticate: (req) => {
      if (req.headers.authorization !== undefined)
        return tokenCredential(tokens.roleOf(req.headers.authorization));
      const operator = certificates.credentialOf(req);
      if (operator !== undefined) return operator;
      const session = sessions.of(req);
      return session === undefined ? undefined : sessionCredential(session);
    },
    loginPath: '/login',
    responseHeaders: SECURITY_HEADERS,
    onError: (error, route) =>
      logger.error({ route, error: (error as Error)?.message ?? String(error) }, LogEvent.internalError),
  });
  server.add(
    {
      method: 'GET',
      path: '/healthz',
      access: 'public',
      handle: ({ res }) => sendJson(res, 200, { status: 'ok' }),
    },
    ...authRoutes({ sessions, tokens, certificates, audit }),
    ...statics,
    {
      method: 'GET',
      path: '/api/events',
      access: 'read',
      handle: ({ req, res, credential }) => {
        // A reconnecting EventSource gets the whole picture again (state, then the kept records), so its
        // Last-Event-ID is not needed. A stream opened with a session ends when the session does.
        const session = credential?.via === 'session' ? sessions.of(req) : undefined;
        const valid = session === undefined ? () => true : () => sessions.isLive(session);
        if (!hub.browsers.open(req, res, hub.history(), valid)) {
          throw new AdminRequestError('ADMIN_UNAVAILABLE', 'too many dashboard pages are open; close one');
        }
      },
    },
    {
      method: 'GET',
      path: '/api/state',
      access: 'read',
      handle: ({ res }) => sendJson(res, 200, hub.state()),
    },
    {
      method: 'GET',
      path: '/api/registry',
      access: 'read',
      handle: async ({ res }) => {
        try {
          sendJson(res, 200, await readRegistry(sql));
        } catch (error) {
          throw new AdminRequestError(
            'ADMIN_UNAVAILABLE',
            `the registry did not answer: ${(error as Error).message}`,
          );
        }
      },
    },
    ...actionRoutes({ hub, sql, csrf, audit }),
    ...(loaded.ingestToken === undefined
      ? []
      : ingestRoutes({
          hub,
          ingest: new TokenAuthority({ admin: loaded.ingestToken, readonly: undefined }),
        })),
  );

  // Registry changes (any tool) tell open pages to re-read the registry view.
  const changes = new RegistryChangeListener(
    {
      databaseUrl: loaded.databaseUrl,
      policy: { connect_timeout_ms: loaded.config.registry.connect_timeout_ms },
      heartbeatMs: 5000,
    },
    {
      changed: () => hub.browsers.publish('event: registry_changed\ndata: {}\n\n'),
      listening: () => hub.browsers.publish('event: registry_changed\ndata: {}\n\n'),
      down: () => {},
    },
  );
  let address: AddressInfo;
  try {
    address = await server.listen();
  } catch (error) {
    await sql.end({ timeout: 1 });
    throw error;
  }
  hub.start();
  changes.start();
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `${loaded.tls ? 'https' : 'http'}://${host}:${address.port}`;
  logger.info(
    {
      dashboard_url: url,
      gateways: loaded.gateways.map((g) => g.name),
      ingest: loaded.ingestToken !== undefined,
    },
    LogEvent.dashboardListening,
  );
  return {
    address,
    url,
    async stop() {
      hub.stop();
      await changes.stop();
      await server.close();
      await sql.end({ timeout: 2 });
    },
  };
}
