import type { GateObserver } from './query-gate.js';

/**
 * Whether the registry answers, as seen by the queries the gateway makes anyway (no probe of its own).
 * Only changes are reported: an outage is one `registry unavailable` line at warn, and its end one
 * `registry available`, instead of a `policy_error` deny per CONNECT being the only sign.
 */
export class RegistryHealth implements GateObserver {
  private available = true;
  private lastError: string | undefined;
  private schemaVerified = false;

  constructor(private readonly onChange: (available: boolean, error: string | undefined) => void) {}

  get isAvailable(): boolean {
    return this.available;
  }

  /** The registry answers and was found at the schema this gateway reads: CONNECTs can be decided. */
  get isReady(): boolean {
    return this.available && this.schemaVerified;
  }

  get isVerified(): boolean {
    return this.schemaVerified;
  }

  /** The schema check passed (gateway/registry-wiring.ts); from now on only availability changes. */
  verified(): void {
    this.schemaVerified = true;
  }

  get error(): string | undefined {
    return this.lastError;
  }

  settled(ok: boolean, error: unknown): void {
    if (ok) {
      this.lastError = undefined;
      if (!this.available) {
        this.available = true;
        this.onChange(true, undefined);
      }
      return;
    }
    // A query the registry refused on its own terms (bad input, a constraint) says nothing about whether
    // it is reachable; connection failures and timeouts do.
    if (!isOutage(error)) return;
    this.lastError = describeRegistryError(error);
    if (this.available) {
      this.available = false;
      this.onChange(false, this.lastError);
    }
  }
}

/**
 * Connection-level failures (driver codes, socket errors, DNS) and timeouts, as opposed to SQL errors
 * (a refused password, a missing grant), which waiting does not cure.
 */
export function isOutage(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return true;
  // SQLSTATE class 08 (connection exception), 57P0x (shutdown, crash), 57014 (statement timeout/cancel),
  // 53xxx (out of resources, too many connections).
  if (/^(08|57P0|53)/.test(code) || code === '57014') return true;
  // Anything that is not a SQLSTATE: postgres.js codes (CONNECTION_CLOSED, CONNECT_TIMEOUT, ...) and
  // Node's (ECONNREFUSED, ...).
  return !/^[0-9A-Z]{5}$/.test(code);
}

export function describeRegistryError(error: unknown): string {
  const e = error as { message?: unknown; code?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(error);
  return `${message}${typeof e?.code === 'string' ? ` (${e.code})` : ''}`.slice(0, 300);
}
