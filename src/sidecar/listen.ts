import { chmod, lstat, unlink } from 'node:fs/promises';
import type { Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import type { ListenAddr } from '../config/listen-addr.js';

/** Starting a listener failed; the message names the address and the likely fix. */
export class ListenError extends Error {
  override name = 'ListenError';
}

/** Binds `server` to a TCP address; resolves with the bound `host:port` (the real port for 0). */
export async function listenTcp(server: Server, addr: ListenAddr): Promise<string> {
  await bind(server, () => server.listen(addr.port, addr.host), `${addr.host}:${addr.port}`);
  const bound = server.address() as AddressInfo;
  return bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
}

/**
 * Binds `server` to a Unix socket whose file has `mode` (e.g. 0o600: only this user's processes can
 * connect). The socket is created under a restrictive umask so that it is never, even for a moment,
 * more open than asked. A stale socket file from a crashed run is removed; a live one is not.
 */
export async function listenUnix(server: Server, path: string, mode: number): Promise<void> {
  await removeStaleSocket(path);
  const previous = process.umask(0o177);
  try {
    await bind(server, () => server.listen(path), path);
  } finally {
    process.umask(previous);
  }
  await chmod(path, mode);
}

async function removeStaleSocket(path: string): Promise<void> {
  let info: Awaited<ReturnType<typeof lstat>>;
  try {
    info = await lstat(path);
  } catch {
    return; // nothing there
  }
  if (!info.isSocket()) {
    throw new ListenError(
      `${path} exists and is not a socket; refusing to replace it (choose another --unix-socket path)`,
    );
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new ListenError(`another process is already listening on ${path}`);
  await unlink(path);
}

function bind(server: Server, start: () => void, where: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      const hint =
        error.code === 'EADDRINUSE'
          ? 'the address is in use (another sidecar or proxy?); choose another with --listen'
          : error.code === 'EADDRNOTAVAIL'
            ? 'no local interface has that address'
            : error.code === 'EACCES'
              ? 'permission denied'
              : error.message;
      reject(new ListenError(`cannot listen on ${where}: ${hint}`));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    start();
  });
}
