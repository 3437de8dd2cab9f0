// checkImage finds each kind of damage it claims to find; the writers refuse what
// containers-storage refuses and leave the store as it was; records keep keys unistore does not
// know; names move between images as c/storage moves them; crash leftovers are replaced.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  CStorage,
  DiffIdMismatchError,
  ImageInputError,
  layerChainIds,
  UnsupportedLayerError,
} from "../../../lib/stores/cstorage/mod.ts";
import { bigDataFileName } from "../../../lib/stores/cstorage/big_data.ts";
import { toolTest } from "../../harness/tools.ts";
import { buildRunnableImage } from "../../fixtures/cstorage/images.ts";
import { importOciImage } from "../../fixtures/cstorage/oci_import.ts";
import { podman, tempStore, TOOLS } from "../../fixtures/cstorage/podman.ts";
import { buildOciImage, TarBuilder } from "../../fixtures/oci/mod.ts";

const sha256 = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const once = (b: Uint8Array) =>
  async function* () {
    yield b.slice();
  };

/** Names, sizes and JSON contents of everything in a store, lock files aside. */
async function snapshot(root: string): Promise<string> {
  const lines: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(rel ? `${root}/${rel}` : root)) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (p.endsWith(".lock")) continue;
      lines.push(p);
      if (e.isDirectory) await walk(p);
      else if (p.endsWith(".json")) lines.push(await Deno.readTextFile(`${root}/${p}`));
    }
  };
  await walk("");
  return lines.sort().join("\n");
}

