/**
 * An opened graph root: the directory fd every other module works relative to, and the
 * directories c/storage creates on first use.
 *
 * @module
 */

import { isErrno } from "../../../ffi/errno.ts";
import { AT, close, ensureDirAt, openDir, openDirAt } from "../../../ffi/fs.ts";
import { CStorageError, StoreReadOnlyError } from "./errors.ts";
import { MODES, PATHS } from "./layout.ts";

/** A graph root opened by fd. */
export class StoreRoot {
  private constructor(
    /** The graph root path (for messages; all access goes through `fd`). */
    readonly path: string,
    readonly fd: number,
    /** Opened without write access (a read-only mount or an additional image store). */
    readonly readOnly: boolean,
    /** The run root, when given (only read: transient volatile layers). */
    readonly runroot?: string,
  ) {}

  /**
   * Opens `path`. With `create`, a missing graph root is created (0700), as c/storage does on
   * first use; otherwise it must exist.
   */
  static open(
    path: string,
    opts: { create?: boolean; readOnly?: boolean; runroot?: string } = {},
  ): StoreRoot {
    const clean = path.length > 1 ? path.replace(/\/+$/, "") : path;
    let fd: number;
    try {
      fd = openDir(clean);
    } catch (e) {
      if (!isErrno(e, "ENOENT") || !opts.create) {
        if (isErrno(e, "ENOENT")) {
          throw new CStorageError(
            clean,
            "no containers-storage graph root here (directory missing)",
          );
        }
        throw e;
      }
      mkdirs(clean);
      fd = openDir(clean);
    }
    return new StoreRoot(clean, fd, opts.readOnly ?? false, opts.runroot);
  }

  /** Throws {@linkcode StoreReadOnlyError} when the store may not be written. */
  assertWritable(what: string): void {
    if (this.readOnly) {
      throw new StoreReadOnlyError(this.path, `cannot ${what}: store opened read-only`);
    }
  }

  /** Creates `overlay/`, `overlay/l`, `overlay-layers/`, `overlay-images/` when missing. */
  ensureLayout(): void {
    this.assertWritable("create the store layout");
    ensureDirAt(this.fd, PATHS.driverDir, MODES.storeDir);
    ensureDirAt(this.fd, `${PATHS.driverDir}/${PATHS.linkDir}`, MODES.linkDir);
    ensureDirAt(this.fd, PATHS.layersDir, MODES.storeDir);
    ensureDirAt(this.fd, PATHS.imagesDir, MODES.storeDir);
  }

  /** Runs `fn` with an fd on a directory below the root (closed afterwards). */
  withDir<T>(rel: string, fn: (fd: number) => T): T {
    const fd = openDirAt(this.fd, rel);
    try {
      return fn(fd);
    } finally {
      close(fd);
    }
  }

  close(): void {
    close(this.fd);
  }
}

/** `mkdir -p` of a user-given path (0700 for what is created). */
function mkdirs(path: string): void {
  const parts = path.split("/");
  for (let i = 1; i <= parts.length; i++) {
    const prefix = parts.slice(0, i).join("/");
    if (prefix === "" || prefix === ".") continue;
    ensureDirAt(AT.FDCWD, prefix, MODES.storeDir);
  }
}
