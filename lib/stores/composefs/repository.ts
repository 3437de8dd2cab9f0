/**
 * A composefs-rs repository (`/sysroot/composefs` on bootc hosts): opening or creating it,
 * `meta.json` and secure/insecure mode, the shared flock, content-addressed objects, and the
 * `streams/` and `images/` symlinks.
 *
 * Spec: specs/composefs-repo.md §1 (layout, symlink rules, locking), §2 (writing objects,
 * secure vs insecure mode, sync), §4 (`meta.json`), §12 (checklist for a compatible writer).
 *
 * Rules this module keeps:
 * - the repository directory is opened `O_RDONLY` and holds `flock(LOCK_SH)` for the life of the
 *   handle, so composefs-rs GC (which takes `LOCK_EX`) cannot delete objects we are adding;
 * - objects are staged as `O_TMPFILE` (or a named file that is renamed, never left) in
 *   `objects/` itself, never inside `objects/XX/` where GC and fsck parse every name;
 * - an object's name is the fs-verity digest of the bytes placed: measured by the kernel where
 *   verity is enabled (secure mode), computed in userspace in the same pass otherwise;
 * - `syncfs` runs before a `streams/<id>` symlink is created, so a named stream never exists
 *   without everything it references being on disk.
 *
 * @module
 */

import { isErrno, type SysError } from "../../../ffi/errno.ts";
import {
  AT,
  close,
  closeQuietly,
  DT,
  ensureDirAt,
  existsAt,
  fstat,
  fsync,
  linkTmpfile,
  mkdirAt,
  O,
  openAt,
  openDir,
  openDirAt,
  pread,
  readDir,
  readlinkAt,
  renameAt,
  S,
  statAt,
  symlinkAt,
  syncfs,
  syncfsInBackground,
  unlinkAt,
  writeAll,
} from "../../../ffi/fs.ts";
import { flockRelease, flockWait } from "../../../ffi/lock.ts";
import { concatBytes } from "../../oci/compression.ts";
import { faultPoint } from "../../fault/fault_point.ts";
import { enableVerity, measureVerity } from "../../../ffi/verity.ts";
import { FsVerityHasher } from "../../digest/fsverity.ts";
import type { HashAlgorithm } from "../../digest/hash.ts";
import { toHex } from "../../digest/hash.ts";
import {
  cloneToTmpfile,
  type CopyPolicy,
  type PlaceMethod,
  type TmpClone,
} from "../../reflink/place.ts";
import {
  ComposefsError,
  ComposefsNotFoundError,
  ObjectDigestError,
  RepoMetadataError,
  RepoNotFoundError,
  RepoReadOnlyError,
  VerityUnsupportedError,
} from "./errors.ts";
import {
  checkRepoMetadata,
  newRepoMetadata,
  parseRepoMetadata,
  REPO_METADATA_FILENAME,
  type RepoMetadata,
  serializeRepoMetadata,
} from "./meta.ts";
import {
  algorithmOfObjectName,
  isObjectId,
  type ObjectId,
  objectIdFromTarget,
  objectPathname,
} from "./object_id.ts";
import { DIR_MODE, linkObjectAt, type ObjectOutcome, releaseStaged } from "./object_link.ts";

/** How an object got into the repository (lib/stores/composefs/object_link.ts). */
export type { ObjectOutcome };

/** Mode of a new repository directory (bootc `COMPOSEFS_MODE`, composefs-rs `init_path`). */
export const REPO_DIR_MODE = 0o700;
/** Mode of objects (composefs-rs streaming path: 0644 & ~umask). */
const OBJECT_MODE = 0o644;
/** Read size when hashing or copying objects. */
const IO_CHUNK = 1 << 20;
/**
 * The read buffer of {@linkcode ComposefsRepo.computeDigest}, reused: a fresh 1 MiB per object
 * was most of what a deep fsck allocated, and only a full GC frees such buffers.
 */
let digestReadBuffer: Uint8Array<ArrayBuffer> | null = null;

/** How fs-verity is used by a repository. */
export type VerityMode = "secure" | "insecure";

/** Options of {@linkcode ComposefsRepo.create}. */
export interface CreateRepoOptions {
  /** Object id algorithm; default sha512 (what bootc uses). */
  algorithm?: HashAlgorithm;
  /**
   * `auto` (default): enable fs-verity on `meta.json` (secure mode) where the filesystem
   * supports it, else create an insecure repository. `secure`: fail without fs-verity.
   * `insecure`: never enable verity (cfsctl `init --insecure`).
   */
  verity?: "auto" | VerityMode;
  /** EROFS format recorded in `meta.json` (default 1, as `cfsctl init` at v0.9). */
  erofsFormat?: 1 | 2;
}

