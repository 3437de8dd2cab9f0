// bootc's install config: the four dirs, override by name, file-name order, match-architectures,
// appended kargs, canonicalization, and errors that name the file and the key.

import assert from "node:assert/strict";
import { InstallConfigError } from "../../lib/host/errors.ts";
import {
  installConfigToBootcJson,
  loadInstallConfig,
  parseInstallConfigFile,
  rustArchitecture,
  unifiedModeOf,
} from "../../lib/host/install_config.ts";
import { withHostTree } from "./host_tree.ts";

const USR = "usr/lib/bootc/install";
const LOCAL = "usr/local/lib/bootc/install";
const ETC = "etc/bootc/install";
const RUN = "run/bootc/install";

Deno.test("merge: later dir overrides by name, files merged in name order, kargs appended", async () => {
  await withHostTree({
    [`${USR}/00-base.toml`]:
      '[install]\nroot-fs-type = "xfs"\nkargs = ["console=ttyS0"]\nstateroot = "base"\n',
    [`${USR}/20-replaced.toml`]: '[install]\nstateroot = "from-usr"\nkargs = ["never"]\n',
    [`${ETC}/20-replaced.toml`]: '[install]\nkargs = ["nosmt"]\n',
    // Name order is bytewise: "10-" < "9-"; the later file wins for scalars.
    [`${RUN}/9-last.toml`]:
      '[install]\nstateroot = "run"\n[install.bootupd]\nskip-boot-uuid = true\n',
    [`${LOCAL}/10-local.toml`]:
      '[install]\nstateroot = "local"\nkargs = ["quiet"]\n[install.storage]\nunified = "enabled"\n',
    [`${USR}/README`]: "not toml",
    [`${USR}/.hidden.toml`]: "this is not even TOML",
  }, (root) => {
    const cfg = loadInstallConfig(root, { architecture: "x86_64" });
    const p = (rel: string) => root.path(rel);
    assert.deepEqual(cfg.files.map((f) => [f.status, f.path]), [
      ["overridden", p(`${USR}/20-replaced.toml`)],
      ["merged", p(`${USR}/00-base.toml`)],
      ["merged", p(`${LOCAL}/10-local.toml`)],
      ["merged", p(`${ETC}/20-replaced.toml`)],
      ["merged", p(`${RUN}/9-last.toml`)],
    ]);
    assert.equal(cfg.files[0].detail, `overridden by ${p(`${ETC}/20-replaced.toml`)}`);
    const byKey = Object.fromEntries(cfg.values.map((v) => [v.key, v]));
    assert.deepEqual(byKey.kargs.value, ["console=ttyS0", "quiet", "nosmt"]);
    assert.deepEqual(byKey.kargs.sources, [
      p(`${USR}/00-base.toml`),
      p(`${LOCAL}/10-local.toml`),
      p(`${ETC}/20-replaced.toml`),
    ]);
    assert.deepEqual(byKey.stateroot, {
      key: "stateroot",
      value: "run",
      sources: [p(`${RUN}/9-last.toml`)],
    });
    assert.deepEqual(byKey["storage.unified"].value, "enabled");
    // canonicalize(): filesystem.root.type follows root-fs-type; block gets bootc's default.
    assert.deepEqual(byKey["filesystem.root.type"], {
      key: "filesystem.root.type",
      value: "xfs",
      sources: [p(`${USR}/00-base.toml`)],
    });
    assert.deepEqual(byKey.block, { key: "block", value: ["direct"], sources: [] });
    // Struct order of bootc's InstallConfiguration.
    assert.deepEqual(cfg.values.map((v) => v.key), [
      "root-fs-type",
      "block",
      "filesystem.root.type",
      "kargs",
      "stateroot",
      "bootupd.skip-boot-uuid",
      "storage.unified",
    ]);
    assert.deepEqual(cfg.install, {
      rootFsType: "xfs",
      block: ["direct"],
      filesystem: { root: { type: "xfs" } },
      kargs: ["console=ttyS0", "quiet", "nosmt"],
      stateroot: "run",
      bootupd: { skipBootUuid: true },
      storage: { unified: "enabled" },
    });
    assert.equal(unifiedModeOf(cfg), "enabled");
    assert.deepEqual(installConfigToBootcJson(cfg), {
      "root-fs-type": "xfs",
      block: ["direct"],
      filesystem: { root: { type: "xfs" } },
      kargs: ["console=ttyS0", "quiet", "nosmt"],
      stateroot: "run",
      bootupd: { "skip-boot-uuid": true },
      storage: { unified: "enabled" },
    });
  });
});

