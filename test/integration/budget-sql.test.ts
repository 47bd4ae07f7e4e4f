import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';

/**
 * The budget arithmetic of migrations/extension/0003_budgets.sql, with the clock injected: every *_at
 * function takes "now" as an argument (the gateway's functions pass clock_timestamp()), so windows, slots
 * and refills are checked to the byte at chosen instants, without sleeping or asserting durations.
 */

let db: FreshDatabase;
const KiB = 1024;
const MiB = 1024 * KiB;
const T0 = Date.parse('2026-03-01T00:00:00Z');

before(async () => {
  db = await freshDatabase();
});

after(async () => {
  await db?.drop();
});

/** An instant `ms` after T0, as the timestamptz text the functions take. */
function at(ms: number): string {
  return new Date(T0 + ms).toISOString();
}

interface Lease {
  lease_id: string | null;
  granted: number;
  retry_ms: number | null;
  quota_exhausted: boolean;
  announce: boolean;
}

interface LeaseArgs {
  gateway?: string;
  identity: string;
  bucket?: 'upload' | 'download' | 'total';
  rate?: number;
  burst?: number;
  quota?: number;
  windowS?: number;
  want: number;
  min?: number;
  ttlS?: number;
  ms: number;
}

async function lease(a: LeaseArgs): Promise<Lease> {
  const [row] = await db.sql<
    (Omit<Lease, 'granted' | 'retry_ms'> & { granted: string; retry_ms: string | null })[]
  >`
    SELECT * FROM agent_gateway_ext.budget_lease_at(${a.gateway ?? 'g1'}, ${a.identity}, ${a.bucket ?? 'upload'},
      ${a.rate ?? 0}, ${a.burst ?? 0}, ${a.quota ?? 0}, ${a.windowS ?? 86_400}, ${a.want}, ${a.min ?? 1},
      ${a.ttlS ?? 60}, ${at(a.ms)})`;
  return {
    ...row!,
    granted: Number(row!.granted),
    retry_ms: row!.retry_ms === null ? null : Number(row!.retry_ms),
  };
}

async function giveBack(gateway: string, ids: string[], bytes: number[], ms: number): Promise<number> {
  const [row] = await db.sql<{ back: string }[]>`
    SELECT agent_gateway_ext.budget_return_at(${gateway}, ${ids}::bigint[], ${bytes}::bigint[], ${at(ms)}) AS back`;
  return Number(row!.back);
}

describe('token bucket on the database clock', () => {
  test('starts full, grants what it holds, refills at the rate up to the burst, never more', async () => {
    const base = { identity: 'tb-1', rate: 1 * MiB, burst: 64 * KiB };
    assert.equal((await lease({ ...base, want: 1 * MiB, ms: 0 })).granted, 64 * KiB);
    // 10 ms later: 10 ms of the rate.
    assert.equal((await lease({ ...base, want: 1 * MiB, ms: 10 })).granted, Math.floor(MiB * 0.01));
    // Idle for a minute: the burst, not a minute of the rate.
    assert.equal((await lease({ ...base, want: 10 * MiB, ms: 60_010 })).granted, 64 * KiB);
  });

  test('below the minimum it grants nothing and says when the minimum will be there', async () => {
    const base = { identity: 'tb-2', rate: 1000, burst: 1000 };
    assert.equal((await lease({ ...base, want: 1000, ms: 0 })).granted, 1000);
    const none = await lease({ ...base, want: 1000, min: 500, ms: 100 });
    assert.equal(none.granted, 0);
    assert.equal(none.lease_id, null);
    // 100 bytes have accrued; 400 more take 400 ms at 1000 B/s.
    assert.equal(none.retry_ms, 400);
    assert.equal(none.quota_exhausted, false);
    assert.equal((await lease({ ...base, want: 1000, min: 500, ms: 500 })).granted, 500);
  });

  test('a clock that steps back adds nothing', async () => {
    const base = { identity: 'tb-3', rate: 1000, burst: 1000 };
    await lease({ ...base, want: 1000, ms: 5000 });
    assert.equal((await lease({ ...base, want: 1000, ms: 1000 })).granted, 0);
  });

  test('unused bytes go back up to the burst; an expired lease does not', async () => {
    const base = { identity: 'tb-4', rate: 1000, burst: 1000, ttlS: 10 };
    const first = await lease({ ...base, want: 600, ms: 0 });
    const second = await lease({ ...base, want: 400, ms: 0 });
    assert.equal(first.granted + second.granted, 1000);
    assert.equal(await giveBack('g1', [first.lease_id!], [600], 0), 600);
    // A second return of the same bytes takes nothing more (the lease is gone).
    assert.equal(await giveBack('g1', [first.lease_id!], [600], 0), 0);
    // Another gateway cannot return this gateway's lease.
    assert.equal(await giveBack('g2', [second.lease_id!], [400], 0), 0);
    assert.equal((await lease({ ...base, want: 1000, ms: 0 })).granted, 600);
    // Past its expiry the lease counts as spent.
    assert.equal(await giveBack('g1', [second.lease_id!], [400], 10_000), 0);
  });
});

