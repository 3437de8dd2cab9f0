/**
 * Placing a file's content into a store: clone into a fresh unnamed file on
 * the target filesystem, set its metadata, then link it in without replacing
 * anything (specs/reflink-peers.md §1.1, the clone-into-a-fresh-tmpfile rule).
 *
 * Under `reflink-or-copy` the data falls back to copy_file_range and then to
 * read/write when the filesystem cannot share blocks. Any digest the caller
 * needs is fed the bytes that were actually placed, in the same pass.
 *
 * @module
 */

import { SysError } from "../../ffi/errno.ts";
import { copyFileRange, ficlone } from "../../ffi/clone.ts";
import {
  closeQuietly,
  displayPath,
  fchmod,
  fchown,
  fstat,
  futimens,
  linkTmpfile,
  O,
  openAt,
  type PathLike,
  pread,
  pwriteAll,
  RENAME,
  renameAt,
  statAt,
  type Timespec,
  unlinkAt,
} from "../../ffi/fs.ts";
import { fsetxattr } from "../../ffi/xattr.ts";
import { explainCloneErrno, ReflinkUnsupportedError } from "./errors.ts";
import { assertUnchanged, sourceVersion } from "./source_version.ts";

/** Whether data may be copied when it cannot be shared. */
export type CopyPolicy = "reflink-required" | "reflink-or-copy";

/** How the bytes got there. */
export type PlaceMethod = "reflink" | "copy_file_range" | "readwrite";

/** Anything that takes the placed bytes in order: a hash, or several (lib/digest). */
export interface ByteSink {
  update(chunk: Uint8Array): unknown;
}

/** An unnamed file on the target filesystem holding the source's bytes. */
export interface TmpClone {
  /** Open read-write; the caller closes it (or hands it to {@linkcode linkNoReplace}). */
  fd: number;
  method: PlaceMethod;
  size: number;
  /** Set when O_TMPFILE was not available: the temporary name inside the directory. */
  tmpName?: string;
  dirfd: number;
}

const CHUNK = 1 << 20;
let scratch: Uint8Array<ArrayBuffer> | undefined;
function buffer(): Uint8Array<ArrayBuffer> {
  return scratch ??= new Uint8Array(CHUNK);
}

function openTmp(dirfd: number, mode: number): { fd: number; tmpName?: string } {
  try {
    return { fd: openAt(dirfd, ".", O.TMPFILE | O.RDWR, mode) };
  } catch (e) {
    if (!(e instanceof SysError) || !(e.is("EOPNOTSUPP") || e.is("EISDIR"))) throw e;
  }
  const tmpName = `.unistore-tmp-${crypto.randomUUID()}`;
  return { fd: openAt(dirfd, tmpName, O.CREAT | O.EXCL | O.RDWR | O.NOFOLLOW, mode), tmpName };
}

// Sources are read at explicit offsets (pread, copy_file_range with offsets), never through
// their file position: the import's digest thread reads and copies from the same open files.

/**
 * Feeds `fd`'s bytes from its start to `sink`, read into `buf` (by default a buffer of this
 * module's, one per thread); returns the byte count. With `stopAt`, stops there rather than
 * reading on to find the end: only for callers that check the file's version after the read
 * ({@linkcode assertUnchanged}), which tells a file that grew meanwhile.
 *
 * @example
 * ```ts ignore
 * const version = sourceVersion(fd);
 * const size = readThrough(fd, hasher, undefined, version.size);
 * assertUnchanged(fd, version, path, size);
 * ```
 */
export function readThrough(
  fd: number,
  sink: ByteSink,
  buf: Uint8Array<ArrayBuffer> = buffer(),
  stopAt = Infinity,
): number {
  return readRange(fd, sink, buf, 0, stopAt);
}

/** Feeds `fd`'s bytes from offset `from` up to `stopAt` (or its end) to `sink`; returns the count. */
function readRange(
  fd: number,
  sink: ByteSink,
  buf: Uint8Array<ArrayBuffer>,
  from: number,
  stopAt: number,
): number {
  let at = from;
  while (at < stopAt) {
    const n = pread(fd, at + buf.length > stopAt ? buf.subarray(0, stopAt - at) : buf, at);
    if (n === 0) break;
    sink.update(buf.subarray(0, n));
    at += n;
  }
  return at - from;
}

/**
 * Copies `srcFd` from byte `from` on (up to byte `stopAt`) to the same offsets of `dstFd`;
 * returns the bytes copied.
 */
