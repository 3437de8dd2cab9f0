/**
 * Naming a staged file as a composefs object: `objects/XX/<rest>` under its id, never replacing
 * an object of that id (specs/composefs-repo.md §1.1), on whichever thread staged the file.
 * {@linkcode ComposefsRepo.linkStaged} is this plus the crash tests' fault point; the import's
 * digest worker (lib/pipeline/layer_digest_worker.ts), which has no repository object, names
 * the copies it stages with it too.
 *
 * @module
 */

import { ensureDirAt } from "../../../ffi/fs.ts";
import { discardClone, linkNoReplace, type TmpClone } from "../../reflink/place.ts";
import { type ObjectId, objectPathname } from "./object_id.ts";

/**
 * Mode of `objects/XX/`, `streams/refs/…` and other directories the writer creates
 * (composefs-rs creates them 0755 too; another mode would not break readers).
 */
export const DIR_MODE = 0o755;

/** How an object got into the repository: linked new, or found there (the staged file dropped). */
export type ObjectOutcome = "written" | "already-present";

/**
 * Links `tmp` as object `id` in `objects/` (`objectsDirfd`) unless an object of that id exists,
 * creating `XX/` first unless `prefixes` (the caller's memo of the ones it made) has it. An
 * existing object of another size than `tmp` is replaced: that is what a power cut leaves of
 * an object linked before its data reached the disk, and its name promises these bytes. Always
 * releases the staged file (fd closed, temporary name removed).
 *
 * @example
 * ```ts ignore
 * const prefixes = new Set<string>();
 * linkObjectAt(objectsDirfd, staged, id, prefixes); // "written", or "already-present"
 * ```
 */
export function linkObjectAt(
  objectsDirfd: number,
  tmp: TmpClone,
  id: ObjectId,
  prefixes: Set<string>,
): ObjectOutcome {
  try {
    // No stat first: the no-replace link answers "exists" itself, and an import links tens of
    // thousands of objects; only an existing one is stat'ed (in linkNoReplace).
    const prefix = id.slice(0, 2);
    if (!prefixes.has(prefix)) {
      ensureDirAt(objectsDirfd, prefix, DIR_MODE);
      prefixes.add(prefix);
    }
    const r = linkNoReplace(tmp, objectsDirfd, objectPathname(id), { replaceWrongSize: true });
    // linkNoReplace closed the fd and removed a leftover name: nothing left to release.
    tmp.fd = -1;
    tmp.tmpName = undefined;
    return r === "exists" ? "already-present" : "written";
  } finally {
    releaseStaged(tmp);
  }
}

/**
 * Closes a staged file and removes its temporary name, once: the fields are cleared so a
 * second call (from an outer error handler) cannot close an fd number reused meanwhile.
 */
export function releaseStaged(tmp: TmpClone): void {
  if (tmp.fd < 0 && tmp.tmpName === undefined) return;
  discardClone(tmp);
  tmp.fd = -1;
  tmp.tmpName = undefined;
}
