/**
 * Every image on the host, across the three stores, by its identity: the OCI
 * config digest (spec bootc-unified-storage.md §5). Which stores hold it,
 * under which names, and whether a boot entry reaches it (live).
 *
 * @module
 */

import type { HostRoot } from "../host/root.ts";
import { readHostStatus } from "../host/status.ts";
import { ComposefsRepo } from "../stores/composefs/repository.ts";
import { RepoNotFoundError } from "../stores/composefs/errors.ts";
import { CStorage } from "../stores/cstorage/mod.ts";
import { OstreeRepo } from "../stores/ostree/repo.ts";
import { composefsImages, ostreeImages } from "./inventory.ts";

/** One image, as `image list` shows it. */
export interface HostImage {
  /** `sha256:<hex>` of the config: the image id in containers-storage. */
  configDigest: string;
  /** Manifest digests it is stored under (several after a recompression). */
  manifestDigests: string[];
  /** composefs tags, ostree image references and containers-storage names. */
  names: string[];
  inComposefs: boolean;
  inOstree: boolean;
  inContainersStorage: boolean;
  /** A boot entry (booted, staged, rollback or other deployment) reaches it. */
  live: boolean;
}

function entry(map: Map<string, HostImage>, configDigest: string): HostImage {
  let img = map.get(configDigest);
  if (!img) {
    img = {
      configDigest,
      manifestDigests: [],
      names: [],
      inComposefs: false,
      inOstree: false,
      inContainersStorage: false,
      live: false,
    };
    map.set(configDigest, img);
  }
  return img;
}

function addUnique<T>(list: T[], item: T | null | undefined) {
  if (item !== null && item !== undefined && !list.includes(item)) list.push(item);
}

/**
 * Lists the host's images across composefs, ostree and containers-storage. Stores that do not
 * exist are skipped; an image of a store that records no config digest is listed by manifest.
 *
 * @example
 * ```ts ignore
 * for (const img of await listHostImages(new HostRoot("/"))) console.log(img.configDigest, img.live);
 * ```
 */
export async function listHostImages(root: HostRoot): Promise<HostImage[]> {
  const byConfig = new Map<string, HostImage>();
  const manifestToConfig = new Map<string, string>();

  let cfs: ComposefsRepo | null = null;
  try {
    cfs = await ComposefsRepo.open(root.composefsRepo, { readOnly: true });
  } catch (e) {
    if (!(e instanceof RepoNotFoundError)) throw e;
  }
  if (cfs) {
    try {
      for (const img of composefsImages(cfs)) {
        const e = entry(byConfig, img.configDigest || img.manifestDigest);
        e.inComposefs = true;
        addUnique(e.manifestDigests, img.manifestDigest);
        img.tags.forEach((t) => addUnique(e.names, t));
        manifestToConfig.set(img.manifestDigest, e.configDigest);
      }
    } finally {
      cfs.close();
    }
  }

  if (root.isDir("sysroot/ostree/repo")) {
    using repo = OstreeRepo.open(root.ostreeRepo);
    for (const img of ostreeImages(repo)) {
      const key = img.configDigest ??
        (img.manifestDigest && manifestToConfig.get(img.manifestDigest)) ??
        img.manifestDigest ?? img.commit;
      const e = entry(byConfig, key);
      e.inOstree = true;
      addUnique(e.manifestDigests, img.manifestDigest);
      addUnique(e.names, img.imageReference);
      if (img.manifestDigest) manifestToConfig.set(img.manifestDigest, e.configDigest);
    }
  }

  const hasStore = root.isDir("sysroot/composefs/bootc/storage/overlay-images") ||
    root.isDir("sysroot/ostree/bootc/storage/overlay-images");
  if (hasStore) {
    const store = await CStorage.open(root.bootcContainersStorage(), { readOnly: true });
    try {
      for (const img of await store.listImages()) {
        // The layer chain too (layers.json): a listed image whose layers cannot be read is
        // not in the store in any usable sense, and the error names the broken file.
        await store.imageLayers(img);
        const e = entry(byConfig, `sha256:${img.id}`);
        e.inContainersStorage = true;
        addUnique(e.manifestDigests, img.digest);
        img.names.forEach((n) => addUnique(e.names, n));
        if (img.digest) manifestToConfig.set(img.digest, e.configDigest);
      }
    } finally {
      store.close();
    }
  }

  const { host } = await readHostStatus(root);
  const s = host.status;
  const entries = [s.booted, s.staged, s.rollback, ...(s.otherDeployments ?? [])];
  for (const be of entries) {
    const digest = be?.image?.imageDigest;
    if (!digest) continue;
    const config = manifestToConfig.get(digest) ?? digest;
    const img = byConfig.get(config);
    if (img) img.live = true;
  }
  return [...byConfig.values()].sort((a, b) => (a.configDigest < b.configDigest ? -1 : 1));
}
