// A short, stable name for an agent key: operators compare it between `agent-gateway` output and the
// registry, where the binding is the SPKI DER itself.
import { createHash } from 'node:crypto';

/** `sha256:<lower-case hex>` of the SubjectPublicKeyInfo DER. */
export function spkiFingerprint(spkiDer: Buffer): string {
  return `sha256:${createHash('sha256').update(spkiDer).digest('hex')}`;
}
