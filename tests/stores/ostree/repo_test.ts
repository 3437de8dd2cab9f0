/**
 * OstreeRepo against repositories made by the real ostree: modes, the repo lock as ostree sees
 * it (`ostree prune` waits for it), transactions, refs and aliases, reading objects back, and
 * corruption that `ostree fsck` and unistore both notice.
 */

import assert from "node:assert/strict";
import { writeCommit } from "../../../lib/stores/ostree/commit_writer.ts";
import {
  ObjectCorruptError,
  RepoConfigError,
  RepoLockedError,
  UnsupportedRepoModeError,
} from "../../../lib/stores/ostree/errors.ts";
import { objectPath } from "../../../lib/stores/ostree/objects.ts";
import { OstreeRepo } from "../../../lib/stores/ostree/repo.ts";
import { run, runOk } from "../../harness/run.ts";
import { toolTest } from "../../harness/tools.ts";
import { OSTREE_TOOL, ostreeInit } from "../../fixtures/ostree/ostree_cli.ts";

const te = new TextEncoder();

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "unistore-ostree-repo-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const small = (content: string, path = "/f") => [
  { path: "/", type: "dir" as const, uid: 0, gid: 0, mode: 0o755 },
  { path, type: "file" as const, uid: 0, gid: 0, mode: 0o644, content: te.encode(content) },
];

toolTest(
  "open: bare and bare-user are read; other modes are refused by name",
  [OSTREE_TOOL],
  async ({ ostree }) => {
    await withTemp(async (dir) => {
      for (const mode of ["bare", "bare-user"]) {
        await ostreeInit(ostree, `${dir}/${mode}`, mode);
        using repo = OstreeRepo.open(`${dir}/${mode}`);
        assert.equal(repo.mode, mode);
        assert.equal(repo.config.fsync, true);
      }
      for (
        const [mode, shown] of [["archive", "archive-z2"], ["bare-user-only", "bare-user-only"]]
      ) {
        await ostreeInit(ostree, `${dir}/${mode}`, mode);
        assert.throws(
          () => OstreeRepo.open(`${dir}/${mode}`),
          (e) =>
            e instanceof UnsupportedRepoModeError && e.mode === shown &&
            e.message.includes(`${dir}/${mode}`) && e.message.includes(`"${shown}"`),
        );
      }
      await Deno.mkdir(`${dir}/not-a-repo/objects`, { recursive: true });
      assert.throws(() => OstreeRepo.open(`${dir}/not-a-repo`), RepoConfigError);
    });
  },
  { root: true },
);

toolTest("lock: a transaction holds the shared OFD lock; ostree prune cannot take it meanwhile", [
  OSTREE_TOOL,
], async ({ ostree }) => {
  await withTemp(async (dir) => {
    const path = `${dir}/repo`;
    await ostreeInit(ostree, path);
    // ostree waits lock-timeout-secs for the lock: keep the test short.
    await runOk([ostree, "config", `--repo=${path}`, "set", "core.lock-timeout-secs", "1"]);
    using repo = OstreeRepo.open(path);
    const txn = await repo.beginTransaction();
    try {
      const blocked = await run([ostree, "prune", `--repo=${path}`, "--refs-only"]);
      assert.notEqual(blocked.code, 0);
      assert.match(blocked.stderr, /Locking repo exclusive failed/);
      // Another open file description in this process conflicts just the same.
      using other = OstreeRepo.open(path);
      await assert.rejects(other.lock("exclusive", 150), RepoLockedError);
      // Shared with shared is fine.
      (await other.lock("shared", 150)).release();
    } finally {
      txn.abort();
    }
    await runOk([ostree, "prune", `--repo=${path}`, "--refs-only"]);
  });
}, { root: true });

