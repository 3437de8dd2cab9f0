// `unistore upgrade` as a user runs it, on ostree hosts built by the real ostree from a loopback
// registry. Judges: `ostree admin status`, `ostree show`, `ostree fsck`, `skopeo inspect` (the
// registry's digest), `unistore status` (bootc's view of the deployments), FIEMAP (the deployed
// files' blocks are composefs's), and the host tree itself (nothing changed when nothing should).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { fiemap } from "../../ffi/extents.ts";
import { close, DT, O, openAt, openDir, openDirAt, readDir } from "../../ffi/fs.ts";
import { writeBootcJson } from "../../lib/host/flags.ts";
import { HostRoot } from "../../lib/host/root.ts";
import { hostPlatform } from "../../lib/oci/layout.ts";
import { parseBootEntry } from "../../lib/stores/ostree/deployments.ts";
import { run, runOk } from "../harness/run.ts";
import {
  buildBootableImage,
  buildOstreeHost,
  cmdlineOf,
  FIXTURE_KVER,
  hostFixtureTest,
  OSTREE_HOST_TOOLS,
  type OstreeHost,
} from "../fixtures/host/mod.ts";
import { physicalExtents } from "../pipeline/helpers.ts";
import { listTree } from "../harness/tree_listing.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

function unistore(...args: string[]) {
  return run([Deno.execPath(), "run", "-A", "--quiet", MAIN, ...args]);
}

/** A kernel large enough to span several filesystem blocks (the fixture's default is 15 bytes). */
const V2_KERNEL = "unistore v2 kernel block\n".repeat(4000);

/** `ostree admin status`: deployments as (stateroot, commit, serial), default first. */
async function adminStatus(ostree: string, sysroot: string) {
  const r = await runOk([ostree, "admin", "status", `--sysroot=${sysroot}`]);
  return {
    text: r.stdout,
    list: [...r.stdout.matchAll(/^[* ] (\S+) ([0-9a-f]{64})\.(\d+)/gm)].map((m) => m[2]),
  };
}

/** What must not change when upgrade changes nothing: every path below the sysroot, and refs. */
async function snapshot(host: OstreeHost, ostree: string) {
  const refs = await runOk([ostree, `--repo=${host.repo}`, "refs", "--list"]);
  return { files: await listTree(host.sysroot), refs: refs.stdout };
}

/** The pull directories upgrade creates below the repository's tmp/ (must never be left). */
async function pullDirs(repo: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${repo}/tmp`)) {
    if (e.name.startsWith("unistore-pull-")) out.push(e.name);
  }
  return out;
}

/**
 * Pushes v2 as a two-platform image index to `dest` (`skopeo copy --all`): this machine's
 * platform and one other, each with its own manifest and config.
 */
async function pushMultiArch(skopeo: string, dir: string, dest: string): Promise<void> {
  const host = hostPlatform().architecture;
  const other = host === "amd64" ? "arm64" : "amd64";
  const images = [
    await buildBootableImage(dir, { tag: "here", version: "2.0", kernel: V2_KERNEL }),
    await buildBootableImage(dir, { tag: "there", version: "2.0", architecture: other }),
  ];
  const index = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: images.map((img, i) => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: img.manifestDigest,
      size: img.manifestSize,
      platform: { os: "linux", architecture: i === 0 ? host : other },
    })),
  }));
  const digest = `sha256:${createHash("sha256").update(index).digest("hex")}`;
  await Deno.writeFile(`${dir}/blobs/sha256/${digest.slice(7)}`, index);
  const layout = JSON.parse(await Deno.readTextFile(`${dir}/index.json`));
  layout.manifests.push({
    mediaType: "application/vnd.oci.image.index.v1+json",
    digest,
    size: index.length,
    annotations: { "org.opencontainers.image.ref.name": "multi" },
  });
  await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(layout));
  await runOk([
    skopeo,
    "copy",
    "--quiet",
    "--all",
    "--dest-tls-verify=false",
    `oci:${dir}:multi`,
    `docker://${dest}`,
  ]);
}

