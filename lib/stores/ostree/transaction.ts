/**
 * Writing into an ostree repository: a transaction stages objects in `tmp/staging-…`, then
 * publishes them into `objects/` and writes refs, in the order that keeps the repository valid
 * for the stock tools at every instant (what libostree's `ostree_repo_commit_transaction` does).
 *
 * 1. the repo lock is held **shared** for the whole transaction (`ostree prune` takes it
 *    exclusive, so it cannot delete objects the transaction is about to reference);
 * 2. a staging dir `tmp/staging-<boot id>-<random>` with its lock file beside it;
 * 3. every object: an O_TMPFILE in the staging dir, data cloned or written, metadata applied,
 *    linked as `staging/XX/YYY….ext` without replacing anything;
 * 4. commit: `syncfs`, rename each staged object into `objects/XX/` (RENAME_NOREPLACE: an
 *    object already there wins) and fsync the touched `objects/XX` and `objects/`, commit
 *    objects in a second round after everything else, remove the staging dir, then write refs
 *    (tmpfile + rename), then release the lock.
 * A crash before 4 leaves only a staging dir (ostree deletes those of other boots); a crash
 * during 4 leaves complete, valid objects that nothing references yet, and never a commit
 * object whose tree is missing (`ostree fsck` checks every commit object, referenced or not).
 *
 * Content objects (spec §7, §8.1): `bare` keeps the real owner, mode and xattrs on the inode
 * (`fchown` before `fchmod`: chown clears setuid) and mtime 0; `bare-user` keeps them in the
 * `user.ostreemeta` xattr of an inode the writer owns.
 *
 * Spec: ../../../../shared/specs/ostree-repo.md §2, §3, §7, §8.
 *
 * @module
 */

import { isErrno } from "../../../ffi/errno.ts";
import {
  AT,
  close,
  closeQuietly,
  DT,
  ensureDirAt,
  existsAt,
  fchmod,
  fsync,
  futimens,
  lchownAt,
  linkTmpfile,
  mkdirAt,
  O,
  openAt,
  openDirAt,
  readDir,
  RENAME,
  renameAt,
  S,
  symlinkAt,
  syncfs,
  unlinkAt,
  writeAll,
} from "../../../ffi/fs.ts";
import { ofdTryLock } from "../../../ffi/lock.ts";
import { fsetxattr, lsetxattrAt } from "../../../ffi/xattr.ts";
import { hashBytes, toHex } from "../../digest/hash.ts";
import { faultPoint } from "../../fault/fault_point.ts";
import {
  applyMetadata,
  cloneToTmpfile,
  type CopyPolicy,
  discardClone,
  linkNoReplace,
  type PlaceMethod,
} from "../../reflink/place.ts";
import {
  canonicalXattrs,
  ContentChecksum,
  contentChecksum,
  type FileObjectMeta,
  normalizeFileMode,
  type Xattr,
} from "./checksum.ts";
import { OstreeError, RefError } from "./errors.ts";
import {
  assertChecksum,
  BAREUSER_META_XATTR,
  type Commit,
  type DirMeta,
  type DirTree,
  objectPath,
  type ObjectType,
  serializeCommit,
  serializeDirMeta,
  serializeDirTree,
  serializeUidGidModeXattrs,
} from "./objects.ts";
import { validateRefName } from "./refs.ts";
import type { OstreeRepo, RepoLock } from "./repo.ts";

/** mtime of every content object (libostree `OSTREE_TIMESTAMP`); not part of any checksum. */
const OBJECT_MTIME = { sec: 0, nsec: 0 };
/** Mode of metadata objects and of refs. */
const METADATA_MODE = 0o644;

const decoder = new TextDecoder();

/** What writing a content object did. */
export interface WriteFileResult {
  checksum: string;
  /** `written`: a new object; `present`: the repository already had it (nothing changed). */
  outcome: "written" | "present";
  /** How the bytes were placed (regular files that were written). */
  method?: PlaceMethod | "bytes";
  /** Content bytes (0 for symlinks); undefined when skipped through `knownChecksum`. */
  size?: number;
}

