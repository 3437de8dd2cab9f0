// `unistore image import` and `internals cat-layer` as a user runs them:
// a real process, a host root directory, an OCI layout full of awkward layers.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { buildAwkwardImage } from "../fixtures/oci/mod.ts";
import { buildRunnableImage } from "../fixtures/cstorage/images.ts";
import {
  podman,
  podmanRun,
  skopeoFromStore,
  storeAt,
  unmountBelow,
} from "../fixtures/cstorage/podman.ts";
import { run, runOk } from "../harness/run.ts";
import { findTool, toolTest } from "../harness/tools.ts";
import { fsTest } from "../harness/loopfs.ts";
import { buildOstreeSysroot } from "../host/ostree_sysroot.ts";
import { buildBootableImage } from "../pipeline/bootable_image.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

function unistore(...args: string[]) {
  return run([Deno.execPath(), "run", "-A", "--quiet", MAIN, ...args]);
}

/** Runs cat-layer and hashes its stdout as raw bytes. */
async function catLayerSha256(root: string, diffId: string, from = "composefs"): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      MAIN,
      "--root",
      root,
      "internals",
      "cat-layer",
      diffId,
      "--from",
      from,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return `sha256:${createHash("sha256").update(out.stdout).digest("hex")}`;
}

Deno.test("image import oci: into composefs, then cat-layer reproduces every diff_id", async () => {
  const work = await Deno.makeTempDir({ prefix: "unistore-image-" });
  try {
    const image = await buildAwkwardImage(`${work}/oci`, "v1");
    const root = `${work}/host`;
    await Deno.mkdir(`${root}/sysroot`, { recursive: true });

    const first = await unistore("--root", root, "image", "import", `oci:${work}/oci:v1`, "--json");
    assert.equal(first.code, 0, first.stderr);
    const report = JSON.parse(first.stdout);
    assert.equal(report.configDigest, image.configDigest);
    assert.equal(report.manifestDigest, image.manifestDigest);
    assert.deepEqual(
      report.composefs.layers.map((l: { diffId: string }) => l.diffId),
      image.diffIds,
    );
    assert.ok(report.composefs.layers.every((l: { skipped: boolean }) => !l.skipped));
    assert.deepEqual(
      report.composefs.tags.sort(),
      ["localhost/bootc-" + image.manifestDigest, "v1"].sort(),
    );
    assert.equal(report.ostree, null);
    assert.equal((await Deno.stat(`${root}/sysroot/composefs/meta.json`)).isFile, true);

    for (const diffId of image.diffIds) {
      assert.equal(await catLayerSha256(root, diffId), diffId);
    }

    const again = await unistore("--root", root, "image", "import", `oci:${work}/oci:v1`, "--json");
    assert.equal(again.code, 0, again.stderr);
    assert.ok(
      JSON.parse(again.stdout).composefs.layers.every((l: { skipped: boolean }) => l.skipped),
    );

    const human = await unistore("--root", root, "image", "import", `oci:${work}/oci:v1`);
    assert.match(human.stdout, /\d+ layers \(0 imported, \d+ already present\)/);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("image import and cat-layer refuse bad input with usage or operational errors", async () => {
  const work = await Deno.makeTempDir({ prefix: "unistore-image-" });
  try {
    const badSource = await unistore("--root", work, "image", "import", "docker.io/x");
    assert.equal(badSource.code, 2);
    assert.match(
      badSource.stderr,
      /expected oci:DIR\[:TAG\], containers-storage:REF or composefs:REF/,
    );
    const badTarget = await unistore("--root", work, "image", "import", "oci:/x", "--to", "nfs");
    assert.equal(badTarget.code, 2);
    assert.match(badTarget.stderr, /"nfs"/);
    const missing = await unistore("--root", work, "image", "import", `oci:${work}/nope`);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, new RegExp(`${work}/nope`));
    const badId = await unistore("--root", work, "internals", "cat-layer", "sha256:xyz");
    assert.equal(badId.code, 2);
    const noRepo = await unistore(
      "--root",
      work,
      "internals",
      "cat-layer",
      `sha256:${"a".repeat(64)}`,
    );
    assert.equal(noRepo.code, 1);
    assert.match(noRepo.stderr, /composefs/);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

toolTest(
  "internals cat-layer --from containers-storage reproduces every diff_id of a skopeo-written store",
  [{ bin: "skopeo", pkg: "skopeo" }],
  async (bins) => {
    const work = await Deno.makeTempDir({ prefix: "unistore-image-" });
    const root = `${work}/host`;
    const storage = `${root}/sysroot/ostree/bootc/storage`;
    try {
      const image = await buildRunnableImage(`${work}/oci`, "v1", { withoutBusybox: true });
      await Deno.mkdir(storage, { recursive: true });
      await runOk([
        bins.skopeo,
        "--tmpdir",
        work,
        "copy",
        "--quiet",
        `oci:${work}/oci:v1`,
        `containers-storage:[overlay@${storage}+${work}/run]localhost/cat:v1`,
      ], { env: { TMPDIR: work } });
      await unmountBelow(storage);
      for (const diffId of image.diffIds) {
        assert.equal(await catLayerSha256(root, diffId, "containers-storage"), diffId);
      }
    } finally {
      await unmountBelow(work);
      await Deno.remove(work, { recursive: true });
    }
  },
);

fsTest("image import --to composefs,ostree, then image list: one image in two stores", [
  "xfs",
], async (fs) => {
  const ostree = findTool("ostree");
  assert.ok(ostree, "ostree not found (apt-get install ostree)");
  await buildOstreeSysroot(ostree, fs.mountpoint, 1);
  const image = await buildBootableImage(`${fs.mountpoint}/oci`, "v2");
  const r = await unistore(
    "--root",
    fs.mountpoint,
    "image",
    "import",
    `oci:${fs.mountpoint}/oci:v2`,
    "--to",
    "composefs,ostree",
    "--require-reflinks",
    "--json",
  );
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.manifestDigest, image.manifestDigest);
  assert.equal(report.ostree.skippedExisting, false);
  assert.equal(report.ostree.copiedBytes, 0, "everything reflinked on XFS");
  await runOk([ostree, `--repo=${fs.mountpoint}/sysroot/ostree/repo`, "fsck", "--quiet"]);
  const meta = await runOk([
    ostree,
    `--repo=${fs.mountpoint}/sysroot/ostree/repo`,
    "show",
    report.ostree.commit,
    "--print-metadata-key=ostree-ext.composefs-synthesized",
  ]);
  assert.equal(meta.stdout.trim(), "true");

  const list = await unistore("--root", fs.mountpoint, "image", "list", "--json");
  assert.equal(list.code, 0, list.stderr);
  const images = JSON.parse(list.stdout);
  const mine = images.find((i: { configDigest: string }) => i.configDigest === image.configDigest);
  assert.ok(mine, list.stdout);
  assert.deepEqual(
    [mine.inComposefs, mine.inOstree, mine.inContainersStorage, mine.live],
    [true, true, false, false],
  );
  assert.ok(mine.names.includes("v2"));

  // composefs:REF on to ostree again: already there.
  const again = await unistore(
    "--root",
    fs.mountpoint,
    "image",
    "import",
    `composefs:v2`,
    "--to",
    "ostree",
    "--image-reference",
    `oci:${fs.mountpoint}/oci:v2`,
    "--json",
  );
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(again.stdout).ostree.skippedExisting, true);
  const human = await unistore("--root", fs.mountpoint, "image", "list");
  assert.match(
    human.stdout,
    new RegExp(`${image.configDigest.slice(7, 19)}\\s+yes\\s+yes\\s+-\\s+-\\s+`),
  );
}, { sizeMiB: 512 });

fsTest(
  "image import oci: --to containers-storage through composefs: podman runs it, skopeo verifies it",
  [
    "xfs",
  ],
  async (fs) => {
    const podmanBin = findTool("podman"), skopeo = findTool("skopeo");
    assert.ok(podmanBin && skopeo, "podman and skopeo are needed (apt-get install podman skopeo)");
    const root = `${fs.mountpoint}/host`;
    await Deno.mkdir(`${root}/sysroot`, { recursive: true });
    const image = await buildRunnableImage(`${fs.mountpoint}/oci`, "v1");
    const r = await unistore(
      "--root",
      root,
      "image",
      "import",
      `oci:${fs.mountpoint}/oci:v1`,
      "--to",
      "composefs,containers-storage",
      "--name",
      "localhost/run:v1",
      "--require-reflinks",
      "--json",
    );
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.containersStorage.imageId, image.configDigest.slice(7));
    assert.ok(report.containersStorage.clonedBytes > 0);

    const store = `${root}/sysroot/ostree/bootc/storage`;
    const runroot = await Deno.makeTempDir({ dir: "/tmp", prefix: "us-img-" });
    try {
      await using cs = storeAt(store, runroot);
      const ids = await podman(podmanBin, cs, [
        "images",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Repository}}:{{.Tag}}",
      ]);
      assert.match(ids.stdout, new RegExp(`${image.configDigest.slice(7)} localhost/run:v1`));
      const out = await podmanRun(podmanBin, cs, "localhost/run:v1", [
        "/bin/cat",
        "/etc/added-in-tweak",
      ]);
      assert.equal(out, "tweak\n");
      // skopeo re-verifies every diff_id on the way out.
      await skopeoFromStore(skopeo, cs, "localhost/run:v1", `${fs.mountpoint}/back`, "v1");
    } finally {
      await Deno.remove(runroot, { recursive: true });
    }

    // And back: containers-storage:REF into a fresh composefs repository.
    await Deno.rename(`${root}/sysroot/composefs`, `${fs.mountpoint}/old-composefs`);
    const back = await unistore(
      "--root",
      root,
      "image",
      "import",
      "containers-storage:localhost/run:v1",
      "--json",
    );
    assert.equal(back.code, 0, back.stderr);
    assert.equal(JSON.parse(back.stdout).configDigest, image.configDigest);
    for (const diffId of image.diffIds) {
      assert.equal(await catLayerSha256(root, diffId), diffId);
    }
  },
  { sizeMiB: 512 },
);
