/**
 * Extracting a layer tar into `overlay/<id>/diff/` the way the overlay driver does
 * (c/storage `archive.Unpack` with the overlay whiteout converter, v1.43):
 *
 * - names are cleaned (`filepath.Clean`); a name above the root is refused; the root entry
 *   (`./`) is skipped, so `diff/` keeps the mode it was created with;
 * - missing parents are created 0755, owned by root, with the current time;
 * - an existing path is removed first, unless both it and the entry are directories (merge);
 * - `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory; `.wh.<name>` becomes a
 *   character device 0:0 named `<name>`, mode 0, owned as the whiteout entry (ENOTDIR ignored);
 * - owner (lchown), then mode (not for symlinks; setuid/setgid/sticky kept), then times (mtime
 *   from the header; directories at the very end), then xattrs (`SCHILY.xattr.*`, except
 *   `security.selinux`);
 * - hard links are linked to their target in this layer, and the link's header owner, mode and
 *   times are applied to the shared inode, as c/storage does;
 * - regular files come from a content source by clone (FICLONE, or a copy when the policy
 *   allows), or from the tar payload.
 *
 * Differences, on purpose: a path that goes through a symlink inside the layer is refused
 * (c/storage would follow it inside its chroot; unistore never follows image symlinks); GNU
 * sparse files are refused (tar-split cannot reproduce them); the contiguous typeflag `7` is
 * extracted as a regular file (c/storage 1.43 refuses it as "unhandled tar header type 55").
 * Symlink targets are not checked: unistore never follows them.
 *
 * Every path is opened relative to a directory fd with O_NOFOLLOW; nothing from the tar is
 * joined onto a host path.
 *
 * @module
 */

import { SysError } from "../../../ffi/errno.ts";
import {
  close,
  closeQuietly,
  fchmod,
  fchmodAt,
  fchown,
  futimens,
  lchownAt,
  linkAt,
  lutimensAt,
  mkdirAt,
  mknodAt,
  O,
  openAt,
  openDirAt,
  S,
  statAt,
  symlinkAt,
  type Timespec,
  writeAll,
} from "../../../ffi/fs.ts";
import { fsetxattr, lsetxattrAt } from "../../../ffi/xattr.ts";
import { Crc64Iso } from "../../digest/crc64.ts";
import { longestNameComponent, NAME_MAX, type TarEntry } from "../../oci/tar.ts";
import {
  type ByteSink,
  cloneToNewFile,
  type CopyPolicy,
  type PlaceMethod,
} from "../../reflink/place.ts";
import { binaryFromBytes, type BinaryString, bytesFromBinary } from "../../oci/binary_string.ts";
import { goClean, layerComponents, printable } from "./entry_path.ts";
import { LayerIntegrityError, UnsupportedLayerError } from "./errors.ts";
import { MODES } from "./layout.ts";
import { removeTreeAt } from "../../../ffi/remove_tree.ts";

/** The prefix of whiteout entries (AUFS convention, used by every OCI layer). */
export const WHITEOUT_PREFIX = ".wh.";
/** The entry that marks its directory opaque. */
export const WHITEOUT_OPAQUE = ".wh..wh..opq";
/** The xattr overlayfs reads for opaque directories; `y` is the only value it honours. */
export const OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque";

/** xattrs from the tar that are never set (c/storage `xattrsToIgnore`): labels are the host's. */
const XATTRS_TO_IGNORE = new Set(["security.selinux"]);
const SCHILY_XATTR = "SCHILY.xattr.";

/** What a content source is asked for: one regular file of the layer. */
export interface ContentRequest {
  /** The layer being written, and its DiffID. */
  layerId: string;
  diffId: string;
  /** The tar entry (raw header bytes, parsed fields, pax records). */
  entry: TarEntry;
  /** Index of the entry in the tar (pax global headers count). */
  index: number;
  /** The cleaned path inside the layer, e.g. `usr/bin/bash` (raw bytes). */
  path: Uint8Array;
  /** `path` for messages (lossy for non-UTF-8 names). */
  pathText: string;
  /** Content length. */
  size: number;
}

/**
 * Supplies regular-file content to clone from: returns an fd open for reading on a file with
 * exactly the entry's bytes (a composefs object, a file in another store), or null to use the
 * payload bytes of the tar stream. The writer closes the fd. Only asked for files of size > 0.
 */
export type ContentSource = (req: ContentRequest) => number | null | Promise<number | null>;

