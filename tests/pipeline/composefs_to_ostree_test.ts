/**
 * composefs → ostree synthesis of the awkward image, on real filesystems, judged by real tools:
 * - the commit passes `ostree fsck` and carries the ostree-ext image metadata (`ostree show`);
 * - `ostree checkout` of it equals the layers extracted by GNU tar with the OCI whiteouts
 *   applied by hand (contents, owners, modes, setuid bits, xattrs, symlinks, hardlinks), minus
 *   exactly the paths ostree cannot store, which the result lists;
 * - on XFS and btrfs every content object shares its extents with its composefs object
 *   (FIEMAP), and each composefs object was opened once per ostree object;
 * - on ext4 `reflink-required` fails before writing anything and names the filesystem;
 *   `reflink-or-copy` copies and passes fsck;
 * - a second synthesis writes nothing; another image reference only gets a ref;
 * - the plan says `missing` before and `synthesized` after.
 */

import assert from "node:assert/strict";
import { fiemap } from "../../ffi/extents.ts";
import { close, O, openAt, pread, S } from "../../ffi/fs.ts";
import { ReflinkUnsupportedError } from "../../lib/reflink/errors.ts";
import { clearProbeCache } from "../../lib/reflink/probe.ts";
import {
  type SynthesisResult,
  synthesizeOstreeCommit,
  transformKeeps,
} from "../../lib/pipeline/composefs_to_ostree.ts";
import { composefsImages, ostreeImages } from "../../lib/pipeline/inventory.ts";
import { planComposefsToOstree } from "../../lib/pipeline/plan.ts";
import { importOciImage } from "../../lib/stores/composefs/oci_image.ts";
import { ComposefsRepo } from "../../lib/stores/composefs/repository.ts";
import {
  BOOTABLE_IMAGE_TRANSFORM,
  OSTREE_EXT_LAYER_TRANSFORM,
  type TreeTransform,
  writeCommit,
} from "../../lib/stores/ostree/commit_writer.ts";
import { UnsupportedEntryError } from "../../lib/stores/ostree/errors.ts";
import { OstreeRepo } from "../../lib/stores/ostree/repo.ts";
import type { TreeEntry } from "../../lib/stores/ostree/tree_entry.ts";
import { buildAwkwardImage } from "../fixtures/oci/mod.ts";
import type { BuiltImage } from "../fixtures/oci/image_builder.ts";
import { ostreeLs } from "../fixtures/ostree/ostree_cli.ts";
import { diffSnapshots, snapshotTree } from "../fixtures/ostree/trees.ts";
import { fsTest, type LoopFs } from "../harness/loopfs.ts";
import { runOk } from "../harness/run.ts";
import { findTool, isCi, requireTools, toolTest } from "../harness/tools.ts";
import {
  extractLayersWithGnuTar,
  hardlinkGroups,
  inodeOf,
  OSTREE_TOOL,
  physicalExtents,
  TAR_TOOL,
} from "./helpers.ts";
import { listTree } from "../harness/tree_listing.ts";

const IMAGE_REFERENCE = "docker://example.com/awkward:1";
/** What ostree cannot store in the awkward image (as synthesis reports them). */
const UNSTORABLE = ["/dev/fifo", "/dev/null", "/usr/share/caf\\xe9.txt"];

/** ostree and tar, or null (printed skip) outside CI when one is missing. */
function tools(): { ostree: string; tar: string } | null {
  const reason = requireTools([OSTREE_TOOL, TAR_TOOL]);
  if (reason === null) return { ostree: findTool("ostree")!, tar: findTool("tar")! };
  if (isCi()) throw new Error(`${reason} (CI=true: a missing tool is a failure)`);
  console.error(`skip: ${reason}`);
  return null;
}

interface Stores {
  img: BuiltImage;
  cfs: ComposefsRepo;
  repo: OstreeRepo;
  repoPath: string;
  base: string;
  [Symbol.dispose](): void;
}