Deno.test("merge: match-architectures skips a whole file; filesystem.root.type wins over root-fs-type", async () => {
  const tree = {
    [`${USR}/00-base.toml`]: '[install]\nroot-fs-type = "ext4"\nkargs = ["a"]\n',
    [`${USR}/10-arm.toml`]:
      '[install]\nmatch-architectures = ["aarch64"]\nkargs = ["arm"]\n[install.filesystem.root]\ntype = "btrfs"\n',
    [`${USR}/20-both.toml`]:
      '[install]\nmatch-architectures = ["x86_64", "aarch64"]\nkargs = ["both"]\n',
  };
  await withHostTree(tree, (root) => {
    const x86 = loadInstallConfig(root, { architecture: "x86_64" });
    assert.deepEqual(x86.install?.kargs, ["a", "both"]);
    assert.equal(x86.install?.rootFsType, "ext4");
    assert.equal(x86.install?.filesystem?.root?.type, "ext4");
    const skipped = x86.files.find((f) => f.name === "10-arm.toml");
    assert.equal(skipped?.status, "skipped-architecture");
    assert.equal(skipped?.detail, 'match-architectures ["aarch64"] does not include x86_64');
    const arm = loadInstallConfig(root, { architecture: "aarch64" });
    assert.deepEqual(arm.install?.kargs, ["a", "arm", "both"]);
    assert.equal(arm.install?.rootFsType, "btrfs");
    assert.deepEqual(arm.values.find((v) => v.key === "root-fs-type")?.sources, [
      root.path(`${USR}/10-arm.toml`),
    ]);
    // The process's own architecture is used by default.
    assert.equal(loadInstallConfig(root).architecture, rustArchitecture());
  });
});

Deno.test("liboverdrop rules: /dev/null masks, other symlinks and non-dirs are ignored, /usr/local may be a symlink", async () => {
  await withHostTree({
    [`${USR}/10-a.toml`]: '[install]\nstateroot = "a"\n',
    [`${ETC}/10-a.toml`]: { symlink: "/dev/null" },
    [`${USR}/20-b.toml`]: '[install]\nstateroot = "b"\n',
    [`${ETC}/20-b.toml`]: { symlink: "../../usr/lib/bootc/install/20-b.toml" },
    [`${ETC}/30-dir.toml`]: { dir: true },
    // On bootc hosts /usr/local is a symlink into /var.
    "usr/local": { symlink: "../var/usrlocal" },
    "var/usrlocal/lib/bootc/install/40-c.toml": '[install]\nbootloader = "systemd"\n',
    // A base that cannot be listed is skipped, as liboverdrop does.
    "run/bootc/install": "a file where a dir should be",
  }, (root) => {
    const cfg = loadInstallConfig(root, { architecture: "x86_64" });
    assert.deepEqual(cfg.files.map((f) => [f.name, f.status]), [
      ["10-a.toml", "overridden"],
      ["10-a.toml", "masked"],
      ["20-b.toml", "merged"],
      ["40-c.toml", "merged"],
    ]);
    assert.equal(cfg.install?.stateroot, "b");
    assert.equal(cfg.install?.bootloader, "systemd");
  });
});

