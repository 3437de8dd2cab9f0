// fsckImages on ext4, where the stores cannot share blocks: the reflink probe says so (and the
// human output warns), `unified = "enabled"` refuses to rebuild containers-storage by copying
// (the repair fails, naming the filesystem, and the problem stays: exit 4), while
// `enabled-with-copy` copies (exit 1, then clean). The run's entries say which repair each
// problem needs; skopeo reads the copied image back, re-verifying every DiffID.

import assert from "node:assert/strict";
import { formatFsckHuman } from "../../lib/commands/fsck.ts";
import { writeBootcJson } from "../../lib/host/flags.ts";
import { HostRoot } from "../../lib/host/root.ts";
import { fsckImages, NOT_IN_CONTAINERS_STORAGE } from "../../lib/pipeline/fsck_images.ts";
import { clearProbeCache } from "../../lib/reflink/probe.ts";
import { runOk } from "../harness/run.ts";
import { unmountBelow } from "../fixtures/cstorage/podman.ts";
import {
  buildBootableImage,
  buildComposefsHost,
  COMPOSEFS_HOST_TOOLS,
  hostFixtureTest,
} from "../fixtures/host/mod.ts";

hostFixtureTest(
  "fsckImages without reflinks: enabled refuses to copy, enabled-with-copy copies",
  "ext4",
  COMPOSEFS_HOST_TOOLS,
  async (fs, bins) => {
    clearProbeCache();
    const oci = `${fs.mountpoint}/oci`;
    await buildBootableImage(oci, { tag: "v1", version: "1.0" });
    await using host = await buildComposefsHost(`${fs.mountpoint}/host`, {
      images: [{ ref: "os:1", layout: `${oci}:v1` }],
      booted: 0,
      bins,
    });
    const root = new HostRoot(host.dir);
    const [img] = host.images;
    const storePath = `${host.sysroot}/composefs/bootc/storage`;
    writeBootcJson(root, "enabled");

    const found = await fsckImages(root);
    assert.equal(found.report.reflinksSupported, false);
    assert.equal(found.exitCode, 4);
    assert.equal(found.hostKind, "composefs");
    assert.deepEqual(
      found.entries.map((e) => [e.key, e.status, e.deployments, e.problems]),
      [[
        img.pulled.configDigest,
        "fail",
        [`booted ${img.id}`],
        [{ text: NOT_IN_CONTAINERS_STORAGE, repair: "export-to-containers-storage" }],
      ]],
    );
    assert.deepEqual(formatFsckHuman(found).slice(0, 3), [
      "unistore fsck: checking image stores",
      "unistore fsck: WARNING: filesystem does not support reflinks (FICLONE); the image " +
      "stores are NOT sharing blocks",
      `  [FAIL] ${img.imageName} - ${NOT_IN_CONTAINERS_STORAGE}`,
    ]);

    // enabled = reflinks or nothing: the repair fails before writing a layer.
    const refused = await fsckImages(root, { repair: true });
    assert.equal(refused.exitCode, 4);
    assert.equal(refused.repairs.length, 1);
    assert.equal(refused.repairs[0].action, "export-to-containers-storage");
    assert.equal(refused.repairs[0].ok, false);
    assert.match(refused.repairs[0].detail, /reflinks are not available for .*\(ext4\)/);
    assert.equal(refused.report.images[0].repaired, true, "a repair was attempted");
    assert.deepEqual(refused.report.images[0].issues, [NOT_IN_CONTAINERS_STORAGE]);
    assert.deepEqual(formatFsckHuman(refused, { repair: true }).slice(2, 5), [
      `  [REPAIR] Restoring ${img.imageName} to containers-storage...`,
      `  [REPAIR FAILED] ${img.imageName}: ${refused.repairs[0].detail}`,
      `  [FAIL] ${img.imageName} - ${NOT_IN_CONTAINERS_STORAGE}`,
    ]);

    // enabled-with-copy: copied, and the second check is clean.
    writeBootcJson(root, "enabled-with-copy");
    const copied = await fsckImages(root, { repair: true });
    assert.equal(copied.exitCode, 1, JSON.stringify(copied.repairs));
    assert.equal(copied.repairs[0].ok, true);
    assert.deepEqual(copied.report.images[0].issues, []);
    assert.equal(copied.report.images[0].inContainersStorage, true);
    const again = await fsckImages(root, { deep: true });
    assert.equal(again.exitCode, 0);
    assert.equal(again.entries[0].status, "ok");
    const runroot = await Deno.makeTempDir({ prefix: "uscs-run-" });
    try {
      await runOk([
        bins.skopeo,
        "copy",
        "--quiet",
        `containers-storage:[overlay@${storePath}+${runroot}]${
          img.pulled.configDigest.slice("sha256:".length)
        }`,
        `oci:${fs.mountpoint}/exported:x`,
      ]);
    } finally {
      await unmountBelow(storePath);
      await Deno.remove(runroot, { recursive: true });
    }
  },
);
