// bootc's Host object from real host roots: an ostree host made by ostree itself from images
// pulled through a loopback registry, a native composefs host laid out as bootc does, and a
// directory that is no bootc host. Judges: skopeo inspect (digests, labels), ostree admin
// status / ostree show (deployments, commit metadata), the fixture's own files (boot digests).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { writeBootcJson } from "../../lib/host/flags.ts";
import { HostRoot } from "../../lib/host/root.ts";
import {
  type BootcBootEntry,
  bootcTimestamp,
  composefsBootloader,
  imageReferenceOf,
  notBootcHost,
  readHostStatus,
} from "../../lib/host/status.ts";
import { run, runOk } from "../harness/run.ts";
import {
  buildBootableImage,
  buildComposefsHost,
  buildOstreeHost,
  COMPOSEFS_HOST_TOOLS,
  hostFixtureTest,
  OSTREE_HOST_TOOLS,
} from "../fixtures/host/mod.ts";
import { buildVersionedImages } from "../fixtures/host/versioned_images.ts";
import { withHostTree } from "./host_tree.ts";

/** The shape of spec bootc-unified-storage.md §8.2's sample: every key, nested. */
const SAMPLE_82 = JSON.parse(
  '{"apiVersion":"org.containers.bootc/v1","kind":"BootcHost","metadata":{"name":"host"},"spec":{"bootOrder":"default","image":{"image":"quay.io/centos-bootc/centos-bootc:stream9","transport":"registry"}},"status":{"booted":{"cachedUpdate":null,"composefs":null,"downloadOnly":false,"image":{"architecture":"amd64","image":{"image":"quay.io/centos-bootc/centos-bootc:stream9","transport":"registry"},"imageDigest":"sha256:<64 hex>","timestamp":"2024-08-07T12:00:00Z","version":"stream9.20240807.0"},"incompatible":false,"ostree":{"checksum":"<64 hex>","deploySerial":0,"stateroot":"default"},"pinned":false,"softRebootCapable":false,"store":"ostreeContainer"},"readOnly":false,"rollback":null,"rollbackQueued":false,"staged":null,"type":"bootcHost","usrOverlay":null}}',
);

/** Sorted key paths of a JSON value (`status.booted.image.version`), arrays by first item. */
function keyPaths(v: unknown, prefix = ""): string[] {
  if (Array.isArray(v)) return v.length === 0 ? [] : keyPaths(v[0], `${prefix}[]`);
  if (typeof v !== "object" || v === null) return [];
  return Object.entries(v).flatMap(([k, x]) => {
    const p = prefix ? `${prefix}.${k}` : k;
    return [p, ...keyPaths(x, p)];
  }).sort();
}

Deno.test("bootcTimestamp: RFC 3339 to UTC with chrono's fraction groups; junk is null", () => {
  assert.equal(bootcTimestamp("2024-05-01T10:00:00Z"), "2024-05-01T10:00:00Z");
  assert.equal(bootcTimestamp("2024-06-01T00:00:00+02:00"), "2024-05-31T22:00:00Z");
  assert.equal(bootcTimestamp("2023-12-31T23:30:00-01:00"), "2024-01-01T00:30:00Z");
  assert.equal(bootcTimestamp("2024-05-01t10:00:00.5z"), "2024-05-01T10:00:00.500Z");
  assert.equal(bootcTimestamp("2024-05-01T10:00:00.000120Z"), "2024-05-01T10:00:00.000120Z");
  assert.equal(bootcTimestamp("2024-05-01T10:00:00.1234567891Z"), "2024-05-01T10:00:00.123456789Z");
  assert.equal(bootcTimestamp("2024-05-01T10:00:00.000Z"), "2024-05-01T10:00:00Z");
  assert.equal(bootcTimestamp("2024-05-01 10:00:00Z"), "2024-05-01T10:00:00Z");
  for (const bad of ["2024-05-01", "2024-05-01T10:00Z", "yesterday", "2024-13-01T00:00:00Z", ""]) {
    assert.equal(bootcTimestamp(bad), null, bad);
  }
});