/** The digest of this platform's manifest in the list `name` serves (its own parse of it). */
async function platformDigest(skopeo: string, name: string): Promise<string> {
  const raw = await runOk([skopeo, "inspect", "--raw", "--tls-verify=false", `docker://${name}`]);
  const list = JSON.parse(raw.stdout) as {
    manifests: { digest: string; platform: { architecture: string } }[];
  };
  assert.equal(list.manifests.length, 2, raw.stdout);
  const entry = list.manifests.find((m) => m.platform.architecture === hostPlatform().architecture);
  assert.ok(entry, raw.stdout);
  return entry.digest;
}

/** `unistore status --format json` of the host. */
async function statusJson(dir: string) {
  const r = await unistore("--root", dir, "status", "--format", "json");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** Writes `proc/cmdline` as the kernel shows it after booting the default BLS entry. */
async function rebootIntoDefault(host: OstreeHost): Promise<void> {
  const dir = `${host.sysroot}/boot/loader/entries`;
  const entries = [];
  for await (const e of Deno.readDir(dir)) {
    entries.push(parseBootEntry(await Deno.readTextFile(`${dir}/${e.name}`), e.name));
  }
  entries.sort((a, b) => Number(b.version) - Number(a.version));
  await Deno.writeTextFile(
    `${host.dir}/proc/cmdline`,
    cmdlineOf({ linux: entries[0].linux!, options: entries[0].options! }),
  );
}

/**
 * Checks that every regular file over 64 bytes below `dir` has all its extents shared and
 * inside the extents of composefs objects; returns the files checked.
 */
function assertBlocksFromComposefs(dir: string, composefsObjects: string): string[] {
  const cfs = physicalExtents(composefsObjects);
  const checked: string[] = [];
  const walk = (dirfd: number, rel: string) => {
    for (const e of readDir(dirfd)) {
      const path = `${rel}/${e.name}`;
      if (e.type === DT.DIR) {
        const fd = openDirAt(dirfd, e.nameBytes);
        try {
          walk(fd, path);
        } finally {
          close(fd);
        }
      } else if (e.type === DT.REG) {
        const fd = openAt(dirfd, e.nameBytes, O.RDONLY | O.NOFOLLOW);
        try {
          const extents = fiemap(fd);
          const size = extents.reduce((n, x) => n + x.length, 0);
          if (size === 0 || Deno.statSync(`${dir}${path}`).size <= 64) continue;
          checked.push(path);
          for (const x of extents) {
            assert.ok(x.shared, `${path}: extent at ${x.physical} is not shared`);
            assert.ok(
              cfs.some((c) => c.start <= x.physical && x.physical + x.length <= c.end),
              `${path}: extent at ${x.physical} is not a composefs object's`,
            );
          }
        } finally {
          close(fd);
        }
      }
    }
  };
  const fd = openDir(dir);
  try {
    walk(fd, "");
  } finally {
    close(fd);
  }
  return checked;
}

hostFixtureTest(
  "upgrade on a bound ostree host: re-stage, check, pull from the registry, deploy by reflink",
  "xfs",
  OSTREE_HOST_TOOLS,
  async (fs, bins) => {
    const ostree = bins["ostree"];
    const oci = `${fs.dir}/oci`;
    await buildBootableImage(oci, { tag: "v1", version: "1.0", created: "2024-05-01T10:00:00Z" });
    await using host = await buildOstreeHost(`${fs.mountpoint}/host`, {
      images: [{ ref: "os:1", layout: `${oci}:v1` }],
      booted: 0,
      bins,
    });
    const v1 = host.images[0];
    const image = `docker://${host.registry.host}/os:1`;

    // Not bound: refused, naming the command that binds.
    const before = await snapshot(host, ostree);
    for (const args of [["upgrade"], ["upgrade", "--check"]]) {
      const r = await unistore("--root", host.dir, ...args);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, /not bound to composefs.*run `unistore set-unified composefs` first/);
    }
    assert.deepEqual(await snapshot(host, ostree), before);

    const bind = await unistore("--root", host.dir, "set-unified", "composefs");
    assert.equal(bind.code, 0, bind.stderr);

    // Same image in the registry, but the booted commit was pulled, not synthesized: --check
    // says so without changing anything, upgrade re-stages it (spec §4).
    const bound = await snapshot(host, ostree);
    const check1 = await unistore("--root", host.dir, "upgrade", "--check");
    assert.equal(check1.code, 0, check1.stderr);
    assert.equal(
      check1.stdout,
      `no update available for ${image} (${v1.pulled.manifestDigest})\n` +
        `  but the booted deployment ${v1.deployment} was not synthesized from composefs: ` +
        "unistore upgrade re-stages it\n",
    );
    assert.deepEqual(await snapshot(host, ostree), bound);

    const restage = await unistore("--root", host.dir, "upgrade");
    assert.equal(restage.code, 0, restage.stderr);
    const restaged = /ostree: synthesized commit ([0-9a-f]{64})/.exec(restage.stdout)?.[1];
    assert.ok(restaged, restage.stdout);
    assert.notEqual(restaged, v1.commit);
    assert.match(
      restage.stdout,
      new RegExp(`^pulled ${image} \\(${v1.pulled.manifestDigest}\\)$`, "m"),
    );
    assert.match(
      restage.stdout,
      new RegExp(
        `^deployed ${restaged}\\.0 as the default of stateroot default; ` +
          `the booted ${v1.deployment} stays as the rollback$`,
        "m",
      ),
    );
    assert.deepEqual((await adminStatus(ostree, host.sysroot)).list, [restaged, v1.commit]);
    assert.deepEqual(await pullDirs(host.repo), []);

    // Until the new default is booted, proc/cmdline names a boot version ostree replaced:
    // which deployment is booted cannot be told, and upgrade refuses rather than guess.
    const stale = await unistore("--root", host.dir, "upgrade", "--check");
    assert.equal(stale.code, 1, stale.stdout);
    assert.match(stale.stderr, /cannot tell which deployment is booted: .*boot the default/);

    // Booted into the re-staged commit: nothing to do, nothing changed.
    await rebootIntoDefault(host);
    const booted = await snapshot(host, ostree);
    const again = await unistore("--root", host.dir, "upgrade");
    assert.equal(again.code, 0, again.stderr);
    assert.equal(
      again.stdout,
      `no update available for ${image} (${v1.pulled.manifestDigest})\nnothing was changed\n`,
    );
    assert.deepEqual(await snapshot(host, ostree), booted);

    // v2 pushed under the same tag as a manifest list (this machine's platform and another):
    // --check resolves the list to this platform's manifest, changes nothing.
    await pushMultiArch(bins["skopeo"], `${fs.dir}/multi`, `${host.registry.host}/os:1`);
    const v2Digest = await platformDigest(bins["skopeo"], `${host.registry.host}/os:1`);
    assert.notEqual(v2Digest, v1.pulled.manifestDigest);
    const check2 = await unistore("--root", host.dir, "upgrade", "--check");
    assert.equal(check2.code, 0, check2.stderr);
    assert.equal(
      check2.stdout,
      `update available: ${image} ${v2Digest}\n` +
        `  booted deployment ${restaged}.0: ${v1.pulled.manifestDigest}\n`,
    );
    assert.deepEqual(await snapshot(host, ostree), booted);

    // A reference the registry does not know: skopeo's error, no deployment, no pull dir.
    const bad = await unistore(
      "--root",
      host.dir,
      "upgrade",
      "--image",
      `${host.registry.host}/no-such-image:1`,
    );
    assert.equal(bad.code, 1, bad.stdout);
    assert.match(
      bad.stderr,
      /skopeo inspect --raw --tls-verify=false docker:\/\/.*no-such-image:1/,
    );
    assert.match(bad.stderr, /manifest unknown/i);
    assert.deepEqual(await snapshot(host, ostree), booted);

    // The upgrade: pulled, imported, synthesized by reflink, deployed as the default; the booted
    // deployment stays as the rollback, the older rollback (v1 as ostree-ext pulled it) goes.
    const up = await unistore("--root", host.dir, "upgrade");
    assert.equal(up.code, 0, up.stderr);
    const commit = /ostree: synthesized commit ([0-9a-f]{64})/.exec(up.stdout)?.[1];
    assert.ok(commit, up.stdout);
    assert.match(up.stdout, new RegExp(`^pulled ${image} \\(${v2Digest}\\)$`, "m"));
    assert.match(
      up.stdout,
      /^composefs: imported .* \(2 layers: [12] new, [01] already present\)$/m,
    );
    assert.match(up.stdout, /reflinked, 0\.0 MiB copied/);
    assert.match(
      up.stdout,
      new RegExp(`the booted ${restaged}\\.0 stays as the rollback$`, "m"),
    );
    const status = await adminStatus(ostree, host.sysroot);
    assert.deepEqual(status.list, [commit, restaged], status.text);
    assert.deepEqual(await pullDirs(host.repo), []);

    // ostree's judgement of the commit and the repository.
    const synth = await runOk([
      ostree,
      "show",
      `--repo=${host.repo}`,
      "--print-metadata-key=ostree-ext.composefs-synthesized",
      commit,
    ]);
    assert.equal(synth.stdout.trim(), "true");
    const digest = await runOk([
      ostree,
      "show",
      `--repo=${host.repo}`,
      "--print-metadata-key=ostree.manifest-digest",
      commit,
    ]);
    assert.equal(digest.stdout.trim(), `'${v2Digest}'`);
    await runOk([ostree, "fsck", `--repo=${host.repo}`]);

    // The deployment is v2, and its files' blocks are composefs's.
    const deployDir = `${host.sysroot}/ostree/deploy/default/deploy/${commit}.0`;
    assert.equal(await Deno.readTextFile(`${deployDir}/usr/lib/unistore-fixture-version`), "2.0\n");
    assert.equal(
      await Deno.readTextFile(`${deployDir}/usr/lib/modules/${FIXTURE_KVER}/vmlinuz`),
      V2_KERNEL,
    );
    const origin = await Deno.readTextFile(`${deployDir}.origin`);
    assert.match(
      origin,
      new RegExp(
        `^container-image-reference=ostree-unverified-registry:${host.registry.host}/os:1$`,
        "m",
      ),
    );
    assert.deepEqual(
      assertBlocksFromComposefs(`${deployDir}/usr`, `${host.sysroot}/composefs/objects`).sort(),
      [`/lib/modules/${FIXTURE_KVER}/vmlinuz`, "/lib/os-release"],
    );

    // After booting the default entry: booted flips to v2, v1 is the rollback.
    await rebootIntoDefault(host);
    const post = await statusJson(host.dir);
    assert.equal(post.status.booted.ostree.checksum, commit);
    assert.equal(post.status.booted.image.imageDigest, v2Digest);
    assert.equal(post.status.booted.image.version, "2.0");
    assert.deepEqual(post.status.booted.image.image, {
      image: `${host.registry.host}/os:1`,
      transport: "registry",
    });
    assert.equal(post.status.rollback.ostree.checksum, restaged);
    assert.equal(post.status.rollback.image.imageDigest, v1.pulled.manifestDigest);
    assert.equal(post.status.rollbackQueued, false);
    assert.deepEqual(post.status.storage, { ostreeComposefsBound: true, unified: "disabled" });

    const final = await unistore("--root", host.dir, "upgrade", "--check");
    assert.equal(final.stdout, `no update available for ${image} (${v2Digest})\n`);
  },
);

