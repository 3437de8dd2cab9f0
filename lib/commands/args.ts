/**
 * Argument parsing shared by the subcommands: node:util `parseArgs` with
 * positionals allowed and unknown options refused as usage errors.
 *
 * @module
 */

import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { UsageError } from "./context.ts";

/**
 * Parses a subcommand's arguments; an unknown option or a missing value is a
 * {@linkcode UsageError}.
 *
 * @example
 * ```ts
 * import { parseCommandArgs } from "./args.ts";
 * const { values, positionals } = parseCommandArgs(["--json", "x"], { json: { type: "boolean" } });
 * // values.json === true, positionals = ["x"]
 * ```
 */
export function parseCommandArgs<const O extends ParseArgsOptionsConfig>(
  args: string[],
  options: O,
) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}
