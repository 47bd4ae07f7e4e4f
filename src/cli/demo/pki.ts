import type { KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeOidContent } from '../../identity/oid.js';
import { createAgentCertificate, createCa, createServerCertificate } from '../../pki/certificates.js';
import { DEFAULT_IDENTITY_EXTENSION_OID } from '../../pki/identity-extension.js';
import { generateP256KeyPair, loadPrivateKey } from '../../pki/keys.js';
import { writeNewFiles } from '../admin/files.js';
import { readCertificateFile } from '../admin/key-files.js';

/** The demo's key material under the state directory, created once and reused by later runs. */

export const GRANTED_IDENTITY = 'agent-alpha';
export const REFUSED_IDENTITY = 'agent-beta';

export interface DemoAgent {
  readonly identity: string;
  readonly certPath: string;
  readonly keyPath: string;
  /** Exact SPKI bytes as the gateway will slice them from the certificate. */
  readonly spki: Buffer;
}

export interface DemoPki {
  readonly caCertPath: string;
  readonly serverCertPath: string;
  readonly serverKeyPath: string;
  readonly granted: DemoAgent;
  readonly refused: DemoAgent;
  /** The demo principal's signing key (unencrypted: it is a demo, kept in the git-ignored state directory). */
  readonly principalKey: KeyObject;
  /** Names of what this run created (empty on a run that reused everything). */
  readonly created: string[];
}

const CERT = 0o644;
const KEY = 0o600;

export async function ensureDemoPki(stateDir: string): Promise<DemoPki> {
  const created: string[] = [];
  const pkiDir = join(stateDir, 'pki');
  const caCertPath = join(pkiDir, 'ca.pem');
  const caKeyPath = join(pkiDir, 'ca-key.pem');
  const serverCertPath = join(pkiDir, 'gateway.pem');
  const serverKeyPath = join(pkiDir, 'gateway-key.pem');
  if (![caCertPath, caKeyPath, serverCertPath, serverKeyPath].every((p) => existsSync(p))) {
    const ca = await createCa({ commonName: 'agent-gateway demo CA' });
    const server = await createServerCertificate({
      ca,
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1', '::1'],
    });
    await writeNewFiles(
      [
        { path: caCertPath, content: ca.certPem, mode: CERT },
        { path: caKeyPath, content: ca.keyPem, mode: KEY },
        { path: serverCertPath, content: server.certPem, mode: CERT },
        { path: serverKeyPath, content: server.keyPem, mode: KEY },
      ],
      true,
    );
    created.push('CA and gateway certificate');
  }

  const agentsDir = join(stateDir, 'agents');
  const granted = await ensureAgent(agentsDir, GRANTED_IDENTITY, created);
  const refused = await ensureAgent(agentsDir, REFUSED_IDENTITY, created);

  const principalPath = join(stateDir, 'principal', 'demo-principal-key.pem');
  if (!existsSync(principalPath)) {
    const pair = generateP256KeyPair();
    await writeNewFiles([{ path: principalPath, content: pair.privateKeyPem, mode: KEY }], true);
    created.push('principal signing key');
  }
  const principalKey = loadPrivateKey(await readFile(principalPath, 'utf8'));
  return { caCertPath, serverCertPath, serverKeyPath, granted, refused, principalKey, created };
}

async function ensureAgent(dir: string, identity: string, created: string[]): Promise<DemoAgent> {
  const certPath = join(dir, `${identity}.pem`);
  const keyPath = join(dir, `${identity}-key.pem`);
  if (!existsSync(certPath) || !existsSync(keyPath)) {
    const issued = await createAgentCertificate({ identity, extensionOid: DEFAULT_IDENTITY_EXTENSION_OID });
    await writeNewFiles(
      [
        { path: certPath, content: issued.certPem, mode: CERT },
        { path: keyPath, content: issued.keyPem, mode: KEY },
      ],
      true,
    );
    created.push(`agent ${identity}`);
  }
  // Read back through the gateway's own certificate reader: the permission binds exactly these bytes.
  const cert = await readCertificateFile(
    certPath,
    'demo agent',
    encodeOidContent(DEFAULT_IDENTITY_EXTENSION_OID),
  );
  return { identity, certPath, keyPath, spki: cert.spki };
}
