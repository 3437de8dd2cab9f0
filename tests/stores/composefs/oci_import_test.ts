/**
 * Importing OCI images into a composefs repository: every awkward layer reassembles to its
 * exact tar (sha256 = diff_id, bytes equal), streams/refs/tags are laid out as composefs-rs
 * lays them out, the 64-byte rule holds, re-imports skip, a wrong diff_id publishes nothing,
 * and layers compressed by skopeo's own (Go) zstd encoder import too.
 */

import assert from "node:assert/strict";
import { DigestMismatchError } from "../../../lib/oci/errors.ts";
import { TarReader } from "../../../lib/oci/tar.ts";
import { fsckRepo } from "../../../lib/stores/composefs/fsck.ts";
import {
  bootcTagFor,
  decodeTag,
  encodeTag,
  importOciImage,
  listTags,
  parseOciLayoutRef,
  readStoredImage,
  resolveTag,
  untagImage,
} from "../../../lib/stores/composefs/oci_image.ts";
import type { ComposefsRepo } from "../../../lib/stores/composefs/repository.ts";
import {
  CONTENT_TYPE,
  INLINE_CONTENT_MAX,
  SplitStream,
} from "../../../lib/stores/composefs/splitstream.ts";
import { layerTarChunks, writeLayerTar } from "../../../lib/stores/composefs/tar_layer.ts";
import { buildAwkwardImage, buildOciImage, sha256, TarBuilder } from "../../fixtures/oci/mod.ts";
import { runOk } from "../../harness/run.ts";
import { toolTest } from "../../harness/tools.ts";
import { withRepo } from "./helpers.ts";
import { concatBytes } from "../../../lib/oci/compression.ts";
import { listTree } from "../../harness/tree_listing.ts";

async function layerBytes(repo: ComposefsRepo, diffId: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of layerTarChunks(repo, diffId)) parts.push(c.slice());
  return concatBytes(parts);
}