/** Options of {@linkcode ComposefsRepo.open}. */
export interface OpenRepoOptions {
  /** Refuse every write (objects, streams, refs). */
  readOnly?: boolean;
  /**
   * A legacy repository (objects but no `meta.json`) is opened with the algorithm inferred from
   * its object names. With `upgrade`, a `meta.json` is written for it (composefs-rs
   * `open_upgrade`); without, nothing is written.
   */
  upgrade?: boolean;
  /** Algorithm to assume for a legacy repository that has no objects to infer it from. */
  legacyAlgorithm?: HashAlgorithm;
}

/** Result of placing an object from another file. */
export interface PlacedObject {
  id: ObjectId;
  size: number;
  /** How the bytes were placed (reflink, copy_file_range, read/write). */
  method: PlaceMethod;
  outcome: ObjectOutcome;
}

function isVerityUnsupported(e: unknown): boolean {
  return isErrno(e, "ENOTTY") || isErrno(e, "EOPNOTSUPP") || isErrno(e, "EINVAL");
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** `<prefix><12 random [A-Za-z0-9]>`, as composefs-rs `generate_tmpname` spells temp names. */
function tmpName(prefix: string): string {
  const r = crypto.getRandomValues(new Uint8Array(12));
  return prefix + Array.from(r, (b) => ALNUM[b % ALNUM.length]).join("");
}

/**
 * Validates a single path component chosen by unistore or a caller (a content identifier, a
 * tag once encoded): no `/`, no NUL, not `.`/`..`/empty.
 */
function checkComponent(name: string, what: string): void {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw new ComposefsError(what, `invalid name component ${JSON.stringify(name)}`);
  }
}

/**
 * The userspace fs-verity digest of a staged file's bytes: an {@linkcode FsVerityHasher} fed
 * while they were placed, or a digest computed elsewhere (another thread). Only asked for in
 * insecure repositories; secure ones name objects by what the kernel measures.
 */
export interface StagedDigest {
  digest(): Uint8Array;
}

/**
 * An open composefs repository.
 *
 * @example
 * ```ts ignore
 * using repo = await ComposefsRepo.create("/sysroot/composefs", { algorithm: "sha512" });
 * const id = repo.ensureObject(new TextEncoder().encode("hello world"));
 * // id === "1843…0409" (the sha512 fs-verity digest), stored at objects/18/43…0409
 * ```
 */
export class ComposefsRepo implements Disposable {
  #dirfd: number;
  #objectsFd = -1;
  /** `objects/XX` directories known to exist (this process made or found them). */
  readonly #prefixDirs = new Set<string>();
  #closed = false;

  private constructor(
    /** The repository directory as given. */
    readonly path: string,
    dirfd: number,
    /** Object id algorithm. */
    readonly algorithm: HashAlgorithm,
    /** `secure`: `meta.json` has fs-verity, so every object must have it too. */
    readonly verity: VerityMode,
    /** Parsed `meta.json`, or `null` for a legacy repository opened without upgrade. */
    readonly metadata: RepoMetadata | null,
    /** `read-only`: opened read-only, or unknown read-only-compatible features. */
    readonly access: "read-write" | "read-only",
  ) {
    this.#dirfd = dirfd;
  }

  /** The repository directory fd (holds the shared flock). */
  get dirfd(): number {
    this.#checkOpen();
    return this.#dirfd;
  }

  /** True for a repository without `meta.json` (composefs-rs before v0.7.0). */
  get legacy(): boolean {
    return this.metadata === null;
  }

  /** Hex digits of an object id in this repository (64 or 128). */
  get idLength(): number {
    return this.algorithm === "sha256" ? 64 : 128;
  }

  /**
   * Creates a repository (directory mode 0700, `meta.json`) or opens the existing one when its
   * `meta.json` already names the same algorithm.
   */
  static async create(path: string, opts: CreateRepoOptions = {}): Promise<ComposefsRepo> {
    const algorithm = opts.algorithm ?? "sha512";
    try {
      mkdirAt(AT.FDCWD, path, REPO_DIR_MODE);
    } catch (e) {
      if (!isErrno(e, "EEXIST")) throw e;
    }
    const dirfd = openDir(path);
    try {
      await flockWait(dirfd, "read", path);
      if (!existsAt(dirfd, REPO_METADATA_FILENAME)) {
        if (existsAt(dirfd, "objects")) {
          throw new RepoMetadataError(
            `${path}/${REPO_METADATA_FILENAME}`,
            "missing, but objects/ exists: this is a legacy repository; open it with upgrade",
          );
        }
        const meta = newRepoMetadata(algorithm, opts.erofsFormat ?? 1);
        try {
          writeMetadataFile(dirfd, path, meta, algorithm, opts.verity ?? "auto");
        } catch (e) {
          // Another process created the repository meanwhile: open() below checks its meta.json.
          if (!isErrno(e, "EEXIST")) throw e;
        }
      }
    } catch (e) {
      closeQuietly(dirfd);
      throw e;
    }
    closeQuietly(dirfd);
    const repo = await ComposefsRepo.open(path);
    if (repo.algorithm !== algorithm) {
      repo.close();
      throw new RepoMetadataError(
        `${path}/${REPO_METADATA_FILENAME}`,
        `repository exists with algorithm ${repo.algorithm}, cannot create it as ${algorithm}`,
      );
    }
    return repo;
  }

