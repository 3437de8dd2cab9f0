/**
 * The verdict on a host after a crash, a failure or a race: every store judged by its own
 * checker, the flags read back.
 *
 * | store | judge |
 * |---|---|
 * | ostree repo | the real `ostree fsck` (every object re-hashed, every commit's tree present) |
 * | composefs repo | `fsckRepo(deep)` (lib/stores/composefs/fsck.ts): objects re-hashed, every stream walked, layers reassembled against their diff_ids |
 * | containers-storage | `checkImage(deep)` on every image (lib/stores/cstorage/check.ts): chains complete, big data, every layer rebuilt from tar-split + diff/ against its DiffID |
 *
 * `podman images` and `skopeo copy containers-storage:… oci:…` (which re-verifies every layer
 * against its diff_id) are the outside judges of containers-storage, run where a test asks for
 * them ({@linkcode judgeWithPodman}).
 *
 * @module
 */

import { readBootcJson, readOstreeComposefsBound } from "../../lib/host/flags.ts";
import type { BootcRepoMeta } from "../../lib/host/flags.ts";
import { HostRoot } from "../../lib/host/root.ts";
import { runrootFor } from "../../lib/pipeline/podman_pull.ts";
import { fsckRepo } from "../../lib/stores/composefs/fsck.ts";
import { ComposefsRepo } from "../../lib/stores/composefs/repository.ts";
import { CStorage } from "../../lib/stores/cstorage/mod.ts";
import { run } from "../harness/run.ts";
import type { CrashHost } from "./crash_host.ts";

