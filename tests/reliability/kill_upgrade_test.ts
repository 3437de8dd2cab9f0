// `unistore upgrade` on a unified ostree host killed with SIGKILL at the fault points it passes
// (kill_matrix.ts). upgrade.ts itself carries no fault points (it is not ours to edit): the
// points are those of the stores and pipeline modules it calls: composefs import (objects,
// streams, tags), containers-storage rebuild (layers, big data, image record) and the ostree
// commit synthesis (staged objects, published objects and commits, ref). After each kill every
// store passes its checks and the rerun deploys exactly what an uninterrupted upgrade deploys.

import assert from "node:assert/strict";
import { buildBootableImage, hostFixtureTest } from "../fixtures/host/mod.ts";
import { CRASH_TOOLS, HostTemplate } from "./crash_host.ts";
import { describeMatrix, runKillMatrix } from "./kill_matrix.ts";
import { ostreeDeployments } from "./store_checks.ts";

hostFixtureTest(
  "upgrade of a unified ostree host survives SIGKILL at its fault points",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins);
    // The template: unified (bootc.json, ostree bound), then v3 pushed over the booted tag.
    const unified = await template.asHost().run(["set-unified", "full"]);
    assert.equal(unified.code, 0, unified.stderr + unified.stdout);
    await template.asHost().cleanupAfterKill();
    const layout = `${fs.mountpoint}/oci`;
    await buildBootableImage(layout, { tag: "v3", version: "3", runnable: { bulkMiB: 1 } });
    await template.registry.push(layout, "v3", "unistore/os:2");

    const r = await runKillMatrix({
      template,
      args: ["upgrade"],
      podman: true,
      extraOutcome: async (host) => ({ deployments: await ostreeDeployments(host) }),
      traceDir: fs.dir,
    });
    console.log(describeMatrix("upgrade, unified ostree host, xfs", r));
    for (
      const p of [
        "composefs.object-linked",
        "composefs.stream-registered",
        "composefs.ref-written",
        "cstorage.layer-complete",
        "cstorage.image-recorded",
        "ostree.file-staged",
        "ostree.objects-published",
        "ostree.commits-published",
        "ostree.ref-written",
      ]
    ) assert.ok(r.points[p], `${p} not reached: ${JSON.stringify(r.points)}`);
    assert.deepEqual(r.failures, []);
  },
);
