/**
 * The host the image benchmarks run on: the generated Fedora-like image
 * (bench/fedora_like_image.ts) written as an OCI layout on the loop filesystem, then deployed
 * on an ostree host by the real tools (tests/fixtures/host buildOstreeHost: pushed to a
 * loopback `docker-registry`, pulled back by skopeo, `ostree commit` per layer and of the
 * merged tree, `ostree admin deploy`), booted into it. The registry keeps running until the
 * host is disposed, so `set-unified full` can `podman pull` the booted image from it.
 *
 * Also here: putting the image into bootc's containers-storage with skopeo (what podman pull
 * does, without unistore), and undoing a unification so that the next run has the same work.
 *
 * @module
 */

import { buildOstreeHost, type OstreeHost } from "../tests/fixtures/host/mod.ts";
import { unmountBelow } from "../tests/fixtures/cstorage/podman.ts";
import { runOk } from "../tests/harness/run.ts";
import { runrootFor } from "../lib/pipeline/podman_pull.ts";
import { UNISTORE_V8_FLAGS } from "../scripts/v8_flags.ts";
import { type ImagePlan, planImage } from "./fedora_like_image.ts";
import { writeImageLayout, type WrittenImage } from "./image_layout.ts";
import { stopwatch } from "./measure.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** A deployed benchmark host; disposing it stops its registry (the files stay). */
export interface BenchHost extends AsyncDisposable {
  plan: ImagePlan;
  image: WrittenImage;
  host: OstreeHost;
  /** The `--root` of the host. */
  root: string;
  /** bootc's containers-storage of the host (`sysroot/ostree/bootc/storage`). */
  store: string;
  /** `127.0.0.1:PORT/bench/os:1`, the booted image's name. */
  imageName: string;
  /** How long building took: the OCI layout, and the host from it. */
  setupMs: { layout: number; host: number };
}

/**
 * Writes the image of `scale` into `dir/oci` and deploys it on an ostree host at `dir/host`.
 *
 * @example
 * ```ts ignore
 * await using bh = await buildBenchHost(fs.mountpoint, 1);
 * await timeProcess(unistore(bh.root, "set-unified", "full"));
 * ```
 */
export async function buildBenchHost(dir: string, scale: number): Promise<BenchHost> {
  let t = stopwatch();
  const plan = planImage(scale);
  const image = await writeImageLayout(plan, `${dir}/oci`, `bench-${scale}x`);
  const layout = t();
  t = stopwatch();
  const host = await buildOstreeHost(`${dir}/host`, {
    images: [{ ref: "bench/os:1", layout: `${dir}/oci:${image.tag}` }],
    booted: 0,
  });
  return {
    plan,
    image,
    host,
    root: host.dir,
    store: `${host.dir}/sysroot/ostree/bootc/storage`,
    imageName: host.images[0].imageName,
    setupMs: { layout, host: t() },
    [Symbol.asyncDispose]: () => host[Symbol.asyncDispose](),
  };
}

/** argv of `deno run -A main.ts --root ROOT ARGS…`: unistore as a user runs it from a checkout. */
export function unistoreCmd(root: string, ...args: string[]): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    `--v8-flags=${UNISTORE_V8_FLAGS}`,
    MAIN,
    "--root",
    root,
    ...args,
  ];
}

/**
 * Copies the image from the host's registry into containers-storage at `store` with skopeo,
 * under the run root unistore's podman pull uses, and takes down skopeo's overlay mount.
 * Returns the milliseconds the copy took.
 */
export async function skopeoIntoStore(bh: BenchHost, store: string): Promise<number> {
  const runroot = await runrootFor(store);
  await Deno.mkdir(runroot, { recursive: true, mode: 0o700 });
  const t = stopwatch();
  try {
    await runOk([
      "skopeo",
      "copy",
      "--quiet",
      "--src-tls-verify=false",
      `docker://${bh.imageName}`,
      `containers-storage:[overlay@${store}+${runroot}]${bh.imageName}`,
    ], { env: { TMPDIR: runroot } });
    return t();
  } finally {
    await unmountBelow(store);
    await Deno.remove(runroot, { recursive: true }).catch(() => {});
  }
}

/** The `diff/` directories of every layer in the overlay store at `store`. */
export async function layerDiffDirs(store: string): Promise<string[]> {
  const dirs: string[] = [];
  for await (const e of Deno.readDir(`${store}/overlay`)) {
    if (e.isDirectory && e.name !== "l") dirs.push(`${store}/overlay/${e.name}/diff`);
  }
  return dirs.sort();
}

/**
 * Undoes `set-unified full` on a bench host: removes the composefs repository (bootc.json with
 * it) and bootc's containers-storage, and puts back the ostree repo `config` saved before
 * (without the binding flag). The ostree objects keep their bytes; blocks they shared with the
 * removed stores are theirs alone again, so a new run has the same dedupe work to do.
 */
export async function undoUnification(bh: BenchHost, savedRepoConfig: Uint8Array): Promise<void> {
  await unmountBelow(bh.store);
  await Deno.remove(`${bh.root}/sysroot/composefs`, { recursive: true }).catch(() => {});
  await Deno.remove(`${bh.root}/sysroot/ostree/bootc`, { recursive: true }).catch(() => {});
  await Deno.writeFile(`${bh.host.repo}/config`, savedRepoConfig);
}
