import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import { type AddressInfo, connect, createServer } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import type postgres from 'postgres';
import type { DenyReason } from '../../src/observability/events.js';
import type { PolicyDecision, PolicyEngine } from '../../src/policy/engine.js';
import { createPolicyEngine } from '../../src/policy/engine.js';
import { openRegistry } from '../../src/registry/connect.js';
import { RegistryWriteError } from '../../src/registry/write-checks.js';
import type { TimeInput } from '../../src/registry/write-window.js';
import {
  insertScope,
  insertSignedPermission,
  insertSigningKey,
  revokePermission,
  revokeScope,
  revokeSigningKey,
  type StoredPermission,
} from '../../src/registry/writer.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';

/*
 * Every rule of "a permission allows a CONNECT only when…", against a real PostgreSQL. Rows are written with
 * the admin writer and then, for the negative cases, edited with plain SQL the way an attacker with write
 * access to the registry would. Windows are relative to the database's now(), never the test's clock.
 */

const DEST = 'api.example.com:443';
// Generous budgets: these tests check decisions, not speed, and must not flake on a slow machine.
const POLICY = { max_connections: 3, connect_timeout_ms: 5000, query_timeout_ms: 10_000 };

let db: FreshDatabase;
let admin: postgres.Sql;
let engine: PolicyEngine;
let counter = 0;
const uid = (prefix: string) => `${prefix}-${++counter}`;

before(async () => {
  db = await freshDatabase();
  admin = db.sql;
  engine = createPolicyEngine(openRegistry(db.url, POLICY), {
    acquireTimeoutMs: 10_000,
    queryTimeoutMs: 10_000,
  });
});

after(async () => {
  await engine?.close();
  await db?.drop();
});

interface Principal {
  keyId: string;
  privateKey: KeyObject;
  spki: Buffer;
}
interface Agent {
  identity: string;
  spki: Buffer;
}
interface Window {
  notBefore?: TimeInput;
  notAfter?: TimeInput;
}

function p256(): { privateKey: KeyObject; spki: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, spki: publicKey.export({ type: 'spki', format: 'der' }) };
}

async function newPrincipal(window: Window = { notBefore: { fromNow: '-10 days' } }): Promise<Principal> {
  const keyId = uid('principal');
  const { privateKey, spki } = p256();
  await insertSigningKey(admin, { keyId, publicKeySpkiDer: spki, ...window });
  return { keyId, privateKey, spki };
}

function newAgent(): Agent {
  return { identity: uid('agent'), spki: p256().spki };
}

async function delegate(
  principal: Principal,
  destination = DEST,
  window: Window = { notBefore: { fromNow: '-10 days' }, notAfter: { fromNow: '365 days' } },
) {
  return insertScope(admin, { signingKeyId: principal.keyId, destination, ...window });
}

async function grant(
  principal: Principal,
  agent: Agent,
  opts: { destination?: string; window?: Window; sign?: (bytes: Buffer) => Buffer } = {},
): Promise<StoredPermission> {
  return insertSignedPermission(admin, {
    permissionId: uid('perm'),
    signingKeyId: principal.keyId,
    subjectIdentity: agent.identity,
    subjectSpkiDer: agent.spki,
    destination: opts.destination ?? DEST,
    ...(opts.window ?? { notBefore: { fromNow: '-1 day' }, notAfter: { fromNow: '30 days' } }),
    sign: opts.sign ?? ((bytes) => sign('sha256', bytes, principal.privateKey)),
  });
}

/** A principal with scope for DEST, an agent, and a valid permission between them. */
async function granted() {
  const principal = await newPrincipal();
  await delegate(principal);
  const agent = newAgent();
  const permission = await grant(principal, agent);
  return { principal, agent, permission };
}

function assertAllowed(
  decision: PolicyDecision,
  permission: StoredPermission,
  principal: Principal,
  opts: { cached?: boolean } = {},
): void {
  assert.equal(
    decision.allowed,
    true,
    decision.allowed ? '' : `denied: ${decision.reason} ${decision.detail}`,
  );
  if (!decision.allowed) return;
  assert.equal(decision.permissionId, permission.permissionId);
  assert.equal(decision.signingKeyId, principal.keyId);
  assert.match(decision.scopeId, /^[1-9][0-9]*$/, 'the covering delegation row is named');
  assert.equal(decision.cached, opts.cached ?? false);
  assert.ok(Number.isFinite(decision.validUntilMono), 'the allow says until when it holds');
}

function assertDenied(decision: PolicyDecision, reason: DenyReason): void {
  assert.equal(decision.allowed, false, 'expected a deny');
  if (decision.allowed) return;
  assert.equal(decision.reason, reason, `detail: ${decision.detail}`);
}

