/**
 * What a source file's content was when it was cloned or hashed: its size, mtime and ctime.
 *
 * Bytes are placed by a clone and named by a hash of the source read at another moment (the
 * source's pages are cached, the clone's never are). Both stand for the same bytes only if the
 * source did not change in between, which any write would show in these three fields.
 *
 * @module
 */

import { fstat } from "../../ffi/fs.ts";
import { SourceChangedError } from "./errors.ts";

/** A file's version: any write changes one of these. */
export interface SourceVersion {
  size: number;
  mtime: { sec: number; nsec: number };
  ctime: { sec: number; nsec: number };
}

/**
 * The version of an open file.
 *
 * @example
 * ```ts ignore
 * const before = sourceVersion(fd);
 * ficlone(dst, fd);
 * hash(fd);
 * assertUnchanged(fd, before, "layer/usr/bin/ls");
 * ```
 */
export function sourceVersion(fd: number): SourceVersion {
  const s = fstat(fd);
  return { size: s.size, mtime: s.mtime, ctime: s.ctime };
}

/** Whether a file is still at the version it was (size, mtime and ctime all equal). */
export function sameVersion(a: SourceVersion, b: SourceVersion): boolean {
  return a.size === b.size && a.mtime.sec === b.mtime.sec && a.mtime.nsec === b.mtime.nsec &&
    a.ctime.sec === b.ctime.sec && a.ctime.nsec === b.ctime.nsec;
}

/** A version in words, for {@linkcode SourceChangedError}. */
function describeVersion(v: SourceVersion): string {
  return `${v.size} bytes, ctime ${v.ctime.sec}.${String(v.ctime.nsec).padStart(9, "0")}`;
}

/**
 * Throws {@linkcode SourceChangedError} naming `what` unless the open file `fd` is still at
 * `before` (and, when given, `bytesRead` is its size: a read that saw another length read
 * another version).
 */
export function assertUnchanged(
  fd: number,
  before: SourceVersion,
  what: string,
  bytesRead: number = before.size,
): void {
  const now = sourceVersion(fd);
  if (bytesRead !== before.size || !sameVersion(before, now)) {
    throw new SourceChangedError(what, describeVersion(before), describeVersion(now));
  }
}
