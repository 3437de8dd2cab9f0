// An image unistore writes from an OCI layout, judged by the real tools: podman lists it under
// its config digest and runs it, skopeo exports it (re-verifying every DiffID), tar-split asm
// rebuilds every layer, and the store equals the one skopeo itself writes from the same layout
// (records, tar-split entries, diff trees), except where c/storage 1.43 cannot store the image
// at all (a contiguous-file entry), which unistore stores and podman runs.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { OciLayout } from "../../../lib/oci/layout.ts";
import { CStorage, layerChainIds } from "../../../lib/stores/cstorage/mod.ts";
import { runOk } from "../../harness/run.ts";
import { buildRunnableImage } from "../../fixtures/cstorage/images.ts";
import { importOciImage } from "../../fixtures/cstorage/oci_import.ts";
import {
  podman,
  podmanRun,
  skopeoFromStore,
  skopeoToStore,
  storeTest,
  tempStore,
  TOOLS,
} from "../../fixtures/cstorage/podman.ts";
import { tarSplitSteps } from "../../fixtures/cstorage/tar_split_view.ts";
import { describeTree, treeDifferences, withoutRecentTimes } from "../../fixtures/cstorage/tree.ts";
import { mostlyZeros, pseudoRandomBytes } from "../../fixtures/oci/mod.ts";

const sha256hex = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
/** Fixture headers are dated 2023; anything after this is a creation time. */
const FIXTURE_EPOCH_END = 1_750_000_000;

async function readJson(path: string) {
  return JSON.parse(await Deno.readTextFile(path));
}

function withoutCreated(records: Record<string, unknown>[]) {
  return records.map(({ created: _, ...rest }) => rest);
}

