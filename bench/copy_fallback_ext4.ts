/**
 * The copy fallback on ext4 (no reflinks): `set-unified full --mode enabled-with-copy` against
 * `cp -a` of the same files on the same filesystem.
 *
 * The ext4 host is a `cp -a` of the XFS bench host taken before it was unified (ostree repo,
 * deployment, boot entries: ostree's own files, hardlinks kept), so no second host has to be
 * built. The image goes into containers-storage with skopeo (what podman pull does), then, page
 * cache warm for both:
 * - `cp -a` of the store's layers (coreutils 9 uses copy_file_range: an in-kernel copy), then
 *   `sync -f`, timed apart: `cp -a` returns with the copy still in the page cache, while the
 *   import must have its objects on disk (`syncfs`) before it names a stream (DESIGN §4, crash
 *   order). The machine's CPU time during that `sync` is the writeback's (kernel threads: on a
 *   loop device, a second copy into the backing file and its own writeback), which no
 *   process's CPU time shows;
 * - one node:crypto sha256 + sha512 pass over the first copy (for reference);
 * - `cp -a` and that hash pass at once, as two processes: what this machine needs to copy the
 *   bytes and compute the digests the formats require, with no per-file work at all (no tar,
 *   no names, no links). The copy fallback cannot be faster than this on the same cores.
 * - `cp -a` and a sha512-only pass at once: with the writeback above, the lower bound of any
 *   import on this machine, even one that checked no diff_id: the copy, the one digest bootc's
 *   composefs repositories name objects by (SHA-512 fs-verity, of which a plain sha512 pass is
 *   a lower bound), and the bytes on disk.
 * - `set-unified full --mode enabled-with-copy --no-pull`: every file of the image copied into
 *   composefs with all its digests in one pass; no ostree dedupe (ext4 cannot share blocks).
 *
 * Every process runs under GNU time for its CPU time too (user + system): on a machine with few
 * cores, the import's CPU time over the core count bounds its wall time from below, whatever
 * the threads wait for.
 *
 * Each side runs {@linkcode RUNS} times, the three taking turns, and the median counts, with
 * the copy removed (or the unification undone) and the disk settled in between: on ext4 one
 * `cp -a` of the same files took anywhere from 1.2 to 4.0 s on the same filesystem, depending
 * on the writeback and block freeing left by what ran before it and on the machine's load.
 *
 * @module
 */

import { runOk } from "../tests/harness/run.ts";
import { type BenchHost, layerDiffDirs, skopeoIntoStore, unistoreCmd } from "./bench_host.ts";
import {
  machineBusyMs,
  median,
  settle,
  type TimedRun,
  timeProcess,
  usedBytes,
  warmPageCache,
} from "./measure.ts";
import { peakRssByStage, type UnifyStages, unifyStages } from "./unify_stages.ts";

const HASH_TREE = new URL("./hash_tree.ts", import.meta.url).pathname;

/** Runs of each side; the median is compared. */
const RUNS = 3;

/** What {@linkcode benchCopyFallback} measured. */
export interface CopyFallbackResult {
  /** `cp -a` of the XFS host onto ext4 (setup, not compared). */
  hostCopyMs: number;
  skopeoPullMs: number;
  /** Median of {@linkcode cpRunsMs}. */
  cpMs: number;
  cpRunsMs: number[];
  /** CPU time (user + system) of each `cp -a` run, in the order of {@linkcode cpRunsMs}. */
  cpCpuRunsMs?: number[];
  /** `sync -f` right after each `cp -a` of {@linkcode cpRunsMs}: the copy's writeback. */
  cpSyncRunsMs?: number[];
  /**
   * The machine's CPU time (every core, kernel threads included) during each `sync -f` of
   * {@linkcode cpSyncRunsMs}: what writing the copied bytes to disk costs here.
   */
  writebackCpuRunsMs?: number[];
  /** Median of `cp -a` + its `sync -f`, run by run: a copy that is on disk when it ends. */
  durableCpMs?: number;
  /** One node:crypto pass over the `cp -a` copy, feeding sha256 and sha512. */
  hashOnePassMs: number;
  /** Median of {@linkcode cpWithHashRunsMs}. */
  cpWithHashMs: number;
  /** `cp -a` of the layers and a hash pass over them, run at once: wall until both ended. */
  cpWithHashRunsMs: number[];
  /** CPU time of `cp -a` and the hash pass together, per run of {@linkcode cpWithHashRunsMs}. */
  cpWithHashCpuRunsMs?: number[];
  /** Median of {@linkcode cpWithSha512RunsMs}. */
  cpWithSha512Ms?: number;
  /** `cp -a` of the layers and a sha512-only pass over them, run at once (the lower bound). */
  cpWithSha512RunsMs?: number[];
  /** CPU time of `cp -a` and the sha512 pass together, per run of {@linkcode cpWithSha512RunsMs}. */
  cpWithSha512CpuRunsMs?: number[];
  unify: {
    /** Median of {@linkcode runsMs}; the stages and memory are that run's. */
    totalMs: number;
    runsMs: number[];
    /** CPU time of each run of {@linkcode runsMs}, the digest thread's included. */
    cpuRunsMs?: number[];
    stages: UnifyStages;
    maxRssKiB: number | null;
    rssByStage: Record<string, number>;
    actions: string[];
  };
  /** df growth of the median unify run: the composefs copy of the image. */
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