Deno.test("no files, or none with [install]: no config (install null), unified disabled", async () => {
  await withHostTree({}, (root) => {
    const cfg = loadInstallConfig(root, { architecture: "x86_64" });
    assert.equal(cfg.install, null);
    assert.deepEqual(cfg.values, []);
    assert.deepEqual(cfg.files, []);
    assert.equal(unifiedModeOf(cfg), "disabled");
    assert.equal(installConfigToBootcJson(cfg), null);
  });
  await withHostTree({ [`${USR}/00-empty.toml`]: "# nothing\n" }, (root) => {
    const cfg = loadInstallConfig(root, { architecture: "x86_64" });
    assert.equal(cfg.install, null);
    assert.deepEqual(cfg.files.map((f) => f.status), ["no-install-table"]);
  });
});

/** Loads a one-file config and returns the error it raises. */
async function errorOf(
  text: string,
  name = "50-x.toml",
  extra: Record<string, string> = {},
): Promise<InstallConfigError> {
  return await withHostTree({ [`${ETC}/${name}`]: text, ...extra }, (root) => {
    try {
      loadInstallConfig(root, { architecture: "x86_64" });
    } catch (e) {
      assert.ok(e instanceof InstallConfigError, String(e));
      assert.equal(e.file, root.path(`${ETC}/${name}`));
      assert.ok(e.message.startsWith(`${e.file}: `), e.message);
      return e;
    }
    assert.fail("expected an InstallConfigError");
  });
}

Deno.test("errors: a bad value names file, dotted key, value found and the allowed values", async () => {
  const e = await errorOf('[install.storage]\nunified = "enable"\n');
  assert.equal(e.key, "install.storage.unified");
  assert.equal(e.found, '"enable"');
  assert.equal(
    e.message,
    `${e.file}: install.storage.unified: expected one of "disabled", "enabled", "enabled-with-copy", found "enable"`,
  );
  const cases: [string, string, string, string][] = [
    [
      '[install]\nroot-fs-type = "zfs"\n',
      "install.root-fs-type",
      'one of "xfs", "ext4", "btrfs"',
      '"zfs"',
    ],
    [
      '[install]\nbootloader = "lilo"\n',
      "install.bootloader",
      'one of "grub", "grub-cc", "systemd", "none"',
      '"lilo"',
    ],
    [
      '[install]\nblock = ["direct", "lvm"]\n',
      "install.block[1]",
      'one of "direct", "tpm2-luks"',
      '"lvm"',
    ],
    ['[install]\nkargs = "quiet"\n', "install.kargs", "an array of strings", '"quiet"'],
    ["[install]\nkarg-deletes = [1]\n", "install.karg-deletes[0]", "a string", "1"],
    [
      '[install.bootupd]\nskip-boot-uuid = "yes"\n',
      "install.bootupd.skip-boot-uuid",
      "true or false",
      '"yes"',
    ],
    [
      "[install]\ndiscoverable-partitions = 1979-05-27\n",
      "install.discoverable-partitions",
      "true or false",
      "1979-05-27",
    ],
    ["[install]\nfilesystem = 3\n", "install.filesystem", "a table", "3"],
    [
      "[install.filesystem.root]\ntype = true\n",
      "install.filesystem.root.type",
      'one of "xfs", "ext4", "btrfs"',
      "true",
    ],
    ['install = "x"\n', "install", "a table", '"x"'],
  ];
  for (const [text, key, expected, found] of cases) {
    const err = await errorOf(text);
    assert.deepEqual([err.key, err.expected, err.found], [key, expected, found], text);
  }
});