/**
 * What the tar stream carries for a file the content source serves:
 *
 * - `compare`: the real payload; the clone is read back and its CRC-64 must equal the payload's
 *   (two reads per byte, nothing trusted);
 * - `replace`: placeholder bytes of the right length (a composefs splitstream parsed without
 *   reading its objects); the clone is read back once and its bytes stand in for the payload in
 *   the DiffID, the size and the CRC-64, so the DiffID check at the end covers every clone;
 * - `trust`: the real payload, read from the same file as the clone; the clone is not read back
 *   (one read per byte, no check that the clone holds those bytes).
 */
export type ClonedPayloads = "compare" | "replace" | "trust";

/** How regular files are placed. */
export interface DiffWriterOptions {
  /** The layer being written (passed on to the content source). */
  layerId: string;
  diffId: string;
  contentSource?: ContentSource;
  /** `reflink-required`: fail rather than copy bytes when a clone is impossible. */
  policy: CopyPolicy;
  /** What the tar payload of a file served by the content source is (see {@linkcode ClonedPayloads}). */
  clonedPayloads: ClonedPayloads;
}

/** Counts of what the writer did. */
export interface DiffWriteStats {
  /** Regular files created from a content source, by how the bytes got there. */
  cloned: Record<PlaceMethod, number>;
  clonedBytes: number;
  /** Regular files written from the tar payload. */
  written: number;
  writtenBytes: number;
  hardlinks: number;
  whiteouts: number;
  opaqueDirs: number;
}

/** Receives one entry's payload; `finish` gets the CRC-64 of the payload as it was in the tar. */
export interface PayloadSink {
  /**
   * Set in `replace` mode when the clone's bytes stand in for the payload: they were fed to the
   * stream hash already, and this is their CRC-64. The tar payload is to be skipped.
   */
  readonly replacement?: { crc: Uint8Array };
  write(chunk: Uint8Array): void;
  finish(payloadCrc: Uint8Array): Promise<void> | void;
  abort(): void;
}

const NOOP_SINK: PayloadSink = { write() {}, finish() {}, abort() {} };

/** A component could not be opened as a directory (it is a file, a device or a symlink). */
class NotADirectory extends Error {
  constructor(readonly path: BinaryString, readonly code: string) {
    super(`${printable(path)}: not a directory (${code})`);
  }
}

/** Directory fds of the diff tree, by cleaned path, with a small LRU so deep trees stay cheap. */
class DirCache {
  readonly #fds = new Map<BinaryString, number>();
  constructor(readonly rootFd: number, readonly capacity = 128) {}

  /** The fd of directory `comps`, creating missing ones (0755) when `create` is set. */
  get(comps: readonly BinaryString[], create: boolean): number {
    if (comps.length === 0) return this.rootFd;
    const key = comps.join("/");
    const hit = this.#fds.get(key);
    if (hit !== undefined) {
      this.#fds.delete(key);
      this.#fds.set(key, hit);
      return hit;
    }
    const parent = this.get(comps.slice(0, -1), create);
    const name = bytesFromBinary(comps[comps.length - 1]);
    let fd: number;
    try {
      fd = openDirAt(parent, name);
    } catch (e) {
      if (!(e instanceof SysError)) throw e;
      if (e.is("ENOENT") && create) {
        mkdirAt(parent, name, MODES.implicitDir);
        fd = openDirAt(parent, name);
        fchmod(fd, MODES.implicitDir);
      } else if (e.is("ENOTDIR") || e.is("ELOOP")) {
        throw new NotADirectory(key, e.code);
      } else throw e;
    }
    this.#fds.set(key, fd);
    if (this.#fds.size > this.capacity) {
      const [oldKey, oldFd] = this.#fds.entries().next().value!;
      this.#fds.delete(oldKey);
      close(oldFd);
    }
    return fd;
  }

