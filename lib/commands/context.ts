/**
 * What every command receives, and the errors that map to exit codes.
 *
 * @module
 */

/** Global options and output channels of one run. */
export interface CommandContext {
  /** The host's `/` (`--root`). */
  root: string;
  quiet: boolean;
  verbose: boolean;
  /** `--progress-fd N`: JSON Lines progress goes there. */
  progressFd?: number;
  /** Writes a line (or several) to standard output. */
  out(text: string): void;
  /** Writes a line to standard error (suppressed by `--quiet` unless it is an error). */
  err(text: string): void;
}

/**
 * The command line was wrong: exit 2 (16 for `fsck`). The message says what
 * was expected and points at `--help`.
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A command's help: its synopsis and a short description, shown by `--help`. */
export interface CommandHelp {
  usage: string;
  summary: string;
  details?: string;
}

/** A subcommand: parses its own arguments, does the work through lib/, prints, returns the exit code. */
export interface Command {
  name: string;
  help: CommandHelp;
  /** Exit code for usage errors (2, or 16 for fsck as fsck(8) has it). */
  usageExit?: number;
  run(args: string[], ctx: CommandContext): Promise<number>;
}

/** Formats a command's help text. */
export function formatHelp(help: CommandHelp): string {
  return `usage: ${help.usage}\n\n${help.summary}${help.details ? `\n\n${help.details}` : ""}`;
}
