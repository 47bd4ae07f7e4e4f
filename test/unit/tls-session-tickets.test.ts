import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect, type Server, type TLSSocket } from 'node:tls';
import { encodeOidContent } from '../../src/identity/oid.js';
import { createServerCertificate, type IssuedCertificate } from '../../src/pki/certificates.js';
import { DEFAULT_IDENTITY_EXTENSION_OID } from '../../src/pki/identity-extension.js';
import { connectionInfoOf } from '../../src/proxy/connection-info.js';
import type { TicketKeyRotation } from '../../src/proxy/session-tickets.js';
import { createTlsListener } from '../../src/proxy/tls-listener.js';
import { GatewayEvents } from '../../src/session/events.js';
import { createTestPki, type TestAgent, type TestPki } from '../helpers/pki.js';

/** A listener whose HTTP/1.1 hand-off records what the listener read from each connection. */
async function listener(
  pki: TestPki,
  sessionLifetimeS: number,
): Promise<{
  server: Server;
  tickets: TicketKeyRotation;
  port: number;
  seen: string[];
  replaceCertificate: (material: { certPem: Buffer; keyPem: Buffer }) => void;
}> {
  const seen: string[] = [];
  const { server, tickets, replaceCertificate } = createTlsListener({
    certPem: Buffer.from(pki.server.certPem),
    keyPem: Buffer.from(pki.server.keyPem),
    handshakeTimeoutMs: 5000,
    requestTimeoutMs: 5000,
    sessionLifetimeS,
    identityOidContent: encodeOidContent(DEFAULT_IDENTITY_EXTENSION_OID),
    caps: { maxConnections: 100, maxPerSource: 100 },
    events: new GatewayEvents(),
    onHttp2: (socket) => socket.destroy(),
    onHttp1: (socket: TLSSocket) => {
      const info = connectionInfoOf(socket);
      seen.push(`${info?.identity}:${info?.spki.toString('hex').slice(-16)}`);
      // The client learns its ticket once it reads; answer, then let it close.
      socket.end('ok');
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, tickets, port: (server.address() as AddressInfo).port, seen, replaceCertificate };
}

/** One connection; returns whether it resumed and the ticket it was given (if any). */
function dial(
  port: number,
  agent: TestAgent,
  pki: TestPki,
  session?: Buffer,
): Promise<{
  reused: boolean;
  ticket: Buffer | undefined;
  protocol: string | null;
  serverCert: string | undefined;
}> {
  return new Promise((resolve, reject) => {
    let ticket: Buffer | undefined;
    let reused = false;
    let protocol: string | null = null;
    let serverCert: string | undefined;
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: pki.ca.certPem,
      servername: 'localhost',
      cert: agent.certPem,
      key: agent.keyPem,
      ALPNProtocols: ['http/1.1'],
      ...(session ? { session } : {}),
    });
    socket.on('session', (s: Buffer) => {
      ticket = s;
    });
    socket.once('secureConnect', () => {
      reused = socket.isSessionReused();
      protocol = socket.getProtocol();
      serverCert = socket.getPeerX509Certificate()?.fingerprint256;
    });
    socket.on('error', reject);
    socket.resume();
    socket.on('close', () => resolve({ reused, ticket, protocol, serverCert }));
  });
}

