// upgrade's pull directories below ostree/repo/tmp: held by an flock while their upgrade runs,
// swept by the next upgrade once their owner is gone (killed: the kernel drops its lock).

import assert from "node:assert/strict";
import { closeQuietly, openDir } from "../../ffi/fs.ts";
import { flockTry } from "../../ffi/lock.ts";
import { makePullDir, PULL_DIR_PREFIX } from "../../lib/pipeline/pull_dir.ts";

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** Whether another open file description can take the directory's lock now. */
function lockFree(path: string): boolean {
  const fd = openDir(path);
  try {
    return flockTry(fd, "write");
  } finally {
    closeQuietly(fd);
  }
}

Deno.test("a pull directory is locked while in use, removed after, and sweeps dead ones", async () => {
  const repo = await Deno.makeTempDir({ prefix: "unistore-pulldir-" });
  const tmp = `${repo}/tmp`;
  await Deno.mkdir(tmp);
  // A process that holds a pull directory's lock the way a running upgrade does, then dies
  // (`flock --no-fork`: the process killed is the one holding the lock).
  const held = `${tmp}/${PULL_DIR_PREFIX}0000aaaa0000`;
  const dead = `${tmp}/${PULL_DIR_PREFIX}0000dead0000`;
  await Deno.mkdir(held);
  await Deno.mkdir(`${dead}/layout/blobs`, { recursive: true });
  await Deno.writeTextFile(`${dead}/layout/blobs/x`, "left by a killed upgrade");
  await Deno.mkdir(`${tmp}/ostree-own-dir`); // not ours: never touched
  const holder = new Deno.Command("flock", { args: ["--no-fork", held, "sleep", "600"] }).spawn();
  try {
    for (let i = 0; lockFree(held) && i < 100; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(lockFree(held), false, "the holder has the lock");

    {
      using first = makePullDir(repo);
      assert.ok(first.path.startsWith(`${tmp}/${PULL_DIR_PREFIX}`));
      assert.deepEqual(first.swept, [`${PULL_DIR_PREFIX}0000dead0000`]);
      assert.equal(await exists(dead), false);
      assert.equal(await exists(held), true, "a running upgrade's directory stays");
      assert.equal(lockFree(first.path), false, "ours is locked while in use");

      // A second upgrade at the same time leaves both running ones alone.
      using second = makePullDir(repo);
      assert.deepEqual(second.swept, []);
      assert.equal(await exists(first.path), true);
      assert.notEqual(second.path, first.path);
    }
    const left = [...Deno.readDirSync(tmp)].map((e) => e.name).sort();
    assert.deepEqual(left, ["ostree-own-dir", `${PULL_DIR_PREFIX}0000aaaa0000`]);

    // The holder killed: its lock is gone with it, and the next pull directory sweeps it.
    holder.kill("SIGKILL");
    await holder.status;
    using third = makePullDir(repo);
    assert.deepEqual(third.swept, [`${PULL_DIR_PREFIX}0000aaaa0000`]);
    assert.equal(await exists(held), false);
  } finally {
    try {
      holder.kill("SIGKILL");
    } catch { /* already gone */ }
    await holder.status;
    await Deno.remove(repo, { recursive: true });
  }
});
