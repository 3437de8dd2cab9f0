// The reflink engine on real filesystems: the kernel's FIEMAP SHARED flag and
// the bytes themselves are the judges.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ficlone } from "../../ffi/clone.ts";
import { SysError } from "../../ffi/errno.ts";
import { fiemap } from "../../ffi/extents.ts";
import {
  close,
  existsAt,
  fstat,
  lseek,
  O,
  openAt,
  openDir,
  pwriteAll,
  readDir,
  readFileAt,
  SEEK,
  statAt,
  writeAll,
} from "../../ffi/fs.ts";
import { fgetxattr } from "../../ffi/xattr.ts";
import { ReflinkUnsupportedError } from "../../lib/reflink/errors.ts";
import { clearProbeCache, probeReflink, probeReflinkPath } from "../../lib/reflink/probe.ts";
import { cloneToTmpfile, discardClone, placeFile, readThrough } from "../../lib/reflink/place.ts";
import { assertUnchanged, sourceVersion } from "../../lib/reflink/source_version.ts";
import { SourceChangedError } from "../../lib/reflink/errors.ts";
import { DEDUPE_CHUNK, dedupeFiles } from "../../lib/reflink/dedupe.ts";
import { sharedBytesAt } from "../../lib/reflink/shared.ts";
import { pseudoRandomBytes } from "../harness/data.ts";
import { createLoopFs, fsTest, type LoopFs } from "../harness/loopfs.ts";

function writeFile(dir: number, name: string, data: Uint8Array<ArrayBuffer>): void {
  const fd = openAt(dir, name, O.CREAT | O.EXCL | O.WRONLY | O.NOFOLLOW, 0o644);
  try {
    writeAll(fd, data);
  } finally {
    close(fd);
  }
}

