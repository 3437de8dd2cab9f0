/**
 * How long work reports its progress without printing: the pipeline calls a
 * {@linkcode Progress}; the command layer decides what a person or a program
 * sees (a bar on a TTY, JSON Lines on `--progress-fd`, nothing with `--quiet`).
 *
 * @module
 */

/** Totals of a stage; a missing total means "unknown". */
export interface ProgressTotals {
  bytes?: number;
  steps?: number;
}

/** Receives the progress of long work, stage by stage. */
export interface Progress {
  /**
   * A stage begins: `task` is machine-readable (`composefs-import`), `description` for people,
   * `id` names what is worked on (an image reference, a layer digest).
   */
  begin(task: string, description: string, id: string, totals: ProgressTotals): void;
  /** Work done in the current stage; `subtask` names the item (a layer) when there is one. */
  advance(delta: ProgressTotals, subtask?: { id: string; description: string }): void;
  /** The current stage is finished. */
  end(): void;
}

/** A {@linkcode Progress} that ignores everything. */
export const NO_PROGRESS: Progress = {
  begin() {},
  advance() {},
  end() {},
};
