/**
 * bootc's host status: the `Host` object of `bootc status` (spec bootc-unified-storage.md §8.1,
 * bootc `crates/lib/src/spec.rs`; schema `docs/src/host-v1.schema.json`), built from a host root
 * for both host kinds, plus the `status.storage` of bootc PR #2205.
 *
 * Shape (serde camelCase; members are created in bootc's struct order, which YAML keeps and
 * canonical JSON sorts; `readOnly` is from bootc main and `storage` from PR #2205, each of which
 * appends its member after `usrOverlay`, so both come in that order):
 *
 * ```
 * Host          apiVersion "org.containers.bootc/v1", kind "BootcHost", metadata {name: "host"},
 *               spec {image: ImageReference | null, bootOrder: "default" | "rollback"},
 *               status
 * status        staged, booted, rollback: BootEntry | null; otherDeployments (left out when
 *               empty); rollbackQueued; type: "bootcHost" | null; usrOverlay: {accessMode,
 *               persistence} | null; readOnly; storage? {unified, ostreeComposefsBound}
 * BootEntry     image, cachedUpdate: ImageStatus | null; incompatible, pinned,
 *               softRebootCapable, downloadOnly; store: "ostreeContainer" | null;
 *               ostree: {stateroot, checksum, deploySerial} | null;
 *               composefs: {verity, bootType "Bls"|"Uki", bootloader, bootDigest, missingVerityAllowed} | null
 * ImageStatus   image: {image, transport, signature?}, version | null, timestamp | null,
 *               imageDigest, architecture
 * ```
 *
 * Where the values come from, as bootc main computes them (and PR #2205 for `storage`):
 *
 * | | ostree backend (`status.rs`) | composefs backend (`bootc_composefs/status.rs`) |
 * |---|---|---|
 * | deployments | ostree's: BLS `ostree-*.conf` + `run/ostree/staged-deployment` (lib/stores/ostree deployments.ts) | BLS entries naming `composefs=` ids (lib/host composefs_deployments.ts) |
 * | booted | the deployment `proc/cmdline`'s `ostree=` resolves to | the `composefs=` id of `proc/cmdline` |
 * | rollback | first deployment of the booted stateroot neither booted nor staged | first other entry in boot order |
 * | rollbackQueued | rollback listed before booted | default entry does not boot the booted id |
 * | image | origin `container-image-reference` + the deployed commit's `ostree.manifest-digest` / `ostree.container.image-config` | origin + manifest and config read from the composefs repo by `[image] manifest_digest` |
 * | imageDigest | manifest digest | manifest digest (bootc ≥ 1.16.4; before: the config digest) |
 * | version | config label `org.opencontainers.image.version`, else `version` | manifest annotation `org.opencontainers.image.version` |
 * | timestamp | config label `org.opencontainers.image.created`, else config `created` | config `created` |
 * | cachedUpdate | detached commit metadata `ostree-ext.cached.*` | null |
 * | type | `bootcHost` when the booted entry has an image | null (bootc never sets it there) |
 * | usrOverlay | `run/ostree/deployment-state/<name>/unlocked-{development,transient}`, origin `unlocked=hotfix` | `DIR/usr` is a mount point |
 * | storage | present when `bootc.json` says unified ≠ disabled or the repo flag is set | present when `bootc.json` exists; `ostreeComposefsBound` false |
 * | store | `ostreeContainer` | null |
 * | missingVerityAllowed | (no composefs member) | the booted command line's `composefs=?`, for every entry |
 * | downloadOnly | staged and locked (`locked` in the staged a{sv}, or `run/ostree/staged-deployment-locked`) | staged marker `finalization_locked` |
 *
 * `readOnly`: the mount holding `DIR/sysroot` is read-only and so is its block device
 * (`/sys/class/block/<dev>/ro`), bootc's rule for a live ISO (the mount flag alone means
 * nothing on ostree hosts, which mount /sysroot read-only on purpose).
 * `softRebootCapable` is always false (unistore does not evaluate soft reboots).
 *
 * A root with no booted deployment (no `proc/cmdline`, or one naming nothing) has
 * `status.booted: null`, which is how bootc says "not deployed via bootc"; unistore still lists
 * the deployments it found there (staged, and the rest in `otherDeployments`), which bootc never
 * reaches. A root that is not a bootc host at all gives bootc's `Host::default()`.
 *
 * @module
 */

