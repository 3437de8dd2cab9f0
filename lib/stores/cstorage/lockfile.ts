/**
 * containers-storage lock files and last-write tokens (specs/containers-storage.md §3).
 *
 * c/storage excludes concurrent users with classic POSIX record locks on whole lock files
 * (`storage.lock`, `overlay-layers/layers.lock`, `overlay-images/images.lock`). unistore takes
 * OFD locks instead: they conflict with POSIX locks in both directions but, unlike them, are
 * not dropped when this process closes some other fd of the same file (§3.2).
 *
 * A writer records a 64-byte token at offset 0 of the lock file while it holds the write lock
 * (§3.3); long-lived readers (podman's API service, CRI-O) compare tokens to decide whether to
 * reload `layers.json` / `images.json`. Token layout, little-endian:
 *
 * ```
 * [0..8)  u64 unix time in nanoseconds
 * [8..16) u64 per-process write counter
 * [16..20) u32 pid
 * [20..64) 44 random bytes
 * ```
 *
 * Locks are always taken in c/storage's order (graph → layers → images) and released in
 * reverse, so unistore and podman cannot deadlock on each other.
 *
 * @module
 */

import { isErrno } from "../../../ffi/errno.ts";
import { closeQuietly, O, openAt, pwriteAll } from "../../../ffi/fs.ts";
import { type LockKind, ofdLock, ofdUnlock } from "../../../ffi/lock.ts";
import { StoreReadOnlyError } from "./errors.ts";
import { MODES, PATHS } from "./layout.ts";

/**
 * Size of a last-write token. c/storage 1.43 treats a shorter file as "modified" on every
 * check, newer versions compare all 64 bytes: always write exactly this many.
 */
export const TOKEN_SIZE = 64;

/** The lock files unistore takes, in c/storage's lock order. */
export type StoreLockName = "graph" | "layers" | "images";

/** Graph-root relative path of each lock file. */
export const LOCK_PATHS: Readonly<Record<StoreLockName, string>> = {
  graph: PATHS.graphLock,
  layers: `${PATHS.layersDir}/${PATHS.layersLock}`,
  images: `${PATHS.imagesDir}/${PATHS.imagesLock}`,
};

/** c/storage's lock order. Taking them in another order can deadlock against podman. */
export const LOCK_ORDER: readonly StoreLockName[] = ["graph", "layers", "images"];

let writeCounter = 0n;

/**
 * A fresh last-write token: time, counter, pid, randomness (layout in the module doc).
 *
 * @example
 * ```ts
 * const t = newWriteToken();
 * new DataView(t.buffer).getUint32(16, true) === Deno.pid; // true
 * ```
 */
export function newWriteToken(): Uint8Array<ArrayBuffer> {
  const token = new Uint8Array(TOKEN_SIZE);
  const v = new DataView(token.buffer);
  const nanos = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
  v.setBigUint64(0, nanos, true);
  v.setBigUint64(8, ++writeCounter, true);
  v.setUint32(16, Deno.pid, true);
  crypto.getRandomValues(token.subarray(20));
  return token;
}

/** One opened lock file and the lock held through it. */
export class LockFile {
  #held: LockKind | null = null;
  private constructor(readonly fd: number, readonly path: string, readonly writable: boolean) {}

  /**
   * Opens `rel` below `rootFd` for locking. With `create`, a missing lock file is created
   * (0644), as c/storage does. Writable when possible; read-only stores get an O_RDONLY fd
   * (enough for read locks).
   */
  static open(rootFd: number, rootPath: string, rel: string, opts: { create: boolean }): LockFile {
    const path = `${rootPath}/${rel}`;
    try {
      const flags = O.RDWR | O.NOFOLLOW | (opts.create ? O.CREAT : 0);
      const fd = openAt(rootFd, rel, flags, MODES.lockFile);
      return new LockFile(fd, path, true);
    } catch (e) {
      if (!(isErrno(e, "EROFS") || isErrno(e, "EACCES"))) throw e;
    }
    return new LockFile(openAt(rootFd, rel, O.RDONLY | O.NOFOLLOW), path, false);
  }

  /** The lock currently held through this file, if any. */
  get held(): LockKind | null {
    return this.#held;
  }

  /** Takes the lock, waiting (off the event loop) while podman or another process holds it. */
  async lock(kind: LockKind): Promise<void> {
    if (kind === "write" && !this.writable) {
      throw new StoreReadOnlyError(
        this.path,
        "cannot take a write lock: the lock file is read-only",
      );
    }
    await ofdLock(this.fd, kind, this.path);
    this.#held = kind;
  }

  /** Records a write: a new 64-byte token at offset 0. Only while holding the write lock. */
  recordWrite(): void {
    if (this.#held !== "write") {
      throw new Error(`${this.path}: recordWrite() without the write lock`);
    }
    pwriteAll(this.fd, newWriteToken(), 0);
  }

  /** Releases the lock (if held) and closes the file. */
  close(): void {
    try {
      if (this.#held !== null) ofdUnlock(this.fd, this.path);
    } finally {
      this.#held = null;
      closeQuietly(this.fd);
    }
  }
}

/** Which locks a session takes, and how. */
export type LockRequest = Partial<Record<StoreLockName, LockKind>>;

/**
 * Locks held together, taken in c/storage order and released in reverse.
 *
 * @example
 * ```ts ignore
 * await using locks = await StoreLocks.acquire(rootFd, root, { graph: "write", layers: "write" });
 * locks.recordWrite("layers"); // before rewriting layers.json
 * ```
 */
export class StoreLocks implements AsyncDisposable {
  readonly #files = new Map<StoreLockName, LockFile>();
  private constructor() {}

  /**
   * Opens and locks the requested lock files in order. A missing lock file is created, as
   * c/storage does, unless `readOnly`; a read request whose lock file cannot exist yet (its
   * directory is missing, or the store is read-only and never written) is skipped: there is
   * nothing to protect.
   */
  static async acquire(
    rootFd: number,
    rootPath: string,
    request: LockRequest,
    opts: { readOnly?: boolean } = {},
  ): Promise<StoreLocks> {
    const locks = new StoreLocks();
    try {
      for (const name of LOCK_ORDER) {
        const kind = request[name];
        if (kind === undefined) continue;
        let file: LockFile;
        try {
          file = LockFile.open(rootFd, rootPath, LOCK_PATHS[name], { create: !opts.readOnly });
        } catch (e) {
          if (kind === "read" && isErrno(e, "ENOENT")) continue;
          throw e;
        }
        locks.#files.set(name, file);
        await file.lock(kind);
      }
      return locks;
    } catch (e) {
      locks.release();
      throw e;
    }
  }

  /** Records a write on one held lock file (see {@linkcode LockFile.recordWrite}). */
  recordWrite(name: StoreLockName): void {
    const file = this.#files.get(name);
    if (!file) throw new Error(`recordWrite(${name}): that lock is not part of this session`);
    file.recordWrite();
  }

  /** Releases every lock, in reverse order. Idempotent. */
  release(): void {
    for (const name of [...LOCK_ORDER].reverse()) {
      const f = this.#files.get(name);
      if (f) {
        this.#files.delete(name);
        f.close();
      }
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.release();
    return Promise.resolve();
  }
}
