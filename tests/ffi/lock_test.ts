// OFD locks interlock with containers-storage's classic POSIX record locks,
// in both directions, as specs/containers-storage.md §3.2 requires.

import assert from "node:assert/strict";
import { close, O, openAt, openDir, statAt } from "../../ffi/fs.ts";
import { ofdConflict, ofdLock, ofdTryLock, ofdUnlock } from "../../ffi/lock.ts";
import { runOk } from "../harness/run.ts";
import { toolTest } from "../harness/tools.ts";

const PODMAN = { bin: "podman", pkg: "podman" };
const CSTORAGE = { bin: "containers-storage", pkg: "containers-storage" };

/** Resolves to "timeout" when `p` has not settled after `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** A fresh podman store in a temp dir; `podman images` creates its lock files. */
async function podmanStore(podman: string) {
  const dir = await Deno.makeTempDir({ prefix: "unistore-lock-" });
  const args = ["--root", `${dir}/root`, "--runroot", `${dir}/run`, "--storage-driver", "overlay"];
  await runOk([podman, ...args, "images"]);
  return {
    dir,
    args,
    async [Symbol.asyncDispose]() {
      // overlay keeps a self-bind-mount of its directory; drop it before removing.
      await new Deno.Command("umount", { args: [`${dir}/root/overlay`], stderr: "null" }).output();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

toolTest("an OFD write lock held by unistore makes podman images wait", [PODMAN], async (bins) => {
  await using store = await podmanStore(bins.podman);
  const root = openDir(`${store.dir}/root`);
  const lockFd = openAt(root, "overlay-images/images.lock", O.RDWR);
  try {
    assert.ok(ofdTryLock(lockFd, "write"));
    const child = new Deno.Command(bins.podman, {
      args: [...store.args, "images", "--format", "{{.ID}}"],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = child.output();
    assert.equal(await within(output, 2000), "timeout", "podman finished while we held the lock");
    ofdUnlock(lockFd);
    const done = await within(output, 30000);
    assert.notEqual(done, "timeout", "podman did not continue after the lock was released");
    assert.equal((done as Deno.CommandOutput).code, 0);
  } finally {
    close(lockFd);
    close(root);
  }
});

/** The pids holding POSIX WRITE locks on `ino`, from /proc/locks. */
async function posixWriters(ino: bigint): Promise<number[]> {
  const text = await Deno.readTextFile("/proc/locks");
  const pids: number[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    // "1: POSIX  ADVISORY  WRITE 8342 fe:00:2146533 0 EOF"
    if (f[1] === "POSIX" && f[3] === "WRITE" && f[5]?.endsWith(`:${ino}`)) pids.push(Number(f[4]));
  }
  return pids;
}

toolTest(
  "a write lock held by containers-storage (podman's storage library) makes unistore wait",
  [PODMAN, CSTORAGE],
  async (bins) => {
    await using store = await podmanStore(bins.podman);
    const cs = [bins["containers-storage"], "-g", `${store.dir}/root`, "--run", `${store.dir}/run`];
    const layer = (await runOk([...cs, "--storage-driver", "overlay", "create-layer"])).stdout
      .trim();
    const fifo = `${store.dir}/diff.fifo`;
    await runOk(["mkfifo", fifo]);
    // applydiff holds the layer store's write lock while it reads the diff,
    // so it keeps the lock until we finish writing into the fifo.
    const applier = new Deno.Command(cs[0], {
      args: [...cs.slice(1), "--storage-driver", "overlay", "applydiff", "-f", fifo, layer],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = await Deno.open(fifo, { write: true });
    const root = openDir(`${store.dir}/root`);
    const lockFd = openAt(root, "overlay-layers/layers.lock", O.RDWR);
    try {
      const ino = statAt(root, "overlay-layers/layers.lock").ino;
      for (let i = 0; i < 100 && !(await posixWriters(ino)).includes(applier.pid); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(
        await posixWriters(ino),
        [applier.pid],
        "containers-storage holds layers.lock",
      );
      assert.equal(ofdTryLock(lockFd, "write"), false);
      assert.ok(ofdConflict(lockFd, "read") !== null, "a reader would conflict too");
      const locked = ofdLock(lockFd, "write");
      assert.equal(
        await within(locked, 1500),
        "timeout",
        "unistore got the lock while it was held",
      );
      // An empty tar archive (two zero blocks) ends the diff; the lock is released.
      await writer.write(new Uint8Array(1024));
      writer.close();
      assert.notEqual(await within(locked, 30000), "timeout", "unistore never got the lock");
      const out = await applier.output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      ofdUnlock(lockFd);
    } finally {
      close(lockFd);
      close(root);
      try {
        writer.close();
      } catch { /* already closed */ }
    }
  },
);