  const copy = `${mountpoint}/cp-copy`;
  const cpRuns: number[] = [];
  const cpCpuRuns: number[] = [];
  const cpSyncRuns: number[] = [];
  const writebackCpuRuns: number[] = [];
  const cpWithHashRuns: number[] = [];
  const cpWithHashCpuRuns: number[] = [];
  const cpWithSha512Runs: number[] = [];
  const cpWithSha512CpuRuns: number[] = [];
  let hashOnePassMs = 0;
  const hashPass = (dir: string, ...opts: string[]) => [
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    HASH_TREE,
    ...opts,
    dir,
  ];
  /** `cp -a` of the layers and a hash pass over them at once: wall until both end, and CPU. */
  const cpWithPass = async (...opts: string[]) => {
    const start = performance.now();
    const both = await Promise.all([
      timeProcess(["cp", "-a", `${store}/overlay`, copy], { cpuTime: true }),
      timeProcess(hashPass(`${store}/overlay`, ...opts), { cpuTime: true }),
    ]);
    const ms = performance.now() - start;
    await runOk(["rm", "-rf", copy]);
    await settle(mountpoint);
    return { ms, cpuMs: both[0].cpuMs! + both[1].cpuMs! };
  };
  const repoConfig = `${host.root}/sysroot/ostree/repo/config`;
  const savedConfig = await Deno.readFile(repoConfig);
  const unifyRuns: { run: TimedRun; growthBytes: number; actions: string[] }[] = [];
  // The three sides take turns, run by run: the machine's speed drifts over minutes, and a
  // side timed in a slow stretch of its own would skew the ratio.
  for (let i = 0; i < RUNS; i++) {
    if (i > 0) {
      // Undone: the composefs repository (bootc.json with it) and the repo config's binding.
      await Deno.remove(`${host.root}/sysroot/composefs`, { recursive: true });
      await Deno.writeFile(repoConfig, savedConfig);
      await settle(mountpoint);
    }
    log(`ext4: cp -a of the layers (${i + 1}/${RUNS})`);
    const cp = await timeProcess(["cp", "-a", `${store}/overlay`, copy], { cpuTime: true });
    cpRuns.push(cp.ms);
    cpCpuRuns.push(cp.cpuMs!);
    const busyBefore = await machineBusyMs();
    const syncStart = performance.now();
    await runOk(["sync", "-f", copy]);
    cpSyncRuns.push(performance.now() - syncStart);
    writebackCpuRuns.push((await machineBusyMs()) - busyBefore);
    if (i === 0) hashOnePassMs = (await timeProcess(hashPass(copy))).ms;
    await runOk(["rm", "-rf", copy]);
    await settle(mountpoint);

    log(`ext4: cp -a and a hash pass at once (${i + 1}/${RUNS})`);
    const both = await cpWithPass();
    cpWithHashRuns.push(both.ms);
    cpWithHashCpuRuns.push(both.cpuMs);

    log(`ext4: cp -a and a sha512-only pass at once (${i + 1}/${RUNS})`);
    const bound = await cpWithPass("--only=sha512");
    cpWithSha512Runs.push(bound.ms);
    cpWithSha512CpuRuns.push(bound.cpuMs);

    log(`ext4: set-unified full --mode enabled-with-copy --no-pull (${i + 1}/${RUNS})`);
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
    unifyRuns.push({ run: r, growthBytes, actions: report.images[0]?.actions ?? [] });
  }
  const unifyMs = unifyRuns.map((u) => u.run.ms);
  const mid = unifyRuns.find((u) => u.run.ms === median(unifyMs))!;
  const r = mid.run;
  return {
    hostCopyMs: host.ms,
    skopeoPullMs,
    cpMs: median(cpRuns),
    cpRunsMs: cpRuns,
    cpCpuRunsMs: cpCpuRuns,
    cpSyncRunsMs: cpSyncRuns,
    writebackCpuRunsMs: writebackCpuRuns,
    durableCpMs: median(cpRuns.map((ms, i) => ms + cpSyncRuns[i])),
    hashOnePassMs,
    cpWithHashMs: median(cpWithHashRuns),
    cpWithHashRunsMs: cpWithHashRuns,
    cpWithHashCpuRunsMs: cpWithHashCpuRuns,
    cpWithSha512Ms: median(cpWithSha512Runs),
    cpWithSha512RunsMs: cpWithSha512Runs,
    cpWithSha512CpuRunsMs: cpWithSha512CpuRuns,
    unify: {
      totalMs: r.ms,
      runsMs: unifyMs,
      cpuRunsMs: unifyRuns.map((u) => u.run.cpuMs!),
      stages: unifyStages(r),
      maxRssKiB: r.maxRssKiB,
      rssByStage: peakRssByStage(r),
      actions: mid.actions,
    },
    growthBytes: mid.growthBytes,
  };
}