hostFixtureTest(
  "upgrade on ext4: refused before any change without reflinks, byte copies with enabled-with-copy",
  "ext4",
  [...OSTREE_HOST_TOOLS, { bin: "podman", pkg: "podman" }],
  async (fs, bins) => {
    const ostree = bins["ostree"];
    const oci = `${fs.dir}/oci`;
    await buildBootableImage(oci, { tag: "v1", version: "1.0" });
    const v2 = await buildBootableImage(oci, { tag: "v2", version: "2.0", kernel: V2_KERNEL });
    await using host = await buildOstreeHost(`${fs.mountpoint}/host`, {
      images: [{ ref: "os:1", layout: `${oci}:v1` }, { ref: "os:2", layout: `${oci}:v2` }],
      booted: 0,
      bins,
    });
    // os:2 is the default entry, os:1 booted: os:2 is pending (queued for the next boot).
    const [v1, pendingV2] = host.images;
    assert.deepEqual((await adminStatus(ostree, host.sysroot)).list, [pendingV2.commit, v1.commit]);
    // set-unified refuses ext4; the flag as an older tool or a hand edit would leave it.
    await runOk([ostree, `--repo=${host.repo}`, "config", "set", "composefs.unified", "true"]);
    const before = await snapshot(host, ostree);
    const refused = await unistore("--root", host.dir, "upgrade", "--image", `oci:${oci}:v2`);
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.stderr, /\(ext4\).*does not support reflinks.*enabled-with-copy/);
    assert.deepEqual(await snapshot(host, ostree), before, "nothing fetched, nothing written");

    await Deno.mkdir(`${host.sysroot}/composefs`, { mode: 0o700 });
    writeBootcJson(new HostRoot(host.dir), "enabled-with-copy");
    const up = await unistore("--root", host.dir, "upgrade", "--image", `oci:${oci}:v2`);
    assert.equal(up.code, 0, up.stderr);
    assert.doesNotMatch(up.stdout, /^pulled/m, "an oci: layout is read in place");
    assert.match(up.stdout, /0\.0 MiB reflinked, 0\.\d MiB copied.*\(reflink-or-copy\)/);
    const imageId = v2.configDigest.slice("sha256:".length);
    const recovered = `localhost/bootc-recovered:${imageId.slice(0, 12)}`;
    assert.match(
      up.stdout,
      new RegExp(
        `^containers-storage: image ${imageId} as ${recovered} \\(2 layers written, ` +
          `0 reused; 0 files reflinked, [1-9]\\d* copied\\)$`,
        "m",
      ),
    );
    assert.match(
      up.stdout,
      new RegExp(`^undeployed ${pendingV2.deployment} \\(queued, not booted\\): replaced$`, "m"),
    );
    const commit = /ostree: synthesized commit ([0-9a-f]{64})/.exec(up.stdout)?.[1];
    assert.ok(commit, up.stdout);
    assert.deepEqual((await adminStatus(ostree, host.sysroot)).list, [
      commit,
      host.images[0].commit,
    ]);
    await runOk([ostree, "fsck", `--repo=${host.repo}`]);
    const deployDir = `${host.sysroot}/ostree/deploy/default/deploy/${commit}.0`;
    assert.equal(
      await Deno.readTextFile(`${deployDir}.origin`),
      `[origin]\ncontainer-image-reference=ostree-unverified-image:oci:${oci}:v2\n`,
    );
    assert.equal(
      await Deno.readTextFile(`${deployDir}/usr/lib/modules/${FIXTURE_KVER}/vmlinuz`),
      V2_KERNEL,
    );
    assert.deepEqual(await pullDirs(host.repo), []);
    const doc = await statusJson(host.dir);
    assert.deepEqual(doc.status.storage, {
      ostreeComposefsBound: true,
      unified: "enabled-with-copy",
    });
    assert.deepEqual(doc.status.rollback.image.image, { image: `${oci}:v2`, transport: "oci" });

    // podman reads bootc's store: the image under its config digest, by the recovered name.
    const runroot = await Deno.makeTempDir({ prefix: "unistore-upgrade-run-" });
    try {
      const images = await runOk([
        bins["podman"],
        "--root",
        `${host.sysroot}/ostree/bootc/storage`,
        "--runroot",
        runroot,
        "--storage-driver",
        "overlay",
        "images",
        "--format",
        "json",
      ]);
      const listed = JSON.parse(images.stdout) as { Id: string; Names: string[] }[];
      assert.deepEqual(listed.map((i) => [i.Id, i.Names]), [[imageId, [recovered]]]);
    } finally {
      await Deno.remove(runroot, { recursive: true });
    }
  },
);

Deno.test("upgrade: usage errors exit 2", async () => {
  const extra = await unistore("upgrade", "quay.io/x/os:1");
  assert.equal(extra.code, 2);
  assert.match(
    extra.stderr,
    /upgrade takes no arguments, found "quay.io\/x\/os:1"; give the image with --image REF/,
  );
  const unknown = await unistore("upgrade", "--apply");
  assert.equal(unknown.code, 2);
  const help = await unistore("upgrade", "--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: unistore upgrade \[--image REF\] \[--check\]/);
});
