/**
 * Baseline for benchmarks: the least a Node process can do for a tunnel — mTLS in (client
 * certificate requested, no CA), TCP out, no HTTP, no policy. The first byte a client sends picks
 * the upstream port from RELAY_PORTS ("u" the first, "d" the second). Prints `port <n>` when ready.
 *
 *   RELAY_CERT=server.pem RELAY_KEY=server-key.pem RELAY_PORTS=9001,9002 node --import tsx bench/bare-relay.ts
 */
import { readFileSync } from 'node:fs';
import { type AddressInfo, connect } from 'node:net';
import { createServer } from 'node:tls';

const [upPort, downPort] = (process.env['RELAY_PORTS'] ?? '').split(',').map(Number);
if (!upPort || !downPort) throw new Error('RELAY_PORTS must be "uploadPort,downloadPort"');

const server = createServer(
  {
    cert: readFileSync(process.env['RELAY_CERT'] ?? ''),
    key: readFileSync(process.env['RELAY_KEY'] ?? ''),
    requestCert: true,
    rejectUnauthorized: false,
    allowHalfOpen: true,
  },
  (client) => {
    client.on('error', () => client.destroy());
    client.once('data', (first: Buffer) => {
      const upstream = connect({
        port: first[0] === 0x75 ? upPort : downPort,
        host: '127.0.0.1',
        allowHalfOpen: true,
      });
      upstream.on('error', () => client.destroy());
      if (first.length > 1) upstream.write(first.subarray(1));
      client.pipe(upstream);
      upstream.pipe(client);
    });
  },
);
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`port ${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
