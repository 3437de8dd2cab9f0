/**
 * The `[core]` settings of an ostree repository's `config` file that change how objects are
 * written (mode, fsync, locking, xattrs).
 *
 * Spec: ../../../../shared/specs/ostree-repo.md §1.1 (keys and defaults, as libostree's
 * `reload_core_config` reads them).
 *
 * @module
 */

import { RepoConfigError } from "./errors.ts";
import { KeyFile, KeyFileError } from "./keyfile.ts";

/** Repository modes, spelled as in `config` (`archive-z2` is read as `archive`). */
export type RepoMode = "bare" | "bare-user" | "bare-user-only" | "bare-split-xattrs" | "archive";

const MODES: Record<string, RepoMode> = {
  bare: "bare",
  "bare-user": "bare-user",
  "bare-user-only": "bare-user-only",
  "bare-split-xattrs": "bare-split-xattrs",
  archive: "archive",
  "archive-z2": "archive",
};

/** What unistore needs from `config`. */
export interface RepoConfig {
  mode: RepoMode;
  /** `core.fsync` (default true): false gives up crash safety, as in libostree. */
  fsync: boolean;
  /** `core.per-object-fsync` (default false). */
  perObjectFsync: boolean;
  /** `core.disable-xattrs` (default false): bare mode then stores and hashes no xattrs. */
  disableXattrs: boolean;
  /** `core.locking` (default true). */
  locking: boolean;
  /** `core.lock-timeout-secs` (default 300). */
  lockTimeoutSecs: number;
  /** The whole file, for callers that read or edit other keys (unknown keys are kept). */
  keyfile: KeyFile;
}

/** Default of `core.lock-timeout-secs` in libostree. */
export const DEFAULT_LOCK_TIMEOUT_SECS = 300;

/**
 * Parses `config` text. `repoPath` names the repository in errors.
 *
 * @throws {RepoConfigError} when `repo_version` is not 1, the mode is unknown, the legacy
 *   `archive=true` key is set (libostree refuses it too), or a value does not parse.
 * @example
 * ```ts
 * parseRepoConfig("[core]\nrepo_version=1\nmode=bare-user\n", "/repo").mode; // "bare-user"
 * ```
 */
export function parseRepoConfig(text: string, repoPath: string): RepoConfig {
  try {
    const kf = KeyFile.parse(text, `${repoPath}/config`);
    const version = kf.getString("core", "repo_version");
    if (version === undefined) {
      throw new RepoConfigError(repoPath, "config has no [core] repo_version");
    }
    if (version.trim() !== "1") {
      throw new RepoConfigError(repoPath, `repo_version is ${JSON.stringify(version)}, expected 1`);
    }
    if (kf.getBoolean("core", "archive") === true) {
      throw new RepoConfigError(repoPath, "legacy key archive=true is not supported (use mode=)");
    }
    const modeText = kf.getString("core", "mode")?.trim() ?? "bare";
    const mode = MODES[modeText];
    if (!mode) throw new RepoConfigError(repoPath, `config names an unknown mode "${modeText}"`);
    const timeout = kf.getInteger("core", "lock-timeout-secs") ?? DEFAULT_LOCK_TIMEOUT_SECS;
    return {
      mode,
      fsync: kf.getBoolean("core", "fsync") ?? true,
      perObjectFsync: kf.getBoolean("core", "per-object-fsync") ?? false,
      disableXattrs: kf.getBoolean("core", "disable-xattrs") ?? false,
      locking: kf.getBoolean("core", "locking") ?? true,
      lockTimeoutSecs: timeout,
      keyfile: kf,
    };
  } catch (e) {
    if (e instanceof KeyFileError) throw new RepoConfigError(repoPath, e.message);
    throw e;
  }
}
