import { Counter, Gauge, type Registry } from 'prom-client';
import { BoundedLabel, identityLabel } from './bounded-labels.js';
import { LiveCounter } from './live-counter.js';

/**
 * Per-identity series (observability.per_identity_metrics): bytes, held time and open tunnels of each
 * agent identity. Bounded: the first `maxIdentities` identities that open a tunnel get series of their
 * own, and every later one is counted under `identity=""` (no tunnel can have an empty identity: a
 * permission's subject is never empty), so totals still add up and neither memory nor the number of
 * series grows with the identities an attacker might present. Only identities that got a tunnel reach
 * these series at all, and a tunnel needs a signed permission.
 */
export class IdentitySeries {
  readonly bytes: LiveCounter<'identity' | 'direction'>;
  readonly heldSeconds: Counter<'identity' | 'direction'>;
  readonly openTunnels: Gauge<'identity'>;
  readonly label: BoundedLabel;

  constructor(registry: Registry, prefix: string, maxIdentities: number) {
    const registers = [registry];
    this.label = new BoundedLabel(maxIdentities, '');
    this.bytes = new LiveCounter(
      new Counter({
        name: `${prefix}identity_tunnel_bytes_total`,
        help: 'Bytes relayed per identity and direction (identity="": identities beyond the tracked bound)',
        labelNames: ['identity', 'direction'],
        registers,
      }),
    );
    this.heldSeconds = new Counter({
      name: `${prefix}identity_rate_limit_held_seconds_total`,
      help: 'Time held by a rate limit per identity and direction, counted when each tunnel closes',
      labelNames: ['identity', 'direction'],
      registers,
    });
    this.openTunnels = new Gauge({
      name: `${prefix}identity_open_tunnels`,
      help: 'Open tunnels per identity',
      labelNames: ['identity'],
      registers,
    });
  }

  /** The label value for a tunnel's identity (admitting it while there is room). */
  of(identity: string): string {
    return this.label.of(identityLabel(identity));
  }

  opened(identity: string): void {
    this.openTunnels.labels(this.of(identity)).inc();
  }

  closed(identity: string, up: number, down: number, heldUpMs: number, heldDownMs: number): void {
    const label = this.of(identity);
    this.openTunnels.labels(label).dec();
    this.bytes.add([label, 'client_to_dest'], up);
    this.bytes.add([label, 'dest_to_client'], down);
    if (heldUpMs > 0) this.heldSeconds.labels(label, 'client_to_dest').inc(heldUpMs / 1000);
    if (heldDownMs > 0) this.heldSeconds.labels(label, 'dest_to_client').inc(heldDownMs / 1000);
  }
}
