import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type postgres from 'postgres';
import type { BucketSpec } from '../config/rate-limit.js';
import { openRegistry } from '../registry/connect.js';
import { readExtensionVersion } from '../registry/migrate.js';
import { type GateObserver, QueryGate } from '../registry/query-gate.js';
import type { BudgetBucketName } from '../session/events.js';
import { type BudgetPeek, peekBudget } from './peek.js';
import type {
  BudgetStore,
  LeasePart,
  LeaseRequest,
  StoreAdmission,
  StoreLease,
  TunnelRequest,
} from './store.js';

/** The extension version whose functions this store calls (migrations/extension/0003_budgets.sql). */
export const BUDGET_EXTENSION_VERSION = 3;

/**
 * A lease nobody hands back within this long counts as spent: long enough for any idle return (a second)
 * and a store outage of most of a minute, short enough that expired rows do not pile up.
 */
export const LEASE_TTL_S = 60;
/** A crashed gateway's tunnel counts stop counting after this long; heartbeats come every 3 s. */
export const TUNNEL_TTL_S = 15;
export const SYNC_INTERVAL_MS = 3000;

/** Budget calls are a few index lookups and one row lock: well under this even on a loaded server. */
const CALL_TIMEOUT_MS = 1000;
/** How long a stopping gateway waits for its last calls (leases handed back) before closing the pool. */
const STOP_WAIT_MS = 2000;
/** Its own small pool: a budget call never waits behind CONNECT decisions, nor they behind it. */
const POOL_SIZE = 2;

export class BudgetStoreError extends Error {
  override name = 'BudgetStoreError';
}

export interface PostgresBudgetStoreOptions {
  readonly databaseUrl: string;
  readonly connectTimeoutMs: number;
  /** Sees every call's outcome and duration (the store's health, lease latency). */
  readonly observer: GateObserver;
}

/**
 * The budget store in the registry database, extension agent_gateway_ext (version 3): every call is one
 * SECURITY DEFINER function, decided on the database clock. Calls go through a QueryGate (deadline, no
 * cancel of a query still waiting for its connection, see registry/query-gate.ts), and a call that fails
 * or times out rejects: the caller treats it as nothing granted.
 */
export class PostgresBudgetStore implements BudgetStore {
  /** Unique per process start, so a restarted gateway never inherits its crashed predecessor's counts. */
  readonly gatewayId = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly sql: postgres.Sql;
  private readonly gate: QueryGate;
  /** Calls not settled yet: stop() lets them finish (hand-backs made while the gateway stops). */
  private readonly pending = new Set<Promise<unknown>>();

  constructor(options: PostgresBudgetStoreOptions) {
    this.sql = openRegistry(
      options.databaseUrl,
      {
        max_connections: POOL_SIZE,
        connect_timeout_ms: options.connectTimeoutMs,
        query_timeout_ms: CALL_TIMEOUT_MS,
      },
      { applicationName: 'agent-gateway budgets' },
    );
    this.gate = new QueryGate(POOL_SIZE, options.observer);
  }

  /**
   * Refuses to run on a registry without the budget functions or with a role that may not call them, with
   * what to do: `shared = true` must never quietly fall back to per-process limits.
   */
  async check(): Promise<void> {
    let version: number;
    try {
      version = await readExtensionVersion(this.sql);
    } catch (err) {
      throw new BudgetStoreError(`cannot read the registry's extension version: ${(err as Error).message}`);
    }
    if (version < BUDGET_EXTENSION_VERSION) {
      throw new BudgetStoreError(
        `rate_limit.shared = true needs the registry extension agent_gateway_ext at version ` +
          `${BUDGET_EXTENSION_VERSION} (found ${version}): run \`agent-gateway migrate\` with an admin role`,
      );
    }
    try {
      await this.sync(new Map());
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const hint =
        code === '42501'
          ? ': the gateway role may not call the budget functions; run `agent-gateway migrate --gateway-role NAME` again to grant them'
          : '';
      throw new BudgetStoreError(`the budget store refused a heartbeat: ${(err as Error).message}${hint}`);
    }
  }

