/**
 * `image import composefs:REF --to ostree` on a host root: a bootable image imported into the
 * host's composefs repository is synthesized into the sysroot's ostree repository (built by
 * `ostree admin init-fs`/`os-init`) with the bootable-image transform, and the real
 * `ostree admin deploy` deploys the commit: kernel found, `/etc` merged, whiteouts applied,
 * runtime content dropped, the kernel's blocks shared with composefs.
 */

import assert from "node:assert/strict";
import { fiemap } from "../../ffi/extents.ts";
import { close, O, openAt } from "../../ffi/fs.ts";
import { clearProbeCache } from "../../lib/reflink/probe.ts";
import {
  defaultImageReference,
  importComposefsImageToOstree,
} from "../../lib/pipeline/composefs_to_ostree.ts";
import { ImageReferenceError } from "../../lib/pipeline/errors.ts";
import { ostreeImages } from "../../lib/pipeline/inventory.ts";
import { bootcTagFor, importOciImage, tagImage } from "../../lib/stores/composefs/oci_image.ts";
import { ComposefsRepo } from "../../lib/stores/composefs/repository.ts";
import { OstreeRepo } from "../../lib/stores/ostree/repo.ts";
import { fsTest } from "../harness/loopfs.ts";
import { runOk } from "../harness/run.ts";
import { findTool, isCi, requireTool } from "../harness/tools.ts";
import { buildBootableImage, FIRMWARE, INITRAMFS, KERNEL, KVER } from "./bootable_image.ts";
import { physicalExtents } from "./helpers.ts";

const TAG = "quay.io/example/os:1";

function ostreeBin(): string | null {
  const reason = requireTool("ostree", "ostree");
  if (reason === null) return findTool("ostree")!;
  if (isCi()) throw new Error(`${reason} (CI=true: a missing tool is a failure)`);
  console.error(`skip: ${reason}`);
  return null;
}

const exists = (p: string) => Deno.lstat(p).then(() => true, () => false);