  /**
   * Opens an existing repository: reads and checks `meta.json`, detects secure mode (fs-verity
   * on `meta.json`, as composefs-rs does), takes the shared flock (waiting while a GC holds the
   * exclusive one).
   */
  static async open(path: string, opts: OpenRepoOptions = {}): Promise<ComposefsRepo> {
    let dirfd: number;
    try {
      dirfd = openDir(path);
    } catch (e) {
      if (isErrno(e, "ENOENT")) throw new RepoNotFoundError(path, "no composefs repository here");
      throw e;
    }
    try {
      await flockWait(dirfd, "read", path);
      const metaPath = `${path}/${REPO_METADATA_FILENAME}`;
      let metaFd: number;
      try {
        metaFd = openAt(dirfd, REPO_METADATA_FILENAME, O.RDONLY | O.NOFOLLOW);
      } catch (e) {
        if (!isErrno(e, "ENOENT")) throw e;
        return ComposefsRepo.#openLegacy(path, dirfd, opts);
      }
      let meta: RepoMetadata;
      let verity: VerityMode;
      try {
        meta = parseRepoMetadata(readAllFd(metaFd), metaPath);
        verity = measureOrNull(metaFd, metaPath) !== null ? "secure" : "insecure";
      } finally {
        close(metaFd);
      }
      const check = checkRepoMetadata(meta, metaPath);
      const access = opts.readOnly ? "read-only" : check.access;
      return new ComposefsRepo(path, dirfd, check.algorithm, verity, meta, access);
    } catch (e) {
      closeQuietly(dirfd);
      throw e;
    }
  }

  /**
   * Opens the repository, creating it when the directory (or its `meta.json` and `objects/`)
   * does not exist yet, upgrading a legacy one when `upgrade` is set (composefs-rs
   * `ensure_path`).
   */
  static async ensure(
    path: string,
    opts: CreateRepoOptions & OpenRepoOptions = {},
  ): Promise<ComposefsRepo> {
    let fresh: boolean;
    try {
      const fd = openDir(path);
      try {
        fresh = !existsAt(fd, REPO_METADATA_FILENAME) && !existsAt(fd, "objects");
      } finally {
        close(fd);
      }
    } catch (e) {
      if (!isErrno(e, "ENOENT")) throw e;
      fresh = true;
    }
    return fresh ? await ComposefsRepo.create(path, opts) : await ComposefsRepo.open(path, opts);
  }

