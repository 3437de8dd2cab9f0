/**
 * Writing commits, judged by the real ostree: for a tree holding every awkward entry, the commit
 * unistore writes has the checksum `ostree commit --tree=dir=` gives the same tree with the same
 * subject, body and timestamp; `ostree fsck` passes; `ostree checkout` gives the tree back;
 * objects placed from another file share its extents (FIEMAP) on XFS and btrfs and are byte
 * copies on ext4; `ostreeChecksumOfPath` agrees with `ostree ls -C` on every file.
 */

import assert from "node:assert/strict";
import { close, O, openAt, openDir } from "../../../ffi/fs.ts";
import { fiemap } from "../../../ffi/extents.ts";
import { ostreeChecksumOfPath } from "../../../lib/stores/ostree/checksum.ts";
import { type TreeEntry, writeCommit } from "../../../lib/stores/ostree/commit_writer.ts";
import { ReflinkUnsupportedError } from "../../../lib/reflink/errors.ts";
import { objectPath } from "../../../lib/stores/ostree/objects.ts";
import { OstreeRepo } from "../../../lib/stores/ostree/repo.ts";
import { type FsKind, fsTest } from "../../harness/loopfs.ts";
import { runOk } from "../../harness/run.ts";
import { findTool, isCi, requireTool } from "../../harness/tools.ts";
import { ostreeCommitDir, ostreeInit, ostreeLs } from "../../fixtures/ostree/ostree_cli.ts";
import {
  buildAwkwardTree,
  diffSnapshots,
  dirEntries,
  snapshotTree,
} from "../../fixtures/ostree/trees.ts";

const COMMIT = {
  subject: "awkward tree",
  body: "written by the test\nsecond line",
  timestamp: 1700000000,
};

/** The ostree binary, or a test failure in CI / a skip elsewhere (fsTest already handles root). */
function ostreeBin(): string | null {
  const reason = requireTool("ostree", "ostree");
  if (reason === null) return findTool("ostree")!;
  if (isCi()) throw new Error(`${reason} (CI=true: a missing tool is a failure)`);
  console.error(`skip: ${reason}`);
  return null;
}

/** Physical extents of a file below `dir`. */
function extentsOf(dir: string, rel: string) {
  const dfd = openDir(dir);
  try {
    const fd = openAt(dfd, rel, O.RDONLY | O.NOFOLLOW);
    try {
      return fiemap(fd, rel);
    } finally {
      close(fd);
    }
  } finally {
    close(dfd);
  }
}

