/**
 * composefs → ostree: the ostree-ext image commit of an image stored in composefs, synthesized
 * by reflink (DESIGN §4; bootc PR #2205 stage 3, PR #2236 `composefs_import.rs`).
 *
 * 1. The image is read from composefs (manifest, config, layer splitstreams: metadata only).
 * 2. When the ostree repository already has a commit synthesized from this manifest digest,
 *    nothing is written (at most the image's ref is pointed at that commit), whatever transform
 *    made it: bootc keys synthesis by manifest digest. A commit of the same manifest that
 *    ostree-ext pulled (not synthesized) is replaced by a synthesized one, as bootc re-stages.
 * 3. Reflinks are probed from the composefs repository into the ostree repository; under
 *    `reflink-required` a filesystem without them fails here, before anything is written.
 * 4. The layers are merged into one tree ({@linkcode MergedTree}); what ostree cannot store
 *    (non-UTF-8 names or symlink targets, fifos, devices) is refused naming the path, or with
 *    `onUnsupported: "skip"` left out and listed, never dropped silently
 *    (specs/ostree-repo.md "Limits").
 * 5. The tree is written as one commit with `writeImageCommit`: each content object is a clone
 *    of its composefs object, its ostree checksum computed over the cloned bytes in the same
 *    pass (the reflink engine's sink), so each byte is read once. Files that would be the same
 *    ostree object (hardlinks, and equal content with equal owner, mode and xattrs) are cloned
 *    once. Metadata: `ostree.manifest-digest`, `ostree.manifest`,
 *    `ostree.container.image-config`, `ostree-ext.composefs-synthesized=true`; ref
 *    `ostree/container/image/<escaped image reference>`; objects, syncfs, then the ref.
 *
 * The layers' diff_ids are not re-hashed (that would read every object a second time): the
 * composefs objects are named by their fs-verity digest (checked by the kernel in secure
 * repositories), and every ostree object is named from the bytes actually placed.
 *
 * @module
 */

import { ReflinkUnsupportedError } from "../reflink/errors.ts";
import type { CopyPolicy } from "../reflink/place.ts";
import { probeReflink, type ReflinkProbe } from "../reflink/probe.ts";
import { HostRoot } from "../host/root.ts";
import {
  BOOTC_TAG_PREFIX,
  listTags,
  readStoredImage,
  type StoredImage,
} from "../stores/composefs/oci_image.ts";
import { ComposefsRepo } from "../stores/composefs/repository.ts";
import {
  BOOTABLE_IMAGE_TRANSFORM,
  transformKeepsParts,
  type TreeTransform,
} from "../stores/ostree/commit_writer.ts";
import { UnsupportedEntryError } from "../stores/ostree/errors.ts";
import {
  listImages,
  parseImageReference,
  readImage,
  writeImageCommit,
} from "../stores/ostree/image.ts";
import { imageRef } from "../stores/ostree/refs.ts";
import { OstreeRepo } from "../stores/ostree/repo.ts";
import { displayEntryPath } from "../stores/ostree/tree_entry.ts";
import { ImageReferenceError } from "./errors.ts";
import { type MergedEntry, MergedTree } from "./merged_tree.ts";

/** Options of {@linkcode synthesizeOstreeCommit}. */
export interface SynthesizeOptions {
  /** `reflink-required` fails (before writing) without reflinks; `reflink-or-copy` copies. */
  policy: CopyPolicy;
  /** The image reference the ref is named after, e.g. `docker://quay.io/example/os:42`. */
  imageReference: string;
  /** Path rewrites; default {@linkcode BOOTABLE_IMAGE_TRANSFORM}; null for none. */
  transform?: Readonly<TreeTransform> | null;
  /**
   * What ostree cannot store (non-UTF-8 names or symlink targets, fifos, devices) that the
   * transform keeps: `refuse` (default) throws `UnsupportedEntryError` naming the first such path
   * before anything is written; `skip` leaves them out and lists them in the result.
   */
  onUnsupported?: "refuse" | "skip";
  /** Commit timestamp; default as ostree-ext (manifest `created` annotation, config `created`). */
  timestamp?: number;
  /** Wait for the ostree repo lock (default: the repository's `lock-timeout-secs`). */
  lockTimeoutMs?: number;
}

