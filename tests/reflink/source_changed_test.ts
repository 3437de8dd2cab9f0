// cloneToTmpfile with a sink hashes the SOURCE after the clone (its pages are cached): that is
// only sound if the source did not change in between, which these tests try to break.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { AT, close, O, openAt, pread, pwriteAll, readDir } from "../../ffi/fs.ts";
import { SourceChangedError } from "../../lib/reflink/errors.ts";
import { cloneToTmpfile, discardClone } from "../../lib/reflink/place.ts";
import { sharedBytesOf } from "../../lib/reflink/shared.ts";
import { pseudoRandomBytes } from "../harness/data.ts";
import { fsTest } from "../harness/loopfs.ts";

const SIZE = (1 << 20) + 5; // more than one read chunk, with a partial last block

/** A sha256 sink that runs `onUpdate` (once) on its first chunk. */
function hashSink(onUpdate: () => void = () => {}) {
  const h = createHash("sha256");
  let first = true;
  return {
    update(chunk: Uint8Array) {
      if (first) onUpdate();
      first = false;
      h.update(chunk);
    },
    hex: () => h.digest("hex"),
  };
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Paths of O_TMPFILEs (and other files) this process holds open below `dir`. */
function openFilesBelow(dir: string): string[] {
  return [...Deno.readDirSync("/proc/self/fd")].flatMap((e) => {
    try {
      const target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
      return target.startsWith(`${dir}/`) ? [target] : [];
    } catch {
      return []; // the fd readDir itself used, closed by now
    }
  });
}

fsTest("cloneToTmpfile feeds the sink exactly the source's bytes", ["xfs"], async (fs) => {
  const data = pseudoRandomBytes(SIZE, 21);
  await Deno.writeFile(`${fs.mountpoint}/src.bin`, data);
  await Deno.mkdir(`${fs.mountpoint}/dst`);
  const src = openAt(AT.FDCWD, `${fs.mountpoint}/src.bin`, O.RDONLY);
  const dst = openAt(AT.FDCWD, `${fs.mountpoint}/dst`, O.RDONLY | O.DIRECTORY);
  try {
    const sink = hashSink();
    const tmp = cloneToTmpfile(src, dst, { policy: "reflink-required", sink, what: "src.bin" });
    try {
      assert.deepEqual([tmp.method, tmp.size], ["reflink", SIZE]);
      assert.equal(sink.hex(), sha256(data));
      const back = new Uint8Array(SIZE + 1);
      assert.equal(pread(tmp.fd, back, 0), SIZE);
      assert.equal(sha256(back.subarray(0, SIZE)), sha256(data), "the clone holds them too");
      assert.ok(sharedBytesOf(tmp.fd).sharedBytes >= SIZE - 5, "and shares the source's blocks");
      assert.equal(openFilesBelow(`${fs.mountpoint}/dst`).length, 1, "an O_TMPFILE, open");
    } finally {
      discardClone(tmp);
    }
  } finally {
    close(src);
    close(dst);
  }
});

// Appending changes the size; rewriting a byte in place leaves only mtime/ctime to tell.
for (const change of ["append", "rewrite"] as const) {
  fsTest(`a source changed (${change}) during cloneToTmpfile is refused`, ["xfs"], async (fs) => {
    const data = pseudoRandomBytes(SIZE, 22);
    const path = `${fs.mountpoint}/src.bin`;
    await Deno.writeFile(path, data);
    await Deno.mkdir(`${fs.mountpoint}/dst`);
    // Outlasts coarse (per-tick) timestamps, so the rewrite gets a later mtime than the write.
    await new Promise((r) => setTimeout(r, 20));
    const src = openAt(AT.FDCWD, path, O.RDONLY);
    const writer = openAt(AT.FDCWD, path, O.WRONLY);
    const dst = openAt(AT.FDCWD, `${fs.mountpoint}/dst`, O.RDONLY | O.DIRECTORY);
    try {
      const sink = hashSink(() =>
        change === "append"
          ? pwriteAll(writer, new Uint8Array([1]), SIZE)
          : pwriteAll(writer, new Uint8Array([data[0] ^ 0xff]), 0)
      );
      assert.throws(
        () => cloneToTmpfile(src, dst, { policy: "reflink-required", sink, what: "layer/src.bin" }),
        (e) => {
          assert.ok(e instanceof SourceChangedError, String(e));
          assert.equal(e.source, "layer/src.bin");
          assert.match(e.message, /^layer\/src\.bin changed while it was cloned/);
          return true;
        },
      );
      assert.deepEqual(readDir(dst), [], "nothing was linked");
      assert.deepEqual(openFilesBelow(`${fs.mountpoint}/dst`), [], "the O_TMPFILE was closed");
    } finally {
      [src, writer, dst].forEach(close);
    }
  });
}