toolTest("checkImage reports each kind of damage, and a clean image as clean", [], async () => {
  await using store = await tempStore();
  const oci = `${store.dir}/oci`;
  const img = await buildRunnableImage(oci, "v1", { withoutBusybox: true });
  using cs = await CStorage.open(store.root, { create: true });
  const r = await importOciImage(cs, oci, "v1", ["localhost/check:v1"]);
  const ids = layerChainIds(img.diffIds);
  const clean = await cs.checkImage("localhost/check:v1", { deep: true });
  assert.deepEqual(clean, {
    imageId: r.imageId,
    names: ["localhost/check:v1"],
    layers: ids,
    deep: true,
    ok: true,
    problems: [],
  });

  const layersJson = `${store.root}/overlay-layers/layers.json`;
  const imagesJson = `${store.root}/overlay-images/images.json`;
  const editJson = async (path: string, edit: (records: Record<string, unknown>[]) => void) => {
    const recs = JSON.parse(await Deno.readTextFile(path));
    edit(recs);
    await Deno.writeTextFile(path, JSON.stringify(recs));
  };
  /** Damages the store, checks, restores; returns "object: message" lines. */
  const damaged = async (damage: () => Promise<void>, undo: () => Promise<void>, deep = false) => {
    const saved = [await Deno.readFile(layersJson), await Deno.readFile(imagesJson)];
    await damage();
    const report = await cs.checkImage(r.imageId, { deep });
    await undo();
    await Deno.writeFile(layersJson, saved[0]);
    await Deno.writeFile(imagesJson, saved[1]);
    assert.equal(report.ok, false);
    return report.problems.map((p) => `${p.object}: ${p.message}`);
  };
  const noop = () => Promise.resolve();
  const sigKey = `signature-${r.manifestDigest.slice(7)}`;
  const sigFile = `${store.root}/overlay-images/${r.imageId}/${bigDataFileName(sigKey)}`;

  assert.deepEqual(
    await damaged(() => Deno.remove(sigFile), () => Deno.writeFile(sigFile, new Uint8Array(0))),
    [`image ${r.imageId} big-data ${sigKey}: file missing`],
  );
  assert.deepEqual(
    await damaged(() =>
      editJson(imagesJson, (i) => {
        (i[0]["big-data-sizes"] as Record<string, number>).manifest = 1;
      }), noop),
    [`image ${r.imageId} big-data manifest: ${img.manifestBytes.length} bytes, big-data-sizes says 1`],
  );
  const link = (await Deno.readTextFile(`${store.root}/overlay/${ids[1]}/link`)).trim();
  const linkPath = `${store.root}/overlay/l/${link}`;
  assert.deepEqual(
    await damaged(() => Deno.remove(linkPath), () => Deno.symlink(`../${ids[1]}/diff`, linkPath)),
    [`layer ${ids[1]}: short link ${link} does not point at ../${ids[1]}/diff`],
  );
  assert.deepEqual(
    await damaged(() => editJson(layersJson, (l) => l[2].flags = { incomplete: true }), noop),
    [`layer ${ids[2]}: flagged incomplete (being written or deleted)`],
  );
  const ts = `${store.root}/overlay-layers/${ids[0]}.tar-split.gz`;
  const tsBytes = await Deno.readFile(ts);
  assert.deepEqual(
    await damaged(() => Deno.remove(ts), () => Deno.writeFile(ts, tsBytes)),
    [`layer ${ids[0]}: tar-split file missing`],
  );
  assert.deepEqual(
    await damaged(() => editJson(layersJson, (l) => l.splice(1, 1)), noop),
    [`layer ${ids[1]}: missing (needed by layer ${ids[2]})`],
  );
  const wrong = `sha256:${"0".repeat(64)}`;
  const digestProblems = await damaged(
    () => editJson(layersJson, (l) => l[2]["diff-digest"] = wrong),
    noop,
    true,
  );
  assert.equal(digestProblems.length, 2, digestProblems.join("\n"));
  assert.match(digestProblems[0], /config diff_ids .* differ from the layers' diff-digests/);
  assert.match(
    digestProblems[1],
    new RegExp(`layer ${ids[2]}: .*rebuilt tar does not match diff-digest`),
  );
  // A diff/ file whose bytes changed but not its size: the layer no longer hashes to its
  // diff-digest, and the deep check names the file (tar-split's CRC-64, computed only then).
  // One whose size changed is named by its size.
  const victim = `${store.root}/overlay/${ids[1]}/diff/var/cache/new`;
  const good = await Deno.readFile(victim);
  const flipped = good.slice();
  flipped[10] ^= 0xff;
  const restore = () => Deno.writeFile(victim, good);
  const crcProblems = await damaged(() => Deno.writeFile(victim, flipped), restore, true);
  assert.equal(crcProblems.length, 1, crcProblems.join("\n"));
  assert.match(
    crcProblems[0],
    new RegExp(
      `^layer ${
        ids[1]
      }: .*file integrity checksum failed for "var/cache/new" \\(CRC-64 mismatch\\)`,
    ),
  );
  const longer = () => Deno.writeFile(victim, new Uint8Array([0]), { append: true });
  const sizeProblems = await damaged(longer, restore, true);
  assert.equal(sizeProblems.length, 1, sizeProblems.join("\n"));
  assert.match(
    sizeProblems[0],
    new RegExp(`"var/cache/new" \\(expected ${good.length} bytes, found ${good.length + 1}\\)`),
  );
  // Everything restored: clean again.
  assert.ok((await cs.checkImage(r.imageId, { deep: true })).ok);
}, { root: true });

toolTest(
  "the layer writer refuses what containers-storage refuses, and leaves no trace",
  [],
  async () => {
    await using store = await tempStore();
    using cs = await CStorage.open(store.root, { create: true });
    const base = new TarBuilder("pax").dir("etc").file("etc/a", "a\n").build();
    const baseId =
      (await cs.writeLayer({ diffId: sha256(base), parent: null, tar: once(base) })).id;
    const before = await snapshot(store.root);
    const attempt = (tar: Uint8Array, diffId = sha256(tar)) =>
      cs.writeLayer({ diffId, parent: baseId, tar: once(tar) });

    await assert.rejects(
      () => attempt(new TarBuilder("pax").file("x", "1").file("./x", "2").build()),
      (e) =>
        e instanceof UnsupportedLayerError && e.entry === "./x" &&
        /more than one entry/.test(e.message),
    );
    await assert.rejects(
      () => attempt(new TarBuilder("pax").file("../escape", "1").build()),
      (e) => e instanceof UnsupportedLayerError && /leaves the layer/.test(e.message),
    );
    await assert.rejects(
      () => attempt(new TarBuilder("pax").hardlink("h", "etc/a").build()),
      (e) => e instanceof UnsupportedLayerError && /not in this layer/.test(e.message),
    );
    await assert.rejects(
      () => attempt(new TarBuilder("pax").symlink("s", "/etc").file("s/passwd", "x").build()),
      (e) =>
        e instanceof UnsupportedLayerError &&
        /"s" is not a directory inside the layer \((ENOTDIR|ELOOP)\)/.test(e.message),
    );
    // Refused by its length, naming the entry and the layer, before any statx meets it.
    await assert.rejects(
      () => attempt(new TarBuilder("pax").dir("d").file(`d/${"n".repeat(300)}`, "x").build()),
      (e) =>
        e instanceof UnsupportedLayerError && e.entry === `d/${"n".repeat(300)}` &&
        /300 bytes; Linux allows at most 255 \(NAME_MAX\)/.test(e.message) &&
        /layer/.test(e.message) && !/ENAMETOOLONG/.test(e.message),
    );
    const good = new TarBuilder("pax").file("ok", "ok\n").build();
    await assert.rejects(
      () => attempt(good, `sha256:${"1".repeat(64)}`),
      (e) => e instanceof DiffIdMismatchError && e.found === sha256(good),
    );
    await assert.rejects(
      () => cs.writeLayer({ diffId: sha256(good), parent: "2".repeat(64), tar: once(good) }),
      /parent layer 2{64} of [0-9a-f]{64} is not in the store/,
    );
    assert.equal(await snapshot(store.root), before);
    // And the same tar, announced right, goes in.
    const ok = await attempt(good);
    assert.equal(ok.reused, false);
    assert.equal((await attempt(good)).reused, true, "a second write finds the layer");
  },
  { root: true },
);

toolTest("writeImage checks its input before writing anything", [], async () => {
  await using store = await tempStore();
  using cs = await CStorage.open(store.root, { create: true });
  const layer = new TarBuilder("pax").file("a", "a").build();
  const config = (diffIds: unknown) =>
    new TextEncoder().encode(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        rootfs: { type: "layers", diff_ids: diffIds },
      }),
    );
  const manifest = (v: number) =>
    new TextEncoder().encode(JSON.stringify({ schemaVersion: v, layers: [] }));
  const before = await snapshot(store.root);
  const layers = [{ tar: once(layer) }];
  await assert.rejects(
    () => cs.writeImage({ config: config("nope"), manifest: manifest(2), layers }),
    ImageInputError,
  );
  await assert.rejects(
    () => cs.writeImage({ config: config([sha256(layer)]), manifest: manifest(1), layers }),
    /schemaVersion 2/,
  );
  await assert.rejects(
    () => cs.writeImage({ config: config([sha256(layer)]), manifest: manifest(2), layers: [] }),
    /lists 1 layers/,
  );
  await assert.rejects(
    () =>
      cs.writeImage({
        config: config([sha256(layer)]),
        manifest: manifest(2),
        manifestDigest: sha256(layer),
        layers,
      }),
    /digest mismatch/,
  );
  assert.equal(await snapshot(store.root), before);
}, { root: true });

