/**
 * `set-unified full`: every image a boot entry reaches (booted, staged,
 * rollback) present in containers-storage, composefs and, on ostree hosts,
 * sharing its blocks with the deployed ostree commit; then the unified flag,
 * last, only when all of it succeeded (spec bootc-unified-storage.md §2, §4;
 * DESIGN §2, §4).
 *
 * Per image the bytes move containers-storage → composefs → ostree:
 * - in neither store: `podman pull` into bootc's containers-storage (the
 *   booted image by its reference, others by digest), then imported into
 *   composefs by reflink;
 * - in composefs only: rebuilt in containers-storage from composefs by reflink
 *   (same layer digests and image id, no network);
 * - the ostree deployment's objects, written before unification, are shared
 *   with the composefs objects by FIDEDUPERANGE (the kernel checks equality).
 *
 * A second run finds everything in place and changes nothing.
 *
 * @module
 */

import { HostFileError } from "../host/errors.ts";
import {
  readBootcJson,
  readOstreeComposefsBound,
  writeBootcJson,
  writeOstreeComposefsBound,
} from "../host/flags.ts";
import { detectHostKind, type HostKind } from "../host/kind.ts";
import type { HostRoot } from "../host/root.ts";
import { type BootcBootEntry, readHostStatus } from "../host/status.ts";
import type { UnifiedMode } from "../host/unified_mode.ts";
import { SysError } from "../../ffi/errno.ts";
import { close, openDir } from "../../ffi/fs.ts";
import { ReflinkUnsupportedError } from "../reflink/errors.ts";
import type { CopyPolicy } from "../reflink/place.ts";
import { probeReflink, type ReflinkProbe } from "../reflink/probe.ts";
import { bootcTagFor, tagImage } from "../stores/composefs/oci_image.ts";
import { ComposefsRepo } from "../stores/composefs/repository.ts";
import { CStorage } from "../stores/cstorage/mod.ts";
import { OstreeRepo } from "../stores/ostree/repo.ts";
import { exportComposefsImageToCStorage } from "./composefs_to_cstorage.ts";
import { importCStorageImageToComposefs } from "./cstorage_to_composefs.ts";
import { faultPoint } from "../fault/fault_point.ts";
import { PipelineError } from "./errors.ts";
import { composefsImages, ostreeImages } from "./inventory.ts";
import {
  type OstreeDedupeStats,
  OstreeFileIndex,
  shareOstreeWithComposefs,
} from "./ostree_dedupe.ts";
import { NO_PROGRESS, type Progress } from "./progress.ts";
import { podmanPull } from "./podman_pull.ts";

/** Which boot entry an image belongs to. */
export type Slot = "booted" | "staged" | "rollback";

/** What was done (or would be, with `dryRun`) for one image. */
export interface UnifiedImage {
  slot: Slot;
  /** The image reference of the deployment (`quay.io/x/os:42`). */
  image: string;
  manifestDigest: string;
  configDigest: string | null;
  /** Steps taken, in order: `pulled`, `imported-to-composefs`, `exported-to-containers-storage`, `deduped-ostree`. */
  actions: string[];
  /** Set when the image could not be brought into every store. */
  problem?: string;
  dedupe?: OstreeDedupeStats;
}

/** The outcome of {@linkcode unifyHost}. */
export interface UnifyReport {
  kind: HostKind;
  mode: UnifiedMode;
  probe: ReflinkProbe;
  images: UnifiedImage[];
  /** Nothing needed doing: the host was already unified in this mode. */
  alreadyUnified: boolean;
  /** The flag (bootc.json, and the ostree binding) was written by this run. */
  flagWritten: boolean;
  ok: boolean;
}

/** How {@linkcode unifyHost} runs. */
export interface UnifyOptions {
  mode: Exclude<UnifiedMode, "disabled">;
  /** Plan only: nothing is pulled, written or flagged. */
  dryRun?: boolean;
  /** Never pull; images must come from the stores. */
  noPull?: boolean;
  progress?: Progress;
}

/** The copy policy of a unified mode. */
export function policyOf(mode: Exclude<UnifiedMode, "disabled">): CopyPolicy {
  return mode === "enabled" ? "reflink-required" : "reflink-or-copy";
}

function pullReference(entry: BootcBootEntry, slot: Slot): string {
  const img = entry.image!;
  const name = img.image.image;
  const transport = img.image.transport === "registry" ? "docker://" : `${img.image.transport}:`;
  // Other slots may have moved tags since: pull exactly the deployed manifest.
  if (slot === "booted") return `${transport}${name}`;
  return `${transport}${name.replace(/:[^:/@]+$/, "")}@${img.imageDigest}`;
}

/**
 * Brings the host's live images into every store and writes the unified flag.
 *
 * @throws {ReflinkUnsupportedError} in mode `enabled` without reflinks, before any change.
 */
