import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import {
  createAgentCertificate,
  createCa,
  createServerCertificate,
  createServerCsr,
} from '../../src/pki/certificates.js';
import { spkiFingerprint } from '../../src/pki/fingerprint.js';
import { DEFAULT_IDENTITY_EXTENSION_OID, identityExtensionValue } from '../../src/pki/identity-extension.js';
import {
  assertP256,
  generateP256KeyPair,
  KeyFileError,
  loadPrivateKey,
  spkiDerOf,
} from '../../src/pki/keys.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';

const execFileAsync = promisify(execFile);

/** Runs the openssl CLI asynchronously (never spawnSync), optionally feeding stdin; returns stdout bytes. */
async function openssl(args: string[], input?: string | Buffer): Promise<Buffer> {
  const run = execFileAsync('openssl', args, { encoding: 'buffer' });
  // Commands that take files (verify) exit without reading stdin; writing to it then fails with EPIPE,
  // which says nothing about the result the test checks.
  run.child.stdin?.on('error', () => {});
  run.child.stdin?.end(input ?? '');
  const { stdout } = await run;
  return stdout;
}

/** `openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER`, the reference SPKI bytes. */
async function opensslSpki(certPem: string): Promise<Buffer> {
  const pubPem = await openssl(['x509', '-pubkey', '-noout'], certPem);
  return openssl(['pkey', '-pubin', '-outform', 'DER'], pubPem);
}

/** The hex dump openssl asn1parse prints for the OCTET STRING right after `oid`, or undefined. */
async function extensionValueHex(
  certPem: string,
  oid: string,
): Promise<{ hex: string; critical: boolean } | undefined> {
  const lines = (await openssl(['asn1parse'], certPem)).toString().split('\n');
  const at = lines.findIndex((line) => line.includes(`:${oid}`));
  if (at === -1) return undefined;
  let next = at + 1;
  const critical = lines[next]?.includes('BOOLEAN') ?? false;
  if (critical) next += 1;
  const match = /OCTET STRING\s+\[HEX DUMP\]:([0-9A-F]+)/.exec(lines[next] ?? '');
  assert.ok(match, `expected an OCTET STRING hex dump after ${oid}, got ${lines[next]}`);
  return { hex: match[1]!.toLowerCase(), critical };
}

describe('identityExtensionValue', () => {
  it('encodes a short identity as one DER UTF8String', () => {
    const der = identityExtensionValue('agent-alpha');
    assert.equal(der.toString('hex'), '0c0b' + Buffer.from('agent-alpha').toString('hex'));
  });

  it('counts UTF-8 bytes, not characters, in the length', () => {
    const der = identityExtensionValue('agént');
    assert.deepEqual([...der.subarray(0, 2)], [0x0c, 6]);
    assert.equal(der.subarray(2).toString('utf8'), 'agént');
  });

  it('uses the minimal long-form length from 128 bytes on', () => {
    assert.deepEqual([...identityExtensionValue('a'.repeat(127)).subarray(0, 2)], [0x0c, 127]);
    assert.deepEqual([...identityExtensionValue('a'.repeat(128)).subarray(0, 3)], [0x0c, 0x81, 128]);
    const big = identityExtensionValue('b'.repeat(300));
    assert.deepEqual([...big.subarray(0, 4)], [0x0c, 0x82, 0x01, 0x2c]);
    assert.equal(big.length, 304);
  });

  it('refuses empty identities and ones with a control character, naming it', () => {
    assert.throws(() => identityExtensionValue(''), /must not be empty/);
    for (const [bad, named] of [
      ['agent\nalpha', /contains a newline/],
      ['agent\ralpha', /contains a carriage return/],
      ['agent\0alpha', /contains a NUL character/],
      ['agent-alpha\n', /contains a newline/],
      ['agent\talpha', /contains a control character \(U\+0009\)/],
      ['agent\u007falpha', /contains a control character \(U\+007F\)/],
    ] as const) {
      assert.throws(() => identityExtensionValue(bad), named);
    }
  });

  it('refuses unpaired surrogates, which UTF-8 cannot carry', () => {
    assert.throws(() => identityExtensionValue('agent\uD800'), /unpaired surrogate/);
  });
});

