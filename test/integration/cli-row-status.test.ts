import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createPolicyEngine, type PolicyEngine } from '../../src/policy/engine.js';
import { listPermissionStatuses, type PermissionRowStatus } from '../../src/policy/row-status.js';
import { openRegistry } from '../../src/registry/connect.js';
import type { TimeInput } from '../../src/registry/write-window.js';
import {
  insertScope,
  insertSignedPermission,
  insertSigningKey,
  revokePermission,
  revokeScope,
  revokeSigningKey,
} from '../../src/registry/writer.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';

/*
 * `permission list` and `registry verify` judge rows with the engine's own per-row check. Here every status
 * is produced the way it happens in practice (time, revocation, SQL tampering), and for every row the
 * status must agree with what the engine decides for the same identity, key and destination.
 */

const DEST = 'api.example.com:443';
let db: FreshDatabase;
let engine: PolicyEngine;
let n = 0;
const uid = (prefix: string) => `${prefix}-${++n}`;
type Window = { notBefore: TimeInput; notAfter: TimeInput };
const days = (from: number, to: number): Window => ({
  notBefore: { fromNow: `${from} days` },
  notAfter: { fromNow: `${to} days` },
});

before(async () => {
  db = await freshDatabase();
  engine = createPolicyEngine(
    openRegistry(db.url, { max_connections: 2, connect_timeout_ms: 5000, query_timeout_ms: 10_000 }),
    { acquireTimeoutMs: 10_000, queryTimeoutMs: 10_000 },
  );
});

after(async () => {
  await engine?.close();
  await db?.drop();
});

interface Made {
  permissionId: string;
  keyId: string;
  identity: string;
  spki: Buffer;
  privateKey: KeyObject;
}

/** A principal (key window `key`), scope (`scope`, or none) and a permission (`perm`) for a new agent. */
async function make(opts: { key?: Window; scope?: Window | null; perm?: Window } = {}): Promise<Made> {
  const keyId = uid('principal');
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await insertSigningKey(db.sql, {
    keyId,
    publicKeySpkiDer: publicKey.export({ type: 'spki', format: 'der' }),
    ...(opts.key ?? days(-30, 30)),
  });
  if (opts.scope !== null) {
    await insertScope(db.sql, { signingKeyId: keyId, destination: DEST, ...(opts.scope ?? days(-30, 60)) });
  }
  const identity = uid('agent');
  const spki = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
    type: 'spki',
    format: 'der',
  });
  const permissionId = uid('perm');
  await insertSignedPermission(db.sql, {
    permissionId,
    signingKeyId: keyId,
    subjectIdentity: identity,
    subjectSpkiDer: spki,
    destination: DEST,
    ...(opts.perm ?? days(-1, 7)),
    sign: (bytes) => sign('sha256', bytes, privateKey),
  });
  return { permissionId, keyId, identity, spki, privateKey };
}

async function statusOf(permissionId: string): Promise<PermissionRowStatus> {
  const [row] = await listPermissionStatuses(db.sql, { permissionId });
  assert.ok(row, permissionId);
  return row;
}

/** The status, and the engine's decision for the same request agrees with it. */
async function expect(made: Made, status: string, problem?: string): Promise<void> {
  const row = await statusOf(made.permissionId);
  assert.equal(row.status, status, `${made.permissionId}: ${row.detail}`);
  assert.equal(row.problem?.kind, problem, `${made.permissionId} problem: ${row.problem?.detail}`);
  const decision = await engine.decide(made.identity, made.spki, DEST);
  assert.equal(decision.allowed, status === 'active', `engine and status agree for ${made.permissionId}`);
  if (!decision.allowed && row.denyReason !== undefined && status !== 'revoked' && status !== 'unmatchable') {
    // The engine reads only unrevoked rows for the request; otherwise it names the same reason.
    assert.equal(decision.reason, row.denyReason);
  }
}

test('active, expired, not yet valid and revoked rows', async () => {
  await expect(await make(), 'active');
  await expect(await make({ perm: days(-10, -1) }), 'expired');
  await expect(await make({ perm: days(1, 2) }), 'not-yet-valid');
  const revoked = await make();
  await revokePermission(db.sql, revoked.permissionId);
  await expect(revoked, 'revoked');
  const row = await statusOf(revoked.permissionId);
  assert.match(row.revokedAt ?? '', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
});

test('signer revoked or expired: signer-inactive, not a lasting problem', async () => {
  const revokedSigner = await make();
  await revokeSigningKey(db.sql, revokedSigner.keyId);
  await expect(revokedSigner, 'signer-inactive');
  await expect(await make({ key: days(-30, -2), perm: days(-1, 7) }), 'signer-inactive');
});

test('a row edited with SQL has a bad signature, and keeps that problem once it expires', async () => {
  const stretched = await make();
  await db.sql`UPDATE permission_registry SET not_after = not_after + interval '1 day'
    WHERE permission_id = ${stretched.permissionId}`;
  await expect(stretched, 'bad-signature', 'bad-signature');

  const oldAndForged = await make({ perm: days(-10, -1) });
  await db.sql`UPDATE permission_registry SET subject_identity = subject_identity || '-x'
    WHERE permission_id = ${oldAndForged.permissionId}`;
  const row = await statusOf(oldAndForged.permissionId);
  assert.equal(row.status, 'expired', 'the status is what the gateway says now');
  assert.equal(row.problem?.kind, 'bad-signature', 'the tampering is still reported');
});

test('a signing key that is not P-256 makes its rows signer-invalid', async () => {
  const made = await make();
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
    type: 'spki',
    format: 'der',
  });
  await db.sql`UPDATE principal_signing_keys SET public_key_spki_der = ${rsa} WHERE key_id = ${made.keyId}`;
  await expect(made, 'signer-invalid', 'signer-invalid');
});

test('no scope, or a scope that does not cover the window: outside-scope', async () => {
  await expect(await make({ scope: null }), 'outside-scope', 'outside-scope');
  await expect(await make({ scope: days(-30, 3), perm: days(-1, 7) }), 'outside-scope', 'outside-scope');
});

test('a covering scope that was revoked or has expired: scope-inactive, not a lasting problem', async () => {
  const made = await make({ scope: null });
  const scope = await insertScope(db.sql, { signingKeyId: made.keyId, destination: DEST, ...days(-30, 60) });
  await expect(made, 'active');
  await revokeScope(db.sql, scope.id);
  await expect(made, 'scope-inactive');
});

test('a destination stored without normalization can never match: unmatchable', async () => {
  const made = await make();
  await db.sql`UPDATE permission_registry SET destination = 'API.Example.com:443'
    WHERE permission_id = ${made.permissionId}`;
  const row = await statusOf(made.permissionId);
  assert.equal(row.status, 'unmatchable');
  assert.match(row.detail ?? '', /not in normalized form \(api\.example\.com:443\)/);
  const decision = await engine.decide(made.identity, made.spki, DEST);
  assert.equal(decision.allowed, false);
});

test('filters select by identity, destination (normalized) and signer', async () => {
  const made = await make();
  const byIdentity = await listPermissionStatuses(db.sql, { subjectIdentity: made.identity });
  assert.deepEqual(
    byIdentity.map((r) => r.permissionId),
    [made.permissionId],
  );
  const byDestination = await listPermissionStatuses(db.sql, {
    destination: 'API.EXAMPLE.COM',
    signingKeyId: made.keyId,
  });
  assert.deepEqual(
    byDestination.map((r) => r.permissionId),
    [made.permissionId],
  );
});
