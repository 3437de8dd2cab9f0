// `unistore set-unified full` end to end on ostree hosts built by the real
// ostree from a loopback registry: podman sees the booted and rollback images
// under their original ids and runs them, ostree fsck passes, the blocks are
// shared (df), and ext4 refuses `enabled` before touching anything.

import assert from "node:assert/strict";
import {
  buildBootableImage,
  buildComposefsHost,
  buildOstreeHost,
  hostFixtureTest,
  OSTREE_HOST_TOOLS,
  RUNNABLE_LICENSED,
} from "../fixtures/host/mod.ts";
import { run, runOk } from "../harness/run.ts";
import { runrootFor } from "../../lib/pipeline/podman_pull.ts";
import { podman, podmanRun, storeAt, unmountBelow } from "../fixtures/cstorage/podman.ts";
import { fiemap, FIEMAP_EXTENT } from "../../ffi/extents.ts";
import { AT, close, O, openAt } from "../../ffi/fs.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const TOOLS = [...OSTREE_HOST_TOOLS, { bin: "podman", pkg: "podman" }];
const BULK_MIB = 16;

function unistore(...args: string[]) {
  return run([Deno.execPath(), "run", "-A", "--quiet", MAIN, ...args]);
}

async function usedBytes(mountpoint: string): Promise<number> {
  await runOk(["sync", "-f", mountpoint]);
  const out = await runOk(["df", "-B1", "--output=used", mountpoint]);
  return Number(out.stdout.trim().split("\n")[1]);
}

/** Where the data of file `path` starts on disk; null when it lives in the inode (btrfs). */
function firstBlock(path: string): number | null {
  const fd = openAt(AT.FDCWD, path, O.RDONLY);
  try {
    const [first] = fiemap(fd, path);
    assert.ok(first, `${path} has no extents`);
    return (first.flags & FIEMAP_EXTENT.DATA_INLINE) !== 0 ? null : first.physical;
  } finally {
    close(fd);
  }
}

/**
 * The distinct first blocks of the runnable layer's `/usr/share/licenses/NAME` files (every
 * copy, in both deployments and every containers-storage layer), and how many copies there are.
 * Copies whose data is inline (btrfs small files) have no block to share and are left out.
 */
async function licenseBlocks(root: string, deployments: string[], name: string) {
  const dirs = deployments.map((d) => `${root}/sysroot/ostree/deploy/default/deploy/${d}`);
  const overlay = `${root}/sysroot/ostree/bootc/storage/overlay`;
  for await (const e of Deno.readDir(overlay)) {
    const diff = `${overlay}/${e.name}/diff`;
    if (await Deno.stat(`${diff}/usr/share/licenses`).then(() => true, () => false)) {
      dirs.push(diff);
    }
  }
  const blocks = new Set<number>();
  let copies = 0;
  for (const dir of dirs) {
    for (const pkg of RUNNABLE_LICENSED) {
      const path = `${dir}/usr/share/licenses/${pkg}/${name}`;
      if (!(await Deno.stat(path).then(() => true, () => false))) continue;
      const block = firstBlock(path);
      if (block !== null) blocks.add(block);
      copies++;
    }
  }
  return { blocks: [...blocks], copies };
}

/** Two deployments (v1 rollback, v2 booted) of runnable bootable images. */
async function twoDeploymentHost(dir: string, bins: Record<string, string>) {
  const layout = `${dir}/oci`;
  for (const v of ["1", "2"]) {
    await buildBootableImage(layout, { tag: `v${v}`, version: v, runnable: { bulkMiB: BULK_MIB } });
  }
  return await buildOstreeHost(`${dir}/host`, {
    images: [{ ref: "unistore/os:1", layout: `${layout}:v1` }, {
      ref: "unistore/os:2",
      layout: `${layout}:v2`,
    }],
    booted: 1,
    bins,
  });
}

/** podman on the host's bootc storage, with the run root unistore's pull recorded. */
async function hostStore(store: string) {
  const runroot = await runrootFor(store);
  await Deno.mkdir(runroot, { recursive: true });
  const s = storeAt(store, runroot);
  return {
    ...s,
    async [Symbol.asyncDispose]() {
      await s[Symbol.asyncDispose]();
      await Deno.remove(runroot, { recursive: true }).catch(() => {});
    },
  };
}

