/**
 * The worker half of {@linkcode fsckRepoOnWorker} (lib/stores/composefs/fsck.ts): opens the
 * repository read-only on its own thread, runs the deep check, and posts the report (plain
 * data), or the message of what stopped the check.
 *
 * `deno compile` must be given `--include lib/stores/composefs/fsck_worker.ts` (scripts/compile.ts
 * does): workers are not bundled by default.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { fsckRepo, type FsckWorkerReply, type FsckWorkerRequest } from "./fsck.ts";
import { ComposefsRepo } from "./repository.ts";

self.onmessage = async (ev: MessageEvent<FsckWorkerRequest>) => {
  try {
    using repo = await ComposefsRepo.open(ev.data.path, { readOnly: true });
    const report = await fsckRepo(repo, { deep: true });
    self.postMessage({ t: "report", report } satisfies FsckWorkerReply);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    self.postMessage({ t: "error", message } satisfies FsckWorkerReply);
  }
};
