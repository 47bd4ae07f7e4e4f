import type { AdminRoute } from './admin-server.js';
import { sendJson } from './http-json.js';

/** One condition of readiness, as /readyz reports it. */
export interface ReadinessCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** What the gateway knows about its own state (gateway/status.ts). */
export interface HealthSource {
  readiness(): readonly ReadinessCheck[];
}

/**
 * `/healthz` is liveness: the process answers (its event loop runs). `/readyz` is readiness: every check
 * holds (listening, registry answering at the right schema, open tunnels being re-validated, not
 * draining); a load balancer sends agents elsewhere on 503. Both answer without a credential, because
 * probes rarely carry one, and say nothing an agent could not learn by trying.
 */
export function healthRoutes(source: HealthSource): AdminRoute[] {
  return [
    {
      method: 'GET',
      path: '/healthz',
      access: 'public',
      handle: ({ res }) => sendJson(res, 200, { status: 'ok' }),
    },
    {
      method: 'GET',
      path: '/readyz',
      access: 'public',
      handle: ({ res }) => {
        const checks = source.readiness();
        const ready = checks.every((c) => c.ok);
        sendJson(res, ready ? 200 : 503, { ready, checks });
      },
    },
  ];
}
