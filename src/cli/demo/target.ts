import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface DemoTarget {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * The destination the demo's agents reach through the gateway: a small HTTP server on loopback that says
 * who it is, so a successful curl shows that the bytes really crossed the tunnel.
 */
export async function startDemoTarget(preferredPort: number | undefined): Promise<DemoTarget> {
  const server = createServer((req, res) => {
    const body = `hello from the agent-gateway demo destination: ${req.method} ${req.url} reached me through the gateway\n`;
    // A length instead of chunked encoding keeps the raw response readable in the HTTP/2 tool's output.
    res.writeHead(200, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  });
  const port = await listenOn(server, preferredPort).catch((err: NodeJS.ErrnoException) => {
    // The port remembered from an earlier run is taken now: any free port will do (the demo re-grants).
    if (err.code === 'EADDRINUSE' && preferredPort !== undefined) return listenOn(server, 0);
    throw err;
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function listenOn(server: Server, port: number | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port ?? 0, '127.0.0.1', () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
