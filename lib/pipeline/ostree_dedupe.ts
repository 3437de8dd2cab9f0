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
import { faultPoint } from "../fault/fault_point.ts";
import { MergedTree } from "./merged_tree.ts";
import {
  countShare,
  emptyDedupeStats,
  type OstreeDedupeStats,
  shareFileBlocks,
} from "./block_sharing.ts";

export type { OstreeDedupeStats } from "./block_sharing.ts";

/**
 * The file paths of an ostree commit, as an image's layers name them: each image path is
 * mapped by the ostree-ext transform (`/etc` → `/usr/etc`) to the checksum of the commit's file
 * there. Each checksum is handed out once (hardlinks and equal files share one object).
 */
export class OstreeFileIndex {
  readonly #checksumOf = new Map<string, string>();
  readonly #given = new Set<string>();

  constructor(
    ostree: OstreeRepo,
    commit: string,
    readonly transform: Readonly<TreeTransform> = BOOTABLE_IMAGE_TRANSFORM,
  ) {
    // Symlinks are in the index too (telling them apart means reading every object): the
    // files taken are opened with O_NOFOLLOW, and a symlink object is skipped then.
    for (const [path, checksum] of ostree.walkCommitFiles(commit)) {
      this.#checksumOf.set(path, checksum);
    }
  }

  /**
   * The checksum of the commit's file at image path `path` (`usr/bin/ls`, `/etc/motd`), or null
   * when the commit has none there or it was handed out before.
   */
  take(path: string): string | null {
    const parts = transformedParts(
      path.split("/").filter((p) => p !== "" && p !== "."),
      this.transform,
    );
    if (!parts) return null;
    const checksum = this.#checksumOf.get(`/${parts.join("/")}`);
    if (!checksum || this.#given.has(checksum)) return null;
    this.#given.add(checksum);
    return checksum;
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
      const r = shareFileBlocks(src, dst, `${entry.path} -> ostree ${checksum}`);
      countShare(stats, r);
      if (r.outcome === "deduped" || r.outcome === "differed") {
        faultPoint("pipeline.ostree-deduped");
      }
    } finally {
      closeQuietly(src);
      closeQuietly(dst);
    }
  }
  return stats;
}
