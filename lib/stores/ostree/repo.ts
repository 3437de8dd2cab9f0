/**
 * An ostree repository in `bare` or `bare-user` mode: opening it (config, mode), the repo lock,
 * reading objects and refs, walking a commit's tree, and writing objects and refs through a
 * transaction that keeps the repository valid for the stock tools at every instant.
 *
 * Layout, lock and write protocol: ../../../../shared/specs/ostree-repo.md §1–§3, §7, §8.
 *
 * Writing goes through a {@linkcode RepoTransaction} (transaction.ts).
 *
 * @module
 */

import { isErrno } from "../../../ffi/errno.ts";
import {
  close,
  closeQuietly,
  DT,
  existsAt,
  fstat,
  O,
  openAt,
  openDir,
  openDirAt,
  readDir,
  readFileAt,
  readlinkAtBytes,
  S,
  statAt,
} from "../../../ffi/fs.ts";
import { ofdTryLock, ofdUnlock } from "../../../ffi/lock.ts";
import { replaceFileAt } from "../../../ffi/replace.ts";
import { KeyFile } from "./keyfile.ts";
import { fgetxattr, lgetAllXattrsAt } from "../../../ffi/xattr.ts";
import {
  canonicalXattrs,
  ContentChecksum,
  contentChecksum,
  feedFd,
  type Xattr,
} from "./checksum.ts";
import { parseRepoConfig, type RepoConfig, type RepoMode } from "./config.ts";
import {
  ObjectCorruptError,
  ObjectMissingError,
  OstreeError,
  RefError,
  RepoConfigError,
  RepoLockedError,
  UnsupportedRepoModeError,
} from "./errors.ts";
import {
  assertChecksum,
  BAREUSER_META_XATTR,
  type Commit,
  type DirMeta,
  type DirTree,
  isChecksum,
  metadataChecksum,
  objectPath,
  type ObjectType,
  openFileObjectAt,
  parseCommit,
  parseDirMeta,
  parseDirTree,
  parseUidGidModeXattrs,
} from "./objects.ts";
import { parseRefspec } from "./refs.ts";
import { RepoTransaction } from "./transaction.ts";
import type { TreeEntry } from "./tree_entry.ts";

/** The modes this module reads and writes. */
export const SUPPORTED_MODES: readonly RepoMode[] = ["bare", "bare-user"];

/** Mode of `.lock` as libostree creates it (`DEFAULT_REGFILE_MODE`). */
const LOCK_FILE_MODE = 0o660;

const decoder = new TextDecoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Whether a lock is shared (writers) or exclusive (prune, delete). */
export type RepoLockKind = "shared" | "exclusive";

/** A held repo lock; `release()` (or `using`) drops it. */
export interface RepoLock extends Disposable {
  readonly kind: RepoLockKind;
  release(): void;
}

/** The metadata of a content object as the repository stores it. */
export interface FileObjectInfo {
  uid: number;
  gid: number;
  /** `st_mode` with type bits (`S_IFREG` or `S_IFLNK`). */
  mode: number;
  /** Sorted by name, empty values left out: exactly what the checksum covers. */
  xattrs: Xattr[];
  symlinkTarget?: string;
  /** Content size in bytes (0 for symlinks). */
  size: number;
}

/** One node of a commit's tree, as {@linkcode OstreeRepo.walkCommit} yields it. */
export interface CommitTreeItem {
  /** Absolute path in the tree: `/` for the root, `/usr/bin/bash`. */
  path: string;
  type: "dir" | "file" | "symlink";
  /** Content checksum (files, symlinks) or dirtree checksum (directories). */
  checksum: string;
  /** Directories: the dirmeta checksum. */
  metaChecksum?: string;
  uid: number;
  gid: number;
  /** `st_mode` with type bits. */
  mode: number;
  xattrs: Xattr[];
  symlinkTarget?: string;
  /** Regular files: content size. */
  size?: number;
}

