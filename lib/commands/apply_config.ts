/**
 * `unistore apply-config [--dry-run] [--no-pull]`: what early boot runs.
 * Reads `[install.storage] unified` from bootc's install config and applies
 * it with `set-unified full`; safe at every boot, a no-op once applied.
 *
 * @module
 */

import { readBootcJson } from "../host/flags.ts";
import { loadInstallConfig, unifiedModeOf } from "../host/install_config.ts";
import { HostRoot } from "../host/root.ts";
import { parseCommandArgs } from "./args.ts";
import { type Command, formatHelp, UsageError } from "./context.ts";
import { unifyFull } from "./set_unified.ts";

const HELP = {
  usage: "unistore apply-config [--dry-run] [--no-pull]",
  summary: "Applies [install.storage] unified from bootc's install config (early boot).",
  details: `Reads the merged install config (ROOT/usr/lib/bootc/install/*.toml and the other bootc
locations; see \`unistore config\`). When it asks for "enabled" or "enabled-with-copy" and
composefs/bootc.json does not say so yet, runs \`set-unified full --mode <mode>\`. When the
flag already matches, or the config says "disabled", nothing changes: unistore never undoes
unification. A failed run writes no flag, so the next boot tries again.
--no-pull  never pull (no network in early boot): only images already in a store are used`,
};

/** The `apply-config` command. */
export const applyConfigCommand: Command = {
  name: "apply-config",
  help: HELP,
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(args, {
      "dry-run": { type: "boolean" },
      "no-pull": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    });
    if (values.help) {
      ctx.out(formatHelp(HELP));
      return 0;
    }
    if (positionals.length > 0) throw new UsageError("apply-config takes no arguments");
    const root = new HostRoot(ctx.root);
    const wanted = unifiedModeOf(loadInstallConfig(root));
    const current = readBootcJson(root)?.unified ?? "disabled";
    if (wanted === "disabled") {
      ctx.out(
        current === "disabled"
          ? "the install config does not ask for unified storage; nothing to do"
          : `the install config says disabled, but the host is unified (${current}); ` +
            `unistore does not undo unification`,
      );
      return 0;
    }
    if (current === wanted) {
      ctx.out(`[install.storage] unified = "${wanted}" is already applied; nothing to do`);
      return 0;
    }
    return await unifyFull(
      wanted,
      { "dry-run": values["dry-run"], "no-pull": values["no-pull"] },
      ctx,
    );
  },
};