import type { JsonValue } from "../format/canonical_json.ts";
import { ComposefsRepo } from "../stores/composefs/repository.ts";
import { readStoredImage } from "../stores/composefs/oci_image.ts";
import { type Deployment, readDeployments } from "../stores/ostree/deployments.ts";
import { asVariantDict, deserialize, lookupVariant } from "../stores/ostree/gvariant.ts";
import { parseImageCommitMetadata, parseOstreeImageReference } from "../stores/ostree/image.ts";
import type { KeyFile } from "../stores/ostree/keyfile.ts";
import { objectPath } from "../stores/ostree/objects.ts";
import { OstreeRepo } from "../stores/ostree/repo.ts";
import { readKernelCmdline } from "./cmdline.ts";
import { type ComposefsDeployment, listComposefsDeployments } from "./composefs_deployments.ts";
import { HostFileError } from "./errors.ts";
import { readUnifiedFlags } from "./flags.ts";
import { detectHostKind, type HostKindInfo } from "./kind.ts";
import { HOST_PATHS, type HostRoot } from "./root.ts";
import type { UnifiedMode } from "./unified_mode.ts";

/** `apiVersion` of the Host object. Changing it breaks every consumer of `bootc status`. */
export const HOST_API_VERSION = "org.containers.bootc/v1";
/** `kind` of the Host object (bootc `KIND`). */
export const HOST_KIND = "BootcHost";
/** `metadata.name`: there is one host object, named `host` (bootc `OBJECT_NAME`). */
export const HOST_OBJECT_NAME = "host";

/** How an image's signature is verified (bootc `ImageSignature`, serde externally tagged). */
export type ImageSignature = { ostreeRemote: string } | "containerPolicy" | "insecure";

/** bootc `ImageReference`. */
export type ImageReference = {
  /** The image name in its transport, e.g. `quay.io/example/os:42`. */
  image: string;
  /** `registry`, `oci`, `oci-archive`, `containers-storage`, `docker-archive`, `dir`. */
  transport: string;
  /** Left out when unverified (`ostree-unverified-*`). */
  signature?: ImageSignature;
};

/** bootc `ImageStatus`. */
export type ImageStatus = {
  image: ImageReference;
  version: string | null;
  /** RFC 3339 in UTC as chrono writes it (`2024-05-01T10:00:00Z`), or null. */
  timestamp: string | null;
  /** The manifest digest, `sha256:<hex>`. */
  imageDigest: string;
  architecture: string;
};

/** bootc `BootEntryOstree`. */
export type BootEntryOstree = { stateroot: string; checksum: string; deploySerial: number };

/** bootc `Bootloader` (kebab-case). */
export type Bootloader = "grub" | "grub-cc" | "systemd" | "none";

/** bootc `BootEntryComposefs`. `bootType` has no serde rename: `Bls` / `Uki`. */
export type BootEntryComposefs = {
  verity: string;
  bootType: "Bls" | "Uki";
  bootloader: Bootloader;
  bootDigest: string | null;
  missingVerityAllowed: boolean;
};

/** bootc `BootEntry`. */
export type BootcBootEntry = {
  image: ImageStatus | null;
  cachedUpdate: ImageStatus | null;
  incompatible: boolean;
  pinned: boolean;
  softRebootCapable: boolean;
  downloadOnly: boolean;
  store: "ostreeContainer" | null;
  ostree: BootEntryOstree | null;
  composefs: BootEntryComposefs | null;
};

/** bootc `FilesystemOverlay` (state of the overlay on `/usr`). */
export type FilesystemOverlay = {
  accessMode: "readOnly" | "readWrite";
  persistence: "transient" | "persistent";
};

/** bootc PR #2205 `StorageStatus`. */
export type StorageStatus = { unified: UnifiedMode; ostreeComposefsBound: boolean };

/** bootc `HostStatus`. */
export type BootcHostStatus = {
  staged: BootcBootEntry | null;
  booted: BootcBootEntry | null;
  rollback: BootcBootEntry | null;
  /** Left out when empty (serde `skip_serializing_if = "Vec::is_empty"`). */
  otherDeployments?: BootcBootEntry[];
  rollbackQueued: boolean;
  type: "bootcHost" | null;
  usrOverlay: FilesystemOverlay | null;
  readOnly: boolean;
  /** Left out when None (PR #2205). */
  storage?: StorageStatus;
};

