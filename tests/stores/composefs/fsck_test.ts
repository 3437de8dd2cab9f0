/**
 * Repository fsck: a repository unistore wrote is clean, and each corruption is reported
 * precisely — a flipped byte in an object, a missing object, a dangling tag, a truncated
 * splitstream, a stray file among the streams, a broken meta.json.
 */

import assert from "node:assert/strict";
import {
  formatFsckReport,
  type FsckFinding,
  fsckRepo,
  fsckRepoOnWorker,
} from "../../../lib/stores/composefs/fsck.ts";
import { RepoNotFoundError } from "../../../lib/stores/composefs/errors.ts";
import { type ImportedImage, importOciImage } from "../../../lib/stores/composefs/oci_image.ts";
import type { ComposefsRepo } from "../../../lib/stores/composefs/repository.ts";
import { CONTENT_TYPE, SplitStream } from "../../../lib/stores/composefs/splitstream.ts";
import { buildAwkwardImage, type BuiltImage } from "../../fixtures/oci/mod.ts";
import { withRepo } from "./helpers.ts";

/** An imported awkward image in a fresh sha512 repository. */
async function withImported(
  fn: (
    ctx: { repo: ComposefsRepo; base: string; img: BuiltImage; imported: ImportedImage },
  ) => Promise<void>,
): Promise<void> {
  await withRepo("sha512", async (repo, dir) => {
    const img = await buildAwkwardImage(`${dir}/layout`, "awkward");
    const imported = await importOciImage(repo, `${dir}/layout`, "awkward");
    await fn({ repo, base: `${dir}/repo`, img, imported });
  });
}

const objPath = (id: string) => `objects/${id.slice(0, 2)}/${id.slice(2)}`;

/** The object of the biggest external chunk of layer 0 (usr/lib/big.img). */
function bigObject(repo: ComposefsRepo, diffId: string): string {
  using s = SplitStream.openStream(repo, `oci-layer-${diffId}`, CONTENT_TYPE.ociLayer);
  let best = "", size = -1;
  for (const id of s.index.objectRefs) {
    const n = Deno.statSync(`${repo.path}/${objPath(id)}`).size;
    if (n > size) [best, size] = [id, n];
  }
  return best;
}

function kinds(findings: FsckFinding[]): string[] {
  return findings.map((f) => `${f.kind} ${f.path}`).sort();
}

Deno.test("fsck: a repository unistore wrote passes, shallow and deep", async () => {
  await withImported(async ({ repo, img }) => {
    const shallow = await fsckRepo(repo);
    assert.deepEqual(shallow.findings, []);
    assert.equal(shallow.ok, true);
    assert.equal(shallow.hasMetadata, true);
    assert.equal(shallow.streamsChecked, img.diffIds.length + 2);
    assert.equal(shallow.refsChecked, 2);
    assert.equal(shallow.ociImagesChecked, 1);
    assert.equal(shallow.objectsChecked, 0, "insecure repo, shallow: digests are not recomputed");
    const deep = await fsckRepo(repo, { deep: true });
    assert.deepEqual(deep.findings, []);
    assert.equal(deep.objectsChecked, deep.objectsListed);
    assert.equal(deep.layersVerified, img.diffIds.length);
    assert.match(formatFsckReport(deep), /status: ok$/);
  });
});

Deno.test("fsck: a flipped byte in an object is a digest mismatch at its path (deep), and breaks its layer", async () => {
  await withImported(async ({ repo, img }) => {
    const id = bigObject(repo, img.diffIds[0]);
    const path = `${repo.path}/${objPath(id)}`;
    const bytes = await Deno.readFile(path);
    bytes[bytes.length >> 1] ^= 0x01;
    await Deno.writeFile(path, bytes);
    const r = await fsckRepo(repo, { deep: true });
    assert.deepEqual(kinds(r.findings), [
      `layer-diff-id-mismatch streams/oci-layer-${img.diffIds[0]}`,
      `object-digest-mismatch ${objPath(id)}`,
    ]);
    const f = r.findings.find((x) => x.kind === "object-digest-mismatch")!;
    assert.equal(f.objectId, id);
    assert.match(f.detail, /content hashes to [0-9a-f]{128}/);
    assert.equal(r.objectsCorrupted, 1);
    assert.match(formatFsckReport(r), /status: 2 error\(s\)/);
  });
});