function copyReadWrite(
  srcFd: number,
  dstFd: number,
  what: string,
  sink?: ByteSink,
  from = 0,
  stopAt = Infinity,
): number {
  let at = from;
  return readRange(
    srcFd,
    {
      update(part: Uint8Array<ArrayBuffer>) {
        sink?.update(part);
        pwriteAll(dstFd, part, at, `copy of ${what}`);
        at += part.length;
      },
    },
    buffer(),
    from,
    stopAt,
  );
}

/** How to fill a fresh file from a source. */
export interface FillOptions {
  policy: CopyPolicy;
  /**
   * Receives the placed bytes: after a clone, the source's bytes, read once the clone is made
   * (the source must not change meanwhile, or {@linkcode SourceChangedError}); while copying,
   * the bytes copied.
   */
  sink?: ByteSink;
  /** The source's size when the caller already knows it (saves an fstat). */
  size?: number;
  /**
   * Copy no more than `size` bytes, without the read or copy that finds the end (two system
   * calls per file): only for callers that check the source's version (size, mtime, ctime)
   * after the copy, which tells a file that grew meanwhile ({@linkcode assertUnchanged}).
   */
  stopAtSize?: boolean;
  /** Names the source in errors. */
  what?: string;
  /**
   * Skip the FICLONE attempt and copy (only under `reflink-or-copy`): for callers whose reflink
   * probe already found the two filesystems cannot share blocks.
   */
  copyOnly?: boolean;
}

/**
 * Fills the empty, writable `fd` with all of `srcFd`: FICLONE, or under
 * `reflink-or-copy` copy_file_range and then read/write.
 */
function fillFrom(
  fd: number,
  srcFd: number,
  opts: FillOptions,
): { method: PlaceMethod; size: number } {
  const what = opts.what ?? `fd ${srcFd}`;
  // With copyOnly the probe already said no: a failing FICLONE (and its error) per file cost a
  // second per 30,000 files on ext4.
  if (!opts.copyOnly || opts.policy === "reflink-required") {
    try {
      return cloneInto(fd, srcFd, what, opts);
    } catch (e) {
      if (!(e instanceof SysError) || !e.call.startsWith("ioctl")) throw e;
      if (!(e.is("EOPNOTSUPP") || e.is("EXDEV") || e.is("EINVAL") || e.is("ENOTTY"))) throw e;
      if (opts.policy === "reflink-required") {
        throw new ReflinkUnsupportedError(e.code, what, explainCloneErrno(e.code));
      }
    }
  }
  const stopAt = opts.stopAtSize && opts.size !== undefined ? opts.size : Infinity;
  // With a sink, one read per byte: hash while copying rather than copy then re-read.
  if (opts.sink) {
    return { method: "readwrite", size: copyReadWrite(srcFd, fd, what, opts.sink, 0, stopAt) };
  }
  return copyKernelFirst(srcFd, fd, what, stopAt);
}

/** FICLONE of all of `srcFd` into `fd`, feeding `opts.sink` the source's bytes. */
function cloneInto(
  fd: number,
  srcFd: number,
  what: string,
  opts: FillOptions,
): { method: PlaceMethod; size: number } {
  const before = opts.sink ? sourceVersion(srcFd) : undefined;
  ficlone(fd, srcFd, what);
  if (!opts.sink) return { method: "reflink", size: opts.size ?? fstat(fd).size };
  // The source is read, not the clone: its pages are usually cached (podman or ostree just
  // wrote it), a fresh clone's never are, and reading it doubled the time of an import. The
  // clone holds the source's bytes as of the FICLONE, so the source must not have changed
  // since: its size, mtime and ctime before the clone and after the read say so.
  const size = readThrough(srcFd, opts.sink, undefined, before!.size);
  assertUnchanged(srcFd, before!, what, size);
  return { method: "reflink", size };
}

/**
 * Clones (or copies) all of `srcFd` into a fresh unnamed file in `dstDirfd`.
 * Nothing is visible in the directory until the caller links the result.
 *
 * @example
 * ```ts ignore
 * const tmp = cloneToTmpfile(srcFd, objectsDir, { policy: "reflink-required", sink: hasher });
 * const name = toHex(hasher.digest());
 * linkNoReplace(tmp, objectsDir, name);
 * ```
 */
