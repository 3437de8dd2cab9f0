// Host roots built in temp dirs (the `--root DIR` model of DESIGN §5): a map of paths to file
// contents, symlinks and dirs, written under a fresh dir that is always removed afterwards.

import { HostRoot } from "../../lib/host/root.ts";
import { run } from "../harness/run.ts";

/** What to create at a path below the root. */
export type TreeNode = string | { symlink: string } | { dir: true };

/** Creates every node of `tree` below `dir` (parents as needed). */
export async function writeTree(dir: string, tree: Record<string, TreeNode>): Promise<void> {
  for (const [rel, node] of Object.entries(tree)) {
    const path = `${dir}/${rel}`;
    const parent = path.slice(0, path.lastIndexOf("/"));
    await Deno.mkdir(parent, { recursive: true });
    if (typeof node === "string") await Deno.writeTextFile(path, node);
    else if ("symlink" in node) await Deno.symlink(node.symlink, path);
    else await Deno.mkdir(path, { recursive: true });
  }
}

/**
 * Removes a host tree. ostree marks deployment checkouts immutable (chattr +i), so that bit is
 * cleared first where ostree put one.
 */
export async function removeTree(dir: string): Promise<void> {
  const deploy = `${dir}/sysroot/ostree/deploy`;
  try {
    for await (const os of Deno.readDir(deploy)) {
      const deployments = `${deploy}/${os.name}/deploy`;
      try {
        for await (const d of Deno.readDir(deployments)) {
          if (d.isDirectory) await run(["chattr", "-i", `${deployments}/${d.name}`]);
        }
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.remove(dir, { recursive: true });
}

/** Runs `fn` on a fresh host root holding `tree`; the dir is removed afterwards, always. */
export async function withHostTree<T>(
  tree: Record<string, TreeNode>,
  fn: (root: HostRoot, dir: string) => Promise<T> | T,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "unistore-host-" });
  try {
    await writeTree(dir, tree);
    return await fn(new HostRoot(dir), dir);
  } finally {
    await removeTree(dir);
  }
}

/** A fake fs-verity digest: 128 hex digits made of `c` (sha512-sized, as bootc's ids). */
export function fakeDigest(c: string): string {
  return c.repeat(128).slice(0, 128);
}
