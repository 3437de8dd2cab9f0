// Tests of the loop filesystem harness itself: it must really mount the requested filesystem and
// must leave nothing behind (no mount, no loop device, no temp dir), also when the test throws.

import assert from "node:assert/strict";
import {
  ALL_FS_KINDS,
  createLoopFs,
  fsTest,
  isMounted,
  loopDevicesFor,
  loopFsSkipReason,
  withLoopFs,
} from "./loopfs.ts";
import type { FsKind, LoopFs } from "./loopfs.ts";
import { run, runOk } from "./run.ts";
import { findTool, requireRoot, requireTool, skippableTest } from "./tools.ts";

// What `stat -f -c %T` (statfs f_type, by name) prints for each kind; ext4 shares its magic
// number 0xef53 with ext2/ext3.
const STATFS_NAME: Record<FsKind, string> = { xfs: "xfs", btrfs: "btrfs", ext4: "ext2/ext3" };

/** Raw /proc/mounts check, independent of the harness's own parser. */
async function procMountsMentions(path: string): Promise<boolean> {
  return (await Deno.readTextFile("/proc/mounts")).split("\n").some((l) =>
    l.split(" ")[1] === path
  );
}

/** Backing file of a loop device, or null when it is detached. */
async function backingFile(device: string): Promise<string | null> {
  const name = device.replace(/^\/dev\//, "");
  try {
    return (await Deno.readTextFile(`/sys/block/${name}/loop/backing_file`)).trim();
  } catch {
    return null;
  }
}

/**
 * Asserts that `fs` is completely gone. `imageLink` is a hard link to the image made before
 * close(): close() deletes the image, and `losetup -j` matches by device and inode, so the link
 * still finds a loop device that is attached to the deleted image.
 */
async function assertTornDown(fs: LoopFs, imageLink: string): Promise<void> {
  assert.equal(await procMountsMentions(fs.mountpoint), false, "still in /proc/mounts");
  assert.deepEqual(await loopDevicesFor(imageLink), [], "losetup -j still lists a device");
  const backing = await backingFile(fs.device);
  assert.ok(backing === null || !backing.startsWith(fs.dir), `${fs.device} still on ${backing}`);
  await assert.rejects(Deno.stat(fs.dir), Deno.errors.NotFound, "temp dir not removed");
}

/** A scratch dir next to the images (same filesystem, so hard links to them work). */
function scratchDir(): Promise<string> {
  return Deno.makeTempDir({ dir: "/var/tmp", prefix: "unistore-harness-test-" });
}

for (const kind of ALL_FS_KINDS) {
  skippableTest(
    `createLoopFs mounts a writable ${kind} and close() removes it [${kind}]`,
    loopFsSkipReason(kind),
    async () => {
      const scratch = await scratchDir();
      try {
        const fs = await createLoopFs(kind);
        const link = `${scratch}/image-link`;
        try {
          await Deno.link(fs.image, link);
          const statfs = await runOk(["stat", "-f", "-c", "%T", fs.mountpoint]);
          assert.equal(statfs.stdout.trim(), STATFS_NAME[kind]);
          const entry = (await Deno.readTextFile("/proc/mounts")).split("\n")
            .map((l) => l.split(" ")).find((f) => f[1] === fs.mountpoint);
          assert.ok(entry, "mountpoint not in /proc/mounts");
          assert.equal(entry[0], fs.device);
          assert.equal(entry[2], kind);
          assert.match(fs.device, /^\/dev\/loop\d+$/);
          assert.deepEqual(await loopDevicesFor(fs.image), [fs.device]);
          assert.ok(fs.dir.startsWith("/var/tmp/"), fs.dir);

          // Writable: file, directory, read back.
          await Deno.mkdir(`${fs.mountpoint}/d`);
          await Deno.writeTextFile(`${fs.mountpoint}/d/f`, "hello");
          assert.equal(await Deno.readTextFile(`${fs.mountpoint}/d/f`), "hello");

          // XFS must have been made with reflink=1; ext4 cannot clone at all.
          const cp = await run(
            ["cp", "--reflink=always", `${fs.mountpoint}/d/f`, `${fs.mountpoint}/clone`],
          );
          assert.equal(cp.success, kind !== "ext4", cp.stderr);

          // The image is sparse: far less allocated than its 512 MiB size.
          const st = await Deno.stat(fs.image);
          assert.equal(st.size, 512 * 1024 * 1024);
          assert.ok(st.blocks! * 512 < st.size / 2, `image not sparse: ${st.blocks} blocks`);
        } finally {
          await fs.close();
        }
        await assertTornDown(fs, link);
        await fs.close(); // idempotent
      } finally {
        await Deno.remove(scratch, { recursive: true });
      }
    },
  );

  skippableTest(
    `withLoopFs tears down when fn throws [${kind}]`,
    loopFsSkipReason(kind),
    async () => {
      const scratch = await scratchDir();
      try {
        let seen: LoopFs | undefined;
        const boom = new Error("boom");
        await assert.rejects(
          withLoopFs(kind, async (fs) => {
            seen = fs;
            await Deno.link(fs.image, `${scratch}/image-link`);
            await Deno.writeTextFile(`${fs.mountpoint}/x`, "x");
            throw boom;
          }, { sizeMiB: 320 }),
          (e) => e === boom, // fn's own error, not a teardown error
        );
        assert.ok(seen);
        await assertTornDown(seen, `${scratch}/image-link`);
      } finally {
        await Deno.remove(scratch, { recursive: true });
      }
    },
  );
}

skippableTest("withLoopFs returns fn's result", loopFsSkipReason("ext4"), async () => {
  const r = await withLoopFs("ext4", async (fs) => {
    await Deno.writeTextFile(`${fs.mountpoint}/a`, "abc");
    return (await Deno.stat(`${fs.mountpoint}/a`)).size;
  }, { sizeMiB: 64 });
  assert.equal(r, 3);
});

skippableTest(
  "close() unmounts a busy filesystem lazily, reports it, and the device detaches later",
  loopFsSkipReason("ext4"),
  async () => {
    const fs = await createLoopFs("ext4", { sizeMiB: 64 });
    const file = await Deno.open(`${fs.mountpoint}/held-open`, { write: true, create: true });
    try {
      await assert.rejects(fs.close(), /stayed busy.*lazy unmount done/s);
    } finally {
      file.close();
    }
    assert.equal(await procMountsMentions(fs.mountpoint), false);
    await assert.rejects(Deno.stat(fs.dir), Deno.errors.NotFound);
    // The last reference is gone now; autoclear detaches the loop device (asynchronously).
    for (let i = 0; i < 50 && (await backingFile(fs.device))?.startsWith(fs.dir); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const backing = await backingFile(fs.device);
    assert.ok(backing === null || !backing.startsWith(fs.dir), `${fs.device} still on ${backing}`);
  },
);

skippableTest("close() also unmounts mounts stacked inside", loopFsSkipReason("ext4"), async () => {
  const fs = await createLoopFs("ext4", { sizeMiB: 64 });
  try {
    await Deno.mkdir(`${fs.mountpoint}/inner`);
    await runOk(["mount", "-t", "tmpfs", "tmpfs", `${fs.mountpoint}/inner`]);
    assert.ok(await isMounted(`${fs.mountpoint}/inner`));
  } finally {
    await fs.close();
  }
  assert.equal(await procMountsMentions(`${fs.mountpoint}/inner`), false);
  assert.equal(await procMountsMentions(fs.mountpoint), false);
});

Deno.test("createLoopFs rejects an image too small for the filesystem", async () => {
  await assert.rejects(createLoopFs("xfs", { sizeMiB: 256 }), RangeError);
});

Deno.test("loopFsSkipReason is cached and names what is missing", () => {
  for (const kind of ALL_FS_KINDS) {
    const reason = loopFsSkipReason(kind);
    assert.equal(loopFsSkipReason(kind), reason);
    if (reason !== null) assert.match(reason, new RegExp(`^${kind}: `));
  }
});

// fsTest itself, on every kind: the callback gets a mounted filesystem of the right kind.
fsTest("fsTest passes a mounted filesystem", ALL_FS_KINDS, async (fs) => {
  assert.ok(await isMounted(fs.mountpoint));
  const statfs = await runOk(["stat", "-f", "-c", "%T", fs.mountpoint]);
  assert.equal(statfs.stdout.trim(), STATFS_NAME[fs.kind]);
}, { sizeMiB: 320 });

// The "not root" path, observed from outside: a fixture using fsTest runs in a child `deno test`
// with privileges dropped to nobody (setpriv), once without and once with CI=true.
skippableTest(
  "fsTest as non-root: ignored with a printed reason, or failing under CI=true",
  requireRoot() ?? requireTool("setpriv", "util-linux"),
  async () => {
    const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "unistore-nonroot-test-" });
    try {
      // Everything nobody needs goes into a world-readable dir: the checkout and the deno binary
      // may sit under /root (npx cache), which nobody cannot traverse.
      await Deno.chmod(dir, 0o755);
      for (const f of ["loopfs.ts", "tools.ts", "run.ts"]) {
        await Deno.copyFile(new URL(`./${f}`, import.meta.url), `${dir}/${f}`);
      }
      await Deno.writeTextFile(
        `${dir}/fixture_test.ts`,
        `import { fsTest } from "./loopfs.ts";\nfsTest("t", ["xfs", "ext4"], async () => {});\n`,
      );
      const deno = `${dir}/deno`;
      await Deno.link(Deno.execPath(), deno).catch(() => Deno.copyFile(Deno.execPath(), deno));
      await Deno.mkdir(`${dir}/home`);
      await Deno.chown(`${dir}/home`, 65534, 65534);
      const asNobody = (ci: string) =>
        run([
          findTool("setpriv")!,
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          deno,
          "test",
          "--no-config",
          "--no-lock",
          "-A",
          `${dir}/fixture_test.ts`,
        ], { env: { HOME: `${dir}/home`, DENO_DIR: `${dir}/home/deno`, NO_COLOR: "1", CI: ci } });

      const local = await asNobody("false");
      const localOut = local.stdout + local.stderr;
      assert.equal(local.code, 0, localOut);
      assert.match(localOut, /^ok \| 0 passed \| 0 failed \| 2 ignored /m);
      assert.match(localOut, /skip: xfs: not root \(loop mounts need root\)/);
      assert.match(localOut, /skip: ext4: not root/);

      const ci = await asNobody("true");
      const ciOut = ci.stdout + ci.stderr;
      assert.notEqual(ci.code, 0, ciOut);
      assert.match(ciOut, /^FAILED \| 0 passed \| 2 failed /m);
      assert.match(ciOut, /xfs: not root \(loop mounts need root\) \(CI=true: /);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
