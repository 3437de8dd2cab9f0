/**
 * `fsck images`: are the host's images where unified storage says they must be, whole, and
 * reachable? bootc PR #2205's `fsck_images` (spec ../../../shared/specs/bootc-unified-storage.md
 * §6), extended to the three stores unistore knows: the composefs repository (the hub), bootc's
 * containers-storage, and the ostree repository's image commits.
 *
 * **Which images.** Image identity is the OCI config digest (spec §5). The images checked are
 * every image the composefs repository tags (`streams/refs/oci/*`, bootc's own
 * `localhost/bootc-<manifest digest>` tags included) plus every image a boot entry reaches
 * (booted, staged, rollback and other deployments: on ostree hosts through the deployed commit's
 * `ostree.manifest-digest`, on native composefs hosts through the origin's `[image]
 * manifest_digest`). An image no boot entry reaches is not live: it is reported with a note
 * (bootc's GC removes stale bootc tags) and fails only for corruption.
 *
 * **What is checked**, per image (live images must satisfy all, others only the corruption
 * checks):
 *
 * | check | how | repair (`--repair`) |
 * |---|---|---|
 * | in composefs | the manifest stream of a tag or of the live manifest digest reads back: manifest and config against their digests, every layer stream present, every object a layer stream references present (cheap: no object is read) | — |
 * | no dangling tag | a tag whose manifest stream is gone | removed when no boot entry needs it |
 * | bootc tag | live: `localhost/bootc-<manifest digest>` tags the deployed manifest | re-tagged |
 * | in containers-storage | unified only: an image with id = config digest hex, structurally checked (`checkImage`) | rebuilt from composefs by reflink |
 * | ostree commit (ostree hosts) | live: every deployment's commit reads back; an image ref naming a commit of the image reads back | re-synthesized from composefs (unified only): a deployed commit that was synthesized comes back identical |
 * | `--deep` | composefs deep fsck (every object re-hashed, every layer reassembled against its diff_id) with findings attributed to the images whose streams reference them; containers-storage deep `checkImage` (tar-split reproduces the diff-digest); every object of the image's ostree commits re-checksummed | — |
 *
 * **Binding states** (spec §4, §6): `disabled` — nothing is checked; `bound-only` —
 * containers-storage is not part of the deal: it is read when it exists, never created, and
 * repair only re-tags; `unified` — all checks, all repairs, with the copy policy of
 * `bootc.json` (`enabled` → reflink-required, `enabled-with-copy` → reflink-or-copy).
 *
 * **Pending** (ostree hosts): the booted deployment runs a commit ostree-ext pulled (not
 * synthesized from composefs; for an image not booted: all its deployments do). That is the
 * state after binding (or after `set-unified full`, which shares the pulled commits' blocks by
 * dedupe) until an upgrade and reboot put a synthesized commit under it: no failure, as in
 * bootc. A bound-only image in that state need not be in composefs yet.
 *
 * **Repair** runs the repairs above, each on its own (one failing does not stop the others),
 * then checks everything again: the report is the second check, with `repaired` set on the
 * images a repair was attempted for. The exit code follows fsck(8): 0 nothing wrong, 1 every
 * problem repaired, 4 problems left.
 *
 * This module prints nothing: lib/commands/fsck.ts renders the result.
 *
 * @module
 */

import { SysError } from "../../ffi/errno.ts";
import { close } from "../../ffi/fs.ts";
import { readUnifiedFlags, type UnifiedFlags } from "../host/flags.ts";
import { listComposefsDeployments } from "../host/composefs_deployments.ts";
import { detectHostKind, type HostKind } from "../host/kind.ts";
import { HOST_PATHS, type HostRoot } from "../host/root.ts";
import { OciError } from "../oci/errors.ts";
import { parseManifest, REF_NAME_ANNOTATION } from "../oci/manifest.ts";
import type { CopyPolicy } from "../reflink/place.ts";
import { probeReflink } from "../reflink/probe.ts";
import { ComposefsError, RepoNotFoundError } from "../stores/composefs/errors.ts";
import { type FsckFinding, type FsckKind, fsckRepoOnWorker } from "../stores/composefs/fsck.ts";
import {
  BOOTC_TAG_PREFIX,
  bootcTagFor,
  listTags,
  manifestStreamName,
  readStoredImage,
  type StoredImage,
  tagImage,
  untagImage,
} from "../stores/composefs/oci_image.ts";
import type { ObjectId } from "../stores/composefs/object_id.ts";
import { ComposefsRepo } from "../stores/composefs/repository.ts";
import { CONTENT_TYPE, SplitStream } from "../stores/composefs/splitstream.ts";
import { CStorage, CStorageError, type ImageRecord } from "../stores/cstorage/mod.ts";
import { readDeployments } from "../stores/ostree/deployments.ts";
import { OstreeError } from "../stores/ostree/errors.ts";
import {
  parseImageCommitMetadata,
  parseImageReference,
  parseOstreeImageReference,
} from "../stores/ostree/image.ts";
import { IMAGE_REF_PREFIX, imageRef, imageReferenceOfRef } from "../stores/ostree/refs.ts";
import { OstreeRepo } from "../stores/ostree/repo.ts";
import { exportComposefsImageToCStorage } from "./composefs_to_cstorage.ts";
import { synthesizeOstreeCommit } from "./composefs_to_ostree.ts";

// ---------------------------------------------------------------------------------------------
// The report

/** Options of {@linkcode fsckImages}. */
export interface FsckImagesOptions {
  /** Repair what can be repaired from composefs, then check again. */
  repair?: boolean;
  /** Re-hash content: composefs objects and layers, containers-storage layers, ostree objects. */
  deep?: boolean;
}

/**
 * One image as `fsck images --json` reports it (bootc `FsckImageResult`, camelCase, members in
 * bootc's order). Renaming or reordering a member breaks consumers of bootc's JSON.
 */
