/**
 * The table of subcommands `main.ts` dispatches to.
 *
 * @module
 */

import type { Command } from "./context.ts";
import { applyConfigCommand } from "./apply_config.ts";
import { configCommand } from "./config.ts";
import { duCommand } from "./du.ts";
import { fsckCommand } from "./fsck.ts";
import { imageCommand } from "./image.ts";
import { internalsCommand } from "./internals.ts";
import { setUnifiedCommand } from "./set_unified.ts";
import { statusCommand } from "./status.ts";
import { upgradeCommand } from "./upgrade.ts";

/** Every available subcommand, in the order `--help` lists them. */
export const COMMANDS: readonly Command[] = [
  applyConfigCommand,
  configCommand,
  duCommand,
  fsckCommand,
  imageCommand,
  internalsCommand,
  setUnifiedCommand,
  statusCommand,
  upgradeCommand,
];

export type { Command, CommandContext } from "./context.ts";
export { formatHelp, UsageError } from "./context.ts";
