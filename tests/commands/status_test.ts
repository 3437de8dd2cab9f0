// `unistore status` as a user runs it: a real process on real host roots (an ostree host built
// by ostree from a loopback registry, a native composefs host, a plain directory), in JSON,
// YAML and human form. Judges: the spec's canonical JSON rules, PyYAML, skopeo inspect.

import assert from "node:assert/strict";
import { canonicalJson } from "../../lib/format/canonical_json.ts";
import { writeBootcJson } from "../../lib/host/flags.ts";
import { HostRoot } from "../../lib/host/root.ts";
import { formatStatusHuman } from "../../lib/commands/status.ts";
import {
  type BootcBootEntry,
  type BootcHost,
  hostJson,
  type ImageStatus,
  notBootcHost,
  readHostStatus,
} from "../../lib/host/status.ts";
import { run, runOk } from "../harness/run.ts";
import { unistore } from "../fixtures/unistore_cli.ts";
import {
  buildComposefsHost,
  buildOstreeHost,
  COMPOSEFS_HOST_TOOLS,
  hostFixtureTest,
  OSTREE_HOST_TOOLS,
} from "../fixtures/host/mod.ts";
import { buildVersionedImages } from "../fixtures/host/versioned_images.ts";
import { withHostTree } from "../host/host_tree.ts";

/** bootc's struct order of Host and HostStatus members (serde_yaml keeps it). */
const HOST_ORDER = ["apiVersion", "kind", "metadata", "spec", "status"];
const STATUS_ORDER = [
  "staged",
  "booted",
  "rollback",
  "rollbackQueued",
  "type",
  "usrOverlay",
  "readOnly",
  "storage",
];

/** PyYAML judges the YAML (Debian python3-yaml; its absence shows as a failed import). */
const PYYAML = { bin: "python3", pkg: "python3-yaml" };

/** PyYAML's reading of `yaml` and the key order of the top level and of `status`. */
async function pyyaml(
  python: string,
  yaml: string,
): Promise<{ doc: unknown; top: string[]; status: string[] }> {
  const script = [
    "import json, sys, yaml",
    "d = yaml.safe_load(sys.stdin.read())",
    "print(json.dumps({'doc': d, 'top': list(d), 'status': list(d['status'])}))",
  ].join("\n");
  const r = await run([python, "-c", script], { stdin: new TextEncoder().encode(yaml) });
  assert.equal(r.code, 0, `${r.stderr}\n--- yaml ---\n${yaml}`);
  return JSON.parse(r.stdout);
}

const CSUM = "c".repeat(64);

function ostreeEntry(
  image: ImageStatus | null,
  extra: Partial<BootcBootEntry> = {},
): BootcBootEntry {
  return {
    image,
    cachedUpdate: null,
    incompatible: false,
    pinned: false,
    softRebootCapable: false,
    downloadOnly: false,
    store: "ostreeContainer",
    ostree: { stateroot: "default", checksum: CSUM, deploySerial: 1 },
    composefs: null,
    ...extra,
  };
}

function withStatus(status: Partial<BootcHost["status"]>): BootcHost {
  const h = notBootcHost();
  return { ...h, status: { ...h.status, ...status } };
}

