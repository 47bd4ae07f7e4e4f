import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/**
 * TCP sockets a process holds, as the kernel sees them (Linux /proc): what a leak costs the gateway, read
 * from its side without `ss`. `localPort` picks the gateway's listening port (its client connections) and
 * `remotePort` a destination's port (its upstream connections); the listening socket itself is not counted.
 */
export function processSockets(pid: number, filter: { localPort?: number; remotePort?: number }): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m?.[1] !== undefined) inodes.add(m[1]);
    } catch {
      // closed while we looked
    }
  }
  let n = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !inodes.has(f[9]!)) continue;
      const state = f[3];
      if (state === '0A') continue; // LISTEN
      const local = Number.parseInt(f[1]!.split(':')[1]!, 16);
      const remote = Number.parseInt(f[2]!.split(':')[1]!, 16);
      if (filter.localPort !== undefined && local !== filter.localPort) continue;
      if (filter.remotePort !== undefined && remote !== filter.remotePort) continue;
      n++;
    }
  }
  return n;
}
