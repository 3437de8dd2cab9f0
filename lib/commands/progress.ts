/**
 * Progress output of long commands: JSON Lines on `--progress-fd N` in
 * bootc's progress shape (`crates/lib/src/progress_jsonl.rs`, protocol
 * 0.1.0: a `Start` event, then `ProgressBytes` events, canonical JSON, one
 * per line), a bar on stderr when it is a TTY, nothing with `--quiet`.
 *
 * @module
 */

import { writeAll } from "../../ffi/fs.ts";
import { canonicalJson, type JsonValue } from "../format/canonical_json.ts";
import type { Progress, ProgressTotals } from "../pipeline/progress.ts";
import type { CommandContext } from "./context.ts";

/** bootc's progress protocol version: readers check it before parsing events. */
export const PROGRESS_API_VERSION = "0.1.0";
/** At most this many lossy updates per second, as bootc (REFRESH_HZ). */
const REFRESH_MS = 200;

interface Stage {
  task: string;
  description: string;
  id: string;
  bytes: number;
  steps: number;
  totals: ProgressTotals;
  subtask?: { id: string; description: string };
}

/**
 * The {@linkcode Progress} a command hands to the pipeline, per the global options.
 *
 * @example
 * ```ts ignore
 * const progress = commandProgress(ctx);
 * await synthesize(..., { progress });
 * ```
 */
export function commandProgress(
  ctx: CommandContext,
  opts: { tty?: boolean; now?: () => number } = {},
): Progress {
  const fd = ctx.progressFd;
  const tty = !ctx.quiet && (opts.tty ?? Deno.stderr.isTerminal());
  const now = opts.now ?? (() => Date.now());
  const enc = new TextEncoder();
  let started = false;
  let lastWrite = -Infinity;
  let stage: Stage | undefined;
  let jsonBroken = false;

  const send = (event: Record<string, JsonValue>, required: boolean) => {
    if (fd === undefined || jsonBroken) return;
    if (!required && now() - lastWrite < REFRESH_MS) return;
    try {
      if (!started) {
        started = true;
        writeAll(
          fd,
          enc.encode(canonicalJson({ type: "Start", version: PROGRESS_API_VERSION }) + "\n"),
        );
      }
      writeAll(fd, enc.encode(canonicalJson(event) + "\n"));
      lastWrite = now();
    } catch (e) {
      // As bootc: a broken progress fd stops progress, never the work.
      jsonBroken = true;
      ctx.err(`progress fd ${fd}: ${(e as Error).message}; progress output stopped`);
    }
  };

  const event = (s: Stage): Record<string, JsonValue> => ({
    type: "ProgressBytes",
    task: s.task,
    description: s.description,
    id: s.id,
    bytesCached: 0,
    bytes: s.bytes,
    bytesTotal: s.totals.bytes ?? 0,
    stepsCached: 0,
    steps: s.steps,
    stepsTotal: s.totals.steps ?? 0,
    subtasks: s.subtask
      ? [{
        subtask: s.task,
        description: s.subtask.description,
        id: s.subtask.id,
        bytesCached: 0,
        bytes: s.bytes,
        bytesTotal: s.totals.bytes ?? 0,
      }]
      : [],
  });

  let lastBar = -Infinity;
  const bar = (s: Stage, final: boolean) => {
    if (!tty) return;
    if (!final && now() - lastBar < REFRESH_MS) return;
    lastBar = now();
    const total = s.totals.bytes ?? 0;
    const frac = total > 0 ? Math.min(1, s.bytes / total) : 0;
    const width = 24;
    const filled = Math.round(frac * width);
    const counts = s.totals.steps ? ` ${s.steps}/${s.totals.steps}` : "";
    const line = `${s.description} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ` +
      `${(s.bytes / 2 ** 20).toFixed(1)}${
        total ? `/${(total / 2 ** 20).toFixed(1)}` : ""
      } MiB${counts}`;
    Deno.stderr.writeSync(enc.encode(`\r\x1b[K${line}${final ? "\n" : ""}`));
  };

  return {
    begin(task, description, id, totals) {
      stage = { task, description, id, bytes: 0, steps: 0, totals };
      send(event(stage), true);
      bar(stage, false);
    },
    advance(delta, subtask) {
      if (!stage) return;
      stage.bytes += delta.bytes ?? 0;
      stage.steps += delta.steps ?? 0;
      if (subtask) stage.subtask = subtask;
      send(event(stage), (delta.steps ?? 0) > 0);
      bar(stage, false);
    },
    end() {
      if (!stage) return;
      send(event(stage), true);
      bar(stage, true);
      stage = undefined;
    },
  };
}
