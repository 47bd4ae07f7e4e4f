import type { AddressInfo, Server } from 'node:net';

export interface ListenOn {
  readonly host: string;
  readonly port: number;
  /**
   * SO_REUSEPORT (Linux; Node 22.12+/23.1+): another process of the same user may bind the same port
   * while this one listens, and the kernel spreads new connections over them. That is what lets a new
   * gateway start on the port while the old one drains (a rolling restart refuses nothing), and what
   * `server.workers` needs. Off: a second bind fails with EADDRINUSE.
   */
  readonly reusePort: boolean;
}

/** Binds `server` (the agents' TLS listener, the admin listener); rejects with the bind error. */
export function listenOn(server: Server, where: ListenOn): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: where.host, port: where.port, reusePort: where.reusePort }, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