/** The awkward image in a composefs repository and an empty bare ostree repo, on `fs`. */
async function stores(fs: LoopFs, ostree: string): Promise<Stores> {
  clearProbeCache(); // a fresh filesystem may reuse the device number of an earlier one
  const base = fs.mountpoint;
  const img = await buildAwkwardImage(`${base}/layout`, "awkward");
  const cfs = await ComposefsRepo.create(`${base}/composefs`, { algorithm: "sha512" });
  await importOciImage(cfs, `${base}/layout`, "awkward");
  const repoPath = `${base}/repo`;
  await runOk([ostree, "init", `--repo=${repoPath}`, "--mode=bare"]);
  const repo = OstreeRepo.open(repoPath);
  return {
    img,
    cfs,
    repo,
    repoPath,
    base,
    [Symbol.dispose]() {
      repo.close();
      cfs.close();
    },
  };
}

function synthesize(
  s: Stores,
  policy: "reflink-required" | "reflink-or-copy",
  ref = IMAGE_REFERENCE,
) {
  return synthesizeOstreeCommit(s.cfs, s.repo, "awkward", {
    policy,
    imageReference: ref,
    transform: null, // the tree as the layers have it, so GNU tar can judge every path
    onUnsupported: "skip",
  });
}

/** Checks the commit with the real ostree and against the GNU tar oracle. */
async function judge(s: Stores, r: SynthesisResult, t: { ostree: string; tar: string }) {
  const { ostree } = t;
  await runOk([ostree, "fsck", `--repo=${s.repoPath}`]);
  const show = async (key: string) =>
    (await runOk([ostree, "show", `--repo=${s.repoPath}`, `--print-metadata-key=${key}`, r.ref]))
      .stdout.trim();
  assert.equal(await show("ostree.manifest-digest"), `'${s.img.manifestDigest}'`);
  assert.equal(await show("ostree-ext.composefs-synthesized"), "true");
  // GVariant text of a string: the JSON in single quotes (it holds no ' or \ to escape).
  const manifest = JSON.parse((await show("ostree.manifest")).slice(1, -1));
  assert.equal(manifest.config.digest, s.img.configDigest);
  assert.match(await show("ostree.container.image-config"), /org\.example\.fixture/);
  const refs = (await runOk([ostree, "refs", `--repo=${s.repoPath}`])).stdout.split("\n");
  assert.ok(refs.includes(r.ref), `ostree refs lists ${r.ref}`);
  assert.equal(
    (await runOk([ostree, "rev-parse", `--repo=${s.repoPath}`, r.ref])).stdout.trim(),
    r.commit,
  );

  assert.deepEqual(r.skipped.map((x) => x.path), UNSTORABLE, "left out, and said so");

  const checkout = `${s.base}/checkout`;
  const oracle = `${s.base}/oracle`;
  await runOk([ostree, "checkout", `--repo=${s.repoPath}`, r.commit, checkout]);
  await extractLayersWithGnuTar(t.tar, s.img.layerTars, oracle, s.base);
  const unstorable = (p: string) => p === "/dev/null" || p === "/dev/fifo" || p.includes("\uFFFD");
  const want = snapshotTree(oracle, { ignore: unstorable });
  const got = snapshotTree(checkout);
  assert.deepEqual(diffSnapshots(want, got), []);
  assert.ok(want.size > 40, `the oracle has the whole image (${want.size} paths)`);
  assert.equal(want.get("/usr/bin/su")?.mode, S.IFREG | 0o4755, "setuid survived");
  assert.ok(!want.has("/etc/hostname") && !want.has("/var/cache/old"), "whiteouts applied");
  assert.match(want.get("/usr/bin/ping")?.xattrs ?? "", /security\.capability=.*user\.comment=/);

  // Hardlinks of the image are one inode in the checkout too (ostree may merge more: equal
  // objects are one inode).
  const groups = hardlinkGroups(oracle);
  assert.deepEqual(groups, [["/usr/bin/bash", "/usr/bin/sh"]]);
  for (const g of groups) {
    assert.equal(new Set(g.map((p) => inodeOf(`${checkout}${p}`))).size, 1, g.join(" = "));
  }

  // Each composefs object was opened once per ostree object it became: the regular-file
  // objects over 64 bytes in the commit, as `ostree ls` lists them.
  const ls = await ostreeLs(ostree, s.repoPath, r.commit);
  const bigObjects = new Set(
    ls.filter((e) => e.type === "-" && e.size > 64).map((e) => e.checksum),
  );
  assert.equal(r.stats.objectsRead, bigObjects.size);
  assert.equal(r.stats.files, ls.filter((e) => e.type !== "d").length);
}