describe('keys', () => {
  it('generates an unencrypted P-256 PKCS#8 key whose SPKI openssl agrees with', async () => {
    const pair = generateP256KeyPair();
    assert.match(pair.privateKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    const key = loadPrivateKey(pair.privateKeyPem);
    assertP256(key, 'test key');
    assert.deepEqual(spkiDerOf(key), pair.publicKeySpkiDer);
    const fromOpenssl = await openssl(['pkey', '-pubout', '-outform', 'DER'], pair.privateKeyPem);
    assert.deepEqual(fromOpenssl, pair.publicKeySpkiDer);
  });

  it('round-trips a passphrase-encrypted (aes-256-cbc PKCS#8) key', async () => {
    const pair = generateP256KeyPair({ passphrase: 'correct horse' });
    assert.match(pair.privateKeyPem, /^-----BEGIN ENCRYPTED PRIVATE KEY-----\n/);
    const key = loadPrivateKey(pair.privateKeyPem, 'correct horse');
    assert.deepEqual(spkiDerOf(key), pair.publicKeySpkiDer);
    const structure = (await openssl(['asn1parse'], pair.privateKeyPem)).toString();
    assert.match(structure, /aes-256-cbc/);
    const fromOpenssl = await openssl(
      ['pkey', '-passin', 'pass:correct horse', '-pubout', '-outform', 'DER'],
      pair.privateKeyPem,
    );
    assert.deepEqual(fromOpenssl, pair.publicKeySpkiDer);
  });

  it('refuses an empty passphrase at generation', () => {
    assert.throws(() => generateP256KeyPair({ passphrase: '' }), KeyFileError);
  });

  it('says so when the passphrase is wrong or missing', () => {
    const { privateKeyPem } = generateP256KeyPair({ passphrase: 'right' });
    assert.throws(
      () => loadPrivateKey(privateKeyPem, 'wrong'),
      (err: unknown) => err instanceof KeyFileError && /wrong passphrase/.test(err.message),
    );
    assert.throws(
      () => loadPrivateKey(privateKeyPem),
      (err: unknown) => err instanceof KeyFileError && /encrypted but no passphrase/.test(err.message),
    );
  });

  it('says so when the text is not a PEM private key', async () => {
    assert.throws(
      () => loadPrivateKey('hello'),
      (err: unknown) => {
        return err instanceof KeyFileError && /not a PEM private key/.test(err.message);
      },
    );
    const ca = await createCa({ commonName: 'not a key' });
    assert.throws(() => loadPrivateKey(ca.certPem), /found only CERTIFICATE.*not a certificate/);
    const corrupt = '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n';
    assert.throws(() => loadPrivateKey(corrupt), /could not be parsed/);
  });

  it('takes the key out of a PEM file that also holds a certificate', async () => {
    const ca = await createCa({ commonName: 'bundle' });
    const key = loadPrivateKey(ca.certPem + ca.keyPem);
    assert.deepEqual(spkiDerOf(key), ca.spkiDer);
  });

  it('assertP256 rejects other curves and key types by name', () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    assert.throws(() => assertP256(p384, 'server key'), /server key must be an ECDSA P-256 key.*secp384r1/);
    const ed = generateKeyPairSync('ed25519').privateKey;
    assert.throws(() => assertP256(ed, 'agent key'), /agent key must be an ECDSA P-256 key.*ed25519/);
  });
});

describe('spkiFingerprint', () => {
  it('is sha256: and the hex digest of the SPKI DER', async () => {
    const { publicKeySpkiDer } = generateP256KeyPair();
    const expected = createHash('sha256').update(publicKeySpkiDer).digest('hex');
    assert.equal(spkiFingerprint(publicKeySpkiDer), `sha256:${expected}`);
    const dgst = (await openssl(['dgst', '-sha256', '-r'], publicKeySpkiDer)).toString();
    assert.equal(dgst.split(' ')[0], expected);
  });
});

