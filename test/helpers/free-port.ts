import { type AddressInfo, createServer } from 'node:net';

/**
 * A loopback port that was free a moment ago, for a destination the registry must name before it listens
 * (a permission is for an exact host:port). The server is closed again at once.
 */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
