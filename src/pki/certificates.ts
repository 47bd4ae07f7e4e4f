// Issuance of the certificates agent-gateway deployments need: a CA, TLS server certificates (or
// CSRs for an external CA) and agent client certificates carrying the identity extension.
// @peculiar/x509 builds the ASN.1; it relies on decorators' metadata, so reflect-metadata must load
// before it does.
import 'reflect-metadata';
import { createPublicKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import { identityExtensionValue } from './identity-extension.js';
import { generateP256KeyPair, loadPrivateKey } from './keys.js';
import { keyObjectSigner, type P256Signer } from './signer.js';
import { signingCrypto } from './signing-crypto.js';

// Node's WebCrypto is the one implementation we trust for hashing and verifying; register it explicitly
// instead of relying on the library's guess of a global.
const subtleCrypto = webcrypto;
x509.cryptoProvider.set(subtleCrypto);

const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' };
const P256_IMPORT = { name: 'ECDSA', namedCurve: 'P-256' };
const DAY_MS = 24 * 60 * 60 * 1000;
// Backdating notBefore absorbs small clock differences between the issuing host and verifiers.
const BACKDATE_MS = 5 * 60 * 1000;

export interface IssuedCertificate {
  certPem: string;
  certDer: Buffer;
  /** Unencrypted PKCS#8 PEM of the certificate's private key. */
  keyPem: string;
  /** The SubjectPublicKeyInfo DER exactly as it appears inside `certDer`. */
  spkiDer: Buffer;
}

/** A certificate for a key this process does not hold (a PKCS#11 token key): no `keyPem`. */
export type CertifiedKey = Omit<IssuedCertificate, 'keyPem'>;

/** Who signs new certificates: a CA certificate and a signer for its key (a file key or a token key). */
export interface CertificateIssuer {
  readonly certDer: Buffer;
  /** The SPKI of `certDer`, which must be `signer`'s key. */
  readonly spkiDer: Buffer;
  readonly signer: P256Signer;
}

/** An extension value placed verbatim inside the extension's OCTET STRING. */
export interface RawExtension {
  oid: string;
  valueDer: Buffer;
  critical?: boolean;
}

interface IssueParams {
  subjectName: x509.JsonName;
  subjectSpkiDer: Buffer;
  /** The issuer's signer, or the subject's own key when self-signed. */
  signer: P256Signer;
  /** Undefined: self-signed (`signer` is the subject's key). */
  issuer: CertificateIssuer | undefined;
  validDays: number;
  extensions: x509.Extension[];
}

function derToPem(der: Buffer, label: string): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Exactly 16 random octets with the top bit clear, so the DER INTEGER is positive and 16 bytes long. */
function randomSerialHex(): string {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  return serial.toString('hex');
}

function checkValidDays(validDays: number): number {
  if (!Number.isInteger(validDays) || validDays < 1) {
    throw new Error(`validDays must be a positive whole number of days, got ${validDays}`);
  }
  return validDays;
}

function nameOf(commonName: string): x509.JsonName {
  if (commonName.length === 0 || /[\n\r\0]/.test(commonName)) {
    throw new Error(`commonName ${JSON.stringify(commonName)} must be non-empty and on one line`);
  }
  return [{ CN: [commonName] }];
}

async function importPublicKey(spkiDer: Buffer): Promise<webcrypto.CryptoKey> {
  return subtleCrypto.subtle.importKey('spki', spkiDer, P256_IMPORT, true, ['verify']);
}

/** An issuer from a CA's files (cert + unencrypted key PEM), checked to belong together. */
export function issuerFromFiles(ca: IssuedCertificate): CertificateIssuer {
  const signer = keyObjectSigner(loadPrivateKey(ca.keyPem), 'issuer key');
  if (!signer.spkiDer.equals(ca.spkiDer)) {
    throw new Error("issuer keyPem does not belong to the issuer certificate; pass the CA's own key");
  }
  return { certDer: ca.certDer, spkiDer: ca.spkiDer, signer };
}

function asIssuer(ca: IssuedCertificate | CertificateIssuer | undefined): CertificateIssuer | undefined {
  if (ca === undefined || 'signer' in ca) return ca;
  return issuerFromFiles(ca);
}

/** A fresh P-256 key, or the caller's key (checked to be P-256) when `keyPem` is given. */
function subjectKey(keyPem: string | undefined, what: string): { keyPem: string; signer: P256Signer } {
  const pem = keyPem ?? generateP256KeyPair().privateKeyPem;
  return { keyPem: pem, signer: keyObjectSigner(loadPrivateKey(pem), what) };
}

function sanExtension(dnsNames: string[], ipAddresses: string[]): x509.SubjectAlternativeNameExtension {
  for (const ip of ipAddresses) {
    if (isIP(ip) === 0) {
      throw new Error(`ipAddresses entry ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
    }
  }
  if (dnsNames.length + ipAddresses.length === 0) {
    throw new Error('a server certificate needs at least one DNS name or IP address');
  }
  return new x509.SubjectAlternativeNameExtension([
    ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...ipAddresses.map((value) => ({ type: 'ip' as const, value })),
  ]);
}

async function issue(params: IssueParams): Promise<CertifiedKey> {
  const { issuer, signer, subjectSpkiDer } = params;
  const signerSpki = issuer?.spkiDer ?? subjectSpkiDer;
  if (!signer.spkiDer.equals(signerSpki)) {
    throw new Error(
      issuer === undefined
        ? 'a self-signed certificate must be signed by its own key; the signer holds another key'
        : "the issuer's signer does not hold the key of the issuer certificate; pass the CA's own key",
    );
  }
  const issuerName =
    issuer === undefined ? params.subjectName : new x509.X509Certificate(issuer.certDer).subjectName;
  const extensions = [
    ...params.extensions,
    await x509.SubjectKeyIdentifierExtension.create(subjectSpkiDer, false, subtleCrypto),
  ];
  if (issuer !== undefined) {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.spkiDer, false, subtleCrypto));
  }
  const now = Date.now();
  const signing = signingCrypto(signer);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerialHex(),
      subject: params.subjectName,
      issuer: issuerName,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + checkValidDays(params.validDays) * DAY_MS),
      publicKey: subjectSpkiDer,
      signingKey: signing.key,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions,
    },
    signing.crypto,
  );
  const certDer = Buffer.from(cert.rawData);
  // The library parses and re-serializes the SPKI; the gateway binds permissions to the exact bytes,
  // so refuse to hand out a certificate whose SPKI differs from the key's own DER.
  if (certDer.indexOf(subjectSpkiDer) === -1) {
    throw new Error(
      'issued certificate does not carry the exact SPKI DER of its key (re-encoded); do not use it',
    );
  }
  // The signature came from outside WebCrypto (possibly a token): check it before anyone relies on it.
  if (
    !new X509Certificate(certDer).verify(createPublicKey({ key: signerSpki, format: 'der', type: 'spki' }))
  ) {
    throw new Error("the issued certificate's signature does not verify with the issuer key; do not use it");
  }
  return { certPem: derToPem(certDer, 'CERTIFICATE'), certDer, spkiDer: subjectSpkiDer };
}

/** Issues a certificate for a freshly generated (or given) key held in this process. */
async function issueWithKeyFile(
  params: Omit<IssueParams, 'subjectSpkiDer' | 'signer'> & { keyPem?: string; what: string },
): Promise<IssuedCertificate> {
  const { keyPem, what, ...rest } = params;
  const key = subjectKey(keyPem, what);
  const certified = await issue({
    ...rest,
    subjectSpkiDer: key.signer.spkiDer,
    signer: params.issuer?.signer ?? key.signer,
  });
  return { ...certified, keyPem: key.keyPem };
}

function caExtensions(): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
      true,
    ),
  ];
}

export async function createCa(opts: { commonName: string; validDays?: number }): Promise<IssuedCertificate> {
  return issueWithKeyFile({
    subjectName: nameOf(opts.commonName),
    what: 'CA key',
    issuer: undefined,
    validDays: opts.validDays ?? 3650,
    extensions: caExtensions(),
  });
}

/** A self-signed CA certificate for a key held elsewhere (a PKCS#11 token), signed by that key. */
export async function certifyCaKey(opts: {
  commonName: string;
  validDays?: number;
  key: P256Signer;
}): Promise<CertifiedKey> {
  return issue({
    subjectName: nameOf(opts.commonName),
    subjectSpkiDer: opts.key.spkiDer,
    signer: opts.key,
    issuer: undefined,
    validDays: opts.validDays ?? 3650,
    extensions: caExtensions(),
  });
}

export async function createServerCertificate(opts: {
  ca: IssuedCertificate | CertificateIssuer;
  dnsNames: string[];
  ipAddresses: string[];
  validDays?: number;
  commonName?: string;
}): Promise<IssuedCertificate> {
  const san = sanExtension(opts.dnsNames, opts.ipAddresses);
  return issueWithKeyFile({
    subjectName: nameOf(opts.commonName ?? opts.dnsNames[0] ?? opts.ipAddresses[0] ?? 'agent-gateway'),
    what: 'server key',
    issuer: asIssuer(opts.ca),
    validDays: opts.validDays ?? 365,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      san,
    ],
  });
}

/** A PKCS#10 request for the gateway's server key, for deployments whose CA is external. */
export async function createServerCsr(opts: {
  dnsNames: string[];
  ipAddresses: string[];
  commonName?: string;
}): Promise<{ csrPem: string; keyPem: string }> {
  const san = sanExtension(opts.dnsNames, opts.ipAddresses);
  const key = subjectKey(undefined, 'server key');
  const signing = signingCrypto(key.signer);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: nameOf(opts.commonName ?? opts.dnsNames[0] ?? opts.ipAddresses[0] ?? 'agent-gateway'),
      keys: { privateKey: signing.key, publicKey: await importPublicKey(key.signer.spkiDer) },
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]), san],
    },
    signing.crypto,
  );
  return { csrPem: derToPem(Buffer.from(csr.rawData), 'CERTIFICATE REQUEST'), keyPem: key.keyPem };
}

interface AgentCommonOptions {
  validDays?: number;
  /** Default: self-signed (the gateway trusts no CA; only the key and the extension matter). */
  issuer?: IssuedCertificate | CertificateIssuer;
  commonName?: string;
}

interface AgentIdentityOptions {
  identity: string;
  extensionOid: string;
}

function agentExtensions(extension: RawExtension | undefined): x509.Extension[] {
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
  ];
  if (extension !== undefined) {
    const { oid, valueDer, critical = false } = extension;
    extensions.push(new x509.Extension(oid, critical, valueDer));
  }
  return extensions;
}

/** The identity extension and the commonName for an agent identity. */
function identityParts(opts: AgentIdentityOptions & { commonName?: string }) {
  const valueDer = identityExtensionValue(opts.identity);
  // RFC 5280 caps commonName at 64 characters; longer identities live only in the extension.
  const commonName = opts.commonName ?? (opts.identity.length <= 64 ? opts.identity : 'agent');
  return { commonName, extension: { oid: opts.extensionOid, valueDer, critical: false } };
}

/**
 * An agent client certificate with `extension` placed verbatim, or none when undefined. Tests use
 * this to build malformed identities; real issuance goes through createAgentCertificate.
 */
export async function createAgentCertificateWithRawExtension(
  opts: AgentCommonOptions & { extension: RawExtension | undefined; keyPem?: string },
): Promise<IssuedCertificate> {
  return issueWithKeyFile({
    subjectName: nameOf(opts.commonName ?? 'agent'),
    what: 'agent key',
    ...(opts.keyPem === undefined ? {} : { keyPem: opts.keyPem }),
    issuer: asIssuer(opts.issuer),
    validDays: opts.validDays ?? 365,
    extensions: agentExtensions(opts.extension),
  });
}

/** A P-256 agent key (generated, or `keyPem` reused) and its certificate carrying the identity extension. */
export async function createAgentCertificate(
  opts: AgentCommonOptions & AgentIdentityOptions & { keyPem?: string },
): Promise<IssuedCertificate> {
  const { identity, extensionOid, commonName, ...common } = opts;
  return createAgentCertificateWithRawExtension({
    ...common,
    ...identityParts({ identity, extensionOid, ...(commonName === undefined ? {} : { commonName }) }),
  });
}

/**
 * A certificate with the identity extension for an agent key held elsewhere (a PKCS#11 token): `key`
 * signs it when there is no issuer (self-signed), so certificate signing goes through the token too.
 */
export async function certifyAgentKey(
  opts: AgentCommonOptions & AgentIdentityOptions & { key: P256Signer },
): Promise<CertifiedKey> {
  const parts = identityParts(opts);
  const issuer = asIssuer(opts.issuer);
  return issue({
    subjectName: nameOf(parts.commonName),
    subjectSpkiDer: opts.key.spkiDer,
    signer: issuer?.signer ?? opts.key,
    issuer,
    validDays: opts.validDays ?? 365,
    extensions: agentExtensions(parts.extension),
  });
}
