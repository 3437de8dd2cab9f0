/**
 * `unistore fsck [images] [--repair] [--json] [--deep]`: checks that the host's images are in
 * every store unified storage puts them in, whole and reachable, and repairs what composefs can
 * rebuild (lib/pipeline/fsck_images.ts does the work; spec
 * ../../../shared/specs/bootc-unified-storage.md §6).
 *
 * Output, as bootc PR #2205 prints it with the program name `unistore fsck`:
 *
 * ```
 * unistore fsck: checking image stores
 *   [OK]  quay.io/example/os:42 (composefs: yes, containers-storage: yes)
 *   [FAIL] quay.io/example/os:41 - in composefs but not in containers-storage
 *          Hint: re-run with `--repair` to restore, or `unistore upgrade` to re-pull
 *   [PENDING] quay.io/example/os:42 (bound; deployment not yet composefs-synthesized ...)
 *   [NOTE] localhost/bootc-sha256:… (stale composefs tag, not a live deployment)
 * unistore fsck: all checks passed (1 image(s) OK)
 * unistore fsck: 1 failure(s) found (1 OK, 1 FAIL)
 * ```
 *
 * With `--repair` each repair is announced (`[REPAIR] …`) and its outcome follows
 * (`[REPAIRED] …` or `[REPAIR FAILED] <name>: <error>`); the image lines then say how the
 * stores are after the repairs. `--json` prints bootc's `FsckReport` (pretty-printed, camelCase)
 * and nothing else on stdout.
 *
 * Exit codes (fsck(8)): 0 clean, 1 everything found was repaired, 4 problems left, 8 operational
 * error, 16 usage.
 *
 * @module
 */

import { HostRoot } from "../host/root.ts";
import {
  type FsckImageEntry,
  fsckImages,
  type FsckImagesRun,
  type FsckRepairStep,
} from "../pipeline/fsck_images.ts";
import { parseCommandArgs } from "./args.ts";
import { type Command, formatHelp, UsageError } from "./context.ts";

/** The prefix of every summary line (bootc prints `bootc fsck`). */
const PROGRAM = "unistore fsck";

/** fsck(8)'s usage exit code. */
export const FSCK_USAGE_EXIT = 16;

const HELP = {
  usage: "unistore fsck [images] [--repair] [--json] [--deep]",
  summary: "Checks the image stores (composefs, containers-storage, ostree) and repairs them.",
  details: `For every image composefs tags and every image a boot entry reaches (identity: the
config digest): in composefs with every stream and object, tagged localhost/bootc-<manifest
digest> when live, in bootc's containers-storage (binding "unified"), an ostree commit
synthesized from composefs (ostree hosts). Images no boot entry reaches get a note; a bound
host still booted into a commit ostree pulled is pending (no failure).

  --deep     re-hash content: every composefs object and layer, every containers-storage
             layer (tar-split against its diff-digest), every object of the ostree commits
  --repair   remove dangling composefs tags, restore bootc tags, rebuild containers-storage
             images from composefs by reflink, re-synthesize ostree commits; then check again
             (bound-only hosts: tags only; containers-storage is never created there)
  --json     bootc's FsckReport: {"unifiedStorageEnabled", "binding", "reflinksSupported",
             "images": [{"name", "inComposefs", "inContainersStorage", "repaired",
             "ostreeCommitPresent", "ostreeCommitSynthesized", "isLive", "pending",
             "issues"}], "ok"}

exit codes (fsck(8)): 0 clean, 1 all problems repaired, 4 problems left, 8 operational
error, 16 usage`,
};

const REPAIR_HINT =
  "         Hint: re-run with `--repair` to restore, or `unistore upgrade` to re-pull";
const REMOVE_HINT = "         Hint: re-run with `--repair` to remove it";
const NO_REPAIR_HINT =
  "         Hint: not repairable from composefs; `unistore upgrade` re-pulls the image";

function yesNo(b: boolean): string {
  return b ? "yes" : "no";
}

function repairLines(r: FsckRepairStep): string[] {
  switch (r.action) {
    case "export-to-containers-storage":
      return [
        `  [REPAIR] Restoring ${r.image} to containers-storage...`,
        r.ok
          ? `  [REPAIRED] Successfully restored ${r.image} to containers-storage: ${r.detail}`
          : `  [REPAIR FAILED] ${r.image}: ${r.detail}`,
      ];
    case "restore-bootc-tag":
      return [
        `  [REPAIR] Re-tagging ${r.image} in composefs repo as ${r.target}...`,
        r.ok
          ? `  [REPAIRED] Re-tagged ${r.image} successfully`
          : `  [REPAIR FAILED] ${r.image}: ${r.detail}`,
      ];
    case "remove-dangling-tag":
      return [
        `  [REPAIR] Removing dangling composefs tag ${r.target}...`,
        r.ok
          ? `  [REPAIRED] Removed dangling composefs tag ${r.target}`
          : `  [REPAIR FAILED] ${r.image}: ${r.detail}`,
      ];
    case "synthesize-ostree-commit":
      return [
        `  [REPAIR] Synthesizing the ostree commit of ${r.image} from composefs...`,
        r.ok
          ? `  [REPAIRED] Synthesized ostree ${r.detail}`
          : `  [REPAIR FAILED] ${r.image}: ${r.detail}`,
      ];
  }
}

