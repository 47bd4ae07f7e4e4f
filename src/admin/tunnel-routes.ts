import type { TunnelView } from '../proxy/open-tunnels.js';
import type { OperatorAction } from '../session/events.js';
import type { TunnelSession } from '../session/tunnel-session.js';
import type { AdminContext, AdminRoute } from './admin-server.js';
import { AdminRequestError, readJsonBody, sendJson } from './http-json.js';

/** Which tunnels an operator means: exactly one of these. */
export type TunnelSelector =
  | { readonly identity: string }
  | { readonly permissionId: string }
  | { readonly signingKeyId: string }
  | { readonly tunnelId: string };

/** The open tunnels, as the admin API sees and controls them (gateway wiring over proxy/open-tunnels.ts). */
export interface TunnelControl {
  list(): readonly TunnelView[];
  /** Closes the selected tunnels with close cause `operator`; returns how many. */
  close(selector: TunnelSelector, reason: string): number;
  /** Tells the audit trail (and whoever else subscribes) who did what. */
  audit(action: OperatorAction): void;
}

const SELECTOR_FIELDS = {
  identity: 'identity',
  permission_id: 'permissionId',
  signing_key_id: 'signingKeyId',
  tunnel_id: 'tunnelId',
} as const;

/**
 * `GET /v1/tunnels` lists the open tunnels (read role), optionally filtered by the same fields as close;
 * `POST /v1/tunnels/close` closes the tunnels of one identity, permission, signing key or one tunnel
 * (admin role): the incident kill switch, which revokes nothing, so a reconnect with a valid permission
 * is allowed again.
 */
export function tunnelRoutes(
  control: TunnelControl,
  now: () => number = () => performance.now(),
): AdminRoute[] {
  return [
    {
      method: 'GET',
      path: '/v1/tunnels',
      access: 'read',
      handle: ({ res, url }) => {
        const filter = selectorFromQuery(url.searchParams);
        const at = now();
        const tunnels = control
          .list()
          .filter((t) => filter === undefined || matches(t.session, filter))
          .map((t) => tunnelJson(t, at));
        sendJson(res, 200, { tunnels });
      },
    },
    {
      method: 'POST',
      path: '/v1/tunnels/close',
      access: 'admin',
      handle: async (ctx: AdminContext) => {
        const { operator, ...body } = await readJsonBody(ctx.req);
        const selector = selectorFrom(body);
        const onBehalfOf = operatorOf(operator);
        const [field, value] = Object.entries(selector)[0] as [string, string];
        const who = `${ctx.credential?.name ?? `${ctx.role} token`} from ${ctx.peer}${
          onBehalfOf === undefined ? '' : ` for ${JSON.stringify(onBehalfOf)}`
        }`;
        const closed = control.close(
          selector,
          `closed by an operator (${who}): ${field} ${JSON.stringify(value)}`,
        );
        control.audit({
          action: 'tunnels close',
          role: ctx.role ?? 'none',
          peer: ctx.peer,
          ...(onBehalfOf === undefined ? {} : { operator: onBehalfOf }),
          target: { [snake(field)]: value },
          result: { closed },
        });
        sendJson(ctx.res, 200, { closed });
      },
    },
  ];
}

export function matches(session: TunnelSession, selector: TunnelSelector): boolean {
  if ('identity' in selector) return session.identity === selector.identity;
  if ('permissionId' in selector) return session.grant.permissionId === selector.permissionId;
  if ('signingKeyId' in selector) return session.grant.signingKeyId === selector.signingKeyId;
  return session.id === selector.tunnelId;
}

/** One tunnel as JSON (the field names of the log lines where they exist). */
export function tunnelJson(t: TunnelView, at: number): Record<string, unknown> {
  const s = t.session;
  return {
    tunnel_id: s.id,
    source_identity: s.identity,
    spki_sha256: s.spkiFingerprint,
    dest_authority: s.destination.authority,
    dest_addr: s.destAddr,
    protocol: s.protocol,
    source_peer_addr: s.peerAddr,
    permission_id: s.grant.permissionId,
    signing_key_id: s.grant.signingKeyId,
    scope_id: s.grant.scopeId,
    opened_at: new Date(s.openedAt).toISOString(),
    age_ms: Math.max(0, Math.round(at - s.openedAtMono)),
    bytes_client_to_dest: t.bytesClientToDest,
    bytes_dest_to_client: t.bytesDestToClient,
    throttled: t.throttled,
    closes_in_ms: Number.isFinite(t.deadlineMono) ? Math.max(0, Math.round(t.deadlineMono - at)) : null,
    trace_id: s.trace?.traceId ?? null,
  };
}

/**
 * `operator`: who a tool acting for a person (the dashboard) says that person is, for the audit trail
 * only; it grants nothing (the credential's role decides). Printable text, at most 128 characters.
 */
function operatorOf(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^[\x20-\x7e]{1,128}$/.test(value)) {
    throw new AdminRequestError('ADMIN_BAD_REQUEST', 'operator must be 1-128 printable ASCII characters');
  }
  return value;
}

function selectorFrom(body: Record<string, unknown>): TunnelSelector {
  const given = Object.keys(SELECTOR_FIELDS).filter((k) => body[k] !== undefined);
  const unknown = Object.keys(body).filter((k) => !(k in SELECTOR_FIELDS));
  if (unknown.length > 0) {
    throw new AdminRequestError(
      'ADMIN_BAD_REQUEST',
      `unknown field ${JSON.stringify(unknown[0])}; give one of ${names()}`,
    );
  }
  if (given.length !== 1) throw new AdminRequestError('ADMIN_BAD_REQUEST', `give exactly one of ${names()}`);
  const key = given[0] as keyof typeof SELECTOR_FIELDS;
  const value = body[key];
  if (typeof value !== 'string' || value === '') {
    throw new AdminRequestError('ADMIN_BAD_REQUEST', `${key} must be a non-empty string`);
  }
  return { [SELECTOR_FIELDS[key]]: value } as TunnelSelector;
}

function selectorFromQuery(params: URLSearchParams): TunnelSelector | undefined {
  const body: Record<string, unknown> = {};
  for (const [k, v] of params) body[k] = v;
  return Object.keys(body).length === 0 ? undefined : selectorFrom(body);
}

function names(): string {
  return Object.keys(SELECTOR_FIELDS).join(', ');
}

function snake(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
