import { readdir, readFile, readlink } from 'node:fs/promises';
import { connect } from 'node:net';

/** The port the inspector opens on SIGUSR1 when nothing stops it (Node's default, 127.0.0.1:9229). */
export const INSPECTOR_PORT = 9229;

/**
 * The TCP ports process `pid` listens on, read from Linux's /proc: its socket file descriptors matched by
 * inode against the LISTEN entries of /proc/net/tcp and tcp6. Only that process's own sockets count, so
 * a listener of another process on the machine (another test's) cannot be mistaken for it.
 */
export async function listeningPorts(pid: number): Promise<number[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode !== undefined) inodes.add(inode);
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT, st 0A is LISTEN, the inode is the tenth column.
      const [local, , state] = cols.slice(1, 4);
      const inode = cols[9];
      if (state !== '0A' || inode === undefined || !inodes.has(inode) || local === undefined) continue;
      ports.add(Number.parseInt(local.split(':')[1] ?? '', 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/** Whether anything accepts a TCP connection on 127.0.0.1:`port` (the error code when not). */
export function tryConnect(port: number): Promise<'connected' | string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}
