/**
 * Typed system-call errors.
 *
 * Every libc failure in `ffi/` becomes a {@linkcode SysError} that names the
 * call, the errno (by number and by name) and, where there is one, the path
 * the call was about, so an error printed to a user says what failed where.
 *
 * @module
 */

/** errno numbers (Linux, identical on x86_64 and aarch64) by name. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  ETXTBSY: 26,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  ERANGE: 34,
  EDEADLK: 35,
  ENAMETOOLONG: 36,
  ENOLCK: 37,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  EDQUOT: 122,
} as const;

/** The name of an errno constant. */
export type ErrnoName = keyof typeof Errno;

const NAMES = new Map<number, ErrnoName>(
  Object.entries(Errno).map(([name, code]) => [code, name as ErrnoName]),
);

const DESCRIPTIONS: Partial<Record<ErrnoName, string>> = {
  EPERM: "Operation not permitted",
  ENOENT: "No such file or directory",
  EINTR: "Interrupted system call",
  EIO: "Input/output error",
  EBADF: "Bad file descriptor",
  EAGAIN: "Resource temporarily unavailable",
  ENOMEM: "Cannot allocate memory",
  EACCES: "Permission denied",
  EBUSY: "Device or resource busy",
  EEXIST: "File exists",
  EXDEV: "Invalid cross-device link",
  ENOTDIR: "Not a directory",
  EISDIR: "Is a directory",
  EINVAL: "Invalid argument",
  EMFILE: "Too many open files",
  ENOTTY: "Inappropriate ioctl for device",
  ETXTBSY: "Text file busy",
  EFBIG: "File too large",
  ENOSPC: "No space left on device",
  EROFS: "Read-only file system",
  EMLINK: "Too many links",
  ERANGE: "Numerical result out of range",
  EDEADLK: "Resource deadlock avoided",
  ENAMETOOLONG: "File name too long",
  ENOLCK: "No locks available",
  ENOSYS: "Function not implemented",
  ENOTEMPTY: "Directory not empty",
  ELOOP: "Too many levels of symbolic links",
  ENODATA: "No data available",
  EOVERFLOW: "Value too large for defined data type",
  EOPNOTSUPP: "Operation not supported",
  EDQUOT: "Disk quota exceeded",
};

/** The symbolic name of an errno number, or `E<number>` for one we do not name. */
export function errnoName(errno: number): string {
  return NAMES.get(errno) ?? `E${errno}`;
}

/**
 * A failed system call: which call, which errno, and on what path.
 *
 * @example
 * ```ts
 * import { SysError } from "./errno.ts";
 * try {
 *   // ... openAt(dir, "missing", O_RDONLY)
 * } catch (e) {
 *   if (e instanceof SysError && e.code === "ENOENT") {
 *     // not there: fine
 *   }
 * }
 * ```
 */
export class SysError extends Error {
  /** The errno number the call set. */
  readonly errno: number;
  /** The errno name, e.g. `EXDEV`. */
  readonly code: string;
  /** The libc call (or ioctl) that failed, e.g. `openat` or `ioctl(FICLONE)`. */
  readonly call: string;
  /** The path (or a description of the object) the call acted on, when known. */
  readonly path?: string;

  constructor(call: string, errno: number, path?: string) {
    const code = errnoName(errno);
    const what = DESCRIPTIONS[code as ErrnoName] ?? "error";
    super(`${call}${path !== undefined ? ` ${JSON.stringify(path)}` : ""}: ${code} (${what})`);
    this.name = "SysError";
    this.errno = errno;
    this.code = code;
    this.call = call;
    this.path = path;
  }

  /** True when this error carries the named errno. */
  is(name: ErrnoName): boolean {
    return this.errno === Errno[name];
  }
}

/** True when `e` is a {@linkcode SysError} with the named errno. */
export function isErrno(e: unknown, name: ErrnoName): e is SysError {
  return e instanceof SysError && e.errno === Errno[name];
}
