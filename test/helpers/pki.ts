// Test fixtures: a throw-away CA, a server certificate for loopback, and agent certificates written to
// a temporary directory, so tests can hand file paths to the gateway and to TLS clients.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createAgentCertificate,
  createAgentCertificateWithRawExtension,
  createCa,
  createServerCertificate,
  type IssuedCertificate,
} from '../../src/pki/certificates.js';
import { DEFAULT_IDENTITY_EXTENSION_OID } from '../../src/pki/identity-extension.js';

export interface TestAgent {
  certPath: string;
  keyPath: string;
  spkiDer: Buffer;
  certPem: string;
  keyPem: string;
  /** The leaf certificate DER, as the gateway sees it from `getPeerX509Certificate().raw`. */
  certDer: Buffer;
}

export interface TestPki {
  dir: string;
  caCertPath: string;
  serverCertPath: string;
  serverKeyPath: string;
  ca: IssuedCertificate;
  server: IssuedCertificate;
  /** An agent certificate (signed by the test CA) whose identity extension holds `identity`. */
  agent(identity: string, opts?: { oid?: string }): Promise<TestAgent>;
  /** An agent certificate whose identity extension value is exactly `extValueDer`, well-formed or not. */
  agentWithExtensionDer(extValueDer: Buffer, opts?: { oid?: string }): Promise<TestAgent>;
  /** An agent certificate with no identity extension at all. */
  agentWithoutExtension(): Promise<TestAgent>;
  cleanup(): Promise<void>;
}

export async function createTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'agent-gateway-pki-'));
  const ca = await createCa({ commonName: 'agent-gateway test CA' });
  const server = await createServerCertificate({
    ca,
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
  });
  const caCertPath = join(dir, 'ca.pem');
  const serverCertPath = join(dir, 'server.pem');
  const serverKeyPath = join(dir, 'server-key.pem');
  await writeFile(caCertPath, ca.certPem);
  await writeFile(serverCertPath, server.certPem);
  await writeFile(serverKeyPath, server.keyPem, { mode: 0o600 });

  // A counter keeps file names unique when one test creates many agents.
  let agentCount = 0;
  async function save(issued: IssuedCertificate): Promise<TestAgent> {
    agentCount += 1;
    const certPath = join(dir, `agent-${agentCount}.pem`);
    const keyPath = join(dir, `agent-${agentCount}-key.pem`);
    await writeFile(certPath, issued.certPem);
    await writeFile(keyPath, issued.keyPem, { mode: 0o600 });
    return {
      certPath,
      keyPath,
      spkiDer: issued.spkiDer,
      certPem: issued.certPem,
      keyPem: issued.keyPem,
      certDer: issued.certDer,
    };
  }

  return {
    dir,
    caCertPath,
    serverCertPath,
    serverKeyPath,
    ca,
    server,
    async agent(identity, opts = {}) {
      const oid = opts.oid ?? DEFAULT_IDENTITY_EXTENSION_OID;
      return save(await createAgentCertificate({ identity, extensionOid: oid, issuer: ca }));
    },
    async agentWithExtensionDer(extValueDer, opts = {}) {
      const oid = opts.oid ?? DEFAULT_IDENTITY_EXTENSION_OID;
      return save(
        await createAgentCertificateWithRawExtension({
          issuer: ca,
          extension: { oid, valueDer: extValueDer },
        }),
      );
    },
    async agentWithoutExtension() {
      return save(await createAgentCertificateWithRawExtension({ issuer: ca, extension: undefined }));
    },
    async cleanup() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}