describe('certificates', () => {
  let pki: TestPki;
  before(async () => {
    pki = await createTestPki();
  });
  after(async () => {
    await pki.cleanup();
  });

  it('issues a server certificate that openssl verifies against the CA', async () => {
    const out = await openssl(['verify', '-CAfile', pki.caCertPath, pki.serverCertPath]);
    assert.match(out.toString(), /: OK$/m);
    const purpose = await openssl([
      'verify',
      '-CAfile',
      pki.caCertPath,
      '-purpose',
      'sslserver',
      pki.serverCertPath,
    ]);
    assert.match(purpose.toString(), /: OK$/m);
  });

  it('puts localhost, 127.0.0.1 and ::1 in the server SANs', async () => {
    const san = (
      await openssl(['x509', '-in', pki.serverCertPath, '-ext', 'subjectAltName', '-noout'])
    ).toString();
    assert.match(san, /DNS:localhost/);
    assert.match(san, /IP Address:127\.0\.0\.1/);
    assert.match(san, /IP Address:0:0:0:0:0:0:0:1/);
  });

  it('uses 16-byte positive random serial numbers and ECDSA-SHA256', async () => {
    const text = (
      await openssl(['x509', '-in', pki.serverCertPath, '-noout', '-serial', '-text'])
    ).toString();
    const serial = /^serial=([0-9A-F]+)$/m.exec(text)?.[1];
    assert.ok(serial !== undefined, 'openssl printed no serial');
    assert.equal(serial.length, 32);
    assert.ok(Number.parseInt(serial.slice(0, 2), 16) < 0x80, 'serial must not need a sign octet');
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
    const other = await createServerCertificate({ ca: pki.ca, dnsNames: ['localhost'], ipAddresses: [] });
    assert.notEqual(new X509Certificate(other.certDer).serialNumber, serial);
  });

  it('carries the key SPKI byte for byte as openssl extracts it', async () => {
    const agent = await pki.agent('agent-spki');
    assert.deepEqual(await opensslSpki(agent.certPem), agent.spkiDer);
    assert.deepEqual(await opensslSpki(pki.server.certPem), pki.server.spkiDer);
    assert.deepEqual(await opensslSpki(pki.ca.certPem), pki.ca.spkiDer);
    assert.deepEqual(agent.spkiDer, spkiDerOf(loadPrivateKey(agent.keyPem)));
  });

  it('puts the identity in a non-critical extension holding exactly one UTF8String', async () => {
    const agent = await pki.agent('agent-alpha');
    const ext = await extensionValueHex(agent.certPem, DEFAULT_IDENTITY_EXTENSION_OID);
    assert.deepEqual(ext, {
      hex: '0c0b' + Buffer.from('agent-alpha').toString('hex'),
      critical: false,
    });
    const verified = await openssl([
      'verify',
      '-CAfile',
      pki.caCertPath,
      '-purpose',
      'sslclient',
      agent.certPath,
    ]);
    assert.match(verified.toString(), /: OK$/m);
  });

  it('honours a custom extension OID', async () => {
    const agent = await pki.agent('agent-beta', { oid: '1.2.3.4.5' });
    assert.equal(
      (await extensionValueHex(agent.certPem, '1.2.3.4.5'))?.hex,
      '0c0a' + Buffer.from('agent-beta').toString('hex'),
    );
    assert.equal(await extensionValueHex(agent.certPem, DEFAULT_IDENTITY_EXTENSION_OID), undefined);
  });

  it('lets tests put arbitrary bytes in the extension, or leave it out', async () => {
    const ia5 = Buffer.from('1603616263', 'hex');
    const withIa5 = await pki.agentWithExtensionDer(ia5);
    assert.equal(
      (await extensionValueHex(withIa5.certPem, DEFAULT_IDENTITY_EXTENSION_OID))?.hex,
      '1603616263',
    );
    const trailing = Buffer.concat([identityExtensionValue('agent-x'), Buffer.from([0x00])]);
    const withTrailing = await pki.agentWithExtensionDer(trailing);
    assert.equal(
      (await extensionValueHex(withTrailing.certPem, DEFAULT_IDENTITY_EXTENSION_OID))?.hex,
      trailing.toString('hex'),
    );
    const without = await pki.agentWithoutExtension();
    assert.equal(await extensionValueHex(without.certPem, DEFAULT_IDENTITY_EXTENSION_OID), undefined);
    assert.equal(await readFile(without.keyPath, 'utf8'), without.keyPem);
  });

  it('refuses an identity containing a newline', async () => {
    await assert.rejects(
      createAgentCertificate({ identity: 'agent\nalpha', extensionOid: DEFAULT_IDENTITY_EXTENSION_OID }),
      /newline/,
    );
  });

  it('self-signs agent certificates by default and can reuse an existing key', async () => {
    const { privateKeyPem, publicKeySpkiDer } = generateP256KeyPair();
    const agent = await createAgentCertificate({
      identity: 'agent-self',
      extensionOid: DEFAULT_IDENTITY_EXTENSION_OID,
      keyPem: privateKeyPem,
    });
    assert.deepEqual(agent.spkiDer, publicKeySpkiDer);
    assert.equal(agent.keyPem, privateKeyPem);
    const cert = new X509Certificate(agent.certDer);
    assert.equal(cert.issuer, cert.subject);
    assert.ok(cert.verify(cert.publicKey), 'self-signed signature must verify with its own key');
    assert.deepEqual(await opensslSpki(agent.certPem), publicKeySpkiDer);
  });

  it('creates a server CSR that openssl verifies, with the SANs requested', async () => {
    const { csrPem, keyPem } = await createServerCsr({
      dnsNames: ['gw.example.com'],
      ipAddresses: ['10.1.2.3'],
    });
    const csrPath = join(pki.dir, 'server.csr');
    await writeFile(csrPath, csrPem);
    const run = execFileAsync('openssl', ['req', '-in', csrPath, '-noout', '-verify', '-text']);
    const { stdout, stderr } = await run;
    assert.match(stdout + stderr, /verify OK/);
    assert.match(stdout, /DNS:gw\.example\.com, IP Address:10\.1\.2\.3/);
    const csrSpki = await openssl(['req', '-in', csrPath, '-pubkey', '-noout']);
    const keySpki = await openssl(['pkey', '-pubout'], keyPem);
    assert.equal(csrSpki.toString(), keySpki.toString());
  });

  it('rejects an issuer whose key does not match its certificate', async () => {
    const other = await createCa({ commonName: 'other' });
    const mixed = { ...pki.ca, keyPem: other.keyPem };
    await assert.rejects(
      createServerCertificate({ ca: mixed, dnsNames: ['localhost'], ipAddresses: [] }),
      /does not belong to the issuer certificate/,
    );
  });

  it('rejects SAN entries that are not IP addresses', async () => {
    await assert.rejects(
      createServerCertificate({ ca: pki.ca, dnsNames: [], ipAddresses: ['localhost'] }),
      /not an IPv4 or IPv6 address/,
    );
  });

  it('completes a Node mTLS handshake where the server sees the agent certificate DER', async () => {
    const agent = await pki.agent('agent-tls');
    const server = tls.createServer({
      cert: await readFile(pki.serverCertPath),
      key: await readFile(pki.serverKeyPath),
      requestCert: true,
      rejectUnauthorized: false,
    });
    const seen = new Promise<Buffer | undefined>((resolve) => {
      server.once('secureConnection', (socket) => {
        resolve(socket.getPeerX509Certificate()?.raw);
        socket.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address !== null && typeof address === 'object');
    try {
      const client = tls.connect({
        host: '127.0.0.1',
        port: address.port,
        cert: agent.certPem,
        key: agent.keyPem,
        ca: await readFile(pki.caCertPath),
      });
      const clientAuthorized = await new Promise<boolean>((resolve, reject) => {
        client.once('secureConnect', () => resolve(client.authorized));
        client.once('error', reject);
      });
      assert.equal(
        clientAuthorized,
        true,
        'client must trust the server certificate via the test CA and IP SAN',
      );
      assert.deepEqual(await seen, agent.certDer);
      client.destroy();
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
