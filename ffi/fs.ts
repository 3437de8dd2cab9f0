/**
 * Files and directories through file descriptors.
 *
 * Everything is relative to a directory fd (`*at` calls), so a path taken from
 * an image is never joined onto a host path and opened blindly. Calls are
 * synchronous: errno can only be read reliably on the calling thread
 * (specs/deno-platform.md §2.4).
 *
 * @module
 */

import { Errno, SysError } from "./errno.ts";
import {
  check,
  checkBig,
  cstr,
  cstrTemp,
  displayPath,
  errno,
  libc,
  type PathLike,
} from "./libc.ts";

export type { PathLike } from "./libc.ts";
export { displayPath } from "./libc.ts";

const AARCH64 = Deno.build.arch === "aarch64";

/** open(2) flags. O_DIRECTORY, O_NOFOLLOW and O_TMPFILE differ on aarch64 (asm/fcntl.h). */
export const O = {
  RDONLY: 0,
  WRONLY: 1,
  RDWR: 2,
  CREAT: 0o100,
  EXCL: 0o200,
  NOCTTY: 0o400,
  TRUNC: 0o1000,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  DIRECTORY: AARCH64 ? 0o40000 : 0o200000,
  NOFOLLOW: AARCH64 ? 0o100000 : 0o400000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
  TMPFILE: AARCH64 ? 0o20040000 : 0o20200000,
} as const;

/** `AT_*` flags and the `AT_FDCWD` pseudo-descriptor. */
export const AT = {
  FDCWD: -100,
  SYMLINK_NOFOLLOW: 0x100,
  REMOVEDIR: 0x200,
  SYMLINK_FOLLOW: 0x400,
  EMPTY_PATH: 0x1000,
} as const;

/** renameat2(2) flags. */
export const RENAME = { NOREPLACE: 1, EXCHANGE: 2 } as const;

/** File-type bits of `st_mode`. */
export const S = {
  IFMT: 0o170000,
  IFSOCK: 0o140000,
  IFLNK: 0o120000,
  IFREG: 0o100000,
  IFBLK: 0o060000,
  IFDIR: 0o040000,
  IFCHR: 0o020000,
  IFIFO: 0o010000,
} as const;

/** Opens `path` relative to `dirfd`; `O_CLOEXEC` is always added. Returns the new fd. */
export function openAt(dirfd: number, path: PathLike, flags: number, mode = 0o644): number {
  return check(
    libc.openat(dirfd, cstrTemp(path, 0), flags | O.CLOEXEC, mode),
    errno[0],
    "openat",
    path,
  );
}

