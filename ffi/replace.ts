/**
 * Replacing a small file atomically: a temp file in the same directory,
 * written and fsynced, renamed over the target, the directory fsynced. A
 * reader (ostree, podman, bootc) sees the old content or the new, never a mix;
 * a crash leaves at most a stray temp file named with {@linkcode REPLACE_TMP_PREFIX}.
 *
 * @module
 */

import {
  closeQuietly,
  fchmod,
  fsync,
  O,
  openAt,
  type PathLike,
  RENAME,
  renameAt,
  unlinkAt,
  writeAll,
} from "./fs.ts";

/** Prefix of the temp files: lets an fsck tell our leftovers from a store's own files. */
export const REPLACE_TMP_PREFIX = ".unistore-tmp-";

/** How {@linkcode replaceFileAt} writes. */
export interface ReplaceOptions {
  /** Permission bits, set with fchmod (not subject to the umask). Default 0o644. */
  mode?: number;
  /** fsync the file and the directory (default true; c/storage skips it for volatile files). */
  sync?: boolean;
  /** Fail with EEXIST instead of replacing an existing file. */
  noReplace?: boolean;
}

/**
 * Writes `bytes` as `name` below `dirfd`, replacing the old file in one rename.
 *
 * @example
 * ```ts ignore
 * replaceFileAt(repoFd, "config", new TextEncoder().encode(text), { mode: 0o644 });
 * ```
 */
export function replaceFileAt(
  dirfd: number,
  name: PathLike,
  bytes: Uint8Array,
  opts: ReplaceOptions = {},
): void {
  const sync = opts.sync ?? true;
  const tmp = `${REPLACE_TMP_PREFIX}${crypto.randomUUID()}`;
  const fd = openAt(dirfd, tmp, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
  let renamed = false;
  try {
    fchmod(fd, opts.mode ?? 0o644);
    writeAll(fd, new Uint8Array(bytes));
    if (sync) fsync(fd);
    renameAt(dirfd, tmp, dirfd, name, opts.noReplace ? RENAME.NOREPLACE : 0);
    renamed = true;
    if (sync) fsync(dirfd);
  } finally {
    closeQuietly(fd);
    if (!renamed) {
      try {
        unlinkAt(dirfd, tmp);
      } catch { /* never created, or already gone */ }
    }
  }
}
