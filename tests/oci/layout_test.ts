/**
 * OCI layout reading and the fixture builder: skopeo accepts the generated layouts (inspect,
 * and a copy that re-reads and verifies every blob), images resolve by tag, nested indexes by
 * platform, and every kind of corruption is reported with the blob's path.
 */

import assert from "node:assert/strict";
import { DigestMismatchError, OciFormatError, OciNotFoundError } from "../../lib/oci/errors.ts";
import { OciLayout } from "../../lib/oci/layout.ts";
import { buildAwkwardImage, buildOciImage, sha256, TarBuilder } from "../fixtures/oci/mod.ts";
import { run, runOk } from "../harness/run.ts";
import { toolTest } from "../harness/tools.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "unistore-oci-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function drain(it: AsyncIterable<Uint8Array>): Promise<{ size: number; digest: string }> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c.slice());
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  return { size: all.length, digest: sha256(all) };
}

toolTest("fixture: skopeo inspects the awkward image and copies it re-verifying every blob", [
  { bin: "skopeo", pkg: "skopeo" },
], async (bins) => {
  await withTempDir(async (dir) => {
    const img = await buildAwkwardImage(`${dir}/src`, "awkward");
    await buildOciImage(`${dir}/src`, {
      tag: "second",
      layers: [{ tar: new TarBuilder().file("hello", "hi\n").build(), compression: "gzip" }],
    });
    const inspect = JSON.parse(
      (await runOk([bins.skopeo, "inspect", `oci:${dir}/src:awkward`])).stdout,
    );
    assert.equal(inspect.Digest, img.manifestDigest);
    assert.deepEqual(inspect.Layers, img.layerDigests);
    const raw = JSON.parse(
      (await runOk([bins.skopeo, "inspect", "--config", `oci:${dir}/src:awkward`])).stdout,
    );
    assert.deepEqual(raw.rootfs.diff_ids, img.diffIds);
    // skopeo copy reads every blob and checks it against its digest: a wrong digest fails here.
    await runOk([
      bins.skopeo,
      "copy",
      "--quiet",
      "--preserve-digests",
      `oci:${dir}/src:awkward`,
      `oci:${dir}/dst:copy`,
    ]);
    const copied = JSON.parse(
      (await runOk([bins.skopeo, "inspect", `oci:${dir}/dst:copy`])).stdout,
    );
    assert.equal(copied.Digest, img.manifestDigest, "an unchanged copy keeps the manifest digest");
    // And a corrupted blob makes skopeo fail, so the check above has teeth.
    const blob = `${dir}/src/blobs/sha256/${img.layerDigests[2].slice(7)}`;
    const bytes = await Deno.readFile(blob);
    bytes[100] ^= 1;
    await Deno.writeFile(blob, bytes);
    const bad = await run([
      bins.skopeo,
      "copy",
      "--quiet",
      "--preserve-digests",
      `oci:${dir}/src:awkward`,
      `oci:${dir}/dst2:x`,
    ]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /digest/i);
  });
});

Deno.test("layout: resolves by tag, streams each layer back to its exact tar", async () => {
  await withTempDir(async (dir) => {
    const img = await buildAwkwardImage(dir, "awkward");
    const other = await buildOciImage(dir, {
      tag: "other",
      layers: [{ tar: new TarBuilder().file("x", "y").build(), compression: "zstd" }],
    });
    const layout = await OciLayout.open(dir);
    assert.deepEqual(layout.tags(), ["awkward", "other"]);
    const r = await layout.resolveImage("awkward");
    assert.equal(r.manifestDigest, img.manifestDigest);
    assert.equal(r.configDigest, img.configDigest);
    assert.deepEqual(r.diffIds, img.diffIds);
    assert.deepEqual(r.manifestBytes, img.manifestBytes);
    for (const [i, layer] of r.manifest.layers.entries()) {
      const out = await drain(layout.layerTarChunks(layer));
      assert.equal(out.digest, img.diffIds[i], `layer ${i} (${layer.mediaType})`);
      assert.equal(out.size, img.layerTars[i].length);
    }
    assert.equal((await layout.resolveImage("other")).manifestDigest, other.manifestDigest);
    await assert.rejects(
      layout.resolveImage("nope"),
      (e: unknown) =>
        e instanceof OciNotFoundError &&
        /index\.json: no manifest tagged "nope"; tags: \["awkward","other"\]/.test(e.message),
    );
    await assert.rejects(
      layout.resolveImage(),
      /expected exactly one manifest when no tag is given, found 2/,
    );
  });
});