/** bootc `Host`. */
export type BootcHost = {
  apiVersion: string;
  kind: string;
  metadata: { name?: string };
  spec: { image: ImageReference | null; bootOrder: "default" | "rollback" };
  status: BootcHostStatus;
};

/** The host status and how it was found. */
export interface HostStatusReport {
  host: BootcHost;
  /** The host kind verdict (`none`: not a bootc host). */
  kind: HostKindInfo;
  /** Things skipped on the way (an entry without origin, ...), one sentence each. */
  warnings: string[];
}

/** The Host of a system not deployed via bootc (bootc `Host::default()`). */
export function notBootcHost(): BootcHost {
  return {
    apiVersion: HOST_API_VERSION,
    kind: HOST_KIND,
    metadata: { name: HOST_OBJECT_NAME },
    spec: { image: null, bootOrder: "default" },
    status: {
      staged: null,
      booted: null,
      rollback: null,
      rollbackQueued: false,
      type: null,
      usrOverlay: null,
      readOnly: false,
    },
  };
}

/** `host` as a JSON value (for canonical JSON and YAML). */
export function hostJson(host: BootcHost): JsonValue {
  return host as unknown as JsonValue;
}

/** A copy of `host` with only the booted slot (bootc `--booted`: staged and rollback cleared). */
export function filterToBooted(host: BootcHost): BootcHost {
  return { ...host, status: { ...host.status, staged: null, rollback: null } };
}

/**
 * Reads the status of the host at `root` (see the module doc for every rule).
 *
 * @throws {HostFileError} for a broken origin, BLS entry, flag file or kernel command line.
 * @throws {OstreeError} / {ComposefsError} when a deployed commit or image is missing from its
 *   store (naming the repository and object).
 * @example
 * ```ts ignore
 * const { host } = await readHostStatus(new HostRoot("/"));
 * host.status.booted?.image?.imageDigest; // "sha256:…"
 * ```
 */
export async function readHostStatus(root: HostRoot): Promise<HostStatusReport> {
  const kind = detectHostKind(root);
  const warnings: string[] = [];
  let host: BootcHost;
  switch (kind.kind) {
    case "ostree":
      host = ostreeHost(root);
      break;
    case "composefs":
      host = await composefsHost(root, warnings);
      break;
    case "none":
      host = notBootcHost();
      break;
  }
  return { host, kind, warnings };
}

function newHost(
  image: ImageReference | null,
  rollbackQueued: boolean,
  status: BootcHostStatus,
): BootcHost {
  return {
    apiVersion: HOST_API_VERSION,
    kind: HOST_KIND,
    metadata: { name: HOST_OBJECT_NAME },
    spec: { image, bootOrder: rollbackQueued ? "rollback" : "default" },
    status,
  };
}

