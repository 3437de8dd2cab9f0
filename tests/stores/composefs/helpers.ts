/** Shared helpers of the composefs tests: temporary repositories that are always removed. */

import type { HashAlgorithm } from "../../../lib/digest/hash.ts";
import { ComposefsRepo, type CreateRepoOptions } from "../../../lib/stores/composefs/repository.ts";

/** Runs `fn` with a fresh temp directory, removed afterwards. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "unistore-cfs-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs `fn` with a new repository in a temp dir (closed and removed afterwards). */
export function withRepo<T>(
  algorithm: HashAlgorithm,
  fn: (repo: ComposefsRepo, dir: string) => Promise<T>,
  opts: CreateRepoOptions = {},
): Promise<T> {
  return withTempDir(async (dir) => {
    const repo = await ComposefsRepo.create(`${dir}/repo`, { algorithm, ...opts });
    try {
      return await fn(repo, dir);
    } finally {
      repo.close();
    }
  });
}
