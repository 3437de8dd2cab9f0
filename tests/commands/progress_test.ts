// Progress as a program reads it: bootc's JSON Lines protocol on --progress-fd.

import assert from "node:assert/strict";
import { commandProgress, PROGRESS_API_VERSION } from "../../lib/commands/progress.ts";
import type { CommandContext } from "../../lib/commands/context.ts";
import { close, O, openAt, openDir, readFileAt } from "../../ffi/fs.ts";
import { buildOciImage, TarBuilder } from "../fixtures/oci/mod.ts";
import { run } from "../harness/run.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

function lines(text: string) {
  return text.trim().split("\n").map((l) => JSON.parse(l));
}

Deno.test("progress events: Start first, required step events kept, lossy byte updates limited", async () => {
  const dir = await Deno.makeTempDir();
  const dirfd = openDir(dir);
  const fd = openAt(dirfd, "events", O.CREAT | O.WRONLY, 0o600);
  try {
    let clock = 0;
    const ctx = { quiet: true, progressFd: fd, err: () => {} } as unknown as CommandContext;
    const p = commandProgress(ctx, { tty: false, now: () => clock });
    p.begin("composefs-import", "Importing", "oci:x", { bytes: 300, steps: 3 });
    p.advance({ bytes: 10 }); // lossy, within 200 ms of the last write: dropped
    clock = 250;
    p.advance({ bytes: 10 }); // lossy, later: written
    p.advance({ bytes: 80, steps: 1 }, { id: "sha256:aa", description: "layer 1/3" }); // required
    p.end();
    const events = lines(new TextDecoder().decode(readFileAt(dirfd, "events")));
    assert.deepEqual(events[0], { type: "Start", version: PROGRESS_API_VERSION });
    assert.deepEqual(events.map((e) => e.bytes ?? null), [null, 0, 20, 100, 100]);
    const last = events[events.length - 1];
    assert.deepEqual(Object.keys(last).sort(), [
      "bytes",
      "bytesCached",
      "bytesTotal",
      "description",
      "id",
      "steps",
      "stepsCached",
      "stepsTotal",
      "subtasks",
      "task",
      "type",
    ]);
    assert.equal(last.type, "ProgressBytes");
    assert.equal(last.stepsTotal, 3);
    assert.deepEqual(last.subtasks[0].id, "sha256:aa");
  } finally {
    close(fd);
    close(dirfd);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("image import --progress-fd 1 --quiet: only JSON Lines, one step per layer", async () => {
  const work = await Deno.makeTempDir({ prefix: "unistore-progress-" });
  try {
    const layers = [0, 1, 2].map((i) => ({
      tar: new TarBuilder("pax").file(`f${i}`, "x".repeat(100 + i)).build(),
      compression: "gzip" as const,
    }));
    await buildOciImage(`${work}/oci`, { tag: "v1", layers });
    await Deno.mkdir(`${work}/host/sysroot`, { recursive: true });
    const r = await run([
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      MAIN,
      "--root",
      `${work}/host`,
      "--progress-fd",
      "1",
      "--quiet",
      "image",
      "import",
      `oci:${work}/oci:v1`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const events = lines(r.stdout);
    assert.equal(events[0].type, "Start");
    const last = events[events.length - 1];
    assert.equal(last.task, "composefs-import");
    assert.equal(last.steps, 3);
    assert.equal(last.stepsTotal, 3);
    assert.equal(last.bytes, last.bytesTotal);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
