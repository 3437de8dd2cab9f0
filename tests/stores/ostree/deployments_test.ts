/**
 * Deployments: image commits written by unistore deploy with the real `ostree admin deploy` on a
 * sysroot made by `ostree admin init-fs`/`os-init`; readDeployments then finds them, their BLS
 * entries and origins, in the order `ostree admin status` lists them, and tells booted (from
 * `ROOT/proc/cmdline`), staged, pending and rollback.
 *
 * ostree 2022.7 refuses to stage on a system that is not booted ("Cannot stage deployment: Not
 * currently booted"), so the staged deployment is laid out as `ostree admin deploy --stage`
 * leaves it: a hardlink checkout in `deploy/`, its `.origin`, and the GVariant
 * `run/ostree/staged-deployment` naming it; no boot entry yet.
 */

import assert from "node:assert/strict";
import {
  compareVersions,
  parseBootEntry,
  parseKernelCmdline,
  readDeployments,
} from "../../../lib/stores/ostree/deployments.ts";
import { SysrootError } from "../../../lib/stores/ostree/errors.ts";
import { serialize, Variant } from "../../../lib/stores/ostree/gvariant.ts";
import {
  parseOstreeImageReference,
  readImage,
  writeImageCommit,
} from "../../../lib/stores/ostree/image.ts";
import { OstreeRepo } from "../../../lib/stores/ostree/repo.ts";
import { fsTest } from "../../harness/loopfs.ts";
import { runOk } from "../../harness/run.ts";
import { findTool, isCi, requireTool } from "../../harness/tools.ts";
import { bootableEntries, BOOTCSUM, imageDocuments, KVER } from "../../fixtures/ostree/bootable.ts";

Deno.test("kernel command line, BLS entries and version order", () => {
  assert.deepEqual(parseKernelCmdline(' root=UUID=1 ostree=/ostree/boot.1/os/c/0  rw a="b c" '), [
    "root=UUID=1",
    "ostree=/ostree/boot.1/os/c/0",
    "rw",
    "a=b c",
  ]);
  const e = parseBootEntry(
    "# comment\ntitle Example (ostree:0)\nversion 2\noptions root=x ostree=/ostree/boot.0/os/abc/1\n" +
      "linux /vmlinuz\ninitrd /a.img\ninitrd /b.img\n",
    "ostree-2-os.conf",
  );
  assert.equal(e.title, "Example (ostree:0)");
  assert.equal(e.ostreeKarg, "/ostree/boot.0/os/abc/1");
  assert.deepEqual(e.initrd, ["/a.img", "/b.img"]);
  assert.ok(compareVersions("10", "9") > 0);
  assert.ok(compareVersions("1.10", "1.9") > 0);
  assert.equal(compareVersions("3", "3"), 0);
});

function ostreeBin(): string | null {
  const reason = requireTool("ostree", "ostree");
  if (reason === null) return findTool("ostree")!;
  if (isCi()) throw new Error(`${reason} (CI=true: a missing tool is a failure)`);
  console.error(`skip: ${reason}`);
  return null;
}

/** `ostree admin status` deployment lines: `[* ]stateroot checksum.serial`, in list order. */
async function adminStatus(ostree: string, sysroot: string): Promise<string[]> {
  const out = await runOk([ostree, "admin", "status", `--sysroot=${sysroot}`]);
  return out.stdout.split("\n").map((l) => /^[* ] (\S+) ([0-9a-f]{64}\.\d+)/.exec(l)).filter((m) =>
    m !== null
  )
    .map((m) => `${m![1]} ${m![2]}`);
}