  static #openLegacy(path: string, dirfd: number, opts: OpenRepoOptions): ComposefsRepo {
    if (!existsAt(dirfd, "objects")) {
      throw new RepoNotFoundError(
        path,
        `no composefs repository here (neither ${REPO_METADATA_FILENAME} nor objects/)`,
      );
    }
    const inferred = inferLegacy(dirfd, path);
    const algorithm = inferred?.algorithm ?? opts.legacyAlgorithm;
    if (!algorithm) {
      throw new RepoMetadataError(
        `${path}/${REPO_METADATA_FILENAME}`,
        "missing, and objects/ holds no object to infer the algorithm from",
      );
    }
    const verity: VerityMode = inferred?.verity ?? "insecure";
    if (opts.upgrade && !opts.readOnly) {
      // Legacy repositories hold V2 EROFS images (the format before composefs-rs 080f925).
      const meta = newRepoMetadata(algorithm, 2);
      writeMetadataFile(dirfd, path, meta, algorithm, verity);
      return new ComposefsRepo(path, dirfd, algorithm, verity, meta, "read-write");
    }
    return new ComposefsRepo(
      path,
      dirfd,
      algorithm,
      verity,
      null,
      opts.readOnly ? "read-only" : "read-write",
    );
  }

  /** Releases the lock and closes the repository. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#objectsFd);
    try {
      flockRelease(this.#dirfd, this.path);
    } finally {
      closeQuietly(this.#dirfd);
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new ComposefsError(this.path, "repository handle is closed");
  }

  #checkWritable(): void {
    this.#checkOpen();
    if (this.access === "read-only") {
      throw new RepoReadOnlyError(
        this.path,
        this.metadata && checkRepoMetadata(this.metadata, this.path).unknownFeatures.length > 0
          ? "repository has unknown read-only-compatible features; refusing to write"
          : "repository was opened read-only",
      );
    }
  }

  /** fd of `objects/` (created on first write). */
  objectsDirfd(create = false): number {
    this.#checkOpen();
    if (this.#objectsFd >= 0) return this.#objectsFd;
    if (create) {
      this.#checkWritable();
      ensureDirAt(this.#dirfd, "objects", DIR_MODE);
    }
    try {
      this.#objectsFd = openDirAt(this.#dirfd, "objects");
    } catch (e) {
      if (isErrno(e, "ENOENT")) {
        throw new ComposefsNotFoundError(`${this.path}/objects`, "objects/ directory is missing");
      }
      throw e;
    }
    return this.#objectsFd;
  }

  /**
   * A directory fd on the repository's filesystem for a reflink probe: `objects/` where it
   * exists, else the repository's own directory (a probe must not create `objects/`).
   */
  probeDirfd(): number {
    try {
      return this.objectsDirfd();
    } catch (e) {
      if (!(e instanceof ComposefsNotFoundError)) throw e;
      return this.dirfd;
    }
  }

  /** Validates an object id for this repository's algorithm. */
  checkObjectId(id: string, what = "object id"): ObjectId {
    if (!isObjectId(id, this.algorithm)) {
      throw new ComposefsError(
        what,
        `expected a ${this.algorithm} object id (${this.idLength} lowercase hex digits), found ${
          JSON.stringify(id)
        }`,
      );
    }
    return id;
  }

  /** `objects/XX/YYYY…` of an id, relative to the repository. */
  objectPath(id: ObjectId): string {
    return `objects/${objectPathname(id)}`;
  }

  /** True when the object exists. */
  hasObject(id: ObjectId): boolean {
    try {
      return existsAt(this.objectsDirfd(), objectPathname(id));
    } catch (e) {
      if (e instanceof ComposefsNotFoundError) return false;
      throw e;
    }
  }

  /**
   * Opens an object read-only. In secure mode its measured fs-verity digest must equal its id
   * ({@linkcode ObjectDigestError} otherwise); insecure repositories are not checked here
   * (fsck's deep mode re-hashes).
   */
  openObject(id: ObjectId): number {
    const where = `${this.path}/${this.objectPath(id)}`;
    let fd: number;
    try {
      fd = openAt(this.objectsDirfd(), objectPathname(id), O.RDONLY | O.NOFOLLOW);
    } catch (e) {
      if (isErrno(e, "ENOENT")) throw new ComposefsNotFoundError(where, "object is missing");
      throw e;
    }
    if (this.verity === "secure") {
      const measured = measureOrNull(fd, where);
      if (measured === null || toHex(measured) !== id) {
        closeQuietly(fd);
        throw new ObjectDigestError(where, id, measured ? toHex(measured) : "no fs-verity");
      }
    }
    return fd;
  }

  /** A whole (small) object, e.g. a manifest or config JSON. */
  readObject(id: ObjectId, maxSize = 64 << 20): Uint8Array {
    const fd = this.openObject(id);
    try {
      const size = fstat(fd).size;
      if (size > maxSize) {
        throw new ComposefsError(this.objectPath(id), `object of ${size} bytes exceeds ${maxSize}`);
      }
      return readAllFd(fd);
    } finally {
      close(fd);
    }
  }

  /** The fs-verity digest of an open file's content, computed in userspace (one full read). */
  computeDigest(fd: number): ObjectId {
    const hasher = new FsVerityHasher(this.algorithm);
    const buf = digestReadBuffer ??= new Uint8Array(IO_CHUNK);
    for (let off = 0;;) {
      const n = pread(fd, buf, off);
      if (n === 0) break;
      hasher.update(buf.subarray(0, n));
      off += n;
    }
    return toHex(hasher.digest());
  }

  /**
   * Stores in-memory bytes as an object (composefs-rs path 1: splitstreams, JSON) and returns
   * its id. An object that already exists is left alone.
   */
  ensureObject(bytes: Uint8Array): ObjectId {
    const w = this.createObjectWriter();
    try {
      w.write(bytes);
      return w.finish().id;
    } catch (e) {
      w.abort();
      throw e;
    }
  }

  /**
   * A streaming object writer (composefs-rs path 2: tar members): `write` the bytes in order,
   * then `finish` names the object by its digest and links it in.
   */
  createObjectWriter(): ObjectWriter {
    this.#checkWritable();
    const objects = this.objectsDirfd(true);
    const tmp = openStagingFile(objects, OBJECT_MODE);
    return new ObjectWriter(this, tmp);
  }

  /**
   * Places all of `srcFd` as an object by reflink (or copy, when `policy` allows), named by the
   * digest of the bytes actually placed (composefs-rs path 3, without the hardlink variant: the
   * source inode is never modified). Objects placed on XFS or btrfs share the source's extents.
   */
  ensureObjectFromFd(
    srcFd: number,
    opts: { policy: CopyPolicy; what?: string },
  ): PlacedObject {
    this.#checkWritable();
    const objects = this.objectsDirfd(true);
    const hasher = this.verity === "insecure" ? new FsVerityHasher(this.algorithm) : undefined;
    const tmp = cloneToTmpfile(srcFd, objects, {
      policy: opts.policy,
      sink: hasher,
      mode: OBJECT_MODE,
      what: opts.what,
    });
    // From here on the staged file is owned by #nameClone and linkStaged, which release it
    // on every path (success, already present, or error).
    const { clone, id } = this.#nameClone(tmp, hasher);
    const outcome = this.linkStaged(clone, id);
    return { id, size: tmp.size, method: tmp.method, outcome };
  }

  /**
   * Digest of a staged file: measured by the kernel after enabling verity (secure mode), or the
   * userspace hash fed while the bytes were placed. Returns the clone to link (a read-only fd in
   * secure mode: verity needs every writable fd closed).
   */
  #nameClone(tmp: TmpClone, hasher?: StagedDigest): { clone: TmpClone; id: ObjectId } {
    if (hasher) return { clone: tmp, id: toHex(hasher.digest()) };
    const where = `${this.path}/objects (new object)`;
    let ro = -1;
    try {
      ro = openAt(AT.FDCWD, `/proc/self/fd/${tmp.fd}`, O.RDONLY);
      closeQuietly(tmp.fd);
      tmp.fd = ro; // the read-only fd now stands for the staged file
      for (let attempt = 0;; attempt++) {
        try {
          enableVerity(ro, this.algorithm, where);
          break;
        } catch (e) {
          if (isErrno(e, "EEXIST")) break;
          if (isErrno(e, "ETXTBSY") && attempt < 3) {
            // A forked child may briefly hold a writable fd (composefs-rs retries the same way).
            sleepSync(1);
            continue;
          }
          if (isVerityUnsupported(e)) {
            throw new VerityUnsupportedError(
              this.path,
              "repository is in secure mode (fs-verity on meta.json) but fs-verity cannot be enabled here",
            );
          }
          throw e;
        }
      }
      const measured = measureVerity(ro, where);
      if (measured === null) {
        throw new VerityUnsupportedError(where, "fs-verity enabled but not measurable");
      }
      return { clone: tmp, id: toHex(measured) };
    } catch (e) {
      releaseStaged(tmp);
      throw e;
    }
  }

  /**
   * @internal Names a staged file `objects/XX/…` unless an object of that id exists
   * ({@linkcode linkObjectAt}). Always releases the staged file (fd closed, temporary name removed).
   */
  linkStaged(tmp: TmpClone, id: ObjectId): ObjectOutcome {
    const outcome = linkObjectAt(this.objectsDirfd(true), tmp, id, this.#prefixDirs);
    faultPoint("composefs.object-linked");
    return outcome;
  }

  /**
   * @internal Counts an object another thread of this process linked with
   * {@linkcode linkObjectAt} (the import's digest worker), at the point this thread learns of
   * it: it passes the fault point {@linkcode linkStaged} passes, so a crash test counts one
   * point per object linked, whichever thread linked it.
   */
  linkedElsewhere(): void {
    faultPoint("composefs.object-linked");
  }

  /** @internal Finishes a writer's staged file: name it (verity or userspace digest), link it. */
  finishStaged(tmp: TmpClone, hasher: StagedDigest): { id: ObjectId; outcome: ObjectOutcome } {
    const { clone, id } = this.#nameClone(tmp, this.verity === "insecure" ? hasher : undefined);
    return { id, outcome: this.linkStaged(clone, id) };
  }

  /** A scratch file in `objects/` that vanishes when closed (O_TMPFILE, else created+unlinked). */
  scratchFile(): number {
    this.#checkWritable();
    const objects = this.objectsDirfd(true);
    try {
      return openAt(objects, ".", O.TMPFILE | O.RDWR, 0o600);
    } catch (e) {
      if (!isErrno(e, "EOPNOTSUPP") && !isErrno(e, "EISDIR")) throw e;
    }
    const name = tmpName(".tmp-scratch-");
    const fd = openAt(objects, name, O.CREAT | O.EXCL | O.RDWR | O.NOFOLLOW, 0o600);
    unlinkAt(objects, name);
    return fd;
  }

  /** syncfs on the repository's filesystem. */
  sync(): void {
    this.#checkOpen();
    syncfs(this.#dirfd, this.path);
  }

  // ---- streams, images and refs -------------------------------------------------------------

  /**
   * The object id a `streams/<contentId>` symlink names, or `null` when there is no such stream
   * (composefs-rs `has_stream`; the target must start with `../`).
   */
  streamObjectId(contentId: string): ObjectId | null {
    checkComponent(contentId, `${this.path}/streams`);
    return this.#categoryObjectId("streams", contentId);
  }

  /** Like {@linkcode streamObjectId} for `images/<name>`. */
  imageObjectId(name: string): ObjectId | null {
    checkComponent(name, `${this.path}/images`);
    return this.#categoryObjectId("images", name);
  }

  #categoryObjectId(category: string, name: string): ObjectId | null {
    let target: string;
    try {
      target = readlinkAt(this.dirfd, `${category}/${name}`);
    } catch (e) {
      if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) return null;
      if (isErrno(e, "EINVAL")) {
        throw new ComposefsError(
          `${this.path}/${category}/${name}`,
          "expected a symlink, found another file type",
        );
      }
      throw e;
    }
    const id = target.startsWith("../") ? objectIdFromTarget(target, this.algorithm) : null;
    if (id === null) {
      throw new ComposefsError(
        `${this.path}/${category}/${name}`,
        `expected a symlink to ../objects/XX/<${this.idLength - 2} hex>, found ${
          JSON.stringify(target)
        }`,
      );
    }
    return id;
  }

  /**
   * Makes a stored splitstream object visible as `streams/<contentId>`: first `syncfs` (the
   * stream and everything it references reach the disk), then the symlink. With `refName`, also
   * `streams/refs/<refName>` (composefs-rs `register_stream`).
   */
  registerStream(contentId: string, id: ObjectId, refName?: string): void {
    this.#checkStreamObject(contentId, id);
    this.sync();
    this.#linkStream(contentId, id, refName);
  }

  /**
   * {@linkcode registerStream} with its `syncfs` on a pool thread: the caller goes on writing
   * (the next layer, say) while the disk catches up, and the stream is linked once what was
   * written before this call is on disk. The repository must stay open until the promise
   * settles; a rejection means the stream was not registered.
   *
   * @example
   * ```ts ignore
   * const registered = repo.registerStreamInBackground(layerStreamName(diffId), id);
   * registered.catch(() => {}); // awaited later; meanwhile no unhandled rejection
   * await splitNextLayer();
   * await registered;
   * ```
   */
  async registerStreamInBackground(
    contentId: string,
    id: ObjectId,
    refName?: string,
  ): Promise<void> {
    this.#checkStreamObject(contentId, id);
    await syncfsInBackground(this.#dirfd, this.path);
    this.#checkOpen();
    this.#linkStream(contentId, id, refName);
  }

  #checkStreamObject(contentId: string, id: ObjectId): void {
    this.#checkWritable();
    checkComponent(contentId, `${this.path}/streams`);
    this.checkObjectId(id, `${this.path}/streams/${contentId}`);
    if (!this.hasObject(id)) {
      throw new ComposefsNotFoundError(
        `${this.path}/${this.objectPath(id)}`,
        `cannot register stream ${contentId}: object is missing`,
      );
    }
  }

  /** The symlink(s) of a stream whose objects are on disk. */
  #linkStream(contentId: string, id: ObjectId, refName: string | undefined): void {
    faultPoint("composefs.stream-synced");
    this.symlink(`streams/${contentId}`, this.objectPath(id));
    faultPoint("composefs.stream-registered");
    if (refName !== undefined) this.nameStream(contentId, refName);
  }

  /** Points `streams/refs/<refName>` at `streams/<contentId>` (a GC root). */
  nameStream(contentId: string, refName: string): void {
    this.#checkWritable();
    checkComponent(contentId, `${this.path}/streams`);
    for (const part of refName.split("/")) {
      checkComponent(part, `${this.path}/streams/refs/${refName}`);
    }
    this.symlink(`streams/refs/${refName}`, `streams/${contentId}`);
    faultPoint("composefs.ref-written");
  }

  /** Removes `streams/refs/<refName>`; true when it existed. */
  removeStreamRef(refName: string): boolean {
    this.#checkWritable();
    for (const part of refName.split("/")) {
      checkComponent(part, `${this.path}/streams/refs/${refName}`);
    }
    try {
      unlinkAt(this.dirfd, `streams/refs/${refName}`);
      return true;
    } catch (e) {
      if (isErrno(e, "ENOENT")) return false;
      throw e;
    }
  }

  /**
   * Creates the symlink `name` → `target` (both repository-relative) as a relative link
   * computed the composefs-rs way (§1.2: strip the common leading components, one `..` per
   * remaining parent), creating parent directories (0755). An existing link with the same
   * target is kept; another one is replaced atomically through a `.symlink-XXXXXXXXXXXX`
   * temporary in the repository root.
   */
  symlink(name: string, target: string): void {
    this.#checkWritable();
    const nameParts = name.split("/");
    const leaf = nameParts.pop()!;
    const targetParts = target.split("/");
    let common = 0;
    while (
      common < nameParts.length && common < targetParts.length - 1 &&
      nameParts[common] === targetParts[common]
    ) common++;
    const relative = [
      ...nameParts.slice(common).map(() => ".."),
      ...targetParts.slice(common),
    ].join("/");
    // Walk (and create) the parent directories through fds, never following symlinks.
    let dirfd = this.dirfd;
    const opened: number[] = [];
    try {
      for (const part of nameParts) {
        checkComponent(part, `${this.path}/${name}`);
        ensureDirAt(dirfd, part, DIR_MODE);
        dirfd = openDirAt(dirfd, part);
        opened.push(dirfd);
      }
      replaceSymlink(dirfd, leaf, relative, this.dirfd, `${this.path}/${name}`);
    } finally {
      for (const fd of opened) closeQuietly(fd);
    }
  }

  /**
   * Every ref symlink below `<category>/refs/<prefix>` as `[name relative to refs/, target]`,
   * recursing into directories (composefs-rs `list_stream_refs`).
   */
  listRefs(category: "streams" | "images", prefix = ""): [string, string][] {
    const out: [string, string][] = [];
    const base = prefix ? `${category}/refs/${prefix}` : `${category}/refs`;
    let fd: number;
    try {
      fd = openAt(this.dirfd, base, O.RDONLY | O.DIRECTORY);
    } catch (e) {
      if (isErrno(e, "ENOENT")) return out;
      throw e;
    }
    const walk = (dirfd: number, rel: string) => {
      for (const ent of readDir(dirfd)) {
        const name = rel ? `${rel}/${ent.name}` : ent.name;
        let type = ent.type;
        if (type === DT.UNKNOWN) {
          const m = statAt(dirfd, ent.nameBytes).mode & S.IFMT;
          type = m === S.IFDIR ? DT.DIR : m === S.IFLNK ? DT.LNK : DT.REG;
        }
        if (type === DT.DIR) {
          const sub = openDirAt(dirfd, ent.nameBytes);
          try {
            walk(sub, name);
          } finally {
            close(sub);
          }
        } else if (type === DT.LNK) {
          out.push([prefix ? `${prefix}/${name}` : name, readlinkAt(dirfd, ent.nameBytes)]);
        }
      }
    };
    try {
      walk(fd, "");
    } finally {
      close(fd);
    }
    return out;
  }

  /** Names of the first-level entries of `streams/` (or `images/`), without `refs`. */
  listCategory(category: "streams" | "images"): string[] {
    let fd: number;
    try {
      fd = openDirAt(this.dirfd, category);
    } catch (e) {
      if (isErrno(e, "ENOENT")) return [];
      throw e;
    }
    try {
      return readDir(fd).map((e) => e.name).filter((n) => n !== "refs");
    } finally {
      close(fd);
    }
  }
}

