import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createCa, createServerCertificate } from '../../src/pki/certificates.js';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from './gateway-process.js';
import { startEchoServer, startHashSink, startHttpServer } from './loopback-servers.js';

/**
 * An HTTPS destination on loopback with a certificate from its own test CA (not the gateway's), so
 * that a client reaching it through sidecar and gateway proves TLS ran end to end inside the tunnel:
 * neither proxy holds that key.
 */
export interface HttpsDestination {
  readonly port: number;
  /** PEM file of the CA that signed the destination's certificate, for the clients' trust. */
  readonly caPath: string;
  close(): Promise<void>;
}

export async function startHttpsDestination(dir: string, name: string): Promise<HttpsDestination> {
  const ca = await createCa({ commonName: `${name} destination CA` });
  const cert = await createServerCertificate({ ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const caPath = join(dir, `${name}-destination-ca.pem`);
  await writeFile(caPath, ca.certPem);
  const server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`hello over tls from ${name} ${req.url}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    caPath,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The loopback destinations the sidecar tests use, started together and closed together. */
export async function startLoopbackDestinations(dir: string, replyBytes: number) {
  const https = await startHttpsDestination(dir, 'sidecar-e2e');
  const http = await startHttpServer('plain-http');
  const echo = await startEchoServer();
  const sink = await startHashSink(replyBytes);
  const ungranted = await startHttpServer('ungranted');
  return {
    https,
    http,
    echo,
    sink,
    ungranted,
    async close() {
      for (const s of [https, http, echo, sink, ungranted]) await s.close();
    },
  };
}

/** A gateway process with the test PKI's server certificate and this registry, on an ephemeral port. */
export async function startTestGateway(
  pki: { dir: string; serverCertPath: string; serverKeyPath: string },
  databaseUrl: string,
): Promise<GatewayProcess> {
  return startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
    }),
  );
}
