/**
 * The hashing half of the benchmark's floor, as its own process: every regular file under the
 * given directories read once, each chunk fed to a sha256 and a sha512 (node:crypto, i.e.
 * OpenSSL, the implementation unistore's digests use), no symlinks followed. Prints one JSON
 * line `{"files", "bytes", "inProcessMs"}`.
 *
 * usage: deno run -A bench/hash_tree.ts DIR...
 *
 * @module
 */

import { createHash } from "node:crypto";

/** Read size: large enough that per-call overhead vanishes, as unistore's 1 MiB reads. */
const CHUNK = 1 << 20;

const start = performance.now();
const buf = new Uint8Array(CHUNK);
let files = 0, bytes = 0;

function hashFile(path: string): void {
  const f = Deno.openSync(path, { read: true });
  try {
    const a = createHash("sha256"), b = createHash("sha512");
    for (;;) {
      const n = f.readSync(buf);
      if (n === null || n === 0) break;
      const part = buf.subarray(0, n);
      a.update(part);
      b.update(part);
      bytes += n;
    }
    a.digest();
    b.digest();
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

if (Deno.args.length === 0) {
  console.error("usage: hash_tree.ts DIR...");
  Deno.exit(2);
}
for (const dir of Deno.args) walk(dir);
console.log(JSON.stringify({ files, bytes, inProcessMs: performance.now() - start }));