/**
 * An open ostree repository.
 *
 * @example
 * ```ts ignore
 * using repo = OstreeRepo.open("/sysroot/ostree/repo");
 * const commit = repo.resolveRef("ostree/container/image/docker_3A__2F__2F_quay_2E_io/x/y_3A_1");
 * for (const item of repo.walkCommit(commit!)) console.log(item.path, item.checksum);
 * ```
 */
export class OstreeRepo implements Disposable {
  /** The path the repository was opened at (for messages). */
  readonly path: string;
  /** A directory fd of the repository (closed by {@linkcode close}). */
  readonly dirfd: number;
  /** The parsed `config` (refreshed by {@linkcode updateConfig}). */
  config: RepoConfig;
  #objectsFd: number;
  #closed = false;

  private constructor(path: string, dirfd: number, config: RepoConfig) {
    this.path = path;
    this.dirfd = dirfd;
    this.config = config;
    this.#objectsFd = openDirAt(dirfd, "objects");
  }

  /**
   * The fd of `objects/` (closed with the repository), for code that opens file objects
   * (`objectPath(checksum, "file")`) on another thread of this process.
   */
  get objectsDirfd(): number {
    return this.#objectsFd;
  }

  /**
   * Opens the repository at `path`: reads `config` and checks the mode.
   *
   * @throws {UnsupportedRepoModeError} for modes other than `bare` and `bare-user` (the
   *   message names the mode).
   * @throws {RepoConfigError} when `config` is missing or invalid.
   */
  static open(path: string): OstreeRepo {
    const dirfd = openDir(path);
    try {
      return OstreeRepo.#fromFd(path, dirfd);
    } catch (e) {
      closeQuietly(dirfd);
      throw e;
    }
  }

  /** Opens the repository at `name` below `parentFd` without following symlinks in `name`. */
  static openAt(parentFd: number, name: string, displayPath = name): OstreeRepo {
    const dirfd = openDirAt(parentFd, name);
    try {
      return OstreeRepo.#fromFd(displayPath, dirfd);
    } catch (e) {
      closeQuietly(dirfd);
      throw e;
    }
  }

