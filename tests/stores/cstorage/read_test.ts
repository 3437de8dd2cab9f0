// Reading a store that skopeo wrote: records, lookups, big data, exact layer tars rebuilt from
// tar-split (byte-equal to the OCI layers), the merged file view (judged by a kernel overlay
// mount of the same diff directories), volatile layers, and tamper detection.

import assert from "node:assert/strict";
import { concatBytes } from "../../../lib/oci/compression.ts";
import { close, read } from "../../../ffi/fs.ts";
import { runOk } from "../../harness/run.ts";
import { toolTest } from "../../harness/tools.ts";
import { buildRunnableImage, WHITED_OUT_DIR } from "../../fixtures/cstorage/images.ts";
import { buildOciImage, TarBuilder } from "../../fixtures/oci/mod.ts";
import {
  skopeoFromStore,
  skopeoToStore,
  tempStore,
  TOOLS,
} from "../../fixtures/cstorage/podman.ts";
import { describeImageFiles, describeTree, treeDifferences } from "../../fixtures/cstorage/tree.ts";
import {
  CStorage,
  ImageNotFoundError,
  layerChainIds,
  LayerIntegrityError,
  StoreReadOnlyError,
  writeLayerTarFromStore,
} from "../../../lib/stores/cstorage/mod.ts";

/** The parts of a layer in order, as its batches hold them. */
async function* flatten<T>(batches: AsyncIterable<T[]>): AsyncGenerator<T> {
  for await (const batch of batches) {
    assert.ok(batch.length > 0, "no empty batch");
    yield* batch;
  }
}

async function* once(b: Uint8Array) {
  yield b;
}

