/**
 * `deno task bench`: unistore against the real tools on the same data, in one run (issue 2
 * and issue 7; DESIGN.md §6).
 *
 * 1. The reflink engine against `cp -a --reflink=always` (bench/reflink_engine.ts).
 * 2. A Fedora-like bootc image (~1.1 GiB, ~30,000 files; bench/fedora_like_image.ts) deployed
 *    on an ostree host on a loop XFS (bench/bench_host.ts), then `set-unified full` against
 *    the floor (`cp -a --reflink=always` + sha256 + sha512 of the same bytes) and `ostree
 *    commit --tree=tar=`, the physical growth (`df`), the no-op run, `fsck images --deep`
 *    against `ostree fsck` (bench/unify_xfs.ts).
 * 3. The copy fallback on a loop ext4 against `cp -a` (bench/copy_fallback_ext4.ts).
 * 4. Peak RSS at 4× the image size (bench/rss_scaling.ts).
 *
 * Writes bench/RESULTS.md and bench/results.json, and prints the table (or, with `--json`, the
 * JSON). Every loop filesystem, registry and host it creates is removed at the end. Needs root
 * and the Debian packages ostree podman skopeo docker-registry xfsprogs e2fsprogs time.
 *
 * usage: deno task bench [--json] [--runs N] [--only engine,digests,xfs,ext4,rss]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createLoopFs } from "../tests/harness/loopfs.ts";
import { findTool } from "../tests/harness/tools.ts";
import { runOk } from "../tests/harness/run.ts";
import { buildBenchHost } from "./bench_host.ts";
import { benchCopyFallback, copyHost } from "./copy_fallback_ext4.ts";
import { loadAverage, stopwatch } from "./measure.ts";
import { benchReflinkEngine } from "./reflink_engine.ts";
import {
  type BenchResults,
  evaluateTargets,
  type ImageInfo,
  type MachineInfo,
  renderResultsMarkdown,
} from "./results_report.ts";
import { benchRssAtScale } from "./rss_scaling.ts";
import { benchUnifyXfs } from "./unify_xfs.ts";

const SECTIONS = ["engine", "digests", "xfs", "ext4", "rss"] as const;
type Section = typeof SECTIONS[number];

/**
 * Free space (bytes) the full-size run needs where loop images and temp dirs live: the 4×
 * phase holds ~16 GiB on its loop XFS, ~3 GiB of registry blobs and ~8 GiB of the host
 * fixture's work dir (pulled layout, extracted tree) at once.
 */
const FULL_SIZE_FREE_BYTES = 40 * 1024 ** 3;
/** Loop filesystem sizes (sparse), MiB per 1× of image. */
const XFS_MIB_PER_SCALE = 12_288;
const EXT4_MIB_PER_SCALE = 10_240;

const DIGEST_RATES = new URL("./digest_rates.ts", import.meta.url).pathname;
const RESULTS_MD = new URL("./RESULTS.md", import.meta.url).pathname;
const RESULTS_JSON = new URL("./results.json", import.meta.url).pathname;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "boolean" },
    runs: { type: "string", default: "5" },
    only: { type: "string", default: SECTIONS.join(",") },
  },
});
const runs = Number(values.runs);
const only = new Set(values.only!.split(",").map((x) => x.trim()));
for (const s of only) {
  if (!(SECTIONS as readonly string[]).includes(s)) {
    console.error(`bench: --only: unknown section ${s}; expected some of ${SECTIONS.join(",")}`);
    Deno.exit(2);
  }
}
const wants = (s: Section) => only.has(s);

const elapsed = stopwatch();
function log(line: string): void {
  console.error(`[bench ${(elapsed() / 1000).toFixed(0).padStart(4)} s] ${line}`);
}

async function freeBytes(dir: string): Promise<number> {
  const out = await runOk(["df", "-B1", "--output=avail", dir]);
  return Number(out.stdout.trim().split("\n")[1]);
}