describe('allow', () => {
  test('a matching, valid, signed and delegated row allows', async () => {
    const { principal, agent, permission } = await granted();
    assertAllowed(await engine.decide(agent.identity, agent.spki, DEST), permission, principal);
  });

  test('the destination is compared in normalized form', async () => {
    const { principal, agent, permission } = await granted();
    assertAllowed(await engine.decide(agent.identity, agent.spki, 'API.Example.COM'), permission, principal);
  });

  test('a high-S signature (as upstream signers produce) is accepted', async () => {
    const principal = await newPrincipal();
    await delegate(principal);
    const agent = newAgent();
    const permission = await grant(principal, agent, {
      sign: (bytes) => toHighS(sign('sha256', bytes, principal.privateKey)),
    });
    const [, s] = decodeSignature(permission.signature);
    assert.ok(s > P256_N / 2n, 'the stored signature is high-S');
    assertAllowed(await engine.decide(agent.identity, agent.spki, DEST), permission, principal);
  });

  test('microsecond timestamps are signed and verified exactly', async () => {
    const principal = await newPrincipal({
      notBefore: '1999-01-01T00:00:00.000000Z',
      notAfter: '3000-01-01T00:00:00.000000Z',
    });
    await delegate(principal, DEST, {
      notBefore: '2000-01-01T00:00:00.000000Z',
      notAfter: '2999-12-31T23:59:59.999999Z',
    });
    const agent = newAgent();
    const permission = await grant(principal, agent, {
      window: { notBefore: '2000-01-01T00:00:00.123456Z', notAfter: '2999-12-31T23:59:59.654321Z' },
    });
    assert.equal(permission.notBefore, '2000-01-01T00:00:00.123456Z');
    assert.match(permission.signedBytes.toString(), /\nnot_after=2999-12-31T23:59:59\.654321Z\n$/);
    assertAllowed(await engine.decide(agent.identity, agent.spki, DEST), permission, principal);
  });

  test('a good row wins over failing ones for the same request', async () => {
    const principal = await newPrincipal();
    await delegate(principal);
    const agent = newAgent();
    const good = await grant(principal, agent);
    // Newer (later not_after, so examined first) but tampered.
    const bad = await grant(principal, agent, { window: { notAfter: { fromNow: '60 days' } } });
    await admin`UPDATE permission_registry SET signature = ${flipLastByte(bad.signature)} WHERE permission_id = ${bad.permissionId}`;
    assertAllowed(await engine.decide(agent.identity, agent.spki, DEST), good, principal);
  });

  test('only a bounded number of candidates is examined, newest not_after first', async () => {
    const principal = await newPrincipal();
    await delegate(principal);
    const agent = newAgent();
    await grant(principal, agent, { window: { notAfter: { fromNow: '10 days' } } });
    for (const days of ['20 days', '30 days']) {
      const newer = await grant(principal, agent, { window: { notAfter: { fromNow: days } } });
      await admin`UPDATE permission_registry SET signature = ${flipLastByte(newer.signature)}
                  WHERE permission_id = ${newer.permissionId}`;
    }
    const narrow = createPolicyEngine(openRegistry(db.url, POLICY), {
      acquireTimeoutMs: 10_000,
      queryTimeoutMs: 10_000,
      maxCandidates: 2,
    });
    try {
      assertDenied(await narrow.decide(agent.identity, agent.spki, DEST), 'bad_signature');
      assert.equal((await engine.decide(agent.identity, agent.spki, DEST)).allowed, true);
    } finally {
      await narrow.close();
    }
  });
});

describe('no matching row', () => {
  test('another destination host', async () => {
    const { agent } = await granted();
    assertDenied(
      await engine.decide(agent.identity, agent.spki, 'other.example.com:443'),
      'no_matching_permission',
    );
  });

  test('another port', async () => {
    const { agent } = await granted();
    assertDenied(
      await engine.decide(agent.identity, agent.spki, 'api.example.com:8443'),
      'no_matching_permission',
    );
  });

  test('an unknown identity with the granted key', async () => {
    const { agent } = await granted();
    assertDenied(await engine.decide('agent-unknown', agent.spki, DEST), 'no_matching_permission');
  });

  test('the granted identity with another key', async () => {
    const { agent } = await granted();
    assertDenied(await engine.decide(agent.identity, p256().spki, DEST), 'no_matching_permission');
  });

  test('identity differing only in case', async () => {
    const { agent } = await granted();
    assertDenied(
      await engine.decide(agent.identity.toUpperCase(), agent.spki, DEST),
      'no_matching_permission',
    );
  });

  test('a revoked permission no longer matches, from the next decision on', async () => {
    const { principal, agent, permission } = await granted();
    assertAllowed(await engine.decide(agent.identity, agent.spki, DEST), permission, principal);
    assert.equal(await revokePermission(admin, permission.permissionId), true);
    // Revoked rows are outside the lookup index by design (see engine.ts), hence this reason.
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'no_matching_permission');
  });
});