toolTest("a store written by skopeo reads back exactly", [TOOLS.skopeo], async (bins) => {
  await using store = await tempStore();
  const oci = `${store.dir}/oci`;
  const img = await buildRunnableImage(oci, "v1", { withoutBusybox: true });
  await skopeoToStore(bins.skopeo, store, oci, "v1", "localhost/read:v1");
  using cs = await CStorage.open(store.root, { runroot: store.runroot });
  const imageId = img.configDigest.slice("sha256:".length);

  // Records: the image id is the config digest; layer ids follow c/image's derivation.
  const images = await cs.listImages();
  assert.equal(images.length, 1);
  assert.equal(images[0].id, imageId);
  assert.deepEqual(images[0].names, ["localhost/read:v1"]);
  assert.equal(images[0].digest, img.manifestDigest);
  const chain = await cs.imageLayers(images[0]);
  assert.deepEqual(chain.map((l) => l.id), layerChainIds(img.diffIds));
  assert.deepEqual(chain.map((l) => l.diffDigest), img.diffIds);
  assert.deepEqual(chain.map((l) => l.diffSize), img.layerTars.map((t) => t.length));
  assert.deepEqual(chain.map((l) => l.compressedDigest), img.layerDigests);
  assert.ok(chain.every((l) => !l.incomplete && !l.volatile));

  // Lookups.
  for (
    const ref of [
      "localhost/read:v1",
      "read:v1",
      imageId,
      imageId.slice(0, 12),
      img.configDigest,
      img.manifestDigest,
      `localhost/read@${img.manifestDigest}`,
    ]
  ) {
    assert.equal((await cs.image(ref)).id, imageId, ref);
  }
  await assert.rejects(() => cs.image("localhost/other:v1"), ImageNotFoundError);
  assert.equal(await cs.findImage("read:v2"), null);

  // Big data: config and manifest bytes exactly as distributed.
  assert.deepEqual(await cs.imageConfig(images[0]), img.configBytes);
  assert.deepEqual(await cs.imageManifest(images[0]), img.manifestBytes);

  // cat-layer: every layer's tar rebuilt from tar-split + diff/ is the original tar, byte for byte.
  for (const [i, diffId] of img.diffIds.entries()) {
    const parts: Uint8Array[] = [];
    const r = await writeLayerTarFromStore(cs, diffId, { write: (c) => parts.push(c.slice()) });
    assert.equal(r.digest, diffId);
    assert.deepEqual(
      concatBytes(parts),
      img.layerTars[i],
      `layer ${i} differs from the OCI layer tar`,
    );
  }

  // The same tar from parts: raw segments, and files read through the fds the store hands out.
  const parts: Uint8Array[] = [];
  let opened = 0;
  for await (const p of flatten(cs.layerTarPartBatches(chain[0].id))) {
    if (p.type === "segment") parts.push(p.bytes);
    else if (p.size > 0) {
      const fd = p.open();
      assert.ok(fd !== null, p.nameText);
      opened++;
      try {
        const buf = new Uint8Array(p.size);
        assert.equal(read(fd, buf), p.size);
        parts.push(buf);
      } finally {
        close(fd);
      }
    }
  }
  assert.equal(opened, 18, "every file with content of layer 0");
  assert.deepEqual(concatBytes(parts), img.layerTars[0]);

  // The merged view equals what the kernel's overlayfs shows for the same diff directories.
  const mnt = `${store.dir}/merged`;
  await Deno.mkdir(mnt);
  const lowers = [...chain].reverse().map((l) => `${store.root}/overlay/${l.id}/diff`).join(":");
  await runOk(["mount", "-t", "overlay", "overlay", "-o", `ro,lowerdir=${lowers}`, mnt]);
  let kernel;
  try {
    kernel = describeTree(mnt);
  } finally {
    await runOk(["umount", mnt]);
  }
  const ours = await describeImageFiles(cs.imageFiles(images[0]));
  assert.deepEqual(treeDifferences(ours, kernel), []);
  // And the overlay rules the image exercises were really there to be judged.
  assert.ok(!ours.has("etc/hostname"), "whiteout of layer 1 hides etc/hostname");
  assert.ok(!ours.has("etc/exactly-65"), "whiteout of the tweak layer hides etc/exactly-65");
  assert.ok(![...ours.keys()].some((k) => k.startsWith(WHITED_OUT_DIR)), "directory whiteout");
  assert.ok(!ours.has("var/cache/old") && ours.has("var/cache/new"), "opaque var/cache");
  assert.equal(ours.get("etc/one")?.size, "replaced in layer 1\n".length);
  assert.equal(ours.get("usr/bin/sh")?.sha256, ours.get("usr/bin/bash")?.sha256);
  assert.match(ours.get("usr/bin/ping")!.xattrs, /security\.capability=/);
  assert.equal(ours.get("dev/null")?.rdev, "1:3");

  // volatile-layers.json (graph root, and run root for transient stores) is read, marked volatile.
  const volatileId = "f".repeat(64);
  const runVolatileId = "e".repeat(64);
  const top = chain[chain.length - 1].id;
  const rec = (id: string) =>
    JSON.stringify([{
      id,
      names: [`${id.slice(0, 4)}-layer`],
      parent: top,
      created: "2026-01-01T00:00:00Z",
    }]);
  await Deno.writeTextFile(`${store.root}/overlay-layers/volatile-layers.json`, rec(volatileId));
  await Deno.mkdir(`${store.runroot}/overlay-layers`, { recursive: true });
  await Deno.writeTextFile(
    `${store.runroot}/overlay-layers/volatile-layers.json`,
    rec(runVolatileId),
  );
  const all = await cs.layers();
  assert.deepEqual(all.filter((l) => l.volatile).map((l) => [l.id, l.parent]), [[volatileId, top], [
    runVolatileId,
    top,
  ]]);
  assert.equal(all.filter((l) => !l.volatile).length, chain.length);

  // A read-only mount (how bootc's store is seen as an additional image store) reads the same.
  const ro = `${store.dir}/ro`;
  await Deno.mkdir(ro);
  await runOk(["mount", "--bind", store.root, ro]);
  try {
    await runOk(["mount", "-o", "remount,bind,ro", ro]);
    using roStore = await CStorage.open(ro, { readOnly: true });
    assert.deepEqual((await roStore.listImages()).map((i) => i.id), [imageId]);
    const tar = await roStore.writeLayerTar(chain[1].id, { write() {} });
    assert.equal(tar.digest, img.diffIds[1]);
    await assert.rejects(
      () =>
        roStore.writeLayer({
          diffId: img.diffIds[0],
          parent: null,
          tar: () => once(new Uint8Array()),
        }),
      StoreReadOnlyError,
    );
  } finally {
    await runOk(["umount", ro]);
  }

  // Tampering with one byte of a diff file: the rebuilt tar fails its CRC, as skopeo's does.
  const layer0 = chain[0];
  const victim = `${store.root}/overlay/${layer0.id}/diff/usr/lib/4097`;
  const bytes = await Deno.readFile(victim);
  bytes[100] ^= 0xff;
  await Deno.writeFile(victim, bytes);
  await assert.rejects(
    () => cs.writeLayerTar(layer0.id, { write() {} }),
    (e) =>
      e instanceof LayerIntegrityError &&
      /file integrity checksum failed for "usr\/lib\/4097"/.test(e.message),
  );
  const shallow = await cs.checkImage("localhost/read:v1");
  assert.ok(shallow.ok, JSON.stringify(shallow.problems));
  const deep = await cs.checkImage("localhost/read:v1", { deep: true });
  assert.equal(deep.ok, false);
  assert.deepEqual(deep.problems.map((p) => p.object), [`layer ${layer0.id}`]);
  await assert.rejects(
    () => skopeoFromStore(bins.skopeo, store, "localhost/read:v1", `${store.dir}/out`, "x"),
    /file integrity checksum failed/,
  );
}, { root: true });