describe('TLS session tickets', () => {
  let pki: TestPki;
  let agent: TestAgent;
  let rotated: IssuedCertificate;
  before(async () => {
    pki = await createTestPki();
    agent = await pki.agent('agent-resume');
    rotated = await createServerCertificate({
      ca: pki.ca,
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
  });
  const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;
  const material = (issued: IssuedCertificate) => ({
    certPem: Buffer.from(issued.certPem),
    keyPem: Buffer.from(issued.keyPem),
  });
  after(() => pki.cleanup());

  test('a returning client resumes, and the listener reads the same identity and key as before', async () => {
    const l = await listener(pki, 300);
    try {
      const first = await dial(l.port, agent, pki);
      assert.equal(first.reused, false);
      assert.equal(first.protocol, 'TLSv1.3');
      assert.ok(first.ticket, 'the server issued a ticket');
      const second = await dial(l.port, agent, pki, first.ticket);
      assert.equal(second.reused, true);
      assert.equal(l.seen.length, 2);
      assert.equal(l.seen[1], l.seen[0]);
      assert.match(l.seen[0] ?? '', /^agent-resume:/);
    } finally {
      l.server.close();
    }
  });

  test('after a key rotation an old ticket no longer resumes: the client does a full handshake', async () => {
    const l = await listener(pki, 300);
    try {
      const first = await dial(l.port, agent, pki);
      l.tickets.rotate();
      const second = await dial(l.port, agent, pki, first.ticket);
      assert.equal(second.reused, false);
      assert.equal(l.seen[1], l.seen[0], 'the full handshake identifies the same agent');
      const third = await dial(l.port, agent, pki, second.ticket);
      assert.equal(third.reused, true, 'the ticket issued under the new key works');
    } finally {
      l.server.close();
    }
  });

  test('a ticket from another gateway process (another key) does not resume', async () => {
    const a = await listener(pki, 300);
    const b = await listener(pki, 300);
    try {
      const first = await dial(a.port, agent, pki);
      const other = await dial(b.port, agent, pki, first.ticket);
      assert.equal(other.reused, false);
    } finally {
      a.server.close();
      b.server.close();
    }
  });

  test('tls_session_lifetime_s = 0: no resumption', async () => {
    const l = await listener(pki, 0);
    try {
      const first = await dial(l.port, agent, pki);
      // With SSL_OP_NO_TICKET, TLS 1.3 still hands the client a (stateful) ticket; the server keeps no
      // session cache, so offering it must not resume.
      assert.ok(first.ticket, 'the client has something to offer');
      const second = await dial(l.port, agent, pki, first.ticket);
      assert.equal(second.reused, false);
      assert.equal(l.seen.length, 2);
    } finally {
      l.server.close();
    }
  });

  test('a replaced certificate is served from the next handshake; tickets keep the key in force', async () => {
    const l = await listener(pki, 300);
    try {
      const fromStartKey = await dial(l.port, agent, pki);
      assert.equal(fromStartKey.serverCert, fingerprint(pki.server.certPem));
      l.tickets.rotate();
      const beforeReload = await dial(l.port, agent, pki);
      l.replaceCertificate(material(rotated));
      const full = await dial(l.port, agent, pki);
      assert.equal(full.reused, false);
      assert.equal(full.serverCert, fingerprint(rotated.certPem), 'the new certificate, at once');
      // A ticket issued under the key in force before the reload still resumes (no surprise full
      // handshakes for every agent after a certificate rotation) ...
      const resumed = await dial(l.port, agent, pki, beforeReload.ticket);
      assert.equal(resumed.reused, true);
      // ... and the key rotated out before it stays out: the reload must not bring back the start key.
      const stale = await dial(l.port, agent, pki, fromStartKey.ticket);
      assert.equal(stale.reused, false);
      // Rotation goes on acting on the new context.
      l.tickets.rotate();
      const afterRotation = await dial(l.port, agent, pki, full.ticket);
      assert.equal(afterRotation.reused, false);
      assert.equal(afterRotation.serverCert, fingerprint(rotated.certPem));
    } finally {
      l.server.close();
    }
  });

  test('tls_session_lifetime_s = 0 stays without resumption after a certificate replacement', async () => {
    const l = await listener(pki, 0);
    try {
      l.replaceCertificate(material(rotated));
      const first = await dial(l.port, agent, pki);
      assert.equal(first.serverCert, fingerprint(rotated.certPem));
      const second = await dial(l.port, agent, pki, first.ticket);
      assert.equal(second.reused, false);
      assert.equal(second.protocol, 'TLSv1.3');
    } finally {
      l.server.close();
    }
  });
});
