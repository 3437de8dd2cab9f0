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
import { parseCommandArgs } from "./args.ts";
import { type Command, type CommandContext, formatHelp, UsageError } from "./context.ts";

const HELP = {
  usage: "unistore set-unified composefs [--dry-run]",
  summary: "Binds the host's ostree repository to composefs (unified storage).",
  details: `composefs  (ostree hosts) probes reflinks on ROOT/sysroot, then writes the binding
           flag [composefs] unified=true into the ostree repository config. Nothing is
           fetched: the next upgrade pulls into composefs and synthesizes the ostree commit
           by reflink; until the booted commit is such a commit, status shows
           "Storage: ostree-composefs-bound". Fails, writing nothing, when the filesystem
           has no reflinks. On a native composefs host the binding is intrinsic: a no-op.
--dry-run  says what would be done, changes nothing.

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

/** The `set-unified` command. */
export const setUnifiedCommand: Command = {
  name: "set-unified",
  help: HELP,
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(args, {
      "dry-run": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    });
    if (values.help) {
      ctx.out(formatHelp(HELP));
      return 0;
    }
    if (positionals.length !== 1) {
      throw new UsageError("set-unified takes one mode: composefs");
    }
    if (positionals[0] !== "composefs") {
      throw new UsageError(
        `unknown mode ${JSON.stringify(positionals[0])}: this version supports composefs`,
      );
    }
    return await bindComposefs(values["dry-run"] ?? false, ctx);
  },
};