/** What {@linkcode judgeHost} found. */
export interface HostVerdict {
  /** Every problem, each naming its store; empty when all stores passed. */
  problems: string[];
  bootcJson: BootcRepoMeta | null;
  ostreeBound: boolean;
  /** containers-storage images (ids) and their names. */
  images: { id: string; names: string[] }[];
  /** Layers still flagged incomplete (a crash's leftover; c/storage deletes them on load). */
  incompleteLayers: string[];
  /**
   * The entries of `problems` about images without names: what podman leaves when it is killed
   * between creating an image record and writing its config and names (c/image names an image
   * last); `podman image prune` removes such an image, and a pull completes it.
   */
  namelessImageProblems: string[];
  /** composefs tags (encoded ref names under streams/refs/oci). */
  composefsTags: string[];
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** Judges every store of `host` (see the module doc). Never throws for a broken store. */
export async function judgeHost(host: CrashHost): Promise<HostVerdict> {
  const problems: string[] = [];
  const verdict: HostVerdict = {
    problems,
    bootcJson: null,
    ostreeBound: false,
    images: [],
    incompleteLayers: [],
    namelessImageProblems: [],
    composefsTags: [],
  };

  if (await exists(host.repo)) {
    const fsck = await run([host.bins.ostree, "fsck", `--repo=${host.repo}`]);
    if (!fsck.success) {
      problems.push(`ostree fsck ${host.repo} (exit ${fsck.code}): ${fsck.stderr}${fsck.stdout}`);
    }
    const sysroot = `${host.root}/sysroot`;
    const status = await run([host.bins.ostree, "admin", "status", `--sysroot=${sysroot}`]);
    if (!status.success) problems.push(`ostree admin status ${sysroot}: ${status.stderr}`);
  }

  if (await exists(`${host.composefs}/meta.json`)) {
    try {
      using repo = await ComposefsRepo.open(host.composefs, { readOnly: true });
      const r = await fsckRepo(repo, { deep: true });
      for (const f of r.findings) problems.push(`composefs ${f.kind} ${f.path}: ${f.detail}`);
      verdict.composefsTags = repo.listRefs("streams", "oci").map(([name]) => name);
    } catch (e) {
      problems.push(`composefs ${host.composefs}: ${(e as Error).message}`);
    }
  } else if (await exists(`${host.composefs}/objects`)) {
    problems.push(`composefs ${host.composefs}: objects/ without meta.json`);
  }

  if (await exists(`${host.store}/overlay-images`)) {
    try {
      using store = await CStorage.open(host.store, { readOnly: true });
      for (const img of await store.listImages()) {
        verdict.images.push({ id: img.id, names: img.names });
        const r = await store.checkImage(img, { deep: true });
        for (const p of r.problems) {
          const line = `containers-storage ${p.object}${p.path ? ` ${p.path}` : ""}: ${p.message}`;
          problems.push(line);
          if (img.names.length === 0) verdict.namelessImageProblems.push(line);
        }
      }
      verdict.incompleteLayers = (await store.layers()).filter((l) => l.incomplete).map((l) =>
        l.id
      );
    } catch (e) {
      problems.push(`containers-storage ${host.store}: ${(e as Error).message}`);
    }
  }

  const root = new HostRoot(host.root);
  try {
    verdict.bootcJson = readBootcJson(root);
  } catch (e) {
    problems.push(`bootc.json: ${(e as Error).message}`);
  }
  try {
    verdict.ostreeBound = readOstreeComposefsBound(root);
  } catch (e) {
    problems.push(`ostree repo config: ${(e as Error).message}`);
  }
  return verdict;
}

/**
 * The outside judges of containers-storage: `podman images` must list every image in `ids`, and
 * `skopeo copy` of each one (by id) into an OCI layout must succeed: skopeo re-hashes every
 * layer it reads against the config's diff_ids. Returns the problems found.
 */
export async function judgeWithPodman(host: CrashHost, ids: readonly string[]): Promise<string[]> {
  const problems: string[] = [];
  const runroot = await runrootFor(host.store);
  const store = `[overlay@${host.store}+${runroot}]`;
  try {
    const images = await run([
      host.bins.podman,
      "--root",
      host.store,
      "--runroot",
      runroot,
      "--storage-driver",
      "overlay",
      "images",
      "--no-trunc",
      "--format",
      "{{.ID}}",
    ], { env: { TMPDIR: runroot } });
    if (!images.success) problems.push(`podman images: ${images.stderr}`);
    for (const id of ids) {
      if (!images.stdout.includes(id)) problems.push(`podman images does not list ${id}`);
    }
    const out = await Deno.makeTempDir({ prefix: "unistore-skopeo-" });
    try {
      for (const id of ids) {
        const copy = await run([
          host.bins.skopeo,
          "copy",
          "--quiet",
          `containers-storage:${store}${id}`,
          `oci:${out}:${id.slice(0, 12)}`,
        ], { env: { TMPDIR: runroot } });
        if (!copy.success) problems.push(`skopeo copy of image ${id}: ${copy.stderr}`);
      }
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  } finally {
    await host.cleanupAfterKill();
  }
  return problems;
}

/** The deployments `ostree admin status` lists, default first, as `<stateroot> <commit>.<serial>`. */
export async function ostreeDeployments(host: CrashHost): Promise<string[]> {
  const r = await run([host.bins.ostree, "admin", "status", `--sysroot=${host.root}/sysroot`]);
  if (!r.success) throw new Error(`ostree admin status: ${r.stderr}`);
  return [...r.stdout.matchAll(/^[* ] (\S+) ([0-9a-f]{64}\.\d+)/gm)].map((m) => `${m[1]} ${m[2]}`);
}

/** Names a killed run can leave behind, by kind (none of them makes a store invalid). */
const LEFTOVER_KINDS: [string, RegExp][] = [
  ["replace temp file (.unistore-tmp-*)", /^\.unistore-tmp-/],
  ["ostree ref temp (.tmp-ref-*)", /^\.tmp-ref-/],
  ["composefs symlink temp (.symlink-*)", /^\.symlink-/],
  ["ostree staging dir (tmp/staging-*)", /^staging-(?!.*-lock$)/],
  ["upgrade pull dir (tmp/unistore-pull-*)", /^unistore-pull-/],
];

/**
 * What killed runs left behind in the stores' own directories (not in objects or layer
 * contents): counts by kind. Reported, not judged: each store ignores or expires them.
 */
export function leftovers(host: CrashHost): Record<string, number> {
  const found: Record<string, number> = {};
  const skip = new Set(["objects", "diff", "deploy", "boot"]);
  const walk = (dir: string, depth: number) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      return;
    }
    for (const e of entries) {
      const kind = LEFTOVER_KINDS.find(([, re]) => re.test(e.name));
      if (kind) found[kind[0]] = (found[kind[0]] ?? 0) + 1;
      else if (e.isDirectory && !skip.has(e.name) && depth < 6) walk(`${dir}/${e.name}`, depth + 1);
    }
  };
  walk(`${host.root}/sysroot`, 0);
  return found;
}
