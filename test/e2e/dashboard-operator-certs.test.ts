import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { after, before, test } from 'node:test';
import { spkiFingerprint } from '../../src/pki/fingerprint.js';
import {
  type DashboardProcess,
  type DashboardRole,
  dashboardRole,
  startDashboardProcess,
  writeDashboardConfig,
} from '../helpers/dashboard-process.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { createTestPki, type TestAgent, type TestPki } from '../helpers/pki.js';

/**
 * Operator client certificates as a dashboard login (over TLS): a configured key logs in with its role by
 * presenting its certificate, an unknown one does not, a read-only operator cannot act, and a certificate
 * login's actions still need its CSRF token (a browser sends the certificate on its own, like a cookie).
 */
let pki: TestPki;
let db: FreshDatabase;
let role: DashboardRole;
let dashboard: DashboardProcess;
let ca: Buffer;
let alice: TestAgent;
let bob: TestAgent;
let mallory: TestAgent;

before(async () => {
  pki = await createTestPki();
  db = await freshDatabase();
  role = await dashboardRole(db);
  ca = await readFile(pki.caCertPath);
  alice = await pki.agent('operator-alice');
  bob = await pki.agent('operator-bob');
  mallory = await pki.agent('operator-mallory');
  dashboard = await startDashboardProcess(
    await writeDashboardConfig({
      dir: pki.dir,
      databaseUrl: role.url,
      gateways: [],
      extra: `tls_cert_path = ${JSON.stringify(pki.serverCertPath)}\ntls_key_path = ${JSON.stringify(pki.serverKeyPath)}`,
      tables: [
        '[[operators]]',
        'name = "alice"',
        `spki_sha256 = "${spkiFingerprint(alice.spkiDer)}"`,
        'role = "admin"',
        '[[operators]]',
        'name = "bob"',
        `spki_sha256 = "${spkiFingerprint(bob.spkiDer)}"`,
        'role = "read"',
      ].join('\n'),
    }),
    {
      TEST_DASHBOARD_TOKEN: 'dashboard-admin-token-0123456789',
      TEST_DASHBOARD_READ_TOKEN: 'dashboard-read-token-0123456789ab',
      TEST_DASHBOARD_INGEST_TOKEN: 'dashboard-ingest-token-0123456789',
    },
  );
});

after(async () => {
  await dashboard?.stop();
  await role?.drop();
  await db?.drop();
  await pki?.cleanup();
});

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

function call(
  path: string,
  who: TestAgent | undefined,
  opts: { body?: unknown; headers?: Record<string, string> } = {},
) {
  const url = new URL(path, dashboard.url);
  const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
  return new Promise<Answer>((resolve, reject) => {
    const req = request(
      url,
      {
        method: payload === undefined ? 'GET' : 'POST',
        ca,
        ...(who === undefined ? {} : { cert: who.certPem, key: who.keyPem }),
        headers: {
          ...(payload === undefined ? {} : { 'content-type': 'application/json', origin: url.origin }),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, body: text.startsWith('{') ? JSON.parse(text) : {} });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

test('a configured operator key logs in with its role; no certificate or an unknown one does not', async () => {
  assert.match(dashboard.url, /^https:\/\//);
  const session = await call('/api/session', alice);
  assert.equal(session.status, 200);
  assert.equal(session.body['role'], 'admin');
  assert.equal(session.body['via'], 'certificate');
  assert.equal(session.body['name'], 'alice (certificate)');
  assert.equal((await call('/api/session', bob)).body['role'], 'read');
  assert.equal((await call('/api/state', undefined)).status, 401);
  assert.equal((await call('/api/state', mallory)).status, 401);
});

test('certificate logins act only as admin, and only with their CSRF token', async () => {
  const csrf = String((await call('/api/session', alice)).body['csrf']);
  const revoke = { kind: 'permission', id: 'no-such-permission' };
  const withoutToken = await call('/api/revoke', alice, { body: revoke });
  assert.equal(withoutToken.status, 403);
  const otherToken = await call('/api/revoke', alice, {
    body: revoke,
    headers: { 'x-csrf-token': String((await call('/api/session', bob)).body['csrf']) },
  });
  assert.equal(otherToken.status, 403, "bob's token is not alice's");
  const done = await call('/api/revoke', alice, { body: revoke, headers: { 'x-csrf-token': csrf } });
  assert.equal(done.status, 404, 'accepted, and the registry has no such row');
  assert.equal((done.body['error'] as { code: string }).code, 'ADMIN_NOT_FOUND');
  const bobsCsrf = String((await call('/api/session', bob)).body['csrf']);
  const readOnly = await call('/api/revoke', bob, { body: revoke, headers: { 'x-csrf-token': bobsCsrf } });
  assert.equal(readOnly.status, 403);
  assert.equal((readOnly.body['error'] as { code: string }).code, 'ADMIN_FORBIDDEN');
  const audit = await dashboard.waitForLog((l) => l.msg === 'operator action' && l['action'] === 'revoke');
  assert.equal(audit['operator_name'], 'alice (certificate)');
});
