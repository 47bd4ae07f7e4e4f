import type { LeasePart } from './store.js';

interface Held {
  readonly leaseId: string;
  /** Granted and not yet handed back. */
  bytes: number;
  readonly grantedAt: number;
}

/**
 * Which leases the bytes a bucket holds came from, so that unused bytes go back to the lease (and the
 * quota slot) they were charged to. A bucket spends its bytes oldest first, so what it still holds is the
 * newest `balance` bytes of its leases: handing back takes from the newest, and leases older than the
 * balance are spent and forgotten. A lease older than the store's expiry is forgotten too (the store would
 * refuse it: it counts as spent). Allocates per lease, never per chunk.
 */
export class LeaseAccount {
  private held: Held[] = [];

  constructor(private readonly ttlMs: number) {}

  /** Leases remembered (for tests). */
  get size(): number {
    return this.held.length;
  }

  granted(leaseId: string, bytes: number, balanceAfter: number, now: number): void {
    this.held.push({ leaseId, bytes, grantedAt: now });
    this.forgetSpent(balanceAfter, now);
  }

  /** The parts of `bytes` to hand back, newest lease first; `balance` is what the bucket holds now. */
  takeBack(bytes: number, balance: number, now: number): LeasePart[] {
    this.forgetSpent(balance, now);
    const parts: LeasePart[] = [];
    let left = Math.floor(bytes);
    for (let i = this.held.length - 1; i >= 0 && left > 0; i--) {
      const lease = this.held[i]!;
      const part = Math.min(lease.bytes, left);
      if (part <= 0) continue;
      lease.bytes -= part;
      left -= part;
      parts.push({ leaseId: lease.leaseId, bytes: part });
    }
    this.held = this.held.filter((l) => l.bytes > 0);
    return parts;
  }

  /** Keeps only the newest leases that cover `balance`, and none past its expiry. */
  private forgetSpent(balance: number, now: number): void {
    let covered = 0;
    let keepFrom = this.held.length;
    while (keepFrom > 0 && covered < balance) {
      keepFrom--;
      covered += this.held[keepFrom]!.bytes;
    }
    if (keepFrom > 0) this.held = this.held.slice(keepFrom);
    // The oldest kept lease may be partly spent: only its newest part is still held.
    const first = this.held[0];
    if (first !== undefined && covered > balance) first.bytes -= covered - balance;
    const expired = now - this.ttlMs;
    if (this.held.length > 0 && this.held[0]!.grantedAt <= expired) {
      this.held = this.held.filter((l) => l.grantedAt > expired);
    }
  }
}
