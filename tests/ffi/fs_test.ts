// ffi/fs.ts and ffi/xattr.ts against a real filesystem: every call either
// does what the kernel documents or throws a SysError naming call, errno and path.

import assert from "node:assert/strict";
import { SysError } from "../../ffi/errno.ts";
import {
  AT,
  close,
  DT,
  ensureDirAt,
  existsAt,
  fchmod,
  fchown,
  fstat,
  fsync,
  futimens,
  isType,
  lchownAt,
  linkTmpfile,
  lutimensAt,
  mkdirAt,
  mknodAt,
  O,
  openAt,
  openDir,
  pread,
  pwriteAll,
  readDir,
  readFileAt,
  readlinkAt,
  readlinkAtBytes,
  RENAME,
  renameAt,
  S,
  statAt,
  symlinkAt,
  syncfs,
  syncfsInBackground,
  unlinkAt,
  writeAll,
} from "../../ffi/fs.ts";
import {
  fgetAllXattrs,
  fgetxattr,
  fsetxattr,
  lgetAllXattrsAt,
  lsetxattrAt,
  XATTR,
} from "../../ffi/xattr.ts";
import { fstatfs } from "../../ffi/statfs.ts";
import { fsTest } from "../harness/loopfs.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("openat on a missing file throws a typed ENOENT naming the path", () => {
  const dir = openDir(Deno.makeTempDirSync());
  try {
    assert.throws(() => openAt(dir, "missing/file", O.RDONLY), (e) => {
      assert.ok(e instanceof SysError);
      assert.equal(e.code, "ENOENT");
      assert.equal(e.call, "openat");
      assert.equal(e.path, "missing/file");
      assert.match(e.message, /openat "missing\/file": ENOENT \(No such file or directory\)/);
      return true;
    });
  } finally {
    close(dir);
  }
});

Deno.test("O_NOFOLLOW refuses a symlink with ELOOP, and errno is not clobbered by a second failure", () => {
  const path = Deno.makeTempDirSync();
  const dir = openDir(path);
  try {
    symlinkAt("/etc/passwd", dir, "link");
    assert.throws(() => openAt(dir, "link", O.RDONLY | O.NOFOLLOW), { code: "ELOOP" });
    // Two different failures back to back each report their own errno.
    assert.throws(() => openAt(dir, "nope", O.RDONLY), { code: "ENOENT" });
    assert.throws(() => mkdirAt(dir, "link"), { code: "EEXIST" });
    assert.equal(readlinkAt(dir, "link"), "/etc/passwd");
  } finally {
    close(dir);
    Deno.removeSync(path, { recursive: true });
  }
});

fsTest("O_TMPFILE is invisible until linked, and linking never replaces", ["ext4"], async (fs) => {
  const dir = openDir(fs.mountpoint);
  try {
    const fd = openAt(dir, ".", O.TMPFILE | O.RDWR, 0o640);
    writeAll(fd, bytes("payload"));
    assert.deepEqual(readDir(dir).filter((e) => e.name !== "lost+found"), []);
    linkTmpfile(fd, dir, "obj");
    assert.throws(() => linkTmpfile(fd, dir, "obj"), { code: "EEXIST" });
    close(fd);
    assert.deepEqual(readFileAt(dir, "obj"), bytes("payload"));
    assert.equal(statAt(dir, "obj").mode & 0o7777, 0o640);

    // renameat2(RENAME_NOREPLACE) refuses to overwrite; a fresh name works.
    const other = openAt(dir, "other", O.CREAT | O.EXCL | O.WRONLY);
    close(other);
    assert.throws(() => renameAt(dir, "other", dir, "obj", RENAME.NOREPLACE), { code: "EEXIST" });
    renameAt(dir, "other", dir, "fresh", RENAME.NOREPLACE);
    assert.ok(existsAt(dir, "fresh") && !existsAt(dir, "other"));
    syncfs(dir);
    await syncfsInBackground(dir);
  } finally {
    close(dir);
  }
});

Deno.test("syncfs on a pool thread names the failure it cannot read errno for", async () => {
  const notOpen = 999_999; // above any open-file limit: EBADF, found by repeating the call here
  await assert.rejects(() => syncfsInBackground(notOpen, "/no/such/fs"), {
    code: "EBADF",
    call: "syncfs",
    path: "/no/such/fs",
  });
});

