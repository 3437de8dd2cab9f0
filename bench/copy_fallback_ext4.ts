/**
 * The copy fallback on ext4 (no reflinks): `set-unified full --mode enabled-with-copy` against
 * `cp -a` of the same files on the same filesystem.
 *
 * The ext4 host is a `cp -a` of the XFS bench host taken before it was unified (ostree repo,
 * deployment, boot entries: ostree's own files, hardlinks kept), so no second host has to be
 * built. The image goes into containers-storage with skopeo (what podman pull does), then, page
 * cache warm for both:
 * - `cp -a` of the store's layers (coreutils 9 uses copy_file_range: an in-kernel copy);
 * - the same copy, then the one node:crypto sha256 + sha512 pass over it (for reference);
 * - `set-unified full --mode enabled-with-copy --no-pull`: every file of the image copied into
 *   composefs with all its digests in one pass; no ostree dedupe (ext4 cannot share blocks).
 *
 * @module
 */

import { runOk } from "../tests/harness/run.ts";
import { type BenchHost, layerDiffDirs, skopeoIntoStore, unistoreCmd } from "./bench_host.ts";
import { settle, timeProcess, usedBytes, warmPageCache } from "./measure.ts";
import { peakRssByStage, type UnifyStages, unifyStages } from "./unify_stages.ts";

const HASH_TREE = new URL("./hash_tree.ts", import.meta.url).pathname;

/** What {@linkcode benchCopyFallback} measured. */
export interface CopyFallbackResult {
  /** `cp -a` of the XFS host onto ext4 (setup, not compared). */
  hostCopyMs: number;
  skopeoPullMs: number;
  cpMs: number;
  /** One node:crypto pass over the `cp -a` copy, feeding sha256 and sha512. */
  hashOnePassMs: number;
  unify: {
    totalMs: number;
    stages: UnifyStages;
    maxRssKiB: number | null;
    rssByStage: Record<string, number>;
    actions: string[];
  };
  /** df growth of the unify run: the composefs copy of the image. */
  growthBytes: number;
}

/**
 * Copies the (not yet unified) host of `bh` to `dir/host` with `cp -a` and returns its root and
 * how long that took.
 */
export async function copyHost(bh: BenchHost, dir: string): Promise<{ root: string; ms: number }> {
  const root = `${dir}/host`;
  const r = await timeProcess(["cp", "-a", bh.root, root]);
  return { root, ms: r.ms };
}

/** Runs the ext4 copy-fallback benchmark on the host copy at `root` (on ext4 `mountpoint`). */
export async function benchCopyFallback(
  bh: BenchHost,
  host: { root: string; ms: number },
  mountpoint: string,
  log: (line: string) => void,
): Promise<CopyFallbackResult> {
  const store = `${host.root}/sysroot/ostree/bootc/storage`;
  log("ext4: skopeo copy into containers-storage");
  const skopeoPullMs = await skopeoIntoStore(bh, store);
  const diffs = await layerDiffDirs(store);
  await settle(mountpoint);
  await warmPageCache(diffs);

  log("ext4: cp -a of the layers");
  const copy = `${mountpoint}/cp-copy`;
  const cp = await timeProcess(["cp", "-a", `${store}/overlay`, copy]);
  const hash = await timeProcess([Deno.execPath(), "run", "-A", "--quiet", HASH_TREE, copy]);
  await runOk(["rm", "-rf", copy]);
  await settle(mountpoint);

  log("ext4: set-unified full --mode enabled-with-copy --no-pull");
  const before = await usedBytes(mountpoint);
  const r = await timeProcess(
    unistoreCmd(
      host.root,
      "--progress-fd",
      "2",
      "set-unified",
      "full",
      "--mode",
      "enabled-with-copy",
      "--no-pull",
      "--json",
    ),
    { peakRss: true },
  );
  const report = JSON.parse(r.stdout.trim().split("\n").pop()!) as {
    ok: boolean;
    reflinksSupported: boolean;
    images: { actions: string[] }[];
  };
  if (!report.ok || report.reflinksSupported) {
    throw new Error(`ext4 set-unified full: expected ok without reflinks, got ${r.stdout}`);
  }
  const growthBytes = (await usedBytes(mountpoint)) - before;
  return {
    hostCopyMs: host.ms,
    skopeoPullMs,
    cpMs: cp.ms,
    hashOnePassMs: hash.ms,
    unify: {
      totalMs: r.ms,
      stages: unifyStages(r),
      maxRssKiB: r.maxRssKiB,
      rssByStage: peakRssByStage(r),
      actions: report.images[0]?.actions ?? [],
    },
    growthBytes,
  };
}
