// `unistore fsck images` as a user runs it: a real process on real host roots. An ostree host
// built by ostree from a loopback registry, bound and unified through lib/host/flags.ts, its
// booted image imported into composefs, its ostree commit synthesized by reflink and its
// containers-storage filled by skopeo; faults injected with the real tools (podman rmi, ostree
// admin deploy) or by hand (a dangling tag, a deleted or rewritten object); repairs judged by
// podman, FIEMAP, ostree fsck/show and a second fsck. A native composefs host, a disabled host
// and usage errors too. Exit codes are fsck(8)'s: 0 clean, 1 repaired, 4 problems left, 8
// operational error, 16 usage.

import assert from "node:assert/strict";
import { fiemap } from "../../ffi/extents.ts";
import { AT, close, O, openAt } from "../../ffi/fs.ts";
import { writeBootcJson, writeOstreeComposefsBound } from "../../lib/host/flags.ts";
import { HostRoot } from "../../lib/host/root.ts";
import { synthesizeOstreeCommit } from "../../lib/pipeline/composefs_to_ostree.ts";
import { NOT_IN_CONTAINERS_STORAGE } from "../../lib/pipeline/fsck_images.ts";
import {
  bootcTagFor,
  encodeTag,
  importOciImage,
  listTags,
  readStoredImage,
  untagImage,
} from "../../lib/stores/composefs/oci_image.ts";
import { ComposefsRepo } from "../../lib/stores/composefs/repository.ts";
import { SplitStream } from "../../lib/stores/composefs/splitstream.ts";
import { imageRef } from "../../lib/stores/ostree/refs.ts";
import { OstreeRepo } from "../../lib/stores/ostree/repo.ts";
import { run, runOk } from "../harness/run.ts";
import { unistore } from "../fixtures/unistore_cli.ts";
import type { Tool } from "../harness/tools.ts";
import { unmountBelow } from "../fixtures/cstorage/podman.ts";
import {
  buildBootableImage,
  buildComposefsHost,
  buildOstreeHost,
  cmdlineOf,
  COMPOSEFS_HOST_TOOLS,
  FIXTURE_KVER,
  hostFixtureTest,
  OSTREE_HOST_TOOLS,
} from "../fixtures/host/mod.ts";
import { withHostTree } from "../host/host_tree.ts";

/** `fsck images --json` on `dir`: the exit code and the parsed report. */
async function fsckJson(dir: string, ...extra: string[]) {
  const r = await unistore("--root", dir, "fsck", "images", "--json", ...extra);
  assert.ok(r.stdout.startsWith("{"), `expected JSON, found:\n${r.stdout}\n${r.stderr}`);
  return { code: r.code, report: JSON.parse(r.stdout) as Report, stderr: r.stderr };
}

/** `fsck images` in human form: the exit code and the output lines. */
async function fsckHuman(dir: string, ...extra: string[]) {
  const r = await unistore("--root", dir, "fsck", "images", ...extra);
  return { code: r.code, lines: r.stdout.trimEnd().split("\n"), stderr: r.stderr };
}

interface ImageJson {
  name: string;
  inComposefs: boolean;
  inContainersStorage: boolean;
  repaired: boolean;
  ostreeCommitPresent: boolean;
  ostreeCommitSynthesized: boolean;
  isLive: boolean;
  pending: boolean;
  issues: string[];
}

interface Report {
  unifiedStorageEnabled: boolean;
  binding: string;
  reflinksSupported: boolean | null;
  images: ImageJson[];
  ok: boolean;
}

/** The members of the spec's JSON, in the spec's order (bootc's struct order). */
const REPORT_KEYS = ["unifiedStorageEnabled", "binding", "reflinksSupported", "images", "ok"];
const IMAGE_KEYS = [
  "name",
  "inComposefs",
  "inContainersStorage",
  "repaired",
  "ostreeCommitPresent",
  "ostreeCommitSynthesized",
  "isLive",
  "pending",
  "issues",
];

