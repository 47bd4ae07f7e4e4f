import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { TimeInput } from '../../src/registry/write-window.js';
import {
  grantScope,
  insertSignedPermission,
  insertSigningKey,
  registerSigningKey,
  revokeScope,
  revokeScopesFor,
  revokeSigningKey,
} from '../../src/registry/writer.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';

/*
 * The registry writes behind `principal register`, `scope grant` and `permission grant`: re-granting never
 * shortens a scope, a revocation is never undone, and a grant the gateway would deny is refused in its
 * own transaction.
 */

const DEST = 'api.example.com:443';
let db: FreshDatabase;
let n = 0;
const uid = (prefix: string) => `${prefix}-${++n}`;

before(async () => {
  db = await freshDatabase();
});
after(async () => {
  await db?.drop();
});

function p256(): { privateKey: KeyObject; spki: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, spki: publicKey.export({ type: 'spki', format: 'der' }) };
}

async function principal(
  window: { notBefore?: TimeInput; notAfter?: TimeInput } = { notBefore: { fromNow: '-1 day' } },
) {
  const keyId = uid('principal');
  const key = p256();
  await insertSigningKey(db.sql, { keyId, publicKeySpkiDer: key.spki, ...window });
  return { keyId, ...key };
}

async function scopeRows(keyId: string) {
  return db.sql<{ id: string; nb: string; na: string; revoked: boolean }[]>`
    SELECT id::text AS id, to_char(not_before AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS nb,
      to_char(not_after AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS na, revoked_at IS NOT NULL AS revoked
    FROM principal_key_permissions WHERE signing_key_id = ${keyId} ORDER BY id`;
}

describe('grantScope', () => {
  test('a covered re-grant changes nothing; an overlapping one extends the row to the union', async () => {
    const { keyId } = await principal();
    const first = await grantScope(db.sql, {
      signingKeyId: keyId,
      destination: DEST,
      notAfter: { fromNow: '10 days' },
    });
    assert.equal(first.action, 'inserted');

    const shorter = await grantScope(db.sql, {
      signingKeyId: keyId,
      destination: 'API.EXAMPLE.COM',
      lifetime: '1 day',
    });
    assert.deepEqual([shorter.action, shorter.id, shorter.notAfter], ['unchanged', first.id, first.notAfter]);

    const later = await grantScope(db.sql, {
      signingKeyId: keyId,
      destination: DEST,
      notBefore: { fromNow: '5 days' },
      notAfter: { fromNow: '40 days' },
    });
    assert.equal(later.action, 'extended');
    assert.equal(later.id, first.id);
    assert.equal(later.notBefore, first.notBefore, 'the start never moves later');
    assert.ok(later.notAfter > first.notAfter);
    assert.deepEqual(
      (await scopeRows(keyId)).map((r) => [r.id, r.nb, r.na]),
      [[first.id, first.notBefore, later.notAfter]],
    );
  });

  test('a disjoint window gets a row of its own: the gap between them is not granted', async () => {
    const { keyId } = await principal();
    const now = await grantScope(db.sql, { signingKeyId: keyId, destination: DEST, lifetime: '2 days' });
    const next = await grantScope(db.sql, {
      signingKeyId: keyId,
      destination: DEST,
      notBefore: { fromNow: '10 days' },
      notAfter: { fromNow: '20 days' },
    });
    assert.equal(next.action, 'inserted');
    assert.notEqual(next.id, now.id);
    const rows = await scopeRows(keyId);
    assert.deepEqual(
      rows.map((r) => [r.nb, r.na]),
      [
        [now.notBefore, now.notAfter],
        [next.notBefore, next.notAfter],
      ],
    );
  });

  test('a revoked scope stays revoked: granting again inserts a new row', async () => {
    const { keyId } = await principal();
    const first = await grantScope(db.sql, { signingKeyId: keyId, destination: DEST });
    await revokeScope(db.sql, first.id);
    const again = await grantScope(db.sql, { signingKeyId: keyId, destination: DEST });
    assert.equal(again.action, 'inserted');
    assert.deepEqual(
      (await scopeRows(keyId)).map((r) => [r.id, r.revoked]),
      [
        [first.id, true],
        [again.id, false],
      ],
    );
    assert.deepEqual(await revokeScopesFor(db.sql, keyId, 'api.example.com'), [again.id]);
    assert.deepEqual(await revokeScopesFor(db.sql, keyId, DEST), []);
  });

  test('refuses an unknown, revoked or expired signing key', async () => {
    await assert.rejects(
      grantScope(db.sql, { signingKeyId: 'nobody', destination: DEST }),
      /is not registered/,
    );
    const revoked = await principal();
    await revokeSigningKey(db.sql, revoked.keyId);
    await assert.rejects(
      grantScope(db.sql, { signingKeyId: revoked.keyId, destination: DEST }),
      /was revoked at/,
    );
    const expired = await principal({ notBefore: { fromNow: '-10 days' }, notAfter: { fromNow: '-1 day' } });
    await assert.rejects(
      grantScope(db.sql, { signingKeyId: expired.keyId, destination: DEST }),
      /expired at/,
    );
  });
});

