/**
 * ostree-ext images: the merge commit unistore writes for an image (ref, metadata, timestamp,
 * bootable-image transforms) as the real ostree reads it back (`ostree refs`, `ostree show`,
 * `ostree fsck`), and listing images from refs.
 */

import assert from "node:assert/strict";
import { canonicalizeJsonText, canonicalJson } from "../../../lib/format/canonical_json.ts";
import { OSTREE_EXT_LAYER_TRANSFORM } from "../../../lib/stores/ostree/commit_writer.ts";
import {
  imageCommitMetadata,
  imageTimestamp,
  listImages,
  META_COMPOSEFS_SYNTHESIZED,
  parseImageReference,
  parseOstreeImageReference,
  readImage,
  writeImageCommit,
} from "../../../lib/stores/ostree/image.ts";
import { OstreeRepo } from "../../../lib/stores/ostree/repo.ts";
import { runOk } from "../../harness/run.ts";
import { toolTest } from "../../harness/tools.ts";
import { bootableEntries, imageDocuments } from "../../fixtures/ostree/bootable.ts";
import { OSTREE_TOOL, ostreeInit } from "../../fixtures/ostree/ostree_cli.ts";

const IMAGE = "docker://quay.io/example/os:1";
const REF = "ostree/container/image/docker_3A__2F__2F_quay_2E_io/example/os_3A_1";

Deno.test("canonical JSON: sorted keys (UTF-16 order), no whitespace, JSON spellings", () => {
  assert.equal(
    canonicalJson({ b: 1, a: [true, null, "x"], "": {} }),
    '{"":{},"a":[true,null,"x"],"b":1}',
  );
  assert.equal(
    canonicalizeJsonText('{ "z": 1.50, "é": "\\u0041", "A": 1e3 }'),
    '{"A":1000,"z":1.5,"é":"A"}',
  );
  assert.equal(canonicalJson("line\nbreak\u0001"), '"line\\nbreak\\u0001"');
  assert.throws(() => canonicalJson({ x: NaN }), TypeError);
});

Deno.test("image references: origins and transports as ostree-ext parses them", () => {
  const r = parseOstreeImageReference("ostree-unverified-registry:quay.io/x/y:tag");
  assert.deepEqual(r, {
    sigverify: "ostree-unverified-image",
    transport: "registry",
    name: "quay.io/x/y:tag",
    imageReference: "docker://quay.io/x/y:tag",
  });
  assert.equal(
    parseOstreeImageReference("ostree-image-signed:docker://quay.io/a/b").imageReference,
    "docker://quay.io/a/b",
  );
  const remote = parseOstreeImageReference(
    "ostree-remote-image:fedora:docker://quay.io/fedora/x:40",
  );
  assert.equal(remote.remote, "fedora");
  assert.equal(remote.imageReference, "docker://quay.io/fedora/x:40");
  assert.equal(parseImageReference("oci:/var/lib/img:tag").imageReference, "oci:/var/lib/img:tag");
  assert.equal(parseImageReference("registry:quay.io/a").imageReference, "docker://quay.io/a");
  assert.throws(
    () => parseOstreeImageReference("quay.io/x:1"),
    /invalid signature source "quay.io\/x"/,
  );
  assert.throws(() => parseOstreeImageReference("quay.io"), /missing/);
  assert.throws(() => parseImageReference("ftp:x"), /unknown transport/);
});

Deno.test("merge-commit metadata: keys sorted as ostree-ext writes them, canonical JSON, timestamp", () => {
  const docs = imageDocuments(3);
  const md = imageCommitMetadata({
    ...docs,
    composefsSynthesized: true,
    importerVersion: "test 1",
  });
  assert.deepEqual(md.map(([k]) => k), [
    "ostree-ext.composefs-synthesized",
    "ostree.container.image-config",
    "ostree.importer.version",
    "ostree.manifest",
    "ostree.manifest-digest",
  ]);
  assert.equal(md[3][1].value, canonicalizeJsonText(docs.manifest));
  assert.ok(!(md[3][1].value as string).includes("\n"));
  assert.equal(imageTimestamp(docs.manifest, docs.config), docs.timestamp);
  assert.equal(imageTimestamp("{}", docs.config), Date.UTC(2024, 0, 3) / 1000);
  assert.equal(imageTimestamp("{}", "null"), undefined);
  assert.throws(
    () => imageCommitMetadata({ ...docs, manifestDigest: "sha256:short" }),
    /expected sha256:<64 hex>/,
  );
  assert.equal(imageCommitMetadata(docs).some(([k]) => k === META_COMPOSEFS_SYNTHESIZED), false);
});