/**
 * The report of image `name` as `over` says, else as most steps here expect it: in composefs
 * and not in containers-storage, its ostree commit present and synthesized, live, pending
 * (booted from the pulled commit), not repaired, no issues.
 */
function imageJson(name: string, over: Partial<ImageJson> = {}): ImageJson {
  return {
    name,
    inComposefs: true,
    inContainersStorage: false,
    repaired: false,
    ostreeCommitPresent: true,
    ostreeCommitSynthesized: true,
    isLive: true,
    pending: true,
    issues: [],
    ...over,
  };
}

/** An image no boot entry reaches, without an ostree commit. */
const NOT_LIVE: Partial<ImageJson> = {
  ostreeCommitPresent: false,
  ostreeCommitSynthesized: false,
  isLive: false,
  pending: false,
};

const PODMAN: Tool = { bin: "podman", pkg: "podman" };

/** podman on a host's bootc store, with a private run root (the restricted-VM flags). */
function podmanOn(bin: string, store: string, runroot: string) {
  return async (...args: string[]) => {
    try {
      return await runOk([
        bin,
        "--root",
        store,
        "--runroot",
        runroot,
        "--storage-driver",
        "overlay",
        "--cgroup-manager=cgroupfs",
        ...args,
      ]);
    } finally {
      await unmountBelow(store);
    }
  };
}

/** Image ids podman lists in the store. */
async function podmanIds(podman: ReturnType<typeof podmanOn>): Promise<string[]> {
  const r = await podman("images", "--no-trunc", "--format", "{{.ID}}");
  return r.stdout.split("\n").map((l) => l.trim().replace(/^sha256:/, "")).filter((l) => l);
}

/** The large file the fixture images carry, so that composefs stores it as an object. */
const KERNEL = "unistore fsck fixture kernel\n".repeat(2500);

/** The `linux` and `options` of the BLS entry with `version` in `dir`. */
async function blsEntry(dir: string, version: string) {
  for await (const e of Deno.readDir(dir)) {
    const fields = new Map<string, string>();
    for (const line of (await Deno.readTextFile(`${dir}/${e.name}`)).split("\n")) {
      const m = /^(\S+)\s+(.*)$/.exec(line.trim());
      if (m) fields.set(m[1], m[2]);
    }
    if (fields.get("version") === version) {
      return { linux: fields.get("linux")!, options: fields.get("options")! };
    }
  }
  throw new Error(`no BLS entry with version ${version} in ${dir}`);
}

/** The extents of a file (FIEMAP). */
function extentsOf(path: string) {
  const fd = openAt(AT.FDCWD, path, O.RDONLY | O.NOFOLLOW);
  try {
    return fiemap(fd, path);
  } finally {
    close(fd);
  }
}

/** Rewrites a file in place with different bytes of the same size; returns the old bytes. */
async function corrupt(path: string): Promise<Uint8Array> {
  const old = await Deno.readFile(path);
  const bad = old.slice();
  bad[0] ^= 0xff;
  await Deno.writeFile(path, bad);
  return old;
}

Deno.test("unistore fsck: usage errors exit 16, a broken flag file is an operational error (8)", async () => {
  await withHostTree({ "sysroot/composefs": { dir: true } }, async (_root, dir) => {
    for (
      const args of [
        ["fsck", "bogus"],
        ["fsck", "images", "extra"],
        ["fsck", "images", "--bogus"],
      ]
    ) {
      const r = await unistore("--root", dir, ...args);
      assert.equal(r.code, 16, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /^unistore: /);
      assert.equal(r.stdout, "");
    }
    const bogus = await unistore("--root", dir, "fsck", "images", "--bogus");
    assert.match(bogus.stderr, /--bogus/);

    await Deno.writeTextFile(`${dir}/sysroot/composefs/bootc.json`, '{"unified": "always"}');
    const broken = await unistore("--root", dir, "fsck", "images");
    assert.equal(broken.code, 8, broken.stderr);
    assert.match(broken.stderr, /bootc\.json: unified: expected one of/);
  });
});