fsTest("image commits deploy with ostree admin deploy; booted, staged and rollback are found", [
  "xfs",
], async (fs) => {
  const ostree = ostreeBin();
  if (!ostree) return;
  const root = `${fs.mountpoint}/root`;
  const sysroot = `${root}/sysroot`;
  await Deno.mkdir(sysroot, { recursive: true });
  await runOk([ostree, "admin", "init-fs", "--modern", sysroot]);
  await runOk([ostree, "admin", "os-init", `--sysroot=${sysroot}`, "exampleos"]);

  using repo = OstreeRepo.open(`${sysroot}/ostree/repo`);
  const commits: string[] = [];
  for (const version of [1, 2, 3]) {
    const imageReference = `docker://quay.io/example/os:${version}`;
    const r = await writeImageCommit(repo, bootableEntries(version), {
      imageReference,
      ...imageDocuments(version),
      composefsSynthesized: true,
      policy: "reflink-required",
    });
    commits.push(r.commit);
  }
  await runOk([ostree, "fsck", `--repo=${sysroot}/ostree/repo`]);

  for (const version of [1, 2]) {
    const origin = `${fs.mountpoint}/origin-${version}`;
    await Deno.writeTextFile(
      origin,
      `[origin]\ncontainer-image-reference=ostree-unverified-registry:quay.io/example/os:${version}\n`,
    );
    await runOk([
      ostree,
      "admin",
      "deploy",
      `--sysroot=${sysroot}`,
      "--os=exampleos",
      `--origin-file=${origin}`,
      "--karg=root=LABEL=root",
      commits[version - 1],
    ]);
  }
  // The deployment is the image: /usr/etc merged into /etc, /usr content as committed.
  const d2 = `${sysroot}/ostree/deploy/exampleos/deploy/${commits[1]}.0`;
  assert.equal(await Deno.readTextFile(`${d2}/etc/motd`), "welcome to version 2\n");
  assert.match(await Deno.readTextFile(`${d2}/etc/os-release`), /VERSION_ID=2/);
  assert.equal(await Deno.readTextFile(`${d2}/usr/bin/tool`), "#!/bin/sh\necho tool 2\n");

  // Newest deployment first, as ostree admin status lists them.
  const status = await adminStatus(ostree, sysroot);
  assert.deepEqual(status, [`exampleos ${commits[1]}.0`, `exampleos ${commits[0]}.0`]);

  // Not booted yet: no cmdline.
  let s = readDeployments({ root });
  assert.deepEqual(s.deployments.map((d) => `${d.stateroot} ${d.checksum}.${d.serial}`), status);
  assert.equal(s.booted, null);
  assert.equal(s.rollback, null);
  assert.equal(s.bootversion, 0, "two deploys: boot/loader -> loader.0");
  const [newest, oldest] = s.deployments;
  assert.equal(newest.bootcsum, BOOTCSUM);
  assert.equal(newest.bootserial, 0);
  assert.equal(oldest.bootserial, 1, "same kernel: the karg ends in the deployment's index");
  assert.equal(newest.bootEntry?.version, "2");
  assert.equal(oldest.bootEntry?.version, "1");
  assert.equal(newest.bootEntry?.fileName, "ostree-2-exampleos.conf");
  assert.equal(newest.bootEntry?.linux, `/ostree/exampleos-${BOOTCSUM}/vmlinuz-${KVER}`);
  assert.equal(newest.containerImageReference, "ostree-unverified-registry:quay.io/example/os:2");
  // Origin → image → the commit that was deployed.
  const img = readImage(
    repo,
    parseOstreeImageReference(newest.containerImageReference!).imageReference,
  );
  assert.equal(img?.commit, newest.checksum);
  assert.equal(img?.metadata?.composefsSynthesized, true);

  // Booted into the older deployment: the newer one is the queued rollback.
  await Deno.mkdir(`${root}/proc`, { recursive: true });
  await Deno.writeTextFile(
    `${root}/proc/cmdline`,
    `BOOT_IMAGE=x rw ${oldest.bootEntry!.options}\n`,
  );
  s = readDeployments({ root });
  assert.equal(s.booted?.checksum, commits[0]);
  assert.equal(s.booted?.booted, true);
  assert.equal(s.rollback?.checksum, commits[1]);
  assert.equal(s.pending?.checksum, commits[1]);
  assert.equal(s.rollbackQueued, true);

  // Booted into the newest: the older one is the rollback, nothing pending.
  await Deno.writeTextFile(`${root}/proc/cmdline`, newest.bootEntry!.options! + "\n");
  s = readDeployments({ root });
  assert.equal(s.booted?.checksum, commits[1]);
  assert.equal(s.rollback?.checksum, commits[0]);
  assert.equal(s.pending, null);
  assert.equal(s.rollbackQueued, false);

  // Staged: image 3 checked out as a deployment and named in run/ostree/staged-deployment.
  const stagedDir = `${sysroot}/ostree/deploy/exampleos/deploy/${commits[2]}.0`;
  await runOk([ostree, "checkout", `--repo=${sysroot}/ostree/repo`, "-H", commits[2], stagedDir]);
  await Deno.writeTextFile(
    `${stagedDir}.origin`,
    "[origin]\ncontainer-image-reference=ostree-unverified-registry:quay.io/example/os:3\n",
  );
  const target = new Variant("a{sv}", [
    ["name", new Variant("s", `${commits[2]}.0`)],
    ["osname", new Variant("s", "exampleos")],
    ["bootcsum", new Variant("s", BOOTCSUM)],
  ]);
  await Deno.mkdir(`${root}/run/ostree`, { recursive: true });
  await Deno.writeFile(
    `${root}/run/ostree/staged-deployment`,
    serialize("a{sv}", [["target", target]]),
  );
  s = readDeployments({ root });
  assert.equal(s.staged?.checksum, commits[2]);
  assert.equal(s.staged?.index, 0);
  assert.equal(s.staged?.bootEntry, undefined);
  assert.equal(
    s.staged?.containerImageReference,
    "ostree-unverified-registry:quay.io/example/os:3",
  );
  assert.equal(s.booted?.index, 1);
  assert.equal(s.pending?.checksum, commits[2], "libostree: the staged deployment is pending");
  assert.equal(s.rollback?.checksum, commits[0], "bootc: rollback is neither booted nor staged");

  // A karg that does not resolve inside the sysroot is an error naming it.
  await Deno.writeTextFile(`${root}/proc/cmdline`, "ostree=/ostree/boot.1/exampleos/nope/0\n");
  assert.throws(
    () => readDeployments({ root }),
    (e) => e instanceof SysrootError && /nope/.test(e.message),
  );
}, { sizeMiB: 400 });