toolTest(
  "names move between images and records keep keys unistore does not know",
  [TOOLS.podman],
  async (bins) => {
    await using store = await tempStore();
    const oci = `${store.dir}/oci`;
    const layer = new TarBuilder("pax").file("a", "a\n").build();
    const a = await buildOciImage(oci, {
      tag: "a",
      layers: [{ tar: layer, compression: "gzip" }],
      labels: { v: "a" },
    });
    const b = await buildOciImage(oci, {
      tag: "b",
      layers: [{ tar: layer, compression: "none" }],
      labels: { v: "b" },
    });
    using cs = await CStorage.open(store.root, { create: true });
    await importOciImage(cs, oci, "a", ["localhost/app:latest", "localhost/app:a"]);

    // Keys from a future c/storage, on the records and inside flags.
    const layersJson = `${store.root}/overlay-layers/layers.json`;
    const imagesJson = `${store.root}/overlay-images/images.json`;
    const l = JSON.parse(await Deno.readTextFile(layersJson));
    l[0]["x-future"] = { kept: true };
    await Deno.writeTextFile(layersJson, JSON.stringify(l));
    const i = JSON.parse(await Deno.readTextFile(imagesJson));
    i[0]["x-future"] = [1, 2];
    i[0].flags = { "x-flag": "y" };
    await Deno.writeTextFile(imagesJson, JSON.stringify(i));

    const rb = await importOciImage(cs, oci, "b", ["localhost/app:latest"]);
    assert.equal(
      rb.layers[0].reused,
      true,
      "same DiffID, same layer: reused even from another blob",
    );
    const layers = JSON.parse(await Deno.readTextFile(layersJson));
    assert.deepEqual(layers[0]["x-future"], { kept: true });
    const images = JSON.parse(await Deno.readTextFile(imagesJson));
    const recA = images.find((r: { id: string }) => r.id === a.configDigest.slice(7));
    const recB = images.find((r: { id: string }) => r.id === b.configDigest.slice(7));
    assert.deepEqual(recA["x-future"], [1, 2]);
    assert.deepEqual(recA.flags, { "x-flag": "y" });
    assert.deepEqual(recA.names, ["localhost/app:a"], "the tag moved away from image a");
    assert.deepEqual(recA["names-history"], ["localhost/app:a", "localhost/app:latest"]);
    assert.deepEqual(recB.names, ["localhost/app:latest"]);

    const listed = await podman(bins.podman, store, [
      "images",
      "--no-trunc",
      "--format",
      "{{.ID}} {{.Repository}}:{{.Tag}}",
    ]);
    assert.deepEqual(
      listed.stdout.trim().split("\n").sort(),
      [
        `${a.configDigest} localhost/app:a`,
        `${b.configDigest} localhost/app:latest`,
      ].sort(),
    );
  },
  { root: true },
);