describe('quota over a sliding window', () => {
  const W = 86_400;
  const SLOT_MS = 60_000; // a day's window has one-minute slots

  test('no window of its length holds more than the quota, across any calendar boundary', async () => {
    const base = { identity: 'q-1', quota: 10 * MiB, windowS: W };
    // Spend it all at 23:59 …
    const late = 86_400_000 - SLOT_MS;
    assert.equal((await lease({ ...base, want: 10 * MiB, ms: late })).granted, 10 * MiB);
    // … and a fixed calendar day would allow it again at 00:01: a sliding window does not.
    const refused = await lease({ ...base, want: 1, ms: 86_400_000 + SLOT_MS });
    assert.equal(refused.granted, 0);
    assert.equal(refused.quota_exhausted, true);
    // The 23:59 slot ends at 24:00 and leaves the window a day later (+ the slot: the scheme's error).
    assert.equal(refused.retry_ms, 86_400_000 - SLOT_MS);
    assert.equal((await lease({ ...base, want: 1, ms: late + SLOT_MS + W * 1000 - 1 })).granted, 0);
    assert.equal((await lease({ ...base, want: 1, ms: late + SLOT_MS + W * 1000 })).granted, 1);
  });

  test('random requests at random times: every window of the quota length stays within the quota', async () => {
    const quota = 1_000_000;
    const windowS = 3600; // 3 s slots
    let seed = 0x2545f491;
    const random = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    const grants: Array<{ ms: number; bytes: number }> = [];
    let ms = 0;
    for (let i = 0; i < 400; i++) {
      ms += Math.floor(random() * 60_000);
      const want = 1 + Math.floor(random() * 200_000);
      const g = await lease({ identity: 'q-2', quota, windowS, want, ms });
      if (g.granted > 0) grants.push({ ms, bytes: g.granted });
    }
    assert.ok(grants.length > 20, 'the sequence must exercise the quota repeatedly');
    let most = 0;
    for (const start of grants) {
      const inWindow = grants
        .filter((g) => g.ms >= start.ms && g.ms < start.ms + windowS * 1000)
        .reduce((n, g) => n + g.bytes, 0);
      most = Math.max(most, inWindow);
    }
    assert.ok(most <= quota, `${most} bytes in one window, quota ${quota}`);
    // And it is used: some window reaches at least 80% of the quota.
    assert.ok(most >= 0.8 * quota, `only ${most} bytes in the fullest window`);
  });

  test('returned bytes go back to the slot they were charged to', async () => {
    const base = { identity: 'q-3', quota: 1000, windowS: W };
    const g = await lease({ ...base, want: 1000, ms: 0 });
    assert.equal(g.granted, 1000);
    assert.equal((await lease({ ...base, want: 1, ms: 1 })).granted, 0);
    assert.equal(await giveBack('g1', [g.lease_id!], [300], 2), 300);
    assert.equal((await lease({ ...base, want: 1000, ms: 3 })).granted, 300);
  });

  test('the download quota is its own: spending uploads leaves downloads untouched, and the other way round', async () => {
    const up = { identity: 'q-6', bucket: 'upload' as const, quota: 1000, windowS: 3600 };
    const down = { identity: 'q-6', bucket: 'download' as const, quota: 500, windowS: 60 };
    assert.equal((await lease({ ...up, want: 1000, ms: 0 })).granted, 1000);
    assert.equal((await lease({ ...down, want: 1000, ms: 0 })).granted, 500);
    assert.equal((await lease({ ...up, want: 1, ms: 1 })).quota_exhausted, true);
    assert.equal((await lease({ ...down, want: 1, ms: 1 })).quota_exhausted, true);
    // The download window (60 s, one-second slots) frees long before the upload one (an hour).
    assert.equal((await lease({ ...down, want: 500, ms: 61_000 })).granted, 500);
    assert.equal((await lease({ ...up, want: 1, ms: 61_000 })).granted, 0);
  });

  test('a quota and a rate together: the smaller decides', async () => {
    const base = { identity: 'q-4', rate: 1000, burst: 5000, quota: 2000, windowS: W };
    assert.equal((await lease({ ...base, want: 10_000, ms: 0 })).granted, 2000);
    const none = await lease({ ...base, want: 10_000, ms: 0 });
    assert.equal(none.quota_exhausted, true);
  });

  test('"quota exhausted" is announced to the first caller only, once per window, whichever gateway asks', async () => {
    const base = { identity: 'q-5', quota: 100, windowS: 60 };
    await lease({ ...base, want: 100, ms: 0 });
    const first = await lease({ ...base, gateway: 'g1', want: 1, ms: 10 });
    const second = await lease({ ...base, gateway: 'g2', want: 1, ms: 20 });
    assert.deepEqual([first.announce, second.announce], [true, false]);
    // A window later, spent again: announced again.
    await lease({ ...base, want: 100, ms: 62_000 });
    const later = await lease({ ...base, gateway: 'g2', want: 1, ms: 70_010 });
    assert.equal(later.quota_exhausted, true);
    assert.equal(later.announce, true);
  });

  test('bad arguments are refused', async () => {
    await assert.rejects(lease({ identity: '', want: 10, ms: 0 }), /total bucket has the empty identity/);
    await assert.rejects(lease({ identity: 'x', bucket: 'total', rate: 10, burst: 10, want: 10, ms: 0 }));
    await assert.rejects(lease({ identity: 'x', rate: 10, burst: 0, want: 10, ms: 0 }), /out of range/);
    await assert.rejects(lease({ identity: 'x', want: 10, min: 20, ms: 0 }), /out of range/);
    await assert.rejects(lease({ identity: 'x', quota: 10, windowS: 0, want: 10, ms: 0 }), /out of range/);
  });
});

