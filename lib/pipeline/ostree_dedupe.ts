/**
 * Sharing the blocks of ostree objects that hold the same bytes as composefs
 * objects but were written separately (an ostree deployment pulled before
 * unification, say), with FIDEDUPERANGE: the kernel compares the bytes before
 * sharing, so the objects, their inodes, metadata and checksums stay exactly
 * as they are (DESIGN §4).
 *
 * Objects are paired by path: the composefs image's merged tree gives each
 * file's object, the ostree commit's tree gives each path's checksum; the
 * ostree-ext transform (`/etc` → `/usr/etc`) maps one onto the other.
 *
 * @module
 */

import { isErrno } from "../../ffi/errno.ts";
import { closeQuietly } from "../../ffi/fs.ts";
import type { ComposefsRepo } from "../stores/composefs/repository.ts";
import type { StoredImage } from "../stores/composefs/oci_image.ts";
import {
  BOOTABLE_IMAGE_TRANSFORM,
  transformedParts,
  type TreeTransform,
} from "../stores/ostree/commit_writer.ts";
import type { OstreeRepo } from "../stores/ostree/repo.ts";
import { MergedTree } from "./merged_tree.ts";
import {
  countShare,
  emptyDedupeStats,
  type OstreeDedupeStats,
  shareFileBlocks,
} from "./block_sharing.ts";

export type { OstreeDedupeStats } from "./block_sharing.ts";

/** A directory of the commit, as looked up: its files' and subdirectories' checksums by name. */
interface IndexedDir {
  files: Map<string, string>;
  dirs: Map<string, string>;
}

/**
 * Directories kept parsed. Paths are looked up in an image layer's order, which lists a
 * directory's entries together, so a few hundred cover the directories in use while memory
 * stays flat in the size of the commit (parsing every dirtree up front held 130 MiB at 4x).
 */
const INDEX_DIRS_CACHED = 256;

/**
 * The file paths of an ostree commit, as an image's layers name them: each image path is
 * mapped by the ostree-ext transform (`/etc` → `/usr/etc`) to the checksum of the commit's file
 * there, reading the commit's dirtrees as the lookups reach them.
 */
export class OstreeFileIndex {
  readonly #ostree: OstreeRepo;
  readonly #rootTree: string;
  readonly #dirs = new Map<string, IndexedDir>();
  readonly #given = new Set<string>();

  constructor(
    ostree: OstreeRepo,
    commit: string,
    readonly transform: Readonly<TreeTransform> = BOOTABLE_IMAGE_TRANSFORM,
  ) {
    this.#ostree = ostree;
    this.#rootTree = ostree.readCommit(commit).rootTree;
  }

  /**
   * The checksum of the commit's file at image path `path` (`usr/bin/ls`, `/etc/motd`), or null
   * when the commit has none there. Symlinks count as files here (telling them apart means
   * reading each object): callers open what they get with O_NOFOLLOW and skip a symlink then.
   */
  checksumAt(path: string): string | null {
    const parts = transformedParts(
      path.split("/").filter((p) => p !== "" && p !== "."),
      this.transform,
    );
    if (!parts || parts.length === 0) return null;
    let dir = this.#dir("", this.#rootTree);
    let dirPath = "";
    for (const name of parts.slice(0, -1)) {
      const tree = dir.dirs.get(name);
      if (tree === undefined) return null;
      dirPath += `/${name}`;
      dir = this.#dir(dirPath, tree);
    }
    return dir.files.get(parts[parts.length - 1]) ?? null;
  }

  /**
   * Like {@linkcode checksumAt}, but each checksum is handed out once (hardlinks and equal
   * files share one object): for pairing objects, where the first pair covers them all.
   */
  take(path: string): string | null {
    const checksum = this.checksumAt(path);
    if (!checksum || this.#given.has(checksum)) return null;
    this.#given.add(checksum);
    return checksum;
  }

  #dir(path: string, tree: string): IndexedDir {
    let d = this.#dirs.get(path);
    if (d) {
      this.#dirs.delete(path); // most recently used last
    } else {
      const t = this.#ostree.readDirTree(tree);
      d = {
        files: new Map(t.files.map((f) => [f.name, f.checksum])),
        dirs: new Map(t.dirs.map((x) => [x.name, x.tree])),
      };
      if (this.#dirs.size >= INDEX_DIRS_CACHED) {
        this.#dirs.delete(this.#dirs.keys().next().value!);
      }
    }
    this.#dirs.set(path, d);
    return d;
  }
}

/**
 * Shares the blocks of the ostree commit `commit` with the composefs image `image` wherever a
 * path holds the same bytes in both.
 *
 * @example
 * ```ts ignore
 * const s = await shareOstreeWithComposefs(cfs, ostree, "sha256:…manifest", commit);
 * console.log(`${s.bytesDeduped} bytes now shared`);
 * ```
 */
export async function shareOstreeWithComposefs(
  cfs: ComposefsRepo,
  ostree: OstreeRepo,
  image: string | StoredImage,
  commit: string,
  opts: { transform?: Readonly<TreeTransform> } = {},
): Promise<OstreeDedupeStats> {
  const index = new OstreeFileIndex(ostree, commit, opts.transform);
  const stats = emptyDedupeStats();
  const tree = await MergedTree.fromComposefs(cfs, image);
  for (const entry of tree.entries()) {
    if (entry.type !== "file" || !entry.objectId || typeof entry.path !== "string") continue;
    const checksum = index.take(entry.path);
    if (!checksum) continue;
    const src = cfs.openObject(entry.objectId);
    let dst = -1;
    try {
      try {
        dst = ostree.openFileObject(checksum);
      } catch (e) {
        if (isErrno(e, "ELOOP")) continue; // a symlink in the commit where the image has a file
        throw e;
      }
      countShare(stats, shareFileBlocks(src, dst, `${entry.path} -> ostree ${checksum}`));
    } finally {
      closeQuietly(src);
      closeQuietly(dst);
    }
  }
  return stats;
}
