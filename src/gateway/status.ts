import type { ReadinessCheck } from '../admin/health-routes.js';
import type { LiveCheck } from '../livecheck/live-check.js';
import type { RegistryHealth } from '../registry/registry-health.js';

/**
 * What the gateway knows about itself, for /readyz: ready only while it listens, is not draining, the
 * registry answers (at the schema checked at start), and open tunnels are being re-validated.
 */
export class GatewayStatus {
  listening = false;
  draining = false;
  private live: LiveCheck | undefined;

  constructor(private readonly registry: RegistryHealth) {}

  attachLiveCheck(live: LiveCheck): void {
    this.live = live;
  }

  readiness(): ReadinessCheck[] {
    return [
      {
        name: 'listening',
        ok: this.listening,
        detail: this.listening ? 'accepting agents' : 'not listening',
      },
      { name: 'draining', ok: !this.draining, detail: this.draining ? 'shutting down' : 'not shutting down' },
      {
        name: 'registry',
        ok: this.registry.isReady,
        detail: this.registry.isReady
          ? 'answering at the schema this gateway reads'
          : this.registry.isAvailable
            ? 'answering; its schema is being checked'
            : `unavailable: ${this.registry.error ?? 'no answer'}`,
      },
      {
        name: 'live_check',
        ok: this.live?.healthy === true,
        detail: this.live === undefined ? 'not started' : `mode ${this.live.mode}`,
      },
    ];
  }
}