Deno.test("unistore fsck on a host without unified storage: nothing to check, exit 0", async () => {
  await withHostTree({ "sysroot/ostree/deploy": { dir: true } }, async (_root, dir) => {
    const human = await unistore("--root", dir, "fsck", "images");
    assert.equal(human.code, 0, human.stderr);
    assert.equal(
      human.stdout,
      "unistore fsck images: unified storage not enabled; nothing to check\n",
    );
    // Bare `fsck` runs every check, and images is the only one.
    assert.equal((await unistore("--root", dir, "fsck")).stdout, human.stdout);
    const { code, report } = await fsckJson(dir);
    assert.equal(code, 0);
    assert.deepEqual(Object.keys(report), REPORT_KEYS);
    assert.equal(report.unifiedStorageEnabled, false);
    assert.equal(report.binding, "disabled");
    assert.deepEqual(report.images, []);
    assert.equal(report.ok, true);
    assert.ok(typeof report.reflinksSupported === "boolean");
  });
});

hostFixtureTest(
  "unistore fsck images on an ostree host: bound-only, unified, injected faults, --repair, --deep",
  "xfs",
  [...OSTREE_HOST_TOOLS, PODMAN],
  async (fs, bins) => {
    const oci = `${fs.mountpoint}/oci`;
    await buildBootableImage(oci, { tag: "v1", version: "1.0", kernel: KERNEL });
    await buildBootableImage(oci, { tag: "v2", version: "2.0", kernel: KERNEL });
    await using host = await buildOstreeHost(`${fs.mountpoint}/host`, {
      images: [{ ref: "os:1", layout: `${oci}:v1` }],
      booted: 0,
      bins,
    });
    const root = new HostRoot(host.dir);
    const name = host.images[0].imageName;
    const cfsPath = `${host.sysroot}/composefs`;
    const storePath = `${host.sysroot}/ostree/bootc/storage`;
    const runroot = await Deno.makeTempDir({ prefix: "uscs-run-" });
    const podman = podmanOn(bins.podman, storePath, runroot);
    try {
      // Right after binding (the repo flag only, nothing fetched yet) the booted image is in no
      // store but ostree: pending, and no failure.
      await writeOstreeComposefsBound(root);
      const pulled = await host.registry.pull("os:1", `${fs.mountpoint}/pulled`, "v1");
      const manifest = pulled.manifestDigest;
      const configHex = pulled.configDigest.slice("sha256:".length);
      const ref = imageRef(`docker://${name}`);
      {
        const { code, report } = await fsckJson(host.dir);
        assert.equal(code, 0, JSON.stringify(report));
        assert.equal(report.binding, "bound-only");
        assert.deepEqual(
          report.images.map((i) => [i.name, i.inComposefs, i.isLive, i.pending, i.issues]),
          [[name, false, true, true, []]],
        );
      }
      {
        using cfs = await ComposefsRepo.create(cfsPath);
        // Unified, the same image must be in composefs and containers-storage.
        writeBootcJson(root, "enabled");
        const { code, report } = await fsckJson(host.dir);
        assert.equal(code, 4, JSON.stringify(report));
        assert.deepEqual(report.images[0].issues, [
          `not in composefs: no manifest stream for ${manifest}`,
          "not in containers-storage",
        ]);
        await Deno.remove(root.bootcJson);

        // Imported as a registry pull gives it, its ostree commit synthesized by reflink.
        await importOciImage(cfs, pulled.dir, "v1", { tagAs: name });
        using ostree = OstreeRepo.open(host.repo);
        await synthesizeOstreeCommit(cfs, ostree, manifest, {
          policy: "reflink-required",
          imageReference: `docker://${name}`,
        });
      }

      // Bound only: containers-storage is not part of it, and fsck must not create it. The
      // booted deployment is still the commit ostree pulled: pending, which fails nothing.
      {
        const { code, report } = await fsckJson(host.dir);
        assert.equal(code, 0, JSON.stringify(report));
        assert.deepEqual(Object.keys(report), REPORT_KEYS);
        assert.equal(report.binding, "bound-only");
        assert.equal(report.unifiedStorageEnabled, false);
        assert.equal(report.reflinksSupported, true);
        assert.equal(report.ok, true);
        assert.equal(report.images.length, 1);
        assert.deepEqual(Object.keys(report.images[0]), IMAGE_KEYS);
        assert.deepEqual(report.images[0], imageJson(name));
        const human = await fsckHuman(host.dir);
        assert.equal(human.code, 0);
        assert.deepEqual(human.lines, [
          "unistore fsck: checking image stores",
          `  [PENDING] ${name} (bound; deployment not yet composefs-synthesized — upgrade and ` +
          "reboot to activate)",
          "unistore fsck: checks passed (0 OK, 1 pending reboot to activate)",
        ]);

        // A lost bootc tag: found, and restored by --repair, which only re-tags here.
        {
          using cfs = await ComposefsRepo.open(cfsPath);
          assert.ok(untagImage(cfs, bootcTagFor(manifest)));
        }
        const lost = await fsckJson(host.dir);
        assert.equal(lost.code, 4);
        assert.equal(lost.report.ok, false);
        assert.deepEqual(lost.report.images[0].issues, [
          `no bootc tag ${bootcTagFor(manifest)} in composefs (GC may collect the image)`,
        ]);
        const fixed = await fsckHuman(host.dir, "--repair");
        assert.equal(fixed.code, 1, fixed.lines.join("\n"));
        assert.deepEqual(fixed.lines.slice(1, 3), [
          `  [REPAIR] Re-tagging ${name} in composefs repo as ${bootcTagFor(manifest)}...`,
          `  [REPAIRED] Re-tagged ${name} successfully`,
        ]);
        using cfs = await ComposefsRepo.open(cfsPath, { readOnly: true });
        assert.ok(listTags(cfs).some((t) => t.name === bootcTagFor(manifest)));
        assert.equal((await fsckJson(host.dir)).code, 0);
        await assert.rejects(Deno.lstat(`${host.sysroot}/ostree/bootc`), Deno.errors.NotFound);
      }

      // Unified: containers-storage joins, filled by skopeo as a registry pull fills it.
      writeBootcJson(root, "enabled");
      try {
        await runOk([
          bins.skopeo,
          "copy",
          "--quiet",
          `oci:${pulled.dir}:v1`,
          `containers-storage:[overlay@${storePath}+${runroot}]${name}`,
        ]);
      } finally {
        await unmountBelow(storePath);
      }
      assert.deepEqual(await podmanIds(podman), [configHex]);
      {
        const { code, report } = await fsckJson(host.dir);
        assert.equal(code, 0, JSON.stringify(report));
        assert.equal(report.binding, "unified");
        assert.equal(report.unifiedStorageEnabled, true);
        assert.deepEqual(report.images[0], imageJson(name, { inContainersStorage: true }));
        const deep = await fsckJson(host.dir, "--deep");
        assert.equal(deep.code, 0, JSON.stringify(deep.report));
      }

      // Faults: the image deleted from containers-storage, bootc's tag lost, a tag whose
      // manifest stream is gone, and an image no boot entry reaches (a note, not a failure).
      await podman("rmi", configHex);
      assert.deepEqual(await podmanIds(podman), []);
      const dangling = `sha256:${"e".repeat(64)}`;
      await Deno.symlink(
        `../../oci-manifest-${dangling}`,
        `${cfsPath}/streams/refs/oci/${encodeTag("localhost/dangling:1")}`,
      );
      {
        using cfs = await ComposefsRepo.open(cfsPath);
        assert.ok(untagImage(cfs, bootcTagFor(manifest)));
        await importOciImage(cfs, oci, "v2", { tagAs: "localhost/stale:2" });
      }

      const faults = await fsckJson(host.dir);
      assert.equal(faults.code, 4, JSON.stringify(faults.report));
      assert.equal(faults.report.ok, false);
      assert.deepEqual(faults.report.images, [
        imageJson(name, {
          issues: [
            `no bootc tag ${bootcTagFor(manifest)} in composefs (GC may collect the image)`,
            NOT_IN_CONTAINERS_STORAGE,
          ],
        }),
        imageJson("localhost/dangling:1", {
          ...NOT_LIVE,
          inComposefs: false,
          issues: [
            `composefs tag localhost/dangling:1 is dangling: streams/oci-manifest-${dangling} ` +
            "is missing",
          ],
        }),
        imageJson("localhost/stale:2", NOT_LIVE),
      ]);
      const human = await fsckHuman(host.dir);
      assert.equal(human.code, 4);
      assert.deepEqual(human.lines, [
        "unistore fsck: checking image stores",
        ...faults.report.images[0].issues.map((i) => `  [FAIL] ${name} - ${i}`),
        "         Hint: re-run with `--repair` to restore, or `unistore upgrade` to re-pull",
        `  [FAIL] localhost/dangling:1 - ${faults.report.images[1].issues[0]}`,
        "         Hint: re-run with `--repair` to remove it",
        "  [NOTE] localhost/stale:2 (stale composefs tag, not a live deployment)",
        "unistore fsck: 2 failure(s) found (0 OK, 2 FAIL)",
      ]);

      // --repair: each repair announced, then the stores as they are now.
      const repaired = await fsckHuman(host.dir, "--repair");
      assert.equal(repaired.code, 1, repaired.lines.join("\n"));
      const [first, ...rest] = repaired.lines;
      assert.equal(first, "unistore fsck: checking image stores");
      assert.deepEqual(rest.slice(0, 6), [
        `  [REPAIR] Removing dangling composefs tag localhost/dangling:1...`,
        `  [REPAIRED] Removed dangling composefs tag localhost/dangling:1`,
        `  [REPAIR] Re-tagging ${name} in composefs repo as ${bootcTagFor(manifest)}...`,
        `  [REPAIRED] Re-tagged ${name} successfully`,
        `  [REPAIR] Restoring ${name} to containers-storage...`,
        `  [REPAIRED] Successfully restored ${name} to containers-storage: image ${configHex} as ` +
        `localhost/bootc-recovered:${configHex.slice(0, 12)} (2 layer(s) written, 0 reused)`,
      ]);
      assert.deepEqual(rest.slice(6), [
        `  [PENDING] ${name} (bound; deployment not yet composefs-synthesized — upgrade and ` +
        "reboot to activate)",
        "  [NOTE] localhost/stale:2 (stale composefs tag, not a live deployment)",
        "unistore fsck: checks passed (0 OK, 1 pending reboot to activate)",
      ]);
      // The judges: podman lists the image again under its id, and the tags are right.
      assert.deepEqual(await podmanIds(podman), [configHex]);
      const inspect = JSON.parse((await podman("image", "inspect", configHex)).stdout);
      assert.deepEqual(inspect[0].RepoTags, [
        `localhost/bootc-recovered:${configHex.slice(0, 12)}`,
      ]);
      {
        using cfs = await ComposefsRepo.open(cfsPath, { readOnly: true });
        const tags = listTags(cfs).map((t) => t.name);
        assert.ok(tags.includes(bootcTagFor(manifest)));
        assert.ok(!tags.includes("localhost/dangling:1"));
      }
      // Rebuilt by reflink: the kernel in the image's diff/ shares its blocks with composefs.
      {
        using cfs = await ComposefsRepo.open(cfsPath, { readOnly: true });
        const img = await readStoredImage(cfs, manifest);
        using s = SplitStream.openObject(cfs, img.layerStreams.get(img.diffIds[0])!);
        const layers = JSON.parse(
          await Deno.readTextFile(`${storePath}/overlay-layers/layers.json`),
        ) as { id: string; parent?: string }[];
        const base = layers.find((l) => !l.parent)!;
        const diffKernel = `${storePath}/overlay/${base.id}/diff/usr/lib/modules/${FIXTURE_KVER}` +
          "/vmlinuz";
        const objects = s.index.objectRefs.map((id) => `${cfsPath}/${cfs.objectPath(id)}`);
        const kernelObject = objects.find((p) => Deno.statSync(p).size === KERNEL.length)!;
        const mine = extentsOf(diffKernel);
        assert.ok(mine.length > 0 && mine.every((x) => x.shared), JSON.stringify(mine));
        assert.deepEqual(
          mine.map((x) => [x.physical, x.length]),
          extentsOf(kernelObject).map((x) => [x.physical, x.length]),
        );
      }
      const again = await fsckJson(host.dir);
      assert.equal(again.code, 0, JSON.stringify(again.report));
      assert.equal(again.report.images[0].repaired, false);
      assert.equal(again.report.images[0].inContainersStorage, true);
      // The image no boot entry reaches is still there: a note, which fails nothing.
      assert.deepEqual(
        again.report.images.map((i) => [i.name, i.isLive, i.issues]),
        [[name, true, []], ["localhost/stale:2", false, []]],
      );

      // A missing composefs object is found without --deep: the layer streams' object refs are
      // checked for existence (nothing is read). --repair cannot bring it back from composefs.
      const stored = await (async () => {
        using cfs = await ComposefsRepo.open(cfsPath, { readOnly: true });
        const img = await readStoredImage(cfs, manifest);
        const diffId = img.diffIds[0];
        using s = SplitStream.openObject(cfs, img.layerStreams.get(diffId)!);
        const kernel = s.index.objectRefs.find((id) =>
          Deno.statSync(`${cfsPath}/${cfs.objectPath(id)}`).size === KERNEL.length
        );
        assert.ok(kernel, "the kernel is an object of the base layer");
        return { diffId, path: cfs.objectPath(kernel) };
      })();
      const objectFile = `${cfsPath}/${stored.path}`;
      await Deno.rename(objectFile, `${fs.mountpoint}/saved-object`);
      const missingIssue =
        `composefs: layer ${stored.diffId} references missing object ${stored.path}`;
      const missing = await fsckJson(host.dir);
      assert.equal(missing.code, 4);
      assert.deepEqual(missing.report.images[0].issues, [missingIssue]);
      const cannot = await fsckHuman(host.dir, "--repair");
      assert.equal(cannot.code, 4);
      assert.deepEqual(cannot.lines.slice(1, 3), [
        `  [FAIL] ${name} - ${missingIssue}`,
        "         Hint: not repairable from composefs; `unistore upgrade` re-pulls the image",
      ]);
      await Deno.rename(`${fs.mountpoint}/saved-object`, objectFile);

      // Rewritten bytes of the same size need --deep, in each store: the composefs kernel
      // object, a containers-storage diff file, an ostree object of the synthesized commit.
      const layers = JSON.parse(
        await Deno.readTextFile(`${storePath}/overlay-layers/layers.json`),
      ) as { id: string; parent?: string }[];
      const base = layers.find((l) => !l.parent)!;
      const diffFile = `${storePath}/overlay/${base.id}/diff/usr/lib/os-release`;
      let ostreeObject: string;
      {
        using ostree = OstreeRepo.open(host.repo);
        const commit = ostree.resolveRef(ref)!;
        const item = [...ostree.walkCommit(commit)].find((i) =>
          i.path === `/usr/lib/modules/${FIXTURE_KVER}/initramfs.img`
        )!;
        ostreeObject = `${host.repo}/objects/${item.checksum.slice(0, 2)}/${
          item.checksum.slice(2)
        }.file`;
      }
      const saved = [
        [objectFile, await corrupt(objectFile)],
        [diffFile, await corrupt(diffFile)],
        [ostreeObject, await corrupt(ostreeObject)],
      ] as const;
      assert.equal((await fsckJson(host.dir)).code, 0, "only --deep reads content");
      const deep = await fsckJson(host.dir, "--deep");
      assert.equal(deep.code, 4);
      const issues = deep.report.images[0].issues;
      assert.ok(
        issues.some((i) =>
          i.startsWith(`composefs: object-digest-mismatch: ${stored.path}: content hashes to `)
        ),
        issues.join("\n"),
      );
      assert.ok(
        issues.some((i) =>
          i.startsWith(`composefs: layer-diff-id-mismatch: streams/oci-layer-${stored.diffId}`)
        ),
        issues.join("\n"),
      );
      assert.ok(
        issues.some((i) => i.startsWith(`containers-storage: layer ${base.id}: `)),
        issues.join("\n"),
      );
      assert.ok(
        issues.some((i) =>
          /^ostree: commit [0-9a-f]{64}: \/usr\/lib\/modules\/.*\/initramfs\.img: object [0-9a-f]{64}\.file re-checksums to [0-9a-f]{64}$/
            .test(i)
        ),
        issues.join("\n"),
      );
      for (const [path, bytes] of saved) await Deno.writeFile(path, bytes);
      assert.equal((await fsckJson(host.dir, "--deep")).code, 0);

      // Upgraded and rebooted: the synthesized commit deployed by the real ostree and booted
      // (the pulled one is the rollback). Nothing is pending any more.
      let synthesized: string;
      {
        using ostree = OstreeRepo.open(host.repo);
        synthesized = ostree.resolveRef(ref)!;
      }
      const originFile = `${fs.mountpoint}/origin`;
      await Deno.writeTextFile(
        originFile,
        `[origin]\ncontainer-image-reference=${host.images[0].originReference}\n`,
      );
      await runOk([
        bins.ostree,
        "admin",
        "deploy",
        `--sysroot=${host.sysroot}`,
        "--os=default",
        `--origin-file=${originFile}`,
        "--retain",
        "--karg=root=LABEL=unistore-root",
        synthesized,
      ]);
      // ostree numbers entries by deployment count minus index: the new default is version 2.
      await Deno.writeTextFile(
        `${host.dir}/proc/cmdline`,
        cmdlineOf(await blsEntry(`${host.sysroot}/boot/loader/entries`, "2")),
      );
      const upgraded = await fsckHuman(host.dir);
      assert.equal(upgraded.code, 0, upgraded.lines.join("\n"));
      assert.deepEqual(upgraded.lines, [
        "unistore fsck: checking image stores",
        `  [OK]  ${name} (composefs: yes, containers-storage: yes)`,
        "  [NOTE] localhost/stale:2 (stale composefs tag, not a live deployment)",
        "unistore fsck: all checks passed (1 image(s) OK)",
      ]);

      // The booted deployment's commit lost (ostree fsck fails too): a synthesis from composefs
      // writes the very same commit again.
      await Deno.remove(
        `${host.repo}/objects/${synthesized.slice(0, 2)}/${synthesized.slice(2)}.commit`,
      );
      assert.notEqual((await run([bins.ostree, "fsck", `--repo=${host.repo}`])).code, 0);
      const gone = `ostree repository ${host.repo}: object ${synthesized}.commit is missing`;
      const lost = await fsckJson(host.dir);
      assert.equal(lost.code, 4, JSON.stringify(lost.report));
      assert.deepEqual(lost.report.images[0].issues, [
        `ostree: ref ${ref} → commit ${synthesized}: ${gone}`,
        `ostree commit missing: deployment ${synthesized}.0 (booted): ${gone}`,
      ]);
      const resynthesized = await fsckHuman(host.dir, "--repair");
      assert.equal(resynthesized.code, 1, resynthesized.lines.join("\n"));
      assert.deepEqual(resynthesized.lines.slice(1, 4), [
        `  [REPAIR] Synthesizing the ostree commit of ${name} from composefs...`,
        `  [REPAIRED] Synthesized ostree commit ${synthesized} (${ref})`,
        `  [OK]  ${name} (composefs: yes, containers-storage: yes)`,
      ]);
      await runOk([bins.ostree, "fsck", `--repo=${host.repo}`]);
      const meta = await runOk([
        bins.ostree,
        `--repo=${host.repo}`,
        "show",
        "--print-metadata-key=ostree-ext.composefs-synthesized",
        synthesized,
      ]);
      assert.equal(meta.stdout.trim(), "true");
      assert.equal((await fsckJson(host.dir)).code, 0);
    } finally {
      await unmountBelow(storePath);
      await Deno.remove(runroot, { recursive: true });
    }
  },
);

