// Sharing an ostree commit written before unification with composefs: the
// kernel's FIDEDUPERANGE, judged by FIEMAP and by `ostree fsck`.

import assert from "node:assert/strict";
import { ComposefsRepo } from "../../lib/stores/composefs/repository.ts";
import { importOciImage } from "../../lib/stores/composefs/oci_image.ts";
import { OstreeRepo } from "../../lib/stores/ostree/repo.ts";
import { shareOstreeWithComposefs } from "../../lib/pipeline/ostree_dedupe.ts";
import { fsTest } from "../harness/loopfs.ts";
import { runOk } from "../harness/run.ts";
import { findTool } from "../harness/tools.ts";
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