describe('registerSigningKey', () => {
  test('a key id is registered once; --replace changes it; a revocation is never cleared', async () => {
    const keyId = uid('principal');
    const a = p256();
    const b = p256();
    assert.equal((await registerSigningKey(db.sql, { keyId, publicKeySpkiDer: a.spki })).action, 'inserted');
    await assert.rejects(registerSigningKey(db.sql, { keyId, publicKeySpkiDer: a.spki }), /pass --replace/);
    await assert.rejects(
      registerSigningKey(db.sql, { keyId: uid('other'), publicKeySpkiDer: a.spki }),
      new RegExp(`already registered as key id "${keyId}"`),
    );

    await grantScope(db.sql, { signingKeyId: keyId, destination: DEST });
    await insertSignedPermission(db.sql, {
      permissionId: uid('perm'),
      signingKeyId: keyId,
      subjectIdentity: 'agent',
      subjectSpkiDer: p256().spki,
      destination: DEST,
      sign: (bytes) => sign('sha256', bytes, a.privateKey),
    });
    const replaced = await registerSigningKey(db.sql, { keyId, publicKeySpkiDer: b.spki, replace: true });
    assert.deepEqual(
      [replaced.action, replaced.keyChanged, replaced.permissionsSigned],
      ['replaced', true, 1],
    );

    await revokeSigningKey(db.sql, keyId);
    const [before] = await db.sql<{ r: string }[]>`
      SELECT revoked_at::text AS r FROM principal_signing_keys WHERE key_id = ${keyId}`;
    await assert.rejects(
      registerSigningKey(db.sql, { keyId, publicKeySpkiDer: b.spki, replace: true }),
      /stays revoked/,
    );
    const [afterwards] = await db.sql<{ r: string }[]>`
      SELECT revoked_at::text AS r FROM principal_signing_keys WHERE key_id = ${keyId}`;
    assert.equal(afterwards?.r, before?.r);
    await assert.rejects(
      registerSigningKey(db.sql, { keyId: uid('missing'), publicKeySpkiDer: p256().spki, replace: true }),
      /no key id .* to replace/,
    );
  });
});

describe('insertSignedPermission with enforceSignerAndScope', () => {
  async function grant(keyId: string, privateKey: KeyObject, extra: Record<string, unknown> = {}) {
    return insertSignedPermission(db.sql, {
      permissionId: uid('perm'),
      signingKeyId: keyId,
      subjectIdentity: 'agent',
      subjectSpkiDer: p256().spki,
      destination: DEST,
      enforceSignerAndScope: true,
      sign: (bytes) => sign('sha256', bytes, privateKey),
      ...extra,
    });
  }

  test('refuses what the gateway would deny, and notes a signer that expires first', async () => {
    const p = await principal({ notBefore: { fromNow: '-1 day' }, notAfter: { fromNow: '20 days' } });
    await assert.rejects(grant(p.keyId, p.privateKey), /holds no delegation scope for api\.example\.com:443/);
    await grantScope(db.sql, {
      signingKeyId: p.keyId,
      destination: DEST,
      notBefore: { fromNow: '-1 hour' },
      lifetime: '60 days',
    });
    await assert.rejects(
      grant(p.keyId, p.privateKey, { notBefore: { fromNow: '-2 hours' } }),
      /covers the whole permission window/,
    );
    await assert.rejects(
      grant(p.keyId, p.privateKey, { notBefore: { fromNow: '-3 days' }, notAfter: { fromNow: '-1 day' } }),
      /already over/,
    );
    const stored = await grant(p.keyId, p.privateKey, { lifetime: '30 days' });
    assert.equal(stored.notes.length, 1);
    assert.match(stored.notes[0] ?? '', /expires at .* before this permission ends/);
    assert.deepEqual((await grant(p.keyId, p.privateKey, { lifetime: '10 days' })).notes, []);

    await revokeSigningKey(db.sql, p.keyId);
    await assert.rejects(grant(p.keyId, p.privateKey, { lifetime: '1 day' }), /was revoked at/);
  });
});
