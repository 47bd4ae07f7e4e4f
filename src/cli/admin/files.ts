import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describeFsError } from '../../config/load.js';
import { usageError } from './errors.js';

/** Reads an input file named by `flag`; an unreadable file is a bad argument that names flag and path. */
export async function readInputFile(path: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw usageError(`${flag}: cannot read ${JSON.stringify(path)}: ${describeFsError(err)}`);
  }
}

export interface OutputFile {
  readonly path: string;
  readonly content: string | Buffer;
  /** 0o600 for private keys, 0o644 for certificates and public keys. */
  readonly mode: number;
}

/**
 * Writes a set of files (a key and its certificate) all or nothing: every file is first written to a
 * temporary name beside its target, then moved into place. Without `force` an existing target is an error
 * reported before anything is written, and placing uses link(2), which cannot overwrite a file created
 * meanwhile. If placing fails half-way, the files already placed by this call are removed again.
 */
export async function writeNewFiles(files: readonly OutputFile[], force: boolean): Promise<void> {
  await refuseExistingFiles(
    files.map((f) => f.path),
    force,
  );
  const staged: Array<{ temp: string; path: string }> = [];
  const placed: string[] = [];
  try {
    for (const file of files) {
      await mkdir(dirname(file.path), { recursive: true });
      const temp = join(dirname(file.path), `.${randomBytes(6).toString('hex')}.tmp`);
      staged.push({ temp, path: file.path });
      await writeFile(temp, file.content, { mode: file.mode, flag: 'wx' });
    }
    for (const { temp, path } of staged) {
      if (force) await rename(temp, path);
      else {
        await link(temp, path);
        await unlink(temp);
      }
      placed.push(path);
    }
  } catch (err) {
    await Promise.all([...staged.map((s) => s.temp), ...placed].map((p) => unlink(p).catch(() => {})));
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw usageError(`a target file appeared while writing: nothing was written; retry or pass --force`);
    }
    throw usageError(`cannot write output files: ${describeFsError(err)}`);
  }
}

/**
 * Without `force`, an error naming the targets that exist. Commands that create something besides files
 * (a key in a token) call it first, so that an existing file does not stop them half-way.
 */
export async function refuseExistingFiles(paths: readonly string[], force: boolean): Promise<void> {
  if (force) return;
  const existing: string[] = [];
  for (const path of paths) if (await exists(path)) existing.push(path);
  if (existing.length > 0) {
    throw usageError(
      `${existing.map((p) => JSON.stringify(p)).join(', ')} already exist${existing.length === 1 ? 's' : ''}: ` +
        'choose another --out-dir/--name, or pass --force to overwrite',
    );
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
