/**
 * Content-object ("file") checksums: sha256 over a GVariant header of the file's metadata
 * followed by its bytes. This is the name of every `.file` object in a bare repository and what
 * `ostree fsck` recomputes from the object inode.
 *
 * ```
 * header_variant = (uuuusa(ayay)) = (BE32 uid, BE32 gid, BE32 st_mode, 0 rdev,
 *                                    symlink target or "", xattrs sorted by name)
 * header         = BE32(len(header_variant)) ‖ 00 00 00 00 ‖ header_variant
 * checksum       = sha256(header ‖ content)          (a symlink has no content)
 * ```
 *
 * Spec with vectors: ../../../../shared/specs/ostree-repo.md §5 (and §7 for how bare and
 * bare-user objects carry the metadata).
 *
 * @module
 */

import { fgetAllXattrs, lgetAllXattrsAt } from "../../../ffi/xattr.ts";
import {
  close,
  closeQuietly,
  fstat,
  O,
  openAt,
  openDir,
  read,
  readlinkAtBytes,
  S,
  statAt,
} from "../../../ffi/fs.ts";
import { StreamingHash, toHex } from "../../digest/hash.ts";
import { OstreeError, UnsupportedEntryError } from "./errors.ts";
import { bswap32, serialize } from "./gvariant.ts";

/** One extended attribute: name (without trailing NUL) and raw value. */
export type Xattr = readonly [name: string, value: Uint8Array];

/** The metadata that goes into a content checksum. */
export interface FileObjectMeta {
  uid: number;
  gid: number;
  /**
   * `st_mode`: file type bits (`S_IFREG` or `S_IFLNK`) plus permission, setuid, setgid and
   * sticky bits. Symlinks always hash as `0120777` (see {@linkcode normalizeFileMode}).
   */
  mode: number;
  /** Extended attributes in any order; empty values are dropped and names sorted when hashing. */
  xattrs?: readonly Xattr[];
  /** The link target, for symlinks only. */
  symlinkTarget?: string;
}

// The type string of the header: changing it changes every content checksum.
const FILE_HEADER_TYPE = "(uuuusa(ayay))";
/** Permission bits ostree keeps: rwx for all, setuid, setgid, sticky. */
const PERMISSION_BITS = 0o7777;

const encoder = new TextEncoder();

/**
 * The mode a content object has on disk, from a requested mode: regular files keep type and
 * permission bits; a symlink is always `0120777`, because a bare repo stores it as a real
 * symlink and Linux reports every symlink as 0777, so any other value would fail `ostree fsck`.
 *
 * @throws {UnsupportedEntryError} for types ostree cannot store (directories are not content).
 */
export function normalizeFileMode(mode: number, what = "file"): number {
  const type = mode & S.IFMT;
  if (type === S.IFLNK) return S.IFLNK | 0o777;
  if (type === S.IFREG) return S.IFREG | (mode & PERMISSION_BITS);
  throw new UnsupportedEntryError(
    what,
    `mode 0${mode.toString(8)} is not a regular file or symlink (ostree stores only those)`,
  );
}

/** Byte-wise `strcmp` of two UTF-8 strings: the order libglnx and ostree sort names in. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/**
 * xattrs as ostree hashes them: `[name bytes + NUL, value]` pairs, sorted by name with
 * `strcmp`, entries with an empty value dropped (libglnx skips zero-length values when reading
 * from disk, so ostree never sees them).
 *
 * @throws {OstreeError} on a duplicate or empty name.
 */
export function canonicalXattrs(
  xattrs: readonly Xattr[] = [],
  what = "xattrs",
): [Uint8Array, Uint8Array][] {
  const out: [Uint8Array, Uint8Array][] = [];
  for (const [name, value] of xattrs) {
    if (name === "" || name.includes("\0")) {
      throw new OstreeError(`${what}: invalid xattr name ${JSON.stringify(name)}`);
    }
    if (value.length === 0) continue;
    const n = encoder.encode(name);
    const withNul = new Uint8Array(n.length + 1);
    withNul.set(n);
    out.push([withNul, value]);
  }
  out.sort((a, b) => compareBytes(a[0], b[0]));
  for (let i = 1; i < out.length; i++) {
    if (compareBytes(out[i - 1][0], out[i][0]) === 0) {
      throw new OstreeError(`${what}: xattr ${new TextDecoder().decode(out[i][0])} appears twice`);
    }
  }
  return out;
}

/** The `(uuuusa(ayay))` header variant of a content object, big-endian fields swapped in. */
export function fileHeaderVariant(meta: FileObjectMeta): Uint8Array {
  const mode = normalizeFileMode(meta.mode);
  const isLink = (mode & S.IFMT) === S.IFLNK;
  if (isLink && !meta.symlinkTarget) {
    throw new OstreeError("symlink content object needs a non-empty target");
  }
  return serialize(FILE_HEADER_TYPE, [
    bswap32(meta.uid),
    bswap32(meta.gid),
    bswap32(mode),
    0, // rdev: always 0 for regular files and symlinks
    isLink ? meta.symlinkTarget! : "",
    canonicalXattrs(meta.xattrs),
  ]);
}

/**
 * The bytes hashed before the content: BE32 length of the header variant, 4 zero bytes, the
 * variant (`ostree-core.c` `variant_to_lenprefixed_buffer`).
 */
export function fileHeader(meta: FileObjectMeta): Uint8Array {
  const v = fileHeaderVariant(meta);
  const out = new Uint8Array(8 + v.length);
  new DataView(out.buffer).setUint32(0, v.length, false);
  out.set(v, 8);
  return out;
}

