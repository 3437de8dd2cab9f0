/**
 * Sharing the blocks of two files that hold the same bytes, with FIDEDUPERANGE: the kernel
 * compares the bytes before sharing, so both files, their inodes and metadata stay exactly as
 * they are (DESIGN §4). Used by the ostree dedupe pass (lib/pipeline/ostree_dedupe.ts), by
 * the import's digest thread (lib/pipeline/layer_digests.ts), which is why it imports little
 * (types only from the stores it does not read), and by the import itself.
 *
 * @module
 */

import { isErrno } from "../../ffi/errno.ts";
import { fiemap, FIEMAP_EXTENT } from "../../ffi/extents.ts";
import { closeQuietly } from "../../ffi/fs.ts";
import { dedupeFiles } from "../reflink/dedupe.ts";
import { faultPoint } from "../fault/fault_point.ts";
import { openFileObjectAt } from "../stores/ostree/objects.ts";
import type { ComposefsRepo } from "../stores/composefs/repository.ts";
import type { ObjectId } from "../stores/composefs/object_id.ts";

/** What sharing an ostree commit's file objects with an image's files did. */
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

/** What sharing one pair of files came to. */
export type ShareOutcome = "shared" | "inline" | "deduped" | "differed";

/**
 * Makes the ostree object `dst` share the blocks of `src` when both hold the same bytes (the
 * kernel compares them): `shared` when they already did, `inline` when either has its data in
 * the inode (btrfs small files), `differed` when the bytes are not the same.
 */
export function shareFileBlocks(
  src: number,
  dst: number,
  what: string,
  opts: { assumeSeparate?: boolean } = {},
): { outcome: ShareOutcome; bytes: number } {
  if (!opts.assumeSeparate) {
    const relation = blockRelation(src, dst);
    if (relation !== "separate") return { outcome: relation, bytes: 0 };
  }
  const r = dedupeFiles(src, dst, what);
  return r.status === "same"
    ? { outcome: "deduped", bytes: r.bytesDeduped }
    : { outcome: "differed", bytes: 0 };
}

/**
 * Largest file whose data a filesystem may keep inside the inode (btrfs `max_inline` is at most
 * a page): above it FIEMAP cannot answer "inline", so sharing skips asking.
 */
const INLINE_DATA_MAX = 4096;

/**
 * Opens ostree file object `checksum` read-only, never following it: a symlink object (the
 * commit index does not tell symlinks from files) or a missing one gives null.
 */
function openOstreeFile(objectsDirfd: number, checksum: string): number | null {
  try {
    return openFileObjectAt(objectsDirfd, checksum);
  } catch (e) {
    if (isErrno(e, "ELOOP") || isErrno(e, "ENOENT")) return null;
    throw e;
  }
}

/**
 * Makes ostree file object `checksum` (under the repository's `objects/`, `objectsDirfd`) and
 * `fd`, a file of `size` bytes just placed in another store, share their blocks when both hold
 * the same bytes ({@linkcode shareFileBlocks}). Null when there is no such regular object.
 *
 * The object gives up its blocks for the file's, unless it already shares them: then the file
 * takes the object's. An image holds the same bytes at many paths (licenses, locales) and
 * ostree keeps one object for them all; always moving the object to the newest file would
 * leave every earlier file with blocks of its own. Small files count too: 30 bytes still take
 * a whole block in each store.
 */
export function shareWithOstreeObject(
  fd: number,
  size: number,
  objectsDirfd: number,
  checksum: string,
  what: string,
): { outcome: ShareOutcome; bytes: number } | null {
  const obj = openOstreeFile(objectsDirfd, checksum);
  if (obj === null) return null;
  try {
    const objExtents = fiemap(obj);
    if (objExtents.length > 0 && objExtents.every((e) => e.shared)) {
      return shareFileBlocks(obj, fd, `ostree ${checksum} -> ${what}`);
    }
    return shareFileBlocks(fd, obj, `${what} -> ostree ${checksum}`, {
      // Too large to be inline, its blocks not shared yet: FIEMAP of both would only cost.
      assumeSeparate: size > INLINE_DATA_MAX,
    });
  } finally {
    closeQuietly(obj);
  }
}

/**
 * Makes `fd` share the blocks of composefs object `id` of `repo` when both hold the same
 * bytes ({@linkcode shareFileBlocks}; the object keeps its blocks, the file takes them).
 */
export function shareWithComposefsObject(
  repo: ComposefsRepo,
  id: ObjectId,
  fd: number,
  what: string,
): { outcome: ShareOutcome; bytes: number } {
  const obj = repo.openObject(id);
  try {
    return shareFileBlocks(obj, fd, `composefs object ${id} -> ${what}`);
  } finally {
    closeQuietly(obj);
  }
}

/** Stats with nothing counted yet. */
export function emptyDedupeStats(): OstreeDedupeStats {
  return { paired: 0, alreadyShared: 0, deduped: 0, bytesDeduped: 0, differed: 0, inline: 0 };
}

/**
 * Counts one pair's outcome into `stats`, after an ostree object was deduplicated or compared:
 * the fault point `pipeline.ostree-deduped` (lib/fault/fault_point.ts) is here, once per pair.
 */
export function countShare(stats: OstreeDedupeStats, r: { outcome: ShareOutcome; bytes: number }) {
  if (r.outcome === "deduped" || r.outcome === "differed") faultPoint("pipeline.ostree-deduped");
  stats.paired++;
  if (r.outcome === "shared") stats.alreadyShared++;
  if (r.outcome === "inline") stats.inline++;
  if (r.outcome === "differed") stats.differed++;
  if (r.outcome === "deduped") {
    stats.deduped++;
    stats.bytesDeduped += r.bytes;
  }
}
