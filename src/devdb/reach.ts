import { stat as fsStat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/**
 * Whether an OS user can walk down to a path: every directory on the way must grant it search (x)
 * permission. The embedded server runs, as root, under the `postgres` user through Node's spawn with a
 * uid and gid, which drops supplementary groups, so only the owner, the primary group and the "other"
 * bits count here, exactly as they will for the server. (Root itself bypasses these checks, which is why
 * a root-owned clone in a mode-700 home directory works for everything but the server.)
 */
export interface OsUser {
  readonly uid: number;
  readonly gid: number;
}

export interface DirStat {
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
}

export type StatFn = (path: string) => Promise<DirStat>;

export interface Blocked {
  /** The directory the user cannot enter. */
  readonly dir: string;
  /** Its permission bits. */
  readonly mode: number;
}

/** The first directory, from `/` down to `dir` itself, that `user` cannot search; undefined if none. */
export async function firstUnsearchable(
  dir: string,
  user: OsUser,
  stat: StatFn = fsStat,
): Promise<Blocked | undefined> {
  const chain: string[] = [];
  for (let d = resolve(dir); ; d = dirname(d)) {
    chain.unshift(d);
    if (dirname(d) === d) break;
  }
  for (const d of chain) {
    const st = await stat(d);
    if (!canSearch(st, user)) return { dir: d, mode: st.mode & 0o777 };
  }
  return undefined;
}

/** Unix permission check for search (x) on a directory: owner bits, else group bits, else other bits. */
export function canSearch(st: DirStat, user: OsUser): boolean {
  const bits = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
  return (st.mode & bits) !== 0;
}
