// `unistore config` as a user runs it: a real process on a host root built in a temp dir.

import assert from "node:assert/strict";
import { canonicalJson } from "../../lib/format/canonical_json.ts";
import { rustArchitecture } from "../../lib/host/install_config.ts";
import { run } from "../harness/run.ts";
import { withHostTree } from "../host/host_tree.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

function unistore(...args: string[]) {
  return run([Deno.execPath(), "run", "-A", "--quiet", MAIN, ...args]);
}

const ARCH = rustArchitecture();
const OTHER_ARCH = ARCH === "x86_64" ? "aarch64" : "x86_64";

const TREE = {
  "usr/lib/bootc/install/00-base.toml":
    '[install]\nroot-fs-type = "xfs"\nkargs = ["console=ttyS0"]\n',
  "usr/lib/bootc/install/50-unified.toml": '[install.storage]\nunified = "enabled"\n',
  "etc/bootc/install/50-unified.toml": '[install.storage]\nunified = "enabled-with-copy"\n',
  "etc/bootc/install/60-other-arch.toml":
    `[install]\nmatch-architectures = ["${OTHER_ARCH}"]\nkargs = ["never"]\n`,
  "run/bootc/install/70-more.toml": '[install]\nkargs = ["nosmt"]\n',
};

Deno.test("unistore config --json: merged values with their source files, as canonical JSON", async () => {
  await withHostTree(TREE, async (root, dir) => {
    const r = await unistore("--root", dir, "config", "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split("\n").length, 2); // one line
    const doc = JSON.parse(r.stdout);
    assert.equal(r.stdout.trimEnd(), canonicalJson(doc)); // sorted keys, no whitespace
    const p = (rel: string) => root.path(rel);
    assert.equal(doc.architecture, ARCH);
    assert.deepEqual(doc.dirs, root.installConfigDirs);
    assert.equal(doc.unified, "enabled-with-copy");
    assert.deepEqual(doc.install, {
      "root-fs-type": "xfs",
      block: ["direct"],
      filesystem: { root: { type: "xfs" } },
      kargs: ["console=ttyS0", "nosmt"],
      storage: { unified: "enabled-with-copy" },
    });
    assert.deepEqual(doc.values, [
      { key: "root-fs-type", value: "xfs", sources: [p("usr/lib/bootc/install/00-base.toml")] },
      { key: "block", value: ["direct"], sources: [] },
      {
        key: "filesystem.root.type",
        value: "xfs",
        sources: [p("usr/lib/bootc/install/00-base.toml")],
      },
      {
        key: "kargs",
        value: ["console=ttyS0", "nosmt"],
        sources: [p("usr/lib/bootc/install/00-base.toml"), p("run/bootc/install/70-more.toml")],
      },
      {
        key: "storage.unified",
        value: "enabled-with-copy",
        sources: [p("etc/bootc/install/50-unified.toml")],
      },
    ]);
    assert.deepEqual(doc.files.map((f: { status: string; name: string }) => [f.status, f.name]), [
      ["overridden", "50-unified.toml"],
      ["merged", "00-base.toml"],
      ["merged", "50-unified.toml"],
      ["skipped-architecture", "60-other-arch.toml"],
      ["merged", "70-more.toml"],
    ]);
    assert.deepEqual(doc.warnings, []);
  });
});

Deno.test("unistore config: a human table of key, value and source file", async () => {
  await withHostTree(TREE, async (root, dir) => {
    const r = await unistore("--root", dir, "config");
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.match(lines[0], /^KEY\s+VALUE\s+SOURCE$/);
    const row = (key: string) => lines.find((l) => l.startsWith(`${key} `));
    assert.match(
      row("storage.unified")!,
      new RegExp(`"enabled-with-copy"\\s+${root.path("etc/bootc/install/50-unified.toml")}$`),
    );
    assert.match(row("block")!, /\["direct"\]\s+\(bootc default\)$/);
    assert.match(
      row("kargs")!,
      /\["console=ttyS0", "nosmt"\]\s+\S+00-base\.toml, \S+70-more\.toml$/,
    );
    assert.ok(lines.includes(`unified storage: enabled-with-copy (architecture ${ARCH})`));
    assert.ok(
      lines.some((l) =>
        /^ {2}skipped-architecture\s+\S+60-other-arch\.toml \(match-architectures/.test(l)
      ),
    );
  });
  await withHostTree({}, async (_root, dir) => {
    const r = await unistore("--root", dir, "config");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^no install configuration/);
  });
});

Deno.test("unistore config: a bad file is exit 1 with `unistore: <file>: <key>: expected ..., found ...`", async () => {
  await withHostTree({
    ...TREE,
    "etc/bootc/install/80-bad.toml": '[install.storage]\nunified = "enable"\n',
  }, async (root, dir) => {
    for (const args of [["config"], ["config", "--json"]]) {
      const r = await unistore("--root", dir, ...args);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, "");
      assert.equal(
        r.stderr.trimEnd(),
        `unistore: ${root.path("etc/bootc/install/80-bad.toml")}: install.storage.unified: ` +
          `expected one of "disabled", "enabled", "enabled-with-copy", found "enable"`,
      );
    }
  });
  await withHostTree(
    { "run/bootc/install/x.toml": "[install]\nkargs = [\n" },
    async (root, dir) => {
      const r = await unistore("--root", dir, "config");
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        new RegExp(
          `^unistore: ${
            root.path("run/bootc/install/x.toml")
          }: line \\d+, column \\d+: expected valid TOML`,
        ),
      );
    },
  );
});

Deno.test("unistore config: usage errors exit 2; --help exits 0", async () => {
  const extra = await unistore("config", "extra");
  assert.equal(extra.code, 2);
  assert.match(extra.stderr, /config takes no arguments, found "extra"/);
  const opt = await unistore("config", "--yaml");
  assert.equal(opt.code, 2);
  const help = await unistore("config", "--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: unistore config \[--json\]/);
  const global = await unistore("--help");
  assert.match(global.stdout, /^ {2}config\s+Show bootc's merged install configuration/m);
});