Deno.test("layout: a corrupted layer, manifest or missing blob is reported with the blob path", async () => {
  await withTempDir(async (dir) => {
    const img = await buildOciImage(dir, {
      tag: "t",
      layers: [{ tar: new TarBuilder().file("f", "z".repeat(5000)).build(), compression: "gzip" }],
    });
    const layout = await OciLayout.open(dir);
    const r = await layout.resolveImage("t");
    const layerPath = `${dir}/blobs/sha256/${img.layerDigests[0].slice(7)}`;
    const good = await Deno.readFile(layerPath);
    // Same length, one byte changed inside the gzip trailer's size field: decompression may
    // succeed, the blob digest must not.
    const bad = good.slice();
    bad[bad.length - 1] ^= 0x01;
    await Deno.writeFile(layerPath, bad);
    await assert.rejects(drain(layout.layerTarChunks(r.manifest.layers[0])), (e: unknown) => {
      if (e instanceof DigestMismatchError) {
        assert.equal(e.where, layerPath);
        assert.equal(e.expected, img.layerDigests[0]);
        return true;
      }
      return e instanceof Error && e.message.includes(layerPath);
    });
    // Longer than the descriptor: stopped as soon as it is too long.
    await Deno.writeFile(layerPath, new Uint8Array([...good, 0]));
    await assert.rejects(
      drain(layout.blobChunks(r.manifest.layers[0])),
      (e: unknown) => e instanceof DigestMismatchError && e.expected === `${good.length} bytes`,
    );
    await Deno.remove(layerPath);
    await assert.rejects(
      drain(layout.blobChunks(r.manifest.layers[0])),
      (e: unknown) =>
        e instanceof OciNotFoundError && e.message.includes(`blob ${img.layerDigests[0]}`),
    );
    // A manifest whose bytes no longer match its digest is refused before it is parsed.
    const manifestPath = `${dir}/blobs/sha256/${img.manifestDigest.slice(7)}`;
    const m = await Deno.readFile(manifestPath);
    m[m.length - 2] = 0x20;
    await Deno.writeFile(manifestPath, m);
    await assert.rejects(
      layout.resolveImage("t"),
      (e: unknown) => e instanceof DigestMismatchError && e.where === manifestPath,
    );
  });
});

Deno.test("layout: nested index resolves to this platform; bad documents are named", async () => {
  await withTempDir(async (dir) => {
    const arch = Deno.build.arch === "aarch64" ? "arm64" : "amd64";
    const mine = await buildOciImage(dir, {
      architecture: arch,
      layers: [{ tar: new TarBuilder().file("mine", "1").build(), compression: "none" }],
    });
    const foreign = await buildOciImage(dir, {
      architecture: "s390x",
      layers: [{ tar: new TarBuilder().file("theirs", "2").build(), compression: "none" }],
    });
    const nested = new TextEncoder().encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: foreign.manifestDigest,
          size: foreign.manifestSize,
          platform: { os: "linux", architecture: "s390x" },
        },
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: mine.manifestDigest,
          size: mine.manifestSize,
          platform: { os: "linux", architecture: arch },
        },
      ],
    }));
    const nestedDigest = sha256(nested);
    await Deno.writeFile(`${dir}/blobs/sha256/${nestedDigest.slice(7)}`, nested);
    await Deno.writeTextFile(
      `${dir}/index.json`,
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{
          mediaType: "application/vnd.oci.image.index.v1+json",
          digest: nestedDigest,
          size: nested.length,
          annotations: { "org.opencontainers.image.ref.name": "multi" },
        }],
      }),
    );
    const layout = await OciLayout.open(dir);
    assert.equal((await layout.resolveImage("multi")).manifestDigest, mine.manifestDigest);
    await assert.rejects(
      layout.resolveImage("multi", { os: "linux", architecture: "riscv64" }),
      /no manifest for linux\/riscv64; platforms: linux\/s390x, linux\/amd64|platforms/,
    );

    await Deno.writeTextFile(
      `${dir}/index.json`,
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: "x", digest: "sha256:../../etc/passwd", size: 1 }],
      }),
    );
    await assert.rejects(
      OciLayout.open(dir),
      (e: unknown) =>
        e instanceof OciFormatError &&
        /index\.json manifests\[0\] digest: expected a digest/.test(e.message),
    );
    await Deno.writeTextFile(`${dir}/oci-layout`, `{"imageLayoutVersion": "2.0.0"}`);
    await assert.rejects(
      OciLayout.open(dir),
      /oci-layout: expected imageLayoutVersion "1\.0\.0", found "2\.0\.0"/,
    );
  });
});