export function cloneToTmpfile(
  srcFd: number,
  dstDirfd: number,
  opts: FillOptions & { mode?: number },
): TmpClone {
  const { fd, tmpName } = openTmp(dstDirfd, opts.mode ?? 0o600);
  try {
    const { method, size } = fillFrom(fd, srcFd, opts);
    return { fd, method, size, tmpName, dirfd: dstDirfd };
  } catch (e) {
    closeQuietly(fd);
    if (tmpName) unlinkQuietly(dstDirfd, tmpName);
    throw e;
  }
}

/**
 * A fresh unnamed file in `dstDirfd` holding `bytes`: for a caller that has a small file's
 * bytes in memory already (it has just hashed them), one write instead of a copy that reads the
 * source again. Nothing is visible in the directory until the caller links the result.
 *
 * @example
 * ```ts ignore
 * const tmp = writeToTmpfile(hashedBytes, objectsDir, { mode: 0o644, what: path });
 * linkNoReplace(tmp, objectsDir, name);
 * ```
 */
export function writeToTmpfile(
  bytes: Uint8Array<ArrayBuffer>,
  dstDirfd: number,
  opts: { mode?: number; what?: string } = {},
): TmpClone {
  const { fd, tmpName } = openTmp(dstDirfd, opts.mode ?? 0o600);
  try {
    pwriteAll(fd, bytes, 0, `copy of ${opts.what ?? `${bytes.length} bytes`}`);
    return { fd, method: "readwrite", size: bytes.length, tmpName, dirfd: dstDirfd };
  } catch (e) {
    closeQuietly(fd);
    if (tmpName) unlinkQuietly(dstDirfd, tmpName);
    throw e;
  }
}

/**
 * Clones (or copies) all of `srcFd` into a new file `name` created with
 * O_EXCL, as `cp` does: cheaper than an O_TMPFILE plus link on XFS, but the
 * name is visible while it is filled, so this is only for trees whose names
 * do not promise content (never for content-addressed objects). On failure
 * the new file is removed. Returns the open fd (read-write) for metadata.
 */
export function cloneToNewFile(
  srcFd: number,
  dstDirfd: number,
  name: PathLike,
  opts: FillOptions & { mode?: number },
): { fd: number; method: PlaceMethod; size: number } {
  const fd = openAt(dstDirfd, name, O.CREAT | O.EXCL | O.RDWR | O.NOFOLLOW, opts.mode ?? 0o600);
  try {
    return { fd, ...fillFrom(fd, srcFd, opts) };
  } catch (e) {
    closeQuietly(fd);
    unlinkQuietly(dstDirfd, name);
    throw e;
  }
}

/** Most bytes asked of one copy_file_range call (the kernel copies at most about 2 GiB). */
const COPY_RANGE_MAX = 1 << 30;

function copyKernelFirst(srcFd: number, dstFd: number, what: string, stopAt = Infinity) {
  let size = 0;
  try {
    while (size < stopAt) {
      const want = Math.min(COPY_RANGE_MAX, stopAt - size);
      const n = copyFileRange(srcFd, size, dstFd, size, want, what);
      if (n === 0) break;
      size += n;
    }
    return { method: "copy_file_range" as PlaceMethod, size };
  } catch (e) {
    // EXDEV across superblocks (even two ext4s), EINVAL/EOPNOTSUPP on some
    // filesystems: fall back to plain reads and writes from where it stopped.
    if (!(e instanceof SysError) || !(e.is("EXDEV") || e.is("EINVAL") || e.is("EOPNOTSUPP"))) {
      throw e;
    }
    const rest = copyReadWrite(srcFd, dstFd, what, undefined, size, stopAt);
    return { method: "readwrite" as PlaceMethod, size: size + rest };
  }
}

function unlinkQuietly(dirfd: number, name: PathLike) {
  try {
    unlinkAt(dirfd, name);
  } catch { /* best effort on a path that already failed */ }
}

/** Metadata a store needs on the placed file. */
export interface FileMetadata {
  uid?: number;
  gid?: number;
  /** Permission bits including setuid/setgid/sticky; the file type bits are ignored. */
  mode?: number;
  xattrs?: Iterable<[string, Uint8Array]>;
  mtime?: Timespec;
}

/**
 * Applies owner, mode, xattrs and mtime to an open file. Owner first: chown
 * clears setuid/setgid bits, so the mode must come after it.
 */