async function machineInfo(loadStart: number[]): Promise<MachineInfo> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo");
  const meminfo = await Deno.readTextFile("/proc/meminfo");
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown",
    memoryGiB: Number(/^MemTotal:\s*(\d+)/m.exec(meminfo)?.[1] ?? 0) / 1024 ** 2,
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    loadStart,
    loadEnd: await loadAverage(),
  };
}

/** The commit of the checkout being measured, marked when lib/, ffi/ or main.ts differ from it. */
async function checkoutCommit(): Promise<string> {
  const repo = new URL("..", import.meta.url).pathname;
  try {
    const head = (await runOk(["git", "-C", repo, "rev-parse", "--short", "HEAD"])).stdout.trim();
    const dirty =
      (await runOk(["git", "-C", repo, "status", "--porcelain", "lib", "ffi", "main.ts"]))
        .stdout.trim() !== "";
    return dirty ? `${head}+dirty` : head;
  } catch {
    return "unknown (not a git checkout)";
  }
}

function preflight(): string[] {
  const problems: string[] = [];
  if (Deno.uid() !== 0) problems.push("needs root (loop mounts, ostree admin, podman)");
  const tools: [string, string][] = [
    ["ostree", "ostree"],
    ["podman", "podman"],
    ["skopeo", "skopeo"],
    ["docker-registry", "docker-registry"],
    ["mkfs.xfs", "xfsprogs"],
    ["mkfs.ext4", "e2fsprogs"],
    ["sha256sum", "coreutils"],
  ];
  for (const [bin, pkg] of tools) {
    if (!findTool(bin)) problems.push(`${bin} not found (Debian package ${pkg})`);
  }
  try {
    Deno.statSync("/usr/bin/time");
  } catch {
    problems.push("/usr/bin/time not found (Debian package time)");
  }
  return problems;
}

const problems = preflight();
if (problems.length > 0) {
  console.error(`bench: cannot run:\n  ${problems.join("\n  ")}`);
  Deno.exit(1);
}

const startedAt = new Date().toISOString();
const unistoreCommit = await checkoutCommit();
const loadStart = await loadAverage();
const free = Math.min(
  await freeBytes("/var/tmp"),
  await freeBytes(Deno.env.get("TMPDIR") ?? "/tmp"),
);
const fullSize = free >= FULL_SIZE_FREE_BYTES;
const [baseScale, bigScale] = fullSize ? [1, 4] : [0.25, 1];
const sizing = fullSize
  ? `1× ≈ 1.1 GiB and 4× ≈ 4.4 GiB of files (${(free / 1024 ** 3).toFixed(0)} GiB free in the ` +
    "temp filesystems)."
  : `only ${(free / 1024 ** 3).toFixed(0)} GiB free (the full size needs ` +
    `${FULL_SIZE_FREE_BYTES / 1024 ** 3} GiB): "1×" is a 0.25-scale image (~280 MiB) and ` +
    `"4×" the 1-scale image (~1.1 GiB).`;
log(`image scales: ${baseScale} and ${bigScale} (${sizing})`);

const errors: BenchResults["errors"] = [];
async function section<T>(name: string, fn: () => Promise<T>): Promise<T | null> {
  try {
    return await fn();
  } catch (e) {
    log(`${name} FAILED: ${(e as Error).message}`);
    errors.push({ section: name, message: (e as Error).stack ?? String(e) });
    return null;
  }
}

let reflinkEngine: BenchResults["reflinkEngine"] = null;
if (wants("engine")) {
  log(`reflink engine vs cp -a --reflink=always (${runs} runs)`);
  const trees = await section("engine", () => benchReflinkEngine(runs));
  if (trees) reflinkEngine = { runs, trees };
}

let digestRates: BenchResults["digestRates"] = null;
if (wants("digests")) {
  log("digest throughput in process");
  digestRates = await section("digests", async () => {
    const r = await runOk([Deno.execPath(), "run", "-A", "--quiet", DIGEST_RATES]);
    return JSON.parse(r.stdout) as Record<string, number>;
  });
}