Deno.test("imageReferenceOf: the four origin spellings as bootc's ImageReference", () => {
  assert.deepEqual(imageReferenceOf("ostree-unverified-registry:quay.io/x/os:42"), {
    image: "quay.io/x/os:42",
    transport: "registry",
  });
  assert.deepEqual(imageReferenceOf("ostree-unverified-image:docker://quay.io/x/os:42"), {
    image: "quay.io/x/os:42",
    transport: "registry",
  });
  assert.deepEqual(imageReferenceOf("ostree-unverified-image:oci:/var/lib/os"), {
    image: "/var/lib/os",
    transport: "oci",
  });
  assert.deepEqual(imageReferenceOf("ostree-image-signed:docker://quay.io/x/os:42"), {
    image: "quay.io/x/os:42",
    transport: "registry",
    signature: "containerPolicy",
  });
  assert.deepEqual(imageReferenceOf("ostree-remote-registry:fedora:quay.io/x/os:42"), {
    image: "quay.io/x/os:42",
    transport: "registry",
    signature: { ostreeRemote: "fedora" },
  });
  assert.throws(() => imageReferenceOf("quay.io/x/os:42"), /invalid signature source/);
});

Deno.test("composefsBootloader: the EFI LoaderInfo variable under the root, grub without it", async () => {
  const efivar = (text: string) => {
    const utf16 = new Uint8Array((text.length + 1) * 2);
    for (let i = 0; i < text.length; i++) utf16[2 * i] = text.charCodeAt(i);
    return new Uint8Array([6, 0, 0, 0, ...utf16]); // attributes, then UTF-16LE + NUL
  };
  const path = "sys/firmware/efi/efivars/LoaderInfo-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
  await withHostTree({}, async (root, dir) => {
    assert.equal(composefsBootloader(root), "grub");
    await Deno.mkdir(`${dir}/sys/firmware/efi/efivars`, { recursive: true });
    await Deno.writeFile(`${dir}/${path}`, efivar("systemd-boot 254.5"));
    assert.equal(composefsBootloader(root), "systemd");
    await Deno.writeFile(`${dir}/${path}`, efivar("GRUB CC 2.12"));
    assert.equal(composefsBootloader(root), "grub-cc");
    await Deno.writeFile(`${dir}/${path}`, efivar("GRUB 2.12"));
    assert.equal(composefsBootloader(root), "grub");
  });
});

Deno.test("a directory that is no bootc host gives bootc's Host::default()", async () => {
  await withHostTree({
    "etc/os-release": "ID=debian\n",
    "usr/bin/sh": "",
    "proc/cmdline": "BOOT_IMAGE=/vmlinuz root=/dev/vda rw\n",
  }, async (root) => {
    const r = await readHostStatus(root);
    assert.equal(r.kind.kind, "none");
    assert.deepEqual(r.host, notBootcHost());
    assert.deepEqual(r.host, {
      apiVersion: "org.containers.bootc/v1",
      kind: "BootcHost",
      metadata: { name: "host" },
      spec: { image: null, bootOrder: "default" },
      status: {
        staged: null,
        booted: null,
        rollback: null,
        rollbackQueued: false,
        type: null,
        usrOverlay: null,
        readOnly: false,
      },
    });
  });
});

function entryOf(e: BootcBootEntry | null | undefined, what: string): BootcBootEntry {
  assert.ok(e, `${what}: expected a boot entry, found none`);
  return e;
}