describe('tampered rows fail the signature check', () => {
  /** Each case edits one signed column of a valid row and returns the request that now matches the row. */
  const cases: Record<
    string,
    (ctx: Awaited<ReturnType<typeof granted>>) => Promise<[string, Buffer, string]>
  > = {
    permission_id: async ({ agent, permission }) => {
      await admin`UPDATE permission_registry SET permission_id = permission_id || '-copy'
                  WHERE permission_id = ${permission.permissionId}`;
      return [agent.identity, agent.spki, DEST];
    },
    signing_key_id: async ({ agent, permission }) => {
      // Re-pointed to another key that is valid and delegated for the destination.
      const other = await newPrincipal();
      await delegate(other);
      await admin`UPDATE permission_registry SET signing_key_id = ${other.keyId}
                  WHERE permission_id = ${permission.permissionId}`;
      return [agent.identity, agent.spki, DEST];
    },
    subject_identity: async ({ agent, permission }) => {
      const mallory = uid('mallory');
      await admin`UPDATE permission_registry SET subject_identity = ${mallory}
                  WHERE permission_id = ${permission.permissionId}`;
      return [mallory, agent.spki, DEST];
    },
    subject_public_key_spki_der: async ({ agent, permission }) => {
      const mallory = p256().spki;
      await admin`UPDATE permission_registry SET subject_public_key_spki_der = ${mallory}
                  WHERE permission_id = ${permission.permissionId}`;
      return [agent.identity, mallory, DEST];
    },
    destination: async ({ principal, agent, permission }) => {
      await delegate(principal, 'evil.example.com:443');
      await admin`UPDATE permission_registry SET destination = 'evil.example.com:443'
                  WHERE permission_id = ${permission.permissionId}`;
      return [agent.identity, agent.spki, 'evil.example.com:443'];
    },
    not_before: async ({ agent, permission }) => {
      await admin`UPDATE permission_registry SET not_before = not_before - interval '1 hour'
                  WHERE permission_id = ${permission.permissionId}`;
      return [agent.identity, agent.spki, DEST];
    },
    not_after: async ({ agent, permission }) => {
      await admin`UPDATE permission_registry SET not_after = not_after + interval '1 day'
                  WHERE permission_id = ${permission.permissionId}`;
      return [agent.identity, agent.spki, DEST];
    },
    'not_after by one microsecond': async ({ agent, permission }) => {
      await admin`UPDATE permission_registry SET not_after = not_after + interval '1 microsecond'
                  WHERE permission_id = ${permission.permissionId}`;
      return [agent.identity, agent.spki, DEST];
    },
  };

  for (const [field, tamper] of Object.entries(cases)) {
    test(field, async () => {
      const ctx = await granted();
      assertAllowed(
        await engine.decide(ctx.agent.identity, ctx.agent.spki, DEST),
        ctx.permission,
        ctx.principal,
      );
      const [identity, spki, destination] = await tamper(ctx);
      assertDenied(await engine.decide(identity, spki, destination), 'bad_signature');
    });
  }

  test('the signature altered by one bit', async () => {
    const { agent, permission } = await granted();
    await admin`UPDATE permission_registry SET signature = ${flipLastByte(permission.signature)}
                WHERE permission_id = ${permission.permissionId}`;
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'bad_signature');
  });

  for (const [name, signature] of [
    ['empty', Buffer.alloc(0)],
    ['not DER', Buffer.from('not a signature')],
    ['oversized', Buffer.alloc(4096, 0x30)],
  ] as const) {
    test(`a signature that is ${name}`, async () => {
      const { agent, permission } = await granted();
      await admin`UPDATE permission_registry SET signature = ${signature}
                  WHERE permission_id = ${permission.permissionId}`;
      assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'bad_signature');
    });
  }

  test('a signature made by another key', async () => {
    const { principal, agent } = await granted();
    const stranger = p256();
    await assert.rejects(
      grant(principal, agent, { sign: (bytes) => sign('sha256', bytes, stranger.privateKey) }),
      (err: unknown) => err instanceof RegistryWriteError && /does not verify/.test(err.message),
      'the writer refuses to store it',
    );
    const victim = newAgent();
    const permission = await grant(principal, victim);
    const forged = sign('sha256', permission.signedBytes, stranger.privateKey);
    await admin`UPDATE permission_registry SET signature = ${forged} WHERE permission_id = ${permission.permissionId}`;
    assertDenied(await engine.decide(victim.identity, victim.spki, DEST), 'bad_signature');
  });

  test('an infinite not_after cannot have been signed', async () => {
    const { agent, permission } = await granted();
    await admin`UPDATE permission_registry SET not_after = 'infinity' WHERE permission_id = ${permission.permissionId}`;
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'bad_signature');
  });
});

