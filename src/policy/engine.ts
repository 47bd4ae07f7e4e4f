import type postgres from 'postgres';
import { normalizeDestination } from '../destination/normalize.js';
import { identityProblem } from '../identity/identity-rule.js';
import { QueryGate } from '../registry/query-gate.js';
import type { DenyReason, PolicyAllow, PolicyDecision, PolicyEngine } from './decision.js';
import { DecisionCache } from './decision-cache.js';
import { recheckSubjects } from './recheck.js';
import {
  checkPermissionRow,
  errorText,
  grantTiming,
  PERMISSION_ROW_COLUMNS,
  PERMISSION_ROW_FROM,
  type PermissionRow,
  type RowSubject,
  SigningKeyCache,
} from './row-check.js';
import { VerifiedSignatureCache } from './verified-signatures.js';

export type { DenyReason, PolicyAllow, PolicyDecision, PolicyEngine } from './decision.js';

/**
 * The policy engine: one prepared SELECT per CONNECT, then every check of the interop contract in JS.
 *
 * Time is the database's: every "is it valid now" is a boolean computed against PostgreSQL's now() in the
 * same statement, so gateway hosts with skewed clocks agree with each other and with the admin tooling.
 * Cached without conditions: parsed public keys and the fact that given bytes verified under a given key
 * (pure functions of the row's bytes). Cached allows (policy.decision_cache_ms) are used only while the
 * live check opens the cache gate (its notifications arrive and its re-checks succeed), and it invalidates
 * them; otherwise every row is read afresh. recheck() runs the same judgement on the rows behind open
 * tunnels (livecheck/).
 *
 * Rows are attacker-influenced (whoever can write the registry, or tamper with it): every column is
 * type-checked, NULL fails closed, and large values are cut in SQL before they cross the wire.
 */

export interface PolicyEngineOptions {
  /** Budget for waiting on a pooled connection (config policy.pool_acquire_timeout_ms). */
  acquireTimeoutMs: number;
  /** Budget for the query itself (config policy.query_timeout_ms; the server also enforces it). */
  queryTimeoutMs: number;
  /** Candidate rows examined per decision (newest not_after first). Default 8, at most 64. */
  maxCandidates?: number;
  /** config policy.decision_cache_ms: how long an allow may be reused; 0 or absent = never. */
  decisionCacheMs?: number;
  /** Clock of the decision cache (tests); monotonic milliseconds by default. */
  now?: () => number;
  /** Bounds the registry queries in flight (shared with the live check); by default one of its own. */
  gate?: QueryGate;
  /** Without `gate`: how many queries may be in flight (default: the pool's size). */
  maxInFlight?: number;
}

const KEY_CACHE_ENTRIES = 1024;
/** ~60 bytes each; enough for the live permissions of a large fleet, bounded against junk rows. */
const VERIFIED_SIGNATURE_ENTRIES = 16_384;
/** Cached allows (identity, key, destination); bounded so a fleet cannot grow the gateway's memory. */
const DECISION_CACHE_ENTRIES = 65_536;

/**
 * Only rows with revoked_at IS NULL are read: that is what the interop partial index covers, so the lookup
 * stays an index scan however large the registry grows. Reading revoked rows too (to log
 * `permission_revoked`) would need a sequential scan that any client could trigger with a bogus CONNECT;
 * a revoked permission therefore denies as `no_matching_permission`.
 */
function candidateQuery(limit: number): string {
  return `
SELECT${PERMISSION_ROW_COLUMNS}${PERMISSION_ROW_FROM}
WHERE p.subject_identity = $1 AND p.destination = $2 AND p.subject_public_key_spki_der = $3
  AND p.revoked_at IS NULL
ORDER BY p.not_after DESC
LIMIT ${limit}`;
}

type Row = PermissionRow;

type Deny = Extract<PolicyDecision, { allowed: false }>;

/**
 * How far a candidate got through the checks: when every candidate fails, the one that got furthest
 * explains the deny best (a row that only lacks scope says more than a row that expired).
 */
const DEPTH: Partial<Record<DenyReason, number>> = {
  no_matching_permission: 0,
  permission_revoked: 1,
  permission_not_yet_valid: 2,
  permission_expired: 2,
  signer_unknown: 3,
  signer_revoked: 4,
  signer_not_yet_valid: 5,
  signer_expired: 5,
  signer_bad_key: 6,
  bad_signature: 7,
  scope_missing: 8,
  scope_insufficient: 9,
};

