/**
 * The one place that opens libc.
 *
 * Every other module in `ffi/` calls through {@linkcode libc} and reads
 * {@linkcode errno} in the very expression after the call, before any other
 * call or allocation: `check(libc.close(fd), errno[0], "close", what)`. Any
 * Deno op in between may clobber it (see specs/deno-platform.md §2.3), and so
 * may entering a function: V8 handles interrupts there (GC steps, code
 * installation), whose Rust locks wait on a futex through syscall(2), which
 * sets errno (EAGAIN). An import once failed on a `linkat` reported as
 * EAGAIN, which linkat cannot return (EEXIST was expected there): most
 * likely this.
 *
 * @module
 */

import { SysError } from "./errno.ts";

const SYMBOLS = {
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  dup: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32" },
  renameat2: { parameters: ["i32", "buffer", "i32", "buffer", "u32"], result: "i32" },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  symlinkat: { parameters: ["buffer", "i32", "buffer"], result: "i32" },
  readlinkat: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize" },
  mknodat: { parameters: ["i32", "buffer", "u32", "u64"], result: "i32" },
  fchown: { parameters: ["i32", "u32", "u32"], result: "i32" },
  fchownat: { parameters: ["i32", "buffer", "u32", "u32", "i32"], result: "i32" },
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  fchmodat: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  futimens: { parameters: ["i32", "buffer"], result: "i32" },
  utimensat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  fsync: { parameters: ["i32"], result: "i32" },
  syncfs: { parameters: ["i32"], result: "i32" },
  syncfs_nb: { name: "syncfs", parameters: ["i32"], result: "i32", nonblocking: true },
  // glibc only (optional: null elsewhere, e.g. musl).
  malloc_trim: { parameters: ["usize"], result: "i32", optional: true },
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  fstatfs: { parameters: ["i32", "buffer"], result: "i32" },
  fgetxattr: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize" },
  fsetxattr: { parameters: ["i32", "buffer", "buffer", "usize", "i32"], result: "i32" },
  flistxattr: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  fremovexattr: { parameters: ["i32", "buffer"], result: "i32" },
  lgetxattr: { parameters: ["buffer", "buffer", "buffer", "usize"], result: "isize" },
  lsetxattr: { parameters: ["buffer", "buffer", "buffer", "usize", "i32"], result: "i32" },
  llistxattr: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  lremovexattr: { parameters: ["buffer", "buffer"], result: "i32" },
  // ioctl is variadic; integer and pointer varargs travel in the same registers
  // as fixed arguments on x86_64 and aarch64, so fixed signatures are safe.
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "i64"], result: "i32" },
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  copy_file_range: {
    parameters: ["i32", "buffer", "i32", "buffer", "usize", "u32"],
    result: "isize",
  },
  fcntl_ptr: { name: "fcntl", parameters: ["i32", "i32", "buffer"], result: "i32" },
  fcntl_ptr_nb: {
    name: "fcntl",
    parameters: ["i32", "i32", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  flock_nb: { name: "flock", parameters: ["i32", "i32"], result: "i32", nonblocking: true },
  fdopendir: { parameters: ["i32"], result: "pointer" },
  readdir: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

// The bare soname: Debian keeps libc in /lib/x86_64-linux-gnu, Fedora and
// bootc images in /lib64.
const lib = Deno.dlopen("libc.so.6", SYMBOLS);

/** The bound libc symbols. Only `ffi/` modules use this. */
export const libc = lib.symbols;

/**
 * errno of this thread (each Worker loads this module, and so gets its own): `errno[0]` is the
 * value. Read it as the next expression after the call whose failure it explains (see the
 * module doc); set it to 0 before a call that can fail without setting it.
 */
export const errno = new Int32Array(
  Deno.UnsafePointerView.getArrayBuffer(libc.__errno_location()!, 4),
);

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

/**
 * A path as libc wants it: NUL-terminated bytes.
 *
 * A `Uint8Array` is taken as raw bytes, so names that are not UTF-8 (which
 * tar layers can hold) reach the kernel unchanged.
 */
export type PathLike = string | Uint8Array;

/** Encodes a path into a new NUL-terminated buffer; rejects embedded NULs. */
export function cstr(path: PathLike): Uint8Array<ArrayBuffer> {
  const bytes = typeof path === "string" ? encoder.encode(path) : path;
  if (bytes.includes(0)) {
    throw new TypeError(`path contains a NUL byte: ${JSON.stringify(displayPath(path))}`);
  }
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

// Two reusable path buffers for the hot calls (one per path argument): an
// allocation per call costs more than the syscall on small files. Calls are
// synchronous, so a buffer is free again once its call has returned.
const SCRATCH_SIZE = 16384;
const scratch = [new Uint8Array(SCRATCH_SIZE), new Uint8Array(SCRATCH_SIZE)];

/**
 * Like {@linkcode cstr}, into reusable buffer `slot` (0 or 1). The result is
 * valid only until the next call with the same slot: pass it straight to libc.
 */
export function cstrTemp(path: PathLike, slot: 0 | 1): Uint8Array<ArrayBuffer> {
  const buf = scratch[slot];
  let n: number;
  if (typeof path === "string") {
    if (path.length * 3 >= SCRATCH_SIZE) return cstr(path);
    n = encoder.encodeInto(path, buf).written;
  } else {
    if (path.length >= SCRATCH_SIZE) return cstr(path);
    buf.set(path);
    n = path.length;
  }
  const out = buf.subarray(0, n + 1);
  out[n] = 0;
  if (out.indexOf(0) !== n) {
    throw new TypeError(`path contains a NUL byte: ${JSON.stringify(displayPath(path))}`);
  }
  return out;
}

/** A path for messages: raw bytes are decoded with U+FFFD for invalid sequences. */
export function displayPath(path: PathLike): string {
  return typeof path === "string" ? path : decoder.decode(path);
}

/**
 * Throws a {@linkcode SysError} for `call` when `rc` is negative, with `err` (errno as read
 * right after the call: `check(libc.x(…), errno[0], "x", path)`); returns `rc` otherwise.
 */
export function check(rc: number, err: number, call: string, path?: PathLike): number {
  if (rc < 0) {
    throw new SysError(call, err, path === undefined ? undefined : displayPath(path));
  }
  return rc;
}

/** {@linkcode check} for calls with a 64-bit result (`ssize_t`, `off_t`). */
export function checkBig(rc: bigint | number, err: number, call: string, path?: PathLike): number {
  const n = Number(rc);
  if (n < 0) {
    throw new SysError(call, err, path === undefined ? undefined : displayPath(path));
  }
  return n;
}