hostFixtureTest(
  "unistore fsck images on a native composefs host: live images rebuilt in containers-storage",
  "xfs",
  [...COMPOSEFS_HOST_TOOLS, PODMAN],
  async (fs, bins) => {
    const oci = `${fs.mountpoint}/oci`;
    await buildBootableImage(oci, { tag: "v1", version: "1.0" });
    await buildBootableImage(oci, { tag: "v2", version: "2.0" });
    await using host = await buildComposefsHost(`${fs.mountpoint}/host`, {
      images: [{ ref: "os:1", layout: `${oci}:v1` }, { ref: "os:2", layout: `${oci}:v2` }],
      booted: 1,
      bins,
    });
    const storePath = `${host.sysroot}/composefs/bootc/storage`;
    const runroot = await Deno.makeTempDir({ prefix: "uscs-run-" });
    try {
      writeBootcJson(new HostRoot(host.dir), "enabled-with-copy");
      const [a, b] = host.images;
      const configHex = (i: typeof a) => i.pulled.configDigest.slice("sha256:".length);
      const { code, report } = await fsckJson(host.dir);
      assert.equal(code, 4);
      assert.equal(report.binding, "unified");
      // Booted first, then the rollback; no ostree on this host.
      assert.deepEqual(report.images.map((i) => [i.name, i.isLive, i.pending, i.issues]), [
        [b.imageName, true, false, [NOT_IN_CONTAINERS_STORAGE]],
        [a.imageName, true, false, [NOT_IN_CONTAINERS_STORAGE]],
      ]);
      assert.ok(report.images.every((i) => !i.ostreeCommitPresent && i.inComposefs));

      const repaired = await fsckJson(host.dir, "--repair");
      assert.equal(repaired.code, 1, JSON.stringify(repaired.report));
      assert.ok(repaired.report.ok);
      assert.deepEqual(
        repaired.report.images.map((i) => [i.name, i.repaired, i.inContainersStorage, i.issues]),
        [[b.imageName, true, true, []], [a.imageName, true, true, []]],
      );
      const podman = podmanOn(bins.podman, storePath, runroot);
      assert.deepEqual((await podmanIds(podman)).sort(), [configHex(a), configHex(b)].sort());

      const human = await fsckHuman(host.dir);
      assert.equal(human.code, 0);
      assert.deepEqual(human.lines, [
        "unistore fsck: checking image stores",
        `  [OK]  ${b.imageName} (composefs: yes, containers-storage: yes)`,
        `  [OK]  ${a.imageName} (composefs: yes, containers-storage: yes)`,
        "unistore fsck: all checks passed (2 image(s) OK)",
      ]);
      // skopeo reads the rebuilt image back, re-verifying every layer's DiffID.
      try {
        await runOk([
          bins.skopeo,
          "copy",
          "--quiet",
          `containers-storage:[overlay@${storePath}+${runroot}]${configHex(b)}`,
          `oci:${fs.mountpoint}/exported:x`,
        ]);
      } finally {
        await unmountBelow(storePath);
      }
    } finally {
      await unmountBelow(storePath);
      await Deno.remove(runroot, { recursive: true });
    }
  },
);