/**
 * A streaming content checksum: constructed from the metadata (which is hashed first), then fed
 * the file's bytes. Plugs into `cloneToTmpfile({sink})` so the checksum comes from the bytes
 * actually placed.
 *
 * @example
 * ```ts
 * const h = new ContentChecksum({ uid: 0, gid: 0, mode: 0o100644 });
 * h.update(new TextEncoder().encode("hello\n"));
 * h.hex(); // "44f778e59f0a4748d6b0c90a47347212a231c4ad1e8f7ea5c5dffc7749153a6b"
 * ```
 */
export class ContentChecksum {
  readonly #hash = new StreamingHash("sha256");
  #size = 0;

  constructor(meta: FileObjectMeta) {
    this.#hash.update(fileHeader(meta));
  }

  /** Feeds content bytes. */
  update(chunk: Uint8Array): this {
    this.#hash.update(chunk);
    this.#size += chunk.length;
    return this;
  }

  /** Content bytes fed so far. */
  get size(): number {
    return this.#size;
  }

  /** The checksum as raw bytes; ends the stream. */
  digest(): Uint8Array {
    return this.#hash.digest();
  }

  /** The checksum as lowercase hex (the object name); ends the stream. */
  hex(): string {
    return toHex(this.#hash.digest());
  }
}

/**
 * The checksum of a content object from its metadata and complete content (none for symlinks).
 *
 * @example
 * ```ts
 * contentChecksum({ uid: 0, gid: 0, mode: 0o120777, symlinkTarget: "hello.txt" });
 * // "f66efa496a72379413c44593de510dc344beb045294f1a543da87b2b6118db35"
 * ```
 */
export function contentChecksum(meta: FileObjectMeta, content?: Uint8Array): string {
  const h = new ContentChecksum(meta);
  if (content) h.update(content);
  return h.hex();
}

const CHUNK = 1 << 20;
/** {@linkcode feedFd}'s read buffer, reused: a fresh 1 MiB per object is garbage only a full GC frees. */
let feedBuffer: Uint8Array<ArrayBuffer> | null = null;

/**
 * Feeds all of `fd` from its current position to `sink`, which must be done with each chunk
 * when `update` returns (a hash; the buffer is reused).
 */
export function feedFd(fd: number, sink: { update(chunk: Uint8Array): unknown }): number {
  const buf = feedBuffer ??= new Uint8Array(CHUNK);
  let total = 0;
  for (;;) {
    const n = read(fd, buf);
    if (n === 0) return total;
    sink.update(buf.subarray(0, n));
    total += n;
  }
}

/**
 * The bare-mode checksum of `name` below `dirfd`, from its own owner, mode, xattrs and content
 * (a symlink is not followed: its target and its own xattrs count). This is what `ostree commit`
 * would name the file, and what `ostree fsck` recomputes for an object of a bare repository.
 *
 * @throws {UnsupportedEntryError} for anything but a regular file or symlink.
 */
export function ostreeChecksumAt(dirfd: number, name: string | Uint8Array, what?: string): string {
  const label = what ?? (typeof name === "string" ? name : new TextDecoder().decode(name));
  const st = statAt(dirfd, name);
  const type = st.mode & S.IFMT;
  if (type === S.IFLNK) {
    let target: string;
    try {
      target = new TextDecoder("utf-8", { fatal: true }).decode(readlinkAtBytes(dirfd, name));
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
      throw new UnsupportedEntryError(label, "symlink target is not valid UTF-8");
    }
    return contentChecksum({
      uid: st.uid,
      gid: st.gid,
      mode: st.mode,
      symlinkTarget: target,
      xattrs: lgetAllXattrsAt(dirfd, name),
    });
  }
  if (type !== S.IFREG) {
    throw new UnsupportedEntryError(
      label,
      `not a regular file or symlink (mode 0${st.mode.toString(8)}); ostree has no checksum for it`,
    );
  }
  const fd = openAt(dirfd, name, O.RDONLY | O.NOFOLLOW);
  try {
    // Metadata from the open fd, so owner, mode and bytes are of one and the same inode.
    const fst = fstat(fd);
    const h = new ContentChecksum({
      uid: fst.uid,
      gid: fst.gid,
      mode: fst.mode,
      xattrs: fgetAllXattrs(fd),
    });
    feedFd(fd, h);
    return h.hex();
  } finally {
    close(fd);
  }
}

/**
 * `unistore internals ostree-checksum FILE`: the bare-mode checksum of FILE computed from its
 * own owner, mode, xattrs and content, as lowercase hex. FILE itself is not followed when it is
 * a symlink; the directories above it are.
 *
 * @example
 * ```ts ignore
 * ostreeChecksumOfPath("/usr/bin/bash"); // same as `ostree ls -C COMMIT /usr/bin/bash`
 * ```
 */
export function ostreeChecksumOfPath(path: string): string {
  const trimmed = path.length > 1 ? path.replace(/\/+$/, "") : path;
  const slash = trimmed.lastIndexOf("/");
  const dir = slash < 0 ? "." : slash === 0 ? "/" : trimmed.slice(0, slash);
  const base = slash < 0 ? trimmed : trimmed.slice(slash + 1);
  if (base === "" || base === "." || base === "..") {
    throw new UnsupportedEntryError(path, "is a directory; ostree checksums files and symlinks");
  }
  const dirfd = openDir(dir);
  try {
    return ostreeChecksumAt(dirfd, base, path);
  } finally {
    closeQuietly(dirfd);
  }
}
