/**
 * What a directory holds, as a sorted list of relative paths: tests compare two listings to
 * tell that nothing was written (or removed) below it.
 *
 * @module
 */

/**
 * Every path below `dir` (recursive), relative, sorted; symlinks are listed, not followed.
 *
 * @example
 * ```ts ignore
 * const before = await listTree(repo);
 * // … an operation that must not write …
 * assert.deepEqual(await listTree(repo), before);
 * ```
 */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(rel ? `${dir}/${rel}` : dir)) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      out.push(p);
      if (e.isDirectory) await walk(p);
    }
  };
  await walk("");
  return out.sort();
}
