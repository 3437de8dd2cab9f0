/**
 * A file written before it gets its name: an O_TMPFILE (or, where the filesystem lacks it, a
 * uniquely named temporary file) that is linked in once complete, so readers never see it half
 * written. Used for tar-split files; small files (JSON, big data) go through ffi/replace.ts.
 *
 * @module
 */

import { SysError } from "../../../ffi/errno.ts";
import { closeQuietly, linkTmpfile, O, openAt, renameAt, unlinkAt } from "../../../ffi/fs.ts";
import { REPLACE_TMP_PREFIX } from "../../../ffi/replace.ts";

/** A file being written that has no name yet (O_TMPFILE), or a temporary one. */
export interface TempFile {
  fd: number;
  /** Set when O_TMPFILE was unavailable: the temporary name in the directory. */
  tmpName?: string;
}

/**
 * Opens an unnamed file in `dirfd` (O_TMPFILE), or a uniquely named temporary one on
 * filesystems without O_TMPFILE. Nothing readers look for appears until
 * {@linkcode publishTempFile}.
 */
export function openTempFile(dirfd: number, mode: number): TempFile {
  try {
    return { fd: openAt(dirfd, ".", O.TMPFILE | O.RDWR, mode) };
  } catch (e) {
    if (!(e instanceof SysError) || !(e.is("EOPNOTSUPP") || e.is("EISDIR"))) throw e;
  }
  const tmpName = `${REPLACE_TMP_PREFIX}${crypto.randomUUID()}`;
  return { fd: openAt(dirfd, tmpName, O.CREAT | O.EXCL | O.RDWR | O.NOFOLLOW, mode), tmpName };
}

/** Gives a {@linkcode TempFile} its final `name`, replacing whatever had that name. */
export function publishTempFile(tmp: TempFile, dirfd: number, name: string): void {
  if (tmp.tmpName !== undefined) {
    renameAt(dirfd, tmp.tmpName, dirfd, name);
    tmp.tmpName = undefined;
    return;
  }
  try {
    unlinkAt(dirfd, name);
  } catch (e) {
    if (!(e instanceof SysError && e.is("ENOENT"))) throw e;
  }
  linkTmpfile(tmp.fd, dirfd, name);
}

/** Closes a {@linkcode TempFile} and removes its temporary name, if it still has one. */
export function discardTempFile(tmp: TempFile, dirfd: number): void {
  closeQuietly(tmp.fd);
  if (tmp.tmpName !== undefined) {
    try {
      unlinkAt(dirfd, tmp.tmpName);
    } catch { /* already gone */ }
  }
}
