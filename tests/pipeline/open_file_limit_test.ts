// The containers-storage → composefs import keeps files open while their digests are computed
// on the second thread; under a low open-file limit it keeps fewer, instead of failing with
// EMFILE. A layer of 400 files, imported with `prlimit --nofile=96`.

import assert from "node:assert/strict";
import { buildOciImage, TarBuilder } from "../fixtures/oci/mod.ts";
import { pseudoRandomBytes } from "../harness/data.ts";
import { fsTest } from "../harness/loopfs.ts";
import { run, runOk } from "../harness/run.ts";
import { findTool } from "../harness/tools.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const FILES = 400;
/** Far below FILES, well above what Deno itself needs open. */
const NOFILE = 96;

fsTest("the import from containers-storage fits a low open-file limit", ["xfs"], async (fs) => {
  const prlimit = findTool("prlimit");
  assert.ok(prlimit, "prlimit is needed (util-linux)");
  const t = new TarBuilder().dir("usr").dir("usr/share");
  for (let i = 0; i < FILES; i++) t.file(`usr/share/f${i}`, pseudoRandomBytes(200 + i, i + 1));
  await buildOciImage(`${fs.mountpoint}/oci`, {
    layers: [{ tar: t.build(), compression: "gzip" }],
    tag: "many",
  });
  const root = `${fs.mountpoint}/root`;
  await Deno.mkdir(`${root}/sysroot`, { recursive: true });
  const cli = [Deno.execPath(), "run", "-A", "--quiet", MAIN, "--root", root];
  await runOk([
    ...cli,
    "image",
    "import",
    `oci:${fs.mountpoint}/oci:many`,
    "--to",
    "containers-storage",
    "--name",
    "localhost/many:1",
  ]);
  await Deno.remove(`${root}/sysroot/composefs`, { recursive: true });

  const r = await run([
    prlimit,
    `--nofile=${NOFILE}:${NOFILE}`,
    ...cli,
    "image",
    "import",
    "containers-storage:localhost/many:1",
    "--to",
    "composefs",
    "--json",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.composefs.layers.length, 1);
  assert.equal(out.composefs.layers[0].skipped, false);
  // Every file over 64 bytes became an object: FILES objects plus the streams.
  let objects = 0;
  for await (const d of Deno.readDir(`${root}/sysroot/composefs/objects`)) {
    if (!d.isDirectory) continue;
    for await (const _ of Deno.readDir(`${root}/sysroot/composefs/objects/${d.name}`)) objects++;
  }
  assert.ok(objects >= FILES, `${objects} objects for ${FILES} files`);
});