fsTest("composefs → ostree by reflink: fsck, GNU tar oracle, shared extents, idempotent", [
  "xfs",
  "btrfs",
], async (fs) => {
  const t = tools();
  if (!t) return;
  using s = await stores(fs, t.ostree);

  const before = planComposefsToOstree(composefsImages(s.cfs), ostreeImages(s.repo));
  assert.equal(before.composefsToOstree.length, 1);
  assert.equal(before.composefsToOstree[0].state, "missing");
  assert.equal(before.composefsToOstree[0].configDigest, s.img.configDigest);

  const r = await synthesize(s, "reflink-required");
  assert.equal(r.skippedExisting, false);
  assert.equal(r.manifestDigest, s.img.manifestDigest);
  assert.equal(r.probe?.supported, true);
  assert.equal(r.probe?.filesystem, fs.kind);
  assert.equal(r.stats.copiedBytes, 0);
  assert.ok(r.stats.reflinkedBytes > 4 << 20, `${r.stats.reflinkedBytes} bytes reflinked`);
  await judge(s, r, t);

  // Every file of the commit over one block shares all its extents with composefs objects.
  const cfsExtents = physicalExtents(`${s.base}/composefs/objects`);
  let checked = 0;
  for (const e of await ostreeLs(t.ostree, s.repoPath, r.commit)) {
    if (e.type !== "-" || e.size <= 4096) continue;
    const fd = openAt(-100, `${s.base}/checkout${e.path}`, O.RDONLY | O.NOFOLLOW);
    try {
      const extents = fiemap(fd, e.path);
      assert.ok(extents.length > 0, `${e.path} has extents`);
      for (const x of extents) {
        assert.ok(x.shared, `${e.path}: extent at ${x.logical} is shared`);
        assert.ok(
          cfsExtents.some((c) => c.start <= x.physical && x.physical + x.length <= c.end),
          `${e.path}: extent at ${x.logical} lies in a composefs object's extent`,
        );
      }
    } finally {
      close(fd);
    }
    checked++;
  }
  assert.ok(checked >= 6, `${checked} large files checked`);

  const after = planComposefsToOstree(composefsImages(s.cfs), ostreeImages(s.repo));
  assert.equal(after.composefsToOstree[0].state, "synthesized");
  assert.equal(after.composefsToOstree[0].needsSynthesis, false);
  assert.deepEqual(after.ostreeOnly, []);

  // Again: nothing is written, not even a staging dir.
  const files = await listTree(s.repoPath);
  const again = await synthesize(s, "reflink-required");
  assert.equal(again.skippedExisting, true);
  assert.equal(again.refUpdated, false);
  assert.equal(again.commit, r.commit);
  assert.deepEqual(await listTree(s.repoPath), files);

  // Another reference to the same manifest: only a ref.
  const other = await synthesize(s, "reflink-required", "docker://example.com/awkward:latest");
  assert.equal(other.skippedExisting, true);
  assert.equal(other.refUpdated, true);
  assert.equal(other.commit, r.commit);
  assert.equal(
    (await runOk([t.ostree, "rev-parse", `--repo=${s.repoPath}`, other.ref])).stdout.trim(),
    r.commit,
  );
  await runOk([t.ostree, "fsck", `--repo=${s.repoPath}`]);
}, { sizeMiB: 512 });