describe('tunnel counts across gateways', () => {
  async function admit(gateway: string, identity: string, max: number, ms: number, quota = 0) {
    const [row] = await db.sql<{ status: string; open_tunnels: number; retry_after_s: number | null }[]>`
      SELECT * FROM agent_gateway_ext.budget_tunnel_admit_at(${gateway}, ${identity}, ${max}, 15,
        ${quota}, 86400, 0, 86400, ${at(ms)})`;
    return row!;
  }

  test('the cap counts every gateway; a crashed gateway stops counting when its rows expire', async () => {
    assert.equal((await admit('ga', 'tc-1', 3, 0)).status, 'ok');
    assert.equal((await admit('ga', 'tc-1', 3, 0)).status, 'ok');
    assert.equal((await admit('gb', 'tc-1', 3, 0)).status, 'ok');
    const full = await admit('gb', 'tc-1', 3, 1000);
    assert.deepEqual([full.status, full.open_tunnels], ['too_many_tunnels', 3]);
    await db.sql`SELECT agent_gateway_ext.budget_tunnel_release_at('gb', 'tc-1', ${at(1000)})`;
    assert.equal((await admit('gb', 'tc-1', 3, 1000)).status, 'ok');
    // gb heartbeats (its count is 1); ga went silent 15 s ago: only gb's tunnel counts.
    await db.sql`SELECT agent_gateway_ext.budget_sync_at('gb', ${['tc-1']}::text[], ${[1]}::integer[], 15, ${at(14_000)})`;
    const afterCrash = await admit('gb', 'tc-1', 3, 15_000);
    assert.deepEqual([afterCrash.status, afterCrash.open_tunnels], ['ok', 2]);
  });

  test('a spent quota refuses new tunnels with the seconds until it has room', async () => {
    await lease({ identity: 'tc-2', quota: 1000, windowS: 86_400, want: 1000, ms: 0 });
    const refused = await admit('ga', 'tc-2', 0, 30_000, 1000);
    assert.equal(refused.status, 'over_quota');
    // The slot [0, 60 s) leaves the window at 60 s + a day: 86,430 s after 30 s.
    assert.equal(refused.retry_after_s, 86_430);
  });

  test("sync replaces this gateway's counts and forgets identities it no longer has", async () => {
    await admit('gs', 'tc-3', 0, 0);
    await admit('gs', 'tc-4', 0, 0);
    await db.sql`SELECT agent_gateway_ext.budget_sync_at('gs', ${['tc-4']}::text[], ${[5]}::integer[], 15, ${at(100)})`;
    const rows = await db.sql<{ identity: string; tunnels: number }[]>`
      SELECT identity, tunnels FROM agent_gateway_ext.budget_tunnels WHERE gateway_id = 'gs' ORDER BY identity`;
    assert.deepEqual(
      rows.map((r) => [r.identity, r.tunnels]),
      [['tc-4', 5]],
    );
  });
});
