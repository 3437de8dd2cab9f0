/**
 * `deno task compile`: builds the single `dist/unistore` binary.
 *
 * `deno compile` needs Deno's `denort` runtime of exactly this Deno version
 * (specs/deno-platform.md §9). It is taken from `DENORT_BIN`, or from Deno's
 * cache (`$DENO_DIR/dl/release/v<version>/denort-<target>.zip`); without
 * either, deno would try to download it. On an air-gapped machine that hangs
 * or fails obscurely, so this script checks first and says what to do.
 *
 * usage: deno task compile [--allow-download]
 *
 * @module
 */

import { UNISTORE_V8_FLAGS } from "./v8_flags.ts";

const version = Deno.version.deno;
const target = Deno.build.target;

const allowDownload = Deno.args.includes("--allow-download");

async function denoDir(): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
    .output();
  return JSON.parse(new TextDecoder().decode(out.stdout)).denoDir;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

const denortBin = Deno.env.get("DENORT_BIN");
const cachedZip = `${await denoDir()}/dl/release/v${version}/denort-${target}.zip`;
if (denortBin && !(await exists(denortBin))) {
  console.error(`compile: DENORT_BIN=${denortBin} does not exist`);
  Deno.exit(1);
}
if (!denortBin && !(await exists(cachedZip)) && !allowDownload) {
  console.error(
    `compile: deno compile needs the denort runtime of Deno ${version} for ${target}, and this ` +
      `machine has none.\n` +
      `  Either set DENORT_BIN=/path/to/denort (unzipped from denort-${target}.zip of v${version}),\n` +
      `  or place that zip at ${cachedZip},\n` +
      `  or, on a machine with network access, run: deno task compile --allow-download`,
  );
  Deno.exit(1);
}

await Deno.mkdir("dist", { recursive: true });
// The binary runs as root against host stores: it needs FFI (libc), files,
// subprocesses (ostree, skopeo, podman) and the environment.
const args = [
  "compile",
  "--frozen",
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-sys",
  `--v8-flags=${UNISTORE_V8_FLAGS}`,
  // Workers are not bundled unless named: the import hashes layers on the first, a deep fsck
  // re-hashes composefs objects on the second.
  "--include",
  "lib/pipeline/layer_digest_worker.ts",
  "--include",
  "lib/stores/composefs/fsck_worker.ts",
  "--output",
  "dist/unistore",
  "main.ts",
];
const status = await new Deno.Command(Deno.execPath(), { args }).spawn().status;
Deno.exit(status.code);
