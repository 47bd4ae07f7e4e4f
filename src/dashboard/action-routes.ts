import type postgres from 'postgres';
import type { AdminRoute } from '../admin/admin-server.js';
import { AdminRequestError, readJsonBody, sendJson } from '../admin/http-json.js';
import { type RevocableKind, revokedAt, revokeThroughExtension } from '../registry/revocation.js';
import { type Audit, type CsrfSources, requireCsrf } from './auth-routes.js';
import { GatewayCallError } from './gateway-link.js';
import type { DashboardHub } from './hub.js';

const KINDS: Record<string, RevocableKind> = {
  permission: 'permission',
  signing_key: 'signing key',
  scope: 'scope',
};

/**
 * The operator's controls, admin role only, CSRF-checked and audited (who, what, when, result):
 * - `POST /api/tunnels/close` `{gateway, tunnel_id}` closes one tunnel, `{identity}` every tunnel of that
 *   identity on every gateway (the gateways' own kill switch, on behalf of the logged-in operator);
 * - `POST /api/revoke` `{kind: permission|signing_key|scope, id}` sets revoked_at through the registry
 *   extension's revocation functions, exactly the CLI's UPDATE, signed by no one; the gateways' live
 *   authorization then closes the tunnels it backed.
 */
export function actionRoutes(deps: {
  readonly hub: DashboardHub;
  readonly sql: postgres.Sql;
  readonly csrf: CsrfSources;
  readonly audit: Audit;
}): AdminRoute[] {
  return [
    {
      method: 'POST',
      path: '/api/tunnels/close',
      access: 'admin',
      handle: async (ctx) => {
        requireCsrf(ctx, deps.csrf);
        const body = await readJsonBody(ctx.req);
        const operator = ctx.credential?.name ?? 'operator';
        const identity = text(body, 'identity');
        const tunnelId = text(body, 'tunnel_id');
        const gateway = text(body, 'gateway');
        let closed = 0;
        const errors: string[] = [];
        let target: Record<string, string>;
        if (identity !== undefined && tunnelId === undefined) {
          target = { identity };
          for (const link of deps.hub.links) {
            try {
              closed += await link.close({ identity }, operator);
            } catch (error) {
              errors.push((error as Error).message);
            }
          }
        } else if (tunnelId !== undefined && gateway !== undefined && identity === undefined) {
          target = { gateway, tunnel_id: tunnelId };
          const link = deps.hub.link(gateway);
          if (link === undefined)
            throw new AdminRequestError('ADMIN_NOT_FOUND', `no gateway named ${JSON.stringify(gateway)}`);
          try {
            closed = await link.close({ tunnel_id: tunnelId }, operator);
          } catch (error) {
            if (error instanceof GatewayCallError && error.code === 'ADMIN_FORBIDDEN') {
              errors.push(`${error.message} (the dashboard holds that gateway's read-only token)`);
            } else errors.push((error as Error).message);
          }
        } else {
          throw new AdminRequestError('ADMIN_BAD_REQUEST', 'give {"identity"} or {"gateway", "tunnel_id"}');
        }
        deps.audit(ctx, 'tunnels close', target, { closed, errors: errors.length });
        sendJson(ctx.res, errors.length > 0 && closed === 0 ? 502 : 200, { closed, errors });
      },
    },
    {
      method: 'POST',
      path: '/api/revoke',
      access: 'admin',
      handle: async (ctx) => {
        requireCsrf(ctx, deps.csrf);
        const body = await readJsonBody(ctx.req);
        const kind = KINDS[text(body, 'kind') ?? ''];
        const id = text(body, 'id');
        if (kind === undefined || id === undefined) {
          throw new AdminRequestError(
            'ADMIN_BAD_REQUEST',
            'give {"kind": "permission"|"signing_key"|"scope", "id"}',
          );
        }
        const target = { kind: text(body, 'kind') ?? '', id };
        let revoked: boolean;
        try {
          revoked = await revokeThroughExtension(deps.sql, kind, id);
        } catch (error) {
          deps.audit(ctx, 'revoke', target, {
            result: 'failed',
            error: (error as Error).message.slice(0, 200),
          });
          throw new AdminRequestError(
            'ADMIN_UNAVAILABLE',
            `the registry refused the revocation: ${(error as Error).message} (is the dashboard's role made by ` +
              '`migrate --dashboard-role`, on a registry with extension version 2?)',
          );
        }
        if (revoked) {
          deps.audit(ctx, 'revoke', target, { result: 'revoked' });
          sendJson(ctx.res, 200, { revoked: true, kind: target.kind, id });
          return;
        }
        const at = await revokedAt(deps.sql, kind, id);
        if (at === undefined) {
          deps.audit(ctx, 'revoke', target, { result: 'no such row' });
          throw new AdminRequestError('ADMIN_NOT_FOUND', `there is no ${kind} ${JSON.stringify(id)}`);
        }
        deps.audit(ctx, 'revoke', target, { result: 'already revoked', revoked_at: at ?? '' });
        sendJson(ctx.res, 200, { revoked: false, already_revoked_at: at, kind: target.kind, id });
      },
    },
  ];
}

function text(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '' || v.length > 512) {
    throw new AdminRequestError(
      'ADMIN_BAD_REQUEST',
      `${key} must be a non-empty string of at most 512 characters`,
    );
  }
  return v;
}
