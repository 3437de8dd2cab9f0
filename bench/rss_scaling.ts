/**
 * Peak memory against image size: `set-unified full --no-pull` (image put into
 * containers-storage by skopeo first, so podman's own memory is not in the number) under
 * `/usr/bin/time -v` on a bench host of a larger image. The 1× point is the XFS benchmark's
 * own `--no-pull` run (bench/unify_xfs.ts), the same command on the same kind of host.
 *
 * @module
 */

import { buildBenchHost, layerDiffDirs, skopeoIntoStore, unistoreCmd } from "./bench_host.ts";
import type { ImageStats } from "./fedora_like_image.ts";
import { settle, timeProcess, warmPageCache } from "./measure.ts";
import { peakRssByStage, type UnifyStages, unifyStages } from "./unify_stages.ts";

/** One point of the memory curve. */
export interface RssPoint {
  scale: number;
  image: ImageStats;
  setupMs: { layout: number; host: number; skopeoPull: number };
  totalMs: number;
  stages: UnifyStages;
  maxRssKiB: number;
  /** Highest sampled RSS of unistore itself per stage, KiB. */
  rssByStage: Record<string, number>;
}

/** Builds a bench host of `scale` under `dir` (an XFS loop mount) and measures one unify run. */
export async function benchRssAtScale(
  dir: string,
  scale: number,
  log: (line: string) => void,
): Promise<RssPoint> {
  log(`${scale}x: generating the image and building its ostree host`);
  await using bh = await buildBenchHost(dir, scale);
  log(`${scale}x: skopeo copy into containers-storage`);
  const skopeoPull = await skopeoIntoStore(bh, bh.store);
  await settle(dir);
  // As in the 1× run (bench/unify_xfs.ts): the layers and the ostree objects in the page cache.
  await warmPageCache([...await layerDiffDirs(bh.store), `${bh.host.repo}/objects`]);
  log(`${scale}x: set-unified full --no-pull`);
  const r = await timeProcess(
    unistoreCmd(bh.root, "--progress-fd", "2", "set-unified", "full", "--no-pull", "--json"),
    { peakRss: true },
  );
  if (!JSON.parse(r.stdout.trim().split("\n").pop()!).ok) {
    throw new Error(`${scale}x set-unified full --no-pull failed: ${r.stdout}`);
  }
  return {
    scale,
    image: bh.plan.stats,
    setupMs: { ...bh.setupMs, skopeoPull },
    totalMs: r.ms,
    stages: unifyStages(r),
    maxRssKiB: r.maxRssKiB!,
    rssByStage: peakRssByStage(r),
  };
}
