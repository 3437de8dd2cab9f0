/**
 * `deno task demo`: a sample ostree bootc host built with the real ostree on a
 * loop XFS, its two images served from a docker-registry on loopback; then
 * unistore as a user runs it: status → set-unified full → fsck images → du,
 * and the space the three stores saved by sharing their blocks.
 *
 * Without root or without the tools (ostree, podman, skopeo, docker-registry,
 * xfsprogs), it says what is missing and shows the reflink engine alone on a
 * plain directory instead.
 *
 * @module
 */

import { close, mkdirAt, O, openAt, openDir, writeAll } from "../ffi/fs.ts";
import { probeReflink } from "../lib/reflink/probe.ts";
import { cloneTree } from "../lib/reflink/tree.ts";
import { sharedBytesAt } from "../lib/reflink/shared.ts";
import { buildBootableImage, buildOstreeHost } from "../tests/fixtures/host/mod.ts";
import { createLoopFs, loopFsSkipReason } from "../tests/harness/loopfs.ts";
import { findTool } from "../tests/harness/tools.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const BULK_MIB = 64;
const TOOLS = [
  ["ostree", "ostree"],
  ["podman", "podman"],
  ["skopeo", "skopeo"],
  ["docker-registry", "docker-registry"],
  ["runc", "runc"],
] as const;

function banner(text: string) {
  console.log(`\n\x1b[1m$ ${text}\x1b[0m`);
}

async function unistore(root: string, ...args: string[]): Promise<void> {
  banner(`unistore --root ${root} ${args.join(" ")}`);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, "--root", root, ...args],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (out.code !== 0) console.log(`(exit code ${out.code})`);
}

async function usedBytes(mountpoint: string): Promise<number> {
  await new Deno.Command("sync", { args: ["-f", mountpoint] }).output();
  const out = await new Deno.Command("df", { args: ["-B1", "--output=used", mountpoint] }).output();
  return Number(new TextDecoder().decode(out.stdout).trim().split("\n")[1]);
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

async function fullDemo(): Promise<void> {
  console.log(`unistore demo: an ostree bootc host with two deployments, unified.

Building the host: a loop XFS (reflink=1), two bootable images of ${BULK_MIB} MiB of unique data
each pushed to a docker-registry on 127.0.0.1 and pulled back, committed and deployed with the
real ostree (v1 rollback, v2 booted)...`);
  await using fs = await createLoopFs("xfs", { sizeMiB: 2048 });
  const layout = `${fs.mountpoint}/oci`;
  for (const v of ["1", "2"]) {
    await buildBootableImage(layout, { tag: `v${v}`, version: v, runnable: { bulkMiB: BULK_MIB } });
  }
  const bins: Record<string, string> = {};
  for (const [bin] of TOOLS) bins[bin] = findTool(bin)!;
  await using host = await buildOstreeHost(`${fs.mountpoint}/host`, {
    images: [
      { ref: "demo/os:1", layout: `${layout}:v1` },
      { ref: "demo/os:2", layout: `${layout}:v2` },
    ],
    booted: 1,
    bins,
  });
  await Deno.remove(layout, { recursive: true });
  const root = host.dir;
  const before = await usedBytes(fs.mountpoint);

  await unistore(root, "status", "--format", "human");
  await unistore(root, "set-unified", "full", "--mode", "enabled");
  const after = await usedBytes(fs.mountpoint);
  await unistore(root, "status", "--format", "human");
  await unistore(root, "fsck", "images");
  await unistore(root, "image", "list");
  await unistore(root, "du");
  const images = 2 * BULK_MIB * 2 ** 20;
  const delta = after - before;
  console.log(`
The two images now live in three stores (ostree, composefs, containers-storage): three copies
of ${mib(images)} of unique data would take ${mib(3 * images)}. The filesystem's used space
${
    delta >= 0
      ? `grew by ${mib(delta)}`
      : `shrank by ${mib(-delta)}`
  } (df): every store shares the same blocks, and the
ostree deployments' own copies, written before unification, now share composefs's blocks too.`);
}

async function engineDemo(reason: string): Promise<void> {
  console.log(`unistore demo (engine only): ${reason}

The full demo builds an ostree host on a loop XFS and needs root and: ${
    TOOLS.map(([, pkg]) => pkg).join(" ")
  } xfsprogs
(apt-get install them, or run the full suite with \`deno task test\` in CI). Here: the reflink
engine on a plain directory: a 64 MiB "image" tree written and cloned, and how much of the
clone shares its blocks with the original.
`);
  const base = await Deno.makeTempDir({ prefix: "unistore-demo-" });
  try {
    const root = openDir(base);
    mkdirAt(root, "image", 0o755);
    const image = openAt(root, "image", O.RDONLY | O.DIRECTORY);
    const chunk = new Uint8Array(1 << 20);
    for (let i = 0; i < 16; i++) {
      crypto.getRandomValues(chunk.subarray(0, 65536));
      const fd = openAt(image, `layer-file-${i}`, O.CREAT | O.EXCL | O.WRONLY, 0o644);
      for (let m = 0; m < 4; m++) writeAll(fd, chunk);
      close(fd);
    }
    const probe = probeReflink(root);
    console.log(
      `reflink probe on ${base}: ${
        probe.supported ? "reflinks work" : `no reflinks: ${probe.reason}`
      } ` +
        `(${probe.filesystem})`,
    );
    mkdirAt(root, "clone", 0o755);
    const clone = openAt(root, "clone", O.RDONLY | O.DIRECTORY);
    const stats = cloneTree(image, clone, { policy: "reflink-or-copy" });
    let shared = 0;
    for (let i = 0; i < 16; i++) shared += sharedBytesAt(clone, `layer-file-${i}`).sharedBytes;
    console.log(
      `cloned ${stats.files} files, ${mib(stats.bytes)}: ${stats.methods.reflink} by reflink, ` +
        `${stats.files - stats.methods.reflink} by copy; ${mib(shared)} of the clone share ` +
        `blocks with the original`,
    );
    [image, clone, root].forEach(close);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

const missing = TOOLS.filter(([bin]) => findTool(bin) === null).map(([, pkg]) => pkg);
const loopReason = loopFsSkipReason("xfs");
if (loopReason !== null) await engineDemo(loopReason);
else if (missing.length > 0) await engineDemo(`missing: ${missing.join(" ")}`);
else if (findTool("busybox") === null && !(await Deno.stat("/bin/busybox").catch(() => null))) {
  await engineDemo("missing: busybox-static");
} else await fullDemo();