storeTest(
  "an image unistore writes equals skopeo's, runs under podman and exports through skopeo",
  ["xfs"],
  [TOOLS.podman, TOOLS.skopeo, TOOLS.runc, TOOLS.tarSplit, TOOLS.busybox],
  async (fs, bins) => {
    await using ours = await tempStore(fs.mountpoint);
    await using ref = await tempStore(fs.mountpoint);
    const oci = `${fs.mountpoint}/oci`;
    const img = await buildRunnableImage(oci, "v1");
    const imageId = img.configDigest.slice(7);

    using cs = await CStorage.open(ours.root, { create: true });
    const written = await importOciImage(cs, oci, "v1", ["localhost/run:v1"]);
    assert.equal(written.imageId, imageId);
    assert.deepEqual(
      written.layers.map((l) => [l.id, l.reused]),
      layerChainIds(img.diffIds).map((id) => [id, false]),
    );
    await skopeoToStore(bins.skopeo, ref, oci, "v1", "localhost/run:v1");

    // The records are c/storage's, key for key (creation times aside).
    assert.deepEqual(
      withoutCreated(await readJson(`${ours.root}/overlay-layers/layers.json`)),
      withoutCreated(await readJson(`${ref.root}/overlay-layers/layers.json`)),
    );
    assert.deepEqual(
      await readJson(`${ours.root}/overlay-images/images.json`),
      await readJson(`${ref.root}/overlay-images/images.json`),
    );
    for (const f of await Array.fromAsync(Deno.readDir(`${ref.root}/overlay-images/${imageId}`))) {
      assert.deepEqual(
        await Deno.readFile(`${ours.root}/overlay-images/${imageId}/${f.name}`),
        await Deno.readFile(`${ref.root}/overlay-images/${imageId}/${f.name}`),
        f.name,
      );
    }
    const normalize = withoutRecentTimes(FIXTURE_EPOCH_END);
    for (const id of layerChainIds(img.diffIds)) {
      // Same tar-split entries and raw bytes, same extracted files and metadata.
      assert.deepEqual(
        await tarSplitSteps(`${ours.root}/overlay-layers/${id}.tar-split.gz`),
        await tarSplitSteps(`${ref.root}/overlay-layers/${id}.tar-split.gz`),
        `tar-split of ${id}`,
      );
      const diff = (r: string) => describeTree(`${r}/overlay/${id}/diff`);
      assert.deepEqual(
        treeDifferences(diff(ours.root), diff(ref.root), normalize),
        [],
        `diff/ of ${id}`,
      );
      const layerDir = (r: string) => describeTree(`${r}/overlay/${id}`, { times: false });
      const skeleton = (m: Map<string, unknown>) =>
        [...m.entries()].filter(([k]) => !k.startsWith("diff/") && k !== "link" && k !== "lower")
          .map(([k, v]) => [k, v]);
      assert.deepEqual(
        skeleton(layerDir(ours.root)),
        skeleton(layerDir(ref.root)),
        `overlay/${id}`,
      );
      const link = await Deno.readTextFile(`${ours.root}/overlay/${id}/link`);
      assert.match(link, /^[A-Z2-7]{26}$/);
      assert.equal(await Deno.readLink(`${ours.root}/overlay/l/${link}`), `../${id}/diff`);
    }

    // podman: listed under the config digest, and it runs with every layer applied.
    const listed = await podman(bins.podman, ours, [
      "images",
      "--no-trunc",
      "--format",
      "{{.ID}} {{.Repository}}:{{.Tag}}",
    ]);
    assert.equal(listed.stdout.trim(), `sha256:${imageId} localhost/run:v1`);
    const out = await podmanRun(bins.podman, ours, "localhost/run:v1", [
      "sh",
      "-c",
      "cat /etc/one; ls /var/cache; test -e /etc/exactly-65 || echo wh-file; " +
      "test -e /usr/share/very-long-directory-name-that-goes-on-and-on || echo wh-dir; " +
      "cat /etc/added-in-tweak; stat -c '%a %u:%g %n' /usr/bin/su /usr/bin/wall /etc/added-in-tweak; " +
      "sha256sum /data/blob /usr/lib/big.img",
    ]);
    assert.equal(
      out,
      [
        "replaced in layer 1",
        "new",
        "wh-file",
        "wh-dir",
        "tweak",
        "4755 0:0 /usr/bin/su",
        "2755 0:5 /usr/bin/wall",
        "640 7:8 /etc/added-in-tweak",
        `${sha256hex(pseudoRandomBytes(1024 * 1024, 17))}  /data/blob`,
        `${sha256hex(mostlyZeros(3 * 1024 * 1024))}  /usr/lib/big.img`,
        "",
      ].join("\n"),
    );

    // skopeo rebuilds every layer from tar-split + diff/ and re-verifies the DiffIDs.
    await skopeoFromStore(bins.skopeo, ours, "localhost/run:v1", `${fs.mountpoint}/exported`, "x");
    const exported = await (await OciLayout.open(`${fs.mountpoint}/exported`)).resolveImage("x");
    assert.deepEqual(exported.diffIds, img.diffIds);

    // tar-split's own tool rebuilds each layer to its diff-digest.
    for (const layer of await cs.imageLayers(imageId)) {
      const outFile = `${fs.mountpoint}/asm.tar`;
      await runOk([
        bins["tar-split"],
        "asm",
        "--input",
        `${ours.root}/overlay-layers/${layer.id}.tar-split.gz`,
        "--path",
        `${ours.root}/overlay/${layer.id}/diff`,
        "--output",
        outFile,
      ]);
      assert.equal(`sha256:${sha256hex(await Deno.readFile(outFile))}`, layer.diffDigest);
    }
    const report = await cs.checkImage(imageId, { deep: true });
    assert.ok(report.ok, JSON.stringify(report.problems));

    // An image c/storage 1.43 refuses (typeflag 7): unistore stores it, reusing the layers it
    // shares with the first image; podman runs it and skopeo exports it.
    const contig = await buildRunnableImage(oci, "contig", { withContiguous: true });
    const second = await importOciImage(cs, oci, "contig", ["localhost/run:contig"]);
    assert.deepEqual(second.layers.map((l) => l.reused), [
      true,
      true,
      true,
      false,
      false,
      false,
      false,
    ]);
    await assert.rejects(
      () => skopeoToStore(bins.skopeo, ref, oci, "contig", "localhost/run:contig"),
      /unhandled tar header type 55/,
    );
    const contiguous = await podmanRun(bins.podman, ours, "localhost/run:contig", [
      "sha256sum",
      "/srv/contiguous",
    ]);
    assert.equal(contiguous, `${sha256hex(pseudoRandomBytes(3000, 16))}  /srv/contiguous\n`);
    await skopeoFromStore(
      bins.skopeo,
      ours,
      "localhost/run:contig",
      `${fs.mountpoint}/exported`,
      "contig",
    );
    const exported2 = await (await OciLayout.open(`${fs.mountpoint}/exported`)).resolveImage(
      "contig",
    );
    assert.deepEqual(exported2.diffIds, contig.diffIds);
    const both = await podman(bins.podman, ours, [
      "images",
      "--format",
      "{{.Repository}}:{{.Tag}}",
    ]);
    assert.deepEqual(both.stdout.trim().split("\n").sort(), [
      "localhost/run:contig",
      "localhost/run:v1",
    ]);
  },
);
