// ENOSPC: `set-unified full` on a small loop filesystem filled by a filler file up to a few MiB.
// On XFS (reflinks) the pull into containers-storage is what runs out; on ext4 in
// enabled-with-copy mode, with both images pulled by podman beforehand, the copy into composefs
// runs out, inside unistore's own write path. Either way: exit 1, an error that names ENOSPC and
// the store, no flag, every store passes its checks (nothing half-written is visible: no stream,
// tag or image record for what failed); the filler removed, a rerun completes.

import assert from "node:assert/strict";
import { createLoopFs, type FsKind, type LoopFs, loopFsSkipReason } from "../harness/loopfs.ts";
import { run, runOk } from "../harness/run.ts";
import { findTool, requireRoot, requireTools, skippableTest } from "../harness/tools.ts";
import { CRASH_TOOLS, HostTemplate } from "./crash_host.ts";
import { judgeHost } from "./store_checks.ts";

const FS_MIB = 320;
const BULK_MIB = 8;

/** Like hostFixtureTest, on a loop filesystem of FS_MIB MiB. */
function smallFsTest(
  name: string,
  kind: FsKind,
  fn: (fs: LoopFs, bins: Record<string, string>) => Promise<void>,
) {
  const reasons = [requireRoot(), requireTools(CRASH_TOOLS), loopFsSkipReason(kind)]
    .filter((r) => r !== null);
  skippableTest(`${name} [${kind}]`, reasons.length === 0 ? null : reasons.join("; "), async () => {
    const bins: Record<string, string> = {};
    for (const t of CRASH_TOOLS) bins[t.bin] = findTool(t.bin)!;
    await using fs = await createLoopFs(kind, { sizeMiB: FS_MIB });
    await fn(fs, bins);
  });
}

/** Free bytes of the filesystem (root's reserve included). */
async function freeBytes(mountpoint: string): Promise<number> {
  await runOk(["sync", "-f", mountpoint]);
  const [blocks, size] = (await runOk(["stat", "-f", "-c", "%f %S", mountpoint])).stdout.trim()
    .split(" ").map(Number);
  return blocks * size;
}

/**
 * Fills `fs` until exactly `leaveMiB` MiB can still be allocated; returns the filler dir. What
 * `df` calls free is not what a write gets (ext4 keeps blocks back for its own metadata), so a
 * gap file of `leaveMiB` is allocated first, everything else is filled with files of halving
 * sizes until not even 64 KiB fit, then the gap is removed.
 */
async function fill(fs: LoopFs, leaveMiB: number): Promise<string> {
  const dir = `${fs.mountpoint}/filler`;
  await Deno.mkdir(dir);
  if (leaveMiB > 0) await runOk(["fallocate", "-l", String(leaveMiB * 2 ** 20), `${dir}/gap`]);
  let n = 0;
  for (let size = await freeBytes(fs.mountpoint); size >= 65536;) {
    const file = `${dir}/fill-${n}`;
    if ((await run(["fallocate", "-l", String(size), file])).success) n++;
    else {
      await Deno.remove(file).catch(() => {});
      size = Math.floor(size / 2);
    }
  }
  await Deno.remove(`${dir}/gap`).catch(() => {});
  return dir;
}

async function enospcThenRerun(
  fs: LoopFs,
  bins: Record<string, string>,
  mode: string,
  leaveMiB: number,
  expect: RegExp,
  opts: { prePull?: boolean } = {},
) {
  await using template = await HostTemplate.build(fs.mountpoint, bins, { bulkMiB: BULK_MIB });
  const host = template.asHost();
  if (opts.prePull) {
    // unistore finds them by config digest and pulls nothing: only its own writes remain.
    await Deno.mkdir(host.store, { recursive: true, mode: 0o700 });
    for (const name of template.imageNames) {
      await host.podman("pull", "--quiet", "--tls-verify=false", name);
    }
  }
  const filler = await fill(fs, leaveMiB);

  const full = await host.run(["set-unified", "full", "--mode", mode]);
  await host.cleanupAfterKill();
  const output = full.stdout + full.stderr;
  assert.equal(full.code, 1, output);
  assert.match(output, /ENOSPC|no space left on device/i);
  assert.match(output, expect);
  // The failing write names its file, never just a descriptor (`write "fd 33": ENOSPC`).
  assert.doesNotMatch(output, /"fd \d+"/);
  assert.match(output, /unified storage NOT enabled: the flag was not written/);
  const after = await judgeHost(host);
  assert.deepEqual(after.problems, []);
  assert.equal(after.bootcJson, null);
  assert.equal(after.ostreeBound, false);
  assert.deepEqual(after.incompleteLayers, []);

  await Deno.remove(filler, { recursive: true });
  const rerun = await host.run(["set-unified", "full", "--mode", mode]);
  await host.cleanupAfterKill();
  assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
  const final = await judgeHost(host);
  assert.deepEqual(final.problems, []);
  assert.deepEqual(final.bootcJson, { version: 1, unified: mode });
  assert.equal(final.images.length, 2);
  assert.equal(final.composefsTags.length, 4, JSON.stringify(final.composefsTags));
  return after;
}

smallFsTest(
  "set-unified full with 2 MiB free: podman's ENOSPC, nothing flagged, rerun completes",
  "xfs",
  async (fs, bins) => {
    const after = await enospcThenRerun(
      fs,
      bins,
      "enabled",
      2,
      /podman pull into \S+\/sysroot\/ostree\/bootc\/storage failed: .*no space left on device/,
    );
    assert.deepEqual(after.composefsTags, []);
  },
);

smallFsTest(
  "set-unified full copying into a full composefs: ENOSPC names both stores, rerun completes",
  "ext4",
  async (fs, bins) => {
    const after = await enospcThenRerun(
      fs,
      bins,
      "enabled-with-copy",
      BULK_MIB / 2,
      /\/sysroot\/ostree\/bootc\/storage -> \S+\/sysroot\/composefs: .*ENOSPC/,
      { prePull: true },
    );
    // What failed left no stream and no tag: the image it was copying is not in composefs.
    assert.deepEqual(after.composefsTags, []);
    assert.equal(after.images.length, 2);
  },
);