/** Options for writing a regular file from an fd. */
export interface WriteFileOptions {
  /** Whether the data may be copied when it cannot be shared by reflink. */
  policy: CopyPolicy;
  /**
   * The checksum this content is known to have (e.g. from a cache keyed by source inode, size
   * and mtime). When the object is present the source is not read at all; when it is absent the
   * checksum is recomputed from the placed bytes and a mismatch is an error. Trusted only to
   * skip work, never to name an object.
   */
  knownChecksum?: string;
}

/** Counters of a transaction. */
export interface TransactionStats {
  filesWritten: number;
  filesPresent: number;
  metadataWritten: number;
  metadataPresent: number;
  /** Content bytes placed by method. */
  bytesByMethod: Partial<Record<PlaceMethod | "bytes", number>>;
  refsWritten: number;
}

function bootId(): string {
  const env = Deno.env.get("OSTREE_BOOTID");
  if (env) return env;
  try {
    return Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
  } catch {
    return "unknown";
  }
}

function randomSuffix(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return [...bytes].map((b) => alphabet[b % alphabet.length]).join("");
}

/**
 * Objects and refs being written into one repository. Create with
 * {@linkcode OstreeRepo.beginTransaction}; finish with {@linkcode commit} or {@linkcode abort}.
 */
export class RepoTransaction {
  readonly repo: OstreeRepo;
  readonly #lock: RepoLock;
  readonly #objectsFd: number;
  readonly #tmpFd: number;
  readonly #stagingName: string;
  readonly #stagingFd: number;
  readonly #stagingLockFd: number;
  /** Staged objects by `XX` directory: the `YYY….ext` names in each. */
  readonly #staged = new Map<string, Set<string>>();
  readonly #stagedDirFds = new Map<string, number>();
  readonly #refs = new Map<string, string | null>();
  #done = false;
  readonly stats: TransactionStats = {
    filesWritten: 0,
    filesPresent: 0,
    metadataWritten: 0,
    metadataPresent: 0,
    bytesByMethod: {},
    refsWritten: 0,
  };

