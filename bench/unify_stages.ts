/**
 * A timed `set-unified full` run split into its stages, from the progress events it writes on
 * `--progress-fd` (lib/pipeline/unify.ts: per image one `unify` stage with three steps). For
 * one image the events arrive
 *
 * | event | after |
 * |---|---|
 * | begin, steps 0 | start-up: Deno, module loading, host status, reflink probe, store opening |
 * | steps 1 | `podman pull` into containers-storage (nothing when the image was there) |
 * | steps 2 | containers-storage → composefs import (clone or copy, all digests in one pass) |
 * | steps 3 | composefs → containers-storage export (nothing when the image was there) |
 * | end | ostree deployment blocks shared with composefs (FIDEDUPERANGE) |
 * | exit | flags written (ostree binding, then bootc.json), process exit |
 *
 * If unify.ts changes where it advances, these names are wrong: the module doc there is the
 * contract this file reads.
 *
 * @module
 */

import type { TimedRun } from "./measure.ts";

/** The stages, in order, as named in {@linkcode UnifyStages} (without the `Ms`). */
export const STAGE_NAMES = [
  "startup",
  "pull",
  "composefsImport",
  "cstorageExport",
  "ostreeDedupe",
  "finish",
] as const;

/** Milliseconds spent in each stage of one image's unification. */
export interface UnifyStages {
  startupMs: number;
  pullMs: number;
  composefsImportMs: number;
  cstorageExportMs: number;
  ostreeDedupeMs: number;
  finishMs: number;
}

/**
 * The stages of the first image `run` unified.
 *
 * @throws {Error} when the run wrote no `unify` progress events (not run with `--progress-fd 2`).
 */
export function unifyStages(run: TimedRun): UnifyStages {
  const unify = run.events.filter((e) =>
    e.event.type === "ProgressBytes" && e.event.task === "unify"
  );
  if (unify.length < 2) {
    throw new Error(
      `set-unified full wrote ${unify.length} unify progress events, expected begin … end ` +
        `(run it with --progress-fd 2): ${JSON.stringify(run.events.slice(0, 4))}`,
    );
  }
  const firstId = unify[0].event.id;
  const mine = unify.filter((e) => e.event.id === firstId);
  const at = (steps: number) =>
    mine.find((e) => Number(e.event.steps) >= steps)?.atMs ?? mine[mine.length - 1].atMs;
  const begin = mine[0].atMs, s1 = at(1), s2 = at(2), s3 = at(3);
  const end = mine[mine.length - 1].atMs;
  return {
    startupMs: begin,
    pullMs: s1 - begin,
    composefsImportMs: s2 - s1,
    cstorageExportMs: s3 - s2,
    ostreeDedupeMs: end - s3,
    finishMs: run.ms - end,
  };
}

/**
 * The highest sampled RSS (KiB) of the unistore process within each stage of `run`
 * (TimedRun.rssSamples; a stage shorter than the sampling interval may have none: 0).
 */
export function peakRssByStage(run: TimedRun): Record<typeof STAGE_NAMES[number], number> {
  const st = unifyStages(run);
  const bounds: number[] = [0];
  for (const name of STAGE_NAMES) bounds.push(bounds[bounds.length - 1] + st[`${name}Ms`]);
  const out = Object.fromEntries(STAGE_NAMES.map((n) => [n, 0])) as Record<
    typeof STAGE_NAMES[number],
    number
  >;
  for (const sample of run.rssSamples) {
    const i = bounds.findIndex((b, k) => k > 0 && sample.atMs <= b);
    const name = STAGE_NAMES[Math.max(0, (i < 0 ? bounds.length - 1 : i) - 1)];
    out[name] = Math.max(out[name], sample.kib);
  }
  return out;
}
