import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../config/errors.js';
import { describeFsError } from '../config/load.js';
import { CertificateError, readClientCertificate } from '../identity/client-certificate.js';
import { KeyFileError, loadPrivateKey } from '../pki/keys.js';
import type { SidecarConfig } from './config.js';

/**
 * The TLS material the sidecar presents to the gateway, checked once at start so that an operator
 * sees a precise message instead of an opaque handshake failure on the first tunnel: unreadable
 * files, PEM that is not what it should be, a certificate whose key is another one, and a
 * certificate the gateway is bound to deny (no identity extension: a warning, since the gateway may
 * be configured with another OID than the one given here).
 */
export interface AgentCredentials {
  /** CA certificates that may sign the gateway's server certificate. */
  readonly ca: string;
  /** The agent certificate (and any chain after it) as read. */
  readonly certPem: string;
  /** The private key, decrypted, as PKCS#8 PEM for the TLS context (it never leaves this process). */
  readonly keyPem: string;
  /** The identity the gateway will read, or null with the reason in `warnings`. */
  readonly identity: string | null;
  readonly warnings: readonly string[];
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

export async function loadAgentCredentials(config: SidecarConfig, source: string): Promise<AgentCredentials> {
  const problems: string[] = [];
  const [caText, certText, keyText] = await Promise.all([
    readText(config.gatewayCaPath, 'sidecar.gateway_ca_path (--gateway-ca)', problems),
    readText(config.certPath, 'sidecar.cert_path (--cert)', problems),
    readText(config.keyPath, 'sidecar.key_path (--key)', problems),
  ]);
  const caCerts =
    caText === undefined
      ? []
      : certificates(caText, 'sidecar.gateway_ca_path', config.gatewayCaPath, problems);
  const chain =
    certText === undefined ? [] : certificates(certText, 'sidecar.cert_path', config.certPath, problems);
  let key: ReturnType<typeof loadPrivateKey> | undefined;
  if (keyText !== undefined) {
    try {
      key = loadPrivateKey(keyText, config.keyPassphrase);
    } catch (error) {
      if (!(error instanceof KeyFileError)) throw error;
      problems.push(`sidecar.key_path: ${shown(config.keyPath)}: ${error.message}`);
    }
  }
  const leaf = chain[0];
  if (leaf !== undefined && key !== undefined && !leaf.checkPrivateKey(key)) {
    problems.push(
      `the agent certificate ${shown(config.certPath)} does not match the private key ${shown(config.keyPath)}: ` +
        'the key belongs to another certificate; pass the key that was generated with this certificate',
    );
  }
  const warnings: string[] = [];
  let identity: string | null = null;
  if (leaf !== undefined) {
    try {
      const read = readClientCertificate(leaf.raw, config.identityOidContent);
      identity = read.identity;
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
    } catch (error) {
      if (!(error instanceof CertificateError)) throw error;
      problems.push(
        `sidecar.cert_path: ${shown(config.certPath)}: ${error.message}; the gateway would refuse it`,
      );
    }
  }
  if (problems.length > 0 || key === undefined || caText === undefined || certText === undefined) {
    throw new ConfigError(problems, source);
  }
  return {
    ca: caCerts.map((c) => c.toString()).join(''),
    certPem: chain.map((c) => c.toString()).join(''),
    keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
    identity,
    warnings,
  };
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

function shown(path: string): string {
  return isAbsolute(path) ? JSON.stringify(path) : `${JSON.stringify(path)} (${resolve(path)})`;
}
