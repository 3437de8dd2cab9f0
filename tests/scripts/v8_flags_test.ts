/**
 * The V8 flags unistore ships with (scripts/v8_flags.ts) are the ones every way of running it
 * uses: `deno compile` and the bench import the constant, but deno.json's `unistore` task and
 * README.md can only repeat it, and a copy that drifts runs unistore with another memory
 * profile than the one measured.
 */

import assert from "node:assert/strict";
import { UNISTORE_V8_FLAGS } from "../../scripts/v8_flags.ts";

const ROOT = new URL("../../", import.meta.url);

Deno.test("deno.json's unistore task passes exactly UNISTORE_V8_FLAGS", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const task: string = config.tasks.unistore;
  const flags = [...task.matchAll(/--v8-flags=(\S+)/g)].map((m) => m[1]);
  assert.deepEqual(flags, [UNISTORE_V8_FLAGS], `deno.json tasks.unistore: ${task}`);
});

Deno.test("README.md names the flags the unistore task passes", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const named = [...readme.matchAll(/--v8-flags=([^\s`]+)/g)].map((m) => m[1]);
  assert.ok(named.length > 0, "README.md no longer says which V8 flags unistore runs with");
  for (const f of named) assert.equal(f, UNISTORE_V8_FLAGS, "README.md --v8-flags");
});
