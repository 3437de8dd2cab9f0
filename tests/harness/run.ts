/**
 * Running external commands from tests (mkfs, mount, ostree, podman, ...).
 *
 * Everything goes through `Deno.Command` with piped, fully collected output: tests want the
 * text for assertions and error messages, and awaiting `output()` to completion leaves no
 * open resources or pending ops behind, so the Deno test sanitizers can stay on.
 *
 * @module
 */

/** Options for {@link run} and {@link runOk}. */
export interface RunOptions {
  /** Working directory of the child; the test's own cwd when omitted. */
  cwd?: string;
  /** Variables added to (or overriding) the inherited environment. */
  env?: Record<string, string>;
  /** Bytes written to the child's stdin, which is then closed; stdin is /dev/null when omitted. */
  stdin?: Uint8Array;
}

/** What a finished command produced. */
export interface RunResult {
  /** Exit code; when the child died of a signal, Deno reports 128 + signal number. */
  code: number;
  /** The signal that killed the child, or null when it exited normally. */
  signal: Deno.Signal | null;
  /** `code === 0` and no signal. */
  success: boolean;
  /** Standard output, decoded as UTF-8 (invalid bytes become U+FFFD). */
  stdout: string;
  /** Standard error, decoded as UTF-8. */
  stderr: string;
}

const decoder = new TextDecoder();

/**
 * Renders an argv as a shell-like command line for messages, quoting only where needed, so a
 * failure can be copied into a terminal and re-run by hand.
 */
export function formatCommand(cmd: readonly string[]): string {
  return cmd
    .map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`))
    .join(" ");
}

/**
 * Runs `cmd` (argv form, never through a shell, so no quoting bugs) to completion and returns
 * its exit status and decoded output. Does not throw on a non-zero exit; a missing program
 * throws an Error naming the command line.
 */
export async function run(cmd: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  if (cmd.length === 0) throw new Error("run: empty command");
  const command = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: opts.cwd,
    env: opts.env,
    // /dev/null rather than inherit: a child must never block reading the test runner's stdin.
    stdin: opts.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  });
  let child: Deno.ChildProcess;
  try {
    child = command.spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${formatCommand(cmd)}: command not found`, { cause: e });
    }
    throw e;
  }
  // Collect output while stdin is still being written: a child that writes as it reads (cat)
  // would otherwise fill its stdout pipe, stop reading, and deadlock us on a large input.
  const output = child.output();
  if (opts.stdin) {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(opts.stdin);
      await writer.close();
    } catch {
      // The child exited (or closed stdin) without reading everything: EPIPE is not our
      // failure; its exit status and stderr tell the story.
    }
  }
  const out = await output;
  return {
    code: out.code,
    signal: out.signal,
    success: out.success,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

/** Error thrown by {@link runOk}; keeps the full result for callers that want to inspect it. */
export class CommandError extends Error {
  constructor(readonly cmd: readonly string[], readonly result: RunResult) {
    const status = result.signal ? `signal ${result.signal}` : `exit code ${result.code}`;
    const stderr = result.stderr.trimEnd();
    super(`command failed (${status}): ${formatCommand(cmd)}${stderr ? `\n${stderr}` : ""}`);
    this.name = "CommandError";
  }
}

/**
 * Like {@link run}, but throws a {@link CommandError} (message: command line, exit code and
 * stderr) unless the command succeeded.
 */
export async function runOk(cmd: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const result = await run(cmd, opts);
  if (!result.success) throw new CommandError(cmd, result);
  return result;
}
