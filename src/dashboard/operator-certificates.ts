import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Credential, Role } from '../admin/auth.js';
import { CertificateError, readClientCertificate } from '../identity/client-certificate.js';
import { spkiFingerprint } from '../pki/fingerprint.js';

/** One `[[operators]]` entry: a key (its SPKI fingerprint, as `agent create` prints it), a name and a role. */
export interface OperatorEntry {
  readonly name: string;
  readonly spkiSha256: string;
  readonly role: Role;
}

/** No identity extension is read from an operator's certificate: any OID will do for the DER reader. */
const UNUSED_OID = Buffer.from([0x2b]);

/**
 * Operator client certificates as a login: over TLS the dashboard asks for a client certificate (no CA is
 * trusted, as for agents; OpenSSL still checks that the client holds the key) and looks its exact SPKI up
 * among the configured operators. The key is the credential, pinned by fingerprint, so a renewed
 * certificate for the same key keeps working and one for another key does not.
 *
 * A certificate is sent by the browser on its own, like a cookie, so actions still need a CSRF token:
 * for certificate logins it is an HMAC of the fingerprint under a key that lives in this process.
 */
export class OperatorCertificates {
  private readonly byFingerprint: ReadonlyMap<string, OperatorEntry>;
  private readonly csrfKey = randomBytes(32);

  constructor(operators: readonly OperatorEntry[]) {
    this.byFingerprint = new Map(operators.map((o) => [o.spkiSha256, o]));
  }

  get enabled(): boolean {
    return this.byFingerprint.size > 0;
  }

  /** The operator whose key presented the TLS client certificate of `req`, if any. */
  operatorOf(req: IncomingMessage): (OperatorEntry & { fingerprint: string }) | undefined {
    if (!this.enabled) return undefined;
    const socket = req.socket as Partial<TLSSocket>;
    const raw = socket.getPeerX509Certificate?.()?.raw;
    if (raw === undefined) return undefined;
    let spki: Buffer;
    try {
      spki = readClientCertificate(raw, UNUSED_OID).spki;
    } catch (error) {
      if (error instanceof CertificateError) return undefined;
      throw error;
    }
    const fingerprint = spkiFingerprint(spki);
    const entry = this.byFingerprint.get(fingerprint);
    return entry === undefined ? undefined : { ...entry, fingerprint };
  }

  credentialOf(req: IncomingMessage): Credential | undefined {
    const o = this.operatorOf(req);
    return o === undefined
      ? undefined
      : { role: o.role, via: 'certificate', name: `${o.name} (certificate)` };
  }

  /** The CSRF token of a certificate login (what `/api/session` hands the page). */
  csrfFor(req: IncomingMessage): string | undefined {
    const o = this.operatorOf(req);
    return o === undefined ? undefined : this.mac(o.fingerprint);
  }

  csrfMatches(req: IncomingMessage, presented: string | undefined): boolean {
    const expected = this.csrfFor(req);
    if (expected === undefined || presented === undefined) return false;
    const a = Buffer.from(this.mac(presented));
    const b = Buffer.from(this.mac(expected));
    return timingSafeEqual(a, b);
  }

  private mac(text: string): string {
    return createHmac('sha256', this.csrfKey).update(text).digest('base64url');
  }
}