let image1x: ImageInfo | null = null;
let setup1x: BenchResults["setup1x"] = null;
let unifyXfs: BenchResults["unifyXfs"] = null;
let copyFallbackExt4: BenchResults["copyFallbackExt4"] = null;
const rss: BenchResults["rss"] = [];
if (wants("xfs") || wants("ext4") || wants("rss")) {
  await section(`${baseScale}x image`, async () => {
    await using xfs = await createLoopFs("xfs", {
      sizeMiB: Math.ceil(XFS_MIB_PER_SCALE * Math.max(1, baseScale)),
    });
    log(`${baseScale}x: generating the image and building its ostree host`);
    await using bh = await buildBenchHost(xfs.mountpoint, baseScale);
    image1x = {
      scale: baseScale,
      stats: bh.plan.stats,
      uniqueContentBytes: bh.image.uniqueContentBytes,
      tarBytes: bh.image.tarBytes,
      layers: bh.plan.layers.map((l) => ({ name: l.name, entries: l.entries.length })),
    };
    setup1x = { layoutMs: bh.setupMs.layout, hostMs: bh.setupMs.host };
    log(
      `${baseScale}x: ${bh.plan.stats.files} files, ` +
        `${(bh.plan.stats.contentBytes / 2 ** 20).toFixed(0)} MiB; layout ` +
        `${(bh.setupMs.layout / 1000).toFixed(0)} s, host ${(bh.setupMs.host / 1000).toFixed(0)} s`,
    );
    await using ext4 = wants("ext4")
      ? await createLoopFs("ext4", {
        sizeMiB: Math.ceil(EXT4_MIB_PER_SCALE * Math.max(1, baseScale)),
      })
      : null;
    const ext4Host = ext4 ? await copyHost(bh, ext4.mountpoint) : null;
    if (wants("xfs") || wants("rss")) {
      unifyXfs = await section("xfs", () => benchUnifyXfs(bh, xfs.mountpoint, log));
      if (unifyXfs?.noPull.maxRssKiB) {
        rss.push({
          scale: baseScale,
          image: bh.plan.stats,
          setupMs: { ...bh.setupMs, skopeoPull: unifyXfs.skopeoPullMs },
          totalMs: unifyXfs.noPull.totalMs,
          stages: unifyXfs.noPull.stages,
          maxRssKiB: unifyXfs.noPull.maxRssKiB,
          rssByStage: unifyXfs.noPull.rssByStage,
        });
      }
    }
    if (ext4 && ext4Host) {
      copyFallbackExt4 = await section(
        "ext4",
        () => benchCopyFallback(bh, ext4Host, ext4.mountpoint, log),
      );
    }
    log(`${baseScale}x: tearing down`);
  });
}

if (wants("rss")) {
  await section(`${bigScale}x image`, async () => {
    await using xfs = await createLoopFs("xfs", {
      sizeMiB: Math.ceil(XFS_MIB_PER_SCALE * bigScale),
    });
    rss.push(await benchRssAtScale(xfs.mountpoint, bigScale, log));
    log(`${bigScale}x: tearing down`);
  });
}

const partial = {
  startedAt,
  unistoreCommit,
  durationMs: elapsed(),
  machine: await machineInfo(loadStart),
  sizing,
  image1x,
  setup1x,
  reflinkEngine,
  digestRates,
  unifyXfs,
  copyFallbackExt4,
  rss,
  errors,
};
const results: BenchResults = { ...partial, targets: evaluateTargets(partial) };
const markdown = renderResultsMarkdown(results);
await Deno.writeTextFile(RESULTS_MD, markdown);
// Tables as `deno fmt` lays them out, so that the generated file passes `deno fmt --check`.
await runOk([Deno.execPath(), "fmt", "--quiet", RESULTS_MD]);
await Deno.writeTextFile(RESULTS_JSON, JSON.stringify(results, null, 2) + "\n");
log(`wrote ${RESULTS_MD} and ${RESULTS_JSON}`);
if (values.json) console.log(JSON.stringify(results, null, 2));
else console.log(markdown);
Deno.exit(errors.length > 0 ? 1 : 0);