for (const kind of ["xfs", "btrfs"] as const) {
  hostFixtureTest(
    "set-unified full on an ostree host: every store, shared blocks",
    kind,
    TOOLS,
    async (fs, bins) => {
      await using host = await twoDeploymentHost(fs.mountpoint, bins);
      const root = host.dir;
      const store = `${root}/sysroot/ostree/bootc/storage`;
      const before = await usedBytes(fs.mountpoint);

      const r = await unistore(
        "--root",
        root,
        "set-unified",
        "full",
        "--mode",
        "enabled",
        "--json",
      );
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const report = JSON.parse(r.stdout);
      assert.equal(report.ok, true, r.stdout);
      assert.equal(report.flagWritten, true);
      assert.deepEqual(report.images.map((i: { slot: string }) => i.slot), ["booted", "rollback"]);
      assert.deepEqual(
        JSON.parse(await Deno.readTextFile(`${root}/sysroot/composefs/bootc.json`)),
        { version: 1, unified: "enabled" },
      );

      // podman sees both images under their original ids (the config digests) and runs them.
      await using podmanStore = await hostStore(store);
      const ids =
        (await podman(bins.podman, podmanStore, ["images", "--no-trunc", "--format", "{{.ID}}"]))
          .stdout;
      for (const img of host.images) {
        assert.ok(ids.includes(img.pulled.configDigest.slice(7)), `${img.imageName} in ${ids}`);
      }
      const hello = await podmanRun(bins.podman, podmanStore, host.images[1].imageName, [
        "/usr/bin/hello",
      ]);
      await unmountBelow(store);
      assert.equal(hello.trim(), "hello from 2");

      await runOk([bins.ostree, `--repo=${host.repo}`, "fsck", "--quiet"]);
      // Three stores, one copy of each image's bytes: the growth is far below one more copy.
      const grown = (await usedBytes(fs.mountpoint)) - before;
      assert.ok(grown < BULK_MIB * 2 ** 20, `df grew by ${grown} bytes`);
      // The same bytes at two paths, and a file too small for a composefs object: every copy
      // in containers-storage shares the block of the one ostree object (one per version).
      const deployments = host.images.map((i) => i.deployment);
      const copying = await licenseBlocks(root, deployments, "COPYING");
      assert.equal(copying.copies, 2 * 2 * RUNNABLE_LICENSED.length, "COPYING copies found");
      assert.equal(copying.blocks.length, 2, `COPYING first blocks: ${copying.blocks}`);
      const notice = await licenseBlocks(root, deployments, "NOTICE");
      assert.equal(notice.copies, 4, "NOTICE copies found");
      // XFS keeps no data in the inode: there, all four copies must be on one block.
      const noticeBlocks = kind === "xfs" ? [1] : [0, 1];
      assert.ok(noticeBlocks.includes(notice.blocks.length), `NOTICE blocks: ${notice.blocks}`);
      const du = JSON.parse((await unistore("--root", root, "du", "--json")).stdout);
      assert.ok(du.savedBytes >= 3 * BULK_MIB * 2 ** 20, `du: ${JSON.stringify(du)}`);

      const status = await unistore("--root", root, "status", "--format", "human");
      assert.match(status.stdout, /Storage: unified \(enabled\)/);

      const again = await unistore("--root", root, "set-unified", "full", "--mode", "enabled");
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /already unified \(enabled\); nothing to do/);
    },
  );
}

