/**
 * The entry stream: how a producer (composefs, containers-storage, a directory, another ostree
 * commit) describes an image tree to a store writer, one path at a time, with a way to open each
 * file's content for cloning. `commit_writer.ts` consumes it; {@linkcode OstreeRepo.treeEntries}
 * produces it from a commit.
 *
 * Rules a producer follows:
 * - paths are absolute (`/usr/bin/x`), `/` is the root directory; order is free, except that a
 *   `hardlink` names a path given earlier; a later entry for a path replaces an earlier one;
 * - a name that may not be UTF-8 is given as bytes (the ostree writer refuses it by path);
 * - metadata is what the target store must record: owner, permission bits, xattrs (including
 *   `security.selinux` when the image is labelled);
 * - `openContent` returns a fresh fd the consumer closes; the whole file is the content.
 *
 * @module
 */

import type { Xattr } from "./checksum.ts";

/** What an entry is. Only `file`, `dir`, `symlink` and `hardlink` can be stored by ostree. */
export type TreeEntryType =
  | "file"
  | "dir"
  | "symlink"
  | "hardlink"
  | "fifo"
  | "socket"
  | "char"
  | "block";

/**
 * One path of an image tree, as a producer (composefs, containers-storage, a directory walk)
 * hands it to {@linkcode writeTree}.
 *
 * @example
 * ```ts ignore
 * const e: TreeEntry = {
 *   path: "/usr/bin/tool", type: "file", uid: 0, gid: 0, mode: 0o755, size: 1234,
 *   xattrs: [["security.selinux", te.encode("system_u:object_r:bin_t:s0\0")]],
 *   openContent: () => openAt(layerDir, "usr/bin/tool", O.RDONLY | O.NOFOLLOW),
 * };
 * ```
 */
export interface TreeEntry {
  /**
   * Absolute path in the image, `/` for the root (`/usr/bin/x`; `usr/bin/x` and `./usr/bin/x`
   * are read the same way). Raw bytes when the producer's names may not be UTF-8: such names are
   * refused with an error naming the path.
   */
  path: string | Uint8Array;
  type: TreeEntryType;
  uid: number;
  gid: number;
  /** Permission bits including setuid, setgid and sticky; type bits, if any, are ignored. */
  mode: number;
  /** Extended attributes, any order; empty values are dropped as ostree drops them. */
  xattrs?: readonly Xattr[];
  /** `symlink`: the link target, stored as is (absolute or relative). */
  symlinkTarget?: string | Uint8Array;
  /**
   * `hardlink`: absolute path of an earlier entry (file or symlink) whose object this path
   * shares. The link's own uid/gid/mode/xattrs are ignored: a hardlink has its target's inode.
   */
  hardlinkTarget?: string | Uint8Array;
  /** `file`: content size in bytes, checked against what was placed when given. */
  size?: number;
  /**
   * `file`: opens the content for reading and returns the fd (the writer closes it). The whole
   * file from offset 0 is used; it is cloned into the repository, so on XFS/btrfs the object
   * shares the source's extents.
   */
  openContent?: () => number | Promise<number>;
  /** `file`: the content in memory, instead of `openContent` (small files, generated files). */
  content?: Uint8Array;
  /** `file`: the content checksum if known from a trusted cache (see `WriteFileOptions`). */
  contentChecksum?: string;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A path for messages: UTF-8 as is, other bytes as `\xNN`. */
export function displayEntryPath(path: string | Uint8Array): string {
  if (typeof path === "string") return path;
  let out = "";
  let i = 0;
  while (i < path.length) {
    // ASCII runs as they are; each multi-byte sequence decoded when valid, else its first byte
    // escaped and decoding resumed after it.
    let j = i;
    while (j < path.length && path[j] < 0x80) j++;
    if (j > i) {
      out += utf8.decode(path.subarray(i, j));
      i = j;
      continue;
    }
    const len = path[i] >= 0xf0 ? 4 : path[i] >= 0xe0 ? 3 : path[i] >= 0xc0 ? 2 : 1;
    try {
      out += utf8.decode(path.subarray(i, i + len));
      i += len;
    } catch {
      out += `\\x${path[i].toString(16).padStart(2, "0")}`;
      i++;
    }
  }
  return out;
}