export function applyMetadata(fd: number, meta: FileMetadata): void {
  if (meta.uid !== undefined || meta.gid !== undefined) {
    fchown(fd, meta.uid ?? -1 >>> 0, meta.gid ?? -1 >>> 0);
  }
  if (meta.mode !== undefined) fchmod(fd, meta.mode);
  for (const [name, value] of meta.xattrs ?? []) fsetxattr(fd, name, value);
  if (meta.mtime !== undefined) futimens(fd, meta.mtime, meta.mtime);
}

/**
 * Names a {@linkcode TmpClone} `name` in `dirfd` unless that name exists.
 * Closes the clone's fd either way. Returns `"exists"` when an object of that
 * name was already there (content-addressed stores treat that as done).
 *
 * With `replaceWrongSize`, an existing file of another size than the clone is
 * replaced by it (`"replaced"`): in a content-addressed store the name
 * promises these bytes, and a power cut after a link but before its data
 * reached the disk leaves the name on an empty file (ext4's delayed
 * allocation, XFS). Trusting it would make every later stream that needs
 * those bytes reference the broken file.
 */
export function linkNoReplace(
  tmp: TmpClone,
  dirfd: number,
  name: PathLike,
  opts: { replaceWrongSize?: boolean } = {},
): "linked" | "exists" | "replaced" {
  try {
    if (tmp.tmpName) renameAt(tmp.dirfd, tmp.tmpName, dirfd, name, RENAME.NOREPLACE);
    else linkTmpfile(tmp.fd, dirfd, name);
    return "linked";
  } catch (e) {
    if (!(e instanceof SysError && e.is("EEXIST"))) throw e;
    // fstat, not tmp.size: a staged file filled by writes (ObjectWriter) leaves that at 0.
    if (!opts.replaceWrongSize || statAt(dirfd, name).size === fstat(tmp.fd).size) {
      return "exists";
    }
    replaceWith(tmp, dirfd, name);
    return "replaced";
  } finally {
    closeQuietly(tmp.fd);
    if (tmp.tmpName) unlinkQuietly(tmp.dirfd, tmp.tmpName);
  }
}

/**
 * Atomically points `name` at the clone: renamed over it, from a temporary name directly in
 * `dirfd` (same filesystem as `name`) when the clone has no name yet.
 */
function replaceWith(tmp: TmpClone, dirfd: number, name: PathLike): void {
  if (tmp.tmpName) return renameAt(tmp.dirfd, tmp.tmpName, dirfd, name);
  const temp = `.unistore-replace-${crypto.randomUUID()}`;
  linkTmpfile(tmp.fd, dirfd, temp);
  try {
    renameAt(dirfd, temp, dirfd, name);
  } catch (e) {
    unlinkQuietly(dirfd, temp);
    throw e;
  }
}

/** Drops an unlinked clone (after a failure, or when the object already existed). */
export function discardClone(tmp: TmpClone): void {
  closeQuietly(tmp.fd);
  if (tmp.tmpName) unlinkQuietly(tmp.dirfd, tmp.tmpName);
}

/** What {@linkcode placeFile} did. */
export interface PlaceResult {
  method: PlaceMethod;
  size: number;
  /** `exists`: a file of that name was already there and was left untouched. */
  outcome: "linked" | "exists";
}

/**
 * Places all of `srcFd` as `name` in `dstDirfd` with the given metadata:
 * clone (or copy, per policy), metadata, link without replacing.
 *
 * @example
 * ```ts ignore
 * const r = placeFile(src, dir, "copy.bin", { policy: "reflink-or-copy", mode: 0o644 });
 * // r.method is "reflink" on XFS/btrfs, "copy_file_range" or "readwrite" on ext4
 * ```
 */
export function placeFile(
  srcFd: number,
  dstDirfd: number,
  name: PathLike,
  opts: FileMetadata & { policy: CopyPolicy; sink?: ByteSink },
): PlaceResult {
  const tmp = cloneToTmpfile(srcFd, dstDirfd, {
    policy: opts.policy,
    sink: opts.sink,
    what: displayPath(name),
  });
  try {
    applyMetadata(tmp.fd, opts);
  } catch (e) {
    discardClone(tmp);
    throw e;
  }
  // Not content-addressed: an existing name is left alone, whatever it holds.
  const outcome = linkNoReplace(tmp, dstDirfd, name) === "linked" ? "linked" : "exists";
  return { method: tmp.method, size: tmp.size, outcome };
}
