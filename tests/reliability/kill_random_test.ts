// SIGKILL at random moments: `set-unified full` and `upgrade` started in a session of their own
// and killed with everything they started (podman, skopeo, ostree admin deploy), after delays
// spread over the length of an uninterrupted run (kill_matrix.ts runRandomKills). The delays come
// from a seeded generator: UNISTORE_KILL_SEED=N replays a run; the seed is in every failure.
// After each kill: every store passes its checks, bootc.json only with every store complete,
// and a rerun leaves what an uninterrupted run leaves.

import assert from "node:assert/strict";
import { hostFixtureTest } from "../fixtures/host/mod.ts";
import { CRASH_TOOLS, HostTemplate } from "./crash_host.ts";
import { describeRandomKills, runRandomKills } from "./kill_matrix.ts";
import { ostreeDeployments } from "./store_checks.ts";

function seed(): number {
  const fixed = Deno.env.get("UNISTORE_KILL_SEED");
  return fixed ? Number(fixed) : Math.floor(Math.random() * 2 ** 31);
}

hostFixtureTest(
  "set-unified full survives SIGKILL of its whole session at random moments",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins);
    const s = seed();
    const r = await runRandomKills({
      template,
      args: ["set-unified", "full"],
      kills: 10,
      seed: s,
      podman: true,
      traceDir: fs.dir,
    });
    console.log(describeRandomKills("set-unified full, ostree host, xfs", s, r));
    assert.deepEqual(r.failures, []);
  },
);

hostFixtureTest(
  "upgrade survives SIGKILL of its whole session at random moments",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins);
    await template.readyForUpgrade(`${fs.mountpoint}/oci`);
    const s = seed();
    const r = await runRandomKills({
      template,
      args: ["upgrade"],
      kills: 8,
      seed: s,
      podman: true,
      extraOutcome: async (host) => ({ deployments: await ostreeDeployments(host) }),
      traceDir: fs.dir,
    });
    console.log(describeRandomKills("upgrade, unified ostree host, xfs", s, r));
    assert.deepEqual(r.failures, []);
  },
);