function openRead(dir: number, name: string): number {
  return openAt(dir, name, O.RDONLY | O.NOFOLLOW);
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Runs `fn` with dirfds of the mountpoints; closes them afterwards. */
async function withDirs(fss: LoopFs[], fn: (...dirs: number[]) => void | Promise<void>) {
  const dirs = fss.map((f) => openDir(f.mountpoint));
  try {
    await fn(...dirs);
  } finally {
    dirs.forEach(close);
  }
}

fsTest("FICLONE shares extents: both files report the same SHARED physical blocks", [
  "xfs",
  "btrfs",
], (fs) =>
  withDirs([fs], (dir) => {
    const data = pseudoRandomBytes(8 * 1024 * 1024 + 123, 1);
    writeFile(dir, "src", data);
    const src = openRead(dir, "src");
    try {
      const r = placeFile(src, dir, "clone", { policy: "reflink-required" });
      assert.equal(r.method, "reflink");
      assert.equal(r.outcome, "linked");
      assert.equal(r.size, data.length);
      const a = sharedBytesAt(dir, "src");
      const b = sharedBytesAt(dir, "clone");
      assert.ok(a.sharedBytes >= data.length, `source shares ${a.sharedBytes} bytes`);
      assert.ok(b.sharedBytes >= data.length, `clone shares ${b.sharedBytes} bytes`);
      const cloneFd = openRead(dir, "clone");
      try {
        const physA = fiemap(src).map((e) => e.physical);
        const physB = fiemap(cloneFd).map((e) => e.physical);
        assert.deepEqual(physB, physA, "the clone points at the source's blocks");
      } finally {
        close(cloneFd);
      }
      assert.equal(sha256(readFileAt(dir, "clone")), sha256(data));
    } finally {
      close(src);
    }
    const p = probeReflink(dir);
    assert.equal(p.supported, true);
    assert.equal(p.filesystem, fs.kind);
  }));

fsTest("ext4 answers FICLONE with a typed EOPNOTSUPP; reflink-required writes nothing", [
  "ext4",
], (fs) =>
  withDirs([fs], (dir) => {
    writeFile(dir, "src", pseudoRandomBytes(10000, 2));
    const src = openRead(dir, "src");
    const dst = openAt(dir, ".", O.TMPFILE | O.RDWR, 0o600);
    try {
      assert.throws(() => ficlone(dst, src, "src"), (e) => {
        assert.ok(e instanceof SysError);
        assert.equal(e.code, "EOPNOTSUPP");
        assert.equal(e.call, "ioctl(FICLONE)");
        return true;
      });
      clearProbeCache();
      const p = probeReflink(dir);
      assert.deepEqual(
        { supported: p.supported, code: p.code, filesystem: p.filesystem },
        { supported: false, code: "EOPNOTSUPP", filesystem: "ext4" },
      );
      const before = readDir(dir).map((e) => e.name).sort();
      assert.throws(
        () => placeFile(src, dir, "clone", { policy: "reflink-required", mode: 0o644 }),
        (e) => e instanceof ReflinkUnsupportedError && e.code === "EOPNOTSUPP",
      );
      assert.deepEqual(readDir(dir).map((e) => e.name).sort(), before, "nothing was written");
    } finally {
      close(dst);
      close(src);
    }
  }));

fsTest(
  "crossing filesystems gives EXDEV; the copy fallback is byte-exact",
  ["xfs"],
  async (xfs) => {
    await using ext4 = await createLoopFs("ext4");
    await withDirs([xfs, ext4], (x, e) => {
      const data = pseudoRandomBytes(3 * 1024 * 1024 + 7, 3);
      writeFile(x, "src", data);
      clearProbeCache();
      const p = probeReflink(e, x);
      assert.equal(p.supported, false);
      assert.equal(p.code, "EXDEV");
      assert.equal(probeReflinkPath(ext4.mountpoint, xfs.mountpoint).code, "EXDEV");

      const src = openRead(x, "src");
      try {
        assert.throws(
          () => placeFile(src, e, "strict", { policy: "reflink-required" }),
          (err) => err instanceof ReflinkUnsupportedError && err.code === "EXDEV",
        );
        assert.ok(!existsAt(e, "strict"));
        const r = placeFile(src, e, "copy", { policy: "reflink-or-copy", mode: 0o600 });
        // copy_file_range refuses to cross superblocks: plain reads and writes remain.
        assert.equal(r.method, "readwrite");
        assert.equal(sha256(readFileAt(e, "copy")), sha256(data));
      } finally {
        close(src);
      }
    });
  },
);

fsTest("ext4 copy fallback: copy_file_range without a digest, read/write with one", [
  "ext4",
], (fs) =>
  withDirs([fs], (dir) => {
    const data = pseudoRandomBytes(5 * 1024 * 1024 + 65, 4);
    writeFile(dir, "src", data);
    const src = openRead(dir, "src");
    try {
      // Copies read the source at explicit offsets: its file position is neither used nor
      // moved, so another thread may copy or hash from the same open file at the same time.
      lseek(src, 1234, SEEK.SET);
      const plain = placeFile(src, dir, "plain", { policy: "reflink-or-copy" });
      assert.equal(plain.method, "copy_file_range");
      assert.equal(sha256(readFileAt(dir, "plain")), sha256(data));
      assert.equal(lseek(src, 0, SEEK.CUR), 1234, "copy_file_range left the position alone");

      const hash = createHash("sha256");
      const hashed = placeFile(src, dir, "hashed", { policy: "reflink-or-copy", sink: hash });
      assert.equal(hashed.method, "readwrite");
      assert.equal(hash.digest("hex"), sha256(data), "the sink saw exactly the placed bytes");
      assert.equal(sha256(readFileAt(dir, "hashed")), sha256(data));
      assert.equal(sharedBytesAt(dir, "hashed").sharedBytes, 0, "ext4 never shares");
      assert.equal(lseek(src, 0, SEEK.CUR), 1234, "read/write left the position alone");
    } finally {
      close(src);
    }
  }));

fsTest("copies and reads that stop at a version's size: a file that grew is told by its version", [
  "ext4",
], (fs) =>
  withDirs([fs], (dir) => {
    const data = pseudoRandomBytes((1 << 20) + 4096 + 7, 5); // past one read buffer
    writeFile(dir, "src", data);
    const src = openAt(dir, "src", O.RDWR | O.NOFOLLOW);
    try {
      const version = sourceVersion(src);
      pwriteAll(src, new Uint8Array([1, 2, 3]), data.length, "src"); // it grows after its version
      const copy = (sink?: { update(c: Uint8Array): unknown }, stopAtSize = true) =>
        cloneToTmpfile(src, dir, {
          policy: "reflink-or-copy",
          copyOnly: true,
          size: version.size,
          stopAtSize,
          sink,
        });
      for (
        const [sink, method] of [[undefined, "copy_file_range"], [
          createHash("sha256"),
          "readwrite",
        ]] as const
      ) {
        const tmp = copy(sink);
        try {
          assert.deepEqual([tmp.method, tmp.size], [method, data.length], "no byte past the size");
          const back = createHash("sha256");
          assert.equal(readThrough(tmp.fd, back), data.length);
          assert.equal(back.digest("hex"), sha256(data), "the copy holds the first bytes");
          if (sink) assert.equal(sink.digest("hex"), sha256(data), "the sink saw the same bytes");
        } finally {
          discardClone(tmp);
        }
      }
      const whole = copy(undefined, false);
      assert.equal(whole.size, data.length + 3, "without stopAtSize the copy reads on to the end");
      discardClone(whole);

      const seen = createHash("sha256");
      assert.equal(readThrough(src, seen, undefined, version.size), data.length);
      assert.equal(seen.digest("hex"), sha256(data));
      // What every caller of stopAtSize does next: the grown file is no longer its version.
      assert.throws(() => assertUnchanged(src, version, "src"), SourceChangedError);
    } finally {
      close(src);
    }
  }));

fsTest("placing sets owner, mode, xattrs, mtime and never replaces an existing name", [
  "xfs",
], (fs) =>
  withDirs([fs], (dir) => {
    writeFile(dir, "src", pseudoRandomBytes(65, 5));
    writeFile(dir, "taken", new TextEncoder().encode("keep me"));
    const src = openRead(dir, "src");
    try {
      const hash = createHash("sha512");
      const r = placeFile(src, dir, "obj", {
        policy: "reflink-required",
        uid: 1000,
        gid: 1000,
        mode: 0o4755,
        xattrs: [["user.component", new TextEncoder().encode("x")]],
        mtime: { sec: 0, nsec: 0 },
        sink: hash,
      });
      assert.equal(r.method, "reflink");
      assert.equal(
        hash.digest("hex"),
        createHash("sha512").update(pseudoRandomBytes(65, 5)).digest("hex"),
      );
      const st = statAt(dir, "obj");
      assert.deepEqual(
        { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, mtime: st.mtime.sec },
        { uid: 1000, gid: 1000, mode: 0o4755, mtime: 0 },
      );
      const fd = openRead(dir, "obj");
      try {
        assert.deepEqual(fgetxattr(fd, "user.component"), new TextEncoder().encode("x"));
      } finally {
        close(fd);
      }
      const again = placeFile(src, dir, "taken", { policy: "reflink-required" });
      assert.equal(again.outcome, "exists");
      assert.equal(new TextDecoder().decode(readFileAt(dir, "taken")), "keep me");
      assert.ok(!readDir(dir).some((e) => e.name.startsWith(".unistore-tmp")), "no temp left");
    } finally {
      close(src);
    }
  }));

fsTest(
  "dedupe merges equal bytes in chunks and refuses different ones",
  ["xfs", "btrfs"],
  (fs) =>
    withDirs([fs], (dir) => {
      // Larger than one dedupe chunk, and not a multiple of the block size.
      const size = DEDUPE_CHUNK + 3 * 1024 * 1024 + 4096;
      const data = pseudoRandomBytes(size, 6);
      writeFile(dir, "a", data);
      writeFile(dir, "b", data);
      const differ = pseudoRandomBytes(size, 6);
      differ[DEDUPE_CHUNK + 10] ^= 0xff;
      writeFile(dir, "c", differ);
      assert.equal(sharedBytesAt(dir, "b").sharedBytes, 0, "independent writes share nothing");
      const a = openRead(dir, "a"), b = openRead(dir, "b"), c = openRead(dir, "c");
      try {
        const inoBefore = fstat(b).ino;
        const same = dedupeFiles(a, b, "a -> b");
        assert.equal(same.status, "same");
        assert.equal(same.bytesDeduped, size);
        assert.ok(sharedBytesAt(dir, "b").sharedBytes >= size - 4096, "b now shares a's blocks");
        assert.equal(fstat(b).ino, inoBefore, "the inode is unchanged");
        assert.equal(sha256(readFileAt(dir, "b")), sha256(data));

        const diff = dedupeFiles(a, c, "a -> c");
        assert.equal(diff.status, "differs");
        assert.equal(diff.differsAt, DEDUPE_CHUNK, "the second chunk holds the difference");
        assert.equal(sha256(readFileAt(dir, "c")), sha256(differ), "c's bytes are untouched");
        const fiemapC = fiemap(c).filter((e) => e.logical >= DEDUPE_CHUNK && e.shared);
        assert.deepEqual(fiemapC, [], "nothing past the difference is shared");
      } finally {
        [a, b, c].forEach(close);
      }
    }),
);
