/**
 * The two persistent unified-storage flags and the binding state they give (spec
 * bootc-unified-storage.md §4):
 *
 * 1. ostree repo `config`, `[composefs] unified=true`: ostree ↔ composefs **binding**
 *    (written by `set-unified composefs`; read here, written by the ostree store);
 * 2. `sysroot/composefs/bootc.json`: containers-storage **participation** (bootc
 *    `BootcRepoMeta`, written last by `set-unified full` and by install with
 *    `[install.storage]`). serde_json `to_string_pretty` output, no trailing newline:
 *
 *    ```json
 *    {
 *      "version": 1,
 *      "unified": "enabled-with-copy"
 *    }
 *    ```
 *
 * BindingState = classify(bound = repo flag ∨ participation, participation):
 *
 * | repo flag | bootc.json unified ≠ disabled | state |
 * |---|---|---|
 * | no | no | `disabled` |
 * | yes | no | `bound-only` |
 * | any | yes | `unified` |
 *
 * @module
 */

import { close } from "../../ffi/fs.ts";
import { replaceFileAt } from "../../ffi/replace.ts";
import { faultPoint } from "../fault/fault_point.ts";
import { KeyFile, KeyFileError } from "../stores/ostree/keyfile.ts";
import { OstreeRepo } from "../stores/ostree/repo.ts";
import { HostFileError } from "./errors.ts";
import { HOST_PATHS, type HostRoot } from "./root.ts";
import { isUnifiedMode, UNIFIED_MODES, type UnifiedMode } from "./unified_mode.ts";

/** The content of `composefs/bootc.json`. */
export interface BootcRepoMeta {
  /** Schema version; 1 is the only one bootc writes. */
  version: number;
  unified: UnifiedMode;
}

/**
 * `bootc.json`'s schema version. bootc treats the file as version 1; a reader meeting a
 * higher number must refuse it rather than guess (its meaning may have changed).
 */
export const BOOTC_JSON_VERSION = 1;

/** The binding state (bootc `BindingState`), spelled as in `fsck images --json`. */
export type BindingState = "disabled" | "bound-only" | "unified";

/** Group and key of the binding flag in the ostree repo `config` (bootc `COMPOSEFS_CONFIG_*`). */
export const OSTREE_COMPOSEFS_GROUP = "composefs";
export const OSTREE_COMPOSEFS_UNIFIED_KEY = "unified";

/**
 * The exact bytes bootc writes for `mode`: serde_json pretty-printing (2-space indent, `": "`),
 * fields in struct order, no trailing newline.
 */
export function formatBootcJson(mode: UnifiedMode): string {
  return `{\n  "version": ${BOOTC_JSON_VERSION},\n  "unified": ${JSON.stringify(mode)}\n}`;
}

/**
 * Parses `bootc.json` text as bootc does (missing fields take their defaults: version 0 is
 * read as 1, unified `disabled`; unknown fields are ignored). `path` names the file in errors.
 *
 * @throws {HostFileError} for text that is not a JSON object, a `unified` outside the three
 *   modes, or a `version` other than 1.
 */
