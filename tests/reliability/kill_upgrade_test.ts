// `unistore upgrade` on a unified ostree host killed with SIGKILL at the fault points it passes
// (kill_matrix.ts). upgrade.ts itself carries no fault points (it is not ours to edit): the
// points are those of the stores and pipeline modules it calls: composefs import (objects,
// streams, tags), containers-storage rebuild (layers, big data, image record) and the ostree
// commit synthesis (staged objects, published objects and commits, ref). After each kill every
// store passes its checks and the rerun deploys exactly what an uninterrupted upgrade deploys.

import assert from "node:assert/strict";
import { hostFixtureTest } from "../fixtures/host/mod.ts";
import { CRASH_TOOLS, HostTemplate } from "./crash_host.ts";
import { assertPointsReached, describeMatrix, runKillMatrix } from "./kill_matrix.ts";
import { ostreeDeployments } from "./store_checks.ts";

hostFixtureTest(
  "upgrade of a unified ostree host survives SIGKILL at its fault points",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins);
    await template.readyForUpgrade(`${fs.mountpoint}/oci`);

    const r = await runKillMatrix({
      template,
      args: ["upgrade"],
      podman: true,
      extraOutcome: async (host) => ({ deployments: await ostreeDeployments(host) }),
      traceDir: fs.dir,
    });
    console.log(describeMatrix("upgrade, unified ostree host, xfs", r));
    assertPointsReached(r, [
      "composefs.object-linked",
      "composefs.stream-registered",
      "composefs.ref-written",
      "cstorage.layer-complete",
      "cstorage.image-recorded",
      "ostree.file-staged",
      "ostree.objects-published",
      "ostree.commits-published",
      "ostree.ref-written",
    ]);
    assert.deepEqual(r.failures, []);
  },
);
