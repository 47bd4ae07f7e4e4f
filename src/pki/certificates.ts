// Issuance of the certificates agent-gateway deployments need: a CA, TLS server certificates (or
// CSRs for an external CA) and agent client certificates carrying the identity extension.
// @peculiar/x509 builds the ASN.1; it relies on decorators' metadata, so reflect-metadata must load
// before it does.
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import { identityExtensionValue } from './identity-extension.js';
import { assertP256, generateP256KeyPair, loadPrivateKey, spkiDerOf } from './keys.js';

// Node's WebCrypto is the one implementation we trust for signing; register it explicitly instead of
// relying on the library's guess of a global.
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

/** An extension value placed verbatim inside the extension's OCTET STRING. */
export interface RawExtension {
  oid: string;
  valueDer: Buffer;
  critical?: boolean;
}

interface SubjectKey {
  keyPem: string;
  spkiDer: Buffer;
}

interface IssueParams {
  subjectName: x509.JsonName;
  key: SubjectKey;
  /** Undefined: self-signed with `key`. */
  issuer: IssuedCertificate | undefined;
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

async function importSigningKey(keyPem: string, what: string): Promise<webcrypto.CryptoKey> {
  const key = loadPrivateKey(keyPem);
  assertP256(key, what);
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  return subtleCrypto.subtle.importKey('pkcs8', pkcs8, P256_IMPORT, false, ['sign']);
}

async function importPublicKey(spkiDer: Buffer): Promise<webcrypto.CryptoKey> {
  return subtleCrypto.subtle.importKey('spki', spkiDer, P256_IMPORT, true, ['verify']);
}

/** A fresh P-256 key, or the caller's key (checked to be P-256) when `keyPem` is given. */
function subjectKey(keyPem: string | undefined, what: string): SubjectKey {
  if (keyPem === undefined) {
    const pair = generateP256KeyPair();
    return { keyPem: pair.privateKeyPem, spkiDer: pair.publicKeySpkiDer };
  }
  const key = loadPrivateKey(keyPem);
  assertP256(key, what);
  return { keyPem, spkiDer: spkiDerOf(key) };
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

async function issue(params: IssueParams): Promise<IssuedCertificate> {
  const { key, issuer } = params;
  const signer = issuer ?? { keyPem: key.keyPem, spkiDer: key.spkiDer };
  if (issuer !== undefined) {
    const issuerKeySpki = spkiDerOf(loadPrivateKey(issuer.keyPem));
    if (!issuerKeySpki.equals(issuer.spkiDer)) {
      throw new Error("issuer keyPem does not belong to the issuer certificate; pass the CA's own key");
    }
  }
  const issuerName =
    issuer === undefined ? params.subjectName : new x509.X509Certificate(issuer.certDer).subjectName;
  const extensions = [
    ...params.extensions,
    await x509.SubjectKeyIdentifierExtension.create(key.spkiDer, false, subtleCrypto),
  ];
  if (issuer !== undefined) {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.spkiDer, false, subtleCrypto));
  }
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerialHex(),
      subject: params.subjectName,
      issuer: issuerName,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + checkValidDays(params.validDays) * DAY_MS),
      publicKey: key.spkiDer,
      signingKey: await importSigningKey(signer.keyPem, 'issuer key'),
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions,
    },
    subtleCrypto,
  );
  const certDer = Buffer.from(cert.rawData);
  // The library parses and re-serializes the SPKI; the gateway binds permissions to the exact bytes,
  // so refuse to hand out a certificate whose SPKI differs from the key's own DER.
  if (certDer.indexOf(key.spkiDer) === -1) {
    throw new Error(
      'issued certificate does not carry the exact SPKI DER of its key (re-encoded); do not use it',
    );
  }
  return { certPem: derToPem(certDer, 'CERTIFICATE'), certDer, keyPem: key.keyPem, spkiDer: key.spkiDer };
}

export async function createCa(opts: { commonName: string; validDays?: number }): Promise<IssuedCertificate> {
  return issue({
    subjectName: nameOf(opts.commonName),
    key: subjectKey(undefined, 'CA key'),
    issuer: undefined,
    validDays: opts.validDays ?? 3650,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
    ],
  });
}

export async function createServerCertificate(opts: {
  ca: IssuedCertificate;
  dnsNames: string[];
  ipAddresses: string[];
  validDays?: number;
  commonName?: string;
}): Promise<IssuedCertificate> {
  const san = sanExtension(opts.dnsNames, opts.ipAddresses);
  return issue({
    subjectName: nameOf(opts.commonName ?? opts.dnsNames[0] ?? opts.ipAddresses[0] ?? 'agent-gateway'),
    key: subjectKey(undefined, 'server key'),
    issuer: opts.ca,
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
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: nameOf(opts.commonName ?? opts.dnsNames[0] ?? opts.ipAddresses[0] ?? 'agent-gateway'),
      keys: {
        privateKey: await importSigningKey(key.keyPem, 'server key'),
        publicKey: await importPublicKey(key.spkiDer),
      },
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]), san],
    },
    subtleCrypto,
  );
  return { csrPem: derToPem(Buffer.from(csr.rawData), 'CERTIFICATE REQUEST'), keyPem: key.keyPem };
}

interface AgentCommonOptions {
  validDays?: number;
  /** Default: self-signed (the gateway trusts no CA; only the key and the extension matter). */
  issuer?: IssuedCertificate;
  /** Reuse an existing unencrypted P-256 key instead of generating one. */
  keyPem?: string;
  commonName?: string;
}

/**
 * An agent client certificate with `extension` placed verbatim, or none when undefined. Tests use
 * this to build malformed identities; real issuance goes through createAgentCertificate.
 */
export async function createAgentCertificateWithRawExtension(
  opts: AgentCommonOptions & { extension: RawExtension | undefined },
): Promise<IssuedCertificate> {
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
  ];
  if (opts.extension !== undefined) {
    const { oid, valueDer, critical = false } = opts.extension;
    extensions.push(new x509.Extension(oid, critical, valueDer));
  }
  return issue({
    subjectName: nameOf(opts.commonName ?? 'agent'),
    key: subjectKey(opts.keyPem, 'agent key'),
    issuer: opts.issuer,
    validDays: opts.validDays ?? 365,
    extensions,
  });
}

export async function createAgentCertificate(
  opts: AgentCommonOptions & { identity: string; extensionOid: string },
): Promise<IssuedCertificate> {
  const { identity, extensionOid, ...common } = opts;
  const valueDer = identityExtensionValue(identity);
  // RFC 5280 caps commonName at 64 characters; longer identities live only in the extension.
  const commonName = common.commonName ?? (identity.length <= 64 ? identity : 'agent');
  return createAgentCertificateWithRawExtension({
    ...common,
    commonName,
    extension: { oid: extensionOid, valueDer, critical: false },
  });
}
