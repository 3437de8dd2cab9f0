/**
 * The process the benchmark times: clone SRC's contents into the new
 * directory DST with unistore's engine, as `cp -a --reflink=always SRC DST`
 * does. Prints the in-process time and counts as one JSON line.
 *
 * usage: deno run -A bench/clone_tree.ts SRC DST
 *
 * @module
 */

import { AT, close, mkdirAt, openDir } from "../ffi/fs.ts";
import { cloneTree } from "../lib/reflink/tree.ts";

const [src, dst] = Deno.args;
if (!src || !dst) {
  console.error("usage: clone_tree.ts SRC DST");
  Deno.exit(2);
}
const start = performance.now();
mkdirAt(AT.FDCWD, dst, 0o755);
const s = openDir(src), d = openDir(dst);
const stats = cloneTree(s, d, { policy: "reflink-required" });
close(s);
close(d);
console.log(JSON.stringify({ inProcessMs: performance.now() - start, ...stats }));
