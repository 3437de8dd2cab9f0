// FICLONERANGE, fs-verity ioctls and flock: the calls the engine uses less
// often, each checked against what the kernel does.

import assert from "node:assert/strict";
import { ficloneRange } from "../../ffi/clone.ts";
import { SysError } from "../../ffi/errno.ts";
import { fiemap } from "../../ffi/extents.ts";
import { close, O, openAt, openDir, pread, writeAll } from "../../ffi/fs.ts";
import { flockRelease, flockTry, flockWait } from "../../ffi/lock.ts";
import { enableVerity, measureVerity } from "../../ffi/verity.ts";
import { pseudoRandomBytes } from "../harness/data.ts";
import { fsTest } from "../harness/loopfs.ts";

fsTest(
  "FICLONERANGE shares an aligned range and refuses an unaligned one",
  ["xfs", "btrfs"],
  (fs) => {
    const dir = openDir(fs.mountpoint);
    const data = pseudoRandomBytes(16 * 4096, 11);
    const src = openAt(dir, "src", O.CREAT | O.EXCL | O.RDWR, 0o644);
    const dst = openAt(dir, "dst", O.CREAT | O.EXCL | O.RDWR, 0o644);
    try {
      writeAll(src, data);
      ficloneRange(dst, src, 8 * 4096, 4 * 4096, 0, "src[32K..48K]");
      const back = new Uint8Array(4 * 4096);
      assert.equal(pread(dst, back, 0), back.length);
      assert.deepEqual(back, data.subarray(8 * 4096, 12 * 4096));
      assert.ok(fiemap(dst).every((e) => e.shared), "the cloned range is shared");
      assert.throws(() => ficloneRange(dst, src, 100, 4096, 0, "unaligned"), (e) => {
        assert.ok(e instanceof SysError);
        assert.equal(e.code, "EINVAL");
        assert.equal(e.call, "ioctl(FICLONERANGE)");
        assert.equal(e.path, "unaligned");
        return true;
      });
    } finally {
      [src, dst, dir].forEach(close);
    }
    return Promise.resolve();
  },
);

fsTest("fs-verity ioctls: typed errors where the kernel has no verity, the vector where it has", [
  "xfs",
  "ext4",
], (fs) => {
  const dir = openDir(fs.mountpoint);
  const w = openAt(dir, "f", O.CREAT | O.EXCL | O.WRONLY, 0o644);
  writeAll(w, new TextEncoder().encode("hello world"));
  close(w);
  const fd = openAt(dir, "f", O.RDONLY);
  try {
    let enabled = false;
    try {
      enableVerity(fd, "sha256", "f");
      enabled = true;
    } catch (e) {
      // Without CONFIG_FS_VERITY (or the ext4 verity feature): EOPNOTSUPP or ENOTTY.
      assert.ok(e instanceof SysError, String(e));
      assert.ok(["EOPNOTSUPP", "ENOTTY"].includes(e.code), e.message);
      assert.equal(e.call, "ioctl(FS_IOC_ENABLE_VERITY)");
    }
    if (enabled) {
      // A verity-capable kernel: the kernel's digest is the spec's vector.
      const d = measureVerity(fd, "f");
      assert.equal(
        Array.from(d!, (b) => b.toString(16).padStart(2, "0")).join(""),
        "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64",
      );
    } else {
      assert.throws(() => measureVerity(fd, "f"), (e) => {
        assert.ok(e instanceof SysError);
        return ["EOPNOTSUPP", "ENOTTY", "ENODATA"].includes(e.code);
      });
    }
  } finally {
    [fd, dir].forEach(close);
  }
  return Promise.resolve();
});

Deno.test("flock: two open file descriptions exclude each other; waiting ends on release", async () => {
  const path = await Deno.makeTempDir();
  const dir = openDir(path);
  const a = openAt(dir, ".", O.RDONLY | O.DIRECTORY);
  const b = openAt(dir, ".", O.RDONLY | O.DIRECTORY);
  try {
    assert.ok(flockTry(a, "read"));
    assert.ok(flockTry(b, "read"), "shared locks coexist");
    assert.equal(flockTry(b, "write"), false, "no exclusive lock while another holds a shared one");
    const waiting = flockWait(b, "write");
    await new Promise((r) => setTimeout(r, 100));
    flockRelease(a);
    await waiting;
    assert.equal(flockTry(a, "read"), false, "b now holds it exclusively");
    flockRelease(b);
    assert.ok(flockTry(a, "write"));
  } finally {
    [a, b, dir].forEach(close);
    await Deno.remove(path, { recursive: true });
  }
});