fsTest("directory listing keeps non-UTF-8 names as raw bytes and reports types", ["ext4"], (fs) => {
  const dir = openDir(fs.mountpoint);
  try {
    const latin1 = new Uint8Array([0x63, 0x61, 0x66, 0xe9]); // "café" in ISO-8859-1
    const fd = openAt(dir, latin1, O.CREAT | O.EXCL | O.WRONLY, 0o600);
    close(fd);
    mkdirAt(dir, "sub", 0o750);
    ensureDirAt(dir, "sub"); // existing directory: fine
    assert.throws(() => ensureDirAt(dir, latin1), { code: "EEXIST" }); // a file is not a dir
    symlinkAt(new Uint8Array([0x2e, 0x2e, 0x2f, 0xff]), dir, "ln");
    mknodAt(dir, "fifo", S.IFIFO | 0o644);
    mknodAt(dir, "wh", S.IFCHR, 0, 0); // an overlay whiteout
    const entries = new Map(readDir(dir).map((e) => [e.name, e]));
    const raw = [...entries.values()].find((e) =>
      e.nameBytes.length === 4 && e.nameBytes[3] === 0xe9
    );
    assert.ok(raw, "the latin-1 name is listed with its bytes");
    assert.equal(raw.type, DT.REG);
    assert.equal(entries.get("sub")?.type, DT.DIR);
    assert.equal(entries.get("ln")?.type, DT.LNK);
    assert.equal(entries.get("fifo")?.type, DT.FIFO);
    assert.deepEqual(readlinkAtBytes(dir, "ln"), new Uint8Array([0x2e, 0x2e, 0x2f, 0xff]));
    const wh = statAt(dir, "wh");
    assert.ok(isType(wh.mode, S.IFCHR));
    assert.equal(wh.rdevMajor, 0);
    assert.equal(wh.rdevMinor, 0);
    assert.equal(statAt(dir, "sub").mode & 0o7777, 0o750);
    unlinkAt(dir, "sub", AT.REMOVEDIR);
    assert.ok(!existsAt(dir, "sub"));
    return Promise.resolve();
  } finally {
    close(dir);
  }
});

fsTest("owner, mode (setuid after chown), times and xattrs round-trip", ["ext4"], (fs) => {
  const dir = openDir(fs.mountpoint);
  try {
    const fd = openAt(dir, "f", O.CREAT | O.EXCL | O.RDWR, 0o600);
    pwriteAll(fd, bytes("0123456789"), 0);
    const back = new Uint8Array(4);
    assert.equal(pread(fd, back, 3), 4);
    assert.deepEqual(back, bytes("3456"));
    fchown(fd, 1000, 1000);
    fchmod(fd, 0o4755);
    futimens(fd, { sec: 1, nsec: 0 }, { sec: 1700000000, nsec: 123 });
    fsetxattr(fd, "user.test", bytes("v1"));
    fsetxattr(fd, "trusted.overlay.opaque", bytes("y"));
    assert.throws(() => fsetxattr(fd, "user.test", bytes("v2"), XATTR.CREATE), { code: "EEXIST" });
    fsync(fd);
    const st = fstat(fd);
    assert.equal(st.uid, 1000);
    assert.equal(st.gid, 1000);
    assert.equal(st.mode, S.IFREG | 0o4755);
    assert.equal(st.size, 10);
    assert.deepEqual(st.mtime, { sec: 1700000000, nsec: 123 });
    assert.equal(fgetxattr(fd, "user.missing"), null);
    const xattrs = new Map(fgetAllXattrs(fd).map(([k, v]) => [k, new TextDecoder().decode(v)]));
    assert.deepEqual(Object.fromEntries(xattrs), {
      "user.test": "v1",
      "trusted.overlay.opaque": "y",
    });
    close(fd);

    // A symlink's own owner, times and trusted.* xattrs, not its target's.
    symlinkAt("f", dir, "ln");
    lchownAt(dir, "ln", 1000, 1001);
    lutimensAt(dir, "ln", { sec: 5, nsec: 0 }, { sec: 6, nsec: 0 });
    lsetxattrAt(dir, "ln", "trusted.link", bytes("L"));
    const ln = statAt(dir, "ln");
    assert.equal(ln.uid, 1000);
    assert.equal(ln.gid, 1001);
    assert.equal(ln.mtime.sec, 6);
    assert.deepEqual(lgetAllXattrsAt(dir, "ln").map(([k]) => k), ["trusted.link"]);
    assert.equal(statAt(dir, "f").uid, 1000);
    const target = openAt(dir, "f", O.RDONLY);
    try {
      assert.ok(!fgetAllXattrs(target).some(([k]) => k === "trusted.link"));
    } finally {
      close(target);
    }
    return Promise.resolve();
  } finally {
    close(dir);
  }
});

fsTest("fstatfs names the filesystem", ["xfs", "btrfs", "ext4"], (fs) => {
  const dir = openDir(fs.mountpoint);
  try {
    const s = fstatfs(dir);
    assert.equal(s.typeName, fs.kind);
    assert.ok(s.totalBytes > 100 * 1024 * 1024, `size ${s.totalBytes}`);
    assert.ok(s.availableBytes <= s.freeBytes);
    return Promise.resolve();
  } finally {
    close(dir);
  }
});
