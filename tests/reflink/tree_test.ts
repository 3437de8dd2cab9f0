// cloneTree against `cp -a --reflink`: both copies of an awkward tree must
// describe the same files, and on XFS/btrfs ours must share every data block.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  close,
  DT,
  fchmod,
  fchown,
  lchownAt,
  linkAt,
  mkdirAt,
  mknodAt,
  O,
  openAt,
  openDir,
  openDirAt,
  readDir,
  readFileAt,
  readlinkAtBytes,
  S,
  statAt,
  symlinkAt,
  writeAll,
} from "../../ffi/fs.ts";
import { fsetxattr, lgetAllXattrsAt, lsetxattrAt } from "../../ffi/xattr.ts";
import { ReflinkUnsupportedError } from "../../lib/reflink/errors.ts";
import { cloneTree } from "../../lib/reflink/tree.ts";
import { sharedBytesAt } from "../../lib/reflink/shared.ts";
import { fsTest } from "../harness/loopfs.ts";
import { runOk } from "../harness/run.ts";

const enc = new TextEncoder();

function file(dir: number, name: string | Uint8Array, data: string | Uint8Array, mode = 0o644) {
  const fd = openAt(dir, name, O.CREAT | O.EXCL | O.WRONLY, mode);
  try {
    writeAll(fd, typeof data === "string" ? enc.encode(data) : new Uint8Array(data));
    fchmod(fd, mode);
  } finally {
    close(fd);
  }
}

/** A tree with the entries that trip copiers up. */
function buildAwkwardTree(root: number) {
  file(root, "empty", "");
  file(root, "f64", "x".repeat(64));
  file(root, "f65", "y".repeat(65));
  const big = new Uint8Array(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  file(root, "big", big);
  file(root, "setuid", "#!/bin/sh\n", 0o4755);
  file(root, "owned", "mine", 0o640);
  const owned = openAt(root, "owned", O.RDONLY);
  fchown(owned, 1000, 1000);
  fsetxattr(owned, "user.note", enc.encode("hello"));
  fsetxattr(owned, "trusted.overlay.opaque", enc.encode("y"));
  close(owned);
  file(root, new Uint8Array([0x6c, 0x61, 0x74, 0x69, 0x6e, 0xe9]), "latin-1 name");
  file(root, "n".repeat(255), "long name");
  linkAt(root, "f65", root, "f65.hardlink");
  mkdirAt(root, "sub", 0o2775);
  const sub = openDirAt(root, "sub");
  fchown(sub, 0, 1234);
  fchmod(sub, 0o2775);
  file(sub, "inner", "inner");
  linkAt(root, "f65", sub, "f65.hardlink2");
  close(sub);
  symlinkAt("../etc/passwd", root, "rel-link");
  symlinkAt("/usr/bin/true", root, "abs-link");
  lchownAt(root, "abs-link", 1000, 1000);
  lsetxattrAt(root, "abs-link", "trusted.link", enc.encode("L"));
  mknodAt(root, "fifo", S.IFIFO | 0o600);
  mknodAt(root, "whiteout", S.IFCHR, 0, 0);
}

/** Everything cp -a promises to keep, per path, hardlinks as groups. */
function describe(dirfd: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const inodes = new Map<bigint, string>();
  const walk = (dir: number, prefix: string) => {
    for (const e of readDir(dir).sort((a, b) => a.name < b.name ? -1 : 1)) {
      const path = `${prefix}/${Array.from(e.nameBytes, (b) => b.toString(16)).join("")}`;
      const st = statAt(dir, e.nameBytes);
      const entry: Record<string, unknown> = {
        mode: st.mode.toString(8),
        uid: st.uid,
        gid: st.gid,
        mtime: `${st.mtime.sec}.${st.mtime.nsec}`,
        xattrs: lgetAllXattrsAt(dir, e.nameBytes).map(([k, v]) => `${k}=${v}`).sort(),
      };
      if (e.type === DT.REG) {
        entry.sha256 = createHash("sha256").update(readFileAt(dir, e.nameBytes)).digest("hex");
        if (st.nlink > 1) {
          entry.hardlinkOf = inodes.get(st.ino) ?? null;
          if (!inodes.has(st.ino)) inodes.set(st.ino, path);
        }
      } else if (e.type === DT.LNK) {
        entry.target = Array.from(readlinkAtBytes(dir, e.nameBytes));
      } else if (e.type === DT.CHR || e.type === DT.BLK) {
        entry.rdev = `${st.rdevMajor}:${st.rdevMinor}`;
      } else if (e.type === DT.DIR) {
        const child = openDirAt(dir, e.nameBytes);
        try {
          walk(child, path);
        } finally {
          close(child);
        }
      }
      out[path] = entry;
    }
  };
  walk(dirfd, "");
  return out;
}

fsTest(
  "cloneTree keeps what cp -a keeps and shares every data block",
  ["xfs", "btrfs"],
  async (fs) => {
    const root = openDir(fs.mountpoint);
    try {
      mkdirAt(root, "src", 0o755);
      const src = openDirAt(root, "src");
      buildAwkwardTree(src);
      await runOk([
        "cp",
        "-a",
        "--reflink=always",
        `${fs.mountpoint}/src`,
        `${fs.mountpoint}/by-cp`,
      ]);
      mkdirAt(root, "ours", 0o755);
      const ours = openDirAt(root, "ours");
      const byCp = openDirAt(root, "by-cp");
      try {
        const stats = cloneTree(src, ours, { policy: "reflink-required" });
        assert.deepEqual(
          {
            files: stats.files,
            hardlinks: stats.hardlinks,
            symlinks: stats.symlinks,
            special: stats.special,
          },
          { files: 9, hardlinks: 2, symlinks: 2, special: 2 },
        );
        assert.equal(stats.methods.reflink, 9);
        assert.deepEqual(describe(ours), describe(byCp));
        assert.deepEqual(describe(ours), describe(src));
        const shared = sharedBytesAt(ours, "big");
        assert.ok(shared.sharedBytes >= 3 * 1024 * 1024, `big shares ${shared.sharedBytes} bytes`);
      } finally {
        [src, ours, byCp].forEach(close);
      }
    } finally {
      close(root);
    }
  },
);

fsTest("cloneTree on ext4: byte copies when allowed, a typed refusal when not", ["ext4"], (fs) => {
  const root = openDir(fs.mountpoint);
  try {
    mkdirAt(root, "src", 0o755);
    const src = openDirAt(root, "src");
    buildAwkwardTree(src);
    mkdirAt(root, "copy", 0o755);
    mkdirAt(root, "strict", 0o755);
    const copy = openDirAt(root, "copy"), strict = openDirAt(root, "strict");
    try {
      const stats = cloneTree(src, copy, { policy: "reflink-or-copy" });
      assert.equal(stats.methods.reflink, 0);
      assert.equal(stats.files, 9);
      assert.deepEqual(describe(copy), describe(src));
      assert.throws(
        () => cloneTree(src, strict, { policy: "reflink-required" }),
        (e) => e instanceof ReflinkUnsupportedError && e.code === "EOPNOTSUPP",
      );
    } finally {
      [src, copy, strict].forEach(close);
    }
    return Promise.resolve();
  } finally {
    close(root);
  }
});