fsTest(
  "composefs → ostree on ext4: reflink-required writes nothing and names ext4; reflink-or-copy copies",
  [
    "ext4",
  ],
  async (fs) => {
    const t = tools();
    if (!t) return;
    using s = await stores(fs, t.ostree);
    const files = await listTree(s.repoPath);
    const cfsFiles = await listTree(`${s.base}/composefs`);
    await assert.rejects(
      synthesize(s, "reflink-required"),
      (e) =>
        e instanceof ReflinkUnsupportedError && /\(ext4\)/.test(e.message) &&
        e.message.includes(s.repoPath),
    );
    assert.deepEqual(await listTree(s.repoPath), files, "the ostree repository is untouched");
    assert.deepEqual(await listTree(`${s.base}/composefs`), cfsFiles, "so is composefs");

    // What ostree cannot store is refused by default, naming the path, before anything is written.
    await assert.rejects(
      synthesizeOstreeCommit(s.cfs, s.repo, "awkward", {
        policy: "reflink-or-copy",
        imageReference: IMAGE_REFERENCE,
        transform: null,
      }),
      (e) => e instanceof UnsupportedEntryError && e.path === "/dev/fifo" && /fifo/.test(e.message),
    );
    assert.deepEqual(await listTree(s.repoPath), files);

    const r = await synthesize(s, "reflink-or-copy");
    assert.equal(r.probe?.supported, false);
    assert.equal(r.stats.reflinkedBytes, 0);
    assert.ok(r.stats.copiedBytes > 4 << 20, `${r.stats.copiedBytes} bytes copied`);
    await judge(s, r, t);
    // A copy shares nothing.
    const fd = openAt(-100, `${s.base}/checkout/usr/lib/big.img`, O.RDONLY | O.NOFOLLOW);
    try {
      const extents = fiemap(fd);
      assert.ok(extents.length > 0 && extents.every((x) => !x.shared));
    } finally {
      close(fd);
    }
  },
  { sizeMiB: 256 },
);

toolTest("transformKeeps says which paths the ostree writer keeps, for every transform", [
  OSTREE_TOOL,
], async ({ ostree }) => {
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "unistore-pipeline-" });
  try {
    await runOk([ostree, "init", `--repo=${dir}/repo`, "--mode=bare-user"]);
    using repo = OstreeRepo.open(`${dir}/repo`);
    const paths = [
      "/usr/bin/x",
      "/etc/x",
      "/var/x",
      "/opt/x",
      "/bin",
      "/run",
      "/run/x",
      "/tmp/x",
      "/dev/x",
      "/proc",
      "/srv/a/b",
    ];
    const transforms: [string, Readonly<TreeTransform>][] = [
      ["bootable", BOOTABLE_IMAGE_TRANSFORM],
      ["layer", OSTREE_EXT_LAYER_TRANSFORM],
      ["layer, API dirs kept", { ...OSTREE_EXT_LAYER_TRANSFORM, emptyApiDirs: false }],
    ];
    for (const [name, transform] of transforms) {
      const entries: TreeEntry[] = paths.map((p) => ({
        path: p,
        type: "file",
        uid: 0,
        gid: 0,
        mode: 0o644,
        content: new TextEncoder().encode(p),
      }));
      // /run and /proc are directories in images; a file stands in (the rule is by path).
      const r = await writeCommit(repo, entries, { policy: "reflink-or-copy", transform });
      // Each object's content is the path it was given as: which of them did the writer keep?
      const kept: string[] = [];
      for (const item of repo.walkCommit(r.commit)) {
        if (item.type !== "file") continue;
        const fd = repo.openFileObject(item.checksum);
        try {
          const buf = new Uint8Array(item.size!);
          pread(fd, buf, 0);
          kept.push(new TextDecoder().decode(buf));
        } finally {
          close(fd);
        }
      }
      assert.deepEqual(
        kept.sort(),
        paths.filter((p) => transformKeeps(p, transform)).sort(),
        `${name} transform`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