describe('permission window', () => {
  test('expired', async () => {
    const principal = await newPrincipal();
    await delegate(principal);
    const agent = newAgent();
    await grant(principal, agent, {
      window: { notBefore: { fromNow: '-3 days' }, notAfter: { fromNow: '-1 day' } },
    });
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'permission_expired');
  });

  test('not yet valid', async () => {
    const principal = await newPrincipal();
    await delegate(principal);
    const agent = newAgent();
    await grant(principal, agent, {
      window: { notBefore: { fromNow: '1 day' }, notAfter: { fromNow: '2 days' } },
    });
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'permission_not_yet_valid');
  });
});

describe('signing key', () => {
  test('revoked, from the next decision on', async () => {
    const { principal, agent, permission } = await granted();
    assertAllowed(await engine.decide(agent.identity, agent.spki, DEST), permission, principal);
    assert.equal(await revokeSigningKey(admin, principal.keyId), true);
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'signer_revoked');
  });

  test('expired', async () => {
    const principal = await newPrincipal({
      notBefore: { fromNow: '-10 days' },
      notAfter: { fromNow: '-1 day' },
    });
    await delegate(principal);
    const agent = newAgent();
    await grant(principal, agent);
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'signer_expired');
  });

  test('not yet valid', async () => {
    const principal = await newPrincipal({
      notBefore: { fromNow: '1 day' },
      notAfter: { fromNow: '100 days' },
    });
    await delegate(principal);
    const agent = newAgent();
    await grant(principal, agent);
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'signer_not_yet_valid');
  });

  test('a public key that is not P-256', async () => {
    const { principal, agent } = await granted();
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({
      type: 'spki',
      format: 'der',
    });
    await admin`UPDATE principal_signing_keys SET public_key_spki_der = ${p384} WHERE key_id = ${principal.keyId}`;
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'signer_bad_key');
  });

  test('a public key that does not parse', async () => {
    const { principal, agent } = await granted();
    const junk = Buffer.from(`junk-${principal.keyId}`);
    await admin`UPDATE principal_signing_keys SET public_key_spki_der = ${junk} WHERE key_id = ${principal.keyId}`;
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'signer_bad_key');
  });
});

describe('delegation scope', () => {
  test('a signer without scope for the destination', async () => {
    const principal = await newPrincipal();
    await delegate(principal, 'somewhere-else.example.com:443');
    const agent = newAgent();
    await grant(principal, agent);
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'scope_missing');
  });

  test('scope for the host on another port does not count', async () => {
    const principal = await newPrincipal();
    await delegate(principal, 'api.example.com:8443');
    const agent = newAgent();
    await grant(principal, agent);
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'scope_missing');
  });

  test('scope ending before the permission does', async () => {
    const principal = await newPrincipal();
    await delegate(principal, DEST, { notBefore: { fromNow: '-10 days' }, notAfter: { fromNow: '10 days' } });
    const agent = newAgent();
    await grant(principal, agent, {
      window: { notBefore: { fromNow: '-1 day' }, notAfter: { fromNow: '30 days' } },
    });
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'scope_insufficient');
  });

  test('scope starting after the permission does', async () => {
    const principal = await newPrincipal();
    await delegate(principal, DEST, { notBefore: { fromNow: '-1 hour' }, notAfter: { fromNow: '365 days' } });
    const agent = newAgent();
    await grant(principal, agent, {
      window: { notBefore: { fromNow: '-1 day' }, notAfter: { fromNow: '30 days' } },
    });
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'scope_insufficient');
  });

  test('revoked scope, from the next decision on', async () => {
    const principal = await newPrincipal();
    const scope = await delegate(principal);
    const agent = newAgent();
    const permission = await grant(principal, agent);
    assertAllowed(await engine.decide(agent.identity, agent.spki, DEST), permission, principal);
    assert.equal(await revokeScope(admin, scope.id), true);
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'scope_missing');
  });

  test('two partial scopes do not add up to one covering scope', async () => {
    const principal = await newPrincipal();
    await delegate(principal, DEST, { notBefore: { fromNow: '-10 days' }, notAfter: { fromNow: '5 days' } });
    await delegate(principal, DEST, { notBefore: { fromNow: '4 days' }, notAfter: { fromNow: '365 days' } });
    const agent = newAgent();
    await grant(principal, agent);
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'scope_insufficient');
  });
});

describe('reasons when every candidate fails', () => {
  test('the candidate that got furthest explains the deny', async () => {
    const principal = await newPrincipal();
    await delegate(principal, DEST, { notBefore: { fromNow: '-10 days' }, notAfter: { fromNow: '20 days' } });
    const agent = newAgent();
    // Examined first (latest not_after) but fails early: not valid yet.
    await grant(principal, agent, {
      window: { notBefore: { fromNow: '1 day' }, notAfter: { fromNow: '50 days' } },
    });
    // Examined second and fails last: valid and signed, but outlives the delegation.
    await grant(principal, agent, {
      window: { notBefore: { fromNow: '-1 day' }, notAfter: { fromNow: '40 days' } },
    });
    assertDenied(await engine.decide(agent.identity, agent.spki, DEST), 'scope_insufficient');
  });
});