toolTest(
  "writeImageCommit: ref, metadata and transformed tree as ostree reads them",
  [OSTREE_TOOL],
  async ({ ostree }) => {
    const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "unistore-ostree-image-" });
    try {
      const path = `${dir}/repo`;
      await ostreeInit(ostree, path);
      using repo = OstreeRepo.open(path);
      const docs = imageDocuments(1);
      const r = await writeImageCommit(repo, bootableEntries(1), {
        imageReference: IMAGE,
        ...docs,
        composefsSynthesized: true,
        policy: "reflink-or-copy",
      });
      assert.equal(r.ref, REF);
      assert.deepEqual([...r.filtered], [["leftover", 1]]);

      // ostree sees the ref and the metadata.
      const refs = await runOk([
        ostree,
        "refs",
        `--repo=${path}`,
        "--list",
        "ostree/container/image",
      ]);
      assert.equal(refs.stdout.trim(), REF);
      const show = (key: string) =>
        runOk([ostree, "show", `--repo=${path}`, `--print-metadata-key=${key}`, REF]).then((o) =>
          o.stdout.trim()
        );
      assert.equal(await show("ostree.manifest-digest"), `'${docs.manifestDigest}'`);
      assert.equal(await show("ostree.manifest"), `'${canonicalizeJsonText(docs.manifest)}'`);
      assert.equal(
        await show("ostree.container.image-config"),
        `'${canonicalizeJsonText(docs.config)}'`,
      );
      assert.equal(await show("ostree-ext.composefs-synthesized"), "true");
      const log = await runOk([ostree, "show", `--repo=${path}`, REF]);
      assert.match(log.stdout, /Date: {2}2024-02-01 12:00:00 \+0000/);
      await runOk([ostree, "fsck", `--repo=${path}`]);

      // The tree: /etc moved to /usr/etc, API dir emptied, injected hostname dropped, rest kept.
      const items = new Map([...repo.walkCommit(r.commit)].map((i) => [i.path, i]));
      for (
        const p of [
          "/bin",
          "/usr/etc/motd",
          "/usr/etc/os-release",
          "/usr/etc/motd.hardlink",
          "/run",
          "/var/lib/data",
        ]
      ) {
        assert.ok(items.has(p), `${p} in the commit`);
      }
      for (const p of ["/etc", "/usr/etc/hostname", "/run/leftover"]) {
        assert.ok(
          !items.has(p),
          `${p} not in the commit`,
        );
      }
      assert.equal(
        items.get("/usr/etc/motd.hardlink")!.checksum,
        items.get("/usr/etc/motd")!.checksum,
      );
      assert.equal(items.get("/bin")!.symlinkTarget, "usr/bin");
      assert.equal(items.get("/usr/lib/modules")!.mode, 0o40755, "implicit parent 0:0 0755");

      // Reading images back by reference.
      const images = listImages(repo);
      assert.equal(images.length, 1);
      assert.equal(images[0].imageReference, IMAGE);
      assert.equal(images[0].commit, r.commit);
      assert.equal(images[0].timestamp, docs.timestamp);
      assert.equal(images[0].metadata?.manifestDigest, docs.manifestDigest);
      assert.equal(images[0].metadata?.composefsSynthesized, true);
      assert.equal(readImage(repo, IMAGE)?.commit, r.commit);
      assert.equal(readImage(repo, "docker://quay.io/example/os:2"), null);

      // The layer transform of ostree-ext: non-/usr top level dropped, /var to the factory.
      const layer = await writeImageCommit(repo, bootableEntries(1), {
        imageReference: "docker://quay.io/example/os:layer",
        ...docs,
        transform: OSTREE_EXT_LAYER_TRANSFORM,
        policy: "reflink-or-copy",
      });
      const paths = new Set([...repo.walkCommit(layer.commit)].map((i) => i.path));
      assert.ok(paths.has("/usr/share/factory/var/lib/data"));
      assert.ok(!paths.has("/bin") && !paths.has("/var"));
      assert.equal(layer.filtered.get("bin"), 1);
      assert.equal(listImages(repo).length, 2);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
  { root: true },
);
