/**
 * `set-unified full` on XFS against the real tools, on one bench host (bench/bench_host.ts):
 *
 * 1. `set-unified full` as a user runs it (podman pull included), stages from its progress
 *    events, and `df` on the loop filesystem before and after: the physical growth of three
 *    stores over the ostree-only host.
 * 2. The no-op: `set-unified full` again, nothing to do (median of 3).
 * 3. `fsck images --deep` against `ostree fsck` on the unified host.
 * 4. Unification undone, the image put into containers-storage by skopeo (what podman pull
 *    does), then timed against each other on the same bytes, page cache warm for both:
 *    - floor: `cp -a --reflink=always` of the store's layers + sha256 and sha512 of the copied
 *      bytes (one node:crypto pass; `sha256sum`/`sha512sum` reported too);
 *    - `set-unified full --no-pull` under `/usr/bin/time -v` (wall, stages, peak RSS);
 *    - `ostree commit --tree=tar=` of the same layers (uncompressed tars, one commit per layer
 *      as ostree-ext does) into a fresh bare repo on the same filesystem.
 *
 * @module
 */

import { runOk } from "../tests/harness/run.ts";
import type { BenchHost } from "./bench_host.ts";
import { layerDiffDirs, skopeoIntoStore, undoUnification, unistoreCmd } from "./bench_host.ts";
import {
  median,
  settle,
  stopwatch,
  type TimedRun,
  timeProcess,
  usedBytes,
  usedInodes,
  warmPageCache,
} from "./measure.ts";
import { peakRssByStage, type UnifyStages, unifyStages } from "./unify_stages.ts";

const HASH_TREE = new URL("./hash_tree.ts", import.meta.url).pathname;

/** The fields of `unistore du --json` the report shows (lib/commands/du.ts). */
export interface DuReport {
  stores: { name: string; files: number; logicalBytes: number; physicalBytes: number }[];
  logicalBytes: number;
  physicalBytes: number;
  savedBytes: number;
}

/** One timed `set-unified full` run. */
export interface UnifyRun {
  totalMs: number;
  stages: UnifyStages;
  /** Peak RSS of the process tree's largest member (podman's when it pulled), KiB. */
  maxRssKiB: number | null;
  /** The report's `actions` of the booted image. */
  actions: string[];
  /** Highest sampled RSS of unistore itself per stage, KiB (peakRss runs only). */
  rssByStage: Record<string, number>;
}

/** What {@linkcode benchUnifyXfs} measured. */
export interface UnifyXfsResult {
  withPull: UnifyRun;
  physical: {
    beforeBytes: number;
    afterBytes: number;
    growthBytes: number;
    /** Growth relative to the image's file content (ImageStats.contentBytes). */
    growthOfImage: number;
    /** Inodes the run added (`df -i`), and XFS's inode size: part of the growth is inodes. */
    newInodes: number;
    inodeBytes: number;
  };
  /** `unistore du --json` after the run: per store logical/physical bytes, shared, saved. */
  du: DuReport & { ms: number };
  noopMs: number[];
  /** Stages of the median no-op run (where a run with nothing to do spends its time). */
  noopStages: UnifyStages;
  noopMedianMs: number;
  fsck: {
    unistoreDeepMs: number;
    /** Exit code of `fsck images --deep` (0: clean) and its first problem line, if any. */
    unistoreExit: number;
    ostreeFsckMs: number;
    ostreeExit: number;
    /** What a failing check said (stderr's last lines). */
    failures: string[];
  };
  skopeoPullMs: number;
  floor: {
    cpReflinkMs: number;
    /** One node:crypto pass over the copied bytes feeding sha256 and sha512 (process time). */
    hashOnePassMs: number;
    sha256sumMs: number;
    sha512sumMs: number;
    /** cp + one-pass hashing: the floor the targets use. */
    totalMs: number;
    /** cp + sha256sum + sha512sum (coreutils, no SHA-NI). */
    coreutilsTotalMs: number;
    hashedBytes: number;
  };
  noPull: UnifyRun;
  ostreeCommit: { perLayerMs: number[]; totalMs: number };
}

function unifyRun(r: TimedRun): UnifyRun {
  const report = JSON.parse(r.stdout.trim().split("\n").pop()!) as {
    ok: boolean;
    images: { actions: string[]; problem: string | null }[];
  };
  if (!report.ok) throw new Error(`set-unified full did not succeed: ${r.stdout}`);
  return {
    totalMs: r.ms,
    stages: unifyStages(r),
    maxRssKiB: r.maxRssKiB,
    actions: report.images[0]?.actions ?? [],
    rssByStage: r.rssSamples.length > 0 ? peakRssByStage(r) : {},
  };
}