Deno.test("formatStatusHuman: bootc's rows for plain ostree entries, pins, pending updates, signatures", () => {
  const img = (over: Partial<ImageStatus> = {}): ImageStatus => ({
    image: { image: "/var/lib/images/os", transport: "oci" },
    version: null,
    timestamp: "2024-05-01T10:00:00.250Z",
    imageDigest: `sha256:${"1".repeat(64)}`,
    architecture: "arm64",
    ...over,
  });
  // A deployment without a container image: bootc measures "● Booted ostree" in bytes (17).
  assert.equal(
    formatStatusHuman(withStatus({
      booted: ostreeEntry(null, { pinned: true }),
      usrOverlay: { accessMode: "readWrite", persistence: "persistent" },
      storage: { unified: "disabled", ostreeComposefsBound: false },
    })),
    [
      "● Booted ostree",
      `           Commit: ${CSUM}`,
      "           Pinned: yes",
      "     /usr overlay: persistent, read/write",
    ].join("\n"),
  );
  // Non-registry transport shown with it, timestamp without version, a cached update without a
  // version, a signature, the staged slot's Download-only row; an unknown rollback.
  const update = img({ imageDigest: `sha256:${"2".repeat(64)}`, version: null });
  assert.equal(
    formatStatusHuman(
      withStatus({
        staged: ostreeEntry(
          img({
            image: {
              image: "q/os:1",
              transport: "registry",
              signature: { ostreeRemote: "fedora" },
            },
          }),
          {
            downloadOnly: true,
          },
        ),
        booted: ostreeEntry(img(), { cachedUpdate: update, pinned: true }),
        rollback: { ...ostreeEntry(null), ostree: null },
        otherDeployments: [ostreeEntry(img({ version: "9", timestamp: null }))],
      }),
      { verbose: true },
    ),
    [
      "  Staged image: q/os:1",
      `        Digest: sha256:${"1".repeat(64)} (arm64)`,
      "     Timestamp: 2024-05-01T10:00:00Z",
      "     StateRoot: default",
      " Deploy serial: 1",
      "        Staged: yes",
      `        Commit: ${CSUM}`,
      "     Signature: ostree-remote:fedora",
      "   Soft-reboot: no",
      " Download-only: yes",
      "",
      "● Booted image: oci:/var/lib/images/os",
      `        Digest: sha256:${"1".repeat(64)} (arm64)`,
      "     Timestamp: 2024-05-01T10:00:00Z",
      "        Pinned: yes",
      "        Update: Available",
      `  UpdateDigest: sha256:${"2".repeat(64)}`,
      "     StateRoot: default",
      " Deploy serial: 1",
      "        Staged: no",
      `        Commit: ${CSUM}`,
      "   Soft-reboot: no",
      "",
      "Current rollback state is unknown",
      "",
      "   Other image: oci:/var/lib/images/os",
      `        Digest: sha256:${"1".repeat(64)} (arm64)`,
      "       Version: 9",
      "     StateRoot: default",
      " Deploy serial: 1",
      "        Staged: no",
      `        Commit: ${CSUM}`,
      "   Soft-reboot: no",
    ].join("\n"),
  );
  assert.equal(formatStatusHuman(notBootcHost()), "System is not deployed via bootc.");
});

Deno.test("unistore status on a directory that is no bootc host: the bootc wording and Host::default()", async () => {
  await withHostTree({ "etc/os-release": "ID=debian\n" }, async (_root, dir) => {
    const human = await unistore("--root", dir, "status", "--format", "human");
    assert.equal(human.code, 0, human.stderr);
    assert.equal(human.stdout, "System is not deployed via bootc.\n");
    const json = await unistore("--root", dir, "status", "--format=json");
    assert.equal(json.code, 0, json.stderr);
    assert.equal(json.stdout, `${canonicalJson(hostJson(notBootcHost()))}\n`);
    const legacy = await unistore("--root", dir, "status", "--json");
    assert.equal(legacy.stdout, json.stdout);
  });
});

Deno.test("unistore status: usage errors exit 2 and say what was expected", async () => {
  const bad = await unistore("status", "--format", "xml");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--format: expected human, humanreadable, json or yaml, found "xml"/);
  const extra = await unistore("status", "booted");
  assert.equal(extra.code, 2);
  assert.match(extra.stderr, /status takes no arguments/);
  const fv = await unistore("status", "--format-version", "2");
  assert.equal(fv.code, 2);
  assert.match(fv.stderr, /--format-version: expected 0 or 1, found "2"/);
});

