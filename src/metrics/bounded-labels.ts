import { loggedText } from '../observability/log-text.js';

/**
 * Label values taken from input someone else controls (a handshake error's code, an identity) must not
 * grow the number of series without bound: Prometheus keeps every series it ever scraped, and each one
 * costs the gateway memory too. A BoundedLabel admits the first `limit` distinct values and folds the
 * rest into one overflow value, so the series count is fixed whatever arrives.
 */
export class BoundedLabel {
  private readonly admitted = new Set<string>();

  constructor(
    private readonly limit: number,
    /** What every value past the limit (or rejected by `accept`) is counted as. */
    readonly overflow: string,
    private readonly accept: (value: string) => boolean = () => true,
  ) {}

  /** The label value to count `value` under. */
  of(value: string): string {
    if (this.admitted.has(value)) return value;
    if (!this.accept(value) || this.admitted.size >= this.limit) return this.overflow;
    this.admitted.add(value);
    return value;
  }

  get size(): number {
    return this.admitted.size;
  }
}

/**
 * An identity as a label value: escaped and cut exactly as in the log (observability/log-text.ts), so a
 * dashboard and a log query show the same text. Identities that got a tunnel carry a signed permission, so
 * they are few, but the bound holds anyway.
 */
export function identityLabel(identity: string): string {
  return loggedText(identity).text;
}

/** An error code such as `ECONNRESET` or `ERR_SSL_WRONG_VERSION_NUMBER`; anything else is not a label. */
export function isErrorCode(value: string): boolean {
  return /^[A-Z][A-Z0-9_]{1,79}$/.test(value);
}
