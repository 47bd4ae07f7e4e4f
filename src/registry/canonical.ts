/**
 * The bytes a principal signs for one permission row (interop: "agent-gateway-permission-v1").
 * The gateway rebuilds them from the row to verify; the CLI builds them to sign. One implementation
 * for both, so a field can never be encoded two ways.
 */
export interface PermissionFields {
  readonly permissionId: string;
  readonly signingKeyId: string;
  readonly subjectIdentity: string;
  readonly subjectSpkiDer: Uint8Array;
  /** Destination exactly as stored in the row (normalized by the writer). */
  readonly destination: string;
  /** UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`, read from PostgreSQL as text (a JS Date would drop microseconds). */
  readonly notBefore: string;
  readonly notAfter: string;
}

export const CANONICAL_HEADER = 'agent-gateway-permission-v1';

/** Exactly six fractional digits, 'Z' suffix: the only timestamp form the signed bytes carry. */
export const CANONICAL_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

export class CanonicalFieldError extends Error {
  override name = 'CanonicalFieldError';
}

export function canonicalPermissionBytes(p: PermissionFields): Buffer {
  for (const [name, value] of [
    ['permission_id', p.permissionId],
    ['signing_key_id', p.signingKeyId],
    ['subject_identity', p.subjectIdentity],
    ['destination', p.destination],
  ] as const) {
    // A newline inside a field would let one row's bytes impersonate another layout.
    if (value.includes('\n') || value.includes('\r')) {
      throw new CanonicalFieldError(`${name} contains a line break and cannot be signed unambiguously`);
    }
  }
  for (const [name, value] of [
    ['not_before', p.notBefore],
    ['not_after', p.notAfter],
  ] as const) {
    if (!CANONICAL_TIMESTAMP.test(value)) {
      throw new CanonicalFieldError(
        `${name} ${JSON.stringify(value)} is not in YYYY-MM-DDTHH:MM:SS.ffffffZ form`,
      );
    }
  }
  const text =
    `${CANONICAL_HEADER}\n` +
    `permission_id=${p.permissionId}\n` +
    `signing_key_id=${p.signingKeyId}\n` +
    `subject_identity=${p.subjectIdentity}\n` +
    `subject_public_key_spki_der=${Buffer.from(p.subjectSpkiDer.buffer, p.subjectSpkiDer.byteOffset, p.subjectSpkiDer.byteLength).toString('hex')}\n` +
    `destination=${p.destination}\n` +
    `not_before=${p.notBefore}\n` +
    `not_after=${p.notAfter}\n`;
  return Buffer.from(text, 'utf8');
}

/** SQL expression that renders a timestamptz column in the canonical form, as text. */
export function canonicalTimestampSql(column: string): string {
  return `to_char((${column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}