  static #fromFd(path: string, dirfd: number): OstreeRepo {
    let text: string;
    try {
      text = decoder.decode(readFileAt(dirfd, "config"));
    } catch (e) {
      if (isErrno(e, "ENOENT")) {
        throw new RepoConfigError(path, "no config file: not an ostree repository");
      }
      throw e;
    }
    const config = parseRepoConfig(text, path);
    if (!SUPPORTED_MODES.includes(config.mode)) {
      throw new UnsupportedRepoModeError(
        path,
        config.keyfile.getString("core", "mode") ?? config.mode,
      );
    }
    return new OstreeRepo(path, dirfd, config);
  }

  /** The repository mode (`bare` or `bare-user`). */
  get mode(): RepoMode {
    return this.config.mode;
  }

  /** Closes the repository's fds. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#objectsFd);
    closeQuietly(this.dirfd);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // -------------------------------------------------------------------------------------------
  // Locking

  /**
   * Takes the repo lock as libostree does: an OFD lock on `.lock`, shared for writers,
   * exclusive for pruning. Waits up to `timeoutMs` (default: `core.lock-timeout-secs`; -1 in
   * config means wait forever). With `core.locking=false` no lock is taken.
   *
   * @throws {RepoLockedError} when the lock is still held by someone else at the timeout.
   */
  async lock(kind: RepoLockKind, timeoutMs?: number): Promise<RepoLock> {
    if (!this.config.locking) {
      return { kind, release() {}, [Symbol.dispose]() {} };
    }
    const lockPath = `${this.path}/.lock`;
    const fd = openAt(this.dirfd, ".lock", O.CREAT | O.RDWR | O.NOFOLLOW, LOCK_FILE_MODE);
    const ofdKind = kind === "shared" ? "read" : "write";
    const limit = timeoutMs ??
      (this.config.lockTimeoutSecs < 0 ? Infinity : this.config.lockTimeoutSecs * 1000);
    const start = Date.now();
    try {
      while (!ofdTryLock(fd, ofdKind, lockPath)) {
        if (Date.now() - start >= limit) throw new RepoLockedError(lockPath, kind, limit);
        await sleep(Math.min(100, Math.max(5, limit / 20)));
      }
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      try {
        ofdUnlock(fd, lockPath);
      } finally {
        closeQuietly(fd);
      }
    };
    return { kind, release, [Symbol.dispose]: release };
  }

  // -------------------------------------------------------------------------------------------
  // Config

  /**
   * Edits the repository `config` and replaces it atomically (as `ostree config set` does),
   * re-reading the file first so changes made by others since {@linkcode open} are kept.
   * Comments and unknown keys survive; the result must still parse as a supported repo config,
   * else nothing is written.
   *
   * @example
   * ```ts ignore
   * await repo.updateConfig((kf) => kf.setBoolean("composefs", "unified", true));
   * ```
   */
  async updateConfig(edit: (keyfile: KeyFile) => void): Promise<void> {
    using _lock = await this.lock("shared");
    const configPath = `${this.path}/config`;
    const keyfile = KeyFile.parse(decoder.decode(readFileAt(this.dirfd, "config")), configPath);
    edit(keyfile);
    const text = keyfile.toString();
    const parsed = parseRepoConfig(text, this.path);
    replaceFileAt(this.dirfd, "config", new TextEncoder().encode(text), { mode: 0o644 });
    this.config = parsed;
  }

  // -------------------------------------------------------------------------------------------
  // Objects

  /** True when `objects/` holds the object. */
  hasObject(checksum: string, type: ObjectType): boolean {
    return existsAt(this.#objectsFd, objectPath(checksum, type));
  }

  /**
   * The bytes of a metadata object (dirtree, dirmeta, commit), checked against its name.
   *
   * @throws {ObjectMissingError} when absent; {@linkcode ObjectCorruptError} when its sha256
   *   is not its name.
   */
  readMetadataObject(checksum: string, type: "dirtree" | "dirmeta" | "commit"): Uint8Array {
    const path = objectPath(checksum, type);
    let bytes: Uint8Array;
    try {
      bytes = readFileAt(this.#objectsFd, path);
    } catch (e) {
      if (isErrno(e, "ENOENT")) throw new ObjectMissingError(this.path, `${checksum}.${type}`);
      throw e;
    }
    const actual = metadataChecksum(bytes);
    if (actual !== checksum) {
      throw new ObjectCorruptError(
        this.path,
        `${checksum}.${type} (objects/${path})`,
        `its sha256 is ${actual}`,
      );
    }
    return bytes;
  }

  /** Reads and parses a commit object. */
  readCommit(checksum: string): Commit {
    return this.#parsed(checksum, "commit", parseCommit);
  }

  /** Reads and parses a dirtree object. */
  readDirTree(checksum: string): DirTree {
    return this.#parsed(checksum, "dirtree", parseDirTree);
  }

  /** Reads and parses a dirmeta object. */
  readDirMeta(checksum: string): DirMeta {
    return this.#parsed(checksum, "dirmeta", parseDirMeta);
  }

  #parsed<T>(
    checksum: string,
    type: "commit" | "dirtree" | "dirmeta",
    parse: (b: Uint8Array, w: string) => T,
  ): T {
    const bytes = this.readMetadataObject(checksum, type);
    try {
      return parse(bytes, `objects/${objectPath(checksum, type)}`);
    } catch (e) {
      if (e instanceof OstreeError && !(e instanceof ObjectCorruptError)) {
        throw new ObjectCorruptError(this.path, `${checksum}.${type}`, e.message);
      }
      throw e;
    }
  }

  /**
   * The stored metadata of a content object: for `bare` from the object inode itself (owner,
   * mode, every xattr), for `bare-user` from its `user.ostreemeta` xattr.
   *
   * @throws {ObjectMissingError} when absent.
   */
  readFileObject(checksum: string): FileObjectInfo {
    const path = objectPath(checksum, "file");
    let st;
    try {
      st = statAt(this.#objectsFd, path);
    } catch (e) {
      if (isErrno(e, "ENOENT")) throw new ObjectMissingError(this.path, `${checksum}.file`);
      throw e;
    }
    const where = `objects/${path}`;
    if (this.mode === "bare") {
      const type = st.mode & S.IFMT;
      const xattrs = this.config.disableXattrs
        ? []
        : sortedXattrs(lgetAllXattrsAt(this.#objectsFd, path));
      if (type === S.IFLNK) {
        return {
          uid: st.uid,
          gid: st.gid,
          mode: st.mode,
          xattrs,
          symlinkTarget: this.#utf8(readlinkAtBytes(this.#objectsFd, path), where),
          size: 0,
        };
      }
      if (type !== S.IFREG) {
        throw new ObjectCorruptError(
          this.path,
          where,
          `mode 0${st.mode.toString(8)} is not a file or symlink`,
        );
      }
      return { uid: st.uid, gid: st.gid, mode: st.mode, xattrs, size: st.size };
    }
    // bare-user: the inode belongs to the writer; the truth is in user.ostreemeta.
    const fd = openAt(this.#objectsFd, path, O.RDONLY | O.NOFOLLOW);
    try {
      const raw = fgetxattr(fd, BAREUSER_META_XATTR);
      if (raw === null) {
        throw new ObjectCorruptError(
          this.path,
          where,
          `no ${BAREUSER_META_XATTR} xattr (bare-user repo)`,
        );
      }
      let meta: DirMeta;
      try {
        meta = parseUidGidModeXattrs(raw, `${where} ${BAREUSER_META_XATTR}`);
      } catch (e) {
        if (e instanceof OstreeError) throw new ObjectCorruptError(this.path, where, e.message);
        throw e;
      }
      const xattrs = sortedXattrs(meta.xattrs);
      if ((meta.mode & S.IFMT) === S.IFLNK) {
        // Stored as a regular file holding the target and a NUL.
        const content = readFileAt(this.#objectsFd, path);
        const end = content.at(-1) === 0 ? content.length - 1 : content.length;
        return {
          uid: meta.uid,
          gid: meta.gid,
          mode: meta.mode,
          xattrs,
          symlinkTarget: this.#utf8(content.subarray(0, end), where),
          size: 0,
        };
      }
      return { uid: meta.uid, gid: meta.gid, mode: meta.mode, xattrs, size: fstat(fd).size };
    } finally {
      close(fd);
    }
  }

  #utf8(bytes: Uint8Array, where: string): string {
    try {
      return strictDecoder.decode(bytes);
    } catch {
      throw new ObjectCorruptError(this.path, where, "symlink target is not valid UTF-8");
    }
  }

  /**
   * Opens the content of a regular-file object read-only (the caller closes the fd). Its bytes
   * are the file's bytes in both bare and bare-user mode.
   */
  openFileObject(checksum: string): number {
    try {
      return openFileObjectAt(this.#objectsFd, checksum);
    } catch (e) {
      if (isErrno(e, "ENOENT")) throw new ObjectMissingError(this.path, `${checksum}.file`);
      throw e;
    }
  }

  /**
   * Recomputes a content object's checksum from what is stored, as `ostree fsck` does, and
   * returns it (equal to `checksum` when the object is intact).
   */
  computeFileObjectChecksum(checksum: string): string {
    const info = this.readFileObject(checksum);
    if (info.symlinkTarget !== undefined) return contentChecksum(info);
    const fd = this.openFileObject(checksum);
    try {
      const h = new ContentChecksum(info);
      feedFd(fd, h);
      return h.hex();
    } finally {
      close(fd);
    }
  }

  /** True when `state/<commit>.commitpartial` marks the commit as incomplete. */
  isCommitPartial(checksum: string): boolean {
    assertChecksum(checksum, "commit");
    return existsAt(this.dirfd, `state/${checksum}.commitpartial`);
  }

  // -------------------------------------------------------------------------------------------
  // Refs

  /**
   * The commit a refspec points to (`ref` in `refs/heads`, `remote:ref` in `refs/remotes`),
   * following ref aliases (symlinks inside `refs/heads`); null when it does not exist.
   */
  resolveRef(refspec: string): string | null {
    const { remote, ref } = parseRefspec(refspec);
    const base = remote === null ? "refs/heads" : `refs/remotes/${remote}`;
    let name = ref;
    for (let depth = 0; depth < 32; depth++) {
      let st;
      try {
        st = statAt(this.dirfd, `${base}/${name}`);
      } catch (e) {
        if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) return null;
        throw e;
      }
      if ((st.mode & S.IFMT) === S.IFLNK) {
        // An alias: a relative symlink to another ref in the same tree.
        const target = decoder.decode(readlinkAtBytes(this.dirfd, `${base}/${name}`));
        const dir = name.includes("/") ? name.slice(0, name.lastIndexOf("/")) : "";
        name = normalizeRefPath(dir, target, refspec);
        continue;
      }
      const text = decoder.decode(readFileAt(this.dirfd, `${base}/${name}`)).trim();
      if (!isChecksum(text)) {
        throw new RefError(
          `ref ${refspec} in ${this.path}: expected a checksum, found ${
            JSON.stringify(text.slice(0, 80))
          }`,
        );
      }
      return text;
    }
    throw new RefError(`ref ${refspec} in ${this.path}: too many levels of aliases`);
  }

  /**
   * A commit by checksum or refspec.
   *
   * @throws {RefError} when it names neither a present commit nor an existing ref.
   */
  resolveRev(rev: string): string {
    if (isChecksum(rev)) {
      if (!this.hasObject(rev, "commit")) throw new ObjectMissingError(this.path, `${rev}.commit`);
      return rev;
    }
    const c = this.resolveRef(rev);
    if (c === null) throw new RefError(`ref ${rev} not found in ${this.path}`);
    return c;
  }

  /**
   * Local refs (below `refs/heads`) whose name is `prefix` or starts with `prefix/`, or all of
   * them; map from full ref name to commit checksum, sorted by name.
   *
   * @example
   * ```ts ignore
   * repo.listRefs("ostree/container/image"); // like `ostree refs --list ostree/container/image`
   * ```
   */
  listRefs(prefix?: string): Map<string, string> {
    const out = new Map<string, string>();
    const names: string[] = [];
    const walk = (dirfd: number, rel: string) => {
      for (const ent of readDir(dirfd)) {
        const name = rel === "" ? ent.name : `${rel}/${ent.name}`;
        let type = ent.type;
        if (type === DT.UNKNOWN) {
          const m = statAt(dirfd, ent.nameBytes).mode & S.IFMT;
          type = m === S.IFDIR ? DT.DIR : m === S.IFLNK ? DT.LNK : DT.REG;
        }
        if (type === DT.DIR) {
          const fd = openDirAt(dirfd, ent.nameBytes);
          try {
            walk(fd, name);
          } finally {
            close(fd);
          }
        } else if (type === DT.REG || type === DT.LNK) {
          names.push(name);
        }
      }
    };
    let start: number;
    try {
      start = openDirAt(this.dirfd, prefix ? `refs/heads/${prefix}` : "refs/heads");
    } catch (e) {
      if (isErrno(e, "ENOENT")) {
        // `prefix` may itself be a ref (a file).
        if (prefix) {
          const c = this.#tryRef(prefix);
          if (c) out.set(prefix, c);
        }
        return out;
      }
      if (isErrno(e, "ENOTDIR") && prefix) {
        const c = this.#tryRef(prefix);
        if (c) out.set(prefix, c);
        return out;
      }
      throw e;
    }
    try {
      walk(start, prefix ?? "");
    } finally {
      close(start);
    }
    names.sort();
    for (const n of names) {
      const c = this.#tryRef(n);
      if (c) out.set(n, c);
    }
    return out;
  }

  #tryRef(name: string): string | null {
    try {
      return this.resolveRef(name);
    } catch (e) {
      if (e instanceof RefError) return null;
      throw e;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Trees

  /**
   * Walks a commit's tree depth-first in dirtree order, as `ostree ls -R` lists it: a directory,
   * then its files and symlinks by name, then its subdirectories by name; each node with its
   * checksum and stored metadata.
   *
   * @example
   * ```ts ignore
   * for (const it of repo.walkCommit(commit)) if (it.type === "file") console.log(it.path, it.size);
   * ```
   */
  *walkCommit(commitChecksum: string): Generator<CommitTreeItem> {
    const c = this.readCommit(commitChecksum);
    yield* this.walkTree(c.rootTree, c.rootMeta);
  }

  /** Walks the tree rooted at a dirtree/dirmeta pair (see {@linkcode walkCommit}). */
  *walkTree(rootTree: string, rootMeta: string, rootPath = "/"): Generator<CommitTreeItem> {
    const meta = this.readDirMeta(rootMeta);
    yield {
      path: rootPath,
      type: "dir",
      checksum: rootTree,
      metaChecksum: rootMeta,
      uid: meta.uid,
      gid: meta.gid,
      mode: meta.mode,
      xattrs: sortedXattrs(meta.xattrs),
    };
    const tree = this.readDirTree(rootTree);
    const prefix = rootPath === "/" ? "/" : rootPath + "/";
    for (const f of tree.files) {
      const info = this.readFileObject(f.checksum);
      yield {
        path: prefix + f.name,
        type: info.symlinkTarget !== undefined ? "symlink" : "file",
        checksum: f.checksum,
        uid: info.uid,
        gid: info.gid,
        mode: info.mode,
        xattrs: info.xattrs,
        symlinkTarget: info.symlinkTarget,
        size: info.symlinkTarget !== undefined ? undefined : info.size,
      };
    }
    for (const d of tree.dirs) yield* this.walkTree(d.tree, d.meta, prefix + d.name);
  }

  /**
   * A commit's tree as a {@linkcode TreeEntry} stream, so an ostree commit can be the source
   * of another store (or of another repository): each file opens its content object, and
   * carries its checksum as a trusted `contentChecksum`. ostree records no hardlinks, so none
   * are produced.
   */
  *treeEntries(commitChecksum: string): Generator<TreeEntry> {
    for (const it of this.walkCommit(commitChecksum)) {
      const base = {
        path: it.path,
        uid: it.uid,
        gid: it.gid,
        mode: it.mode & 0o7777,
        xattrs: it.xattrs,
      };
      if (it.type === "dir") yield { ...base, type: "dir" };
      else if (it.type === "symlink") {
        yield { ...base, type: "symlink", symlinkTarget: it.symlinkTarget };
      } else {
        const checksum = it.checksum;
        yield {
          ...base,
          type: "file",
          size: it.size,
          contentChecksum: checksum,
          openContent: () => this.openFileObject(checksum),
        };
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Writing

  /**
   * Starts a transaction: takes the shared repo lock and makes a staging dir. Everything
   * written through it becomes visible in `objects/` and `refs/` only at
   * {@linkcode RepoTransaction.commit}.
   */
  async beginTransaction(opts: { lockTimeoutMs?: number } = {}): Promise<RepoTransaction> {
    const lock = await this.lock("shared", opts.lockTimeoutMs);
    try {
      return new RepoTransaction(this, lock, this.#objectsFd);
    } catch (e) {
      lock.release();
      throw e;
    }
  }
}

function sortedXattrs(xattrs: readonly Xattr[]): Xattr[] {
  return canonicalXattrs(xattrs).map(([n, v]) => [decoder.decode(n.subarray(0, -1)), v] as const);
}

function normalizeRefPath(dir: string, target: string, refspec: string): string {
  const parts = target.startsWith("/") ? [] : dir.split("/").filter((p) => p !== "");
  for (const p of target.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") {
      if (parts.length === 0) {
        throw new RefError(`ref alias ${refspec} points outside refs: ${target}`);
      }
      parts.pop();
    } else parts.push(p);
  }
  return parts.join("/");
}