export interface FsckImageResult {
  /**
   * The live deployment's image name, else the config label
   * `org.opencontainers.image.ref.name`, else a tag other than bootc's, else bootc's tag.
   */
  name: string;
  /** Its manifest and config read back from composefs with every layer stream and object. */
  inComposefs: boolean;
  /** containers-storage has an image whose id is the config digest. */
  inContainersStorage: boolean;
  /** A repair was attempted for this image (`--repair` only). */
  repaired: boolean;
  /** ostree hosts: a readable commit of this image (image ref or live deployment). */
  ostreeCommitPresent: boolean;
  /** ostree hosts: one of them was synthesized from this image's composefs manifest. */
  ostreeCommitSynthesized: boolean;
  /** A boot entry reaches it. */
  isLive: boolean;
  /** Bound, but a live deployment still runs a commit that was not synthesized from composefs. */
  pending: boolean;
  /** What is wrong (empty: nothing). */
  issues: string[];
}

/** The whole report (bootc `FsckReport`), members in bootc's order. */
export interface FsckImagesReport {
  /** containers-storage participation: binding `unified`. */
  unifiedStorageEnabled: boolean;
  binding: "disabled" | "bound-only" | "unified";
  /** FICLONE works on `ROOT/sysroot`; null when the probe itself failed. */
  reflinksSupported: boolean | null;
  images: FsckImageResult[];
  /** No image failed (notes and pending images do not count). */
  ok: boolean;
}

/** How an image fared: `note` is an image no boot entry reaches, with nothing wrong. */
export type FsckImageStatus = "ok" | "fail" | "pending" | "note";

/** What `--repair` can do about a problem. */
export type FsckRepairAction =
  | "remove-dangling-tag"
  | "restore-bootc-tag"
  | "export-to-containers-storage"
  | "synthesize-ostree-commit";

/** One problem of an image: its text (an entry of `issues`) and the repair that fixes it. */
export interface FsckProblem {
  text: string;
  /** null: `--repair` cannot fix it from composefs (a hint says what can). */
  repair: FsckRepairAction | null;
}

/** An image with everything found about it (the report's entry is `result`). */
export interface FsckImageEntry {
  /** Identity: `sha256:<config hex>`, or `manifest:<digest>` / `name:<ref>` when unknown. */
  key: string;
  configDigest: string | null;
  /** Manifest digests known for it (composefs, deployments, ostree commits). */
  manifestDigests: string[];
  /** Its composefs tags (dangling ones included). */
  tags: string[];
  /** Its live deployments, e.g. `booted <checksum>.0` or `staged <id>`. */
  deployments: string[];
  /** ostree-ext's reference of a live deployment's image (`docker://…`), for its ostree ref. */
  imageReference: string | null;
  /** ostree hosts: commits of its live deployments that cannot be read. */
  brokenDeployments: string[];
  status: FsckImageStatus;
  problems: FsckProblem[];
  result: FsckImageResult;
}

/** One repair and how it went. */
export interface FsckRepairStep {
  /** The image's name. */
  image: string;
  action: FsckRepairAction;
  /** What was (to be) done, e.g. the tag restored or removed. */
  target: string;
  ok: boolean;
  /** What came of it: the commit synthesized, the error. */
  detail: string;
}

/** What {@linkcode fsckImages} found and did. */
export interface FsckImagesRun {
  report: FsckImagesReport;
  /** Parallel to `report.images`. */
  entries: FsckImageEntry[];
  /** Repairs attempted, in order (empty without `--repair`). */
  repairs: FsckRepairStep[];
  /** Things worth saying that fail nothing (reflink probe failed, unattributed findings). */
  warnings: string[];
  hostKind: HostKind;
  /** Binding `disabled`: nothing was checked. */
  disabled: boolean;
  /** fsck(8): 0 clean, 1 everything found was repaired, 4 problems left. */
  exitCode: 0 | 1 | 4;
}

/** The spec's issue text for a live image missing from containers-storage (spec §6). */
export const NOT_IN_CONTAINERS_STORAGE = "in composefs but not in containers-storage";

/**
 * Checks the image stores of the host at `root` (see the module doc), repairing with
 * `opts.repair`.
 *
 * @throws {HostFileError} / {SysrootError} when the host's own files (flags, boot entries,
 *   origins) cannot be read: fsck cannot tell which images are live (an operational error).
 * @example
 * ```ts ignore
 * const run = await fsckImages(new HostRoot("/"), { repair: false, deep: false });
 * console.log(JSON.stringify(run.report, null, 2)); // bootc's FsckReport
 * Deno.exit(run.exitCode);
 * ```
 */
export async function fsckImages(
  root: HostRoot,
  opts: FsckImagesOptions = {},
): Promise<FsckImagesRun> {
  const flags = readUnifiedFlags(root);
  const kind = detectHostKind(root).kind;
  const warnings: string[] = [];
  const reflinksSupported = probeSysroot(root, warnings);
  const base = {
    unifiedStorageEnabled: flags.binding === "unified",
    binding: flags.binding,
    reflinksSupported,
  };
  if (flags.binding === "disabled") {
    return {
      report: { ...base, images: [], ok: true },
      entries: [],
      repairs: [],
      warnings,
      hostKind: kind,
      disabled: true,
      exitCode: 0,
    };
  }
  const deep = opts.deep ?? false;
  let entries = await inspect(root, kind, flags, deep, warnings);
  const repairs: FsckRepairStep[] = [];
  if (opts.repair && entries.some((e) => e.problems.some((p) => p.repair !== null))) {
    const attempted = await repairAll(root, kind, flags, entries, repairs);
    // Check again from scratch: the report says how the stores are now.
    const again: string[] = [];
    entries = await inspect(root, kind, flags, deep, again);
    for (const w of again) if (!warnings.includes(w)) warnings.push(w);
    for (const e of entries) if (attempted.has(e.key)) e.result.repaired = true;
  }
  const ok = entries.every((e) => e.status !== "fail");
  return {
    report: { ...base, images: entries.map((e) => e.result), ok },
    entries,
    repairs,
    warnings,
    hostKind: kind,
    disabled: false,
    exitCode: !ok ? 4 : repairs.some((r) => r.ok) ? 1 : 0,
  };
}

