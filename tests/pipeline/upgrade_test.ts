// The parts of lib/pipeline/upgrade.ts that need no host: which image a reference or an origin
// names (and what the new origin says), which registries are loopback, and the refusals that
// come before anything is read from a registry. The pipeline itself is judged by the real
// tools in tests/commands/upgrade_test.ts.

import assert from "node:assert/strict";
import { ImageReferenceError } from "../../lib/pipeline/errors.ts";
import {
  checkForUpgrade,
  isLoopbackRegistry,
  originFileText,
  parseUpgradeImage,
  sourceFromOrigin,
  upgradeHost,
  UpgradeRefusedError,
} from "../../lib/pipeline/upgrade.ts";
import { withHostTree } from "../host/host_tree.ts";

Deno.test("isLoopbackRegistry: localhost, 127.0.0.0/8 and [::1], with or without a port", () => {
  for (
    const name of [
      "127.0.0.1:5000/os:1",
      "127.1.2.3/x",
      "localhost/os",
      "localhost:5000/a/b",
      "[::1]:5000/os",
    ]
  ) {
    assert.equal(isLoopbackRegistry(name), true, name);
  }
  for (
    const name of [
      "quay.io/example/os:42",
      "fedora:40", // docker.io/library/fedora
      "127.0.0.1.example.com/os",
      "128.0.0.1:5000/os",
      "127.0.0.256/os",
      "localhost.example.com/os",
      "[::2]:5000/os",
      "os/localhost",
    ]
  ) {
    assert.equal(isLoopbackRegistry(name), false, name);
  }
});

Deno.test("parseUpgradeImage: docker://, registry:, bare names, oci: layouts, ostree-ext references", () => {
  assert.deepEqual(parseUpgradeImage("quay.io/example/os:42"), {
    kind: "registry",
    name: "quay.io/example/os:42",
    imageReference: "docker://quay.io/example/os:42",
    originReference: "ostree-unverified-registry:quay.io/example/os:42",
    loopback: false,
  });
  assert.deepEqual(parseUpgradeImage("docker://127.0.0.1:5000/os:1"), {
    kind: "registry",
    name: "127.0.0.1:5000/os:1",
    imageReference: "docker://127.0.0.1:5000/os:1",
    originReference: "ostree-unverified-registry:127.0.0.1:5000/os:1",
    loopback: true,
  });
  assert.equal(parseUpgradeImage("registry:quay.io/x:1").imageReference, "docker://quay.io/x:1");
  assert.equal(
    parseUpgradeImage("ostree-unverified-registry:quay.io/x:1").originReference,
    "ostree-unverified-registry:quay.io/x:1",
  );
  assert.deepEqual(parseUpgradeImage("oci:/srv/images/os:v2"), {
    kind: "oci",
    dir: "/srv/images/os",
    tag: "v2",
    imageReference: "oci:/srv/images/os:v2",
    originReference: "ostree-unverified-image:oci:/srv/images/os:v2",
  });
  // A relative layout is named absolutely in the origin (the origin outlives the cwd).
  const rel = parseUpgradeImage("oci:layout");
  assert.equal(rel.kind, "oci");
  assert.equal(rel.imageReference, `oci:${Deno.cwd()}/layout`);

  for (const bad of ["containers-storage:localhost/os", "dir:/tmp/x", "oci-archive:/x.tar"]) {
    assert.throws(
      () => parseUpgradeImage(bad),
      (e) => e instanceof ImageReferenceError && /upgrade does not pull from/.test(e.message),
      bad,
    );
  }
  assert.throws(() => parseUpgradeImage("docker://"), ImageReferenceError);
  assert.throws(() => parseUpgradeImage("quay.io/x y"), ImageReferenceError);
});

Deno.test("sourceFromOrigin: the ostree-ext prefix taken off, a signature check reported", () => {
  assert.deepEqual(sourceFromOrigin("ostree-unverified-registry:quay.io/x/os:1"), {
    source: parseUpgradeImage("quay.io/x/os:1"),
    signed: null,
  });
  assert.deepEqual(sourceFromOrigin("ostree-unverified-image:docker://quay.io/x/os:1"), {
    source: parseUpgradeImage("quay.io/x/os:1"),
    signed: null,
  });
  assert.deepEqual(sourceFromOrigin("ostree-unverified-image:oci:/srv/os:v1"), {
    source: parseUpgradeImage("oci:/srv/os:v1"),
    signed: null,
  });
  assert.deepEqual(sourceFromOrigin("ostree-remote-image:fedora:docker://quay.io/x/os:1"), {
    source: parseUpgradeImage("quay.io/x/os:1"),
    signed: "ostree remote fedora",
  });
  assert.deepEqual(sourceFromOrigin("ostree-image-signed:docker://quay.io/x/os:1"), {
    source: parseUpgradeImage("quay.io/x/os:1"),
    signed: "containers policy",
  });
  assert.throws(
    () => sourceFromOrigin("ostree-unverified-image:containers-storage:localhost/os"),
    /expected a registry or oci: image, found the containers-storage transport/,
  );
  assert.throws(() => sourceFromOrigin("quay.io/x/os:1"), ImageReferenceError);
});

Deno.test("originFileText: the origin bootc writes", () => {
  assert.equal(
    originFileText(parseUpgradeImage("quay.io/x/os:1")),
    "[origin]\ncontainer-image-reference=ostree-unverified-registry:quay.io/x/os:1\n",
  );
  assert.equal(
    originFileText(parseUpgradeImage("oci:/srv/os:v2")),
    "[origin]\ncontainer-image-reference=ostree-unverified-image:oci:/srv/os:v2\n",
  );
});

Deno.test("upgrade refuses native composefs hosts and roots that are no bootc host", async () => {
  const digest = "ab".repeat(64);
  await withHostTree({
    "proc/cmdline": `root=UUID=x composefs=${digest} rw\n`,
    "sysroot/composefs/meta.json": "{}",
  }, async (_root, dir) => {
    for (const f of [checkForUpgrade, upgradeHost]) {
      await assert.rejects(
        f({ root: dir, image: "quay.io/x/os:1" }),
        (e) =>
          e instanceof UpgradeRefusedError && /native composefs host/.test(e.message) &&
          /use bootc upgrade/.test(e.message),
      );
    }
  });
  await withHostTree({ "etc/hostname": "plain\n" }, async (_root, dir) => {
    await assert.rejects(
      upgradeHost({ root: dir, image: "quay.io/x/os:1" }),
      (e) => e instanceof UpgradeRefusedError && /not a bootc host/.test(e.message),
    );
  });
});
