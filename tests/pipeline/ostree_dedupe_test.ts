// Sharing an ostree commit written before unification with composefs: the
// kernel's FIDEDUPERANGE, judged by FIEMAP and by `ostree fsck`.

import assert from "node:assert/strict";
import { ComposefsRepo } from "../../lib/stores/composefs/repository.ts";
import { importOciImage } from "../../lib/stores/composefs/oci_image.ts";
import { OstreeRepo } from "../../lib/stores/ostree/repo.ts";
import { OstreeFileIndex, shareOstreeWithComposefs } from "../../lib/pipeline/ostree_dedupe.ts";
import { fsTest } from "../harness/loopfs.ts";
import { runOk } from "../harness/run.ts";
import { findTool, toolTest } from "../harness/tools.ts";
import { buildBootableImage } from "./bootable_image.ts";
import { extractLayersWithGnuTar } from "./helpers.ts";

/** The tree exactly as extracted: no ostree-ext path changes. */
const AS_IS = {
  remapEtc: false,
  retainVar: true,
  allowNonUsr: true,
  emptyApiDirs: false,
  dropRuntimeInjected: false,
};

fsTest("an ostree commit of separate copies shares composefs's blocks after dedupe", [
  "xfs",
  "btrfs",
], async (fs) => {
  const ostree = findTool("ostree"), tar = findTool("tar");
  assert.ok(ostree && tar, "ostree and tar are needed (apt-get install ostree tar)");
  const m = fs.mountpoint;
  const image = await buildBootableImage(`${m}/oci`, "v1");
  using cfs = await ComposefsRepo.create(`${m}/composefs`);
  await importOciImage(cfs, `${m}/oci`, "v1");
  // The "pulled before unification" commit: the same tree, extracted and committed by ostree.
  await Deno.mkdir(`${m}/scratch`);
  await extractLayersWithGnuTar(tar, image.layerTars, `${m}/tree`, `${m}/scratch`);
  await runOk([ostree, `--repo=${m}/repo`, "init", "--mode=bare"]);
  const commit = (await runOk([
    ostree,
    `--repo=${m}/repo`,
    "commit",
    "--branch=old",
    `--tree=dir=${m}/tree`,
  ])).stdout.trim();
  await Deno.remove(`${m}/tree`, { recursive: true });
  await runOk(["sync", "-f", m]);
  const dfBefore = await usedBytes(m);

  using repo = OstreeRepo.open(`${m}/repo`);
  const first = await shareOstreeWithComposefs(cfs, repo, image.manifestDigest, commit, {
    transform: AS_IS,
  });
  assert.ok(first.paired >= 3, `paired ${first.paired}`);
  assert.equal(first.deduped + first.inline, first.paired, JSON.stringify(first));
  assert.equal(first.differed, 0);
  assert.ok(first.bytesDeduped > 100 * 1024);
  await runOk(["sync", "-f", m]);
  const saved = dfBefore - await usedBytes(m);
  assert.ok(saved >= first.bytesDeduped * 0.5, `df shows ${saved} bytes freed`);
  await runOk([ostree, `--repo=${m}/repo`, "fsck", "--quiet"]);

  const second = await shareOstreeWithComposefs(cfs, repo, image.manifestDigest, commit, {
    transform: AS_IS,
  });
  assert.equal(
    second.alreadyShared + second.inline,
    second.paired,
    "a second run finds everything shared",
  );
  assert.equal(second.alreadyShared, first.deduped);
  assert.equal(second.bytesDeduped, 0);
}, { sizeMiB: 512 });

async function usedBytes(mountpoint: string): Promise<number> {
  const out = await runOk(["df", "-B1", "--output=used", mountpoint]);
  return Number(out.stdout.trim().split("\n")[1]);
}

toolTest(
  "the ostree file index maps image paths through ostree-ext's transform, each object once",
  [{ bin: "ostree", pkg: "ostree" }],
  async ({ ostree }) => {
    const dir = await Deno.makeTempDir({ prefix: "unistore-ostree-index-" });
    try {
      // A commit laid out as ostree-ext writes an image: /etc under /usr/etc.
      const tree = `${dir}/tree`;
      await Deno.mkdir(`${tree}/usr/bin`, { recursive: true });
      await Deno.mkdir(`${tree}/usr/etc`, { recursive: true });
      await Deno.writeTextFile(`${tree}/usr/bin/tool`, "tool\n");
      await Deno.writeTextFile(`${tree}/usr/bin/same-a`, "same bytes\n");
      await Deno.writeTextFile(`${tree}/usr/bin/same-b`, "same bytes\n");
      await Deno.writeTextFile(`${tree}/usr/etc/motd`, "hello\n");
      await runOk([ostree, `--repo=${dir}/repo`, "init", "--mode=bare"]);
      const commit = (await runOk([
        ostree,
        `--repo=${dir}/repo`,
        "commit",
        "--branch=img",
        `--tree=dir=${tree}`,
      ])).stdout.trim();
      // The oracle: ostree's own checksum of each path.
      const checksumOf = async (path: string) =>
        (await runOk([ostree, `--repo=${dir}/repo`, "ls", "-C", commit, path])).stdout.trim()
          .split(/\s+/).at(-2)!;

      using repo = OstreeRepo.open(`${dir}/repo`);
      const index = new OstreeFileIndex(repo, commit);
      assert.equal(index.take("etc/motd"), await checksumOf("/usr/etc/motd"));
      assert.equal(index.take("./usr/bin/tool"), await checksumOf("/usr/bin/tool"));
      assert.equal(index.take("usr/bin/same-a"), await checksumOf("/usr/bin/same-a"));
      assert.equal(index.take("usr/bin/same-b"), null, "the same object is handed out once");
      assert.equal(index.take("usr/bin/tool"), null);
      assert.equal(index.take("usr/bin/missing"), null);
      assert.equal(index.take("usr/nodir/x"), null);
      assert.equal(index.take("usr/bin"), null, "a directory is no file");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