Deno.test("errors: unknown keys (bootc's deny_unknown_fields), except in [install.ostree] (warning)", async () => {
  let e = await errorOf('[install.storage]\nunifed = "enabled"\n');
  assert.equal(e.key, "install.storage.unifed");
  assert.equal(e.expected, "one of the keys unified");
  assert.equal(e.found, 'an unknown key with value "enabled"');
  e = await errorOf('[install]\nroot_fs_type = "xfs"\n');
  assert.equal(e.key, "install.root_fs_type");
  assert.match(
    e.expected,
    /^one of the keys root-fs-type, block, filesystem, kargs, karg-deletes,/,
  );
  e = await errorOf("[other]\nx = 1\n");
  assert.equal(e.key, "other");
  assert.equal(e.expected, "only the [install] table");
  e = await errorOf('[install]\n"odd.key" = 1\n');
  assert.equal(e.key, 'install."odd.key"');
  await withHostTree({
    [`${USR}/x.toml`]: '[install.ostree]\nbls-append-except-default = "a=b"\nfuture = 1\n',
  }, (root) => {
    const cfg = loadInstallConfig(root, { architecture: "x86_64" });
    assert.equal(cfg.install?.ostree?.blsAppendExceptDefault, "a=b");
    assert.deepEqual(cfg.warnings, [
      `${root.path(`${USR}/x.toml`)}: unknown key install.ostree.future ignored (as bootc does)`,
    ]);
  });
});

Deno.test("errors: bad TOML keeps smol-toml's line and column; a skipped-architecture file is still validated", async () => {
  const e = await errorOf('[install]\nstateroot = "a"\nkargs = [\n  "x",\n  bad\n]\n');
  assert.equal(e.key, null);
  assert.equal(e.line, 5);
  assert.equal(e.column, 3);
  assert.match(e.message, /: line 5, column 3: expected valid TOML, found /);
  assert.match(e.message, /\n5: {2}\s*bad/); // the code excerpt follows
  const dup = await errorOf("[install]\nstateroot = 'a'\nstateroot = 'b'\n");
  assert.equal(dup.line, 3);
  // bootc parses every file before looking at match-architectures.
  const skipped = await errorOf(
    '[install]\nmatch-architectures = ["s390x"]\nbootloader = "lilo"\n',
  );
  assert.equal(skipped.key, "install.bootloader");
  // The error stops at the first bad file in processing order, with the right name.
  const first = await errorOf("[install]\nstateroot = 1\n", "10-bad.toml", {
    [`${USR}/20-also-bad.toml`]: "[[",
  });
  assert.equal(first.key, "install.stateroot");
});

Deno.test("parseInstallConfigFile: every key of spec §7.2 with an allowed value parses", () => {
  const f = parseInstallConfigFile(
    [
      "[install]",
      'root-fs-type = "btrfs"',
      'block = ["tpm2-luks", "direct"]',
      'kargs = ["a"]',
      'karg-deletes = ["b"]',
      'match-architectures = ["x86_64"]',
      'stateroot = "s"',
      'root-mount-spec = ""',
      'boot-mount-spec = "UUID=abcd-1234"',
      'bootloader = "grub-cc"',
      "discoverable-partitions = true",
      "enforce-container-sigpolicy = false",
      "[install.filesystem.root]",
      'type = "xfs"',
      "[install.ostree]",
      'bls-append-except-default = "console=ttyS0,115200n8"',
      "[install.bootupd]",
      "skip-boot-uuid = false",
      "[install.storage]",
      'unified = "enabled-with-copy"',
    ].join("\n"),
    "all.toml",
  );
  assert.equal(f.hasInstall, true);
  assert.deepEqual(Object.fromEntries(f.leaves), {
    "root-fs-type": "btrfs",
    block: ["tpm2-luks", "direct"],
    kargs: ["a"],
    "karg-deletes": ["b"],
    "match-architectures": ["x86_64"],
    stateroot: "s",
    "root-mount-spec": "",
    "boot-mount-spec": "UUID=abcd-1234",
    bootloader: "grub-cc",
    "discoverable-partitions": true,
    "enforce-container-sigpolicy": false,
    "filesystem.root.type": "xfs",
    "ostree.bls-append-except-default": "console=ttyS0,115200n8",
    "bootupd.skip-boot-uuid": false,
    "storage.unified": "enabled-with-copy",
  });
  assert.deepEqual(f.warnings, []);
});
