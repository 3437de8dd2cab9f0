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

import { closeQuietly } from "../../ffi/fs.ts";
import { fiemap, FIEMAP_EXTENT } from "../../ffi/extents.ts";
import { dedupeFiles } from "../reflink/dedupe.ts";
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

/** What {@linkcode shareOstreeWithComposefs} did. */
export interface OstreeDedupeStats {
  /** ostree file objects paired with a composefs object. */
  paired: number;
  /** Pairs whose blocks were already shared (a synthesized commit, or an earlier run). */
  alreadyShared: number;
  /** Pairs whose blocks are shared now. */
  deduped: number;
  bytesDeduped: number;
  /** Pairs the kernel found different (left alone). */
  differed: number;
  /** Pairs whose data lives inline in the inode (btrfs small files): nothing to share. */
  inline: number;
}

/** How the two files' data relate before any dedupe. */
function blockRelation(a: number, b: number): "shared" | "inline" | "separate" {
  const ea = fiemap(a), eb = fiemap(b);
  const inline = (e: typeof ea) =>
    e.some((x) => x.physical === 0 || (x.flags & FIEMAP_EXTENT.DATA_INLINE) !== 0);
  if (ea.length === 0 || inline(ea) || inline(eb)) return "inline";
  return eb.length > 0 && ea[0].physical === eb[0].physical ? "shared" : "separate";
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
  const transform = opts.transform ?? BOOTABLE_IMAGE_TRANSFORM;
  const checksumOf = new Map<string, string>();
  for (const item of ostree.walkCommit(commit)) {
    if (item.type === "file") checksumOf.set(item.path, item.checksum);
  }
  const stats: OstreeDedupeStats = {
    paired: 0,
    alreadyShared: 0,
    deduped: 0,
    bytesDeduped: 0,
    differed: 0,
    inline: 0,
  };
  const done = new Set<string>();
  const tree = await MergedTree.fromComposefs(cfs, image);
  for (const entry of tree.entries()) {
    if (entry.type !== "file" || !entry.objectId || typeof entry.path !== "string") continue;
    const parts = transformedParts(entry.path.split("/").filter((p) => p !== ""), transform);
    if (!parts) continue;
    const checksum = checksumOf.get(`/${parts.join("/")}`);
    if (!checksum || done.has(checksum)) continue;
    done.add(checksum);
    stats.paired++;
    const src = cfs.openObject(entry.objectId);
    let dst = -1;
    try {
      dst = ostree.openFileObject(checksum);
      const relation = blockRelation(src, dst);
      if (relation === "shared") stats.alreadyShared++;
      if (relation === "inline") stats.inline++;
      if (relation !== "separate") continue;
      const r = dedupeFiles(src, dst, `${entry.path} -> ostree ${checksum}`);
      faultPoint("pipeline.ostree-deduped");
      if (r.status === "same") {
        stats.deduped++;
        stats.bytesDeduped += r.bytesDeduped;
      } else {
        stats.differed++;
      }
    } finally {
      closeQuietly(src);
      closeQuietly(dst);
    }
  }
  return stats;
}