/** Runs the XFS benchmarks on `bh`, whose host lives on the XFS loop filesystem `mountpoint`. */
export async function benchUnifyXfs(
  bh: BenchHost,
  mountpoint: string,
  log: (line: string) => void,
): Promise<UnifyXfsResult> {
  const savedConfig = await Deno.readFile(`${bh.host.repo}/config`);
  const unify = (...extra: string[]) =>
    unistoreCmd(bh.root, "--progress-fd", "2", "set-unified", "full", "--json", ...extra);

  await settle(mountpoint);
  const beforeBytes = await usedBytes(mountpoint);
  const beforeInodes = await usedInodes(mountpoint);
  log("set-unified full (podman pull included)");
  const withPull = unifyRun(await timeProcess(unify(), { peakRss: true }));
  if (!withPull.actions.some((a) => a.startsWith("pull "))) {
    throw new Error(`set-unified full did not pull: ${withPull.actions.join(", ")}`);
  }
  const afterBytes = await usedBytes(mountpoint);
  const growthBytes = afterBytes - beforeBytes;
  const newInodes = (await usedInodes(mountpoint)) - beforeInodes;
  const isize = /isize=(\d+)/.exec((await runOk(["xfs_info", mountpoint])).stdout);
  const duRun = await timeProcess(unistoreCmd(bh.root, "du", "--json"));
  const du = { ...JSON.parse(duRun.stdout) as DuReport, ms: duRun.ms };

  log("set-unified full again, nothing to do (3 runs)");
  const noops: TimedRun[] = [];
  for (let i = 0; i < 3; i++) {
    await settle(mountpoint);
    const r = await timeProcess(unify());
    if (!JSON.parse(r.stdout.trim().split("\n").pop()!).alreadyUnified) {
      throw new Error(`second set-unified full was not a no-op: ${r.stdout}`);
    }
    noops.push(r);
  }
  const noopMs = noops.map((r) => r.ms);
  const medianNoop = noops.find((r) => r.ms === median(noopMs))!;

  log("fsck images --deep, ostree fsck");
  // Judges, not steps: a failing check is a result to report, and the runs go on.
  await settle(mountpoint);
  const fsckRun = await timeProcess(
    unistoreCmd(bh.root, "fsck", "images", "--deep", "--json"),
    { check: false },
  );
  await settle(mountpoint);
  const ostreeFsck = await timeProcess(["ostree", `--repo=${bh.host.repo}`, "fsck", "--quiet"], {
    check: false,
  });

  log("undo, skopeo copy into containers-storage");
  await undoUnification(bh, savedConfig);
  await settle(mountpoint);
  const skopeoPullMs = await skopeoIntoStore(bh, bh.store);
  const diffs = await layerDiffDirs(bh.store);
  await settle(mountpoint);
  // Sources in the page cache for both sides: the layers, and the ostree objects dedupe reads.
  await warmPageCache([...diffs, `${bh.host.repo}/objects`]);

  log("floor: cp -a --reflink=always, sha256 + sha512");
  const floorDir = `${mountpoint}/floor`;
  const cp = await timeProcess(["cp", "-a", "--reflink=always", `${bh.store}/overlay`, floorDir]);
  const hashOnePass = await timeProcess([
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    HASH_TREE,
    floorDir,
  ]);
  const hashed = JSON.parse(hashOnePass.stdout) as { bytes: number };
  const sum = (alg: string) =>
    timeProcess([
      "bash",
      "-c",
      `find "$1" -type f -print0 | xargs -0 -r ${alg}sum > /dev/null`,
      alg,
      floorDir,
    ]);
  const sha256 = await sum("sha256");
  const sha512 = await sum("sha512");
  await Deno.remove(floorDir, { recursive: true });
  await settle(mountpoint);

  log("set-unified full --no-pull");
  const noPull = unifyRun(await timeProcess(unify("--no-pull"), { peakRss: true }));
  if (noPull.actions.some((a) => a.startsWith("pull "))) {
    throw new Error(`set-unified full --no-pull pulled: ${noPull.actions.join(", ")}`);
  }

  log("ostree commit --tree=tar= of the same layers");
  const repo = `${mountpoint}/ostree-commit-bench`;
  await runOk(["ostree", "init", `--repo=${repo}`, "--mode=bare"]);
  await warmPageCache(bh.image.layerTars);
  await settle(mountpoint);
  const perLayerMs: number[] = [];
  const t = stopwatch();
  for (const [i, tar] of bh.image.layerTars.entries()) {
    const r = await timeProcess([
      "ostree",
      `--repo=${repo}`,
      "commit",
      `--branch=bench/layer${i}`,
      `--tree=tar=${tar}`,
      "--tar-autocreate-parents",
      "--no-bindings",
      "--subject=",
      "--timestamp=@0",
    ]);
    perLayerMs.push(r.ms);
  }
  const ostreeTotal = t();
  await Deno.remove(repo, { recursive: true });
  await settle(mountpoint);

  return {
    withPull,
    physical: {
      beforeBytes,
      afterBytes,
      growthBytes,
      growthOfImage: growthBytes / bh.plan.stats.contentBytes,
      newInodes,
      inodeBytes: Number(isize?.[1] ?? 512),
    },
    du,
    noopMs,
    noopStages: unifyStages(medianNoop),
    noopMedianMs: median(noopMs),
    fsck: {
      unistoreDeepMs: fsckRun.ms,
      unistoreExit: fsckRun.code,
      ostreeFsckMs: ostreeFsck.ms,
      ostreeExit: ostreeFsck.code,
      failures: [fsckRun, ostreeFsck].filter((r) => r.code !== 0).map((r) =>
        `${r.cmd.slice(-4).join(" ")}: exit ${r.code}: ${(r.stderr + r.stdout).trim().slice(-600)}`
      ),
    },
    skopeoPullMs,
    floor: {
      cpReflinkMs: cp.ms,
      hashOnePassMs: hashOnePass.ms,
      sha256sumMs: sha256.ms,
      sha512sumMs: sha512.ms,
      totalMs: cp.ms + hashOnePass.ms,
      coreutilsTotalMs: cp.ms + sha256.ms + sha512.ms,
      hashedBytes: hashed.bytes,
    },
    noPull,
    ostreeCommit: { perLayerMs, totalMs: ostreeTotal },
  };
}
