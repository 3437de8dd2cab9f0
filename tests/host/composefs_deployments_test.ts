// Native composefs host deployments from a hand-built tree laid out as bootc writes it:
// BLS entries (+ entries.staged), state/deploy/<id>/<id>.origin, run/composefs/staged-deployment,
// the booted digest in proc/cmdline.

import assert from "node:assert/strict";
import {
  listComposefsDeployments,
  parseComposefsOrigin,
  parseComposefsStagedMarker,
} from "../../lib/host/composefs_deployments.ts";
import { KernelCmdline } from "../../lib/host/cmdline.ts";
import { HostFileError } from "../../lib/host/errors.ts";
import { fakeDigest, type TreeNode, withHostTree } from "./host_tree.ts";

const A = fakeDigest("a"); // rollback
const B = fakeDigest("b"); // booted
const C = fakeDigest("c"); // staged
const MANIFEST = `sha256:${"9".repeat(64)}`;

function entry(
  title: string,
  version: string,
  sortKey: string,
  id: string,
  insecure = false,
): string {
  return [
    `title ${title}`,
    `version ${version}`,
    `sort-key ${sortKey}`,
    `linux /boot/bootc_composefs-${id}/vmlinuz`,
    `initrd /boot/bootc_composefs-${id}/initrd`,
    `options root=UUID=6f0d rw composefs=${insecure ? "?" : ""}${id}`,
    "",
  ].join("\n");
}

function origin(image: string, bootType = "bls"): string {
  // tini's layout: "key = value" with spaces (the reader trims either way).
  return `[origin]\ncontainer-image-reference = ostree-unverified-image:docker://${image}\n\n` +
    `[boot]\nboot_type = ${bootType}\ndigest = ${
      "d".repeat(64)
    }\n\n[image]\nmanifest_digest = ${MANIFEST}\n`;
}

function host(extra: Record<string, TreeNode> = {}): Record<string, TreeNode> {
  return {
    "proc/cmdline":
      `BOOT_IMAGE=/boot/bootc_composefs-${B}/vmlinuz root=UUID=6f0d rw composefs=${B}\n`,
    // Booted B was staged over A: B is primary (-1, sort-key ...-0), A secondary.
    "boot/loader/entries/bootc_fedora-42.2-1.conf": entry(
      "Fedora 42.2",
      "42.2",
      "bootc-fedora-0",
      B,
    ),
    "boot/loader/entries/bootc_fedora-42.1-0.conf": entry(
      "Fedora 42.1",
      "42.1",
      "bootc-fedora-1",
      A,
      true,
    ),
    "boot/loader/entries.staged/bootc_fedora-42.3-1.conf": entry(
      "Fedora 42.3",
      "42.3",
      "bootc-fedora-0",
      C,
    ),
    [`sysroot/state/deploy/${A}/${A}.origin`]: origin("quay.io/org/os:42.1"),
    [`sysroot/state/deploy/${A}/etc/hostname`]: "h\n",
    [`sysroot/state/deploy/${A}/var`]: { symlink: "../../os/default/var" },
    [`sysroot/state/deploy/${B}/${B}.origin`]: origin("quay.io/org/os:42.2"),
    [`sysroot/state/deploy/${C}/${C}.origin`]: origin("quay.io/org/os:42.3"),
    "sysroot/state/os/default/var": { dir: true },
    "sysroot/composefs/meta.json": "{}",
    "run/composefs/staged-deployment": JSON.stringify({ depl_id: C, finalization_locked: true }),
    ...extra,
  };
}

Deno.test("composefs deployments: booted from the cmdline, staged from the marker, rollback = the other entry", async () => {
  await withHostTree(host(), (root) => {
    const d = listComposefsDeployments(root);
    assert.equal(d.booted?.id, B);
    assert.equal(
      d.booted?.origin?.imageReference,
      "ostree-unverified-image:docker://quay.io/org/os:42.2",
    );
    assert.equal(d.booted?.origin?.bootType, "bls");
    assert.equal(d.booted?.origin?.manifestDigest, MANIFEST);
    assert.equal(d.booted?.stateDir, `${root.composefsStateDeploy}/${B}`);
    assert.equal(d.booted?.missingVerityAllowed, false);
    assert.equal(d.staged?.id, C);
    assert.equal(d.staged?.entry.staged, true);
    assert.equal(d.staged?.downloadOnly, true);
    assert.equal(d.rollback?.id, A);
    assert.equal(d.rollback?.missingVerityAllowed, true);
    assert.equal(
      d.rollback?.origin?.imageReference,
      "ostree-unverified-image:docker://quay.io/org/os:42.1",
    );
    assert.deepEqual(d.others, []);
    assert.deepEqual(d.all.map((x) => x.id), [B, A, C]);
    assert.equal(d.rollbackQueued, false);
    assert.deepEqual(d.orphanStateDirs, []);
    assert.deepEqual(d.problems, []);
  });
});

