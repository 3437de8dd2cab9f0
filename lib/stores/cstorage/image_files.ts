/**
 * An image's files as a container sees them: the union of its layers' `diff/` directories with
 * overlayfs rules (the top layer wins; a character device 0:0 hides the name below it; a
 * directory with `trusted.overlay.opaque=y` hides the lower layers' contents of that
 * directory; a non-directory hides lower directories of the same name).
 *
 * Each file comes with its path, its metadata as stored in the winning layer (owner, mode,
 * size, times, xattrs other than `trusted.overlay.*`), and an fd-based way to read it from the
 * right `diff/` file, so another store can clone it.
 *
 * @module
 */

import { SysError } from "../../../ffi/errno.ts";
import {
  closeQuietly,
  O,
  openAt,
  openDirAt,
  readDir,
  readlinkAtBytes,
  S,
  type Stat,
  statAt,
} from "../../../ffi/fs.ts";
import { lgetAllXattrsAt, lgetxattrAt } from "../../../ffi/xattr.ts";
import { binaryFromBytes, type BinaryString, bytesFromBinary } from "../../oci/binary_string.ts";
import { printable } from "./entry_path.ts";
import { OVERLAY_OPAQUE_XATTR } from "./diff_writer.ts";
import { LAYER_DIR, PATHS } from "./layout.ts";
import type { StoreRoot } from "./store_root.ts";

/** The kind of an image file. */
export type ImageFileType = "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket";

/** One file of an image's merged tree. */
export interface ImageFile {
  /** Path below the image root, `/`-separated, no leading slash; `""` for the root itself. */
  path: Uint8Array;
  /** `path` for messages (lossy for non-UTF-8 names). */
  pathText: string;
  type: ImageFileType;
  /** The layer whose `diff/` holds this entry. */
  layerId: string;
  /** statx of the entry in that `diff/` (owner, mode, size, mtime, inode for hard links). */
  stat: Stat;
  /** Symlink target bytes (symlinks only). */
  linkTarget?: Uint8Array;
  /** Extended attributes, without overlayfs' own `trusted.overlay.*`. */
  xattrs: [string, Uint8Array][];
  /** Directory fd in the winning `diff/` holding the entry; valid until the iteration moves on. */
  dirfd: number;
  /** The entry's name in `dirfd`. */
  name: Uint8Array;
  /** Opens the entry read-only (O_NOFOLLOW); the caller closes the fd. Regular files only. */
  open(): number;
}

function fileType(mode: number): ImageFileType {
  switch (mode & S.IFMT) {
    case S.IFDIR:
      return "dir";
    case S.IFLNK:
      return "symlink";
    case S.IFCHR:
      return "char";
    case S.IFBLK:
      return "block";
    case S.IFIFO:
      return "fifo";
    case S.IFSOCK:
      return "socket";
    default:
      return "file";
  }
}

function isWhiteout(st: Stat): boolean {
  return (st.mode & S.IFMT) === S.IFCHR && st.rdevMajor === 0 && st.rdevMinor === 0;
}

function isOpaque(dirfd: number, name: Uint8Array | "."): boolean {
  const v = lgetxattrAt(dirfd, name, OVERLAY_OPAQUE_XATTR);
  return v !== null && v.length === 1 && v[0] === 0x79;
}

/** A directory of one layer taking part in a merged directory. */
interface LayerDir {
  layer: number;
  fd: number;
}

function compareBinary(a: BinaryString, b: BinaryString): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function statOrNull(dirfd: number, name: Uint8Array): Stat | null {
  try {
    return statAt(dirfd, name);
  } catch (e) {
    if (e instanceof SysError && (e.is("ENOENT") || e.is("ENOTDIR"))) return null;
    throw e;
  }
}

/**
 * Walks the merged tree of layers `layerIds` (top layer first), depth first, names in byte
 * order, directories before their contents, the root first (path `""`).
 *
 * @example
 * ```ts ignore
 * for await (const f of mergedFiles(root, chainTopFirst)) {
 *   if (f.type === "file") { const fd = f.open(); try { clone(fd) } finally { close(fd) } }
 * }
 * ```
 */
export async function* mergedFiles(
  root: StoreRoot,
  layerIds: readonly string[],
): AsyncGenerator<ImageFile> {
  const tops: LayerDir[] = [];
  try {
    for (let i = 0; i < layerIds.length; i++) {
      const fd = openDirAt(root.fd, `${PATHS.driverDir}/${layerIds[i]}/${LAYER_DIR.diff}`);
      tops.push({ layer: i, fd });
      if (isOpaque(fd, ".")) break;
    }
    if (tops.length === 0) return;
    const rootStat = statAt(tops[0].fd, ".");
    yield makeFile(new Uint8Array(0), layerIds[0], rootStat, tops[0].fd, bytesFromBinary("."));
    yield* walk(layerIds, tops, "");
  } finally {
    for (const d of tops) closeQuietly(d.fd);
  }
}

function makeFile(
  path: Uint8Array,
  layerId: string,
  stat: Stat,
  dirfd: number,
  name: Uint8Array,
): ImageFile {
  const type = fileType(stat.mode);
  const xattrs = lgetAllXattrsAt(dirfd, name).filter(([k]) => !k.startsWith("trusted.overlay."));
  return {
    path,
    pathText: printable(binaryFromBytes(path)),
    type,
    layerId,
    stat,
    linkTarget: type === "symlink" ? readlinkAtBytes(dirfd, name) : undefined,
    xattrs,
    dirfd,
    name,
    open: () => openAt(dirfd, name, O.RDONLY | O.NOFOLLOW),
  };
}

async function* walk(
  layerIds: readonly string[],
  dirs: LayerDir[],
  prefix: BinaryString,
): AsyncGenerator<ImageFile> {
  const names = new Set<BinaryString>();
  for (const d of dirs) for (const e of readDir(d.fd)) names.add(binaryFromBytes(e.nameBytes));
  for (const name of [...names].sort(compareBinary)) {
    const nameBytes = bytesFromBinary(name);
    // The topmost layer that has the name decides what it is.
    let winner: { dir: LayerDir; stat: Stat } | null = null;
    const below: LayerDir[] = [];
    for (const d of dirs) {
      const st = statOrNull(d.fd, nameBytes);
      if (st === null) continue;
      if (winner === null) {
        if (isWhiteout(st)) break;
        winner = { dir: d, stat: st };
        if ((st.mode & S.IFMT) !== S.IFDIR || isOpaque(d.fd, nameBytes)) break;
        continue;
      }
      // Below a winning directory: lower directories merge in until a whiteout, a
      // non-directory or an opaque directory ends the stack.
      if (isWhiteout(st) || (st.mode & S.IFMT) !== S.IFDIR) break;
      below.push(d);
      if (isOpaque(d.fd, nameBytes)) break;
    }
    if (winner === null) continue;
    const path = prefix === "" ? name : `${prefix}/${name}`;
    const file = makeFile(
      bytesFromBinary(path),
      layerIds[winner.dir.layer],
      winner.stat,
      winner.dir.fd,
      nameBytes,
    );
    yield file;
    if (file.type !== "dir") continue;
    const children: LayerDir[] = [];
    try {
      for (const d of [winner.dir, ...below]) {
        children.push({ layer: d.layer, fd: openDirAt(d.fd, nameBytes) });
      }
      yield* walk(layerIds, children, path);
    } finally {
      for (const c of children) closeQuietly(c.fd);
    }
  }
}