async function commitAndJudge(kind: FsKind, mnt: string) {
  const ostree = ostreeBin();
  if (!ostree) return;
  const tree = await buildAwkwardTree(`${mnt}/src`);

  // The reference: ostree's own commit of the same directory.
  await ostreeInit(ostree, `${mnt}/ref-repo`);
  const expected = await ostreeCommitDir(ostree, `${mnt}/ref-repo`, tree.root, COMMIT);

  await ostreeInit(ostree, `${mnt}/repo`);
  using repo = OstreeRepo.open(`${mnt}/repo`);
  const policy = kind === "ext4" ? "reflink-or-copy" : "reflink-required";
  const r = await writeCommit(repo, dirEntries(tree.root), {
    ...COMMIT,
    policy,
    ref: "test/awkward",
  });
  assert.equal(r.commit, expected, "same commit checksum as ostree commit --tree=dir=");
  assert.equal(repo.resolveRef("test/awkward"), expected);
  assert.equal(r.skipped.length, 0);

  // ostree judges the repository and gives the tree back.
  const fsck = await runOk([ostree, "fsck", `--repo=${mnt}/repo`]);
  assert.match(fsck.stdout, /no errors found/);
  await runOk([ostree, "checkout", `--repo=${mnt}/repo`, "test/awkward", `${mnt}/out`]);
  assert.deepEqual(diffSnapshots(snapshotTree(tree.root), snapshotTree(`${mnt}/out`)), []);

  // Our checksum of every file agrees with ostree's listing (of ostree's own commit).
  const listing = await ostreeLs(ostree, `${mnt}/ref-repo`, expected);
  let files = 0;
  for (const e of listing) {
    if (e.type === "d") continue;
    assert.equal(ostreeChecksumOfPath(`${tree.root}${e.path}`), e.checksum, `source ${e.path}`);
    assert.equal(ostreeChecksumOfPath(`${mnt}/out${e.path}`), e.checksum, `checkout ${e.path}`);
    files++;
  }
  assert.ok(files >= 20, `ostree ls listed ${files} files`);

  // Placement: shared extents on reflink filesystems, plain copies on ext4.
  const byPath = new Map(listing.map((e) => [e.path, e.checksum]));
  for (const path of tree.bigFiles) {
    const src = extentsOf(tree.root, path.slice(1));
    const obj = extentsOf(`${mnt}/repo/objects`, objectPath(byPath.get(path)!, "file"));
    const bytes = (xs: typeof src) => xs.reduce((n, e) => n + e.length, 0);
    assert.ok(bytes(src) > 0, `${path} has mapped extents`);
    if (kind === "ext4") {
      assert.ok(obj.every((e) => !e.shared), `${path}: ext4 object is a copy`);
    } else {
      assert.ok(
        src.every((e) => e.shared) && obj.every((e) => e.shared),
        `${path}: extents shared`,
      );
      assert.deepEqual(
        obj.map((e) => e.physical),
        src.map((e) => e.physical),
        `${path}: same blocks`,
      );
    }
  }
  const methods = r.stats.bytesByMethod;
  if (kind === "ext4") assert.ok((methods.readwrite ?? 0) > 3_000_000, JSON.stringify(methods));
  else assert.ok((methods.reflink ?? 0) > 3_000_000 && !methods.readwrite, JSON.stringify(methods));

  // Objects that exist are not written again; nothing else changes either.
  const again = await writeCommit(repo, dirEntries(tree.root), {
    ...COMMIT,
    policy,
    ref: "test/again",
  });
  assert.equal(again.commit, expected);
  assert.equal(again.stats.filesWritten, 0);
  assert.equal(again.stats.metadataWritten, 0);
  assert.equal(again.stats.filesPresent, r.stats.filesWritten + r.stats.filesPresent);
  assert.ok(again.stats.filesPresent >= 19, `${again.stats.filesPresent} distinct content objects`);
  // No staging dir is left behind.
  assert.deepEqual(
    [...Deno.readDirSync(`${mnt}/repo/tmp`)].map((e) => e.name).filter((n) =>
      n.startsWith("staging-")
    ),
    [],
  );

  // Reading: our walk of the commit is ostree's listing (paths, checksums, owners, modes).
  const typeBits = { "-": 0o100000, d: 0o40000, l: 0o120000 } as const;
  assert.deepEqual(
    [...repo.walkCommit(r.commit)].map((
      w,
    ) => [w.path, w.checksum, w.metaChecksum, w.uid, w.gid, w.mode, w.size ?? 0]),
    listing.map((
      e,
    ) => [
      e.path,
      e.checksum,
      e.metaChecksum,
      e.uid,
      e.gid,
      e.mode | typeBits[e.type],
      e.type === "-" ? e.size : 0,
    ]),
  );
  // A commit is itself a source: copied into another repository through its entry stream it
  // keeps its checksum, and its objects share blocks with the first repository's.
  await ostreeInit(ostree, `${mnt}/copy`);
  using copy = OstreeRepo.open(`${mnt}/copy`);
  const copied = await writeCommit(copy, repo.treeEntries(r.commit), {
    ...COMMIT,
    policy,
    ref: "copied",
  });
  assert.equal(copied.commit, expected);
  await runOk([ostree, "fsck", `--repo=${mnt}/copy`]);
  if (kind !== "ext4") {
    const big = objectPath(byPath.get("/big")!, "file");
    assert.deepEqual(
      extentsOf(`${mnt}/copy/objects`, big).map((e) => e.physical),
      extentsOf(`${mnt}/repo/objects`, big).map((e) => e.physical),
    );
  }
}

fsTest("writeCommit of the awkward tree equals ostree commit, passes fsck, checks out", [
  "xfs",
  "btrfs",
  "ext4",
], async (fs) => {
  await commitAndJudge(fs.kind, fs.mountpoint);
});