hostFixtureTest(
  "ostree host from a loopback registry: deployments, image metadata, flags as bootc reads them",
  "xfs",
  OSTREE_HOST_TOOLS,
  async (fs, bins) => {
    const oci = `${fs.dir}/oci`;
    await buildBootableImage(oci, { tag: "v1", version: "1.0", created: "2024-05-01T10:00:00Z" });
    // v2's label created differs from its config created: the ostree backend takes the label.
    await buildBootableImage(oci, {
      tag: "v2",
      version: "2.0",
      created: "2024-05-02T10:00:00Z",
      labelCreated: "2024-06-01T00:00:00+02:00",
    });
    await buildBootableImage(oci, {
      tag: "v3",
      version: "3.0",
      created: "2024-05-03T10:00:00.25Z",
    });
    await using host = await buildOstreeHost(`${fs.mountpoint}/host`, {
      images: [
        { ref: "unistore/os:1", layout: `${oci}:v1` },
        { ref: "unistore/os:2", layout: `${oci}:v2` },
        { ref: "unistore/os:3", layout: `${oci}:v3` },
      ],
      booted: 2,
      cachedUpdates: { 2: { ref: "unistore/os:next", layout: `${oci}:v1` } },
      bins,
    });
    const root = new HostRoot(host.dir);
    const ostree = bins["ostree"];

    // The independent view: ostree's own deployment list (default first) and skopeo inspect.
    const st = await runOk([ostree, "admin", "status", `--sysroot=${host.sysroot}`]);
    const listed = [...st.stdout.matchAll(/^[* ] (\S+) ([0-9a-f]{64})\.(\d+)/gm)].map((m) => ({
      stateroot: m[1],
      checksum: m[2],
      deploySerial: Number(m[3]),
    }));
    assert.equal(listed.length, 3, st.stdout);
    const inspect = await Promise.all(
      ["unistore/os:3", "unistore/os:2", "unistore/os:1"].map((r) => host.registry.inspect(r)),
    );
    const name = (tag: string) => `${host.registry.host}/unistore/os:${tag}`;
    const expectImage = (i: number, tag: string, timestamp: string) => ({
      image: { image: name(tag), transport: "registry" },
      version: inspect[i].Labels!["org.opencontainers.image.version"],
      timestamp,
      imageDigest: inspect[i].Digest,
      architecture: inspect[i].Architecture,
    });
    const entry = (i: number, image: ReturnType<typeof expectImage>) => ({
      image,
      cachedUpdate: null,
      incompatible: false,
      pinned: false,
      softRebootCapable: false,
      downloadOnly: false,
      store: "ostreeContainer",
      ostree: listed[i],
      composefs: null,
    });

    // Booted = the default entry (os:3): rollback os:2, os:1 among the others.
    let r = await readHostStatus(root);
    assert.equal(r.kind.kind, "ostree");
    assert.deepEqual(r.warnings, []);
    const h = r.host;
    const next = await host.registry.inspect("unistore/os:next");
    const booted = entryOf(h.status.booted, "booted");
    assert.deepEqual(booted, {
      ...entry(0, expectImage(0, "3", "2024-05-03T10:00:00.250Z")),
      cachedUpdate: {
        image: { image: name("3"), transport: "registry" },
        version: "1.0",
        timestamp: "2024-05-01T10:00:00Z",
        imageDigest: next.Digest,
        architecture: next.Architecture,
      },
    });
    assert.deepEqual(h.status.rollback, entry(1, expectImage(1, "2", "2024-05-31T22:00:00Z")));
    assert.deepEqual(h.status.otherDeployments, [
      entry(2, expectImage(2, "1", "2024-05-01T10:00:00Z")),
    ]);
    assert.deepEqual(h.spec, {
      image: { image: name("3"), transport: "registry" },
      bootOrder: "default",
    });
    assert.equal(h.status.staged, null);
    assert.equal(h.status.rollbackQueued, false);
    assert.equal(h.status.type, "bootcHost");
    assert.equal(h.status.usrOverlay, null);
    assert.equal(h.status.readOnly, false);
    assert.equal("storage" in h.status, false, "no flags: no storage member");
    // ostree's own reading of the deployed commit agrees with imageDigest.
    const shown = await runOk([
      ostree,
      "show",
      `--repo=${host.repo}`,
      "--print-metadata-key=ostree.manifest-digest",
      listed[0].checksum,
    ]);
    assert.equal(shown.stdout.trim(), `'${booted.image!.imageDigest}'`);
    // Same field set as the spec's sample, whose rollback is null and which has no other
    // deployments; those and the cached update have the shapes of its booted entry and image.
    const { rollback, otherDeployments, ...statusRest } = h.status;
    assert.deepEqual(
      keyPaths({ ...h, status: { ...statusRest, rollback: null } })
        .filter((p) => !p.startsWith("status.booted.cachedUpdate.")),
      keyPaths(SAMPLE_82),
    );
    for (const e of [rollback, ...otherDeployments!]) {
      assert.deepEqual(keyPaths(e), keyPaths(SAMPLE_82.status.booted));
    }
    assert.deepEqual(keyPaths(booted.cachedUpdate), keyPaths(SAMPLE_82.status.booted.image));

    // Boot the middle one: the default entry (os:3) is then a queued rollback.
    await host.bootInto(1);
    r = await readHostStatus(root);
    assert.equal(entryOf(r.host.status.booted, "booted").ostree?.checksum, listed[1].checksum);
    assert.equal(r.host.status.rollback?.ostree?.checksum, listed[0].checksum);
    assert.deepEqual(r.host.status.otherDeployments?.map((e) => e.ostree?.checksum), [
      listed[2].checksum,
    ]);
    assert.equal(r.host.status.rollbackQueued, true);
    assert.equal(r.host.spec.bootOrder, "rollback");
    assert.deepEqual(r.host.spec.image, { image: name("2"), transport: "registry" });

    // Nothing booted: bootc's "not deployed" (booted null), the deployments still listed.
    await host.bootInto(null);
    r = await readHostStatus(root);
    assert.equal(r.kind.booted, false);
    assert.equal(r.host.status.booted, null);
    assert.equal(r.host.status.type, null);
    assert.equal(r.host.spec.image, null);
    assert.deepEqual(
      r.host.status.otherDeployments?.map((e) => e.ostree?.checksum),
      listed.map((l) => l.checksum),
    );
    await host.bootInto(2);

    // Pinning by the real tool, rpm-ostree groups, /usr overlay state.
    await runOk([ostree, "admin", "pin", `--sysroot=${host.sysroot}`, "2"]);
    const rollbackOrigin = `${host.sysroot}/ostree/deploy/default/deploy/${
      listed[1].checksum
    }.0.origin`;
    await Deno.writeTextFile(
      rollbackOrigin,
      `${await Deno.readTextFile(rollbackOrigin)}\n[packages]\nrequested=vim\n`,
    );
    const stateDir = `${host.dir}/run/ostree/deployment-state/${listed[0].checksum}.0`;
    await Deno.mkdir(stateDir, { recursive: true });
    await Deno.writeTextFile(`${stateDir}/unlocked-development`, "");
    r = await readHostStatus(root);
    assert.equal(r.host.status.otherDeployments?.[0].pinned, true);
    assert.equal(r.host.status.rollback?.incompatible, true);
    assert.equal(r.host.status.rollback?.image, null, "incompatible: no image status");
    assert.deepEqual(r.host.status.usrOverlay, {
      accessMode: "readWrite",
      persistence: "transient",
    });
    await Deno.remove(`${stateDir}/unlocked-development`);
    await Deno.writeTextFile(`${stateDir}/unlocked-transient`, "");
    r = await readHostStatus(root);
    assert.deepEqual(r.host.status.usrOverlay, {
      accessMode: "readOnly",
      persistence: "transient",
    });

    // The two unified-storage flags: the repo binding by the real `ostree config`, bootc.json.
    await runOk([ostree, "config", `--repo=${host.repo}`, "set", "composefs.unified", "true"]);
    r = await readHostStatus(root);
    assert.deepEqual(r.host.status.storage, { unified: "disabled", ostreeComposefsBound: true });
    await Deno.mkdir(`${host.sysroot}/composefs`, { mode: 0o700 });
    writeBootcJson(root, "enabled-with-copy");
    r = await readHostStatus(root);
    assert.deepEqual(r.host.status.storage, {
      unified: "enabled-with-copy",
      ostreeComposefsBound: true,
    });
    assert.deepEqual(Object.keys(r.host.status).slice(-2), ["readOnly", "storage"]);
    await runOk([ostree, "config", `--repo=${host.repo}`, "unset", "composefs.unified"]);
    r = await readHostStatus(root);
    assert.deepEqual(r.host.status.storage, {
      unified: "enabled-with-copy",
      ostreeComposefsBound: false,
    });
    writeBootcJson(root, "disabled");
    r = await readHostStatus(root);
    assert.equal("storage" in r.host.status, false, "disabled and unbound: no storage");

    // The fixture is a valid ostree repo for ostree itself.
    const fsck = await run([ostree, "fsck", `--repo=${host.repo}`]);
    assert.equal(fsck.code, 0, fsck.stdout + fsck.stderr);
  },
);

