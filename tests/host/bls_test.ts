// BLS Type 1 entries: parsing, bootc's and ostree's orders, and which deployment an entry boots,
// judged on a sysroot that ostree itself deployed.

import assert from "node:assert/strict";
import {
  compareBlsEntries,
  entryDeployment,
  listBlsEntries,
  listOstreeBlsEntries,
  parseBlsEntry,
  resolveOstreeKarg,
} from "../../lib/host/bls.ts";
import { HostFileError } from "../../lib/host/errors.ts";
import { detectHostKind } from "../../lib/host/kind.ts";
import { HostRoot } from "../../lib/host/root.ts";
import { toolTest } from "../harness/tools.ts";
import { fakeDigest, removeTree, withHostTree } from "./host_tree.ts";
import { buildOstreeSysroot, OSTREE_SYSROOT_TOOLS } from "./ostree_sysroot.ts";

Deno.test("an entry's keys: scalars last-wins, initrd repeats, comments and tabs, unknown keys kept", () => {
  const e = parseBlsEntry(
    [
      "# written by hand",
      "title replaced by the next title line",
      "title Fedora 42.20250623.3.1 (CoreOS)",
      "version\t2",
      "  linux /boot/abc/vmlinuz-5.14.10  ",
      "initrd /boot/abc/initramfs-1.img",
      "initrd /boot/abc/initramfs-2.img",
      'options root=UUID=abc123 rw "x=a b"',
      "machine-id 0123",
      "sort-key fedora",
      "custom1 value1",
      "grub_users $grub_users",
      "",
    ].join("\n"),
    "/r/boot/loader/entries/fedora.conf",
  );
  assert.equal(e.name, "fedora.conf");
  assert.equal(e.title, "Fedora 42.20250623.3.1 (CoreOS)");
  assert.equal(e.version, "2");
  assert.equal(e.linux, "/boot/abc/vmlinuz-5.14.10");
  assert.deepEqual(e.initrd, ["/boot/abc/initramfs-1.img", "/boot/abc/initramfs-2.img"]);
  assert.equal(e.options, 'root=UUID=abc123 rw "x=a b"');
  assert.equal(e.cmdline.get("x"), "a b");
  assert.equal(e.machineId, "0123");
  assert.equal(e.sortKey, "fedora");
  assert.deepEqual(e.fields.filter(([k]) => k.startsWith("custom") || k === "grub_users"), [
    ["custom1", "value1"],
    ["grub_users", "$grub_users"],
  ]);
  assert.equal(entryDeployment(e).kind, "none");
});

Deno.test("bootc order: sort-key ascending, then version descending, then file name", async () => {
  const d1 = fakeDigest("1");
  const d2 = fakeDigest("2");
  const entry = (title: string, version: string, sortKey: string | null, digest: string) =>
    [
      `title ${title}`,
      `version ${version}`,
      sortKey ? `sort-key ${sortKey}` : "",
      `linux /boot/bootc_composefs-${digest}/vmlinuz`,
      `initrd /boot/bootc_composefs-${digest}/initrd`,
      `options root=UUID=abc123 rw composefs=${digest}`,
    ].join("\n");
  await withHostTree({
    // bootc's names: primary (new) `-1.conf` with sort-key ...-0, secondary `-0.conf` with ...-1
    "boot/loader/entries/bootc_fedora-42.20250101.0-0.conf": entry(
      "old",
      "42.20250101.0",
      "bootc-fedora-1",
      d1,
    ),
    "boot/loader/entries/bootc_fedora-42.20250202.0-1.conf": entry(
      "new",
      "42.20250202.0",
      "bootc-fedora-0",
      d2,
    ),
    "boot/loader/entries/other-10.conf": entry("v10", "10", null, d1),
    "boot/loader/entries/other-9.conf": entry("v9", "9", null, d1),
    "boot/loader/entries/random_file.txt": "not an entry",
    "boot/loader/entries/.hidden.conf": entry("hidden", "1", null, d1),
    "boot/loader/entries/subdir.conf/x": "a dir is not an entry",
    "boot/loader/entries.staged/bootc_fedora-43-1.conf": entry(
      "staged",
      "43",
      "bootc-fedora-0",
      fakeDigest("3"),
    ),
  }, (root) => {
    const titles = listBlsEntries(root).map((e) => e.title);
    assert.deepEqual(titles, ["new", "old", "v10", "v9"]);
    const staged = listBlsEntries(root, { staged: true });
    assert.deepEqual(staged.map((e) => [e.title, e.staged]), [["staged", true]]);
    const [first] = listBlsEntries(root);
    const ref = entryDeployment(first);
    assert.ok(ref.kind === "composefs");
    assert.equal(ref.karg.digest, d2);
  });
  // Same sort-key: version decides, newest first (bootc's test_sorted_bls_boot_entries idea).
  const a = parseBlsEntry("version 2\nsort-key x\nlinux /k\n", "a.conf");
  const b = parseBlsEntry("version 10\nsort-key x\nlinux /k\n", "b.conf");
  assert.ok(compareBlsEntries(b, a) < 0);
});