  async lease(r: LeaseRequest): Promise<StoreLease> {
    const [row] = await this.call(
      () => this.sql<LeaseRow[]>`
        SELECT lease_id, granted, retry_ms, quota_exhausted, announce, quota_used
        FROM agent_gateway_ext.budget_lease(${this.gatewayId}, ${r.identity}, ${r.bucket}, ${r.bytesPerSecond},
          ${r.burstBytes}, ${r.quota.bytes}, ${r.quota.windowS}, ${Math.floor(r.want)}, ${Math.ceil(r.min)},
          ${LEASE_TTL_S})`,
    );
    if (row === undefined) throw new BudgetStoreError('budget_lease returned no row');
    return {
      leaseId: row.lease_id ?? undefined,
      granted: Number(row.granted),
      retryMs: row.retry_ms === null ? undefined : Number(row.retry_ms),
      quotaExhausted: row.quota_exhausted,
      announce: row.announce,
      quotaUsed: row.quota_used === null ? undefined : Number(row.quota_used),
    };
  }

  async giveBack(parts: readonly LeasePart[]): Promise<number> {
    if (parts.length === 0) return 0;
    const ids = parts.map((p) => p.leaseId);
    const bytes = parts.map((p) => Math.floor(p.bytes));
    const [row] = await this.call(
      () => this.sql<{ back: string }[]>`
        SELECT agent_gateway_ext.budget_return(${this.gatewayId}, ${ids}::bigint[], ${bytes}::bigint[]) AS back`,
    );
    return Number(row?.back ?? 0);
  }

  async admitTunnel(r: TunnelRequest): Promise<StoreAdmission> {
    const [row] = await this.call(
      () => this.sql<AdmitRow[]>`
        SELECT status, open_tunnels, retry_after_s, direction
        FROM agent_gateway_ext.budget_tunnel_admit(${this.gatewayId}, ${r.identity}, ${r.maxTunnels}, ${TUNNEL_TTL_S},
          ${r.uploadQuota.bytes}, ${r.uploadQuota.windowS}, ${r.downloadQuota.bytes}, ${r.downloadQuota.windowS})`,
    );
    if (row === undefined) throw new BudgetStoreError('budget_tunnel_admit returned no row');
    switch (row.status) {
      case 'ok':
      case 'too_many_tunnels':
        return { status: row.status, openTunnels: row.open_tunnels };
      case 'over_quota':
        return {
          status: 'over_quota',
          direction: row.direction === 'download' ? 'download' : 'upload',
          retryAfterS: row.retry_after_s ?? 0,
        };
      default:
        throw new BudgetStoreError(`budget_tunnel_admit answered ${JSON.stringify(row.status)}`);
    }
  }

  async releaseTunnel(identity: string): Promise<void> {
    await this.call(
      () => this.sql`SELECT agent_gateway_ext.budget_tunnel_release(${this.gatewayId}, ${identity})`,
    );
  }

  async sync(counts: ReadonlyMap<string, number>): Promise<void> {
    const identities = [...counts.keys()];
    const values = identities.map((i) => counts.get(i)!);
    await this.call(
      () => this.sql`
        SELECT agent_gateway_ext.budget_sync(${this.gatewayId}, ${identities}::text[], ${values}::integer[],
          ${TUNNEL_TTL_S})`,
    );
  }

  /** One bucket as the store holds it now, judged by its own arithmetic (for the dashboard's quota view). */
  async peek(identity: string, bucket: BudgetBucketName, spec: BucketSpec): Promise<BudgetPeek> {
    return this.call(() => peekBudget(this.sql, identity, bucket, spec));
  }

  async stop(): Promise<void> {
    await Promise.race([
      Promise.allSettled([...this.pending]),
      new Promise((r) => setTimeout(r, STOP_WAIT_MS)),
    ]);
    try {
      await this.call(() => this.sql`SELECT agent_gateway_ext.budget_gateway_stop(${this.gatewayId})`);
    } catch {
      // Unreachable at shutdown: the counts expire on their own within TUNNEL_TTL_S.
    }
    await this.sql.end({ timeout: 2 }).catch(() => undefined);
  }

  private async call<T>(start: () => Promise<T>): Promise<T> {
    const running = this.gate.run(start, CALL_TIMEOUT_MS);
    this.pending.add(running);
    try {
      const result = await running;
      if (!result.ok) throw result.error;
      return result.value;
    } finally {
      this.pending.delete(running);
    }
  }
}

interface LeaseRow {
  lease_id: string | null;
  granted: string;
  retry_ms: string | null;
  quota_exhausted: boolean;
  announce: boolean;
  quota_used: string | null;
}

interface AdmitRow {
  status: string;
  open_tunnels: number;
  retry_after_s: number | null;
  direction: string | null;
}