/**
 * Streams bytes into a new object. Made by {@linkcode ComposefsRepo.createObjectWriter}.
 * Insecure repositories hash while writing (one pass); secure ones let the kernel measure.
 */
export class ObjectWriter {
  readonly #hasher: FsVerityHasher;
  #size = 0;
  #done = false;

  constructor(readonly repo: ComposefsRepo, readonly tmp: TmpClone) {
    this.#hasher = new FsVerityHasher(repo.algorithm);
  }

  /** Bytes written so far. */
  get size(): number {
    return this.#size;
  }

  /** Appends bytes. */
  write(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    writeAll(
      this.tmp.fd,
      chunk as Uint8Array<ArrayBuffer>,
      `${this.repo.path}/objects (new object)`,
    );
    this.#hasher.update(chunk);
    this.#size += chunk.length;
  }

  /** Names and links the object; returns its id and whether it was new. */
  finish(): { id: ObjectId; outcome: ObjectOutcome; size: number } {
    this.#done = true;
    const r = this.repo.finishStaged(this.tmp, this.#hasher);
    return { ...r, size: this.#size };
  }

  /** Drops the staged file (after an error). */
  abort(): void {
    if (this.#done) return;
    this.#done = true;
    releaseStaged(this.tmp);
  }
}

/** O_TMPFILE in `dirfd`, or a `.tmp-object-XXXXXXXXXXXX` file renamed into place later. */
function openStagingFile(dirfd: number, mode: number): TmpClone {
  try {
    return {
      fd: openAt(dirfd, ".", O.TMPFILE | O.RDWR, mode),
      method: "readwrite",
      size: 0,
      dirfd,
    };
  } catch (e) {
    if (!isErrno(e, "EOPNOTSUPP") && !isErrno(e, "EISDIR")) throw e;
  }
  for (let attempt = 0;; attempt++) {
    const name = tmpName(".tmp-object-");
    try {
      const fd = openAt(dirfd, name, O.CREAT | O.EXCL | O.RDWR | O.NOFOLLOW, mode);
      return { fd, method: "readwrite", size: 0, dirfd, tmpName: name };
    } catch (e) {
      if (!isErrno(e, "EEXIST") || attempt >= 16) throw e;
    }
  }
}

/** Reads a whole open file from offset 0. */
function readAllFd(fd: number): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const buf = new Uint8Array(65536);
    const n = pread(fd, buf, total);
    if (n === 0) break;
    parts.push(buf.subarray(0, n));
    total += n;
  }
  return concatBytes(parts);
}

/** The kernel's fs-verity measurement, or `null` when verity is off or unsupported. */
export function measureOrNull(fd: number, what: string): Uint8Array | null {
  try {
    return measureVerity(fd, what);
  } catch (e) {
    if (isVerityUnsupported(e)) return null;
    throw e;
  }
}

/**
 * Writes `meta.json` the composefs-rs way: O_TMPFILE, fsync, (fs-verity in secure mode), then
 * linkat without replacing; falls back to O_EXCL where O_TMPFILE is unsupported.
 */
function writeMetadataFile(
  dirfd: number,
  path: string,
  meta: RepoMetadata,
  algorithm: HashAlgorithm,
  verity: "auto" | VerityMode,
): void {
  const where = `${path}/${REPO_METADATA_FILENAME}`;
  const data = serializeRepoMetadata(meta);
  let fd: number;
  let named = false;
  try {
    fd = openAt(dirfd, ".", O.TMPFILE | O.WRONLY, 0o644);
  } catch (e) {
    if (!isErrno(e, "EOPNOTSUPP") && !isErrno(e, "EISDIR")) throw e;
    fd = openAt(dirfd, REPO_METADATA_FILENAME, O.CREAT | O.EXCL | O.WRONLY | O.NOFOLLOW, 0o644);
    named = true;
  }
  try {
    writeAll(fd, data as Uint8Array<ArrayBuffer>, where);
    fsync(fd);
    if (verity !== "insecure") {
      const ro = named
        ? openAt(dirfd, REPO_METADATA_FILENAME, O.RDONLY | O.NOFOLLOW)
        : openAt(AT.FDCWD, `/proc/self/fd/${fd}`, O.RDONLY);
      closeQuietly(fd);
      fd = ro;
      try {
        enableVerity(ro, algorithm, where);
      } catch (e) {
        if (!isVerityUnsupported(e) || verity === "secure") {
          if (named) unlinkQuietly(dirfd, REPO_METADATA_FILENAME);
          if (isVerityUnsupported(e)) {
            throw new VerityUnsupportedError(
              where,
              "secure mode requested but the filesystem has no fs-verity (create the repository " +
                `insecure, as bootc --allow-missing-verity does): ${(e as SysError).code}`,
            );
          }
          throw e;
        }
      }
    }
    if (!named) linkTmpfile(fd, dirfd, REPO_METADATA_FILENAME);
    faultPoint("composefs.meta-written");
  } finally {
    closeQuietly(fd);
  }
}

function unlinkQuietly(dirfd: number, name: string): void {
  try {
    unlinkAt(dirfd, name);
  } catch { /* cleanup of a path that already failed */ }
}

/** Infers algorithm and verity of a legacy repository from its first object. */
function inferLegacy(
  dirfd: number,
  path: string,
): { algorithm: HashAlgorithm; verity: VerityMode } | null {
  const objects = openDirAt(dirfd, "objects");
  try {
    for (const sub of readDir(objects)) {
      if (!/^[0-9a-f]{2}$/.test(sub.name)) continue;
      let subfd: number;
      try {
        subfd = openDirAt(objects, sub.name);
      } catch {
        continue;
      }
      try {
        for (const obj of readDir(subfd)) {
          const algorithm = algorithmOfObjectName(obj.name);
          if (!algorithm) continue;
          const fd = openAt(subfd, obj.name, O.RDONLY | O.NOFOLLOW);
          try {
            const m = measureOrNull(fd, `${path}/objects/${sub.name}/${obj.name}`);
            return { algorithm, verity: m ? "secure" : "insecure" };
          } finally {
            close(fd);
          }
        }
      } finally {
        close(subfd);
      }
    }
    return null;
  } finally {
    close(objects);
  }
}

/**
 * symlinkat, or on EEXIST: keep a link that already has `target`, else replace atomically via a
 * `.symlink-XXXXXXXXXXXX` in the repository root (composefs-rs `replace_symlinkat`).
 */
function replaceSymlink(
  dirfd: number,
  leaf: string,
  target: string,
  rootfd: number,
  where: string,
): void {
  try {
    symlinkAt(target, dirfd, leaf);
    return;
  } catch (e) {
    if (!isErrno(e, "EEXIST")) throw e;
  }
  try {
    if (readlinkAt(dirfd, leaf) === target) return;
  } catch (e) {
    if (isErrno(e, "EINVAL")) {
      throw new ComposefsError(where, "expected a symlink (or nothing), found another file type");
    }
    if (!isErrno(e, "ENOENT")) throw e;
  }
  for (let attempt = 0;; attempt++) {
    const tmp = tmpName(".symlink-");
    try {
      symlinkAt(target, rootfd, tmp);
    } catch (e) {
      if (isErrno(e, "EEXIST") && attempt < 16) continue;
      throw e;
    }
    try {
      renameAt(rootfd, tmp, dirfd, leaf);
    } catch (e) {
      unlinkQuietly(rootfd, tmp);
      throw e;
    }
    return;
  }
}
