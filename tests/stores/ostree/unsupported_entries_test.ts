/**
 * What ostree cannot store is refused (or, on request, skipped and reported), never silently
 * lost; judged against what `ostree commit --tree=dir=` does with the same directory.
 */

import assert from "node:assert/strict";
import { close, O, openAt, openDir } from "../../../ffi/fs.ts";
import { UnsupportedEntryError } from "../../../lib/stores/ostree/errors.ts";
import { writeCommit } from "../../../lib/stores/ostree/commit_writer.ts";
import { OstreeRepo } from "../../../lib/stores/ostree/repo.ts";
import { run } from "../../harness/run.ts";
import { toolTest } from "../../harness/tools.ts";
import { OSTREE_TOOL, ostreeCommitDir, ostreeInit } from "../../fixtures/ostree/ostree_cli.ts";
import { addFifo, dirEntries } from "../../fixtures/ostree/trees.ts";

const COMMIT = { subject: "s", body: "", timestamp: 1700000000 };

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ dir: "/var/tmp", prefix: "unistore-ostree-" });
}

function stagingLeftovers(repo: string): string[] {
  return [...Deno.readDirSync(`${repo}/tmp`)].map((e) => e.name).filter((n) =>
    n.startsWith("staging-")
  );
}

toolTest(
  "a non-UTF-8 name is refused with its path, as ostree commit refuses it",
  [OSTREE_TOOL],
  async ({ ostree }) => {
    const dir = await tempDir();
    try {
      await Deno.mkdir(`${dir}/tree/sub`, { recursive: true });
      await Deno.writeTextFile(`${dir}/tree/ok.txt`, "fine\n");
      // "bad\xffname" cannot be spelled as a JS string path: create it through the raw-byte API.
      const sub = openDir(`${dir}/tree/sub`);
      try {
        close(
          openAt(
            sub,
            new Uint8Array([0x62, 0x61, 0x64, 0xff, 0x6e, 0x61, 0x6d, 0x65]),
            O.CREAT | O.WRONLY,
            0o644,
          ),
        );
      } finally {
        close(sub);
      }
      await ostreeInit(ostree, `${dir}/repo`);
      await ostreeInit(ostree, `${dir}/ref`);

      // The judge: ostree refuses the directory (in its own repo: it leaves a staging dir).
      const judged = await run([
        ostree,
        "commit",
        `--repo=${dir}/ref`,
        `--tree=dir=${dir}/tree`,
        "--orphan",
      ]);
      assert.notEqual(judged.code, 0);
      assert.match(judged.stderr, /Invalid UTF-8 in filename/);

      using repo = OstreeRepo.open(`${dir}/repo`);
      const err = await writeCommit(repo, dirEntries(`${dir}/tree`), {
        ...COMMIT,
        policy: "reflink-or-copy",
        ref: "never",
      }).then(() => null, (e) => e);
      assert.ok(err instanceof UnsupportedEntryError, String(err));
      assert.equal(err.path, "/sub/bad\\xffname");
      assert.match(err.message, /^\/sub\/bad\\xffname: Invalid UTF-8 in filename/);
      // Nothing became visible, nothing was left behind.
      assert.equal(repo.resolveRef("never"), null);
      assert.deepEqual(stagingLeftovers(`${dir}/repo`), []);
      assert.deepEqual([...Deno.readDirSync(`${dir}/repo/objects`)], []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
  { root: true },
);

toolTest("a fifo is refused like ostree commit refuses it, or skipped and listed on request", [
  OSTREE_TOOL,
], async ({ ostree }) => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir}/tree/dev-ish`, { recursive: true });
    await Deno.writeTextFile(`${dir}/tree/a`, "a\n");
    await ostreeInit(ostree, `${dir}/repo`);
    await ostreeInit(ostree, `${dir}/ref`);
    // Reference without the fifo, taken before the fifo exists.
    const withoutFifo = await ostreeCommitDir(ostree, `${dir}/ref`, `${dir}/tree`, COMMIT);
    addFifo(`${dir}/tree/dev-ish`, "pipe");

    const judged = await run([
      ostree,
      "commit",
      `--repo=${dir}/ref`,
      `--tree=dir=${dir}/tree`,
      "--orphan",
    ]);
    assert.notEqual(judged.code, 0);
    assert.match(judged.stderr, /Not a regular file or symlink: pipe/);

    using repo = OstreeRepo.open(`${dir}/repo`);
    await assert.rejects(
      writeCommit(repo, dirEntries(`${dir}/tree`), {
        ...COMMIT,
        policy: "reflink-or-copy",
        ref: "x",
      }),
      (e) =>
        e instanceof UnsupportedEntryError &&
        /^\/dev-ish\/pipe: Not a regular file or symlink \(fifo\)/.test(e.message),
    );
    assert.equal(repo.resolveRef("x"), null);
    assert.deepEqual(stagingLeftovers(`${dir}/repo`), []);

    const r = await writeCommit(repo, dirEntries(`${dir}/tree`), {
      ...COMMIT,
      policy: "reflink-or-copy",
      ref: "x",
      onUnsupported: "skip",
    });
    assert.equal(r.commit, withoutFifo);
    assert.deepEqual(r.skipped.map((s) => s.path), ["/dev-ish/pipe"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}, { root: true });