/** Opens a directory below `dirfd` without following a final symlink. */
export function openDirAt(dirfd: number, path: PathLike): number {
  return openAt(dirfd, path, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
}

/** Opens an absolute or cwd-relative directory path (following symlinks in it). */
export function openDir(path: string): number {
  return openAt(AT.FDCWD, path, O.RDONLY | O.DIRECTORY);
}

/** Closes `fd`. */
export function close(fd: number): void {
  check(libc.close(fd), errno[0], "close", `fd ${fd}`);
}

/** Closes `fd`, ignoring errors: for cleanup paths that already carry an error. */
export function closeQuietly(fd: number): void {
  if (fd >= 0) libc.close(fd);
}

/** Duplicates `fd` (the copy has its own close-on-exec flag cleared, as dup(2) does). */
export function dup(fd: number): number {
  return check(libc.dup(fd), errno[0], "dup", `fd ${fd}`);
}

/** Reads up to `buf.length` bytes at the file position; 0 at end of file. */
export function read(fd: number, buf: Uint8Array<ArrayBuffer>): number {
  for (;;) {
    const rc = libc.read(fd, buf, BigInt(buf.length));
    const err = errno[0];
    const n = Number(rc);
    if (n >= 0) return n;
    if (err !== Errno.EINTR) throw new SysError("read", err, `fd ${fd}`);
  }
}

/** Reads up to `buf.length` bytes at `offset`; 0 at end of file. */
export function pread(fd: number, buf: Uint8Array<ArrayBuffer>, offset: number): number {
  for (;;) {
    const rc = libc.pread(fd, buf, BigInt(buf.length), BigInt(offset));
    const err = errno[0];
    const n = Number(rc);
    if (n >= 0) return n;
    if (err !== Errno.EINTR) throw new SysError("pread", err, `fd ${fd}`);
  }
}

/**
 * Writes all of `buf` at the file position (looping over short writes). `what` names the file
 * in errors (an ENOSPC that says only `fd 33` tells the user nothing); default `fd N`.
 */
export function writeAll(fd: number, buf: Uint8Array<ArrayBuffer>, what?: string): void {
  let off = 0;
  while (off < buf.length) {
    const part = off === 0 ? buf : buf.subarray(off);
    const rc = libc.write(fd, part, BigInt(part.length));
    const err = errno[0];
    const n = Number(rc);
    if (n < 0) {
      if (err === Errno.EINTR) continue;
      throw new SysError("write", err, what ?? `fd ${fd}`);
    }
    off += n;
  }
}

/** Writes all of `buf` at `offset`; `what` names the file in errors, as for `writeAll`. */
export function pwriteAll(
  fd: number,
  buf: Uint8Array<ArrayBuffer>,
  offset: number,
  what?: string,
): void {
  let off = 0;
  while (off < buf.length) {
    const part = off === 0 ? buf : buf.subarray(off);
    const rc = libc.pwrite(fd, part, BigInt(part.length), BigInt(offset + off));
    const err = errno[0];
    const n = Number(rc);
    if (n < 0) {
      if (err === Errno.EINTR) continue;
      throw new SysError("pwrite", err, what ?? `fd ${fd}`);
    }
    off += n;
  }
}

/** lseek(2) whence values. */
export const SEEK = { SET: 0, CUR: 1, END: 2, DATA: 3, HOLE: 4 } as const;

/** Moves the file position; returns the new offset. */
export function lseek(fd: number, offset: number, whence: number): number {
  return checkBig(libc.lseek(fd, BigInt(offset), whence), errno[0], "lseek", `fd ${fd}`);
}

/** Sets the file length. */
export function ftruncate(fd: number, length: number): void {
  check(libc.ftruncate(fd, BigInt(length)), errno[0], "ftruncate", `fd ${fd}`);
}

/** A timestamp as the kernel keeps it. */
export interface Timespec {
  sec: number;
  nsec: number;
}

/** What statx(2) tells about a file (the fields unistore uses). */
export interface Stat {
  /** Device of the filesystem, as `major:minor`. */
  dev: string;
  ino: bigint;
  /** File type and permission bits. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  /** 512-byte blocks allocated. */
  blocks: number;
  rdevMajor: number;
  rdevMinor: number;
  mtime: Timespec;
  ctime: Timespec;
}

const STATX_BASIC_STATS = 0x7ff;

/** statx(2) of `path` below `dirfd`; pass `AT.SYMLINK_NOFOLLOW` to stat a link itself. */
export function statAt(dirfd: number, path: PathLike, flags: number = AT.SYMLINK_NOFOLLOW): Stat {
  check(
    libc.statx(dirfd, cstrTemp(path, 0), flags, STATX_BASIC_STATS, statxBuf),
    errno[0],
    "statx",
    path,
  );
  return parseStatx(statxView);
}

// struct statx is 256 bytes with one layout on every architecture. One buffer
// serves every call: calls are synchronous and the result is copied out.
const statxBuf = new Uint8Array(256);
const statxView = new DataView(statxBuf.buffer);
const EMPTY_PATH = new Uint8Array(1);

/** fstat through statx(2) with `AT_EMPTY_PATH`. */
export function fstat(fd: number): Stat {
  check(
    libc.statx(fd, EMPTY_PATH, AT.EMPTY_PATH, STATX_BASIC_STATS, statxBuf),
    errno[0],
    "statx",
    `fd ${fd}`,
  );
  return parseStatx(statxView);
}

function parseStatx(v: DataView): Stat {
  // Seconds as two 32-bit halves: cheaper than a BigInt, exact up to 2^53.
  const ts = (at: number): Timespec => ({
    sec: v.getUint32(at, true) + v.getInt32(at + 4, true) * 0x100000000,
    nsec: v.getUint32(at + 8, true),
  });
  return {
    nlink: v.getUint32(16, true),
    uid: v.getUint32(20, true),
    gid: v.getUint32(24, true),
    mode: v.getUint16(28, true),
    ino: v.getBigUint64(32, true),
    size: v.getUint32(40, true) + v.getUint32(44, true) * 0x100000000,
    blocks: v.getUint32(48, true) + v.getUint32(52, true) * 0x100000000,
    ctime: ts(96),
    mtime: ts(112),
    rdevMajor: v.getUint32(128, true),
    rdevMinor: v.getUint32(132, true),
    dev: `${v.getUint32(136, true)}:${v.getUint32(140, true)}`,
  };
}

/** True when `mode` is of the given `S.IF*` type. */
export function isType(mode: number, type: number): boolean {
  return (mode & S.IFMT) === type;
}

/** linkat(2). */
export function linkAt(
  olddirfd: number,
  oldpath: PathLike,
  newdirfd: number,
  newpath: PathLike,
  flags = 0,
): void {
  check(
    libc.linkat(olddirfd, cstrTemp(oldpath, 0), newdirfd, cstrTemp(newpath, 1), flags),
    errno[0],
    "linkat",
    `${displayPath(oldpath)} -> ${displayPath(newpath)}`,
  );
}

/**
 * Gives an `O_TMPFILE` file a name, failing with EEXIST rather than replacing
 * anything. Tries `AT_EMPTY_PATH` first (needs CAP_DAC_READ_SEARCH, which root
 * has; no /proc lookup, and it works in early boot before /proc is mounted),
 * then the `/proc/self/fd/N` form, which needs no capability.
 */
export function linkTmpfile(fd: number, dirfd: number, name: PathLike): void {
  const rc = libc.linkat(fd, cstr(""), dirfd, cstr(name), AT.EMPTY_PATH);
  const err = errno[0];
  if (rc === 0) return;
  if (err !== Errno.EPERM && err !== Errno.ENOENT) {
    throw new SysError("linkat", err, displayPath(name));
  }
  check(
    libc.linkat(AT.FDCWD, cstr(`/proc/self/fd/${fd}`), dirfd, cstr(name), AT.SYMLINK_FOLLOW),
    errno[0],
    "linkat",
    name,
  );
}

/** renameat2(2); pass `RENAME.NOREPLACE` to fail with EEXIST instead of replacing. */
export function renameAt(
  olddirfd: number,
  oldpath: PathLike,
  newdirfd: number,
  newpath: PathLike,
  flags = 0,
): void {
  check(
    libc.renameat2(olddirfd, cstrTemp(oldpath, 0), newdirfd, cstrTemp(newpath, 1), flags),
    errno[0],
    "renameat2",
    `${displayPath(oldpath)} -> ${displayPath(newpath)}`,
  );
}

/** unlinkat(2); pass `AT.REMOVEDIR` for a directory. */
export function unlinkAt(dirfd: number, path: PathLike, flags = 0): void {
  check(libc.unlinkat(dirfd, cstrTemp(path, 0), flags), errno[0], "unlinkat", path);
}

/** mkdirat(2). */
export function mkdirAt(dirfd: number, path: PathLike, mode = 0o755): void {
  check(libc.mkdirat(dirfd, cstrTemp(path, 0), mode), errno[0], "mkdirat", path);
}

/** mkdirat(2) that treats an existing directory as success. */
export function ensureDirAt(dirfd: number, path: PathLike, mode = 0o755): void {
  const rc = libc.mkdirat(dirfd, cstr(path), mode);
  const err = errno[0];
  if (rc === 0) return;
  if (err === Errno.EEXIST && isType(statAt(dirfd, path).mode, S.IFDIR)) return;
  throw new SysError("mkdirat", err, displayPath(path));
}

/** symlinkat(2): creates `path` below `dirfd` pointing at `target`. */
export function symlinkAt(target: PathLike, dirfd: number, path: PathLike): void {
  check(libc.symlinkat(cstrTemp(target, 0), dirfd, cstrTemp(path, 1)), errno[0], "symlinkat", path);
}

/** readlinkat(2), returning the raw target bytes. */
export function readlinkAtBytes(dirfd: number, path: PathLike): Uint8Array {
  let size = 256;
  for (;;) {
    const buf = new Uint8Array(size);
    const n = checkBig(
      libc.readlinkat(dirfd, cstr(path), buf, BigInt(size)),
      errno[0],
      "readlinkat",
      path,
    );
    if (n < size) return buf.slice(0, n);
    size *= 4;
  }
}

/** readlinkat(2), returning the target as a string. */
export function readlinkAt(dirfd: number, path: PathLike): string {
  return new TextDecoder().decode(readlinkAtBytes(dirfd, path));
}

/** Combines a device major and minor number as glibc's `makedev` does. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major), mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) |
    ((mi & ~0xffn) << 12n);
}

/** mknodat(2): device nodes, fifos and sockets; `mode` includes the file type. */
export function mknodAt(dirfd: number, path: PathLike, mode: number, major = 0, minor = 0): void {
  check(libc.mknodat(dirfd, cstr(path), mode, makedev(major, minor)), errno[0], "mknodat", path);
}

/** fchown(2). */
export function fchown(fd: number, uid: number, gid: number): void {
  check(libc.fchown(fd, uid, gid), errno[0], "fchown", `fd ${fd}`);
}

/** fchownat(2) with `AT_SYMLINK_NOFOLLOW`: the owner of a symlink itself. */
export function lchownAt(dirfd: number, path: PathLike, uid: number, gid: number): void {
  check(
    libc.fchownat(dirfd, cstr(path), uid, gid, AT.SYMLINK_NOFOLLOW),
    errno[0],
    "fchownat",
    path,
  );
}

/** fchmod(2); `mode` may include setuid, setgid and sticky bits. */
export function fchmod(fd: number, mode: number): void {
  check(libc.fchmod(fd, mode & 0o7777), errno[0], "fchmod", `fd ${fd}`);
}

/** fchmodat(2) (follows symlinks: symlinks have no mode of their own on Linux). */
export function fchmodAt(dirfd: number, path: PathLike, mode: number): void {
  check(libc.fchmodat(dirfd, cstr(path), mode & 0o7777, 0), errno[0], "fchmodat", path);
}

const times = new BigInt64Array(4);
function timesBuffer(atime: Timespec, mtime: Timespec): BigInt64Array<ArrayBuffer> {
  // Two struct timespec { i64 tv_sec; i64 tv_nsec }; reused, calls are synchronous.
  times[0] = BigInt(atime.sec);
  times[1] = BigInt(atime.nsec);
  times[2] = BigInt(mtime.sec);
  times[3] = BigInt(mtime.nsec);
  return times;
}

/** futimens(2): sets access and modification times. */
export function futimens(fd: number, atime: Timespec, mtime: Timespec): void {
  check(libc.futimens(fd, timesBuffer(atime, mtime)), errno[0], "futimens", `fd ${fd}`);
}

/** utimensat(2) with `AT_SYMLINK_NOFOLLOW`, so a symlink's own times are set. */
export function lutimensAt(dirfd: number, path: PathLike, atime: Timespec, mtime: Timespec): void {
  check(
    libc.utimensat(dirfd, cstr(path), timesBuffer(atime, mtime), AT.SYMLINK_NOFOLLOW),
    errno[0],
    "utimensat",
    path,
  );
}

/** fsync(2). */
export function fsync(fd: number): void {
  check(libc.fsync(fd), errno[0], "fsync", `fd ${fd}`);
}

/**
 * syncfs(2): flushes the whole filesystem `fd` lives on; one call per batch of writes. `what`
 * names the file or store in errors.
 */
export function syncfs(fd: number, what = `fd ${fd}`): void {
  check(libc.syncfs(fd), errno[0], "syncfs", what);
}

/**
 * syncfs(2) on a pool thread, so this thread goes on working while the disk catches up; `fd`
 * must stay open until the promise settles. The pool thread's errno cannot be read, so after
 * a failure the call is repeated here to name it; a writeback error is reported to a file only
 * once, so when the repeat succeeds the failure is reported as EIO rather than lost.
 *
 * @example
 * ```ts ignore
 * const synced = syncfsInBackground(dirfd); // objects written so far
 * writeNextBatch();
 * await synced;
 * ```
 */
export async function syncfsInBackground(fd: number, what = `fd ${fd}`): Promise<void> {
  if (await libc.syncfs_nb(fd) === 0) return;
  syncfs(fd, what);
  throw new SysError("syncfs", Errno.EIO, what);
}

/** d_type values of a directory entry. */
export const DT = {
  UNKNOWN: 0,
  FIFO: 1,
  CHR: 2,
  DIR: 4,
  BLK: 6,
  REG: 8,
  LNK: 10,
  SOCK: 12,
} as const;

/** One directory entry: the raw name bytes, the name as text, and its d_type. */
export interface DirEntry {
  /** The name's bytes exactly as stored (may be non-UTF-8). */
  nameBytes: Uint8Array;
  /** The name decoded as UTF-8 (U+FFFD for invalid bytes): for display and UTF-8 names. */
  name: string;
  /** `DT.*`; `DT.UNKNOWN` when the filesystem does not report it. */
  type: number;
}

const nameDecoder = new TextDecoder("utf-8", { fatal: false });

/**
 * Lists a directory given by fd ("." and ".." left out). The fd stays open
 * and usable; listing works on a duplicate.
 */
export function readDir(dirfd: number): DirEntry[] {
  const fd = dup(dirfd);
  const dir = libc.fdopendir(fd);
  const err = errno[0];
  if (dir === null) {
    libc.close(fd);
    throw new SysError("fdopendir", err, `fd ${dirfd}`);
  }
  const out: DirEntry[] = [];
  try {
    // Start from the beginning even when the original fd was read before:
    // the duplicate shares its file position.
    libc.lseek(fd, 0n, SEEK.SET);
    for (;;) {
      const ent = libc.readdir(dir);
      if (ent === null) break;
      // struct dirent64 (glibc, x86_64 and aarch64): d_ino u64 @0, d_off @8,
      // d_reclen u16 @16, d_type u8 @18, d_name @19 (NUL-terminated).
      const view = new Deno.UnsafePointerView(ent);
      const reclen = view.getUint16(16);
      const type = view.getUint8(18);
      const raw = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(ent, reclen));
      const nul = raw.indexOf(0, 19);
      const nameBytes = raw.slice(19, nul < 0 ? reclen : nul);
      if (
        (nameBytes.length === 1 && nameBytes[0] === 0x2e) ||
        (nameBytes.length === 2 && nameBytes[0] === 0x2e && nameBytes[1] === 0x2e)
      ) continue;
      out.push({
        nameBytes,
        name: nameDecoder.decode(nameBytes),
        type,
      });
    }
  } finally {
    libc.closedir(dir);
  }
  return out;
}

/** Reads a whole (small) file below `dirfd`. */
export function readFileAt(dirfd: number, path: PathLike): Uint8Array {
  const fd = openAt(dirfd, path, O.RDONLY | O.NOFOLLOW);
  try {
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const buf = new Uint8Array(65536);
      const n = read(fd, buf);
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      total += n;
    }
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  } finally {
    close(fd);
  }
}

/** True when `path` exists below `dirfd` (without following a final symlink). */
export function existsAt(dirfd: number, path: PathLike): boolean {
  try {
    statAt(dirfd, path);
    return true;
  } catch (e) {
    if (e instanceof SysError && (e.errno === Errno.ENOENT || e.errno === Errno.ENOTDIR)) {
      return false;
    }
    throw e;
  }
}