function hostStatus(init: {
  staged: BootcBootEntry | null;
  booted: BootcBootEntry | null;
  rollback: BootcBootEntry | null;
  others: BootcBootEntry[];
  rollbackQueued: boolean;
  type: "bootcHost" | null;
  usrOverlay: FilesystemOverlay | null;
  readOnly: boolean;
  storage: StorageStatus | null;
}): BootcHostStatus {
  // Members in bootc's struct order; the two optional ones only when serde writes them.
  return {
    staged: init.staged,
    booted: init.booted,
    rollback: init.rollback,
    ...(init.others.length > 0 ? { otherDeployments: init.others } : {}),
    rollbackQueued: init.rollbackQueued,
    type: init.type,
    usrOverlay: init.usrOverlay,
    readOnly: init.readOnly,
    ...(init.storage ? { storage: init.storage } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Image references and image metadata

/**
 * bootc's `ImageReference` of an origin's `container-image-reference`
 * (`ostree-unverified-registry:quay.io/x:1` → `{image: "quay.io/x:1", transport: "registry"}`).
 *
 * @throws {OstreeError} when the reference does not parse as ostree-ext's.
 */
export function imageReferenceOf(containerImageReference: string): ImageReference {
  const r = parseOstreeImageReference(containerImageReference);
  const ref: ImageReference = { image: r.name, transport: r.transport };
  if (r.sigverify === "ostree-image-signed") ref.signature = "containerPolicy";
  if (r.sigverify === "ostree-remote-image") ref.signature = { ostreeRemote: r.remote ?? "" };
  return ref;
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * An RFC 3339 timestamp in UTC as bootc serializes it (chrono `DateTime<Utc>`: `Z`, fractional
 * seconds only when not zero, in groups of 3, 6 or 9 digits); null when `text` is not RFC 3339
 * (bootc logs a warning and shows none).
 *
 * @example
 * ```ts
 * bootcTimestamp("2024-05-01T12:00:00+02:00"); // "2024-05-01T10:00:00Z"
 * bootcTimestamp("2024-05-01T10:00:00.5Z");    // "2024-05-01T10:00:00.500Z"
 * ```
 */
export function bootcTimestamp(text: string): string | null {
  const m = RFC3339.exec(text);
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return null;
  let offsetMin = 0;
  if (m[8] !== "Z" && m[8] !== "z") {
    const sign = m[8][0] === "-" ? -1 : 1;
    offsetMin = sign * (Number(m[8].slice(1, 3)) * 60 + Number(m[8].slice(4, 6)));
  }
  const ms = Date.UTC(y, mo - 1, d, h, mi, s) - offsetMin * 60_000;
  if (Number.isNaN(ms)) return null;
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z
  let frac = (m[7] ?? "").slice(0, 9).padEnd(9, "0");
  if (/^0+$/.test(frac)) frac = "";
  else if (frac.endsWith("000000")) frac = frac.slice(0, 3);
  else if (frac.endsWith("000")) frac = frac.slice(0, 6);
  return `${iso.slice(0, 19)}${frac ? `.${frac}` : ""}Z`;
}

type ConfigJson = {
  architecture?: unknown;
  created?: unknown;
  config?: { Labels?: Record<string, unknown> | null } | null;
} | null;

function labelOf(config: ConfigJson, key: string): string | undefined {
  const v = config?.config?.Labels?.[key];
  return typeof v === "string" ? v : undefined;
}

/** bootc `create_imagestatus` (ostree backend) from a manifest digest and a config. */
function ostreeImageStatus(
  image: ImageReference,
  manifestDigest: string,
  config: ConfigJson,
): ImageStatus {
  const created = labelOf(config, "org.opencontainers.image.created") ??
    (typeof config?.created === "string" ? config.created : undefined);
  return {
    image,
    version: labelOf(config, "org.opencontainers.image.version") ?? labelOf(config, "version") ??
      null,
    timestamp: created === undefined ? null : bootcTimestamp(created),
    imageDigest: manifestDigest,
    architecture: typeof config?.architecture === "string" ? config.architecture : "",
  };
}

function parseJsonText(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HostFileError(where, `expected JSON, found a parse error: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// ostree backend

/** ostree-ext's keys for a pending update cached in detached commit metadata. */
const CACHED_MANIFEST_DIGEST = "ostree-ext.cached.manifest-digest";
const CACHED_CONFIG = "ostree-ext.cached.config";

/** Origin groups rpm-ostree adds for local changes bootc cannot represent (`utils.rs`). */
const RPMOSTREE_GROUPS = ["rpmostree", "packages", "overrides", "modules"];

function stringOf(dict: ReturnType<typeof asVariantDict>, key: string): string | undefined {
  const v = lookupVariant(dict, key);
  return v && v.type === "s" ? v.value as string : undefined;
}

/**
 * The pending update ostree-ext cached on `commit` (`bootc upgrade --check`): its manifest
 * digest and config from the detached metadata `objects/XX/…commitmeta`, or null.
 */
function cachedUpdateOf(
  root: HostRoot,
  commit: string,
): { manifestDigest: string; config: ConfigJson } | null {
  const rel = `${HOST_PATHS.ostreeRepo}/objects/${objectPath(commit, "commitmeta")}`;
  const bytes = root.readFile(rel);
  if (bytes === null) return null;
  const dict = asVariantDict(deserialize("a{sv}", bytes), root.path(rel));
  const digest = stringOf(dict, CACHED_MANIFEST_DIGEST);
  if (digest === undefined) return null; // someone else's detached metadata
  const config = stringOf(dict, CACHED_CONFIG);
  if (config === undefined) {
    throw new HostFileError(
      root.path(rel),
      `expected ${CACHED_CONFIG} next to ${CACHED_MANIFEST_DIGEST}, found none`,
    );
  }
  return { manifestDigest: digest, config: parseJsonText(config, root.path(rel)) as ConfigJson };
}

function hasRpmOstreeGroups(origin: KeyFile): boolean {
  const groups = origin.groups();
  return RPMOSTREE_GROUPS.some((g) => groups.includes(g));
}

/** `locked` of `run/ostree/staged-deployment` or the `staged-deployment-locked` flag file. */
function ostreeStagedLocked(root: HostRoot): boolean {
  if (root.exists("run/ostree/staged-deployment-locked")) return true;
  const bytes = root.readFile(HOST_PATHS.ostreeStagedDeployment);
  if (bytes === null) return false;
  const dict = asVariantDict(deserialize("a{sv}", bytes), root.ostreeStagedDeployment);
  const v = lookupVariant(dict, "locked");
  return v?.type === "b" && v.value === true;
}

function ostreeBootEntry(
  root: HostRoot,
  repo: OstreeRepo,
  d: Deployment,
  stagedLocked: boolean,
): BootcBootEntry {
  let image: ImageStatus | null = null;
  let cachedUpdate: ImageStatus | null = null;
  const incompatible = d.origin !== null && hasRpmOstreeGroups(d.origin);
  if (!incompatible && d.containerImageReference !== undefined) {
    const ref = imageReferenceOf(d.containerImageReference);
    const commit = repo.readCommit(d.checksum);
    const meta = parseImageCommitMetadata(
      commit.metadata,
      `${repo.path}: commit ${d.checksum} (deployment ${d.checksum}.${d.serial})`,
    );
    const config = parseJsonText(meta.config, `${repo.path}: commit ${d.checksum}`) as ConfigJson;
    image = ostreeImageStatus(ref, meta.manifestDigest, config);
    const cached = cachedUpdateOf(root, d.checksum);
    if (cached) cachedUpdate = ostreeImageStatus(ref, cached.manifestDigest, cached.config);
  }
  return {
    image,
    cachedUpdate,
    incompatible,
    pinned: d.pinned,
    softRebootCapable: false,
    downloadOnly: d.staged && stagedLocked,
    store: "ostreeContainer",
    ostree: { stateroot: d.stateroot, checksum: d.checksum, deploySerial: d.serial },
    composefs: null,
  };
}

/** libostree's unlocked state of a deployment, as bootc maps it to a /usr overlay. */
function ostreeUsrOverlay(root: HostRoot, d: Deployment): FilesystemOverlay | null {
  const state = `run/ostree/deployment-state/${d.checksum}.${d.serial}`;
  if (root.exists(`${state}/unlocked-development`)) {
    return { accessMode: "readWrite", persistence: "transient" };
  }
  if (root.exists(`${state}/unlocked-transient`)) {
    return { accessMode: "readOnly", persistence: "transient" };
  }
  if (d.unlocked === "hotfix") return { accessMode: "readWrite", persistence: "persistent" };
  return null;
}

function ostreeHost(root: HostRoot): BootcHost {
  const s = readDeployments({ root: root.dir });
  const repo = OstreeRepo.open(root.ostreeRepo);
  try {
    const stagedLocked = s.staged !== null && ostreeStagedLocked(root);
    const entry = (d: Deployment) => ostreeBootEntry(root, repo, d, stagedLocked);
    const booted = s.booted;
    let staged: Deployment | null;
    let rollback: Deployment | null = null;
    let others: Deployment[];
    if (booted) {
      // bootc get_status: the booted stateroot's deployments, staged taken out, then rollback.
      const related = s.deployments.filter((d) => d.stateroot === booted.stateroot);
      staged = related.find((d) => d.staged) ?? null;
      const rest = related.filter((d) => d !== staged && d !== booted);
      rollback = rest.shift() ?? null;
      others = [...rest, ...s.deployments.filter((d) => d.stateroot !== booted.stateroot)];
    } else {
      staged = s.staged;
      others = s.deployments.filter((d) => d !== staged);
    }
    const rollbackQueued = booted !== null && rollback !== null && rollback.index < booted.index;
    const bootedEntry = booted ? entry(booted) : null;
    const stagedEntry = staged ? entry(staged) : null;
    const flags = readUnifiedFlags(root);
    const storage = flags.unified !== "disabled" || flags.ostreeComposefsBound
      ? { unified: flags.unified, ostreeComposefsBound: flags.ostreeComposefsBound }
      : null;
    return newHost(
      (stagedEntry ?? bootedEntry)?.image?.image ?? null,
      rollbackQueued,
      hostStatus({
        staged: stagedEntry,
        booted: bootedEntry,
        rollback: rollback ? entry(rollback) : null,
        others: others.map(entry),
        rollbackQueued,
        type: bootedEntry?.image ? "bootcHost" : null,
        usrOverlay: booted ? ostreeUsrOverlay(root, booted) : null,
        readOnly: sysrootReadOnly(root),
        storage,
      }),
    );
  } finally {
    repo.close();
  }
}

// ---------------------------------------------------------------------------------------------
// composefs backend

/** systemd's Loader interface GUID: `LoaderInfo-<guid>` names the bootloader that ran. */
const LOADER_INFO_EFIVAR =
  "sys/firmware/efi/efivars/LoaderInfo-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/**
 * bootc `get_bootloader`: the EFI variable `LoaderInfo` (4 attribute bytes, then UTF-16LE text)
 * under the root: `systemd-boot …` → systemd, `… GRUB CC …` → grub-cc, other → grub; no
 * variable (not UEFI, or a root that was not booted) → grub.
 */
export function composefsBootloader(root: HostRoot): Bootloader {
  const bytes = root.readFile(LOADER_INFO_EFIVAR);
  if (bytes === null || bytes.length < 4) return "grub";
  const text = new TextDecoder("utf-16le").decode(bytes.subarray(4)).replace(/\0+$/, "")
    .toLowerCase();
  if (text.includes("systemd-boot")) return "systemd";
  if (text.includes("grub cc")) return "grub-cc";
  return "grub";
}

async function composefsImageStatus(
  repo: ComposefsRepo,
  d: ComposefsDeployment,
  originPath: string,
): Promise<ImageStatus | null> {
  const reference = d.origin?.imageReference;
  if (!reference) return null;
  const image = imageReferenceOf(reference);
  const digest = d.origin?.manifestDigest;
  if (!digest) {
    throw new HostFileError(
      originPath,
      "[image] manifest_digest: expected the image's manifest digest, found none " +
        "(deployments older than bootc 1.11 keep a .imginfo file instead, which unistore does not read)",
    );
  }
  const stored = await readStoredImage(repo, digest);
  const created = stored.config.created;
  return {
    image,
    version: stored.manifest.annotations?.["org.opencontainers.image.version"] ?? null,
    timestamp: typeof created === "string" ? bootcTimestamp(created) : null,
    imageDigest: digest,
    architecture: stored.config.architecture ?? "",
  };
}

async function composefsHost(root: HostRoot, warnings: string[]): Promise<BootcHost> {
  const cmdline = readKernelCmdline(root);
  const list = listComposefsDeployments(root, cmdline);
  warnings.push(...list.problems);
  // bootc applies the booted command line's `?` (fs-verity optional) to every entry.
  const missingVerityAllowed = cmdline?.composefs()?.insecure ?? false;
  const bootloader = composefsBootloader(root);
  const repo = await ComposefsRepo.open(root.composefsRepo, { readOnly: true });
  try {
    const entry = async (d: ComposefsDeployment): Promise<BootcBootEntry | null> => {
      const originPath = root.path(`${HOST_PATHS.composefsStateDeploy}/${d.id}/${d.id}.origin`);
      if (d.origin === null) return null; // bootc skips it with a warning; listed in problems
      const bootType = d.origin.bootType?.toLowerCase();
      if (bootType !== "bls" && bootType !== "uki") {
        throw new HostFileError(
          originPath,
          `[boot] boot_type: expected bls or uki, found ${JSON.stringify(d.origin.bootType)}`,
        );
      }
      return {
        image: await composefsImageStatus(repo, d, originPath),
        cachedUpdate: null,
        incompatible: false,
        pinned: false,
        softRebootCapable: false,
        downloadOnly: d.staged && d.downloadOnly,
        store: null,
        ostree: null,
        composefs: {
          verity: d.id,
          bootType: bootType === "bls" ? "Bls" : "Uki",
          bootloader,
          bootDigest: d.origin.bootDigest,
          missingVerityAllowed,
        },
      };
    };
    const booted = list.booted ? await entry(list.booted) : null;
    const staged = list.staged ? await entry(list.staged) : null;
    const rollback = list.rollback ? await entry(list.rollback) : null;
    const others: BootcBootEntry[] = [];
    // bootc's other deployments come from the boot menu only, not entries.staged leftovers.
    for (const d of list.others.filter((d) => !d.entry.staged)) {
      const e = await entry(d);
      if (e) others.push(e);
    }
    const meta = readUnifiedFlags(root).bootcJson;
    return newHost(
      (staged ?? booted)?.image?.image ?? null,
      list.rollbackQueued,
      hostStatus({
        staged,
        booted,
        rollback,
        others,
        rollbackQueued: list.rollbackQueued,
        type: null,
        usrOverlay: composefsUsrOverlay(root),
        readOnly: sysrootReadOnly(root),
        storage: meta ? { unified: meta.unified, ostreeComposefsBound: false } : null,
      }),
    );
  } finally {
    repo.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Mounts: /usr overlay (composefs) and a read-only physical root

/** One line of /proc/self/mountinfo. */
interface MountInfo {
  mountPoint: string;
  /** `maj:min` of the filesystem. */
  dev: string;
  readOnly: boolean;
  fsType: string;
  source: string;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function readMountInfo(): MountInfo[] {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/self/mountinfo");
  } catch {
    return []; // no /proc: nothing is known to be mounted
  }
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    const dash = f.indexOf("-");
    if (f.length < 10 || dash < 6) continue;
    out.push({
      mountPoint: unescapeMount(f[4]),
      dev: f[2],
      readOnly: f[5].split(",").includes("ro"),
      fsType: f[dash + 1],
      source: unescapeMount(f[dash + 2]),
    });
  }
  return out;
}

function realPathOrNull(path: string): string | null {
  try {
    return Deno.realPathSync(path);
  } catch {
    return null;
  }
}

/** The mount that holds `path` (the last mounted on the longest matching mount point). */
function mountHolding(path: string, mounts: MountInfo[]): MountInfo | null {
  let best: MountInfo | null = null;
  for (const m of mounts) {
    const p = m.mountPoint;
    const holds = p === "/" || path === p || path.startsWith(`${p}/`);
    if (holds && (best === null || p.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

function blockDeviceReadOnly(m: MountInfo): boolean {
  const candidates: string[] = [];
  if (m.source.startsWith("/dev/")) {
    candidates.push(`/sys/class/block/${m.source.slice(m.source.lastIndexOf("/") + 1)}/ro`);
  }
  candidates.push(`/sys/dev/block/${m.dev}/ro`);
  for (const c of candidates) {
    try {
      return Deno.readTextFileSync(c).trim() === "1";
    } catch { /* not a block device we can see */ }
  }
  return false;
}

/**
 * bootc `readOnly`: the physical root `DIR/sysroot` is on a read-only mount whose block device
 * is read-only too (a live ISO). Kernel state, so read from this machine's /proc and /sys.
 */
export function sysrootReadOnly(root: HostRoot): boolean {
  const path = realPathOrNull(root.sysroot);
  if (path === null) return false;
  const m = mountHolding(path, readMountInfo());
  return m !== null && m.readOnly && blockDeviceReadOnly(m);
}

/**
 * bootc `get_composefs_usr_overlay_status`: when `DIR/usr` is a mount point, an overlay is on
 * /usr: read-only or read/write as mounted, always transient.
 */
export function composefsUsrOverlay(root: HostRoot): FilesystemOverlay | null {
  const path = realPathOrNull(root.path("usr"));
  if (path === null) return null;
  const mounts = readMountInfo().filter((m) => m.mountPoint === path);
  const top = mounts.at(-1);
  if (!top) return null;
  return { accessMode: top.readOnly ? "readOnly" : "readWrite", persistence: "transient" };
}
