/**
 * The V8 flags unistore runs with. `deno compile` bakes them into the binary
 * (scripts/compile.ts); the bench passes them to `deno run` so that it measures what ships,
 * and the `unistore` task in deno.json repeats them (JSON cannot import this).
 *
 * `--max-semi-space-size=1` (MiB): an import streams tens of thousands of files through
 * short-lived buffers and objects on two isolates (the main thread and the layer digest
 * worker). With V8's default 16 MiB semi-spaces that garbage was a third of the peak RSS of
 * `set-unified full` (bench/RESULTS.md); 1 MiB semi-spaces cost no measurable time. The flag
 * must be given at start-up: set later, it does not resize a heap that exists.
 *
 * `--optimize-for-size`: V8 lets the old generation grow less between full collections.
 * Buffers that outlive a scavenge (queued tar headers, digests waiting for their file) end up
 * there, and their native backing stores are only freed by a full GC, so without the flag the
 * peak RSS of `set-unified full --no-pull` grew from 264 MiB at 1× to 364 MiB at 4×; with it,
 * 191 and 229 MiB, in the same time (36 s at 4×).
 *
 * `--no-parallel-scavenge`: a scavenge's work is not shared with V8's helper threads. During an
 * import both of the process's threads are busy on a two-core machine, so a helper rarely gets
 * a core while the main thread waits for it: the copying import on ext4 took 4.30 s instead of
 * 4.40 s (medians of 5 alternating runs), its main thread 3.0 instead of 3.1 s of CPU.
 *
 * @module
 */

/** The value of `--v8-flags=`. */
export const UNISTORE_V8_FLAGS =
  "--max-semi-space-size=1,--optimize-for-size,--no-parallel-scavenge";