  /** Forgets `key` and everything below it (after the path was removed or replaced). */
  invalidate(key: BinaryString): void {
    for (const [k, fd] of [...this.#fds]) {
      if (k === key || k.startsWith(`${key}/`)) {
        this.#fds.delete(k);
        close(fd);
      }
    }
  }

  closeAll(): void {
    for (const fd of this.#fds.values()) closeQuietly(fd);
    this.#fds.clear();
  }
}

function timespec(t: { sec: number; nsec: number }): Timespec {
  return { sec: t.sec, nsec: t.nsec };
}

function entryXattrs(entry: TarEntry): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  for (const [key, value] of entry.pax) {
    if (!key.startsWith(SCHILY_XATTR)) continue;
    const name = key.slice(SCHILY_XATTR.length);
    if (!XATTRS_TO_IGNORE.has(name)) out.push([name, value]);
  }
  return out;
}

const IS_DIR = (mode: number) => (mode & S.IFMT) === S.IFDIR;

/**
 * Extracts tar entries, one at a time, into an (empty) `diff/` directory.
 *
 * @example
 * ```ts ignore
 * const w = new DiffWriter(diffFd, "layer abc", {
 *   layerId, diffId, policy: "reflink-or-copy", clonedPayloads: "compare",
 * });
 * const sink = await w.entry(entry, index);
 * for await (const chunk of tar.readPayload()) sink.write(chunk);
 * await sink.finish(crcOfPayload);
 * w.finish(); // directory mtimes
 * ```
 */
export class DiffWriter {
  readonly #dirs: DirCache;
  readonly #dirTimes: { comps: BinaryString[]; mtime: Timespec }[] = [];
  readonly stats: DiffWriteStats = {
    cloned: { reflink: 0, copy_file_range: 0, readwrite: 0 },
    clonedBytes: 0,
    written: 0,
    writtenBytes: 0,
    hardlinks: 0,
    whiteouts: 0,
    opaqueDirs: 0,
  };

  constructor(diffFd: number, readonly where: string, readonly opts: DiffWriterOptions) {
    this.#dirs = new DirCache(diffFd);
  }

  #refuse(entry: TarEntry, message: string): UnsupportedLayerError {
    return new UnsupportedLayerError(this.where, message, entry.pathText);
  }

