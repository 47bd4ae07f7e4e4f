import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCa, createServerCertificate } from '../../src/pki/certificates.js';

export interface ServerTlsFiles {
  readonly certPath: string;
  readonly keyPath: string;
  /** The key of another certificate: a well-formed key that does not belong to `certPath`. */
  readonly foreignKeyPath: string;
}

/** A server certificate and its key written to `dir` as the gateway reads them, plus a foreign key. */
export async function writeServerTlsFiles(dir: string): Promise<ServerTlsFiles> {
  const ca = await createCa({ commonName: 'agent-gateway tls-files CA' });
  const server = await createServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const files = {
    certPath: join(dir, 'server.pem'),
    keyPath: join(dir, 'server-key.pem'),
    foreignKeyPath: join(dir, 'foreign-key.pem'),
  };
  await writeFile(files.certPath, server.certPem);
  await writeFile(files.keyPath, server.keyPem, { mode: 0o600 });
  await writeFile(files.foreignKeyPath, ca.keyPem, { mode: 0o600 });
  return files;
}
