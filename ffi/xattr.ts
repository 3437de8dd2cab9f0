/**
 * Extended attributes of files (by fd) and of symlinks (by path, `l*` calls).
 *
 * Values are raw bytes. A symlink has no fd of its own to carry xattrs, so the
 * `l*` variants reach it through `/proc/self/fd/<dirfd>/<name>`, which stays
 * relative to a directory fd without following the final link.
 *
 * @module
 */

import { Errno, SysError } from "./errno.ts";
import { check, checkBig, cstr, displayPath, errno, libc, type PathLike } from "./libc.ts";

/** fsetxattr / lsetxattr flags. */
export const XATTR = { CREATE: 1, REPLACE: 2 } as const;

const decoder = new TextDecoder();

function splitNames(buf: Uint8Array): string[] {
  const names: string[] = [];
  let start = 0;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] === 0) {
      if (i > start) names.push(decoder.decode(buf.subarray(start, i)));
      start = i + 1;
    }
  }
  return names;
}

/** Lists xattr names of an open file. */
export function flistxattr(fd: number): string[] {
  for (;;) {
    const size = checkBig(libc.flistxattr(fd, null, 0n), errno[0], "flistxattr", `fd ${fd}`);
    if (size === 0) return [];
    const buf = new Uint8Array(size);
    const rc = libc.flistxattr(fd, buf, BigInt(size));
    const err = errno[0];
    const n = Number(rc);
    if (n >= 0) return splitNames(buf.subarray(0, n));
    if (err !== Errno.ERANGE) throw new SysError("flistxattr", err, `fd ${fd}`);
  }
}

/** Reads one xattr of an open file; `null` when it is not set. */
export function fgetxattr(fd: number, name: string): Uint8Array | null {
  const cname = cstr(name);
  for (;;) {
    const rcSize = libc.fgetxattr(fd, cname, null, 0n);
    const errSize = errno[0];
    const size = Number(rcSize);
    if (size < 0) {
      if (errSize === Errno.ENODATA) return null;
      throw new SysError(`fgetxattr(${name})`, errSize, `fd ${fd}`);
    }
    const buf = new Uint8Array(size);
    const rc = libc.fgetxattr(fd, cname, buf, BigInt(size));
    const err = errno[0];
    const n = Number(rc);
    if (n >= 0) return buf.subarray(0, n);
    if (err !== Errno.ERANGE) throw new SysError(`fgetxattr(${name})`, err, `fd ${fd}`);
  }
}

/** Sets one xattr of an open file. */
export function fsetxattr(fd: number, name: string, value: Uint8Array, flags = 0): void {
  const v = new Uint8Array(value);
  check(
    libc.fsetxattr(fd, cstr(name), v, BigInt(v.length), flags),
    errno[0],
    `fsetxattr(${name})`,
    `fd ${fd}`,
  );
}

/** Removes one xattr of an open file. */
export function fremovexattr(fd: number, name: string): void {
  check(libc.fremovexattr(fd, cstr(name)), errno[0], `fremovexattr(${name})`, `fd ${fd}`);
}

/** All xattrs of an open file as `[name, value]` pairs, in the order the filesystem lists them. */
export function fgetAllXattrs(fd: number): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  for (const name of flistxattr(fd)) {
    const value = fgetxattr(fd, name);
    if (value !== null) out.push([name, value]);
  }
  return out;
}

function procPath(dirfd: number, name: PathLike): Uint8Array {
  const prefix = new TextEncoder().encode(`/proc/self/fd/${dirfd}/`);
  const n = typeof name === "string" ? new TextEncoder().encode(name) : name;
  const out = new Uint8Array(prefix.length + n.length);
  out.set(prefix);
  out.set(n, prefix.length);
  return out;
}

/** Lists xattr names of `name` below `dirfd` without following a final symlink. */
export function llistxattrAt(dirfd: number, name: PathLike): string[] {
  const p = cstr(procPath(dirfd, name));
  for (;;) {
    const size = checkBig(libc.llistxattr(p, null, 0n), errno[0], "llistxattr", name);
    if (size === 0) return [];
    const buf = new Uint8Array(size);
    const rc = libc.llistxattr(p, buf, BigInt(size));
    const err = errno[0];
    const n = Number(rc);
    if (n >= 0) return splitNames(buf.subarray(0, n));
    if (err !== Errno.ERANGE) throw new SysError("llistxattr", err, displayPath(name));
  }
}

/** Reads one xattr of `name` below `dirfd` (not following a final symlink); `null` if unset. */
export function lgetxattrAt(dirfd: number, name: PathLike, attr: string): Uint8Array | null {
  const p = cstr(procPath(dirfd, name));
  const cattr = cstr(attr);
  for (;;) {
    const rcSize = libc.lgetxattr(p, cattr, null, 0n);
    const errSize = errno[0];
    const size = Number(rcSize);
    if (size < 0) {
      if (errSize === Errno.ENODATA) return null;
      throw new SysError(`lgetxattr(${attr})`, errSize, displayPath(name));
    }
    const buf = new Uint8Array(size);
    const rc = libc.lgetxattr(p, cattr, buf, BigInt(size));
    const err = errno[0];
    const n = Number(rc);
    if (n >= 0) return buf.subarray(0, n);
    if (err !== Errno.ERANGE) throw new SysError(`lgetxattr(${attr})`, err, displayPath(name));
  }
}

/** Sets one xattr on `name` below `dirfd` itself (a symlink keeps it on the link). */
export function lsetxattrAt(
  dirfd: number,
  name: PathLike,
  attr: string,
  value: Uint8Array,
  flags = 0,
): void {
  const v = new Uint8Array(value);
  check(
    libc.lsetxattr(cstr(procPath(dirfd, name)), cstr(attr), v, BigInt(v.length), flags),
    errno[0],
    `lsetxattr(${attr})`,
    name,
  );
}

/** All xattrs of `name` below `dirfd`, not following a final symlink. */
export function lgetAllXattrsAt(dirfd: number, name: PathLike): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  for (const attr of llistxattrAt(dirfd, name)) {
    const value = lgetxattrAt(dirfd, name, attr);
    if (value !== null) out.push([attr, value]);
  }
  return out;
}
