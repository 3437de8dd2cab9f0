/**
 * Deployments of a native composefs host (bootc's composefs backend), as bootc's
 * `composefs_deployment_status_from` derives them (spec bootc-unified-storage.md §8.1, §9.3):
 *
 * - the **bootloader entries are the source of truth**: every BLS entry in `loader/entries`
 *   and `loader/entries.staged` whose `composefs=` karg (or UKI name) names a deployment id;
 * - each deployment's state is `sysroot/state/deploy/<id>/`, with `<id>.origin`, an INI file
 *   written by bootc with `tini`:
 *
 *   ```ini
 *   [origin]
 *   container-image-reference=ostree-unverified-image:docker://quay.io/org/os:tag
 *   [boot]
 *   boot_type=bls
 *   digest=<sha256 of vmlinuz+initrd>
 *   [image]
 *   manifest_digest=sha256:<hex>
 *   ```
 *   (spacing around `=` is not fixed: keys and values are trimmed);
 * - **booted** = the entry whose id the kernel command line names (`composefs=`, or
 *   `composefs.digest=`);
 * - **staged** = the entry whose id `run/composefs/staged-deployment` names, a JSON object
 *   `{"depl_id": "<id>", "finalization_locked": <bool>}` (bootc `StagedDeployment`);
 * - **rollback** = the other entry of `loader/entries`: neither booted nor staged (bootc
 *   refuses more than one candidate; here the first in BLS order wins and the rest are listed
 *   in `others`, with a problem noted);
 * - **rollbackQueued** = the default (first) entry does not boot the booted deployment.
 *
 * ostree-backend deployments come from the ostree store (`lib/stores/ostree/`).
 *
 * @module
 */

import { KeyFile, KeyFileError } from "../stores/ostree/keyfile.ts";
import { type BlsEntry, entryDeployment, listBlsEntries } from "./bls.ts";
import { type KernelCmdline, readKernelCmdline } from "./cmdline.ts";
import { HostFileError } from "./errors.ts";
import { HOST_PATHS, type HostRoot } from "./root.ts";

/** A composefs deployment's `.origin` file. */
export interface ComposefsOrigin {
  /** `[origin] container-image-reference`, e.g. `ostree-unverified-image:docker://...`. */
  imageReference: string | null;
  /** `[boot] boot_type`: `bls` or `uki` (as written; bootc refuses others). */
  bootType: string | null;
  /** `[boot] digest`: sha256 of kernel + initrd, for soft-reboot checks. */
  bootDigest: string | null;
  /** `[image] manifest_digest`, `sha256:<hex>`: how bootc finds the image in composefs. */
  manifestDigest: string | null;
  /** The whole file, for keys not named here. */
  keyfile: KeyFile;
}

/** The staged-deployment marker `run/composefs/staged-deployment`. */
export interface ComposefsStagedMarker {
  /** The staged deployment's id (`depl_id`). */
  deploymentId: string;
  /** `finalization_locked`: staged with `--download-only`, not applied at shutdown. */
  finalizationLocked: boolean;
}

/** One deployment. */
export interface ComposefsDeployment {
  /** The EROFS image's fs-verity digest, hex: the name of its state dir and its `composefs=`. */
  id: string;
  /** The boot entry naming it (from `loader/entries`, or `entries.staged` when only there). */
  entry: BlsEntry;
  /** `sysroot/state/deploy/<id>` on this machine. */
  stateDir: string;
  /** The origin, or null when `<id>.origin` is missing (a problem is recorded). */
  origin: ComposefsOrigin | null;
  /** The entry's karg had `?`: fs-verity is optional for this image. */
  missingVerityAllowed: boolean;
  booted: boolean;
  staged: boolean;
  /** `finalization_locked` of the staged marker (false unless staged). */
  downloadOnly: boolean;
}

/** Every deployment of a composefs host, in its role. */
export interface ComposefsDeployments {
  booted: ComposefsDeployment | null;
  staged: ComposefsDeployment | null;
  rollback: ComposefsDeployment | null;
  /** Entries that are neither booted, staged nor rollback. */
  others: ComposefsDeployment[];
  /** Every deployment named by an entry: `loader/entries` in BLS order, then staged-only ones. */
  all: ComposefsDeployment[];
  /** The default entry does not boot the booted deployment (false when nothing is booted). */
  rollbackQueued: boolean;
  /** State dirs under `sysroot/state/deploy` no entry names (garbage for bootc's GC). */
  orphanStateDirs: string[];
  /** Inconsistencies found (missing origin, stale staged marker, several rollbacks). */
  problems: string[];
}

/**
 * Parses a composefs `.origin` file; `path` names it in errors.
 *
 * @throws {HostFileError} for a line that is neither `[group]`, `key=value` nor a comment.
 */
export function parseComposefsOrigin(text: string, path: string): ComposefsOrigin {
  let kf: KeyFile;
  try {
    kf = KeyFile.parse(text, path);
  } catch (e) {
    // KeyFileError messages already start with the path.
    if (e instanceof KeyFileError) {
      throw new HostFileError(path, e.message.replace(`${path}:`, "line "), { cause: e });
    }
    throw e;
  }
  const get = (group: string, key: string) => kf.getRaw(group, key)?.trim() ?? null;
  return {
    imageReference: get("origin", "container-image-reference"),
    bootType: get("boot", "boot_type"),
    bootDigest: get("boot", "digest"),
    manifestDigest: get("image", "manifest_digest"),
    keyfile: kf,
  };
}