describe('hostile or broken registry contents', () => {
  let hostile: FreshDatabase;
  let hostileEngine: PolicyEngine;
  before(async () => {
    hostile = await freshDatabase();
    // What a registry without the interop constraints could hold.
    await hostile.sql.unsafe(`
      ALTER TABLE permission_registry DROP CONSTRAINT permission_registry_signing_key_id_fkey;
      ALTER TABLE permission_registry ALTER COLUMN not_before DROP NOT NULL;
      ALTER TABLE principal_signing_keys DROP CONSTRAINT principal_signing_keys_algorithm_supported;
      ALTER TABLE principal_signing_keys ALTER COLUMN not_after DROP NOT NULL;
    `);
    hostileEngine = createPolicyEngine(openRegistry(hostile.url, POLICY), {
      acquireTimeoutMs: 10_000,
      queryTimeoutMs: 10_000,
    });
  });
  after(async () => {
    await hostileEngine?.close();
    await hostile?.drop();
  });

  async function hostileGrant() {
    const keyId = uid('principal');
    const key = p256();
    await insertSigningKey(hostile.sql, {
      keyId,
      publicKeySpkiDer: key.spki,
      notBefore: { fromNow: '-1 day' },
    });
    await insertScope(hostile.sql, {
      signingKeyId: keyId,
      destination: DEST,
      notBefore: { fromNow: '-2 days' },
    });
    const agent = newAgent();
    const permission = await insertSignedPermission(hostile.sql, {
      permissionId: uid('perm'),
      signingKeyId: keyId,
      subjectIdentity: agent.identity,
      subjectSpkiDer: agent.spki,
      destination: DEST,
      notBefore: { fromNow: '-1 hour' },
      sign: (bytes) => sign('sha256', bytes, key.privateKey),
    });
    assert.equal((await hostileEngine.decide(agent.identity, agent.spki, DEST)).allowed, true);
    return { keyId, agent, permission };
  }

  test('a signing key that does not exist', async () => {
    const { agent, permission } = await hostileGrant();
    await hostile.sql`UPDATE permission_registry SET signing_key_id = 'ghost' WHERE permission_id = ${permission.permissionId}`;
    assertDenied(await hostileEngine.decide(agent.identity, agent.spki, DEST), 'signer_unknown');
  });

  test('NULL where a timestamp is required fails closed', async () => {
    const { keyId, agent, permission } = await hostileGrant();
    await hostile.sql`UPDATE permission_registry SET not_before = NULL WHERE permission_id = ${permission.permissionId}`;
    assertDenied(await hostileEngine.decide(agent.identity, agent.spki, DEST), 'permission_not_yet_valid');
    await hostile.sql`UPDATE permission_registry SET not_before = now() - interval '1 hour'
                      WHERE permission_id = ${permission.permissionId}`;
    await hostile.sql`UPDATE principal_signing_keys SET not_after = NULL WHERE key_id = ${keyId}`;
    assertDenied(await hostileEngine.decide(agent.identity, agent.spki, DEST), 'signer_expired');
  });

  test('a signing key of another algorithm', async () => {
    const { keyId, agent } = await hostileGrant();
    await hostile.sql`UPDATE principal_signing_keys SET algorithm = 'ed25519' WHERE key_id = ${keyId}`;
    assertDenied(await hostileEngine.decide(agent.identity, agent.spki, DEST), 'signer_bad_key');
  });
});