toolTest(
  "a layer whose tar-split takes many reads is rebuilt byte for byte",
  [TOOLS.skopeo],
  async (bins) => {
    await using store = await tempStore();
    // 6,000 files: a tar-split of several hundred KiB gzipped, read in many pieces.
    const t = new TarBuilder();
    t.dir("many");
    for (let i = 0; i < 6000; i++) {
      t.file(`many/file-${i.toString(36)}-${(i * 7919).toString(16)}`, `content ${i}\n`);
    }
    const tar = t.build();
    const r = await storeAndRebuild(bins.skopeo, store, tar, "many");
    const tarSplit = await Deno.stat(`${store.root}/overlay-layers/${r.layerId}.tar-split.gz`);
    assert.ok(tarSplit.size > 4 * 65536, `tar-split is only ${tarSplit.size} bytes`);
    assert.equal(r.digest, r.diffId);
    assert.deepEqual(r.rebuilt, tar);
  },
);

toolTest(
  "files are found however a tar moves between directories: deeper, back up, across, back again",
  [TOOLS.skopeo],
  async (bins) => {
    await using store = await tempStore();
    const t = new TarBuilder();
    for (const d of ["a", "a/b", "a/b/c", "a/d", "e", "e/b", "e/b/c"]) t.dir(d);
    // Each file's parent shares a different prefix with the one before it; same-named
    // components under other parents ("b", "c") must not be taken for each other.
    const order = [
      "a/b/c/1",
      "a/b/2",
      "a/d/3",
      "e/b/c/4",
      "a/b/c/5",
      "6",
      "e/b/7",
      "a/b/c/8",
      "a/9",
      "e/b/c/10",
    ];
    for (const f of order) t.file(f, `in ${f}\n`);
    const tar = t.build();
    const r = await storeAndRebuild(bins.skopeo, store, tar, "walk");
    assert.equal(r.digest, r.diffId);
    assert.deepEqual(r.rebuilt, tar);
  },
);

/**
 * Stores `tar` as the one layer of image `localhost/<tag>:v1` with skopeo, then rebuilds the
 * layer's tar from the store (tar-split and `diff/`, as `cat-layer` does).
 */
async function storeAndRebuild(
  skopeo: string,
  store: Awaited<ReturnType<typeof tempStore>>,
  tar: Uint8Array,
  tag: string,
): Promise<{ diffId: string; layerId: string; digest: string; rebuilt: Uint8Array }> {
  const oci = `${store.dir}/oci`;
  const img = await buildOciImage(oci, { layers: [{ tar, compression: "gzip" }], tag });
  await skopeoToStore(skopeo, store, oci, tag, `localhost/${tag}:v1`);
  using cs = await CStorage.open(store.root, { runroot: store.runroot });
  const parts: Uint8Array[] = [];
  const r = await writeLayerTarFromStore(cs, img.diffIds[0], {
    write: (c) => parts.push(c.slice()),
  });
  const [layerId] = layerChainIds(img.diffIds);
  return { diffId: img.diffIds[0], layerId, digest: r.digest, rebuilt: concatBytes(parts) };
}
