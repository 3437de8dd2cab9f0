// HostRoot: every host path derives from --root, and lookups follow symlinks like a chroot.

import assert from "node:assert/strict";
import { isErrno } from "../../ffi/errno.ts";
import { close, readDir } from "../../ffi/fs.ts";
import { HostRoot } from "../../lib/host/root.ts";
import { withHostTree } from "./host_tree.ts";

Deno.test("every host path of DESIGN §2 is derived from --root", () => {
  const r = new HostRoot("/mnt/host/");
  assert.equal(r.dir, "/mnt/host");
  assert.equal(r.sysroot, "/mnt/host/sysroot");
  assert.equal(r.ostreeRepo, "/mnt/host/sysroot/ostree/repo");
  assert.equal(r.ostreeDeploy, "/mnt/host/sysroot/ostree/deploy");
  assert.equal(r.composefsRepo, "/mnt/host/sysroot/composefs");
  assert.equal(r.bootcJson, "/mnt/host/sysroot/composefs/bootc.json");
  assert.equal(r.composefsStateDeploy, "/mnt/host/sysroot/state/deploy");
  assert.equal(r.containersStorage("ostree"), "/mnt/host/sysroot/ostree/bootc/storage");
  assert.equal(r.containersStorage("composefs"), "/mnt/host/sysroot/composefs/bootc/storage");
  assert.equal(r.procCmdline, "/mnt/host/proc/cmdline");
  assert.equal(r.ostreeStagedDeployment, "/mnt/host/run/ostree/staged-deployment");
  assert.equal(r.composefsStagedDeployment, "/mnt/host/run/composefs/staged-deployment");
  assert.deepEqual(r.installConfigDirs, [
    "/mnt/host/usr/lib/bootc/install",
    "/mnt/host/usr/local/lib/bootc/install",
    "/mnt/host/etc/bootc/install",
    "/mnt/host/run/bootc/install",
  ]);
  const real = new HostRoot("/");
  assert.equal(real.dir, "/");
  assert.equal(real.ostreeRepo, "/sysroot/ostree/repo");
  assert.equal(real.path("/proc/cmdline"), "/proc/cmdline");
  assert.throws(() => new HostRoot(""), TypeError);
});

Deno.test("boot entries: DIR/boot/loader/entries when it exists, else DIR/sysroot/boot/...", async () => {
  await withHostTree({ "sysroot/boot/loader/entries/a.conf": "x" }, (root, dir) => {
    assert.equal(root.bootEntriesRel(), "sysroot/boot/loader/entries");
    assert.equal(root.bootEntriesDir(), `${dir}/sysroot/boot/loader/entries`);
  });
  // ostree's layout on a booted host: /boot/loader -> loader.1
  await withHostTree({
    "boot/loader.1/entries/ostree-1.conf": "x",
    "boot/loader": { symlink: "loader.1" },
    "sysroot/boot/loader/entries/b.conf": "y",
  }, (root) => {
    assert.equal(root.bootEntriesRel(), "boot/loader/entries");
    assert.deepEqual(root.listDir(root.bootEntriesRel())?.map((e) => e.name), ["ostree-1.conf"]);
  });
});

Deno.test("lookups follow symlinks inside the root and never out of it", async () => {
  const outside = await Deno.makeTempDir({ prefix: "unistore-outside-" });
  try {
    await Deno.writeTextFile(`${outside}/secret`, "outside");
    await withHostTree({
      "etc/os-release": "inside",
      // An absolute target means the host's own /etc, i.e. DIR/etc.
      "usr/lib/os-release": { symlink: "/etc/os-release" },
      // ".." past the root stays at the root.
      "a/b/up": { symlink: `../../../../../../${outside.slice(1)}/secret` },
      "a/abs": { symlink: outside },
      "usr/local": { symlink: "../var/usrlocal" },
      "var/usrlocal/lib/bootc/install/x.toml": "[install]\n",
      "loop1": { symlink: "loop2" },
      "loop2": { symlink: "loop1" },
      "file": "f",
    }, (root) => {
      assert.equal(root.readText("usr/lib/os-release"), "inside");
      assert.equal(root.resolve("usr/lib/os-release"), "etc/os-release");
      assert.equal(root.resolve("usr/lib/os-release", false), "usr/lib/os-release");
      // Confined: these name paths outside DIR, which do not exist inside it.
      assert.equal(root.readText("a/b/up"), null);
      assert.equal(root.resolve("a/abs/secret"), null);
      assert.equal(root.resolve("../../.."), ".");
      assert.equal(
        root.resolve("usr/local/lib/bootc/install/x.toml"),
        "var/usrlocal/lib/bootc/install/x.toml",
      );
      assert.equal(root.readText("usr/local/lib/bootc/install/x.toml"), "[install]\n");
      assert.equal(root.exists("missing/file"), false);
      assert.equal(root.exists("file/below"), false); // ENOTDIR is "not there"
      assert.equal(root.isDir("usr/local"), true);
      assert.equal(root.isDir("file"), false);
      assert.throws(() => root.resolve("loop1"), (e) => isErrno(e, "ELOOP"));
      const fd = root.openDir("usr/local/lib");
      assert.ok(fd !== null);
      try {
        assert.deepEqual(readDir(fd).map((e) => e.name), ["bootc"]);
      } finally {
        close(fd);
      }
      assert.equal(root.openDir("nowhere"), null);
      assert.throws(() => root.openDir("file"), (e) => isErrno(e, "ENOTDIR"));
    });
  } finally {
    await Deno.remove(outside, { recursive: true });
  }
});
