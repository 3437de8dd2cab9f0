/**
 * How much of a file's data is shared with other files, from FIEMAP.
 *
 * @module
 */

import { fiemap } from "../../ffi/extents.ts";
import { close, O, openAt, type PathLike } from "../../ffi/fs.ts";

/** Extent accounting of one file. */
export interface SharedBytes {
  /** Bytes covered by extents (holes excluded). */
  mappedBytes: number;
  /** Bytes in extents that the filesystem marks SHARED. */
  sharedBytes: number;
  extents: number;
  sharedExtents: number;
}

/**
 * Counts mapped and shared bytes of an open file.
 *
 * @example
 * ```ts ignore
 * const s = sharedBytesOf(fd);
 * console.log(`${s.sharedBytes} of ${s.mappedBytes} bytes shared`);
 * ```
 */
export function sharedBytesOf(fd: number, what?: string): SharedBytes {
  const out = { mappedBytes: 0, sharedBytes: 0, extents: 0, sharedExtents: 0 };
  for (const e of fiemap(fd, what)) {
    out.mappedBytes += e.length;
    out.extents++;
    if (e.shared) {
      out.sharedBytes += e.length;
      out.sharedExtents++;
    }
  }
  return out;
}

/** {@linkcode sharedBytesOf} for a file below `dirfd`. */
export function sharedBytesAt(dirfd: number, path: PathLike): SharedBytes {
  const fd = openAt(dirfd, path, O.RDONLY | O.NOFOLLOW);
  try {
    return sharedBytesOf(fd, typeof path === "string" ? path : undefined);
  } finally {
    close(fd);
  }
}