for (const alg of ["sha512", "sha256"] as const) {
  Deno.test(`import (${alg}): every awkward layer reassembles byte for byte; streams, refs and tags as composefs-rs lays them out`, async () => {
    await withRepo(alg, async (repo, dir) => {
      const img = await buildAwkwardImage(`${dir}/layout`, "awkward");
      const r = await importOciImage(repo, `${dir}/layout`, "awkward");
      assert.equal(r.manifestDigest, img.manifestDigest);
      assert.equal(r.configDigest, img.configDigest);
      assert.deepEqual(r.diffIds, img.diffIds);
      assert.deepEqual(r.tags, ["awkward", bootcTagFor(img.manifestDigest)]);
      assert.ok(r.layers.every((l) => !l.skipped));

      for (const [i, diffId] of img.diffIds.entries()) {
        const bytes = await layerBytes(repo, diffId);
        assert.equal(
          sha256(bytes),
          diffId,
          `layer ${i}: sha256 of the reassembled tar is the diff_id`,
        );
        assert.deepEqual(bytes, img.layerTars[i], `layer ${i}: byte for byte`);
      }
      // writeLayerTar into a file's WritableStream (what `cat-layer` does with stdout): the
      // stream must be closed at the end or Deno keeps the last small writes buffered.
      const out = await Deno.open(`${dir}/layer0.tar`, { write: true, create: true });
      const { size } = await writeLayerTar(repo, img.diffIds[0], out.writable);
      assert.equal(size, img.layerTars[0].length);
      assert.deepEqual(await Deno.readFile(`${dir}/layer0.tar`), img.layerTars[0]);
      const parts: Uint8Array[] = [];
      await writeLayerTar(repo, img.diffIds[3], (c) => void parts.push(c.slice()));
      assert.deepEqual(concatBytes(parts), img.layerTars[3]);

      const base = `${dir}/repo`;
      const link = (p: string) => Deno.readLinkSync(`${base}/${p}`);
      const objectTarget = (id: string) => `../objects/${id.slice(0, 2)}/${id.slice(2)}`;
      assert.equal(
        link(`streams/oci-manifest-${img.manifestDigest}`),
        objectTarget(r.manifestStreamId),
      );
      assert.equal(link(`streams/oci-config-${img.configDigest}`), objectTarget(r.configStreamId));
      for (const l of r.layers) {
        assert.equal(link(`streams/oci-layer-${l.diffId}`), objectTarget(l.streamId));
      }
      assert.equal(link("streams/refs/oci/awkward"), `../../oci-manifest-${img.manifestDigest}`);
      const bootc = `streams/refs/oci/localhost%2Fbootc-${img.manifestDigest}`;
      assert.equal(link(bootc), `../../oci-manifest-${img.manifestDigest}`);
      assert.deepEqual(listTags(repo), [
        { name: "awkward", manifestDigest: img.manifestDigest },
        { name: `localhost/bootc-${img.manifestDigest}`, manifestDigest: img.manifestDigest },
      ]);

      // Config stream: one external chunk (the raw config), a named ref per diff_id.
      {
        using cfg = SplitStream.openStream(
          repo,
          `oci-config-${img.configDigest}`,
          CONTENT_TYPE.ociConfig,
        );
        assert.deepEqual([...cfg.index.namedRefs.keys()].sort(), [...new Set(img.diffIds)].sort());
        for (const l of r.layers) assert.equal(cfg.index.namedRefs.get(l.diffId), l.streamId);
        assert.equal(cfg.index.objectRefs.length, 1);
        assert.deepEqual(repo.readObject(cfg.index.objectRefs[0]), img.configBytes);
      }
      {
        using man = SplitStream.openStream(
          repo,
          `oci-manifest-${img.manifestDigest}`,
          CONTENT_TYPE.ociManifest,
        );
        assert.equal(man.index.namedRefs.get(`config:${img.configDigest}`), r.configStreamId);
        for (const l of r.layers) assert.equal(man.index.namedRefs.get(l.diffId), l.streamId);
        assert.deepEqual(repo.readObject(man.index.objectRefs[0]), img.manifestBytes);
      }
      const stored = await readStoredImage(repo, "awkward");
      assert.deepEqual(stored.manifestBytes, img.manifestBytes);
      assert.deepEqual(stored.configBytes, img.configBytes);
      assert.deepEqual(stored.diffIds, img.diffIds);

      const report = await fsckRepo(repo, { deep: true });
      assert.deepEqual(report.findings, []);
      assert.equal(report.layersVerified, img.diffIds.length);

      // Importing again reads nothing and writes nothing.
      const before = await listTree(base);
      const again = await importOciImage(repo, `${dir}/layout`, "awkward");
      assert.ok(again.layers.every((l) => l.skipped));
      assert.equal(again.manifestSkipped, true);
      assert.deepEqual(await listTree(base), before);
    });
  });
}

Deno.test("import: the 64-byte rule — regular files over 64 bytes become objects, everything else inline", async () => {
  await withRepo("sha512", async (repo, dir) => {
    const img = await buildAwkwardImage(`${dir}/layout`, "a");
    await importOciImage(repo, `${dir}/layout`, "a", { bootcTag: false });
    for (const [i, diffId] of img.diffIds.entries()) {
      // What the tar says, read independently of the splitter.
      const expected: { size: number; content: Uint8Array }[] = [];
      const tar = new TarReader((async function* () {
        yield img.layerTars[i];
      })());
      for (let e = await tar.next(); e; e = await tar.next()) {
        const payload: Uint8Array[] = [];
        for await (const c of tar.readPayload()) payload.push(c.slice());
        if ((e.type === "file" || e.type === "contiguous") && e.payloadSize > INLINE_CONTENT_MAX) {
          expected.push({ size: e.payloadSize, content: concatBytes(payload) });
        }
      }
      using s = SplitStream.openStream(repo, `oci-layer-${diffId}`, CONTENT_TYPE.ociLayer);
      const externals: string[] = [];
      for await (const c of s.chunks()) if (c.kind === "external") externals.push(c.id);
      assert.equal(
        externals.length,
        expected.length,
        `layer ${i}: one external chunk per file over 64 bytes`,
      );
      for (const [j, id] of externals.entries()) {
        assert.deepEqual(repo.readObject(id), expected[j].content, `layer ${i} file ${j}`);
      }
    }
    assert.deepEqual(listTags(repo), [{ name: "a", manifestDigest: img.manifestDigest }]);
  });
});

