// `set-unified full` killed with SIGKILL at every fault point it passes (kill_matrix.ts): on an
// ostree host (podman pull → composefs → ostree dedupe) and on a native composefs host
// (composefs → containers-storage rebuild), both on XFS; and a sample of the points on ext4 in
// enabled-with-copy mode. After each kill: ostree fsck, composefs fsck (deep), containers-storage
// checkImage (deep), no bootc.json unless the kill came after its write; then a rerun completes
// and leaves what an uninterrupted run leaves, judged again, and by podman images + skopeo copy.

import assert from "node:assert/strict";
import { hostFixtureTest } from "../fixtures/host/mod.ts";
import { CRASH_TOOLS, HostTemplate } from "./crash_host.ts";
import {
  assertPointsReached,
  describeMatrix,
  firstAndLastHits,
  runKillMatrix,
} from "./kill_matrix.ts";
import { judgeHost } from "./store_checks.ts";

hostFixtureTest(
  "set-unified full on an ostree host survives SIGKILL at every fault point",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins);
    const r = await runKillMatrix({
      template,
      args: ["set-unified", "full"],
      podman: true,
      traceDir: fs.dir,
    });
    console.log(describeMatrix("set-unified full, ostree host, xfs", r));
    // The matrix must have reached every step kind of this path, else it proves little.
    assertPointsReached(r, [
      "composefs.meta-written",
      "pipeline.podman-pulled",
      "composefs.object-linked",
      "composefs.stream-registered",
      "composefs.ref-written",
      "pipeline.ostree-deduped",
      "host.ostree-bound-written",
      "host.bootc-json-written",
    ]);
    assert.deepEqual(r.failures, []);
  },
);

hostFixtureTest(
  "set-unified full on a native composefs host survives SIGKILL at every fault point",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins, { kind: "composefs" });
    const r = await runKillMatrix({
      template,
      args: ["set-unified", "full", "--no-pull"],
      podman: true,
      traceDir: fs.dir,
    });
    console.log(describeMatrix("set-unified full, composefs host, xfs", r));
    assertPointsReached(r, [
      "cstorage.layer-incomplete-recorded",
      "cstorage.layer-diff-written",
      "cstorage.layer-complete",
      "cstorage.image-big-data-written",
      "cstorage.image-recorded",
      "host.bootc-json-written",
    ]);
    assert.deepEqual(r.failures, []);
  },
);

hostFixtureTest(
  "set-unified full --mode enabled-with-copy survives SIGKILL at a sample of fault points",
  "ext4",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins);
    const r = await runKillMatrix({
      template,
      args: ["set-unified", "full", "--mode", "enabled-with-copy"],
      select: firstAndLastHits,
      podman: true,
      traceDir: fs.dir,
    });
    console.log(describeMatrix("set-unified full enabled-with-copy, ostree host, ext4", r));
    assertPointsReached(r, ["host.bootc-json-written"]);
    assert.deepEqual(r.failures, []);
  },
);

hostFixtureTest(
  "set-unified full names again the nameless images a killed podman pull leaves",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins);
    const reference = await template.copy("reference");
    const host = await template.copy("nameless");
    try {
      assert.equal((await reference.run(["set-unified", "full"])).code, 0);
      const expected = (await judgeHost(reference)).images;
      // The state a SIGKILL between podman's image record and its names leaves (found by the
      // random kills): the images are there, complete, without names.
      await Deno.mkdir(host.store, { recursive: true, mode: 0o700 });
      for (const i of expected) {
        await host.podman("pull", "--quiet", "--tls-verify=false", i.names[0]);
        await host.podman("untag", i.id);
      }
      assert.deepEqual((await judgeHost(host)).images.map((i) => i.names), [[], []]);

      const r = await host.run(["set-unified", "full"]);
      await host.cleanupAfterKill();
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const v = await judgeHost(host);
      assert.deepEqual(v.problems, []);
      assert.deepEqual(v.images, expected);
    } finally {
      await reference.remove();
      await host.remove();
    }
  },
);
