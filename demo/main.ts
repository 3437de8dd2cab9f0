/**
 * `deno task demo`: what unistore will show once the unified-storage commands
 * exist. For now it runs what is built: the reflink probe and the engine on a
 * loop XFS (as root) or on the current filesystem (otherwise).
 *
 * @module
 */

import { close, mkdirAt, O, openAt, openDir, writeAll } from "../ffi/fs.ts";
import { probeReflink } from "../lib/reflink/probe.ts";
import { cloneTree } from "../lib/reflink/tree.ts";
import { sharedBytesAt } from "../lib/reflink/shared.ts";
import { createLoopFs, type LoopFs } from "../tests/harness/loopfs.ts";
import { loopFsSkipReason } from "../tests/harness/loopfs.ts";

console.log(`unistore demo

Planned (not built yet): build a sample ostree bootc host with the real ostree on a loop XFS,
then run status -> set-unified full -> fsck images -> du and show the space saved.

What runs today: the reflink engine. It writes a 64 MiB "image" tree, clones it, and shows
that the clone's blocks are shared with the original.
`);

let fs: LoopFs | undefined;
let base: string;
const skip = loopFsSkipReason("xfs");
if (skip === null) {
  fs = await createLoopFs("xfs", { sizeMiB: 512 });
  base = fs.mountpoint;
  console.log(`created a loop XFS (reflink=1) at ${base}`);
} else {
  base = await Deno.makeTempDir({ prefix: "unistore-demo-" });
  console.log(`no loop XFS (${skip}); using ${base} on the current filesystem`);
}
try {
  const root = openDir(base);
  mkdirAt(root, "image", 0o755);
  const image = openAt(root, "image", O.RDONLY | O.DIRECTORY);
  const chunk = new Uint8Array(1 << 20);
  for (let i = 0; i < 16; i++) {
    crypto.getRandomValues(chunk.subarray(0, 65536));
    const fd = openAt(image, `layer-file-${i}`, O.CREAT | O.EXCL | O.WRONLY, 0o644);
    for (let m = 0; m < 4; m++) writeAll(fd, chunk);
    close(fd);
  }
  const probe = probeReflink(root);
  console.log(
    `reflink probe: ${probe.supported ? "reflinks work" : `no reflinks: ${probe.reason}`} ` +
      `(${probe.filesystem})`,
  );
  mkdirAt(root, "clone", 0o755);
  const clone = openAt(root, "clone", O.RDONLY | O.DIRECTORY);
  const stats = cloneTree(image, clone, { policy: "reflink-or-copy" });
  let shared = 0;
  for (let i = 0; i < 16; i++) shared += sharedBytesAt(clone, `layer-file-${i}`).sharedBytes;
  console.log(
    `cloned ${stats.files} files, ${(stats.bytes / 2 ** 20).toFixed(0)} MiB: ` +
      `${stats.methods.reflink} by reflink, ${stats.files - stats.methods.reflink} by copy; ` +
      `${(shared / 2 ** 20).toFixed(0)} MiB of the clone share blocks with the original`,
  );
  [image, clone, root].forEach(close);
} finally {
  if (fs) await fs.close();
  else await Deno.remove(base, { recursive: true });
}
