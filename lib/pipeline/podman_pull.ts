/**
 * Pulling an image into bootc's containers-storage with the real podman, the
 * way bootc does for `set-unified full` (spec bootc-unified-storage.md §2).
 *
 * @module
 */

import { closeQuietly, openDir } from "../../ffi/fs.ts";
import { flockWait } from "../../ffi/lock.ts";
import { PipelineError } from "./errors.ts";
import { faultPoint } from "../fault/fault_point.ts";

/** Registries on this machine's loopback: pulled without TLS verification (test registries). */
export function isLoopbackReference(ref: string): boolean {
  const name = ref.replace(/^docker:\/\//, "");
  const host = name.split("/")[0];
  return /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(host);
}

/**
 * The run root podman uses with `store`. podman records it in the store's database and refuses
 * another one later, so it must be the same on every call: bootc's `/run/bootc/storage` for the
 * host's own store, else a path derived from the store's (under 50 characters, podman's limit).
 */
export async function runrootFor(store: string): Promise<string> {
  if (store === "/sysroot/ostree/bootc/storage" || store === "/sysroot/composefs/bootc/storage") {
    return "/run/bootc/storage";
  }
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(store));
  const hex = Array.from(new Uint8Array(digest).slice(0, 6), (b) => b.toString(16).padStart(2, "0"))
    .join("");
  return `/tmp/unistore-run-${hex}`;
}

async function mountsBelow(dir: string): Promise<string[]> {
  const text = await Deno.readTextFile("/proc/self/mountinfo");
  return text.split("\n").map((l) => l.split(" ")[4]).filter((m) =>
    m !== undefined && (m === dir || m.startsWith(`${dir}/`))
  );
}

/**
 * `podman --root STORE pull REF` with a private run root. podman mounts its store's overlay
 * directory on itself; a mount that was not there before is taken down again so the store's
 * filesystem can be unmounted by whoever owns it.
 *
 * Pulls into one store by unistore processes take turns (an exclusive flock on the store
 * directory): the mounts taken down and the run root removed after a pull must not be another
 * pull's. The run root is removed only when this pull created it, and never bootc's own.
 *
 * @throws {PipelineError} with podman's message when the pull fails.
 */
export async function podmanPull(store: string, ref: string): Promise<void> {
  const storeFd = openDir(store);
  try {
    await flockWait(storeFd, "write", store);
    await pullLocked(store, ref);
  } finally {
    closeQuietly(storeFd); // releases the flock
  }
  faultPoint("pipeline.podman-pulled");
}

async function pullLocked(store: string, ref: string): Promise<void> {
  const runroot = await runrootFor(store);
  const ownRunroot = runroot !== "/run/bootc/storage" &&
    await Deno.lstat(runroot).then(() => false, () => true);
  await Deno.mkdir(runroot, { recursive: true, mode: 0o700 });
  const before = await mountsBelow(store);
  try {
    const args = [
      "--root",
      store,
      "--runroot",
      runroot,
      "--storage-driver",
      "overlay",
      "pull",
      "--quiet",
    ];
    if (isLoopbackReference(ref)) args.push("--tls-verify=false");
    args.push(ref);
    let out: Deno.CommandOutput;
    try {
      out = await new Deno.Command("podman", {
        args,
        stdout: "piped",
        stderr: "piped",
        env: { TMPDIR: runroot },
      }).output();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new PipelineError(ref, "podman is not installed; it is needed to pull images");
      }
      throw e;
    }
    if (!out.success) {
      const msg = new TextDecoder().decode(out.stderr).trim().split("\n").pop() ?? "";
      throw new PipelineError(ref, `podman pull into ${store} failed: ${msg}`);
    }
  } finally {
    for (const m of (await mountsBelow(store)).filter((m) => !before.includes(m)).reverse()) {
      await new Deno.Command("umount", { args: [m], stderr: "null" }).output();
    }
    if (ownRunroot) await Deno.remove(runroot, { recursive: true }).catch(() => {});
  }
}