Deno.test("composefs deployments: booted into the rollback (default entry differs) means rollback queued", async () => {
  await withHostTree(
    host({ "proc/cmdline": `rw composefs=?${A}\n`, "run/composefs/staged-deployment": "" }),
    (root) => {
      // An empty marker file is broken JSON: an error naming the file.
      assert.throws(
        () => listComposefsDeployments(root),
        (e) => e instanceof HostFileError && e.path === root.composefsStagedDeployment,
      );
    },
  );
  await withHostTree(host({ "proc/cmdline": `rw composefs=?${A}\n` }), async (root, dir) => {
    await Deno.remove(`${dir}/run/composefs/staged-deployment`);
    const d = listComposefsDeployments(root);
    assert.equal(d.booted?.id, A);
    assert.equal(d.rollback?.id, B);
    assert.equal(d.rollbackQueued, true);
    assert.equal(d.staged, null);
    // The staged entry without a marker is just another entry.
    assert.deepEqual(d.others.map((x) => x.id), [C]);
  });
});

Deno.test("composefs deployments: missing origin, stale marker and orphan state dirs are reported", async () => {
  const orphan = fakeDigest("f");
  await withHostTree(
    host({
      [`sysroot/state/deploy/${orphan}/${orphan}.origin`]: origin("quay.io/org/os:old"),
      "run/composefs/staged-deployment": JSON.stringify({
        depl_id: fakeDigest("e"),
        finalization_locked: false,
      }),
    }),
    async (root, dir) => {
      await Deno.remove(`${dir}/sysroot/state/deploy/${A}/${A}.origin`);
      const d = listComposefsDeployments(root);
      assert.equal(d.rollback?.id, A);
      assert.equal(d.rollback?.origin, null);
      assert.equal(d.staged, null);
      assert.deepEqual(d.orphanStateDirs, [orphan]);
      assert.equal(d.problems.length, 2);
      assert.match(
        d.problems[0],
        new RegExp(`bootc_fedora-42.1-0.conf boots ${A}, which has no .*${A}\\.origin`),
      );
      assert.match(d.problems[1], /staged-deployment names e+, which no boot entry boots/);
    },
  );
});

Deno.test("composefs deployments: an explicit cmdline overrides proc/cmdline; none means nothing booted", async () => {
  await withHostTree(host(), (root) => {
    const none = listComposefsDeployments(root, null);
    assert.equal(none.booted, null);
    assert.equal(none.rollback, null);
    assert.equal(none.rollbackQueued, false);
    assert.equal(none.staged?.id, C);
    assert.deepEqual(none.others.map((x) => x.id), [B, A]);
    const viaV1 = listComposefsDeployments(
      root,
      KernelCmdline.parse(`composefs.digest=v1-sha512-12:${A}`),
    );
    assert.equal(viaV1.booted?.id, A);
  });
});

Deno.test("origin and staged marker parsers: values trimmed; bad input names the file", () => {
  const o = parseComposefsOrigin(origin("q/x:1", "uki"), "/r/x.origin");
  assert.equal(o.bootType, "uki");
  assert.equal(o.bootDigest, "d".repeat(64));
  assert.equal(
    o.keyfile.getRaw("origin", "container-image-reference")?.trim(),
    "ostree-unverified-image:docker://q/x:1",
  );
  assert.throws(
    () => parseComposefsOrigin("[origin]\nthis line has no equals sign\n", "/r/x.origin"),
    (e) => e instanceof HostFileError && e.path === "/r/x.origin" && /line 2/.test(e.message),
  );
  assert.deepEqual(
    parseComposefsStagedMarker('{"depl_id":"ab","finalization_locked":false}', "m"),
    {
      deploymentId: "ab",
      finalizationLocked: false,
    },
  );
  for (const bad of ["[]", '{"depl_id":1,"finalization_locked":false}', '{"depl_id":"a"}', "{"]) {
    assert.throws(
      () => parseComposefsStagedMarker(bad, "/r/run/composefs/staged-deployment"),
      (e) => e instanceof HostFileError && e.path === "/r/run/composefs/staged-deployment",
      bad,
    );
  }
});