hostFixtureTest(
  "set-unified full on ext4: enabled refuses untouched, enabled-with-copy copies",
  "ext4",
  TOOLS,
  async (fs, bins) => {
    await using host = await twoDeploymentHost(fs.mountpoint, bins);
    const root = host.dir;
    const strict = await unistore("--root", root, "set-unified", "full", "--mode", "enabled");
    assert.equal(strict.code, 1);
    assert.match(strict.stderr, /ext4/);
    for (const path of ["sysroot/composefs", "sysroot/ostree/bootc/storage"]) {
      assert.equal(await Deno.stat(`${root}/${path}`).then(() => true, () => false), false, path);
    }
    const copy = await unistore(
      "--root",
      root,
      "set-unified",
      "full",
      "--mode",
      "enabled-with-copy",
    );
    assert.equal(copy.code, 0, copy.stderr + copy.stdout);
    assert.match(copy.stdout, /unified storage enabled \(enabled-with-copy\)/);
    await using podmanStore = await hostStore(`${root}/sysroot/ostree/bootc/storage`);
    const ids =
      (await podman(bins.podman, podmanStore, ["images", "--no-trunc", "--format", "{{.ID}}"]))
        .stdout;
    assert.ok(ids.includes(host.images[1].pulled.configDigest.slice(7)));
    await runOk([bins.ostree, `--repo=${host.repo}`, "fsck", "--quiet"]);
  },
);

hostFixtureTest(
  "apply-config applies [install.storage] unified once, then is a no-op",
  "xfs",
  TOOLS,
  async (fs, bins) => {
    await using host = await twoDeploymentHost(fs.mountpoint, bins);
    const root = host.dir;
    const none = await unistore("--root", root, "apply-config");
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /does not ask for unified storage; nothing to do/);

    await Deno.mkdir(`${root}/usr/lib/bootc/install`, { recursive: true });
    await Deno.writeTextFile(
      `${root}/usr/lib/bootc/install/50-unified.toml`,
      '[install.storage]\nunified = "enable"\n',
    );
    const bad = await unistore("--root", root, "apply-config");
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /50-unified\.toml: install\.storage\.unified: expected one of .*found "enable"/,
    );
    assert.equal(await Deno.stat(`${root}/sysroot/composefs`).then(() => true, () => false), false);

    await Deno.writeTextFile(
      `${root}/usr/lib/bootc/install/50-unified.toml`,
      '[install.storage]\nunified = "enabled"\n',
    );
    const first = await unistore("--root", root, "apply-config");
    assert.equal(first.code, 0, first.stderr + first.stdout);
    assert.match(first.stdout, /unified storage enabled \(enabled\)/);
    const second = await unistore("--root", root, "apply-config");
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /is already applied; nothing to do/);
  },
);

hostFixtureTest(
  "set-unified full on a native composefs host: rebuilt in containers-storage from composefs",
  "xfs",
  TOOLS,
  async (fs, bins) => {
    const layout = `${fs.mountpoint}/oci`;
    for (const v of ["1", "2"]) {
      await buildBootableImage(layout, {
        tag: `v${v}`,
        version: v,
        runnable: { bulkMiB: BULK_MIB },
      });
    }
    await using host = await buildComposefsHost(`${fs.mountpoint}/host`, {
      images: [{ ref: "unistore/os:1", layout: `${layout}:v1` }, {
        ref: "unistore/os:2",
        layout: `${layout}:v2`,
      }],
      booted: 1,
      bins,
    });
    // No registry: everything must come from composefs.
    await host.registry.stop();
    const root = host.dir;
    const before = await usedBytes(fs.mountpoint);
    const r = await unistore("--root", root, "set-unified", "full", "--json");
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const report = JSON.parse(r.stdout);
    assert.equal(report.kind, "composefs");
    assert.deepEqual(
      report.images.map((i: { actions: string[] }) => i.actions),
      [["composefs -> containers-storage"], ["composefs -> containers-storage"]],
    );
    const grown = (await usedBytes(fs.mountpoint)) - before;
    assert.ok(grown < BULK_MIB * 2 ** 20 / 4, `df grew by ${grown} bytes`);
    const store = `${root}/sysroot/composefs/bootc/storage`;
    await using podmanStore = await hostStore(store);
    const ids = (await podman(bins.podman, podmanStore, [
      "images",
      "--no-trunc",
      "--format",
      "{{.ID}}",
    ])).stdout;
    for (const img of host.images) {
      assert.ok(ids.includes(img.pulled.configDigest.slice(7)), `${img.imageName} in ${ids}`);
    }
    const hello = await podmanRun(bins.podman, podmanStore, host.images[1].imageName, [
      "/usr/bin/hello",
    ]);
    assert.equal(hello.trim(), "hello from 2");
  },
);
