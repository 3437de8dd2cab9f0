// `unistore du`: physical sharing between stores as FIEMAP sees it, on a
// reflink filesystem and on ext4 where nothing can be shared.

import assert from "node:assert/strict";
import { close, linkAt, O, openAt, openDir, writeAll } from "../../ffi/fs.ts";
import { placeFile } from "../../lib/reflink/place.ts";
import { pseudoRandomBytes } from "../harness/data.ts";
import { fsTest } from "../harness/loopfs.ts";
import { run } from "../harness/run.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const SIZE = 4 * 1024 * 1024;

function unistore(...args: string[]) {
  return run([Deno.execPath(), "run", "-A", "--quiet", MAIN, ...args]);
}

/** ostree objects: one 4 MiB file and a hardlink to it; composefs objects: a clone (or copy). */
async function layOut(root: string) {
  await Deno.mkdir(`${root}/sysroot/ostree/repo/objects/aa`, { recursive: true });
  await Deno.mkdir(`${root}/sysroot/composefs/objects/bb`, { recursive: true });
  const ostreeDir = openDir(`${root}/sysroot/ostree/repo/objects/aa`);
  const cfsDir = openDir(`${root}/sysroot/composefs/objects/bb`);
  const fd = openAt(ostreeDir, "obj.file", O.CREAT | O.EXCL | O.RDWR, 0o644);
  try {
    writeAll(fd, pseudoRandomBytes(SIZE, 5));
    linkAt(ostreeDir, "obj.file", ostreeDir, "same-inode.file");
    placeFile(fd, cfsDir, "clone", { policy: "reflink-or-copy" });
  } finally {
    [fd, ostreeDir, cfsDir].forEach(close);
  }
  await run(["sync", "-f", root]);
}

fsTest(
  "du: a reflinked object counts once physically and shows as shared",
  ["xfs", "btrfs"],
  async (fs) => {
    await layOut(fs.mountpoint);
    const r = await unistore("--root", fs.mountpoint, "du", "--json");
    assert.equal(r.code, 0, r.stderr);
    const du = JSON.parse(r.stdout);
    const [ostree, cfs, cs] = du.stores;
    assert.deepEqual([ostree.name, cfs.name, cs.name], [
      "ostree",
      "composefs",
      "containers-storage",
    ]);
    assert.equal(ostree.files, 1, "the hardlink is the same inode");
    assert.equal(ostree.logicalBytes, SIZE);
    assert.equal(cfs.logicalBytes, SIZE);
    assert.equal(ostree.physicalBytes, SIZE);
    assert.equal(cfs.sharedWithOtherStores, SIZE);
    assert.equal(cs.present, false);
    assert.equal(du.physicalBytes, SIZE);
    assert.equal(du.savedBytes, SIZE);
    const human = await unistore("--root", fs.mountpoint, "du");
    assert.match(human.stdout, /saved by sharing: 4\.0 MiB \(50% of logical\)/);
    assert.match(human.stdout, /containers-storage .* \(absent\)/);
  },
);

fsTest("du: copies on ext4 share nothing", ["ext4"], async (fs) => {
  await layOut(fs.mountpoint);
  const du = JSON.parse((await unistore("--root", fs.mountpoint, "du", "--json")).stdout);
  assert.equal(du.stores[1].sharedWithOtherStores, 0);
  assert.equal(du.physicalBytes, 2 * SIZE);
  assert.equal(du.savedBytes, 0);
});