toolTest("transactions: refs only after objects; abort leaves nothing; aliases and nested refs", [
  OSTREE_TOOL,
], async ({ ostree }) => {
  await withTemp(async (dir) => {
    const path = `${dir}/repo`;
    await ostreeInit(ostree, path);
    using repo = OstreeRepo.open(path);

    const txn = await repo.beginTransaction();
    const obj = txn.writeFileFromBytes({ uid: 0, gid: 0, mode: 0o100644 }, te.encode("staged\n"));
    assert.equal(obj.outcome, "written");
    assert.ok(txn.hasObject(obj.checksum, "file"), "visible to its transaction");
    assert.ok(!repo.hasObject(obj.checksum, "file"), "not in objects/ before commit");
    txn.abort();
    assert.ok(!repo.hasObject(obj.checksum, "file"));
    assert.deepEqual(
      [...Deno.readDirSync(`${path}/tmp`)].filter((e) => e.name.startsWith("staging-")),
      [],
    );

    const ref = "ostree/container/image/docker_3A__2F__2F_example_2E_com/os_3A_1";
    const r = await writeCommit(repo, small("one\n"), {
      policy: "reflink-or-copy",
      ref,
      timestamp: 1,
    });
    const listed = await runOk([
      ostree,
      "refs",
      `--repo=${path}`,
      "--list",
      "ostree/container/image",
    ]);
    assert.equal(listed.stdout.trim(), ref);
    assert.deepEqual([...repo.listRefs("ostree/container/image")], [[ref, r.commit]]);
    assert.deepEqual([...repo.listRefs(ref)], [[ref, r.commit]]);
    assert.equal(
      (await runOk([ostree, "rev-parse", `--repo=${path}`, ref])).stdout.trim(),
      r.commit,
    );
    assert.equal(Deno.readTextFileSync(`${path}/refs/heads/${ref}`), r.commit + "\n");

    // An alias made by ostree resolves through its symlink.
    await runOk([ostree, "refs", `--repo=${path}`, "--alias", "--create=short", ref]);
    assert.equal(repo.resolveRef("short"), r.commit);
    assert.equal(repo.resolveRev(r.commit), r.commit);
    assert.equal(repo.resolveRef("missing/ref"), null);

    // Moving and deleting refs.
    const r2 = await writeCommit(repo, small("two\n"), {
      policy: "reflink-or-copy",
      ref,
      timestamp: 2,
      parent: r.commit,
    });
    assert.equal(repo.readCommit(r2.commit).parent, r.commit);
    assert.equal(
      (await runOk([ostree, "rev-parse", `--repo=${path}`, `${ref}^`])).stdout.trim(),
      r.commit,
    );
    const del = await repo.beginTransaction();
    del.setRef(ref, null);
    del.setRef("short", null); // the alias would dangle (ostree fsck refuses dangling refs)
    del.commit();
    assert.equal(repo.resolveRef(ref), null);
    assert.equal(repo.resolveRef("short"), null);
    assert.throws(() => del.setRef("x", null), /already finished/);
    await runOk([ostree, "fsck", `--repo=${path}`]);
  });
}, { root: true });

toolTest("corruption: a changed object fails ostree fsck and unistore's checks alike", [
  OSTREE_TOOL,
], async ({ ostree }) => {
  await withTemp(async (dir) => {
    const path = `${dir}/repo`;
    await ostreeInit(ostree, path);
    using repo = OstreeRepo.open(path);
    const r = await writeCommit(repo, small("content\n"), {
      policy: "reflink-or-copy",
      ref: "c",
      timestamp: 5,
    });
    const file = [...repo.walkCommit(r.commit)].find((i) => i.path === "/f")!;
    assert.equal(repo.computeFileObjectChecksum(file.checksum), file.checksum);

    await Deno.chmod(`${path}/objects/${objectPath(file.checksum, "file")}`, 0o600);
    assert.notEqual(repo.computeFileObjectChecksum(file.checksum), file.checksum);
    const fsck = await run([ostree, "fsck", `--repo=${path}`]);
    assert.notEqual(fsck.code, 0, "ostree fsck notices the chmod");

    // A metadata object whose bytes do not match its name.
    const commitPath = `${path}/objects/${objectPath(r.commit, "commit")}`;
    const bytes = Deno.readFileSync(commitPath);
    bytes[bytes.length - 1] ^= 1;
    Deno.writeFileSync(commitPath, bytes);
    assert.throws(
      () => repo.readCommit(r.commit),
      (e) => e instanceof ObjectCorruptError && e.message.includes(r.commit),
    );
  });
}, { root: true });