export function createPolicyEngine(sql: postgres.Sql, opts: PolicyEngineOptions): PolicyEngine {
  const limit = Math.min(64, Math.max(1, Math.trunc(opts.maxCandidates ?? 8)));
  const query = candidateQuery(limit);
  const deadlineMs = Math.max(1, opts.acquireTimeoutMs + opts.queryTimeoutMs);
  const keys = new SigningKeyCache(KEY_CACHE_ENTRIES);
  const verified = new VerifiedSignatureCache(VERIFIED_SIGNATURE_ENTRIES);
  const now = opts.now ?? (() => performance.now());
  const cacheMs = Math.max(0, Math.trunc(opts.decisionCacheMs ?? 0));
  const cache = cacheMs > 0 ? new DecisionCache(cacheMs, DECISION_CACHE_ENTRIES, now) : undefined;
  // Without a shared gate, as many queries in flight as the pool has connections (see QueryGate).
  const gate = opts.gate ?? new QueryGate(opts.maxInFlight ?? sql.options.max);
  // Until the live check says otherwise, the cache is not used (fail closed: no cached allow without a
  // working revocation path).
  let cacheUsable: () => boolean = () => false;
  let closed = false;

  async function decide(identity: string, spki: Buffer, destination: string): Promise<PolicyDecision> {
    try {
      if (closed) return deny('policy_error', 'policy engine is closed');
      const input = checkInput(identity, spki, destination);
      if ('reason' in input) return input;
      const useCache = cache !== undefined && cacheUsable();
      const cacheKey = useCache ? cache.keyOf(input.identity, input.spki, input.destination) : '';
      if (useCache) {
        const hit = cache.get(cacheKey);
        if (hit) return { ...hit, cached: true };
      }
      const generation = cache?.generation ?? 0;
      const queriedAt = now();
      const rows = await runQuery(input.spki, input.identity, input.destination);
      const verdict = 'rows' in rows ? judge(rows.rows, input, keys, verified, queriedAt) : rows;
      if (!verdict.allowed) {
        cache?.forget(cacheKey);
        return verdict;
      }
      if (useCache && !closed) cache.put(cacheKey, verdict, queriedAt, generation);
      return verdict;
    } catch (err) {
      // Belt and braces: nothing above should throw, but decide() must never reject.
      return deny('policy_error', errorText(err));
    }
  }

  async function runQuery(
    spki: Buffer,
    identity: string,
    destination: string,
  ): Promise<{ rows: Row[] } | Deny> {
    const result = await gate.run(
      () => sql.unsafe<Row[]>(query, [identity, destination, spki], { prepare: true }),
      deadlineMs,
    );
    if (result.ok) return { rows: Array.isArray(result.value) ? [...result.value] : [] };
    return deny(result.kind === 'timeout' ? 'policy_timeout' : 'policy_error', errorText(result.error));
  }

  return {
    decide,
    recheck: (subjects) =>
      closed
        ? Promise.resolve({ ok: false, error: 'policy engine is closed' })
        : recheckSubjects({ sql, gate, keys, verified, now, deadlineMs }, subjects),
    setCacheGate(usable) {
      cacheUsable = usable;
    },
    invalidateCache() {
      cache?.clear();
    },
    forgetPermissions(permissionIds) {
      cache?.forgetPermissions(new Set(permissionIds));
    },
    async close(timeoutS = 5) {
      if (closed) return;
      closed = true;
      keys.clear();
      verified.clear();
      cache?.clear();
      await sql.end({ timeout: timeoutS });
    },
  };
}

type CheckedInput = RowSubject;

function checkInput(identity: unknown, spki: unknown, destination: unknown): CheckedInput | Deny {
  if (typeof identity !== 'string' || identity === '') return deny('no_identity', 'empty identity');
  // The certificate reader already refuses these; the engine is also called by tools and tests.
  const problem = identityProblem(identity);
  if (problem !== undefined) return deny('malformed_identity', problem);
  if (!(spki instanceof Uint8Array) || spki.length === 0) {
    return deny('policy_error', 'client public key (SPKI) missing: the caller must pass the certificate key');
  }
  if (typeof destination !== 'string') return deny('policy_error', 'destination is not a string');
  let normalized: string;
  try {
    normalized = normalizeDestination(destination);
  } catch (err) {
    return deny('policy_error', errorText(err));
  }
  const bytes = Buffer.isBuffer(spki) ? spki : Buffer.from(spki.buffer, spki.byteOffset, spki.byteLength);
  return { identity, spki: bytes, destination: normalized };
}

/** Allows on the first candidate that passes every check; otherwise reports the most promising failure. */
function judge(
  rows: Row[],
  input: CheckedInput,
  keys: SigningKeyCache,
  verified: VerifiedSignatureCache,
  queriedAt: number,
): Deny | PolicyAllow {
  let best: { reason: DenyReason; detail: string; depth: number } | undefined;
  for (const row of rows) {
    const verdict = checkPermissionRow(row, input, keys, verified);
    if (verdict.ok) {
      return {
        allowed: true,
        permissionId: verdict.permissionId,
        signingKeyId: verdict.signingKeyId,
        scopeId: verdict.scopeId,
        ...grantTiming(row, queriedAt),
        cached: false,
      };
    }
    const depth = DEPTH[verdict.reason] ?? 0;
    if (best === undefined || depth > best.depth) best = { ...verdict, depth };
  }
  if (best === undefined) {
    return deny('no_matching_permission', 'no live permission row for this identity, destination and key');
  }
  return deny(best.reason, best.detail);
}

function deny(reason: DenyReason, detail: string): Deny {
  return { allowed: false, reason, detail };
}