Deno.test("UKI entries name their deployment by file name; broken karg is an error naming the entry", () => {
  const d = fakeDigest("e");
  const uki = parseBlsEntry(
    `title t\nversion 1\nuki /EFI/Linux/bootc/bootc_composefs-${d}.efi\n`,
    "u.conf",
  );
  const ref = entryDeployment(uki);
  assert.ok(ref.kind === "composefs");
  assert.equal(ref.karg.digest, d);
  const legacy = parseBlsEntry(`version 1\nefi /EFI/Linux/${d}.efi\n`, "l.conf");
  assert.equal(entryDeployment(legacy).kind, "composefs");
  const broken = parseBlsEntry("version 1\nlinux /k\noptions composefs=xyz\n", "/r/b.conf");
  assert.throws(
    () => entryDeployment(broken),
    (e) => e instanceof HostFileError && e.message.startsWith("/r/b.conf: options: composefs:"),
  );
});

toolTest(
  "an ostree-deployed sysroot: entries in ostree's order, each ostree= karg resolves to the deployment ostree lists there",
  OSTREE_SYSROOT_TOOLS,
  async (bins) => {
    const dir = await Deno.makeTempDir({ prefix: "unistore-ostree-host-" });
    try {
      const deployments = await buildOstreeSysroot(bins.ostree, dir, 3);
      assert.equal(deployments.length, 3);
      const root = new HostRoot(dir);
      // Not booted and no DIR/boot: entries come from DIR/sysroot/boot/loader -> loader.N.
      assert.equal(root.bootEntriesRel(), "sysroot/boot/loader/entries");
      const entries = listOstreeBlsEntries(root);
      assert.deepEqual(entries.map((e) => e.version), ["3", "2", "1"]);
      const resolved = entries.map((e) => {
        const ref = entryDeployment(e);
        assert.ok(ref.kind === "ostree", e.name);
        assert.equal(ref.karg.stateroot, "default");
        return resolveOstreeKarg(root, ref.karg);
      });
      assert.deepEqual(resolved.map((r) => r?.name), deployments);
      for (const r of resolved) {
        assert.ok(r !== null);
        assert.equal(r.stateroot, "default");
        assert.ok((await Deno.stat(`${r.path}/usr/etc/generation`)).isFile);
      }
      // The newest deployment (default, index 0) holds the last generation written.
      assert.equal(await Deno.readTextFile(`${resolved[0]!.path}/usr/etc/generation`), "2\n");
      const kind = detectHostKind(root);
      assert.equal(kind.kind, "ostree");
      assert.equal(kind.booted, false);
      assert.match(kind.reason, /sysroot\/ostree\/deploy exists/);
    } finally {
      await removeTree(dir);
    }
  },
  { root: true },
);