export function parseBootcJson(text: string, path: string): BootcRepoMeta {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new HostFileError(path, `expected JSON, found a parse error: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new HostFileError(path, `expected a JSON object, found ${JSON.stringify(v)}`);
  }
  const o = v as Record<string, unknown>;
  const version = o.version ?? 0;
  if (version !== 0 && version !== BOOTC_JSON_VERSION) {
    throw new HostFileError(
      path,
      `version: expected ${BOOTC_JSON_VERSION}, found ${JSON.stringify(version)}`,
    );
  }
  const unified = o.unified ?? "disabled";
  if (!isUnifiedMode(unified)) {
    throw new HostFileError(
      path,
      `unified: expected one of ${UNIFIED_MODES.map((m) => JSON.stringify(m)).join(", ")}, found ${
        JSON.stringify(unified)
      }`,
    );
  }
  return { version: BOOTC_JSON_VERSION, unified };
}

/**
 * Reads `DIR/sysroot/composefs/bootc.json`; null when it does not exist (unified storage never
 * enabled).
 *
 * @throws {HostFileError} naming the file when it exists but is broken.
 */
export function readBootcJson(root: HostRoot): BootcRepoMeta | null {
  const bytes = root.readFile(HOST_PATHS.bootcJson);
  if (bytes === null) return null;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    throw new HostFileError(root.bootcJson, "expected UTF-8 JSON", { cause: e });
  }
  return parseBootcJson(text, root.bootcJson);
}

/** Name of the file `bootc.json` goes through before the rename (bootc uses `bootc.json.tmp`). */
const BOOTC_JSON_NAME = "bootc.json";

/**
 * Writes `DIR/sysroot/composefs/bootc.json` with `mode`, atomically (ffi/replace.ts): a
 * fsynced temp file in the same dir renamed over `bootc.json`, then the dir fsynced. Readers see the old file or the new one, never a part; a failure leaves the old
 * file as it was and no temporary file behind. The composefs dir must exist (bootc's rule:
 * it is the composefs repository, created with mode 0700 by whoever creates the repo).
 *
 * @throws {HostFileError} when the composefs dir is missing.
 * @throws {SysError} for a failed write (EROFS, ENOSPC, ...), naming the call and file.
 */
export function writeBootcJson(root: HostRoot, mode: UnifiedMode): void {
  const dirfd = root.openDir(HOST_PATHS.composefsRepo);
  if (dirfd === null) {
    throw new HostFileError(
      root.composefsRepo,
      "expected the composefs repository dir, found none",
    );
  }
  try {
    replaceFileAt(dirfd, BOOTC_JSON_NAME, new TextEncoder().encode(formatBootcJson(mode)), {
      mode: 0o644,
    });
    faultPoint("host.bootc-json-written");
  } finally {
    close(dirfd);
  }
}

/**
 * The binding flag `[composefs] unified` of the ostree repo `config` at
 * `DIR/sysroot/ostree/repo/config`; false when there is no repo, no group or no key (bootc
 * `ostree_composefs_bound`).
 *
 * @throws {HostFileError} naming the config when it does not parse or the value is not a
 *   boolean.
 */
export function readOstreeComposefsBound(root: HostRoot): boolean {
  const rel = `${HOST_PATHS.ostreeRepo}/config`;
  const text = root.readText(rel);
  if (text === null) return false;
  try {
    const kf = KeyFile.parse(text, root.path(rel));
    return kf.getBoolean(OSTREE_COMPOSEFS_GROUP, OSTREE_COMPOSEFS_UNIFIED_KEY) ?? false;
  } catch (e) {
    if (e instanceof KeyFileError) throw new HostFileError(root.path(rel), e.message, { cause: e });
    throw e;
  }
}

/**
 * Writes the binding flag `[composefs] unified=true` into the host's ostree repo `config`
 * (bootc `set_ostree_composefs_bound`), atomically and keeping every other line of the file.
 *
 * @throws {RepoConfigError} when the repo has no valid config.
 */
export async function writeOstreeComposefsBound(root: HostRoot): Promise<void> {
  using repo = OstreeRepo.open(root.ostreeRepo);
  await repo.updateConfig((kf) =>
    kf.setBoolean(OSTREE_COMPOSEFS_GROUP, OSTREE_COMPOSEFS_UNIFIED_KEY, true)
  );
  faultPoint("host.ostree-bound-written");
}

/**
 * bootc's `classify_binding`: the binding state from the repo flag and `bootc.json`. The OR is
 * bootc's backward compatibility: hosts onboarded before the repo flag existed have only
 * `bootc.json`, and participation implies the binding.
 */
export function classifyBinding(repoFlag: boolean, meta: BootcRepoMeta | null): BindingState {
  const cstorage = meta !== null && meta.unified !== "disabled";
  const bound = repoFlag || cstorage;
  return !bound ? "disabled" : cstorage ? "unified" : "bound-only";
}

/** Both flags of a host and the state they give. */
export interface UnifiedFlags {
  /** `[composefs] unified` in the ostree repo config (false on native composefs hosts). */
  ostreeComposefsBound: boolean;
  /** `bootc.json`, or null when absent. */
  bootcJson: BootcRepoMeta | null;
  /** `bootc.json`'s mode, `disabled` when absent (status `storage.unified`). */
  unified: UnifiedMode;
  binding: BindingState;
}

/**
 * Reads both flags of `root` and classifies them.
 *
 * @throws {HostFileError} when either file is broken.
 */
export function readUnifiedFlags(root: HostRoot): UnifiedFlags {
  const ostreeComposefsBound = readOstreeComposefsBound(root);
  const bootcJson = readBootcJson(root);
  return {
    ostreeComposefsBound,
    bootcJson,
    unified: bootcJson?.unified ?? "disabled",
    binding: classifyBinding(ostreeComposefsBound, bootcJson),
  };
}
