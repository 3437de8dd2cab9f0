/**
 * unistore: one set of disk blocks for the image stores of a bootc host.
 *
 * Parses the global options, runs one subcommand, maps errors to exit codes:
 * 0 success, 1 failure, 2 usage (fsck: fsck(8) codes, 16 for usage).
 *
 * @module
 */

import { type CommandContext, COMMANDS, UsageError } from "./lib/commands/mod.ts";
import { SysError } from "./ffi/errno.ts";
import { VERSION } from "./lib/version.ts";

const encoder = new TextEncoder();

function globalHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.help.summary}`);
  return `unistore ${VERSION}: makes the image stores of a bootc host share their disk blocks

usage: unistore [GLOBAL OPTIONS] COMMAND [ARGS]

commands:
${lines.join("\n")}

global options:
  --root DIR        the host's / (default /): stores under DIR/sysroot, config under DIR/etc ...
  --progress-fd N   write progress as JSON Lines to file descriptor N
  --quiet           print only errors and requested output
  --verbose         print more detail
  --help            show this help (or a command's: unistore COMMAND --help)
  --version         print the version

exit codes: 0 success, 1 failure, 2 usage error (fsck follows fsck(8))`;
}

interface GlobalOptions {
  root: string;
  quiet: boolean;
  verbose: boolean;
  progressFd?: number;
  help: boolean;
  version: boolean;
  rest: string[];
}

/** Takes the global options out of argv wherever they stand (before `--`). */
function parseGlobals(argv: string[]): GlobalOptions {
  const g: GlobalOptions = {
    root: "/",
    quiet: false,
    verbose: false,
    help: false,
    version: false,
    rest: [],
  };
  let command: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      g.rest.push(...argv.slice(i));
      break;
    }
    const [flag, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--root":
        g.root = value();
        break;
      case "--progress-fd": {
        const v = value();
        if (!/^\d+$/.test(v)) {
          throw new UsageError(
            `--progress-fd: expected a file descriptor number, found ${JSON.stringify(v)}`,
          );
        }
        g.progressFd = Number(v);
        break;
      }
      case "--quiet":
      case "-q":
        g.quiet = true;
        break;
      case "--verbose":
      case "-v":
        g.verbose = true;
        break;
      case "--version":
        if (command === undefined) g.version = true;
        else g.rest.push(arg);
        break;
      case "--help":
      case "-h":
        // Before the command it is the global help; after it, the command's.
        if (command === undefined) g.help = true;
        else g.rest.push(arg);
        break;
      default:
        if (command === undefined && !arg.startsWith("-")) command = arg;
        g.rest.push(arg);
    }
  }
  return g;
}

/** Runs unistore with `argv` and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let usageExit = 2;
  const write = (fd: typeof Deno.stdout, text: string) => fd.writeSync(encoder.encode(text + "\n"));
  try {
    const g = parseGlobals(argv);
    if (g.version) {
      write(Deno.stdout, `unistore ${VERSION}`);
      return 0;
    }
    const [name, ...args] = g.rest;
    if (g.help || name === undefined) {
      write(g.help ? Deno.stdout : Deno.stderr, globalHelp());
      return g.help ? 0 : 2;
    }
    const command = COMMANDS.find((c) => c.name === name);
    if (!command) {
      throw new UsageError(`unknown command ${JSON.stringify(name)}; see unistore --help`);
    }
    usageExit = command.usageExit ?? 2;
    const ctx: CommandContext = {
      root: g.root,
      quiet: g.quiet,
      verbose: g.verbose,
      progressFd: g.progressFd,
      out: (text) => write(Deno.stdout, text),
      err: (text) => {
        if (!g.quiet) write(Deno.stderr, text);
      },
    };
    return await command.run(args, ctx);
  } catch (e) {
    if (e instanceof UsageError) {
      write(Deno.stderr, `unistore: ${e.message}`);
      return usageExit;
    }
    if (e instanceof SysError || e instanceof Error) {
      write(Deno.stderr, `unistore: ${e.message}`);
      return usageExit === 16 ? 8 : 1;
    }
    write(Deno.stderr, `unistore: ${String(e)}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
