import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { generateTokenKey } from '../../src/pkcs11/keygen.js';
import { certifyAgentKey } from '../../src/pki/certificates.js';
import { DEFAULT_IDENTITY_EXTENSION_OID } from '../../src/pki/identity-extension.js';
import { loadAgentCredentials } from '../../src/sidecar/agent-credentials.js';
import { resolveSidecarConfig } from '../../src/sidecar/config.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { SOFTHSM2_MODULE, type SoftHsm, startSoftHsm } from '../helpers/softhsm.js';

/**
 * The sidecar's credential loading with a token key, in this process: the TLS context presents the token
 * key (the server sees the certificate and the handshake's proof of possession passes), and loading again
 * (what a reload does) gives working credentials while the first ones are still open, and after they close.
 */
describe('sidecar TLS client credentials from a token', () => {
  const PIN = '24680';
  let hsm: SoftHsm;
  let pki: TestPki;
  let server: tls.Server;
  let port: number;
  let certDer: Buffer;
  const seen: Array<Buffer | undefined> = [];

  before(async () => {
    hsm = await startSoftHsm();
    process.env['SOFTHSM2_CONF'] = hsm.env['SOFTHSM2_CONF'];
    await hsm.initToken('agent-keys', PIN);
    pki = await createTestPki();
    const key = await generateTokenKey({
      uri: 'pkcs11:token=agent-keys;object=agent-reload',
      modulePath: SOFTHSM2_MODULE,
      pin: async () => PIN,
    });
    try {
      const cert = await certifyAgentKey({
        identity: 'agent-reload',
        extensionOid: DEFAULT_IDENTITY_EXTENSION_OID,
        key,
      });
      certDer = cert.certDer;
      await writeFile(join(pki.dir, 'agent-reload.pem'), cert.certPem);
    } finally {
      key.close();
    }
    server = tls.createServer(
      { cert: pki.server.certPem, key: pki.server.keyPem, requestCert: true, rejectUnauthorized: false },
      (socket) => {
        seen.push(socket.getPeerX509Certificate()?.raw);
        socket.end('hello');
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });

  after(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await pki?.cleanup();
    await hsm?.cleanup();
  });

  const config = () =>
    resolveSidecarConfig({
      fileDocument: undefined,
      source: 'test',
      overrides: {
        gateway_addr: `127.0.0.1:${port}`,
        gateway_ca_path: pki.caCertPath,
        cert_path: join(pki.dir, 'agent-reload.pem'),
        key_path: 'pkcs11:token=agent-keys;object=agent-reload',
        pin_env: 'AGENT_PIN',
        pkcs11_module: SOFTHSM2_MODULE,
      },
      env: { AGENT_PIN: PIN },
    });

  function handshake(secureContext: tls.SecureContext): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', secureContext });
      let text = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => {
        text += chunk;
      });
      socket.once('end', () => {
        socket.end();
        resolve(text);
      });
      socket.once('error', reject);
    });
  }

  test('the context presents the token key; loading again works before and after the first is closed', async () => {
    const first = await loadAgentCredentials(config(), 'test');
    assert.equal(first.identity, 'agent-reload');
    assert.equal(first.keyDescription, 'pkcs11:token=agent-keys;object=agent-reload');
    assert.deepEqual(first.keyWarnings, []);
    assert.equal(await handshake(first.secureContext), 'hello');

    const second = await loadAgentCredentials(config(), 'test');
    assert.equal(await handshake(second.secureContext), 'hello');
    assert.equal(await handshake(first.secureContext), 'hello', 'the old context works until it is closed');
    first.close();
    assert.equal(await handshake(second.secureContext), 'hello', 'closing the old credentials keeps the new');
    second.close();

    assert.equal(seen.length, 4);
    for (const raw of seen) assert.deepEqual(raw, certDer, 'the server saw the token key certificate');
  });
});
