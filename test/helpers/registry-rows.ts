import { execFile } from 'node:child_process';
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type postgres from 'postgres';
import { canonicalPermissionBytes, canonicalTimestampSql } from '../../src/registry/canonical.js';

const run = promisify(execFile);

/**
 * Registry rows written the way an outside tool would write them: plain SQL and a signature over
 * the canonical bytes. Independent of src/registry/writer.ts, so the gateway is tested against rows
 * it did not write itself.
 */
export interface Principal {
  readonly keyId: string;
  readonly privateKey: KeyObject;
  readonly privateKeyPem: string;
  readonly spki: Buffer;
}

export async function createPrincipal(sql: postgres.Sql, keyId: string): Promise<Principal> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  await sql`
    INSERT INTO principal_signing_keys (key_id, algorithm, public_key_spki_der, not_before, not_after)
    VALUES (${keyId}, 'ecdsa_p256_sha256', ${spki}, now() - interval '1 day', now() + interval '30 days')`;
  return {
    keyId,
    privateKey,
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    spki,
  };
}

export async function grantScope(sql: postgres.Sql, keyId: string, destination: string): Promise<void> {
  await sql`
    INSERT INTO principal_key_permissions (signing_key_id, destination, not_before, not_after)
    VALUES (${keyId}, ${destination}, now() - interval '1 day', now() + interval '30 days')`;
}

export type Signer = (bytes: Buffer) => Promise<Buffer>;

export const nodeSigner =
  (principal: Principal): Signer =>
  async (bytes) =>
    sign('sha256', bytes, principal.privateKey);

/** Signs with `openssl dgst -sha256 -sign`, retrying until the signature is high-S if asked. */
export function opensslSigner(principal: Principal, opts: { requireHighS?: boolean } = {}): Signer {
  return async (bytes) => {
    const dir = await mkdtemp(join(tmpdir(), 'ag-openssl-'));
    try {
      const keyPath = join(dir, 'key.pem');
      const dataPath = join(dir, 'data');
      await writeFile(keyPath, principal.privateKeyPem, { mode: 0o600 });
      await writeFile(dataPath, bytes);
      for (let attempt = 0; attempt < 64; attempt++) {
        const { stdout } = await run('openssl', ['dgst', '-sha256', '-sign', keyPath, dataPath], {
          encoding: 'buffer',
        });
        if (!opts.requireHighS || isHighS(stdout)) return stdout;
      }
      throw new Error('openssl never produced a high-S signature in 64 attempts');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };
}

const P256_HALF_N = BigInt('0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551') / 2n;

/** Reads s from a DER `SEQUENCE { r INTEGER, s INTEGER }` (short lengths: P-256 fits). */
export function isHighS(der: Buffer): boolean {
  const rLen = der[3]!;
  const sOffset = 4 + rLen;
  const sLen = der[sOffset + 1]!;
  const s = BigInt(`0x${der.subarray(sOffset + 2, sOffset + 2 + sLen).toString('hex')}`);
  return s > P256_HALF_N;
}

export interface PermissionInput {
  readonly permissionId: string;
  readonly principal: Principal;
  readonly identity: string;
  readonly agentSpki: Buffer;
  readonly destination: string;
  readonly signer?: Signer;
  /** SQL for the window's ends (default: from an hour ago for a week, on whole seconds). */
  readonly notBeforeSql?: string;
  readonly notAfterSql?: string;
}

/** Inserts a permission valid from an hour ago for a week (or as given), with the window read back as text. */
export async function grantPermission(sql: postgres.Sql, input: PermissionInput): Promise<void> {
  const nb = input.notBeforeSql ?? "date_trunc('second', now()) - interval '1 hour'";
  const na = input.notAfterSql ?? "date_trunc('second', now()) + interval '7 days'";
  const [window] = await sql.unsafe<[{ nb: string; na: string }]>(
    `SELECT ${canonicalTimestampSql(nb)} AS nb, ${canonicalTimestampSql(na)} AS na`,
  );
  const bytes = canonicalPermissionBytes({
    permissionId: input.permissionId,
    signingKeyId: input.principal.keyId,
    subjectIdentity: input.identity,
    subjectSpkiDer: input.agentSpki,
    destination: input.destination,
    notBefore: window.nb,
    notAfter: window.na,
  });
  const signature = await (input.signer ?? nodeSigner(input.principal))(bytes);
  await sql`
    INSERT INTO permission_registry (permission_id, signing_key_id, subject_identity,
      subject_public_key_spki_der, destination, not_before, not_after, signature)
    VALUES (${input.permissionId}, ${input.principal.keyId}, ${input.identity}, ${input.agentSpki},
      ${input.destination}, ${window.nb}::text::timestamptz, ${window.na}::text::timestamptz, ${signature})`;
}
