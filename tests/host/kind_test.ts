// Host kind: ostree, native composefs, or not a bootc host; kargs first, then the layout.

import assert from "node:assert/strict";
import { HostFileError } from "../../lib/host/errors.ts";
import { detectHostKind } from "../../lib/host/kind.ts";
import { fakeDigest, withHostTree } from "./host_tree.ts";

const CSUM = "ff6d610a0f0d84602d9e2878eb3a16a850f2d31faa2f14108006723892a17899";

Deno.test("ostree host: booted by ostree= karg, or by sysroot/ostree/deploy alone", async () => {
  await withHostTree({
    "proc/cmdline": `root=LABEL=root rw ostree=/ostree/boot.1/default/${CSUM}/0\n`,
    "sysroot/ostree/repo/config": "[core]\nrepo_version=1\nmode=bare\n",
  }, (root) => {
    const k = detectHostKind(root);
    assert.equal(k.kind, "ostree");
    assert.equal(k.booted, true);
    assert.equal(k.ostreeKarg?.bootcsum, CSUM);
    assert.match(k.reason, /proc\/cmdline has ostree=\/ostree\/boot\.1\/default\//);
  });
  await withHostTree({ "sysroot/ostree/deploy/default/var": { dir: true } }, (root) => {
    const k = detectHostKind(root);
    assert.deepEqual([k.kind, k.booted], ["ostree", false]);
    assert.equal(k.reason, "no proc/cmdline; sysroot/ostree/deploy exists");
  });
});

Deno.test("composefs host: by composefs= karg (even with an ostree dir), or by state/deploy + repo", async () => {
  const id = fakeDigest("a");
  await withHostTree({
    "proc/cmdline": `root=UUID=x rw composefs=?${id}\n`,
    // bootc also creates ostree/bootc -> ../composefs/bootc here; the karg decides.
    "sysroot/ostree/deploy": { dir: true },
  }, (root) => {
    const k = detectHostKind(root);
    assert.equal(k.kind, "composefs");
    assert.equal(k.booted, true);
    assert.deepEqual(k.composefsKarg, {
      karg: "composefs",
      digest: id,
      insecure: true,
      format: null,
    });
    assert.equal(k.reason, `proc/cmdline has composefs=?${id}`);
  });
  await withHostTree({
    "proc/cmdline": "quiet\n",
    [`sysroot/state/deploy/${id}/${id}.origin`]: "[origin]\n",
    "sysroot/composefs/meta.json": "{}",
  }, (root) => {
    const k = detectHostKind(root);
    assert.deepEqual([k.kind, k.booted], ["composefs", false]);
    assert.equal(
      k.reason,
      "no ostree= or composefs= karg; sysroot/state/deploy and sysroot/composefs exist",
    );
  });
});

Deno.test("not a bootc host: says what is missing; a malformed karg is an error naming the file", async () => {
  await withHostTree({ "etc/os-release": "ID=debian\n", "proc/cmdline": "quiet\n" }, (root) => {
    const k = detectHostKind(root);
    assert.equal(k.kind, "none");
    assert.match(
      k.reason,
      /neither sysroot\/ostree\/deploy nor sysroot\/state\/deploy exists: not a bootc host/,
    );
  });
  await withHostTree({ "sysroot/state/deploy": { dir: true } }, (root) => {
    const k = detectHostKind(root);
    assert.equal(k.kind, "none");
    assert.match(k.reason, /sysroot\/composefs is missing/);
  });
  await withHostTree({ "proc/cmdline": "composefs=zz\n" }, (root) => {
    assert.throws(
      () => detectHostKind(root),
      (e) =>
        e instanceof HostFileError && e.path === root.procCmdline && /found "zz"/.test(e.message),
    );
  });
});