export async function unifyHost(root: HostRoot, opts: UnifyOptions): Promise<UnifyReport> {
  const progress = opts.progress ?? NO_PROGRESS;
  const kind = detectHostKind(root);
  if (kind.kind === "none") {
    throw new HostFileError(root.dir, `not a bootc host: ${kind.reason}`);
  }
  const sysroot = openDir(root.sysroot);
  let probe: ReflinkProbe;
  try {
    probe = probeReflink(sysroot);
  } finally {
    close(sysroot);
  }
  if (opts.mode === "enabled" && !probe.supported) {
    throw new ReflinkUnsupportedError(
      probe.code ?? "EOPNOTSUPP",
      `${root.sysroot} (${probe.filesystem})`,
      `${probe.reason}; mode "enabled" needs reflinks, "enabled-with-copy" copies instead`,
    );
  }
  const policy = policyOf(opts.mode);
  const { host } = await readHostStatus(root);
  const slots: [Slot, BootcBootEntry | null][] = [
    ["booted", host.status.booted],
    ["staged", host.status.staged],
    ["rollback", host.status.rollback],
  ];
  if (!host.status.booted?.image) {
    throw new HostFileError(
      root.procCmdline,
      "no booted deployment with an image: unified storage starts from the booted image",
    );
  }

  const report: UnifyReport = {
    kind: kind.kind,
    mode: opts.mode,
    probe,
    images: [],
    alreadyUnified: false,
    flagWritten: false,
    ok: true,
  };
  const current = readBootcJson(root);
  const cstoragePath = root.bootcContainersStorage();
  if (!opts.dryRun) await Deno.mkdir(cstoragePath, { recursive: true, mode: 0o700 });
  using cfs = opts.dryRun && !root.isDir("sysroot/composefs")
    ? null
    : await ComposefsRepo.ensure(root.composefsRepo);
  const ostree = kind.kind === "ostree" ? OstreeRepo.open(root.ostreeRepo) : null;
  try {
    const ostreeConfig = new Map(
      (ostree ? ostreeImages(ostree) : []).map((i) => [i.commit, i.configDigest]),
    );
    for (const [slot, entry] of slots) {
      if (!entry?.image) continue;
      const item: UnifiedImage = {
        slot,
        image: entry.image.image.image,
        manifestDigest: entry.image.imageDigest,
        configDigest: entry.ostree ? ostreeConfig.get(entry.ostree.checksum) ?? null : null,
        actions: [],
      };
      report.images.push(item);
      progress.begin("unify", `Unifying the ${slot} image`, item.image, { steps: 3 });
      try {
        await unifyImage(item, entry, slot, {
          reflinks: probe.supported,
          flaggedMode: current?.unified === opts.mode,
          cfs,
          ostree,
          cstoragePath,
          root,
          policy,
          dryRun: opts.dryRun ?? false,
          noPull: opts.noPull ?? false,
          progress,
        });
      } catch (e) {
        item.problem = (e as Error).message;
        report.ok = false;
      }
      faultPoint("unify.image-done");
      progress.end();
    }
  } finally {
    ostree?.close();
  }

  const nothingDone = report.images.every((i) =>
    i.actions.length === 0 || i.actions.every((a) => a === "deduped-ostree:0")
  );
  report.alreadyUnified = report.ok && current?.unified === opts.mode && nothingDone &&
    (kind.kind !== "ostree" || readOstreeComposefsBound(root));
  if (report.ok && !opts.dryRun && !report.alreadyUnified) {
    // Crash order: the binding first, bootc.json last (spec §4: participation implies binding).
    if (kind.kind === "ostree" && !readOstreeComposefsBound(root)) {
      await writeOstreeComposefsBound(root);
    }
    if (current?.unified !== opts.mode) {
      writeBootcJson(root, opts.mode);
      report.flagWritten = true;
    }
  }
  return report;
}

interface UnifyContext {
  reflinks: boolean;
  /** bootc.json already says this run's mode. */
  flaggedMode: boolean;
  cfs: ComposefsRepo | null;
  ostree: OstreeRepo | null;
  cstoragePath: string;
  root: HostRoot;
  policy: CopyPolicy;
  dryRun: boolean;
  noPull: boolean;
  progress: Progress;
}

/**
 * Runs one transfer, naming the stores it moves bytes between when a system call fails: an
 * ENOSPC or EIO from deep in a copy names only an fd ("write "fd 33": ENOSPC").
 */
async function transfer<T>(between: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof SysError) throw new PipelineError(between, e.message, { cause: e });
    throw e;
  }
}