hostFixtureTest(
  "native composefs host: entries, origins, stored manifests, staged marker, mounts",
  "ext4",
  [
    ...COMPOSEFS_HOST_TOOLS,
    { bin: "mount", pkg: "mount" },
    { bin: "umount", pkg: "mount" },
    { bin: "blockdev", pkg: "util-linux" },
  ],
  async (fs, bins) => {
    await using host = await buildComposefsHost(`${fs.mountpoint}/host`, {
      images: await buildVersionedImages(`${fs.dir}/oci`, 3),
      booted: 1,
      staged: 2,
      stagedLocked: true,
      bins,
    });
    const root = new HostRoot(host.dir);
    const inspect = await Promise.all(
      ["os:1", "os:2", "os:3"].map((r) => host.registry.inspect(r)),
    );
    const cmdline = await Deno.readTextFile(`${host.dir}/proc/cmdline`);
    const bootedId = /composefs=([0-9a-f]{128})/.exec(cmdline)![1];
    assert.equal(bootedId, host.images[1].id);

    const bootDigest = async (id: string) => {
      const dir = `${host.sysroot}/boot/bootc_composefs-${id}`;
      return createHash("sha256").update(await Deno.readFile(`${dir}/vmlinuz`))
        .update(await Deno.readFile(`${dir}/initrd`)).digest("hex");
    };
    const expectEntry = async (i: number, downloadOnly = false, missingVerityAllowed = false) => ({
      image: {
        image: { image: `${host.registry.host}/os:${i + 1}`, transport: "registry" },
        version: `${i + 1}.0`,
        timestamp: `2024-05-0${i + 1}T10:00:00Z`,
        imageDigest: inspect[i].Digest,
        architecture: inspect[i].Architecture,
      },
      cachedUpdate: null,
      incompatible: false,
      pinned: false,
      softRebootCapable: false,
      downloadOnly,
      store: null,
      ostree: null,
      composefs: {
        verity: host.images[i].id,
        bootType: "Bls",
        bootloader: "grub",
        bootDigest: await bootDigest(host.images[i].id),
        missingVerityAllowed,
      },
    });

    let r = await readHostStatus(root);
    assert.equal(r.kind.kind, "composefs");
    assert.deepEqual(r.warnings, []);
    assert.deepEqual(r.host.status.booted, await expectEntry(1));
    assert.deepEqual(r.host.status.staged, await expectEntry(2, true));
    assert.deepEqual(r.host.status.rollback, await expectEntry(0));
    assert.equal("otherDeployments" in r.host.status, false);
    assert.equal(r.host.status.rollbackQueued, false);
    assert.equal(r.host.status.type, null, "bootc's composefs backend leaves type unset");
    assert.deepEqual(r.host.spec, {
      image: { image: `${host.registry.host}/os:3`, transport: "registry" },
      bootOrder: "default",
    });
    assert.equal("storage" in r.host.status, false);

    writeBootcJson(root, "enabled");
    r = await readHostStatus(root);
    assert.deepEqual(r.host.status.storage, { unified: "enabled", ostreeComposefsBound: false });
    writeBootcJson(root, "disabled");
    r = await readHostStatus(root);
    assert.deepEqual(r.host.status.storage, { unified: "disabled", ostreeComposefsBound: false });

    // Boot the secondary entry: the default entry boots os:2, a queued rollback. With `?` the
    // booted command line allows missing fs-verity, which bootc applies to every entry.
    await host.bootInto(0);
    await Deno.writeTextFile(
      `${host.dir}/proc/cmdline`,
      (await Deno.readTextFile(`${host.dir}/proc/cmdline`)).replace("composefs=", "composefs=?"),
    );
    r = await readHostStatus(root);
    assert.deepEqual(r.host.status.booted, await expectEntry(0, false, true));
    assert.deepEqual(r.host.status.rollback, await expectEntry(1, false, true));
    assert.equal(r.host.status.rollbackQueued, true);
    assert.equal(r.host.spec.bootOrder, "rollback");
    await host.bootInto(1);

    // A /usr overlay is a mount on DIR/usr; a live ISO is a read-only mount on a read-only device.
    await Deno.mkdir(`${host.dir}/usr`);
    await runOk([bins["mount"], "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", `${host.dir}/usr`]);
    try {
      r = await readHostStatus(root);
      assert.deepEqual(r.host.status.usrOverlay, {
        accessMode: "readOnly",
        persistence: "transient",
      });
    } finally {
      await runOk([bins["umount"], `${host.dir}/usr`]);
    }
    assert.equal((await readHostStatus(root)).host.status.usrOverlay, null);
    await runOk([bins["mount"], "-o", "remount,ro", fs.mountpoint]);
    try {
      assert.equal((await readHostStatus(root)).host.status.readOnly, false, "ro mount, rw device");
      await runOk([bins["blockdev"], "--setro", fs.device]);
      try {
        assert.equal((await readHostStatus(root)).host.status.readOnly, true);
      } finally {
        await runOk([bins["blockdev"], "--setrw", fs.device]);
      }
    } finally {
      await runOk([bins["mount"], "-o", "remount,rw", fs.mountpoint]);
    }

    // An entry whose deployment lost its origin is skipped with a warning, as bootc does.
    const id0 = host.images[0].id;
    await Deno.remove(`${host.sysroot}/state/deploy/${id0}/${id0}.origin`);
    r = await readHostStatus(root);
    assert.equal(r.host.status.rollback, null);
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0], new RegExp(`boots ${id0}, which has no .*${id0}\\.origin`));
  },
);
