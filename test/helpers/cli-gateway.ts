import { join } from 'node:path';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from './gateway-process.js';

/**
 * The gateway as an operator sets it up with the CLI: `ca create` and `server-cert create` (for localhost
 * and 127.0.0.1) into `<dir>/pki`, a config for `databaseUrl`, and `serve`. `ok` runs one CLI command and
 * fails the test unless it succeeds.
 */
export async function startGatewayWithCliPki(
  ok: (...args: string[]) => Promise<unknown>,
  dir: string,
  databaseUrl: string,
): Promise<GatewayProcess> {
  const path = (name: string) => join(dir, name);
  await ok('ca', 'create', '--out-dir', path('pki'), '--unencrypted');
  await ok(
    'server-cert',
    'create',
    ...['--ca-cert', path('pki/ca.pem'), '--ca-key', path('pki/ca-key.pem')],
    ...['--dns', 'localhost', '--ip', '127.0.0.1', '--out-dir', path('pki'), '--name', 'gateway'],
  );
  const config = await writeGatewayConfig({
    dir,
    databaseUrl,
    certPath: path('pki/gateway.pem'),
    keyPath: path('pki/gateway-key.pem'),
  });
  return startGatewayProcess(config);
}