/** bootc's reflink probe on the physical root: null (with a warning) when it cannot run. */
function probeSysroot(root: HostRoot, warnings: string[]): boolean | null {
  let fd: number | null;
  try {
    fd = root.openDir(HOST_PATHS.sysroot);
  } catch (e) {
    warnings.push(`cannot probe reflinks on ${root.sysroot}: ${(e as Error).message}`);
    return null;
  }
  if (fd === null) {
    warnings.push(`cannot probe reflinks: ${root.sysroot} does not exist`);
    return null;
  }
  try {
    return probeReflink(fd).supported;
  } catch (e) {
    // A read-only /sysroot (EROFS) cannot hold the probe's scratch files.
    if (!(e instanceof SysError)) throw e;
    warnings.push(`cannot probe reflinks on ${root.sysroot}: ${e.message}`);
    return null;
  } finally {
    close(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// What the stores hold

/** A deployment a boot entry reaches. */
interface LiveDeployment {
  /** `booted <checksum>.<serial>`, `staged <id>`, … */
  label: string;
  /** The image name (`quay.io/x/os:1`) from the origin. */
  name: string | null;
  /** ostree-ext's image reference for the ostree ref (`docker://quay.io/x/os:1`). */
  imageReference: string | null;
  manifestDigest: string | null;
  configDigest: string | null;
  /** ostree hosts: the deployed commit. */
  commit?: OstreeCommitInfo;
  /** Why the deployment's image cannot be known (origin without manifest digest, ...). */
  problem?: string;
}

/** An ostree commit of an image: an image ref's or a deployment's. */
interface OstreeCommitInfo {
  checksum: string;
  /** `ref ostree/container/image/…` or `deployment <c>.<n>`. */
  source: string;
  /** The image name the ref or origin names. */
  name: string | null;
  manifestDigest: string | null;
  configDigest: string | null;
  synthesized: boolean;
  /** The commit cannot be read (missing, corrupt). */
  error?: string;
}

/** One manifest digest as composefs has it. */
interface ComposefsManifest {
  digest: string;
  tags: string[];
  /** `ok`: reads back; `missing`: no manifest stream; `broken`: stream present, unreadable. */
  state: "ok" | "missing" | "broken";
  error?: string;
  stored?: StoredImage;
  /** Missing layer streams and objects (never read: existence only). */
  problems: string[];
  /** Every object its streams use: stream objects, manifest/config JSON, layer payloads. */
  objects: Set<ObjectId>;
  /** Names of its streams (`oci-manifest-…`, `oci-config-…`, `oci-layer-…`). */
  streams: Set<string>;
}

interface ComposefsView {
  present: boolean;
  manifests: Map<string, ComposefsManifest>;
  /** --deep findings of the whole repository (computed on a second thread meanwhile). */
  findings: Promise<FsckFinding[]>;
}

interface CStorageView {
  path: string;
  present: boolean;
  images: Map<string, ImageRecord>;
  store: CStorage | null;
}

/** Finding kinds of a deep composefs fsck that say content is wrong (the rest are structure). */
const CONTENT_FINDINGS: ReadonlySet<FsckKind> = new Set<FsckKind>([
  "object-digest-mismatch",
  "object-verity-missing",
  "object-open-failed",
  "unexpected-file-type",
  "stream-open-failed",
  "stream-read-failed",
  "stream-content-type",
  "image-digest-mismatch",
  "image-invalid",
  "image-missing-ref",
  "layer-diff-id-mismatch",
]);

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Errors that say a store's content is wrong (as opposed to a bug or an unusable host). */
function isStoreError(e: unknown): e is Error {
  return e instanceof ComposefsError || e instanceof OciError || e instanceof SysError ||
    e instanceof OstreeError || e instanceof CStorageError;
}

function configDigestOfManifestText(text: string, where: string): string | null {
  try {
    return parseManifest(new TextEncoder().encode(text), where).config.digest;
  } catch (e) {
    if (e instanceof OciError) return null;
    throw e;
  }
}

/** What an ostree commit says about its image; `error` when it cannot be read. */
function describeCommit(
  repo: OstreeRepo,
  checksum: string,
  source: string,
  name: string | null,
): OstreeCommitInfo {
  const info: OstreeCommitInfo = {
    checksum,
    source,
    name,
    manifestDigest: null,
    configDigest: null,
    synthesized: false,
  };
  let commit;
  try {
    commit = repo.readCommit(checksum);
  } catch (e) {
    if (!isStoreError(e)) throw e;
    info.error = message(e);
    return info;
  }
  try {
    const meta = parseImageCommitMetadata(commit.metadata, `commit ${checksum}`);
    info.manifestDigest = meta.manifestDigest;
    info.configDigest = configDigestOfManifestText(meta.manifest, `commit ${checksum}`);
    info.synthesized = meta.composefsSynthesized;
  } catch (e) {
    if (!(e instanceof OstreeError)) throw e; // not an image commit: it names no image
  }
  return info;
}

function nameOfOrigin(reference: string): { name: string; imageReference: string } | null {
  try {
    const r = parseOstreeImageReference(reference);
    return { name: r.name, imageReference: r.imageReference };
  } catch (e) {
    if (e instanceof OstreeError) return null;
    throw e;
  }
}

/** The live deployments of an ostree host, each with its deployed commit. */
function ostreeLive(root: HostRoot, repo: OstreeRepo): LiveDeployment[] {
  const s = readDeployments({ root: root.dir });
  const out: LiveDeployment[] = [];
  for (const d of s.deployments) {
    if (d.containerImageReference === undefined) continue; // not an image deployment
    const role = d === s.booted
      ? "booted"
      : d === s.staged
      ? "staged"
      : d === s.rollback
      ? "rollback"
      : "deployment";
    const label = `${role} ${d.checksum}.${d.serial}`;
    const origin = nameOfOrigin(d.containerImageReference);
    const commit = describeCommit(
      repo,
      d.checksum,
      `deployment ${d.checksum}.${d.serial} (${role})`,
      null,
    );
    commit.name = origin?.name ?? null;
    out.push({
      label,
      name: origin?.name ?? null,
      imageReference: origin?.imageReference ?? null,
      manifestDigest: commit.manifestDigest,
      configDigest: commit.configDigest,
      commit,
    });
  }
  return out;
}

/** The live deployments of a native composefs host (boot entries → origins). */
function composefsLive(root: HostRoot): LiveDeployment[] {
  const list = listComposefsDeployments(root);
  return list.all.map((d) => {
    const role = d === list.booted
      ? "booted"
      : d === list.staged
      ? "staged"
      : d === list.rollback
      ? "rollback"
      : "deployment";
    const origin = d.origin?.imageReference ? nameOfOrigin(d.origin.imageReference) : null;
    const live: LiveDeployment = {
      label: `${role} ${d.id}`,
      name: origin?.name ?? null,
      imageReference: origin?.imageReference ?? null,
      manifestDigest: d.origin?.manifestDigest ?? null,
      configDigest: null,
    };
    if (d.origin === null) live.problem = `deployment ${d.id} has no origin file`;
    else if (!d.origin.manifestDigest) {
      live.problem = `origin of deployment ${d.id} has no [image] manifest_digest`;
    }
    return live;
  });
}

/** Reads one manifest's image and checks that every stream and object it needs exists. */
async function readComposefsManifest(
  repo: ComposefsRepo,
  digest: string,
  tags: string[],
): Promise<ComposefsManifest> {
  const m: ComposefsManifest = {
    digest,
    tags,
    state: "ok",
    problems: [],
    objects: new Set(),
    streams: new Set(),
  };
  let streamId: ObjectId | null;
  try {
    streamId = repo.streamObjectId(manifestStreamName(digest));
  } catch (e) {
    if (!isStoreError(e)) throw e;
    return { ...m, state: "broken", error: message(e) };
  }
  if (streamId === null) return { ...m, state: "missing" };
  let stored: StoredImage;
  try {
    stored = await readStoredImage(repo, digest);
  } catch (e) {
    if (!isStoreError(e)) throw e;
    return { ...m, state: "broken", error: message(e) };
  }
  m.stored = stored;
  m.streams.add(manifestStreamName(digest));
  m.streams.add(`oci-config-${stored.configDigest}`);
  const addStreamObjects = (id: ObjectId, contentType: bigint) => {
    m.objects.add(id);
    using s = SplitStream.openObject(repo, id, contentType);
    for (const ref of s.index.objectRefs) m.objects.add(ref);
  };
  addStreamObjects(stored.manifestStreamId, CONTENT_TYPE.ociManifest);
  addStreamObjects(stored.configStreamId, CONTENT_TYPE.ociConfig);
  for (const diffId of stored.diffIds) {
    const id = stored.layerStreams.get(diffId)!;
    m.streams.add(`oci-layer-${diffId}`);
    m.objects.add(id);
    if (!repo.hasObject(id)) {
      m.problems.push(`composefs: layer ${diffId}: its stream ${repo.objectPath(id)} is missing`);
      continue;
    }
    let refs: ObjectId[];
    try {
      using s = SplitStream.openObject(repo, id, CONTENT_TYPE.ociLayer);
      refs = s.index.objectRefs;
    } catch (e) {
      if (!isStoreError(e)) throw e;
      m.problems.push(`composefs: layer ${diffId}: stream unreadable: ${message(e)}`);
      continue;
    }
    for (const ref of refs) {
      m.objects.add(ref);
      if (!repo.hasObject(ref)) {
        m.problems.push(
          `composefs: layer ${diffId} references missing object ${repo.objectPath(ref)}`,
        );
      }
    }
  }
  return m;
}

async function inspectComposefs(
  root: HostRoot,
  liveManifests: readonly string[],
  deep: boolean,
): Promise<ComposefsView> {
  let repo: ComposefsRepo;
  try {
    repo = await ComposefsRepo.open(root.composefsRepo, { readOnly: true });
  } catch (e) {
    if (e instanceof RepoNotFoundError) {
      return { present: false, manifests: new Map(), findings: Promise.resolve([]) };
    }
    throw e;
  }
  try {
    const tagsByDigest = new Map<string, string[]>();
    for (const t of listTags(repo)) {
      tagsByDigest.set(t.manifestDigest, [...(tagsByDigest.get(t.manifestDigest) ?? []), t.name]);
    }
    for (const d of liveManifests) if (!tagsByDigest.has(d)) tagsByDigest.set(d, []);
    // The deep check re-hashes every object on a second thread while the caller goes on.
    const findings = deep
      ? fsckRepoOnWorker(root.composefsRepo).then((r) =>
        r.findings.filter((f) => CONTENT_FINDINGS.has(f.kind))
      )
      : Promise.resolve([]);
    findings.catch(() => {}); // awaited by the caller, unless it failed first
    const manifests = new Map<string, ComposefsManifest>();
    for (const [digest, tags] of [...tagsByDigest].sort(([a], [b]) => (a < b ? -1 : 1))) {
      manifests.set(digest, await readComposefsManifest(repo, digest, tags));
    }
    return { present: true, manifests, findings };
  } finally {
    repo.close();
  }
}

/**
 * Where bootc's containers-storage is, or would be created: `composefs/bootc/storage` on native
 * composefs hosts (and wherever it exists), `ostree/bootc/storage` otherwise.
 */
function cstorageRel(root: HostRoot, kind: HostKind): string {
  return kind === "composefs" || root.isDir(HOST_PATHS.composefsContainersStorage)
    ? HOST_PATHS.composefsContainersStorage
    : HOST_PATHS.ostreeContainersStorage;
}

/** bootc's containers-storage, opened read-only when it exists (never created here). */
async function inspectCStorage(root: HostRoot, kind: HostKind): Promise<CStorageView> {
  const rel = cstorageRel(root, kind);
  const path = root.path(rel);
  if (!root.isDir(`${rel}/overlay-images`)) {
    return { path, present: false, images: new Map(), store: null };
  }
  const store = await CStorage.open(path, { readOnly: true });
  try {
    const images = new Map((await store.listImages()).map((i) => [i.id, i]));
    return { path, present: true, images, store };
  } catch (e) {
    store.close();
    throw e;
  }
}

/** Every image commit under `ostree/container/image/`. */
function ostreeImageCommits(repo: OstreeRepo): OstreeCommitInfo[] {
  const out: OstreeCommitInfo[] = [];
  for (const [ref, commit] of repo.listRefs(IMAGE_REF_PREFIX)) {
    let name: string | null = null;
    try {
      name = parseImageReference(imageReferenceOfRef(ref)).name;
    } catch (e) {
      if (!(e instanceof OstreeError)) throw e;
    }
    out.push(describeCommit(repo, commit, `ref ${ref}`, name));
  }
  return out;
}

/** Re-checksums every object of `commit`; problems are cached per object across commits. */
function deepCheckOstreeCommit(
  repo: OstreeRepo,
  commit: string,
  cache: Map<string, string | null>,
): string[] {
  const problems: string[] = [];
  try {
    for (const item of repo.walkCommit(commit)) {
      if (item.type === "dir") continue;
      let problem = cache.get(item.checksum);
      if (problem === undefined) {
        try {
          const found = repo.computeFileObjectChecksum(item.checksum);
          problem = found === item.checksum
            ? null
            : `object ${item.checksum}.file re-checksums to ${found}`;
        } catch (e) {
          if (!isStoreError(e)) throw e;
          problem = message(e);
        }
        cache.set(item.checksum, problem);
      }
      if (problem !== null) problems.push(`ostree: commit ${commit}: ${item.path}: ${problem}`);
    }
  } catch (e) {
    if (!isStoreError(e)) throw e;
    problems.push(`ostree: commit ${commit}: ${message(e)}`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Images and their problems

interface Building {
  key: string;
  configDigest: string | null;
  manifests: ComposefsManifest[];
  manifestDigests: Set<string>;
  tags: string[];
  live: LiveDeployment[];
}

async function inspect(
  root: HostRoot,
  kind: HostKind,
  flags: UnifiedFlags,
  deep: boolean,
  warnings: string[],
): Promise<FsckImageEntry[]> {
  const ostreeRepo = kind === "ostree" ? OstreeRepo.open(root.ostreeRepo) : null;
  let cstorage: CStorageView | null = null;
  try {
    cstorage = await inspectCStorage(root, kind);
    const live = ostreeRepo
      ? ostreeLive(root, ostreeRepo)
      : kind === "composefs"
      ? composefsLive(root)
      : [];
    const liveManifests = live.map((l) => l.manifestDigest).filter((d) => d !== null);
    const cfs = await inspectComposefs(root, liveManifests, deep);
    const ostreeCommits = ostreeRepo ? ostreeImageCommits(ostreeRepo) : [];

    // Identity: the config digest wherever one is known.
    const manifestToConfig = new Map<string, string>();
    for (const m of cfs.manifests.values()) {
      if (m.stored) manifestToConfig.set(m.digest, m.stored.configDigest);
    }
    for (const c of [...ostreeCommits, ...live.flatMap((l) => (l.commit ? [l.commit] : []))]) {
      if (c.manifestDigest && c.configDigest && !manifestToConfig.has(c.manifestDigest)) {
        manifestToConfig.set(c.manifestDigest, c.configDigest);
      }
    }
    const building = new Map<string, Building>();
    const entry = (key: string, configDigest: string | null): Building => {
      let b = building.get(key);
      if (!b) {
        b = {
          key,
          configDigest,
          manifests: [],
          manifestDigests: new Set(),
          tags: [],
          live: [],
        };
        building.set(key, b);
      }
      return b;
    };
    // A deployment whose commit cannot be read names its image only by its origin's name.
    const nameToConfig = new Map<string, string>();
    for (const m of cfs.manifests.values()) {
      for (const t of m.tags) if (m.stored) nameToConfig.set(t, m.stored.configDigest);
    }
    const keyOf = (manifest: string | null, config: string | null, name: string | null) => {
      const c = config ?? (manifest ? manifestToConfig.get(manifest) : undefined) ??
        (manifest === null && name !== null ? nameToConfig.get(name) : undefined);
      if (c) return { key: c, config: c };
      if (manifest) return { key: `manifest:${manifest}`, config: null };
      return { key: `name:${name ?? "(unknown)"}`, config: null };
    };
    for (const l of live) {
      const k = keyOf(l.manifestDigest, l.configDigest, l.name ?? l.label);
      const b = entry(k.key, k.config);
      b.live.push(l);
      if (l.manifestDigest) b.manifestDigests.add(l.manifestDigest);
    }
    for (const m of cfs.manifests.values()) {
      if (m.state === "missing" && m.tags.length === 0) continue; // a live manifest not there
      const k = keyOf(m.digest, m.stored?.configDigest ?? null, null);
      const b = entry(k.key, k.config);
      b.manifests.push(m);
      b.manifestDigests.add(m.digest);
      b.tags.push(...m.tags);
    }

    // Deep composefs findings go to every image whose streams or objects they name.
    const byObject = new Map<string, Set<string>>();
    const byStream = new Map<string, Set<string>>();
    for (const b of building.values()) {
      for (const m of b.manifests) {
        for (const o of m.objects) byObject.set(o, (byObject.get(o) ?? new Set()).add(b.key));
        for (const s of m.streams) byStream.set(s, (byStream.get(s) ?? new Set()).add(b.key));
      }
    }
    const ctx: ClassifyContext = {
      kind,
      flags,
      deep,
      cstorage,
      ostreeRepo,
      ostreeCommits,
      deepIssues: new Map(),
      ostreeCache: new Map(),
      ostreeDeep: new Map(),
      cstorageChecks: new Map(),
    };
    // The other stores' deep checks run while the composefs objects are re-hashed.
    if (deep) await checkOtherStoresDeep([...building.values()], ctx);
    const deepIssues = ctx.deepIssues;
    for (const f of await cfs.findings) {
      const keys = new Set<string>();
      if (f.objectId) byObject.get(f.objectId)?.forEach((k) => keys.add(k));
      if (f.path.startsWith("streams/")) byStream.get(f.path.slice(8))?.forEach((k) => keys.add(k));
      const text = `composefs: ${f.kind}: ${f.path}: ${f.detail}`;
      if (keys.size === 0) {
        warnings.push(`${text} (no image uses it)`);
        continue;
      }
      for (const k of keys) deepIssues.set(k, [...(deepIssues.get(k) ?? []), text]);
    }

    const entries: FsckImageEntry[] = [];
    for (const b of building.values()) entries.push(await classify(b, ctx));
    return sortEntries(entries);
  } finally {
    cstorage?.store?.close();
    ostreeRepo?.close();
  }
}

interface ClassifyContext {
  kind: HostKind;
  flags: UnifiedFlags;
  deep: boolean;
  cstorage: CStorageView;
  ostreeRepo: OstreeRepo | null;
  ostreeCommits: OstreeCommitInfo[];
  deepIssues: Map<string, string[]>;
  /** Problems of ostree objects, by object, across commits. */
  ostreeCache: Map<string, string | null>;
  /** Problems of deep-checked ostree commits, by commit checksum. */
  ostreeDeep: Map<string, string[]>;
  /** Problems of checked containers-storage images, by image id. */
  cstorageChecks: Map<string, string[]>;
}

/**
 * The ostree commits of image `b`: those of image refs and of its live deployments that name
 * its config or one of its manifests (or, unreadable, its name).
 */
function imageCommits(b: Building, ctx: ClassifyContext): OstreeCommitInfo[] {
  const deployed = b.live.flatMap((l) => (l.commit ? [l.commit] : []));
  return [...ctx.ostreeCommits, ...deployed].filter((c) =>
    c.error === undefined
      ? (b.configDigest !== null && c.configDigest === b.configDigest) ||
        (c.manifestDigest !== null && b.manifestDigests.has(c.manifestDigest))
      : c.name !== null && b.live.some((l) => l.name === c.name)
  );
}

/** `b`'s containers-storage image: its id is its config digest's hex. */
function imageRecord(b: Building, ctx: ClassifyContext): ImageRecord | undefined {
  const imageId = b.configDigest?.startsWith("sha256:") ? b.configDigest.slice(7) : null;
  return imageId !== null ? ctx.cstorage.images.get(imageId) : undefined;
}

/** Every object of `commit` re-checksummed (once per commit), as problem texts. */
function ostreeDeepProblems(ctx: ClassifyContext, commit: string): string[] {
  let problems = ctx.ostreeDeep.get(commit);
  if (!problems) {
    problems = deepCheckOstreeCommit(ctx.ostreeRepo!, commit, ctx.ostreeCache);
    ctx.ostreeDeep.set(commit, problems);
  }
  return problems;
}

/** `record` checked in containers-storage (deeply with --deep, once per image), as texts. */
async function cstorageProblems(record: ImageRecord, ctx: ClassifyContext): Promise<string[]> {
  const cached = ctx.cstorageChecks.get(record.id);
  if (cached) return cached;
  const problems: string[] = [];
  try {
    const r = await ctx.cstorage.store!.checkImage(record, { deep: ctx.deep });
    for (const p of r.problems) {
      // A store error's message starts with the file it names: said once, at the end.
      const text = p.path && p.message.startsWith(`${p.path}: `)
        ? p.message.slice(p.path.length + 2)
        : p.message;
      problems.push(`containers-storage: ${p.object}: ${text}${p.path ? ` (${p.path})` : ""}`);
    }
  } catch (e) {
    if (!isStoreError(e)) throw e;
    problems.push(`containers-storage: image ${record.id}: ${message(e)}`);
  }
  ctx.cstorageChecks.set(record.id, problems);
  return problems;
}

/**
 * The deep checks of ostree commits and containers-storage images of every image, ahead of
 * {@linkcode classify} (which then finds them done): they run while the composefs objects are
 * re-hashed on the second thread, whose findings classify needs first.
 */
async function checkOtherStoresDeep(buildings: Building[], ctx: ClassifyContext): Promise<void> {
  for (const b of buildings) {
    if (ctx.ostreeRepo) {
      for (const c of imageCommits(b, ctx)) {
        if (c.error === undefined) ostreeDeepProblems(ctx, c.checksum);
      }
    }
    const record = imageRecord(b, ctx);
    if (record && ctx.cstorage.store) await cstorageProblems(record, ctx);
  }
}

const ROLE_ORDER = ["booted", "staged", "rollback", "deployment"];

/** Booted, staged, rollback, other live images, then the rest by name. */
function sortEntries(entries: FsckImageEntry[]): FsckImageEntry[] {
  const rank = (e: FsckImageEntry) => {
    const ranks = e.deployments.map((d) => ROLE_ORDER.indexOf(d.split(" ")[0]));
    return ranks.length === 0 ? ROLE_ORDER.length : Math.min(...ranks);
  };
  return entries.sort((a, b) =>
    rank(a) - rank(b) ||
    (a.result.name < b.result.name ? -1 : a.result.name > b.result.name ? 1 : 0)
  );
}

/**
 * The name an image is shown by: its live deployment's image name, else (as bootc) the config
 * label `org.opencontainers.image.ref.name`, else a tag other than bootc's, else bootc's tag.
 */
function displayName(b: Building): string {
  const fromLive = b.live.find((l) => l.name)?.name;
  if (fromLive) return fromLive;
  for (const m of b.manifests) {
    const label = m.stored?.config.config?.Labels?.[REF_NAME_ANNOTATION];
    if (typeof label === "string" && label !== "") return label;
  }
  const other = b.tags.find((t) => !t.startsWith(BOOTC_TAG_PREFIX));
  return other ?? b.tags[0] ?? b.live[0]?.label ?? b.key;
}

async function classify(b: Building, ctx: ClassifyContext): Promise<FsckImageEntry> {
  const problems: FsckProblem[] = [];
  const add = (text: string, repair: FsckRepairAction | null = null) => {
    if (!problems.some((p) => p.text === text)) problems.push({ text, repair });
  };
  const isLive = b.live.length > 0;
  const readable = b.manifests.filter((m) => m.stored !== undefined);
  const inComposefs = readable.length > 0;
  const contentProblems = readable.flatMap((m) => m.problems);
  const intact = inComposefs && contentProblems.length === 0 &&
    !(ctx.deepIssues.get(b.key)?.length);
  const unified = ctx.flags.binding === "unified";

  // composefs: dangling and broken tags, missing streams and objects, deep findings.
  for (const m of b.manifests) {
    if (m.state === "missing") {
      for (const t of m.tags) {
        add(
          `composefs tag ${t} is dangling: streams/${manifestStreamName(m.digest)} is missing`,
          isLive ? null : "remove-dangling-tag",
        );
      }
    } else if (m.state === "broken") {
      add(`composefs: manifest ${m.digest} is unreadable: ${m.error}`);
    }
  }
  contentProblems.forEach((p) => add(p));
  (ctx.deepIssues.get(b.key) ?? []).forEach((p) => add(p));
  for (const l of b.live) if (l.problem) add(l.problem);

  // ostree commits of this image: image refs and live deployments.
  let ostreeCommitPresent = false, ostreeCommitSynthesized = false, pending = false;
  const cfsManifests = new Set(readable.map((m) => m.digest));
  const brokenDeployments: string[] = [];
  if (ctx.ostreeRepo) {
    const deployed = b.live.flatMap((l) => (l.commit ? [l.commit] : []));
    const commits = imageCommits(b, ctx);
    ostreeCommitPresent = commits.some((c) => c.error === undefined);
    const target = cfsManifests.size > 0 ? cfsManifests : b.manifestDigests;
    ostreeCommitSynthesized = commits.some((c) =>
      c.error === undefined && c.synthesized && c.manifestDigest !== null &&
      target.has(c.manifestDigest)
    );
    // Pending: the running system (or, for an image not booted, each of its deployments) is on
    // a commit ostree-ext pulled; the next upgrade and reboot put a synthesized one under it.
    const booted = b.live.find((l) => l.label.startsWith("booted "))?.commit;
    const readableDeployed = deployed.filter((c) => c.error === undefined);
    pending = booted !== undefined
      ? booted.error === undefined && !booted.synthesized
      : readableDeployed.length > 0 && readableDeployed.every((c) => !c.synthesized);
    // A synthesis from composefs writes the same commit again (same tree, metadata and
    // timestamp), so a deployed commit that was synthesized comes back byte for byte.
    const resynthesize = unified && intact ? "synthesize-ostree-commit" : null;
    for (const c of commits) {
      if (c.error === undefined) continue;
      if (deployed.includes(c)) {
        brokenDeployments.push(c.checksum);
        add(`ostree commit missing: ${c.source}: ${c.error}`, resynthesize);
      } else add(`ostree: ${c.source} → commit ${c.checksum}: ${c.error}`, resynthesize);
    }
    if (ctx.deep) {
      const seen = new Set<string>();
      for (const c of commits) {
        if (c.error !== undefined || seen.has(c.checksum)) continue;
        seen.add(c.checksum);
        ostreeDeepProblems(ctx, c.checksum).forEach((p) => add(p));
      }
    }
  }

  if (isLive) {
    const liveManifests = b.live.map((l) => l.manifestDigest).filter((d) => d !== null);
    if (!inComposefs) {
      // Before the first upgrade of a bound ostree host its images are not in composefs yet.
      const expected = ctx.kind === "ostree" && pending && !unified;
      if (!expected && liveManifests.length > 0 && !b.manifests.some((m) => m.state !== "ok")) {
        add(`not in composefs: no manifest stream for ${liveManifests.join(", ")}`);
      }
    } else {
      for (const d of new Set(liveManifests)) {
        if (!cfsManifests.has(d)) continue;
        const tag = bootcTagFor(d);
        if (!b.tags.includes(tag)) {
          add(`no bootc tag ${tag} in composefs (GC may collect the image)`, "restore-bootc-tag");
        }
      }
    }
  }

  // containers-storage: by image id = config digest hex.
  const record = imageRecord(b, ctx);
  const inContainersStorage = record !== undefined;
  if (isLive && unified && !inContainersStorage) {
    if (inComposefs) add(NOT_IN_CONTAINERS_STORAGE, intact ? "export-to-containers-storage" : null);
    else add("not in containers-storage");
  }
  if (record && ctx.cstorage.store) (await cstorageProblems(record, ctx)).forEach((p) => add(p));

  const status: FsckImageStatus = problems.length > 0
    ? "fail"
    : !isLive
    ? "note"
    : pending
    ? "pending"
    : "ok";
  return {
    key: b.key,
    configDigest: b.configDigest,
    manifestDigests: [...b.manifestDigests],
    tags: b.tags,
    deployments: b.live.map((l) => l.label),
    imageReference: b.live.find((l) => l.imageReference)?.imageReference ?? null,
    brokenDeployments,
    status,
    problems,
    result: {
      name: displayName(b),
      inComposefs,
      inContainersStorage,
      repaired: false,
      ostreeCommitPresent,
      ostreeCommitSynthesized,
      isLive,
      pending,
      issues: problems.map((p) => p.text),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Repair

/** bootc.json's mode as the reflink engine's policy (spec §7.2). */
export function policyOf(flags: UnifiedFlags): CopyPolicy {
  return flags.unified === "enabled-with-copy" ? "reflink-or-copy" : "reflink-required";
}

/**
 * Runs the repairs the entries ask for: tags first (cheap, and what GC looks at), then
 * containers-storage, then ostree. Returns the keys of the images a repair was attempted for.
 */
async function repairAll(
  root: HostRoot,
  kind: HostKind,
  flags: UnifiedFlags,
  entries: FsckImageEntry[],
  steps: FsckRepairStep[],
): Promise<Set<string>> {
  const attempted = new Set<string>();
  const wanted = (action: FsckRepairAction) =>
    entries.filter((e) => e.problems.some((p) => p.repair === action));
  const step = async (
    e: FsckImageEntry,
    action: FsckRepairAction,
    target: string,
    fn: () => Promise<string> | string,
  ) => {
    attempted.add(e.key);
    try {
      steps.push({ image: e.result.name, action, target, ok: true, detail: await fn() });
    } catch (err) {
      steps.push({ image: e.result.name, action, target, ok: false, detail: message(err) });
    }
  };
  const policy = policyOf(flags);
  const tagWork = [...wanted("remove-dangling-tag"), ...wanted("restore-bootc-tag")];
  const needsWrite = tagWork.length > 0;
  const cfs = needsWrite
    ? await ComposefsRepo.open(root.composefsRepo)
    : await ComposefsRepo.open(root.composefsRepo, { readOnly: true });
  try {
    const hasManifest = (d: string) => cfs.streamObjectId(manifestStreamName(d)) !== null;
    // The live deployment's manifest comes first in `manifestDigests`.
    const manifestOf = (e: FsckImageEntry) => e.manifestDigests.find(hasManifest) ?? "";
    for (const e of wanted("remove-dangling-tag")) {
      for (const t of e.tags) {
        const d = listTags(cfs).find((x) => x.name === t)?.manifestDigest;
        if (d === undefined || hasManifest(d)) continue;
        await step(e, "remove-dangling-tag", t, () => {
          untagImage(cfs, t);
          return `removed composefs tag ${t}`;
        });
      }
    }
    for (const e of wanted("restore-bootc-tag")) {
      for (const d of e.manifestDigests) {
        const tag = bootcTagFor(d);
        if (e.tags.includes(tag) || !hasManifest(d)) continue;
        if (!e.problems.some((p) => p.repair === "restore-bootc-tag" && p.text.includes(tag))) {
          continue;
        }
        await step(e, "restore-bootc-tag", tag, () => {
          tagImage(cfs, d, tag);
          return `tagged ${d} as ${tag}`;
        });
      }
    }

    const exports = wanted("export-to-containers-storage");
    if (exports.length > 0) {
      const path = root.path(cstorageRel(root, kind));
      let store: CStorage | null = null;
      try {
        store = await CStorage.open(path, { create: true });
      } catch (err) {
        for (const e of exports) {
          await step(e, "export-to-containers-storage", path, () => {
            throw err;
          });
        }
      }
      if (store) {
        try {
          for (const e of exports) {
            const d = manifestOf(e);
            await step(e, "export-to-containers-storage", d, async () => {
              const r = await exportComposefsImageToCStorage(cfs, store!, d, { policy });
              return `image ${r.imageId} as ${r.names.join(", ")} (${r.stats.layersWritten} ` +
                `layer(s) written, ${r.stats.layersReused} reused)`;
            });
          }
        } finally {
          store.close();
        }
      }
    }

    const syntheses = kind === "ostree" ? wanted("synthesize-ostree-commit") : [];
    if (syntheses.length > 0) {
      using ostree = OstreeRepo.open(root.ostreeRepo);
      for (const e of syntheses) {
        const d = manifestOf(e);
        const imageReference = e.imageReference;
        await step(e, "synthesize-ostree-commit", d, async () => {
          if (imageReference === null) {
            throw new Error(`no deployment names an image reference for ${e.result.name}`);
          }
          // A ref naming a commit that is gone names nothing, and would stop the synthesis
          // (which reads the image's ref first): it is dropped, the synthesis sets it again.
          const ref = imageRef(parseImageReference(imageReference).imageReference);
          const current = ostree.resolveRef(ref);
          if (current !== null && !ostree.hasObject(current, "commit")) {
            const txn = await ostree.beginTransaction();
            try {
              txn.setRef(ref, null);
              txn.commit();
            } catch (err) {
              txn.abort();
              throw err;
            }
          }
          const r = await synthesizeOstreeCommit(cfs, ostree, d, { policy, imageReference });
          const still = e.brokenDeployments.filter((c) => !ostree.hasObject(c, "commit"));
          if (still.length > 0) {
            throw new Error(
              `synthesized commit ${r.commit} (${r.ref}), but the deployed commit ${
                still.join(", ")
              } is still missing: it was not synthesized from this image by this version ` +
                `(\`unistore upgrade\` deploys ${r.commit})`,
            );
          }
          return `commit ${r.commit} (${r.ref})`;
        });
      }
    }
  } finally {
    cfs.close();
  }
  return attempted;
}
