/**
 * Recursive removal below a directory fd (`rm -rf` without ever following a symlink), for
 * rolling back a half-written layer, for tar entries that replace an existing path, and for
 * sweeping the pull directories of killed runs.
 *
 * @module
 */

import { isErrno } from "./errno.ts";
import { AT, close, DT, openDirAt, type PathLike, readDir, S, statAt, unlinkAt } from "./fs.ts";

/**
 * Removes `name` below `dirfd` and, when it is a directory, everything in it. A missing `name`
 * is not an error. Returns true when something was removed.
 *
 * @example
 * ```ts ignore
 * removeTreeAt(driverFd, layerId); // drops overlay/<id> with its diff/
 * ```
 */
export function removeTreeAt(dirfd: number, name: PathLike): boolean {
  let mode: number;
  try {
    mode = statAt(dirfd, name).mode;
  } catch (e) {
    if (isErrno(e, "ENOENT")) return false;
    throw e;
  }
  if ((mode & S.IFMT) !== S.IFDIR) {
    unlinkAt(dirfd, name);
    return true;
  }
  const fd = openDirAt(dirfd, name);
  try {
    emptyDir(fd);
  } finally {
    close(fd);
  }
  unlinkAt(dirfd, name, AT.REMOVEDIR);
  return true;
}

/** Removes everything inside the directory open as `fd`. */
export function emptyDir(fd: number): void {
  for (const e of readDir(fd)) {
    if (e.type === DT.DIR || e.type === DT.UNKNOWN) removeTreeAt(fd, e.nameBytes);
    else unlinkAt(fd, e.nameBytes);
  }
}
