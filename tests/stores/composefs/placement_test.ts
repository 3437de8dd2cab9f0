/**
 * Objects on real filesystems: placed from another file they share its extents on XFS and
 * btrfs (FIEMAP), ext4 either refuses (reflink-required) without leaving anything or copies;
 * and an import survives a filesystem shutdown without data writeback (syncfs before every
 * stream symlink), judged by a deep fsck after remounting.
 */

import assert from "node:assert/strict";
import { close, O, openAt } from "../../../ffi/fs.ts";
import { fsverityDigest } from "../../../lib/digest/fsverity.ts";
import { toHex } from "../../../lib/digest/hash.ts";
import { ReflinkUnsupportedError } from "../../../lib/reflink/errors.ts";
import { sharedBytesAt } from "../../../lib/reflink/shared.ts";
import { fsckRepo } from "../../../lib/stores/composefs/fsck.ts";
import { importOciImage } from "../../../lib/stores/composefs/oci_image.ts";
import { ComposefsRepo } from "../../../lib/stores/composefs/repository.ts";
import { buildAwkwardImage, pseudoRandomBytes } from "../../fixtures/oci/mod.ts";
import { fsTest } from "../../harness/loopfs.ts";
import { runOk } from "../../harness/run.ts";
import { findTool } from "../../harness/tools.ts";
import { withTempDir } from "./helpers.ts";
import { listTree } from "../../harness/tree_listing.ts";

const CONTENT = pseudoRandomBytes(2 * 1024 * 1024 + 123, 42);

fsTest("objects placed from another file share its extents", ["xfs", "btrfs"], async (fs) => {
  const source = `${fs.mountpoint}/source.bin`;
  await Deno.writeFile(source, CONTENT);
  const repo = await ComposefsRepo.create(`${fs.mountpoint}/composefs`, { algorithm: "sha512" });
  const src = openAt(-100, source, O.RDONLY);
  try {
    const placed = repo.ensureObjectFromFd(src, { policy: "reflink-required", what: source });
    assert.equal(placed.method, "reflink");
    assert.equal(placed.outcome, "written");
    assert.equal(placed.size, CONTENT.length);
    assert.equal(
      placed.id,
      toHex(fsverityDigest(CONTENT, "sha512")),
      "named by the digest of the placed bytes",
    );
    const objectPath = `${fs.mountpoint}/composefs/objects/${placed.id.slice(0, 2)}/${
      placed.id.slice(2)
    }`;
    assert.deepEqual(await Deno.readFile(objectPath), CONTENT);
    const obj = sharedBytesAt(-100, objectPath);
    const orig = sharedBytesAt(-100, source);
    assert.ok(obj.mappedBytes >= CONTENT.length - 4096, `object mapped ${obj.mappedBytes}`);
    assert.equal(obj.sharedBytes, obj.mappedBytes, "every extent of the object is shared");
    assert.equal(orig.sharedBytes, orig.mappedBytes, "and so are the source's");
    const again = repo.ensureObjectFromFd(src, { policy: "reflink-required" });
    assert.deepEqual([again.id, again.outcome], [placed.id, "already-present"]);
    const tree = await listTree(`${fs.mountpoint}/composefs/objects`);
    assert.deepEqual(tree, [
      placed.id.slice(0, 2),
      `${placed.id.slice(0, 2)}/${placed.id.slice(2)}`,
    ]);
  } finally {
    close(src);
    repo.close();
  }
}, { sizeMiB: 320 });

fsTest(
  "ext4: reflink-required refuses before writing anything; reflink-or-copy copies",
  ["ext4"],
  async (fs) => {
    const source = `${fs.mountpoint}/source.bin`;
    await Deno.writeFile(source, CONTENT);
    const repo = await ComposefsRepo.create(`${fs.mountpoint}/composefs`, { algorithm: "sha256" });
    const src = openAt(-100, source, O.RDONLY);
    try {
      assert.throws(
        () => repo.ensureObjectFromFd(src, { policy: "reflink-required", what: source }),
        ReflinkUnsupportedError,
      );
      assert.deepEqual(
        await listTree(`${fs.mountpoint}/composefs/objects`),
        [],
        "no object, no staging file",
      );
      const placed = repo.ensureObjectFromFd(src, { policy: "reflink-or-copy" });
      assert.notEqual(placed.method, "reflink");
      assert.equal(placed.id, toHex(fsverityDigest(CONTENT, "sha256")));
      const objectPath = `${fs.mountpoint}/composefs/objects/${placed.id.slice(0, 2)}/${
        placed.id.slice(2)
      }`;
      assert.deepEqual(await Deno.readFile(objectPath), CONTENT);
      assert.equal(sharedBytesAt(-100, objectPath).sharedBytes, 0);
    } finally {
      close(src);
      repo.close();
    }
  },
  { sizeMiB: 64 },
);

fsTest("import survives a shutdown without data writeback: every registered stream is intact", [
  "xfs",
], async (fs) => {
  const xfsIo = findTool("xfs_io");
  const mount = findTool("mount");
  const umount = findTool("umount");
  assert.ok(xfsIo && mount && umount, "xfs_io, mount and umount (xfsprogs, mount) are needed");
  await withTempDir(async (dir) => {
    const img = await buildAwkwardImage(`${dir}/layout`, "awkward");
    const path = `${fs.mountpoint}/composefs`;
    const repo = await ComposefsRepo.create(path);
    try {
      await importOciImage(repo, `${dir}/layout`, "awkward");
    } finally {
      repo.close();
    }
    // Crash simulation: the log (names, links) is flushed, dirty file data is not. Only the
    // syncfs before each stream symlink keeps the objects of a visible stream complete.
    await runOk([xfsIo, "-x", "-c", "shutdown -f", fs.mountpoint]);
    await runOk([umount, fs.mountpoint]);
    await runOk([mount, "-t", "xfs", "-o", "loop", fs.image, fs.mountpoint]);
    const after = await ComposefsRepo.open(path);
    try {
      assert.ok(after.listCategory("streams").length >= 1, "streams survived the crash");
      const r = await fsckRepo(after, { deep: true });
      assert.deepEqual(r.findings, []);
      assert.equal(r.layersVerified, img.diffIds.length);
    } finally {
      after.close();
    }
  });
}, { sizeMiB: 320 });