fsTest("composefs:REF --to ostree on a host root deploys with ostree admin deploy", [
  "xfs",
], async (fs) => {
  const ostree = ostreeBin();
  if (!ostree) return;
  clearProbeCache();
  const root = `${fs.mountpoint}/root`;
  const sysroot = `${root}/sysroot`;
  await Deno.mkdir(sysroot, { recursive: true });
  await runOk([ostree, "admin", "init-fs", "--modern", sysroot]);
  await runOk([ostree, "admin", "os-init", `--sysroot=${sysroot}`, "exampleos"]);
  const img = await buildBootableImage(`${fs.mountpoint}/layout`, TAG);
  {
    using cfs = await ComposefsRepo.create(`${sysroot}/composefs`);
    await importOciImage(cfs, `${fs.mountpoint}/layout`, TAG);
    // The digest and bootc's GC-root tag name no reference: the image's one other tag is used.
    assert.equal(defaultImageReference(cfs, img.manifestDigest), `docker://${TAG}`);
    assert.equal(defaultImageReference(cfs, bootcTagFor(img.manifestDigest)), `docker://${TAG}`);
    assert.equal(defaultImageReference(cfs, "oci:/srv/images:x"), "oci:/srv/images:x");
  }

  const r = await importComposefsImageToOstree({
    root,
    ref: `composefs:${TAG}`,
    policy: "reflink-required",
  });
  assert.equal(r.imageReference, `docker://${TAG}`);
  assert.equal(r.ref, "ostree/container/image/docker_3A__2F__2F_quay_2E_io/example/os_3A_1");
  assert.deepEqual(r.skipped, []);
  assert.deepEqual(
    r.filtered,
    { leftover: 1, "firmware.bin": 1 },
    "/run/leftover and /tmp/firmware.bin dropped, /run and /tmp kept empty",
  );
  assert.equal(r.probe?.filesystem, "xfs");
  await runOk([ostree, "fsck", `--repo=${sysroot}/ostree/repo`]);
  // Timestamp from the manifest annotation, as ostree-ext sets it.
  const log = await runOk([ostree, "log", `--repo=${sysroot}/ostree/repo`, r.ref]);
  assert.match(log.stdout, /Date:\s+2024-03-01 12:00:00 \+0000/);

  const origin = `${fs.mountpoint}/origin`;
  await Deno.writeTextFile(
    origin,
    `[origin]\ncontainer-image-reference=ostree-unverified-registry:${TAG}\n`,
  );
  await runOk([
    ostree,
    "admin",
    "deploy",
    `--sysroot=${sysroot}`,
    "--os=exampleos",
    `--origin-file=${origin}`,
    "--karg=root=LABEL=root",
    r.commit,
  ]);
  const status = await runOk([ostree, "admin", "status", `--sysroot=${sysroot}`]);
  assert.match(status.stdout, new RegExp(`exampleos ${r.commit}\\.0`));
  const entries = [...Deno.readDirSync(`${sysroot}/boot/loader/entries`)].map((e) => e.name);
  assert.equal(entries.length, 1);
  const entry = await Deno.readTextFile(`${sysroot}/boot/loader/entries/${entries[0]}`);
  assert.match(entry, /^title Example OS 1 \(ostree:0\)$/m);
  assert.match(entry, new RegExp(`^linux /ostree/exampleos-[0-9a-f]{64}/vmlinuz-${KVER}$`, "m"));

  const d = `${sysroot}/ostree/deploy/exampleos/deploy/${r.commit}.0`;
  assert.deepEqual(await Deno.readFile(`${d}/usr/lib/modules/${KVER}/vmlinuz`), KERNEL);
  assert.deepEqual(await Deno.readFile(`${d}/usr/lib/modules/${KVER}/initramfs.img`), INITRAMFS);
  assert.equal(await Deno.readTextFile(`${d}/etc/motd`), "welcome to layer 1\n");
  assert.match(await Deno.readTextFile(`${d}/etc/os-release`), /VERSION_ID=1/);
  assert.equal(await Deno.readLink(`${d}/bin`), "usr/bin");
  assert.ok(await exists(`${d}/usr/bin/new-tool`));
  assert.ok(!(await exists(`${d}/usr/bin/old-tool`)), "whited out in layer 1");
  assert.ok(!(await exists(`${d}/etc/hostname`)), "empty injected hostname dropped");
  assert.ok(await exists(`${d}/run`) && !(await exists(`${d}/run/leftover`)));
  assert.equal(await Deno.readTextFile(`${d}/var/lib/data`), "var content\n");
  assert.deepEqual(await Deno.readFile(`${d}/usr/lib/firmware.bin`), FIRMWARE);
  assert.deepEqual([...Deno.readDirSync(`${d}/tmp`)], []);
  assert.equal(
    (await Deno.lstat(`${d}/usr/lib/modules/${KVER}/initramfs.img`)).mode! & 0o7777,
    0o600,
  );

  // The deployed kernel is the ostree object, whose blocks are composefs's.
  const cfsExtents = physicalExtents(`${sysroot}/composefs/objects`);
  const fd = openAt(-100, `${d}/usr/lib/modules/${KVER}/vmlinuz`, O.RDONLY | O.NOFOLLOW);
  try {
    const extents = fiemap(fd);
    assert.ok(extents.length > 0);
    for (const x of extents) {
      assert.ok(x.shared);
      assert.ok(cfsExtents.some((c) => c.start <= x.physical && x.physical + x.length <= c.end));
    }
  } finally {
    close(fd);
  }

  {
    using repo = OstreeRepo.open(`${sysroot}/ostree/repo`);
    const images = ostreeImages(repo);
    assert.deepEqual(images.map((i) => [i.imageReference, i.synthesized, i.configDigest]), [
      [`docker://${TAG}`, true, img.configDigest],
    ]);
  }
  const again = await importComposefsImageToOstree({
    root,
    ref: `composefs:${TAG}`,
    policy: "reflink-required",
  });
  assert.equal(again.skippedExisting, true);
  assert.equal(again.commit, r.commit);

  // Two tags and a digest: which reference is meant cannot be guessed.
  {
    using cfs = await ComposefsRepo.open(`${sysroot}/composefs`);
    tagImage(cfs, img.manifestDigest, "quay.io/example/os:latest");
  }
  await assert.rejects(
    importComposefsImageToOstree({
      root,
      ref: `composefs:${img.manifestDigest}`,
      policy: "reflink-required",
    }),
    (e) =>
      e instanceof ImageReferenceError && /several tags/.test(e.message) &&
      e.message.includes("quay.io/example/os:latest"),
  );
}, { sizeMiB: 400 });
