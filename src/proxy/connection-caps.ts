/** server.max_connections and server.max_connections_per_source. */
export interface ConnectionCaps {
  readonly maxConnections: number;
  readonly maxPerSource: number;
}

export interface CapRefusal {
  readonly reason: 'max_connections' | 'max_connections_per_source';
  readonly detail: string;
}

/**
 * Concurrent TLS connections, in total and per source address, counted from the TCP accept (before any
 * handshake work, so a flood of connections that never finish TLS is capped too). Without it, clients
 * holding connections could exhaust the process's file descriptors, after which legitimate clients get
 * ECONNRESET and nothing is logged.
 */
export class ConnectionCounter {
  private total = 0;
  private readonly perSource = new Map<string, number>();

  constructor(private caps: ConnectionCaps) {}

  get open(): number {
    return this.total;
  }

  /** Takes a place for a connection from `source`, or says which cap it would break. */
  admit(source: string): CapRefusal | undefined {
    if (this.total >= this.caps.maxConnections) {
      return {
        reason: 'max_connections',
        detail: `${this.total} connections open, server.max_connections = ${this.caps.maxConnections}`,
      };
    }
    const n = this.perSource.get(source) ?? 0;
    if (n >= this.caps.maxPerSource) {
      return {
        reason: 'max_connections_per_source',
        detail: `${n} connections open from this address, server.max_connections_per_source = ${this.caps.maxPerSource}`,
      };
    }
    this.total++;
    this.perSource.set(source, n + 1);
    return undefined;
  }

  release(source: string): void {
    const n = this.perSource.get(source);
    if (n === undefined) return;
    this.total--;
    if (n <= 1) this.perSource.delete(source);
    else this.perSource.set(source, n - 1);
  }
}
