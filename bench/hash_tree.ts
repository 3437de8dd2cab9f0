/**
 * The hashing half of the benchmark's floor, as its own process: every regular file under the
 * given directories read once, each chunk fed to a sha256 and a sha512 (node:crypto, i.e.
 * OpenSSL, the implementation unistore's digests use), no symlinks followed. Prints one JSON
 * line `{"files", "bytes", "inProcessMs"}`.
 *
 * With `--only=sha512`, one digest only: the one composefs names objects by in bootc's
 * repositories (their fs-verity digest hashes each 4 KiB block and a little more, so a plain
 * pass is a lower bound of that work).
 *
 * usage: deno run -A bench/hash_tree.ts [--only=sha256|sha512] DIR...
 *
 * @module
 */

import { createHash } from "node:crypto";

/** Read size: large enough that per-call overhead vanishes, as unistore's 1 MiB reads. */
const CHUNK = 1 << 20;

const only = Deno.args.find((a) => a.startsWith("--only="))?.slice("--only=".length);
const dirs = Deno.args.filter((a) => !a.startsWith("--only="));
if (dirs.length === 0 || (only !== undefined && only !== "sha256" && only !== "sha512")) {
  console.error("usage: hash_tree.ts [--only=sha256|sha512] DIR...");
  Deno.exit(2);
}
const algorithms = only ? [only] : ["sha256", "sha512"];
const start = performance.now();
const buf = new Uint8Array(CHUNK);
let files = 0, bytes = 0;

function hashFile(path: string): void {
  const f = Deno.openSync(path, { read: true });
  try {
    const hashes = algorithms.map((a) => createHash(a));
    for (;;) {
      const n = f.readSync(buf);
      if (n === null || n === 0) break;
      const part = buf.subarray(0, n);
      for (const h of hashes) h.update(part);
      bytes += n;
    }
    for (const h of hashes) h.digest();
    files++;
  } finally {
    f.close();
  }
}

function walk(dir: string): void {
  for (const e of Deno.readDirSync(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) walk(path);
    else if (e.isFile) hashFile(path);
  }
}

for (const dir of dirs) walk(dir);
console.log(JSON.stringify({ files, bytes, inProcessMs: performance.now() - start }));