hostFixtureTest(
  "unistore status on an ostree host: canonical JSON, YAML in bootc order, the human rows",
  "xfs",
  [...OSTREE_HOST_TOOLS, PYYAML],
  async (fs, bins) => {
    await using host = await buildOstreeHost(`${fs.mountpoint}/host`, {
      images: await buildVersionedImages(`${fs.dir}/oci`, 2),
      booted: 1,
      bins,
    });
    const root = new HostRoot(host.dir);
    const [i1, i2] = await Promise.all([
      host.registry.inspect("os:1"),
      host.registry.inspect("os:2"),
    ]);
    await runOk([
      bins["ostree"],
      "config",
      `--repo=${host.repo}`,
      "set",
      "composefs.unified",
      "true",
    ]);
    await Deno.mkdir(`${host.sysroot}/composefs`, { mode: 0o700 });
    writeBootcJson(root, "enabled-with-copy");

    // JSON: one canonical line, the object readHostStatus builds.
    const json = await unistore("--root", host.dir, "status", "--format", "json");
    assert.equal(json.code, 0, json.stderr);
    assert.equal(json.stdout.split("\n").length, 2, "one line");
    const doc = JSON.parse(json.stdout);
    assert.equal(json.stdout.trimEnd(), canonicalJson(doc));
    assert.deepEqual(doc, JSON.parse(JSON.stringify((await readHostStatus(root)).host)));
    // The field set of spec §8.2's sample, plus the PR's storage member.
    assert.deepEqual(Object.keys(doc.status), [
      "booted",
      "readOnly",
      "rollback",
      "rollbackQueued",
      "staged",
      "storage",
      "type",
      "usrOverlay",
    ]);
    for (const slot of ["booted", "rollback"]) {
      assert.deepEqual(Object.keys(doc.status[slot]), [
        "cachedUpdate",
        "composefs",
        "downloadOnly",
        "image",
        "incompatible",
        "ostree",
        "pinned",
        "softRebootCapable",
        "store",
      ]);
      assert.deepEqual(Object.keys(doc.status[slot].image), [
        "architecture",
        "image",
        "imageDigest",
        "timestamp",
        "version",
      ]);
      assert.deepEqual(Object.keys(doc.status[slot].ostree), [
        "checksum",
        "deploySerial",
        "stateroot",
      ]);
    }
    assert.equal(doc.status.booted.image.imageDigest, i2.Digest);
    assert.equal(doc.status.rollback.image.imageDigest, i1.Digest);
    // The PR's member sorts between "staged" and "type" (spec §8.2).
    assert.ok(
      json.stdout.includes(
        '"staged":null,"storage":{"ostreeComposefsBound":true,"unified":"enabled-with-copy"},"type":"bootcHost"',
      ),
      json.stdout,
    );

    // YAML: the same document for PyYAML, members in bootc's struct order; and the default when
    // stdout is not a terminal (it is a pipe here).
    const yaml = await unistore("--root", host.dir, "status", "--format", "yaml");
    assert.equal(yaml.code, 0, yaml.stderr);
    const y = await pyyaml(bins["python3"], yaml.stdout);
    assert.deepEqual(y.doc, doc);
    assert.deepEqual(y.top, HOST_ORDER);
    assert.deepEqual(y.status, STATUS_ORDER);
    const byDefault = await unistore("--root", host.dir, "status");
    assert.equal(byDefault.stdout, yaml.stdout);

    // Human: exactly bootc's rows, labels right-aligned to each slot prefix.
    const human = await unistore("--root", host.dir, "status", "--format", "human");
    assert.equal(human.code, 0, human.stderr);
    const h = host.registry.host;
    assert.equal(
      human.stdout,
      [
        `● Booted image: ${h}/os:2`,
        `        Digest: ${i2.Digest} (${i2.Architecture})`,
        "       Version: 2.0 (2024-05-02T10:00:00Z)",
        "       Storage: unified (enabled-with-copy)",
        "",
        `  Rollback image: ${h}/os:1`,
        `          Digest: ${i1.Digest} (${i1.Architecture})`,
        "         Version: 1.0 (2024-05-01T10:00:00Z)",
        "",
      ].join("\n"),
    );

    // Bound only: the other Storage wording; --verbose adds bootc's ostree rows.
    writeBootcJson(root, "disabled");
    const bound = await unistore(
      "--root",
      host.dir,
      "--verbose",
      "status",
      "--format=human",
      "--booted",
    );
    assert.equal(bound.code, 0, bound.stderr);
    const b = host.images[1];
    assert.equal(
      bound.stdout,
      [
        `● Booted image: ${h}/os:2`,
        `        Digest: ${i2.Digest} (${i2.Architecture})`,
        "       Version: 2.0 (2024-05-02T10:00:00Z)",
        "       Storage: ostree-composefs-bound",
        "     StateRoot: default",
        " Deploy serial: 0",
        "        Staged: no",
        `        Commit: ${b.commit}`,
        "   Soft-reboot: no",
        "",
      ].join("\n"),
    );

    // --booted: staged and rollback cleared, as bootc's filter_to_slot.
    const bootedOnly = JSON.parse(
      (await unistore("--root", host.dir, "status", "--json", "--booted")).stdout,
    );
    assert.equal(bootedOnly.status.rollback, null);
    assert.equal(bootedOnly.status.booted.ostree.checksum, b.commit);
  },
);