fsTest(
  "bare-user repository: same checksums, ostree fsck passes, ls -C agrees",
  ["xfs"],
  async (fs) => {
    const ostree = ostreeBin();
    if (!ostree) return;
    const mnt = fs.mountpoint;
    const tree = await buildAwkwardTree(`${mnt}/src`);
    await ostreeInit(ostree, `${mnt}/ref-repo`);
    const expected = await ostreeCommitDir(ostree, `${mnt}/ref-repo`, tree.root, COMMIT);
    await ostreeInit(ostree, `${mnt}/repo`, "bare-user");
    using repo = OstreeRepo.open(`${mnt}/repo`);
    assert.equal(repo.mode, "bare-user");
    const r = await writeCommit(repo, dirEntries(tree.root), {
      ...COMMIT,
      policy: "reflink-required",
      ref: "u",
    });
    assert.equal(r.commit, expected);
    const fsck = await runOk([ostree, "fsck", `--repo=${mnt}/repo`]);
    assert.match(fsck.stdout, /no errors found/);
    const ours = await ostreeLs(ostree, `${mnt}/repo`, "u");
    const theirs = await ostreeLs(ostree, `${mnt}/ref-repo`, expected);
    assert.deepEqual(ours, theirs);
    // Our reader gives the same metadata as ostree's for every node.
    const walked = [...repo.walkCommit(r.commit)];
    assert.deepEqual(
      walked.map((w) => [w.path, w.checksum, w.uid, w.gid, w.mode]),
      theirs.map((
        e,
      ) => [
        e.path,
        e.checksum,
        e.uid,
        e.gid,
        e.mode | ({ "-": 0o100000, d: 0o40000, l: 0o120000 }[e.type]),
      ]),
    );
    // The objects are owned by us, and setuid only lives in user.ostreemeta.
    const tool = walked.find((w) => w.path === "/usr/bin/tool")!;
    assert.equal(tool.mode, 0o104755);
    const st = Deno.lstatSync(`${mnt}/repo/objects/${objectPath(tool.checksum, "file")}`);
    assert.equal((st.mode ?? 0) & 0o7777, 0o755);
  },
);

fsTest(
  "reflink-required from another filesystem stops before anything is visible",
  ["xfs"],
  async (fs) => {
    const ostree = ostreeBin();
    if (!ostree) return;
    // The source lives outside the loop filesystem: FICLONE answers EXDEV.
    const src = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "unistore-ostree-src-" });
    try {
      await Deno.writeTextFile(`${src}/f`, "data that cannot be shared\n");
      await ostreeInit(ostree, `${fs.mountpoint}/repo`);
      using repo = OstreeRepo.open(`${fs.mountpoint}/repo`);
      const entries = () => [
        { path: "/", type: "dir" as const, uid: 0, gid: 0, mode: 0o755 },
        {
          path: "/f",
          type: "file" as const,
          uid: 0,
          gid: 0,
          mode: 0o644,
          openContent: () => openAt(-100, `${src}/f`, O.RDONLY),
        },
      ];
      await assert.rejects(
        writeCommit(repo, entries(), { policy: "reflink-required", ref: "r", timestamp: 1 }),
        (e) =>
          e instanceof ReflinkUnsupportedError && e.code === "EXDEV" &&
          e.message.startsWith("/f: "),
      );
      assert.equal(repo.resolveRef("r"), null);
      assert.deepEqual([...Deno.readDirSync(`${fs.mountpoint}/repo/objects`)], []);
      // With copies allowed it works; a wrong trusted checksum is caught, not stored.
      const ok = await writeCommit(repo, entries(), {
        policy: "reflink-or-copy",
        ref: "r",
        timestamp: 1,
      });
      assert.equal(ok.stats.bytesByMethod.readwrite, 27);
      const wrong = entries();
      (wrong[1] as TreeEntry).contentChecksum = "0".repeat(64);
      await assert.rejects(
        writeCommit(repo, wrong, { policy: "reflink-or-copy", ref: "w", timestamp: 1 }),
        /\/f: content of fd \d+ has checksum [0-9a-f]{64}, not the expected 0{64}/,
      );
      await runOk([ostree, "fsck", `--repo=${fs.mountpoint}/repo`]);
    } finally {
      await Deno.remove(src, { recursive: true });
    }
  },
);
