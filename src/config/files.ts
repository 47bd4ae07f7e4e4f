import { isAbsolute, resolve } from 'node:path';

/**
 * How config messages name a file. Paths are used as written, relative to the working directory (as the
 * server opens them), so the message also shows the resolved path when it differs.
 */
export function describePath(path: string): string {
  const shown = JSON.stringify(path);
  return isAbsolute(path) ? shown : `${shown} (resolved to ${JSON.stringify(resolve(path))})`;
}

/** A file-system error in words an operator acts on. */
export function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a directory';
    default:
      return error instanceof Error ? error.message : String(error);
  }
}