hostFixtureTest(
  "unistore status on a native composefs host: staged, booted and rollback with Verity rows",
  "xfs",
  COMPOSEFS_HOST_TOOLS,
  async (fs, bins) => {
    await using host = await buildComposefsHost(`${fs.mountpoint}/host`, {
      images: await buildVersionedImages(`${fs.dir}/oci`, 3),
      booted: 1,
      staged: 2,
      bins,
    });
    writeBootcJson(new HostRoot(host.dir), "enabled");
    const ins = await Promise.all(["os:1", "os:2", "os:3"].map((r) => host.registry.inspect(r)));
    const [a, b, c] = host.images;
    const h = host.registry.host;
    const human = await unistore("--root", host.dir, "status", "--format", "humanreadable", "-v");
    assert.equal(human.code, 0, human.stderr);
    assert.equal(
      human.stdout,
      [
        `  Staged image: ${h}/os:3`,
        `        Digest: ${ins[2].Digest} (${ins[2].Architecture})`,
        `        Verity: ${c.id}`,
        "       Version: 3.0 (2024-05-03T10:00:00Z)",
        "   Soft-reboot: no",
        "      FsVerity: Enforced",
        " Download-only: no",
        "",
        `● Booted image: ${h}/os:2`,
        `        Digest: ${ins[1].Digest} (${ins[1].Architecture})`,
        `        Verity: ${b.id}`,
        "       Version: 2.0 (2024-05-02T10:00:00Z)",
        "       Storage: unified (enabled)",
        "   Soft-reboot: no",
        "      FsVerity: Enforced",
        "",
        `  Rollback image: ${h}/os:1`,
        `          Digest: ${ins[0].Digest} (${ins[0].Architecture})`,
        `          Verity: ${a.id}`,
        "         Version: 1.0 (2024-05-01T10:00:00Z)",
        "     Soft-reboot: no",
        "        FsVerity: Enforced",
        "",
      ].join("\n"),
    );
    const doc = JSON.parse(
      (await unistore("--root", host.dir, "status", "--format", "json")).stdout,
    );
    assert.equal(doc.status.booted.composefs.verity, b.id);
    assert.equal(doc.status.booted.composefs.bootType, "Bls");
    assert.equal(doc.status.staged.composefs.verity, c.id);
    assert.deepEqual(doc.status.storage, { ostreeComposefsBound: false, unified: "enabled" });
    assert.deepEqual(doc.spec.image, { image: `${h}/os:3`, transport: "registry" });
  },
);