Deno.test("import: a diff_id that does not match the layer publishes no stream and no tag", async () => {
  await withRepo("sha512", async (repo, dir) => {
    const wrong = "sha256:" + "0".repeat(64);
    await buildOciImage(`${dir}/layout`, {
      tag: "bad",
      layers: [{ tar: new TarBuilder().file("f", "x".repeat(1000)).build(), compression: "gzip" }],
      mutateConfig: (c) => ((c.rootfs as { diff_ids: string[] }).diff_ids = [wrong]),
    });
    await assert.rejects(importOciImage(repo, `${dir}/layout`, "bad"), (e: unknown) => {
      assert.ok(e instanceof DigestMismatchError, String(e));
      assert.equal(e.expected, wrong);
      assert.match(e.message, /\(layer 0\).*diff_id.*digest mismatch/);
      return true;
    });
    assert.deepEqual(repo.listCategory("streams"), []);
    assert.deepEqual(listTags(repo), []);
  });
});

Deno.test("tags: percent-encoding round trips; untag; oci:DIR:TAG references", async () => {
  for (const name of ["a/b", "100%/x", "%2F", "docker://quay.io/fedora/fedora:latest"]) {
    assert.equal(decodeTag(encodeTag(name)), name);
    assert.ok(!encodeTag(name).includes("/"));
  }
  assert.equal(encodeTag("%2F"), "%252F");
  assert.deepEqual(parseOciLayoutRef("oci:/srv/img:v1"), { dir: "/srv/img", tag: "v1" });
  assert.deepEqual(parseOciLayoutRef("oci:/srv/img"), { dir: "/srv/img" });
  assert.deepEqual(parseOciLayoutRef("oci:./a:b/c"), { dir: "./a:b/c" });
  await withRepo("sha256", async (repo, dir) => {
    const img = await buildOciImage(`${dir}/layout`, {
      tag: "t",
      layers: [{ tar: new TarBuilder().file("f", "y").build(), compression: "none" }],
    });
    const r = await importOciImage(repo, `${dir}/layout`, "t", {
      tagAs: "registry.example/ns/img:1.0",
    });
    assert.deepEqual(r.tags, ["registry.example/ns/img:1.0", bootcTagFor(img.manifestDigest)]);
    assert.equal(resolveTag(repo, "registry.example/ns/img:1.0"), img.manifestDigest);
    assert.ok(
      Deno.lstatSync(`${dir}/repo/streams/refs/oci/registry.example%2Fns%2Fimg:1.0`).isSymlink,
    );
    assert.equal(untagImage(repo, "registry.example/ns/img:1.0"), true);
    assert.equal(resolveTag(repo, "registry.example/ns/img:1.0"), null);
    assert.throws(() => untagImage(repo, "@sha256:x"), /leading '@'/);
  });
});

toolTest(
  "import: layers recompressed by skopeo (Go zstd and gzip encoders) reproduce every diff_id",
  [
    { bin: "skopeo", pkg: "skopeo" },
  ],
  async (bins) => {
    await withRepo("sha512", async (repo, dir) => {
      const img = await buildAwkwardImage(`${dir}/src`, "awkward");
      await runOk([
        bins.skopeo,
        "copy",
        "--quiet",
        "--dest-compress",
        "--dest-compress-format",
        "zstd",
        `oci:${dir}/src:awkward`,
        `oci:${dir}/zstd:awkward`,
      ]);
      const inspect = JSON.parse(
        (await runOk([bins.skopeo, "inspect", "--raw", `oci:${dir}/zstd:awkward`])).stdout,
      );
      assert.ok(
        inspect.layers.every((l: { mediaType: string }) => l.mediaType.endsWith("+zstd")),
        "skopeo wrote zstd layers",
      );
      const r = await importOciImage(repo, `${dir}/zstd`, "awkward");
      assert.deepEqual(r.diffIds, img.diffIds, "recompression keeps the diff_ids");
      for (const [i, diffId] of r.diffIds.entries()) {
        assert.deepEqual(await layerBytes(repo, diffId), img.layerTars[i], `layer ${i}`);
      }
      assert.equal((await fsckRepo(repo, { deep: true })).ok, true);
    });
  },
);