Deno.test("fsck on a worker: the same report as on this thread, also where no worker loads", async () => {
  await withImported(async ({ repo, img }) => {
    const id = bigObject(repo, img.diffIds[0]);
    const path = `${repo.path}/${objPath(id)}`;
    const bytes = await Deno.readFile(path);
    bytes[7] ^= 0x80;
    await Deno.writeFile(path, bytes);
    const here = await fsckRepo(repo, { deep: true });
    assert.equal(here.objectsCorrupted, 1);
    assert.deepEqual(await fsckRepoOnWorker(repo.path), here);
    // A binary compiled without the worker module: checked on this thread instead.
    const unloadable = 'data:application/javascript,throw new Error("unloadable")';
    assert.deepEqual(await fsckRepoOnWorker(repo.path, unloadable), here);
    // What stops the check there is thrown here with its own type.
    await assert.rejects(fsckRepoOnWorker(`${repo.path}/nowhere`), RepoNotFoundError);
  });
});

Deno.test("fsck: a missing object is reported by the stream that references it", async () => {
  await withImported(async ({ repo, img }) => {
    const id = bigObject(repo, img.diffIds[0]);
    await Deno.remove(`${repo.path}/${objPath(id)}`);
    const r = await fsckRepo(repo);
    assert.deepEqual(kinds(r.findings), [`missing-object-ref streams/oci-layer-${img.diffIds[0]}`]);
    assert.equal(r.findings[0].objectId, id);
    assert.equal(r.missingObjects, 1);
    assert.equal(r.streamsCorrupted, 1);
  });
});

Deno.test("fsck: a dangling tag is a broken symlink at the tag's path", async () => {
  await withImported(async ({ repo, base }) => {
    const gone = "sha256:" + "e".repeat(64);
    Deno.symlinkSync(`../../oci-manifest-${gone}`, `${base}/streams/refs/oci/dangling`);
    const r = await fsckRepo(repo);
    assert.deepEqual(kinds(r.findings), ["broken-symlink streams/refs/oci/dangling"]);
    assert.match(r.findings[0].detail, /oci-manifest-sha256:e{64}.*does not resolve/);
    assert.equal(r.brokenLinks, 1);
    // A ref straight into objects/ resolves but is invisible to GC: reported too.
    Deno.removeSync(`${base}/streams/refs/oci/dangling`);
    const someObject = [...Deno.readDirSync(`${base}/objects`)][0].name;
    const inner = [...Deno.readDirSync(`${base}/objects/${someObject}`)][0].name;
    Deno.symlinkSync(`../../../objects/${someObject}/${inner}`, `${base}/streams/refs/oci/direct`);
    assert.deepEqual(kinds((await fsckRepo(repo)).findings), [
      "ref-invalid-target streams/refs/oci/direct",
    ]);
  });
});

Deno.test("fsck: a truncated splitstream fails to open (shallow) and mismatches its name (deep)", async () => {
  await withImported(async ({ repo, img, imported }) => {
    const layer = imported.layers[0];
    const path = `${repo.path}/${objPath(layer.streamId)}`;
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 7));
    const shallow = await fsckRepo(repo);
    assert.deepEqual(kinds(shallow.findings), [
      `stream-open-failed streams/oci-layer-${img.diffIds[0]}`,
    ]);
    assert.match(
      shallow.findings[0].detail,
      /stream section \[\d+, \d+\) does not fit in the file/,
    );
    assert.equal(shallow.findings[0].objectId, layer.streamId);
    const deep = await fsckRepo(repo, { deep: true });
    assert.deepEqual(kinds(deep.findings), [
      `object-digest-mismatch ${objPath(layer.streamId)}`,
      `stream-open-failed streams/oci-layer-${img.diffIds[0]}`,
    ]);
  });
});

Deno.test("fsck: stray files, bad object names, broken meta.json and a tampered manifest", async () => {
  await withImported(async ({ repo, base, img }) => {
    Deno.writeTextFileSync(`${base}/streams/not-a-link`, "x");
    Deno.mkdirSync(`${base}/objects/ab`, { recursive: true });
    Deno.writeTextFileSync(`${base}/objects/ab/not-hex`, "x");
    Deno.writeTextFileSync(`${base}/objects/.tmp-object-leftover`, "x"); // ignored, as by composefs-rs
    Deno.writeTextFileSync(`${base}/meta.json`, "{ not json");
    // A manifest stream pointing at the config stream of another (nonexistent) manifest object:
    // replace the manifest's external object with different bytes of the same name.
    using man = SplitStream.openStream(
      repo,
      `oci-manifest-${img.manifestDigest}`,
      CONTENT_TYPE.ociManifest,
    );
    const manifestObject = `${base}/${objPath(man.index.objectRefs[0])}`;
    const m = Deno.readFileSync(manifestObject);
    m[m.length - 1] = 0x20; // "}" → " ": no longer the digested bytes
    Deno.writeFileSync(manifestObject, m);
    const r = await fsckRepo(repo);
    assert.deepEqual(kinds(r.findings), [
      `entry-not-symlink streams/not-a-link`,
      `image-digest-mismatch streams/oci-manifest-${img.manifestDigest}`,
      `metadata-parse-failed meta.json`,
      `object-invalid-name objects/ab/not-hex`,
    ]);
  });
});
