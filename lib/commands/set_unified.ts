/**
 * `unistore set-unified composefs [--dry-run]`: binds the ostree repository to
 * composefs (bootc PR #2205's `set-unified composefs`): from then on upgrades
 * pull into composefs first and synthesize the ostree commit by reflink.
 *
 * @module
 */

import { close, openDir } from "../../ffi/fs.ts";
import { readOstreeComposefsBound, writeOstreeComposefsBound } from "../host/flags.ts";
import { detectHostKind } from "../host/kind.ts";
import { HostRoot } from "../host/root.ts";
import { probeReflink } from "../reflink/probe.ts";
import { unifyHost } from "../pipeline/unify.ts";
import { commandProgress } from "./progress.ts";
import { parseCommandArgs } from "./args.ts";
import { type Command, type CommandContext, formatHelp, UsageError } from "./context.ts";

const HELP = {
  usage: "unistore set-unified composefs [--dry-run]\n" +
    "       unistore set-unified full [--mode enabled|enabled-with-copy] [--dry-run] [--no-pull]",
  summary: "Turns on unified storage: ostree bound to composefs, or all three stores shared.",
  details: `full       (both host kinds) puts the booted, staged and rollback images into bootc's
           containers-storage and composefs (podman pull when neither has them; rebuilt from
           composefs by reflink when only it has them), shares the ostree deployments' blocks
           with composefs (FIDEDUPERANGE), and writes composefs/bootc.json
           {"version":1,"unified":"<mode>"} last, only when everything succeeded.
           --mode enabled (default) needs reflinks and fails before any change without them;
           enabled-with-copy copies bytes where reflinks are missing. --no-pull never pulls.
           A second run finds everything in place and says so.
composefs  (ostree hosts) probes reflinks on ROOT/sysroot, then writes the binding
           flag [composefs] unified=true into the ostree repository config. Nothing is
           fetched: the next upgrade pulls into composefs and synthesizes the ostree commit
           by reflink; until the booted commit is such a commit, status shows
           "Storage: ostree-composefs-bound". Fails, writing nothing, when the filesystem
           has no reflinks. On a native composefs host the binding is intrinsic: a no-op.
--dry-run  says what would be done, changes nothing.
--json     (full) the report: {"kind", "mode", "reflinksSupported", "alreadyUnified",
           "flagWritten", "ok", "images": [{"slot", "image", "manifestDigest",
           "configDigest", "actions", "problem"}]}

exit codes: 0 done (or nothing to do), 1 failure, 2 usage`,
};

async function bindComposefs(dryRun: boolean, ctx: CommandContext): Promise<number> {
  const root = new HostRoot(ctx.root);
  const kind = detectHostKind(root);
  if (kind.kind === "composefs") {
    ctx.out(
      "this is a native composefs host: its deployments already live in composefs, " +
        "so there is nothing to bind",
    );
    return 0;
  }
  if (kind.kind === "none") {
    throw new Error(`${root.dir} is not a bootc host: ${kind.reason}`);
  }
  if (readOstreeComposefsBound(root)) {
    ctx.out(`${root.ostreeRepo} is already bound to composefs; nothing to do`);
    return 0;
  }
  const sysroot = openDir(root.sysroot);
  let probe;
  try {
    probe = probeReflink(sysroot);
  } finally {
    close(sysroot);
  }
  if (!probe.supported) {
    throw new Error(
      `${root.sysroot} (${probe.filesystem}): ${probe.reason} (${probe.code}); ` +
        `binding ostree to composefs needs reflinks. Nothing was changed.`,
    );
  }
  if (dryRun) {
    ctx.out(
      `would write [composefs] unified=true into ${root.ostreeRepo}/config ` +
        `(reflinks work on ${probe.filesystem})`,
    );
    return 0;
  }
  await writeOstreeComposefsBound(root);
  ctx.out(
    `bound ${root.ostreeRepo} to composefs: the next upgrade pulls into composefs and ` +
      `synthesizes the ostree commit by reflink`,
  );
  return 0;
}

/** Runs `set-unified full` in `mode` and prints its report; shared with `apply-config`. */
export async function unifyFull(
  mode: "enabled" | "enabled-with-copy",
  values: { "dry-run"?: boolean; "no-pull"?: boolean; json?: boolean },
  ctx: CommandContext,
): Promise<number> {
  const root = new HostRoot(ctx.root);
  const report = await unifyHost(root, {
    mode,
    dryRun: values["dry-run"],
    noPull: values["no-pull"],
    progress: commandProgress(ctx),
  });
  if (values.json) {
    ctx.out(JSON.stringify({
      kind: report.kind,
      mode: report.mode,
      reflinksSupported: report.probe.supported,
      alreadyUnified: report.alreadyUnified,
      flagWritten: report.flagWritten,
      ok: report.ok,
      images: report.images.map((i) => ({
        slot: i.slot,
        image: i.image,
        manifestDigest: i.manifestDigest,
        configDigest: i.configDigest,
        actions: i.actions,
        problem: i.problem ?? null,
      })),
    }));
    return report.ok ? 0 : 1;
  }
  const lines: string[] = [];
  if (!report.probe.supported) {
    lines.push(
      `warning: ${root.sysroot} (${report.probe.filesystem}): ${report.probe.reason}; ` +
        `bytes are copied, not shared`,
    );
  }
  for (const i of report.images) {
    const did = i.actions.filter((a) => !a.startsWith("deduped-ostree:"));
    const deduped = i.dedupe ? `, ostree blocks shared: ${i.dedupe.bytesDeduped} bytes` : "";
    if (i.problem) lines.push(`  [FAIL] ${i.slot} ${i.image}: ${i.problem}`);
    else if (did.length === 0) {
      lines.push(`  [OK]   ${i.slot} ${i.image}: in every store${deduped}`);
    } else lines.push(`  [DONE] ${i.slot} ${i.image}: ${did.join(", ")}${deduped}`);
  }
  if (values["dry-run"]) {
    lines.push(`dry run: nothing was changed; the flag would be unified=${mode}`);
  } else if (report.alreadyUnified) {
    lines.push(`already unified (${mode}); nothing to do`);
  } else if (report.ok) {
    lines.push(`unified storage enabled (${mode}): ${root.bootcJson} written`);
  } else {
    lines.push("unified storage NOT enabled: the flag was not written; fix the failures and rerun");
  }
  ctx.out(lines.join("\n"));
  return report.ok ? 0 : 1;
}

/** The `set-unified` command. */
export const setUnifiedCommand: Command = {
  name: "set-unified",
  help: HELP,
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(args, {
      "dry-run": { type: "boolean" },
      "no-pull": { type: "boolean" },
      mode: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    });
    if (values.help) {
      ctx.out(formatHelp(HELP));
      return 0;
    }
    if (positionals.length !== 1) {
      throw new UsageError("set-unified takes one mode: composefs or full");
    }
    if (positionals[0] === "full") {
      const mode = values.mode ?? "enabled";
      if (mode !== "enabled" && mode !== "enabled-with-copy") {
        throw new UsageError(
          `--mode: expected enabled or enabled-with-copy, found ${JSON.stringify(mode)}`,
        );
      }
      return await unifyFull(mode, values, ctx);
    }
    if (positionals[0] !== "composefs") {
      throw new UsageError(
        `unknown mode ${JSON.stringify(positionals[0])}: expected composefs or full`,
      );
    }
    if (values.mode !== undefined || values["no-pull"]) {
      throw new UsageError("--mode and --no-pull go with set-unified full");
    }
    return await bindComposefs(values["dry-run"] ?? false, ctx);
  },
};