function imageLines(e: FsckImageEntry, binding: string, repairing: boolean): string[] {
  const name = e.result.name;
  switch (e.status) {
    case "ok":
      return [
        binding === "bound-only"
          ? `  [OK]  ${name} (composefs: ${yesNo(e.result.inComposefs)}, bound-only)`
          : `  [OK]  ${name} (composefs: ${yesNo(e.result.inComposefs)}, containers-storage: ${
            yesNo(e.result.inContainersStorage)
          })`,
      ];
    case "pending":
      return [
        `  [PENDING] ${name} (bound; deployment not yet composefs-synthesized ` +
        `— upgrade and reboot to activate)`,
      ];
    case "note":
      return [`  [NOTE] ${name} (stale composefs tag, not a live deployment)`];
    case "fail": {
      const lines = e.problems.map((p) => `  [FAIL] ${name} - ${p.text}`);
      // After --repair a repairable problem still there failed to repair: its error was shown.
      const repairs = e.problems.filter((p) => p.repair !== null);
      if (!repairing && repairs.length > 0) {
        lines.push(
          repairs.every((p) => p.repair === "remove-dangling-tag") ? REMOVE_HINT : REPAIR_HINT,
        );
      }
      if (e.problems.some((p) => p.repair === null)) lines.push(NO_REPAIR_HINT);
      return lines;
    }
  }
}

/**
 * The human output of a run, one string per line (bootc's wording with `unistore fsck`).
 *
 * @example
 * ```ts ignore
 * for (const line of formatFsckHuman(run)) console.log(line);
 * ```
 */
export function formatFsckHuman(run: FsckImagesRun, opts: { repair?: boolean } = {}): string[] {
  if (run.disabled) return [`${PROGRAM} images: unified storage not enabled; nothing to check`];
  const out = [`${PROGRAM}: checking image stores`];
  if (run.report.reflinksSupported === false) {
    out.push(
      `${PROGRAM}: WARNING: filesystem does not support reflinks (FICLONE); ` +
        `the image stores are NOT sharing blocks`,
    );
  }
  for (const w of run.warnings) out.push(`${PROGRAM}: WARNING: ${w}`);
  for (const r of run.repairs) out.push(...repairLines(r));
  for (const e of run.entries) out.push(...imageLines(e, run.report.binding, opts.repair ?? false));
  const n = (s: string) => run.entries.filter((e) => e.status === s).length;
  const ok = n("ok"), fail = n("fail"), pending = n("pending");
  if (fail > 0) out.push(`${PROGRAM}: ${fail} failure(s) found (${ok} OK, ${fail} FAIL)`);
  else if (pending > 0) {
    out.push(`${PROGRAM}: checks passed (${ok} OK, ${pending} pending reboot to activate)`);
  } else out.push(`${PROGRAM}: all checks passed (${ok} image(s) OK)`);
  return out;
}

/** The `fsck` command (`usageExit` 16, as fsck(8)). */
export const fsckCommand: Command = {
  name: "fsck",
  help: HELP,
  usageExit: FSCK_USAGE_EXIT,
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(args, {
      repair: { type: "boolean" },
      json: { type: "boolean" },
      deep: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    });
    if (values.help) {
      ctx.out(formatHelp(HELP));
      return 0;
    }
    // bootc's bare `fsck` runs every check; images is the only one unistore has.
    if (positionals.length > 1 || (positionals.length === 1 && positionals[0] !== "images")) {
      throw new UsageError(
        `fsck: expected the check "images" (or none), found ${
          positionals.map((p) => JSON.stringify(p)).join(" ")
        }`,
      );
    }
    const repair = values.repair ?? false;
    const run = await fsckImages(new HostRoot(ctx.root), { repair, deep: values.deep ?? false });
    if (values.json) {
      for (const w of run.warnings) ctx.err(`unistore: warning: ${w}`);
      ctx.out(JSON.stringify(run.report, null, 2));
    } else {
      ctx.out(formatFsckHuman(run, { repair }).join("\n"));
    }
    return run.exitCode;
  },
};
