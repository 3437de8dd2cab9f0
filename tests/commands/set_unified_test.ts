// `unistore set-unified composefs` on hosts built by the real ostree: the flag
// `ostree config get` reads afterwards, and the refusals that change nothing.

import assert from "node:assert/strict";
import { fsTest } from "../harness/loopfs.ts";
import { run, runOk } from "../harness/run.ts";
import { findTool } from "../harness/tools.ts";
import { buildOstreeSysroot } from "../host/ostree_sysroot.ts";
import { withHostTree } from "../host/host_tree.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

function unistore(...args: string[]) {
  return run([Deno.execPath(), "run", "-A", "--quiet", MAIN, ...args]);
}

async function repoFlag(ostree: string, root: string): Promise<string> {
  const r = await run([
    ostree,
    `--repo=${root}/sysroot/ostree/repo`,
    "config",
    "get",
    "composefs.unified",
  ]);
  return r.code === 0 ? r.stdout.trim() : "(unset)";
}

fsTest(
  "set-unified composefs binds an ostree host where reflinks work",
  ["xfs", "btrfs"],
  async (fs) => {
    const ostree = findTool("ostree");
    assert.ok(ostree, "ostree not found (apt-get install ostree)");
    await buildOstreeSysroot(ostree, fs.mountpoint, 1);
    const dry = await unistore("--root", fs.mountpoint, "set-unified", "composefs", "--dry-run");
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would write \[composefs\] unified=true/);
    assert.equal(await repoFlag(ostree, fs.mountpoint), "(unset)", "--dry-run changed nothing");

    const r = await unistore("--root", fs.mountpoint, "set-unified", "composefs");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^bound .* to composefs/);
    assert.equal(await repoFlag(ostree, fs.mountpoint), "true");
    await runOk([ostree, `--repo=${fs.mountpoint}/sysroot/ostree/repo`, "fsck", "--quiet"]);

    const again = await unistore("--root", fs.mountpoint, "set-unified", "composefs");
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already bound to composefs; nothing to do/);
  },
  { sizeMiB: 512 },
);

fsTest("set-unified composefs on ext4 fails before changing anything", ["ext4"], async (fs) => {
  const ostree = findTool("ostree");
  assert.ok(ostree, "ostree not found (apt-get install ostree)");
  await buildOstreeSysroot(ostree, fs.mountpoint, 1);
  const config = await Deno.readFile(`${fs.mountpoint}/sysroot/ostree/repo/config`);
  const r = await unistore("--root", fs.mountpoint, "set-unified", "composefs");
  assert.equal(r.code, 1);
  assert.match(r.stderr, /\(ext4\): the filesystem does not support reflinks \(EOPNOTSUPP\)/);
  assert.match(r.stderr, /Nothing was changed/);
  assert.deepEqual(await Deno.readFile(`${fs.mountpoint}/sysroot/ostree/repo/config`), config);
});

Deno.test("set-unified: a native composefs host is a no-op, a plain directory an error", async () => {
  const digest = "ab".repeat(64);
  await withHostTree({
    "proc/cmdline": `root=UUID=x composefs=${digest} rw\n`,
    "sysroot/composefs/meta.json": "{}",
  }, async (_root, dir) => {
    const r = await unistore("--root", dir, "set-unified", "composefs");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /native composefs host/);
  });
  await withHostTree({ "etc/hostname": "plain\n" }, async (_root, dir) => {
    const r = await unistore("--root", dir, "set-unified", "composefs");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is not a bootc host/);
  });
  const usage = await unistore("set-unified", "sideways");
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /unknown mode "sideways"/);
});