toolTest("a layer left incomplete by a crash is replaced, not reused", [], async () => {
  await using store = await tempStore();
  using cs = await CStorage.open(store.root, { create: true });
  const tar = new TarBuilder("pax").file("f", "content\n").build();
  const first = await cs.writeLayer({ diffId: sha256(tar), parent: null, tar: once(tar) });
  // Simulate a crash half-way: the record flagged, the diff damaged.
  const layersJson = `${store.root}/overlay-layers/layers.json`;
  const recs = JSON.parse(await Deno.readTextFile(layersJson));
  recs[0].flags = { incomplete: true };
  await Deno.writeTextFile(layersJson, JSON.stringify(recs));
  await Deno.remove(`${store.root}/overlay/${first.id}/diff/f`);
  const again = await cs.writeLayer({ diffId: sha256(tar), parent: null, tar: once(tar) });
  assert.equal(again.reused, false);
  const layer = await cs.layer(first.id);
  assert.equal(layer.incomplete, false);
  assert.equal(await Deno.readTextFile(`${store.root}/overlay/${first.id}/diff/f`), "content\n");
  assert.equal(
    (await Array.fromAsync(Deno.readDir(`${store.root}/overlay/l`))).length,
    1,
    "the old short link is gone",
  );
}, { root: true });