  /** @internal use {@linkcode OstreeRepo.beginTransaction}. */
  constructor(repo: OstreeRepo, lock: RepoLock, objectsFd: number) {
    this.repo = repo;
    this.#lock = lock;
    this.#objectsFd = objectsFd;
    this.#tmpFd = openDirAt(repo.dirfd, "tmp");
    const prefix = `staging-${bootId()}-`;
    let name = "";
    let lockFd = -1;
    let stagingFd = -1;
    try {
      for (let attempt = 0;; attempt++) {
        name = prefix + randomSuffix();
        try {
          mkdirAt(this.#tmpFd, name, 0o755);
          break;
        } catch (e) {
          if (!isErrno(e, "EEXIST") || attempt > 10) throw e;
        }
      }
      // The lock file sits beside the dir, as libostree's does: ostree reuses a staging dir of
      // this boot only when it can lock it, so holding the lock keeps ostree out of ours.
      lockFd = openAt(this.#tmpFd, `${name}-lock`, O.CREAT | O.RDWR | O.NOFOLLOW, 0o600);
      if (!ofdTryLock(lockFd, "write", `${repo.path}/tmp/${name}-lock`)) {
        throw new OstreeError(`${repo.path}/tmp/${name}-lock: locked by another process`);
      }
      stagingFd = openDirAt(this.#tmpFd, name);
    } catch (e) {
      closeQuietly(lockFd);
      if (name) removeTreeQuietly(this.#tmpFd, name);
      closeQuietly(this.#tmpFd);
      throw e;
    }
    this.#stagingName = name;
    this.#stagingFd = stagingFd;
    this.#stagingLockFd = lockFd;
  }

  /** Path of the staging dir (for messages and tests). */
  get stagingPath(): string {
    return `${this.repo.path}/tmp/${this.#stagingName}`;
  }

  #assertOpen(): void {
    if (this.#done) throw new OstreeError(`transaction on ${this.repo.path} already finished`);
  }

  /** True when the object is in `objects/` or already staged by this transaction. */
  hasObject(checksum: string, type: ObjectType): boolean {
    const path = objectPath(checksum, type);
    const [dir, name] = path.split("/");
    if (this.#staged.get(dir)?.has(name)) return true;
    return existsAt(this.#objectsFd, path);
  }

  #stageDir(dir: string): number {
    let fd = this.#stagedDirFds.get(dir);
    if (fd === undefined) {
      ensureDirAt(this.#stagingFd, dir, 0o755);
      fd = openDirAt(this.#stagingFd, dir);
      this.#stagedDirFds.set(dir, fd);
      this.#staged.set(dir, new Set());
    }
    return fd;
  }

  #markStaged(path: string): void {
    const [dir, name] = path.split("/");
    this.#staged.get(dir)!.add(name);
  }

  /**
   * Writes a metadata object (its name is the sha256 of `bytes`); returns the checksum.
   * Nothing is written when the object exists.
   */
  writeMetadata(type: "dirtree" | "dirmeta" | "commit", bytes: Uint8Array): string {
    this.#assertOpen();
    const checksum = toHex(hashBytes("sha256", bytes));
    if (this.hasObject(checksum, type)) {
      this.stats.metadataPresent++;
      return checksum;
    }
    const path = objectPath(checksum, type);
    const [dir, name] = path.split("/");
    const dirfd = this.#stageDir(dir);
    const fd = openAt(this.#stagingFd, ".", O.TMPFILE | O.RDWR, 0o600);
    try {
      writeAll(fd, new Uint8Array(bytes), `${this.repo.path}/objects/${path}`);
      fchmod(fd, METADATA_MODE);
      if (this.repo.config.perObjectFsync) fsync(fd);
      linkTmpfileIgnoreExisting(fd, dirfd, name);
    } finally {
      closeQuietly(fd);
    }
    this.#markStaged(path);
    this.stats.metadataWritten++;
    return checksum;
  }

  /** Writes a dirmeta object; returns its checksum. */
  writeDirMeta(meta: Omit<DirMeta, "xattrs"> & { xattrs?: readonly Xattr[] }): string {
    return this.writeMetadata("dirmeta", serializeDirMeta(this.#xattrPolicy(meta)));
  }

  /** Writes a dirtree object; returns its checksum. */
  writeDirTree(tree: DirTree, where?: string): string {
    return this.writeMetadata("dirtree", serializeDirTree(tree, where));
  }

  /** Writes a commit object; returns its checksum. */
  writeCommit(commit: Commit): string {
    return this.writeMetadata("commit", serializeCommit(commit));
  }

  #xattrPolicy<T extends { xattrs?: readonly Xattr[] }>(meta: T): T {
    return this.repo.config.disableXattrs ? { ...meta, xattrs: [] } : meta;
  }

  /**
   * Writes a regular-file content object from `srcFd` (the whole file, from offset 0) with the
   * given owner, mode and xattrs: FICLONE into a tmpfile in the staging dir (or a copy when
   * `policy` allows it and the filesystem cannot share blocks), the checksum computed over the
   * placed bytes in the same pass, metadata applied (`fchown` before `fchmod`: chown clears
   * setuid), then linked in. When the object already exists the clone is dropped.
   *
   * @example
   * ```ts ignore
   * const r = txn.writeFileFromFd(fd, { uid: 0, gid: 0, mode: 0o100755 }, { policy: "reflink-required" });
   * // r.checksum names objects/XX/YYY.file; r.method === "reflink"
   * ```
   */
  writeFileFromFd(srcFd: number, meta: FileObjectMeta, opts: WriteFileOptions): WriteFileResult {
    this.#assertOpen();
    const m = this.#fileMeta(meta, "regular");
    if (opts.knownChecksum !== undefined && this.hasObject(opts.knownChecksum, "file")) {
      this.stats.filesPresent++;
      return { checksum: opts.knownChecksum, outcome: "present" };
    }
    const sink = new ContentChecksum(m);
    const tmp = cloneToTmpfile(srcFd, this.#stagingFd, { policy: opts.policy, sink, mode: 0o600 });
    const checksum = sink.hex();
    if (opts.knownChecksum !== undefined && opts.knownChecksum !== checksum) {
      discardClone(tmp);
      throw new OstreeError(
        `content of fd ${srcFd} has checksum ${checksum}, not the expected ${opts.knownChecksum}`,
      );
    }
    if (this.hasObject(checksum, "file")) {
      discardClone(tmp);
      this.stats.filesPresent++;
      return { checksum, outcome: "present", size: tmp.size };
    }
    try {
      this.#applyFileMetadata(tmp.fd, m);
    } catch (e) {
      discardClone(tmp);
      throw e;
    }
    const path = objectPath(checksum, "file");
    const [dir, name] = path.split("/");
    const dirfd = this.#stageDir(dir);
    linkNoReplace(tmp, dirfd, name);
    this.#markStaged(path);
    faultPoint("ostree.file-staged");
    this.stats.filesWritten++;
    this.stats.bytesByMethod[tmp.method] = (this.stats.bytesByMethod[tmp.method] ?? 0) + tmp.size;
    return { checksum, outcome: "written", method: tmp.method, size: tmp.size };
  }

  /** Writes a regular-file content object from bytes in memory (small files, empty files). */
  writeFileFromBytes(meta: FileObjectMeta, content: Uint8Array): WriteFileResult {
    this.#assertOpen();
    const m = this.#fileMeta(meta, "regular");
    const checksum = contentChecksum(m, content);
    if (this.hasObject(checksum, "file")) {
      this.stats.filesPresent++;
      return { checksum, outcome: "present", size: content.length };
    }
    const path = objectPath(checksum, "file");
    const [dir, name] = path.split("/");
    const dirfd = this.#stageDir(dir);
    const fd = openAt(this.#stagingFd, ".", O.TMPFILE | O.RDWR, 0o600);
    try {
      writeAll(fd, new Uint8Array(content), `${this.repo.path}/objects/${path}`);
      this.#applyFileMetadata(fd, m);
      linkTmpfileIgnoreExisting(fd, dirfd, name);
    } finally {
      closeQuietly(fd);
    }
    this.#markStaged(path);
    this.stats.filesWritten++;
    this.stats.bytesByMethod.bytes = (this.stats.bytesByMethod.bytes ?? 0) + content.length;
    return { checksum, outcome: "written", method: "bytes", size: content.length };
  }

  /**
   * Writes a symlink content object. In `bare` mode it is a real symlink owned by `uid:gid`
   * with its xattrs; in `bare-user` a regular file holding the target and a NUL, with the
   * metadata in `user.ostreemeta`.
   */
  writeSymlink(meta: FileObjectMeta): WriteFileResult {
    this.#assertOpen();
    const m = this.#fileMeta(meta, "symlink");
    const checksum = contentChecksum(m);
    if (this.hasObject(checksum, "file")) {
      this.stats.filesPresent++;
      return { checksum, outcome: "present", size: 0 };
    }
    const path = objectPath(checksum, "file");
    const [dir, name] = path.split("/");
    const dirfd = this.#stageDir(dir);
    if (this.repo.mode === "bare-user") {
      const fd = openAt(this.#stagingFd, ".", O.TMPFILE | O.RDWR, 0o600);
      try {
        writeAll(
          fd,
          new TextEncoder().encode(m.symlinkTarget + "\0"),
          `${this.repo.path}/objects/${path}`,
        );
        fchmod(fd, 0o644);
        fsetxattr(fd, BAREUSER_META_XATTR, serializeUidGidModeXattrs(m));
        futimens(fd, OBJECT_MTIME, OBJECT_MTIME);
        if (this.repo.config.perObjectFsync) fsync(fd);
        linkTmpfileIgnoreExisting(fd, dirfd, name);
      } finally {
        closeQuietly(fd);
      }
    } else {
      const tmpName = `.unistore-symlink-${crypto.randomUUID()}`;
      symlinkAt(m.symlinkTarget!, this.#stagingFd, tmpName);
      try {
        lchownAt(this.#stagingFd, tmpName, m.uid, m.gid);
        for (const [n, v] of canonicalXattrs(m.xattrs)) {
          lsetxattrAt(this.#stagingFd, tmpName, decoder.decode(n.subarray(0, -1)), v);
        }
        try {
          renameAt(this.#stagingFd, tmpName, dirfd, name, RENAME.NOREPLACE);
        } catch (e) {
          if (!isErrno(e, "EEXIST")) throw e;
        }
      } finally {
        // Gone after a successful rename; still there when the object already existed.
        unlinkIfPresent(this.#stagingFd, tmpName);
      }
    }
    this.#markStaged(path);
    this.stats.filesWritten++;
    return { checksum, outcome: "written", size: 0 };
  }

  #fileMeta(meta: FileObjectMeta, kind: "regular" | "symlink"): FileObjectMeta {
    const mode = normalizeFileMode(
      kind === "symlink" ? S.IFLNK | 0o777 : (meta.mode & 0o7777) | S.IFREG,
    );
    if (kind === "symlink" && !meta.symlinkTarget) {
      throw new OstreeError("symlink content object needs a non-empty target");
    }
    return this.#xattrPolicy({
      uid: meta.uid,
      gid: meta.gid,
      mode,
      xattrs: meta.xattrs ?? [],
      symlinkTarget: kind === "symlink" ? meta.symlinkTarget : undefined,
    });
  }

  /** Owner, mode, xattrs and mtime of a regular-file object, per repository mode (§7, §8.1). */
  #applyFileMetadata(fd: number, m: FileObjectMeta): void {
    if (this.repo.mode === "bare") {
      applyMetadata(fd, {
        uid: m.uid,
        gid: m.gid,
        mode: m.mode & 0o7777,
        xattrs: canonicalXattrs(m.xattrs).map(([n, v]) => [decoder.decode(n.subarray(0, -1)), v]),
        mtime: OBJECT_MTIME,
      });
    } else {
      // bare-user: owned by us; readable by us; setuid and friends only in the xattr.
      fsetxattr(fd, BAREUSER_META_XATTR, serializeUidGidModeXattrs(m));
      fchmod(fd, (m.mode & 0o775) | 0o400);
      futimens(fd, OBJECT_MTIME, OBJECT_MTIME);
    }
    if (this.repo.config.perObjectFsync) fsync(fd);
  }

  /**
   * Sets `ref` (a local ref below `refs/heads`) to `checksum`, or deletes it with null; written
   * at commit, after every object is in place.
   */
  setRef(ref: string, checksum: string | null): void {
    this.#assertOpen();
    validateRefName(ref);
    if (checksum !== null) assertChecksum(checksum, `ref ${ref}`);
    this.#refs.set(ref, checksum);
  }

  /**
   * Publishes everything: `syncfs`, rename staged objects into `objects/`, fsync the object
   * directories, remove the staging dir, write refs, release the lock. Synchronous: every step
   * is a system call that must finish before the next one starts.
   */
  commit(): TransactionStats {
    this.#assertOpen();
    this.#done = true;
    const fsyncOn = this.repo.config.fsync;
    try {
      if (fsyncOn) syncfs(this.#stagingFd, this.repo.path);
      // Commit objects go last, after everything they reference is durable in objects/:
      // ostree fsck checks every commit object, referenced or not, so a crash must never leave
      // a commit whose tree is still in a staging dir (which ostree deletes on the next boot).
      this.#publish((name) => !name.endsWith(".commit"), fsyncOn);
      faultPoint("ostree.objects-published");
      this.#publish((name) => name.endsWith(".commit"), fsyncOn);
      faultPoint("ostree.commits-published");
      this.#cleanupStaging();
      for (const [ref, checksum] of this.#refs) {
        writeRef(this.repo, ref, checksum, fsyncOn);
        faultPoint("ostree.ref-written");
        this.stats.refsWritten++;
      }
      return this.stats;
    } catch (e) {
      this.#cleanupStaging();
      throw e;
    } finally {
      closeQuietly(this.#tmpFd);
      this.#lock.release();
    }
  }

  /** Renames the staged objects `which` selects into `objects/XX/`, then fsyncs those dirs. */
  #publish(which: (name: string) => boolean, fsyncOn: boolean): void {
    const touched: number[] = [];
    try {
      for (const [dir, names] of this.#staged) {
        const selected = [...names].filter(which);
        if (selected.length === 0) continue;
        ensureDirAt(this.#objectsFd, dir, 0o755);
        const dst = openDirAt(this.#objectsFd, dir);
        touched.push(dst);
        const src = this.#stagedDirFds.get(dir)!;
        for (const name of selected) {
          try {
            renameAt(src, name, dst, name, RENAME.NOREPLACE);
          } catch (e) {
            // Someone (ostree, another unistore) put the same object there meanwhile: the
            // existing one is equally valid; drop ours.
            if (!isErrno(e, "EEXIST")) throw e;
            unlinkAt(src, name);
          }
        }
      }
      if (fsyncOn && touched.length > 0) {
        for (const fd of touched) fsync(fd);
        fsync(this.#objectsFd);
      }
    } finally {
      touched.forEach(closeQuietly);
    }
  }

  /** Drops everything staged and releases the lock; `objects/` and refs are untouched. */
  abort(): void {
    if (this.#done) return;
    this.#done = true;
    try {
      this.#cleanupStaging();
    } finally {
      closeQuietly(this.#tmpFd);
      this.#lock.release();
    }
  }

  #cleanupStaging(): void {
    for (const fd of this.#stagedDirFds.values()) closeQuietly(fd);
    this.#stagedDirFds.clear();
    closeQuietly(this.#stagingFd);
    removeTreeQuietly(this.#tmpFd, this.#stagingName);
    try {
      unlinkAt(this.#tmpFd, `${this.#stagingName}-lock`);
    } catch { /* already gone */ }
    closeQuietly(this.#stagingLockFd);
  }
}

function unlinkIfPresent(dirfd: number, name: string): void {
  try {
    unlinkAt(dirfd, name);
  } catch (e) {
    if (!isErrno(e, "ENOENT")) throw e;
  }
}

function linkTmpfileIgnoreExisting(fd: number, dirfd: number, name: string): void {
  try {
    linkTmpfile(fd, dirfd, name);
  } catch (e) {
    if (!isErrno(e, "EEXIST")) throw e;
  }
}

/** Removes a directory tree below `dirfd` (used for our own staging dirs only). */
function removeTreeQuietly(dirfd: number, name: string): void {
  try {
    const fd = openDirAt(dirfd, name);
    try {
      for (const ent of readDir(fd)) {
        if (ent.type === DT.DIR) removeTreeQuietly(fd, ent.name);
        else {
          try {
            unlinkAt(fd, ent.nameBytes);
          } catch { /* best effort */ }
        }
      }
    } finally {
      close(fd);
    }
    unlinkAt(dirfd, name, AT.REMOVEDIR);
  } catch { /* best effort: a leftover staging dir is harmless and ostree cleans it */ }
}

/**
 * Writes `refs/heads/<ref>` atomically (tmpfile, optional fsync, rename over), creating the
 * parent directories; null deletes the ref.
 */
function writeRef(repo: OstreeRepo, ref: string, checksum: string | null, fsyncOn: boolean): void {
  const parts = ref.split("/");
  const leaf = parts.pop()!;
  let dirfd = openDirAt(repo.dirfd, "refs/heads");
  try {
    for (const p of parts) {
      if (checksum !== null) ensureDirAt(dirfd, p, 0o755);
      let next: number;
      try {
        next = openDirAt(dirfd, p);
      } catch (e) {
        if (checksum === null && isErrno(e, "ENOENT")) return;
        throw e;
      }
      close(dirfd);
      dirfd = next;
    }
    if (checksum === null) {
      try {
        unlinkAt(dirfd, leaf);
      } catch (e) {
        if (!isErrno(e, "ENOENT")) throw e;
      }
      return;
    }
    const fd = openAt(dirfd, ".", O.TMPFILE | O.RDWR, 0o600);
    const tmpName = `.tmp-ref-${crypto.randomUUID()}`;
    try {
      writeAll(fd, new TextEncoder().encode(checksum + "\n"));
      fchmod(fd, METADATA_MODE);
      if (fsyncOn) fsync(fd);
      linkTmpfile(fd, dirfd, tmpName);
    } finally {
      closeQuietly(fd);
    }
    try {
      renameAt(dirfd, tmpName, dirfd, leaf);
    } catch (e) {
      try {
        unlinkAt(dirfd, tmpName);
      } catch { /* keep the original error */ }
      throw new RefError(`cannot write ref ${ref} in ${repo.path}: ${(e as Error).message}`);
    }
    if (fsyncOn) fsync(dirfd);
  } finally {
    close(dirfd);
  }
}