/**
 * Parses the staged-deployment marker JSON; `path` names it in errors.
 *
 * @throws {HostFileError} unless it is an object with a string `depl_id` and a boolean
 *   `finalization_locked`.
 */
export function parseComposefsStagedMarker(text: string, path: string): ComposefsStagedMarker {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new HostFileError(path, `expected JSON, found a parse error: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const o = v as Record<string, unknown>;
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new HostFileError(path, `expected a JSON object, found ${JSON.stringify(v)}`);
  }
  if (typeof o.depl_id !== "string" || o.depl_id === "") {
    throw new HostFileError(
      path,
      `depl_id: expected a deployment id string, found ${JSON.stringify(o.depl_id)}`,
    );
  }
  if (typeof o.finalization_locked !== "boolean") {
    throw new HostFileError(
      path,
      `finalization_locked: expected true or false, found ${JSON.stringify(o.finalization_locked)}`,
    );
  }
  return { deploymentId: o.depl_id, finalizationLocked: o.finalization_locked };
}

/** Reads `DIR/run/composefs/staged-deployment`; null when there is none. */
export function readComposefsStagedMarker(root: HostRoot): ComposefsStagedMarker | null {
  const text = root.readText(HOST_PATHS.composefsStagedDeployment);
  return text === null ? null : parseComposefsStagedMarker(text, root.composefsStagedDeployment);
}

/** Reads `sysroot/state/deploy/<id>/<id>.origin`; null when it does not exist. */
export function readComposefsOrigin(root: HostRoot, id: string): ComposefsOrigin | null {
  const rel = `${HOST_PATHS.composefsStateDeploy}/${id}/${id}.origin`;
  const text = root.readText(rel);
  return text === null ? null : parseComposefsOrigin(text, root.path(rel));
}

/**
 * The deployments of the composefs host at `root` (see the module doc for the rules).
 * `cmdline` defaults to `DIR/proc/cmdline`; without one nothing is booted, so there is no
 * rollback either and every non-staged entry is in `others`.
 *
 * @throws {HostFileError} for a broken origin, staged marker, BLS entry or karg.
 * @example
 * ```ts
 * const d = listComposefsDeployments(new HostRoot("/"));
 * d.booted?.origin?.imageReference; // "ostree-unverified-image:docker://quay.io/org/os:tag"
 * ```
 */
export function listComposefsDeployments(
  root: HostRoot,
  cmdline: KernelCmdline | null = readKernelCmdline(root),
): ComposefsDeployments {
  const problems: string[] = [];
  const bootedIds = new Set(cmdline?.composefsDigests() ?? []);
  const marker = readComposefsStagedMarker(root);

  const byId = new Map<string, ComposefsDeployment>();
  const mainIds: string[] = [];
  const add = (entry: BlsEntry): string | null => {
    const ref = entryDeployment(entry);
    if (ref.kind !== "composefs") return null;
    const id = ref.karg.digest;
    if (!byId.has(id)) {
      const origin = readComposefsOrigin(root, id);
      if (origin === null) {
        problems.push(
          `${entry.path} boots ${id}, which has no ${
            root.path(`${HOST_PATHS.composefsStateDeploy}/${id}/${id}.origin`)
          }`,
        );
      }
      const staged = marker?.deploymentId === id;
      byId.set(id, {
        id,
        entry,
        stateDir: root.path(`${HOST_PATHS.composefsStateDeploy}/${id}`),
        origin,
        missingVerityAllowed: ref.karg.insecure,
        booted: bootedIds.has(id),
        staged,
        downloadOnly: staged && marker!.finalizationLocked,
      });
    }
    return id;
  };
  const mainEntries = listBlsEntries(root);
  for (const e of mainEntries) {
    const id = add(e);
    if (id !== null && !mainIds.includes(id)) mainIds.push(id);
  }
  for (const e of listBlsEntries(root, { staged: true })) add(e);

  const all = [...byId.values()];
  const booted = all.find((d) => d.booted) ?? null;
  const staged = all.find((d) => d.staged && !d.booted) ?? null;
  if (marker && !staged) {
    problems.push(
      `${root.composefsStagedDeployment} names ${marker.deploymentId}, ` +
        (booted?.id === marker.deploymentId
          ? "the booted deployment"
          : "which no boot entry boots"),
    );
  }
  const candidates = booted === null
    ? []
    : mainIds.map((id) => byId.get(id)!).filter((d) => !d.booted && !d.staged);
  const rollback = candidates[0] ?? null;
  if (candidates.length > 1) {
    problems.push(
      `several entries could be the rollback (${
        candidates.map((d) => d.entry.name).join(", ")
      }); ` +
        `taking ${rollback!.entry.name}, the first in boot order`,
    );
  }
  const others = all.filter((d) => d !== booted && d !== staged && d !== rollback);

  const defaultId = mainEntries.map((e) => entryDeployment(e)).find((r) => r.kind === "composefs");
  const rollbackQueued = booted !== null && defaultId?.kind === "composefs" &&
    defaultId.karg.digest !== booted.id;

  const stateNames = root.listDir(HOST_PATHS.composefsStateDeploy) ?? [];
  const orphanStateDirs = stateNames.map((e) => e.name).filter((n) => !byId.has(n)).sort();

  return { booted, staged, rollback, others, all, rollbackQueued, orphanStateDirs, problems };
}
