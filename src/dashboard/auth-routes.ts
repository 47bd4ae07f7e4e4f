import type { IncomingMessage } from 'node:http';
import type { AdminContext, AdminRoute } from '../admin/admin-server.js';
import type { TokenAuthority } from '../admin/auth.js';
import { AdminRequestError, sendJson } from '../admin/http-json.js';
import type { OperatorCertificates } from './operator-certificates.js';
import { csrfMatches, type SessionStore } from './sessions.js';

/** Where the CSRF token of an ambient credential (a session cookie, an operator certificate) comes from. */
export interface CsrfSources {
  readonly sessions: SessionStore;
  readonly certificates: OperatorCertificates;
}

/** What a route needs to audit an operator action. */
export type Audit = (
  ctx: AdminContext,
  action: string,
  target: Record<string, string>,
  result: Record<string, string | number>,
) => void;

/** Login attempts per client address per minute (tokens are long; this stops a loop, not a guess). */
const LOGIN_ATTEMPTS_PER_MINUTE = 10;
const MAX_FORM_BYTES = 4096;

/**
 * Login, logout and the session: the admin or read-only token is typed once into a plain HTML form
 * (no script on that page), checked in constant time, and exchanged for a random session id in an
 * HttpOnly, SameSite=Strict cookie (Secure and `__Host-` over TLS). The page then reads its CSRF token
 * from `GET /api/session` and sends it with every action.
 */
export function authRoutes(deps: {
  readonly sessions: SessionStore;
  readonly tokens: TokenAuthority;
  readonly certificates: OperatorCertificates;
  readonly audit: Audit;
}): AdminRoute[] {
  const attempts = new Map<string, { count: number; since: number }>();
  return [
    {
      method: 'POST',
      path: '/login',
      access: 'public',
      handle: async (ctx) => {
        const { req, res } = ctx;
        if (!sameOrigin(req))
          throw new AdminRequestError('ADMIN_FORBIDDEN', 'login from another site refused');
        const address = req.socket.remoteAddress ?? '?';
        if (!admitAttempt(attempts, address, Date.now())) {
          throw new AdminRequestError('ADMIN_TOO_MANY_REQUESTS', 'too many login attempts; wait a minute');
        }
        const form = await readForm(req);
        const role = deps.tokens.roleOfToken(form.get('token') ?? '');
        if (role === undefined) {
          deps.audit(ctx, 'login refused', {}, { result: 'wrong token' });
          res.writeHead(303, { location: '/login?failed=1', 'cache-control': 'no-store' });
          res.end();
          return;
        }
        const name = operatorName(form.get('name'));
        const { cookie, session } = deps.sessions.create(role, name);
        deps.audit(
          { ...ctx, role, credential: { role, via: 'session', name } },
          'login',
          {},
          { role, session: session.tag },
        );
        res.writeHead(303, { location: '/', 'set-cookie': cookie, 'cache-control': 'no-store' });
        res.end();
      },
    },
    {
      method: 'POST',
      path: '/api/logout',
      access: 'read',
      handle: (ctx) => {
        requireCsrf(ctx, deps);
        deps.audit(ctx, 'logout', {}, { result: 'ok' });
        sendJson(ctx.res, 200, { logged_out: true }, { 'set-cookie': deps.sessions.end(ctx.req) });
      },
    },
    {
      method: 'GET',
      path: '/api/session',
      access: 'read',
      handle: ({ req, res, credential }) => {
        const session = deps.sessions.of(req);
        sendJson(res, 200, {
          role: credential?.role,
          name: credential?.name,
          via: credential?.via,
          csrf:
            credential?.via === 'certificate'
              ? (deps.certificates.csrfFor(req) ?? null)
              : (session?.csrf ?? null),
          expires_at: session === undefined ? null : new Date(session.expiresAt).toISOString(),
        });
      },
    },
  ];
}

/**
 * An action from a browser must carry the session's CSRF token in `X-CSRF-Token` (another site can make
 * the browser send the cookie, but cannot read the token) and come from this origin. A bearer token in
 * `Authorization` is not sent by browsers on their own, so scripts using one need neither.
 */
export function requireCsrf(ctx: AdminContext, sources: CsrfSources): void {
  const via = ctx.credential?.via;
  if (via === 'token') return;
  const raw = ctx.req.headers['x-csrf-token'];
  const header = Array.isArray(raw) ? raw[0] : raw;
  const session = via === 'session' ? sources.sessions.of(ctx.req) : undefined;
  const ok =
    via === 'certificate'
      ? sources.certificates.csrfMatches(ctx.req, header)
      : session !== undefined && csrfMatches(session, header);
  if (!ok) throw new AdminRequestError('ADMIN_FORBIDDEN', 'missing or wrong X-CSRF-Token: reload the page');
  if (!sameOrigin(ctx.req))
    throw new AdminRequestError('ADMIN_FORBIDDEN', 'request from another site refused');
}

/**
 * Origin (or, failing that, Sec-Fetch-Site) says the request came from a page of this server. Browsers
 * send Origin on every POST; a request with neither header is not from a browser on another site.
 */
export function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return false;
  if (origin === undefined) return true;
  const scheme = 'encrypted' in req.socket && req.socket.encrypted ? 'https' : 'http';
  return origin === `${scheme}://${req.headers.host ?? ''}`;
}

function admitAttempt(
  attempts: Map<string, { count: number; since: number }>,
  address: string,
  at: number,
): boolean {
  const entry = attempts.get(address);
  if (entry === undefined || at - entry.since > 60_000) {
    if (attempts.size > 10_000) attempts.clear();
    attempts.set(address, { count: 1, since: at });
    return true;
  }
  entry.count++;
  return entry.count <= LOGIN_ATTEMPTS_PER_MINUTE;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/x-www-form-urlencoded\b/i.test(type)) {
    throw new AdminRequestError(
      'ADMIN_BAD_REQUEST',
      'send the login form (application/x-www-form-urlencoded)',
    );
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new AdminRequestError('ADMIN_BODY_TOO_LARGE', 'login form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** The name an operator gives at login, for the audit trail: printable, bounded; `operator` if none. */
function operatorName(raw: string | undefined | null): string {
  const name = (raw ?? '').trim();
  return /^[\x20-\x7e]{1,64}$/.test(name) ? name : 'operator';
}
