import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { ConfigError } from '../config/errors.js';
import { describeFsError } from '../config/load.js';
import { CertificateError, readClientCertificate } from '../identity/client-certificate.js';
import { Pkcs11Error } from '../pkcs11/errors.js';
import { formatKeyUri, parseKeyUri } from '../pkcs11/uri.js';
import { KeyFileError } from '../pki/keys.js';
import type { SidecarConfig } from './config.js';
import { fileKeySource, type TlsClientKeySource, tokenKeySource } from './tls-client-key.js';

/**
 * The TLS material the sidecar presents to the gateway, checked once at start so that an operator
 * sees a precise message instead of an opaque handshake failure on the first tunnel: unreadable
 * files, PEM that is not what it should be, a token key that cannot be used, a certificate whose key is
 * another one, and a certificate the gateway is bound to deny (no identity extension: a warning, since the
 * gateway may be configured with another OID than the one given here).
 */
export interface AgentCredentials {
  /**
   * CA certificates, the agent's chain and its key in one TLS context, built once and shared by every
   * connection to the gateway (a token key is then looked up once, not per connection).
   */
  readonly secureContext: SecureContext;
  /** The identity the gateway will read, or null with the reason in `warnings`. */
  readonly identity: string | null;
  /** SHA-256 of the agent certificate's DER (lower-case hex), to name it in logs. */
  readonly certSha256: string;
  /**
   * A digest of everything the TLS context was built from (the CA and agent certificates, the key's
   * location and public key): equal digests mean a reload found nothing new.
   */
  readonly digest: string;
  readonly warnings: readonly string[];
  /** Where the key is: the file, or the token key's URI. */
  readonly keyDescription: string;
  /** About the key itself (a token key the token may reveal). */
  readonly keyWarnings: readonly string[];
  /** Releases the key source (a token session); call once no new connection will use `secureContext`. */
  close(): void;
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Loads and checks the TLS client credentials; throws ConfigError listing every problem. Each call reads
 * everything afresh and returns credentials that own their key source, so it can be called again to
 * replace them (the old ones are closed by the caller once the new ones are in use).
 */
export async function loadAgentCredentials(config: SidecarConfig, source: string): Promise<AgentCredentials> {
  const problems: string[] = [];
  const [caText, certText, key] = await Promise.all([
    readText(config.gatewayCaPath, 'sidecar.gateway_ca_path (--gateway-ca)', problems),
    readText(config.certPath, 'sidecar.cert_path (--cert)', problems),
    openKey(config, problems),
  ]);
  try {
    const caCerts =
      caText === undefined
        ? []
        : certificates(caText, 'sidecar.gateway_ca_path', config.gatewayCaPath, problems);
    const chain =
      certText === undefined ? [] : certificates(certText, 'sidecar.cert_path', config.certPath, problems);
    const leaf = chain[0];
    if (leaf !== undefined && key !== undefined && !sameKey(leaf, key.spkiDer)) {
      problems.push(
        `the agent certificate ${shown(config.certPath)} does not match the private key ${shownKey(config)}: ` +
          'the key belongs to another certificate; pass the key that was generated with this certificate',
      );
    }
    const { identity, warnings } = identityOf(leaf, config, problems);
    if (
      problems.length > 0 ||
      key === undefined ||
      caText === undefined ||
      certText === undefined ||
      leaf === undefined
    ) {
      throw new ConfigError(problems, source);
    }
    const secureContext = contextFor(caCerts, chain, key, config, problems);
    if (secureContext === undefined) throw new ConfigError(problems, source);
    const digest = createHash('sha256');
    for (const part of [...caCerts.map((c) => c.raw), Buffer.from('\0chain'), ...chain.map((c) => c.raw)])
      digest.update(part);
    digest.update(`\0key ${key.description}\0`).update(key.spkiDer);
    return {
      secureContext,
      identity,
      certSha256: createHash('sha256').update(leaf.raw).digest('hex'),
      digest: digest.digest('hex'),
      warnings,
      keyDescription: key.description,
      keyWarnings: key.warnings,
      close: () => key.close(),
    };
  } catch (error) {
    key?.close();
    throw error;
  }
}

/** The key file or the token key; a problem with it goes into `problems` (a token failure is thrown). */
async function openKey(config: SidecarConfig, problems: string[]): Promise<TlsClientKeySource | undefined> {
  if (config.keyToken !== undefined) {
    try {
      return await tokenKeySource(config.keyToken);
    } catch (error) {
      if (!(error instanceof Pkcs11Error) || error.kind !== 'input') throw error;
      problems.push(`sidecar.key_path (--key): ${error.message} [${error.code}]`);
      return undefined;
    }
  }
  const text = await readText(config.keyPath, 'sidecar.key_path (--key)', problems);
  if (text === undefined) return undefined;
  try {
    return fileKeySource(config.keyPath, text, config.keyPassphrase);
  } catch (error) {
    if (!(error instanceof KeyFileError)) throw error;
    problems.push(`sidecar.key_path: ${shown(config.keyPath)}: ${error.message}`);
    return undefined;
  }
}

/** The certificate's public key is the key source's: compared as canonical SPKI DER. */
function sameKey(leaf: X509Certificate, spkiDer: Buffer): boolean {
  const canonical = (der: Buffer) =>
    createPublicKey({ key: der, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'der' });
  return canonical(leaf.publicKey.export({ type: 'spki', format: 'der' })).equals(canonical(spkiDer));
}

function identityOf(
  leaf: X509Certificate | undefined,
  config: SidecarConfig,
  problems: string[],
): { identity: string | null; warnings: string[] } {
  const warnings: string[] = [];
  if (leaf === undefined) return { identity: null, warnings };
  try {
    const read = readClientCertificate(leaf.raw, config.identityOidContent);
    if (read.identityProblem === 'missing') {
      warnings.push(
        `the agent certificate ${shown(config.certPath)} has no identity extension ${config.identityOid}: ` +
          'the gateway will deny every CONNECT (no_identity) unless it is configured with another OID',
      );
    } else if (read.identityProblem === 'malformed') {
      warnings.push(
        `the identity extension ${config.identityOid} of ${shown(config.certPath)} is not one UTF8String: ` +
          'the gateway will deny every CONNECT (malformed_identity)',
      );
    }
    return { identity: read.identity, warnings };
  } catch (error) {
    if (!(error instanceof CertificateError)) throw error;
    problems.push(
      `sidecar.cert_path: ${shown(config.certPath)}: ${error.message}; the gateway would refuse it`,
    );
    return { identity: null, warnings };
  }
}

function contextFor(
  caCerts: X509Certificate[],
  chain: X509Certificate[],
  key: TlsClientKeySource,
  config: SidecarConfig,
  problems: string[],
): SecureContext | undefined {
  try {
    return createSecureContext({
      ca: caCerts.map((c) => c.toString()).join(''),
      cert: chain.map((c) => c.toString()).join(''),
      ...key.contextOptions,
      // The connection's TLS floor lives in its context (tls.connect ignores minVersion with a context).
      minVersion: 'TLSv1.2',
    });
  } catch (error) {
    problems.push(
      `sidecar.key_path (--key): TLS cannot use the key ${shownKey(config)} with ${shown(config.certPath)}: ` +
        (error as Error).message,
    );
    return undefined;
  }
}

function certificates(text: string, key: string, path: string, problems: string[]): X509Certificate[] {
  const blocks = text.match(CERT_BLOCK) ?? [];
  if (blocks.length === 0) {
    problems.push(`${key}: ${shown(path)} holds no PEM certificate ('-----BEGIN CERTIFICATE-----')`);
    return [];
  }
  const parsed: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      parsed.push(new X509Certificate(block));
    } catch (error) {
      problems.push(
        `${key}: ${shown(path)}: certificate #${i + 1} cannot be parsed (${(error as Error).message})`,
      );
    }
  }
  return parsed;
}

async function readText(path: string, key: string, problems: string[]): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    problems.push(`${key}: cannot read ${shown(path)}: ${describeFsError(error)}`);
    return undefined;
  }
}

function shownKey(config: SidecarConfig): string {
  return config.keyToken === undefined ? shown(config.keyPath) : formatKeyUri(parseKeyUri(config.keyPath));
}

function shown(path: string): string {
  return isAbsolute(path) ? JSON.stringify(path) : `${JSON.stringify(path)} (${resolve(path)})`;
}