describe('failures deny without throwing', () => {
  test('nonsense input', async () => {
    const { agent } = await granted();
    assertDenied(await engine.decide('', agent.spki, DEST), 'no_identity');
    assertDenied(await engine.decide('agent\0x', agent.spki, DEST), 'malformed_identity');
    assertDenied(await engine.decide('agent\uD800', agent.spki, DEST), 'malformed_identity');
    assertDenied(await engine.decide(agent.identity, Buffer.alloc(0), DEST), 'policy_error');
    assertDenied(await engine.decide(agent.identity, agent.spki, 'api.example.com:0'), 'policy_error');
  });

  test('database unreachable', async () => {
    const url = `postgres://postgres@127.0.0.1:${await closedPort()}/postgres`;
    const offline = createPolicyEngine(
      openRegistry(url, { max_connections: 1, connect_timeout_ms: 1000, query_timeout_ms: 1000 }),
      { acquireTimeoutMs: 1000, queryTimeoutMs: 1000 },
    );
    try {
      const decision = await offline.decide('agent', p256().spki, DEST);
      assert.equal(decision.allowed, false);
      assert.ok(
        !decision.allowed && ['policy_error', 'policy_timeout'].includes(decision.reason),
        decision.detail,
      );
    } finally {
      await offline.close();
    }
  });

  /** Runs `during` while another transaction holds an ACCESS EXCLUSIVE lock on permission_registry. */
  async function whileLocked(during: () => Promise<void>): Promise<void> {
    await admin.begin(async (tx) => {
      await tx`LOCK TABLE permission_registry IN ACCESS EXCLUSIVE MODE`;
      await during();
    });
  }

  /** Backends of `applicationName` waiting on a lock, polled until there are none (or 200 tries). */
  async function lockWaiters(applicationName: string): Promise<number> {
    let waiting = -1;
    for (let attempt = 0; attempt < 200 && waiting !== 0; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 25));
      const [row] = await admin<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE application_name = ${applicationName} AND wait_event_type = 'Lock'`;
      waiting = row?.n ?? -1;
    }
    return waiting;
  }

  test('past its deadline a query is cancelled on the server and the decision is policy_timeout', async () => {
    const { principal, agent, permission } = await granted();
    const applicationName = uid('ag-test-deadline');
    // statement_timeout far away: only the engine's own deadline (100 + 200 ms) can end the wait.
    const impatient = createPolicyEngine(
      openRegistry(
        db.url,
        { max_connections: 1, connect_timeout_ms: 5000, query_timeout_ms: 600_000 },
        { applicationName },
      ),
      { acquireTimeoutMs: 100, queryTimeoutMs: 200 },
    );
    try {
      // Warm the pool first, so the deadline is spent waiting on the lock, not on connecting.
      assertAllowed(await impatient.decide(agent.identity, agent.spki, DEST), permission, principal);
      await whileLocked(async () => {
        assertDenied(await impatient.decide(agent.identity, agent.spki, DEST), 'policy_timeout');
        assert.equal(
          await lockWaiters(applicationName),
          0,
          'the cancel reached the server while the lock was held',
        );
      });
      assertAllowed(await impatient.decide(agent.identity, agent.spki, DEST), permission, principal);
    } finally {
      await impatient.close();
    }
  });

  test("the server's statement_timeout also denies as policy_timeout", async () => {
    const { principal, agent, permission } = await granted();
    const impatient = createPolicyEngine(
      openRegistry(db.url, { max_connections: 1, connect_timeout_ms: 5000, query_timeout_ms: 200 }),
      { acquireTimeoutMs: 600_000, queryTimeoutMs: 600_000 },
    );
    try {
      assertAllowed(await impatient.decide(agent.identity, agent.spki, DEST), permission, principal);
      await whileLocked(async () => {
        const decision = await impatient.decide(agent.identity, agent.spki, DEST);
        assertDenied(decision, 'policy_timeout');
        assert.match(decision.allowed ? '' : (decision.detail ?? ''), /57014/);
      });
    } finally {
      await impatient.close();
    }
  });

  test('a cancel that cannot reach the server neither throws nor leaves an unhandled rejection', async () => {
    const { principal, agent, permission } = await granted();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    // The engine talks to the database through a relay that stops accepting connections after the first,
    // so the cancel request (which needs a connection of its own) is refused.
    const target = new URL(db.url);
    const relay = createServer((client) => {
      const upstream = connect(Number(target.port || 5432), target.hostname);
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const relayPort = (relay.address() as AddressInfo).port;
    const viaRelay = new URL(db.url);
    viaRelay.hostname = '127.0.0.1';
    viaRelay.port = String(relayPort);
    const impatient = createPolicyEngine(
      openRegistry(viaRelay.toString(), {
        max_connections: 1,
        connect_timeout_ms: 5000,
        query_timeout_ms: 600_000,
      }),
      { acquireTimeoutMs: 100, queryTimeoutMs: 200 },
    );
    try {
      assertAllowed(await impatient.decide(agent.identity, agent.spki, DEST), permission, principal);
      // Stops accepting at once; close's callback would wait for the open connection, so it is not awaited.
      relay.close();
      await whileLocked(async () => {
        assertDenied(await impatient.decide(agent.identity, agent.spki, DEST), 'policy_timeout');
      });
      // The uncancelled query finishes once the lock is gone; the next decision needs that connection back.
      assertAllowed(await impatient.decide(agent.identity, agent.spki, DEST), permission, principal);
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await impatient.close();
    }
  });

  test('a closed engine denies', async () => {
    const { agent } = await granted();
    const closing = createPolicyEngine(openRegistry(db.url, POLICY), {
      acquireTimeoutMs: 1000,
      queryTimeoutMs: 1000,
    });
    await closing.close();
    assertDenied(await closing.decide(agent.identity, agent.spki, DEST), 'policy_error');
  });
});

describe('decision cache (policy.decision_cache_ms)', () => {
  const TTL = 60_000;
  let clock = 0;
  let usable = true;
  let cached: PolicyEngine;
  before(() => {
    cached = createPolicyEngine(openRegistry(db.url, POLICY), {
      acquireTimeoutMs: 10_000,
      queryTimeoutMs: 10_000,
      decisionCacheMs: TTL,
      now: () => clock,
    });
    cached.setCacheGate(() => usable);
  });
  after(() => cached?.close());
  beforeEach(() => {
    usable = true;
  });

  test('an engine without decision_cache_ms never answers from a cache, even with the gate open', async () => {
    const { principal, agent, permission } = await granted();
    engine.setCacheGate(() => true);
    for (let i = 0; i < 2; i++) {
      assertAllowed(await engine.decide(agent.identity, agent.spki, DEST), permission, principal);
    }
  });

  test('closed until the live check opens it: a new engine queries every time', async () => {
    const own = createPolicyEngine(openRegistry(db.url, POLICY), {
      acquireTimeoutMs: 10_000,
      queryTimeoutMs: 10_000,
      decisionCacheMs: TTL,
      now: () => clock,
    });
    try {
      const { principal, agent, permission } = await granted();
      for (let i = 0; i < 2; i++) {
        assertAllowed(await own.decide(agent.identity, agent.spki, DEST), permission, principal);
      }
    } finally {
      await own.close();
    }
  });

  test('an allow is reused while the gate is open and until the TTL; a closed gate asks the registry', async () => {
    const { principal, agent, permission } = await granted();
    assertAllowed(await cached.decide(agent.identity, agent.spki, DEST), permission, principal);
    assertAllowed(await cached.decide(agent.identity, agent.spki, DEST), permission, principal, {
      cached: true,
    });
    assert.equal(await revokePermission(admin, permission.permissionId), true);
    // The live check is down: no cached allow may be used, and the registry says no.
    usable = false;
    assertDenied(await cached.decide(agent.identity, agent.spki, DEST), 'no_matching_permission');
  });

  test('an entry is gone after the TTL', async () => {
    const { principal, agent, permission } = await granted();
    assertAllowed(await cached.decide(agent.identity, agent.spki, DEST), permission, principal);
    assert.equal(await revokePermission(admin, permission.permissionId), true);
    clock += TTL;
    assertDenied(await cached.decide(agent.identity, agent.spki, DEST), 'no_matching_permission');
  });

  test('invalidateCache and forgetPermissions remove the allows they back', async () => {
    const a = await granted();
    const b = await granted();
    assertAllowed(await cached.decide(a.agent.identity, a.agent.spki, DEST), a.permission, a.principal);
    assertAllowed(await cached.decide(b.agent.identity, b.agent.spki, DEST), b.permission, b.principal);
    cached.forgetPermissions([a.permission.permissionId]);
    assertAllowed(await cached.decide(a.agent.identity, a.agent.spki, DEST), a.permission, a.principal);
    assertAllowed(await cached.decide(b.agent.identity, b.agent.spki, DEST), b.permission, b.principal, {
      cached: true,
    });
    cached.invalidateCache();
    assertAllowed(await cached.decide(b.agent.identity, b.agent.spki, DEST), b.permission, b.principal);
  });

  test('a deny is never cached: a permission granted after a refusal allows at once', async () => {
    const principal = await newPrincipal();
    await delegate(principal);
    const agent = newAgent();
    assertDenied(await cached.decide(agent.identity, agent.spki, DEST), 'no_matching_permission');
    const permission = await grant(principal, agent);
    assertAllowed(await cached.decide(agent.identity, agent.spki, DEST), permission, principal);
  });

  test('another key, another identity or another destination is a miss, decided by the registry', async () => {
    const { principal, agent } = await granted();
    await cached.decide(agent.identity, agent.spki, DEST);
    assertDenied(await cached.decide(agent.identity, newAgent().spki, DEST), 'no_matching_permission');
    assertDenied(await cached.decide(`${agent.identity}x`, agent.spki, DEST), 'no_matching_permission');
    assertDenied(
      await cached.decide(agent.identity, agent.spki, 'api.example.com:444'),
      'no_matching_permission',
    );
    await delegate(principal, 'other.example.com:443');
    assertDenied(
      await cached.decide(agent.identity, agent.spki, 'other.example.com:443'),
      'no_matching_permission',
    );
  });

  test('an entry expires with the permission even when the TTL is longer', async () => {
    const principal = await newPrincipal();
    await delegate(principal);
    const agent = newAgent();
    // Valid for 10 more seconds on the database clock; the cache TTL is 60 s.
    const permission = await grant(principal, agent, {
      window: { notBefore: { fromNow: '-1 day' }, notAfter: { fromNow: '10 seconds' } },
    });
    const first = await cached.decide(agent.identity, agent.spki, DEST);
    assertAllowed(first, permission, principal);
    assert.ok(
      first.allowed && first.validUntilMono - clock <= 10_000 && first.validUntilMono - clock > 5_000,
    );
    const second = await cached.decide(agent.identity, agent.spki, DEST);
    assert.equal(second.allowed && second.cached, true, 'reused within its validity');
    clock += 11_000;
    // Past the row's remaining validity by the cache's clock: asked again (the database, whose clock has
    // not moved 11 s, still allows, but from a query: not cached).
    assertAllowed(await cached.decide(agent.identity, agent.spki, DEST), permission, principal);
  });

  test('a closed engine denies even what it had cached', async () => {
    const own = createPolicyEngine(openRegistry(db.url, POLICY), {
      acquireTimeoutMs: 10_000,
      queryTimeoutMs: 10_000,
      decisionCacheMs: TTL,
      now: () => clock,
    });
    own.setCacheGate(() => true);
    const { principal, agent, permission } = await granted();
    assertAllowed(await own.decide(agent.identity, agent.spki, DEST), permission, principal);
    await own.close();
    assertDenied(await own.decide(agent.identity, agent.spki, DEST), 'policy_error');
  });
});

describe('writer', () => {
  test('defaults take the database clock and store exactly what was signed', async () => {
    const { permission } = await granted();
    const [row] = await admin<{ nb: string; na: string; sig: Buffer }[]>`
      SELECT to_char(not_before AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS nb,
             to_char(not_after AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS na,
             signature AS sig
      FROM permission_registry WHERE permission_id = ${permission.permissionId}`;
    assert.equal(row?.nb, permission.notBefore);
    assert.equal(row?.na, permission.notAfter);
    assert.deepEqual(row?.sig, permission.signature);
    assert.ok(permission.signedBytes.toString().includes(`\nnot_before=${permission.notBefore}\n`));
  });

  test('normalizes destinations before signing and storing', async () => {
    const principal = await newPrincipal();
    const scope = await delegate(principal, 'API.EXAMPLE.COM');
    assert.equal(scope.destination, DEST);
    const permission = await grant(principal, newAgent(), { destination: 'Api.Example.Com:443' });
    assert.equal(permission.destination, DEST);
    assert.ok(permission.signedBytes.toString().includes(`\ndestination=${DEST}\n`));
  });

  test('refuses an empty window and a signing key that is not P-256', async () => {
    const principal = await newPrincipal();
    await assert.rejects(
      grant(principal, newAgent(), {
        window: { notBefore: { fromNow: '1 day' }, notAfter: { fromNow: '-1 day' } },
      }),
      /not_before must be earlier than not_after/,
    );
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      type: 'spki',
      format: 'der',
    });
    await assert.rejects(
      insertSigningKey(admin, { keyId: uid('rsa'), publicKeySpkiDer: rsa }),
      /must be an ECDSA P-256 key/,
    );
  });
});

// --- helpers -------------------------------------------------------------------------------------------

const P256_N = BigInt('0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551');

/** DER ECDSA-Sig-Value { r INTEGER, s INTEGER } → [r, s]. Short-form lengths suffice for P-256. */
function decodeSignature(der: Buffer): [bigint, bigint] {
  assert.equal(der[0], 0x30);
  const ints: bigint[] = [];
  let at = 2;
  while (at < der.length) {
    assert.equal(der[at], 0x02);
    const len = der[at + 1] ?? 0;
    ints.push(BigInt(`0x${der.subarray(at + 2, at + 2 + len).toString('hex')}`));
    at += 2 + len;
  }
  assert.equal(ints.length, 2);
  return [ints[0] ?? 0n, ints[1] ?? 0n];
}

function encodeInteger(value: bigint): Buffer {
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  let bytes = Buffer.from(hex, 'hex');
  if ((bytes[0] ?? 0) & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return Buffer.concat([Buffer.from([0x02, bytes.length]), bytes]);
}

/** The same signature with s replaced by n − s when s is low: equally valid, but high-S. */
function toHighS(der: Buffer): Buffer {
  const [r, s] = decodeSignature(der);
  const high = s > P256_N / 2n ? s : P256_N - s;
  const body = Buffer.concat([encodeInteger(r), encodeInteger(high)]);
  const result = Buffer.concat([Buffer.from([0x30, body.length]), body]);
  assert.notEqual(high, 0n);
  return result;
}

function flipLastByte(signature: Buffer): Buffer {
  const copy = Buffer.from(signature);
  copy[copy.length - 1] = (copy[copy.length - 1] ?? 0) ^ 0x01;
  return copy;
}

/** A loopback port nobody listens on (bound, then released). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

test('toHighS produces a signature node:crypto still verifies', () => {
  const key = p256();
  const publicKey = createPublicKey({ key: key.spki, format: 'der', type: 'spki' });
  const data = Buffer.from('high-s self-check');
  const high = toHighS(sign('sha256', data, key.privateKey));
  assert.ok(decodeSignature(high)[1] > P256_N / 2n);
  assert.equal(verify('sha256', data, publicKey, high), true);
});