/** Counters of a synthesis. Bytes are content bytes of new objects, by how they were placed. */
export interface SynthesisStats {
  /** Regular files and symlinks in the commit (each path counted). */
  files: number;
  directories: number;
  /** Content objects written, and content objects the repository already had. */
  objectsWritten: number;
  objectsPresent: number;
  /** composefs objects opened to be cloned: each distinct ostree object's source, once. */
  objectsRead: number;
  /** Content bytes placed into new objects (reflinked + copied + inline). */
  bytes: number;
  /** … of which shared with composefs by FICLONE. */
  reflinkedBytes: number;
  /** … of which copied (copy_file_range or read/write; only under `reflink-or-copy`). */
  copiedBytes: number;
  /** … of which small files (≤ 64 bytes) written from the layer stream's inline data. */
  inlineBytes: number;
}

/** What {@linkcode synthesizeOstreeCommit} did. */
export interface SynthesisResult {
  manifestDigest: string;
  configDigest: string;
  /** The image reference as ostree-ext spells it (`docker://…`). */
  imageReference: string;
  /** `ostree/container/image/<escaped image reference>`. */
  ref: string;
  commit: string;
  /**
   * A commit synthesized from this manifest digest was already there: no object was written.
   * `refUpdated` tells whether the ref had to be pointed at it.
   */
  skippedExisting: boolean;
  refUpdated: boolean;
  /** Paths left out under `onUnsupported: "skip"`, with why (empty otherwise). */
  skipped: { path: string; reason: string }[];
  /** Paths dropped by the transform, counted per top-level name (as ostree-ext reports). */
  filtered: Record<string, number>;
  /** The reflink probe (absent when nothing had to be written). */
  probe?: ReflinkProbe;
  stats: SynthesisStats;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const lossy = new TextDecoder("utf-8", { fatal: false });

/**
 * Whether the ostree writer keeps `path` under `transform`. Used to choose hardlink anchors
 * the writer keeps and to report only unsupported paths that would have been written; a wrong
 * answer here can only make a hardlink fail loudly, never lose a file.
 */
export function transformKeeps(
  path: string | Uint8Array,
  transform: Readonly<TreeTransform> | null | undefined,
): boolean {
  if (!transform) return true;
  const text = typeof path === "string" ? path : lossy.decode(path);
  const parts = text.split("/").filter((p) => p !== "" && p !== ".");
  return transformKeepsParts(parts, transform);
}

/** Why ostree cannot store `e`, or null when it can. */
function unsupportedReason(e: MergedEntry): string | null {
  if (typeof e.path !== "string") {
    return "Invalid UTF-8 in filename: ostree cannot store it";
  }
  switch (e.type) {
    case "dir":
    case "file":
    case "hardlink":
      return null;
    case "symlink":
      return typeof e.symlinkTarget === "string"
        ? null
        : "symlink target is not valid UTF-8: ostree cannot store it";
    default:
      return `Not a regular file or symlink (${e.type}): ostree stores only files, symlinks ` +
        `and directories`;
  }
}

/** The commit synthesized from `manifestDigest` already in `repo`, preferring `ref`'s. */
function findSynthesized(
  repo: OstreeRepo,
  imageReference: string,
  manifestDigest: string,
): { commit: string; atRef: boolean } | null {
  const own = readImage(repo, imageReference);
  const matches = (m: typeof own) =>
    m?.metadata?.manifestDigest === manifestDigest && m.metadata.composefsSynthesized;
  if (own && matches(own)) return { commit: own.commit, atRef: true };
  const other = listImages(repo).find((img) => matches(img));
  return other ? { commit: other.commit, atRef: false } : null;
}

/**
 * Synthesizes the ostree-ext image commit of `image` (a composefs tag or manifest digest) in
 * `ostreeRepo`, cloning every file from its composefs object. See the module doc for the steps.
 *
 * @throws {ReflinkUnsupportedError} under `reflink-required` when the filesystem(s) cannot share
 *   blocks: nothing was written; the message names both filesystems.
 * @throws {UnsupportedEntryError} under `onUnsupported: "refuse"`, naming the first path ostree
 *   cannot store: nothing was written.
 *
 * @example
 * ```ts ignore
 * using cfs = await ComposefsRepo.open("/sysroot/composefs", { readOnly: true });
 * using ostree = OstreeRepo.open("/sysroot/ostree/repo");
 * const r = await synthesizeOstreeCommit(cfs, ostree, "quay.io/example/os:42", {
 *   policy: "reflink-required", imageReference: "docker://quay.io/example/os:42",
 * });
 * console.log(r.commit, r.stats.reflinkedBytes);
 * ```
 */
export async function synthesizeOstreeCommit(
  cfsRepo: ComposefsRepo,
  ostreeRepo: OstreeRepo,
  image: string | StoredImage,
  opts: SynthesizeOptions,
): Promise<SynthesisResult> {
  const stored = typeof image === "string" ? await readStoredImage(cfsRepo, image) : image;
  const imageReference = parseImageReference(opts.imageReference).imageReference;
  const ref = imageRef(imageReference);
  const transform = opts.transform === null
    ? undefined
    : opts.transform ?? BOOTABLE_IMAGE_TRANSFORM;
  const base = {
    manifestDigest: stored.manifestDigest,
    configDigest: stored.configDigest,
    imageReference,
    ref,
  };
  const noStats: SynthesisStats = {
    files: 0,
    directories: 0,
    objectsWritten: 0,
    objectsPresent: 0,
    objectsRead: 0,
    bytes: 0,
    reflinkedBytes: 0,
    copiedBytes: 0,
    inlineBytes: 0,
  };

  const existing = findSynthesized(ostreeRepo, imageReference, stored.manifestDigest);
  if (existing) {
    if (!existing.atRef) {
      const txn = await ostreeRepo.beginTransaction({ lockTimeoutMs: opts.lockTimeoutMs });
      try {
        txn.setRef(ref, existing.commit);
        txn.commit();
      } catch (e) {
        txn.abort();
        throw e;
      }
    }
    return {
      ...base,
      commit: existing.commit,
      skippedExisting: true,
      refUpdated: !existing.atRef,
      skipped: [],
      filtered: {},
      stats: noStats,
    };
  }

  const probe = probeFrom(cfsRepo, ostreeRepo);
  if (!probe.supported && opts.policy === "reflink-required") {
    throw new ReflinkUnsupportedError(
      probe.code ?? "EOPNOTSUPP",
      `${ostreeRepo.path} (${probe.filesystem}) from ${cfsRepo.path} (${probe.sourceFilesystem})`,
      probe.reason,
    );
  }

  const tree = await MergedTree.fromComposefs(cfsRepo, stored);
  const skipped: { path: string; reason: string }[] = [];
  const excluded = new Set<string>();
  const include = (p: string | Uint8Array) => !excluded.has(pathKey(p));
  // One pass over the in-memory tree before the transaction: a refusal writes nothing. A
  // directory left out takes its subtree with it (include is asked before descending).
  for (const e of tree.entries({ include })) {
    if (!transformKeeps(e.path, transform)) continue;
    const reason = unsupportedReason(e);
    if (reason === null) continue;
    if ((opts.onUnsupported ?? "refuse") === "refuse") {
      throw new UnsupportedEntryError(displayEntryPath(e.path), reason);
    }
    skipped.push({ path: displayEntryPath(e.path), reason });
    excluded.add(pathKey(e.path));
  }

  let objectsRead = 0;
  const entries = function* (): Generator<MergedEntry> {
    for (
      const e of tree.entries({
        include,
        canAnchor: (p) => transformKeeps(p, transform),
        shareIdenticalFiles: true,
      })
    ) {
      const open = e.openContent;
      yield open
        ? {
          ...e,
          openContent: async () => {
            const fd = await open();
            objectsRead++;
            return fd;
          },
        }
        : e;
    }
  };

  const r = await writeImageCommit(ostreeRepo, entries(), {
    policy: opts.policy,
    imageReference,
    manifestDigest: stored.manifestDigest,
    manifest: textOf(stored.manifestBytes),
    config: textOf(stored.configBytes),
    composefsSynthesized: true,
    transform: transform ?? null,
    timestamp: opts.timestamp,
    lockTimeoutMs: opts.lockTimeoutMs,
  });
  const by = r.stats.bytesByMethod;
  const reflinkedBytes = by.reflink ?? 0;
  const copiedBytes = (by.copy_file_range ?? 0) + (by.readwrite ?? 0);
  const inlineBytes = by.bytes ?? 0;
  return {
    ...base,
    commit: r.commit,
    skippedExisting: false,
    refUpdated: true,
    skipped,
    filtered: Object.fromEntries(r.filtered),
    probe,
    stats: {
      files: r.files,
      directories: r.directories,
      objectsWritten: r.stats.filesWritten,
      objectsPresent: r.stats.filesPresent,
      objectsRead,
      bytes: reflinkedBytes + copiedBytes + inlineBytes,
      reflinkedBytes,
      copiedBytes,
      inlineBytes,
    },
  };
}

/** Probes FICLONE from composefs's `objects/` (the clone sources) into the ostree repository. */
function probeFrom(cfsRepo: ComposefsRepo, ostreeRepo: OstreeRepo): ReflinkProbe {
  return probeReflink(ostreeRepo.dirfd, cfsRepo.probeDirfd());
}

/** A Set key for an entry path: text as is, raw bytes (never equal to text) as NUL + hex. */
function pathKey(p: string | Uint8Array): string {
  return typeof p === "string"
    ? p
    : `\0${Array.from(p, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function textOf(bytes: Uint8Array): string {
  return utf8.decode(bytes);
}

/**
 * The ostree image reference for a composefs image named `ref` (a tag or manifest digest):
 * a tag that is a transport-qualified reference (`docker://…`, `oci:…`, `registry:…`, …) is
 * used as is; another tag is a registry name (`quay.io/x/y:1` → `docker://quay.io/x/y:1`).
 * A manifest digest, or bootc's `localhost/bootc-<digest>` GC-root tag, names no reference:
 * the image's only other tag is used, else {@linkcode ImageReferenceError}.
 *
 * @example
 * ```ts ignore
 * defaultImageReference(repo, "quay.io/example/os:42"); // "docker://quay.io/example/os:42"
 * ```
 */
export function defaultImageReference(repo: ComposefsRepo, ref: string): string {
  const named = (tag: string) =>
    /^(docker:\/\/|registry:|oci:|oci-archive:|docker-archive:|containers-storage:|dir:)/.test(
        tag,
      )
      ? tag
      : `docker://${tag}`;
  const isDigest = /^sha(256|512):/.test(ref);
  if (!isDigest && !ref.startsWith(BOOTC_TAG_PREFIX)) return named(ref);
  const tags = listTags(repo);
  const digest = isDigest ? ref : tags.find((t) => t.name === ref)?.manifestDigest;
  const others = tags.filter((t) =>
    t.manifestDigest === digest && !t.name.startsWith(BOOTC_TAG_PREFIX)
  );
  if (others.length === 1) return named(others[0].name);
  throw new ImageReferenceError(
    `composefs:${ref}`,
    `expected an image reference to name the ostree ref after; the image has ${
      others.length === 0
        ? "no tag other than bootc's"
        : `several tags (${others.map((t) => t.name).join(", ")})`
    }: give one (e.g. docker://quay.io/example/os:42)`,
  );
}

/** Options of {@linkcode importComposefsImageToOstree}. */
export interface ImportComposefsToOstreeOptions extends Omit<SynthesizeOptions, "imageReference"> {
  /** The host root (`--root`, `/` on a real host). */
  root: string;
  /** What follows `composefs:` in `image import composefs:REF`: a tag or manifest digest. */
  ref: string;
  /** Default: {@linkcode defaultImageReference} of `ref`. */
  imageReference?: string;
}

/**
 * `unistore image import composefs:REF --to ostree`: opens the host's composefs repository
 * (`ROOT/sysroot/composefs`, read-only) and ostree repository (`ROOT/sysroot/ostree/repo`) and
 * synthesizes the image's ostree commit there ({@linkcode synthesizeOstreeCommit}).
 *
 * @example
 * ```ts ignore
 * const r = await importComposefsImageToOstree({
 *   root: "/", ref: "quay.io/example/os:42", policy: "reflink-required",
 * });
 * // r.skippedExisting: the commit was there; else r.stats says what was cloned
 * ```
 */
export async function importComposefsImageToOstree(
  opts: ImportComposefsToOstreeOptions,
): Promise<SynthesisResult> {
  const host = new HostRoot(opts.root);
  const ref = opts.ref.startsWith("composefs:") ? opts.ref.slice("composefs:".length) : opts.ref;
  if (ref === "") throw new ImageReferenceError("composefs:", "expected a tag or manifest digest");
  using cfs = await ComposefsRepo.open(host.composefsRepo, { readOnly: true });
  using ostree = OstreeRepo.open(host.ostreeRepo);
  const imageReference = opts.imageReference ?? defaultImageReference(cfs, ref);
  return await synthesizeOstreeCommit(cfs, ostree, ref, { ...opts, imageReference });
}