  /**
   * Applies one entry. Returns the sink its payload must be written to (a no-op sink for
   * entries whose payload is not extracted); `finish` completes the entry.
   */
  async entry(entry: TarEntry, index: number, streamHash?: ByteSink): Promise<PayloadSink> {
    if (entry.type === "pax-global") return NOOP_SINK; // c/storage ignores global headers
    if (entry.sparse) {
      throw this.#refuse(
        entry,
        "GNU sparse files are not supported (tar-split cannot reproduce them)",
      );
    }
    const longest = longestNameComponent(entry.path);
    if (longest > NAME_MAX) {
      throw this.#refuse(
        entry,
        `a name component is ${longest} bytes; Linux allows at most ${NAME_MAX} (NAME_MAX)`,
      );
    }
    const name = binaryFromBytes(entry.path);
    const comps = layerComponents(goClean(name));
    if (!Array.isArray(comps)) {
      throw this.#refuse(entry, 'the path leaves the layer (".." above the root)');
    }
    if (comps.length === 0) {
      if (entry.type === "directory") return NOOP_SINK; // "./": the root keeps its mode
      throw this.#refuse(entry, "a non-directory entry for the layer root");
    }
    const base = comps[comps.length - 1];
    const parentComps = comps.slice(0, -1);
    const isWhiteout = base.startsWith(WHITEOUT_PREFIX);

    let parentFd: number;
    try {
      parentFd = this.#dirs.get(parentComps, true);
    } catch (e) {
      // c/storage: a whiteout below a path that is not a directory (say, one whited out just
      // before) fails with ENOTDIR and is ignored.
      if (e instanceof NotADirectory && isWhiteout && base !== WHITEOUT_OPAQUE) return NOOP_SINK;
      if (e instanceof NotADirectory) {
        throw this.#refuse(
          entry,
          `parent ${
            JSON.stringify(printable(e.path))
          } is not a directory inside the layer (${e.code})`,
        );
      }
      throw e;
    }
    const baseBytes = bytesFromBinary(base);
    const key = comps.join("/");

    // An existing path is replaced, unless both are directories (then merged).
    let existing: number | null = null;
    try {
      existing = statAt(parentFd, baseBytes).mode;
    } catch (e) {
      if (!(e instanceof SysError && e.is("ENOENT"))) throw e;
    }
    if (existing !== null && !(IS_DIR(existing) && entry.type === "directory")) {
      if (IS_DIR(existing)) this.#dirs.invalidate(key);
      removeTreeAt(parentFd, baseBytes);
      existing = null;
    }

    if (isWhiteout) {
      this.#whiteout(entry, parentFd, parentComps, base);
      return NOOP_SINK;
    }

    switch (entry.type) {
      case "directory":
        this.#directory(entry, parentFd, baseBytes, existing !== null);
        this.#dirTimes.push({ comps, mtime: timespec(entry.mtime) });
        return NOOP_SINK;
      case "file":
      case "contiguous":
        return await this.#regular(entry, index, parentFd, baseBytes, comps, streamHash);
      case "symlink":
        symlinkAt(entry.linkPath, parentFd, baseBytes);
        this.#pathMetadata(entry, parentFd, baseBytes, { chmod: false, times: true });
        return NOOP_SINK;
      case "hardlink":
        this.#hardlink(entry, parentFd, baseBytes);
        return NOOP_SINK;
      case "char":
      case "block":
      case "fifo": {
        const typeBits = entry.type === "char"
          ? S.IFCHR
          : entry.type === "block"
          ? S.IFBLK
          : S.IFIFO;
        mknodAt(
          parentFd,
          baseBytes,
          typeBits | (entry.mode & 0o7777),
          entry.devMajor,
          entry.devMinor,
        );
        this.#pathMetadata(entry, parentFd, baseBytes, { chmod: true, times: true });
        return NOOP_SINK;
      }
      default:
        throw this.#refuse(
          entry,
          `unhandled tar entry type ${
            JSON.stringify(entry.typeflag)
          } (${entry.type}); the overlay ` +
            `driver does not extract it`,
        );
    }
  }

  #whiteout(
    entry: TarEntry,
    parentFd: number,
    parentComps: BinaryString[],
    base: BinaryString,
  ): void {
    if (base === WHITEOUT_OPAQUE) {
      fsetxattr(parentFd, OVERLAY_OPAQUE_XATTR, new Uint8Array([0x79]));
      this.stats.opaqueDirs++;
      return;
    }
    const target = bytesFromBinary(base.slice(WHITEOUT_PREFIX.length));
    try {
      mknodAt(parentFd, target, S.IFCHR, 0, 0);
    } catch (e) {
      if (e instanceof SysError && e.is("ENOTDIR")) return;
      if (e instanceof SysError && e.is("EEXIST")) {
        throw this.#refuse(
          entry,
          `whiteout for ${JSON.stringify(printable([...parentComps, base.slice(4)].join("/")))}, ` +
            `which this layer also contains`,
        );
      }
      throw e;
    }
    lchownAt(parentFd, target, entry.uid, entry.gid);
    this.stats.whiteouts++;
  }

  #directory(entry: TarEntry, parentFd: number, base: Uint8Array, exists: boolean): void {
    if (!exists) mkdirAt(parentFd, base, 0o700);
    const fd = openDirAt(parentFd, base);
    try {
      fchown(fd, entry.uid, entry.gid);
      fchmod(fd, entry.mode & 0o7777);
      for (const [k, v] of entryXattrs(entry)) this.#setxattr(entry, () => fsetxattr(fd, k, v), k);
    } finally {
      close(fd);
    }
  }

  #setxattr(entry: TarEntry, set: () => void, name: string): void {
    try {
      set();
    } catch (e) {
      // c/storage skips xattrs the filesystem does not support and fails on anything else.
      if (e instanceof SysError && e.is("EOPNOTSUPP")) return;
      if (e instanceof SysError) {
        throw this.#refuse(entry, `cannot set xattr ${name}: ${e.message}`);
      }
      throw e;
    }
  }

  /** Owner, mode, times and xattrs of a non-regular entry, by path (no fd: fifos would block). */
  #pathMetadata(
    entry: TarEntry,
    parentFd: number,
    base: Uint8Array,
    what: { chmod: boolean; times: boolean },
  ): void {
    lchownAt(parentFd, base, entry.uid, entry.gid);
    if (what.chmod) fchmodAt(parentFd, base, entry.mode & 0o7777);
    if (what.times) lutimensAt(parentFd, base, timespec(entry.mtime), timespec(entry.mtime));
    for (const [k, v] of entryXattrs(entry)) {
      this.#setxattr(entry, () => lsetxattrAt(parentFd, base, k, v), k);
    }
  }

  #hardlink(entry: TarEntry, parentFd: number, base: Uint8Array): void {
    const target = layerComponents(goClean(binaryFromBytes(entry.linkPath)));
    if (!Array.isArray(target) || target.length === 0) {
      throw this.#refuse(
        entry,
        `hard link target ${JSON.stringify(entry.linkPathText)} is outside the layer`,
      );
    }
    let targetDir: number;
    try {
      targetDir = this.#dirs.get(target.slice(0, -1), false);
    } catch (e) {
      if (e instanceof NotADirectory || (e instanceof SysError && e.is("ENOENT"))) {
        throw this.#refuse(
          entry,
          `hard link target ${JSON.stringify(entry.linkPathText)} is not in this layer`,
        );
      }
      throw e;
    }
    const targetName = bytesFromBinary(target[target.length - 1]);
    try {
      linkAt(targetDir, targetName, parentFd, base);
    } catch (e) {
      if (e instanceof SysError && e.is("ENOENT")) {
        throw this.#refuse(
          entry,
          `hard link target ${JSON.stringify(entry.linkPathText)} is not in this layer`,
        );
      }
      throw e;
    }
    const targetIsSymlink = (statAt(parentFd, base).mode & S.IFMT) === S.IFLNK;
    // c/storage applies the link header's metadata to the (shared) inode.
    this.#pathMetadata(entry, parentFd, base, { chmod: !targetIsSymlink, times: !targetIsSymlink });
    this.stats.hardlinks++;
  }

  async #regular(
    entry: TarEntry,
    index: number,
    parentFd: number,
    base: Uint8Array,
    comps: BinaryString[],
    streamHash: ByteSink | undefined,
  ): Promise<PayloadSink> {
    const size = entry.payloadSize;
    let srcFd: number | null = null;
    if (size > 0 && this.opts.contentSource) {
      const path = bytesFromBinary(comps.join("/"));
      srcFd = await this.opts.contentSource({
        layerId: this.opts.layerId,
        diffId: this.opts.diffId,
        entry,
        index,
        path,
        pathText: printable(comps.join("/")),
        size,
      });
    }
    const finishMeta = (fd: number) => {
      fchown(fd, entry.uid, entry.gid);
      fchmod(fd, entry.mode & 0o7777);
      futimens(fd, timespec(entry.mtime), timespec(entry.mtime));
      for (const [k, v] of entryXattrs(entry)) this.#setxattr(entry, () => fsetxattr(fd, k, v), k);
    };

    if (srcFd !== null) {
      const mode = this.opts.clonedPayloads;
      const crc = mode === "trust" ? undefined : new Crc64Iso();
      const replacing = mode === "replace";
      if (replacing && !streamHash) {
        throw new Error('clonedPayloads "replace" needs the stream hash');
      }
      const sink: ByteSink | undefined = replacing
        ? {
          update(chunk: Uint8Array) {
            crc!.update(chunk);
            streamHash!.update(chunk);
          },
        }
        : crc;
      let placed: { fd: number; method: PlaceMethod; size: number };
      try {
        placed = cloneToNewFile(srcFd, parentFd, base, {
          policy: this.opts.policy,
          sink,
          mode: 0o600,
          what: `${this.where}: ${entry.pathText}`,
        });
      } finally {
        closeQuietly(srcFd);
      }
      const fd = placed.fd;
      const cloneCrc = crc?.digestBytes();
      return {
        replacement: replacing ? { crc: cloneCrc! } : undefined,
        write() {},
        finish: (payloadCrc: Uint8Array) => {
          try {
            if (placed.size !== size) {
              throw new LayerIntegrityError(
                this.where,
                `${JSON.stringify(entry.pathText)}: the content source has ${placed.size} bytes, ` +
                  `the tar entry ${size}`,
              );
            }
            if (mode === "compare" && !bytesEqual(cloneCrc!, payloadCrc)) {
              throw new LayerIntegrityError(
                this.where,
                `${
                  JSON.stringify(entry.pathText)
                }: the content source's bytes differ from the tar ` +
                  `payload (CRC-64 mismatch)`,
              );
            }
            finishMeta(fd);
          } finally {
            close(fd);
          }
          this.stats.cloned[placed.method]++;
          this.stats.clonedBytes += size;
        },
        abort: () => closeQuietly(fd),
      };
    }

    const fd = openAt(parentFd, base, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
    return {
      write: (chunk: Uint8Array) =>
        writeAll(fd, chunk as Uint8Array<ArrayBuffer>, `${this.where}: ${entry.pathText}`),
      finish: () => {
        try {
          finishMeta(fd);
        } finally {
          close(fd);
        }
        this.stats.written++;
        this.stats.writtenBytes += size;
      },
      abort: () => closeQuietly(fd),
    };
  }

  /** Sets the directory times recorded from the tar (last, as c/storage does) and closes fds. */
  finish(): void {
    try {
      for (const d of this.#dirTimes) {
        let fd: number;
        try {
          fd = this.#dirs.get(d.comps, false);
        } catch (e) {
          // Replaced by a later entry of another type: nothing left to date.
          if (e instanceof NotADirectory || (e instanceof SysError && e.is("ENOENT"))) continue;
          throw e;
        }
        futimens(fd, d.mtime, d.mtime);
      }
    } finally {
      this.#dirs.closeAll();
    }
  }

  /** Closes every fd after a failure (the caller removes the half-written tree). */
  abort(): void {
    this.#dirs.closeAll();
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