async function unifyImage(
  item: UnifiedImage,
  entry: BootcBootEntry,
  slot: Slot,
  c: UnifyContext,
): Promise<void> {
  const inComposefs = () =>
    c.cfs
      ? composefsImages(c.cfs).find((i) =>
        i.manifestDigest === item.manifestDigest ||
        (item.configDigest !== null && i.configDigest === item.configDigest)
      ) ?? null
      : null;
  const storeExists = await Deno.stat(`${c.cstoragePath}/overlay-images`).then(
    () => true,
    () => false,
  );
  const cstore = c.dryRun && !storeExists
    ? null
    : await CStorage.open(c.cstoragePath, { create: !c.dryRun });
  try {
    const inCStorage = async () => {
      if (!cstore) return null;
      const all = await cstore.listImages();
      return all.find((i) =>
        (item.configDigest !== null && `sha256:${i.id}` === item.configDigest) ||
        i.digest === item.manifestDigest
      ) ?? null;
    };

    let hub = inComposefs();
    let cs = await inCStorage();
    // A pull killed between podman's image record and its names left a nameless image, which
    // `podman image prune` removes: bring it in again (podman, or the export, adds the name).
    if (cs?.names.length === 0) cs = null;
    // Listed is not usable: its layer chain (layers.json) is read too, so a broken layer store
    // is reported here, naming the file, rather than passed as "in every store".
    if (cs && cstore) await cstore.imageLayers(cs);
    if (!hub && !cs) {
      if (c.noPull) throw new Error(`not in composefs nor containers-storage, and --no-pull`);
      const ref = pullReference(entry, slot);
      item.actions.push(`pull ${ref}`);
      if (!c.dryRun) {
        await podmanPull(c.cstoragePath, ref);
        cs = await inCStorage();
        if (!cs) throw new Error(`podman pulled ${ref} but containers-storage does not list it`);
      }
    }
    c.progress.advance({ steps: 1 });
    // Set when the import also shared the ostree deployment's blocks, for every layer.
    let sharedOnImport: OstreeDedupeStats | undefined;
    if (!hub && (cs || c.dryRun)) {
      item.actions.push("containers-storage -> composefs");
      if (!c.dryRun && cs && c.cfs && cstore) {
        const [cfs, id] = [c.cfs, cs.id];
        // The deployment's objects are deduplicated in the same pass, while each file's pages
        // are cached, instead of in a second walk over both stores.
        const shareWithOstree = c.ostree && entry.ostree && c.reflinks
          ? { repo: c.ostree, files: new OstreeFileIndex(c.ostree, entry.ostree.checksum) }
          : undefined;
        const r = await transfer(
          `${cstore.path} -> ${cfs.path}`,
          () =>
            importCStorageImageToComposefs(cstore, cfs, `sha256:${id}`, {
              policy: c.policy,
              tagAs: item.image,
              shareWithOstree,
            }),
        );
        if (r.layers.every((l) => !l.skipped)) sharedOnImport = r.ostreeShared;
        hub = inComposefs();
      }
    }
    if (hub) {
      item.configDigest ??= hub.configDigest;
      // A run killed between an import's two tags left only the name: add bootc's GC root.
      const gcRoot = bootcTagFor(hub.manifestDigest);
      if (!c.dryRun && c.cfs && !hub.tags.includes(gcRoot)) {
        tagImage(c.cfs, hub.manifestDigest, gcRoot);
      }
    }
    c.progress.advance({ steps: 1 });
    if (!cs) {
      if (!hub && !c.dryRun) throw new Error("not in composefs: nothing to rebuild from");
      item.actions.push("composefs -> containers-storage");
      if (!c.dryRun && hub && c.cfs && cstore) {
        const [cfs, manifestDigest] = [c.cfs, hub.manifestDigest];
        await transfer(
          `${cfs.path} -> ${cstore.path}`,
          () =>
            exportComposefsImageToCStorage(cfs, cstore, manifestDigest, {
              policy: c.policy,
              names: [item.image],
            }),
        );
      }
    }
    c.progress.advance({ steps: 1 });
    // Without reflinks the kernel cannot share blocks either (FIDEDUPERANGE is the same
    // machinery): the ostree deployment keeps its own copy.
    // A host flagged in this mode was unified whole by an earlier run (the flag is written
    // last): an image that was in both stores before this run had its deployment's blocks
    // shared then, so walking both stores again would find nothing (and is most of a no-op
    // run's time). `fsck images --deep` checks the sharing.
    const sharedBefore = c.flaggedMode && item.actions.length === 0;
    if (c.ostree && entry.ostree && hub && c.cfs && c.reflinks && !sharedBefore) {
      if (c.dryRun) {
        item.actions.push("share ostree deployment blocks with composefs");
      } else {
        item.dedupe = sharedOnImport ?? await shareOstreeWithComposefs(
          c.cfs,
          c.ostree,
          hub.manifestDigest,
          entry.ostree.checksum,
        );
        item.actions.push(`deduped-ostree:${item.dedupe.deduped}`);
      }
    }
  } finally {
    cstore?.close();
  }
}
