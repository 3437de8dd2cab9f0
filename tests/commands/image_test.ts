// `unistore image import` and `internals cat-layer` as a user runs them:
// a real process, a host root directory, an OCI layout full of awkward layers.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { buildAwkwardImage } from "../fixtures/oci/mod.ts";
import { buildRunnableImage } from "../fixtures/cstorage/images.ts";
import { unmountBelow } from "../fixtures/cstorage/podman.ts";
import { run, runOk } from "../harness/run.ts";
import { toolTest } from "../harness/tools.ts";

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
    assert.deepEqual(report.layers.map((l: { diffId: string }) => l.diffId), image.diffIds);
    assert.ok(report.layers.every((l: { skipped: boolean }) => !l.skipped));
    assert.deepEqual(report.tags.sort(), ["localhost/bootc-" + image.manifestDigest, "v1"].sort());
    assert.equal((await Deno.stat(`${root}/sysroot/composefs/meta.json`)).isFile, true);

    for (const diffId of image.diffIds) {
      assert.equal(await catLayerSha256(root, diffId), diffId);
    }

    const again = await unistore("--root", root, "image", "import", `oci:${work}/oci:v1`, "--json");
    assert.equal(again.code, 0, again.stderr);
    assert.ok(JSON.parse(again.stdout).layers.every((l: { skipped: boolean }) => l.skipped));

    const human = await unistore("--root", root, "image", "import", `oci:${work}/oci:v1`);
    assert.match(human.stdout, /layers: {3}\d+ \(0 imported, \d+ already present\)/);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("image import and cat-layer refuse bad input with usage or operational errors", async () => {
  const work = await Deno.makeTempDir({ prefix: "unistore-image-" });
  try {
    const badSource = await unistore("--root", work, "image", "import", "docker.io/x");
    assert.equal(badSource.code, 2);
    assert.match(badSource.stderr, /expected oci:DIR\[:TAG\]/);
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
