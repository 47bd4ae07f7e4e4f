import type postgres from 'postgres';
import type { BucketSpec } from '../config/rate-limit.js';
import type { BudgetBucketName } from '../session/events.js';

/** One bucket of an identity as the store holds it now (database clock), judged under given limits. */
export interface BudgetPeek {
  /** Tokens in the shared bucket now; undefined when the bucket has no rate. */
  readonly tokens: number | undefined;
  /** Bytes charged to the quota window now (leased counts as used); undefined without a quota. */
  readonly quotaUsed: number | undefined;
  /** Seconds until enough of the window frees for 64 KiB (or the quota, if smaller) to fit again. */
  readonly quotaRetryS: number | undefined;
  /** Leased out to gateways and not handed back (unexpired leases). */
  readonly leased: number;
  /** Tunnels the identity has open on all gateways (unexpired counts). */
  readonly openTunnels: number;
}

/** Identities that have any budget state in the store. */
export async function listBudgetIdentities(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql<
    { identity: string }[]
  >`SELECT agent_gateway_ext.budget_list_identities() AS identity`;
  return rows.map((r) => r.identity);
}

/** Reads one bucket through the store's own arithmetic (budget_peek), so what is shown is what is enforced. */
export async function peekBudget(
  sql: postgres.Sql,
  identity: string,
  bucket: BudgetBucketName,
  spec: BucketSpec,
): Promise<BudgetPeek> {
  const quota =
    bucket === 'total' ? { bytes: 0, windowS: 86_400 } : (spec.quota ?? { bytes: 0, windowS: 86_400 });
  const [row] = await sql<
    {
      tokens: number | null;
      quota_used: string | null;
      quota_retry_s: number | null;
      leased: string;
      open_tunnels: number;
    }[]
  >`SELECT tokens, quota_used, quota_retry_s, leased, open_tunnels
    FROM agent_gateway_ext.budget_peek(${identity}, ${bucket}, ${spec.bytesPerSecond}, ${spec.burstBytes},
      ${quota.bytes}, ${quota.windowS})`;
  if (row === undefined) throw new Error('budget_peek returned no row');
  return {
    tokens: row.tokens ?? undefined,
    quotaUsed: quota.bytes > 0 && row.quota_used !== null ? Number(row.quota_used) : undefined,
    quotaRetryS: row.quota_retry_s ?? undefined,
    leased: Number(row.leased),
    openTunnels: row.open_tunnels,
  };
}
