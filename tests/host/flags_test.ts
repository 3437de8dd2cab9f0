// The unified-storage flags: composefs/bootc.json (exact bytes, atomic replacement, failures
// that leave the old file intact) and the ostree repo's [composefs] unified flag as
// `ostree config set` writes it; the binding-state table of spec §4.

import assert from "node:assert/strict";
import { isErrno } from "../../ffi/errno.ts";
import { HostFileError } from "../../lib/host/errors.ts";
import {
  classifyBinding,
  formatBootcJson,
  parseBootcJson,
  readBootcJson,
  readOstreeComposefsBound,
  readUnifiedFlags,
  writeBootcJson,
  writeOstreeComposefsBound,
} from "../../lib/host/flags.ts";
import { HostRoot } from "../../lib/host/root.ts";
import { fsTest } from "../harness/loopfs.ts";
import { runOk } from "../harness/run.ts";
import { toolTest } from "../harness/tools.ts";
import { withHostTree } from "./host_tree.ts";

// The spec's example, byte for byte (serde_json pretty, no trailing newline).
const SPEC_EXAMPLE = '{\n  "version": 1,\n  "unified": "enabled-with-copy"\n}';

Deno.test("bootc.json: bootc's exact bytes; parsing as serde does (defaults, unknown fields ignored)", () => {
  assert.equal(formatBootcJson("enabled-with-copy"), SPEC_EXAMPLE);
  assert.deepEqual(parseBootcJson(SPEC_EXAMPLE, "f"), { version: 1, unified: "enabled-with-copy" });
  assert.deepEqual(parseBootcJson("{}", "f"), { version: 1, unified: "disabled" });
  assert.deepEqual(parseBootcJson('{"unified":"enabled","future":[1]}', "f"), {
    version: 1,
    unified: "enabled",
  });
  const cases: [string, RegExp][] = [
    ["", /expected JSON, found a parse error/],
    ['{"version": 1, "unified": "enabled"', /expected JSON/],
    ["[1]", /expected a JSON object, found \[1\]/],
    [
      '{"version":1,"unified":"on"}',
      /unified: expected one of "disabled", "enabled", "enabled-with-copy", found "on"/,
    ],
    ['{"version":2,"unified":"enabled"}', /version: expected 1, found 2/],
  ];
  for (const [text, message] of cases) {
    assert.throws(
      () => parseBootcJson(text, "/r/sysroot/composefs/bootc.json"),
      (e) =>
        e instanceof HostFileError && e.path === "/r/sysroot/composefs/bootc.json" &&
        message.test(e.message),
      text,
    );
  }
});

Deno.test("bootc.json: written whole, replaced atomically (new inode), nothing left behind", async () => {
  await withHostTree({ "sysroot/composefs/meta.json": "{}" }, async (root, dir) => {
    assert.equal(readBootcJson(root), null);
    writeBootcJson(root, "enabled");
    const path = `${dir}/sysroot/composefs/bootc.json`;
    assert.equal(await Deno.readTextFile(path), formatBootcJson("enabled"));
    const first = await Deno.stat(path);
    assert.equal(first.mode! & 0o777, 0o644);
    writeBootcJson(root, "enabled-with-copy");
    assert.equal(await Deno.readTextFile(path), SPEC_EXAMPLE);
    assert.notEqual((await Deno.stat(path)).ino, first.ino); // renamed over, not rewritten
    assert.deepEqual(readBootcJson(root), { version: 1, unified: "enabled-with-copy" });
    const names = [];
    for await (const e of Deno.readDir(`${dir}/sysroot/composefs`)) names.push(e.name);
    assert.deepEqual(names.sort(), ["bootc.json", "meta.json"]);
  });
  await withHostTree({ "sysroot/ostree/repo/config": "[core]\n" }, (root) => {
    assert.throws(
      () => writeBootcJson(root, "enabled"),
      (e) => e instanceof HostFileError && e.path === root.composefsRepo,
    );
  });
  await withHostTree({ "sysroot/composefs/bootc.json": '{"version":1,' }, (root) => {
    assert.throws(
      () => readBootcJson(root),
      (e) => e instanceof HostFileError && e.path === root.bootcJson,
    );
  });
});

Deno.test("binding state: spec §4's table", () => {
  const meta = (unified: "disabled" | "enabled" | "enabled-with-copy") => ({ version: 1, unified });
  assert.equal(classifyBinding(false, null), "disabled");
  assert.equal(classifyBinding(false, meta("disabled")), "disabled");
  assert.equal(classifyBinding(true, null), "bound-only");
  assert.equal(classifyBinding(true, meta("disabled")), "bound-only");
  assert.equal(classifyBinding(false, meta("enabled")), "unified"); // participation implies binding
  assert.equal(classifyBinding(true, meta("enabled-with-copy")), "unified");
});

toolTest(
  "the repo flag as `ostree config set composefs.unified` writes it; both flags classified together",
  [{ bin: "ostree", pkg: "ostree" }],
  async (bins) => {
    const tree = { "sysroot/composefs/meta.json": "{}", "sysroot/ostree": { dir: true as const } };
    await withHostTree(tree, async (root) => {
      assert.equal(readOstreeComposefsBound(root), false); // no repo at all
      await runOk([bins.ostree, `--repo=${root.ostreeRepo}`, "init", "--mode=bare"]);
      assert.equal(readOstreeComposefsBound(root), false); // repo without the group
      assert.deepEqual(readUnifiedFlags(root), {
        ostreeComposefsBound: false,
        bootcJson: null,
        unified: "disabled",
        binding: "disabled",
      });
      await runOk([
        bins.ostree,
        `--repo=${root.ostreeRepo}`,
        "config",
        "set",
        "composefs.unified",
        "true",
      ]);
      assert.equal(readOstreeComposefsBound(root), true);
      assert.equal(readUnifiedFlags(root).binding, "bound-only");
      writeBootcJson(root, "enabled-with-copy");
      assert.deepEqual(readUnifiedFlags(root), {
        ostreeComposefsBound: true,
        bootcJson: { version: 1, unified: "enabled-with-copy" },
        unified: "enabled-with-copy",
        binding: "unified",
      });
      // ostree reads back what it wrote; GLib refuses "yes" as a boolean, so do we.
      const get = await runOk([
        bins.ostree,
        `--repo=${root.ostreeRepo}`,
        "config",
        "get",
        "composefs.unified",
      ]);
      assert.equal(get.stdout.trim(), "true");
      await runOk([
        bins.ostree,
        `--repo=${root.ostreeRepo}`,
        "config",
        "set",
        "composefs.unified",
        "yes",
      ]);
      assert.throws(
        () => readOstreeComposefsBound(root),
        (e) =>
          e instanceof HostFileError && e.path === `${root.ostreeRepo}/config` &&
          /found "yes"/.test(e.message),
      );
    });
  },
);

/** Makes `dir` hold a host root with an existing bootc.json saying `enabled`. */
async function hostWithBootcJson(dir: string): Promise<HostRoot> {
  await Deno.mkdir(`${dir}/sysroot/composefs`, { recursive: true });
  await Deno.writeTextFile(`${dir}/sysroot/composefs/bootc.json`, formatBootcJson("enabled"));
  return new HostRoot(dir);
}

async function namesIn(dir: string): Promise<string[]> {
  const names = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

fsTest(
  "bootc.json: a write into a read-only dir fails and leaves the old file intact",
  ["ext4"],
  async (fs) => {
    const root = await hostWithBootcJson(`${fs.mountpoint}/host`);
    const cfs = `${fs.mountpoint}/host/sysroot/composefs`;
    await runOk(["mount", "--bind", cfs, cfs]);
    try {
      await runOk(["mount", "-o", "remount,bind,ro", cfs]);
      assert.throws(() => writeBootcJson(root, "enabled-with-copy"), (e) => isErrno(e, "EROFS"));
      assert.equal(await Deno.readTextFile(`${cfs}/bootc.json`), formatBootcJson("enabled"));
      assert.deepEqual(await namesIn(cfs), ["bootc.json"]);
    } finally {
      await runOk(["umount", cfs]);
    }
    assert.deepEqual(readBootcJson(root), { version: 1, unified: "enabled" });
  },
  { sizeMiB: 16 },
);

fsTest(
  "bootc.json: a write onto a full filesystem fails and leaves the old file intact",
  ["ext4"],
  async (fs) => {
    const root = await hostWithBootcJson(`${fs.mountpoint}/host`);
    const cfs = `${fs.mountpoint}/host/sysroot/composefs`;
    await fillFilesystem(`${fs.mountpoint}/filler`);
    assert.throws(() => writeBootcJson(root, "enabled-with-copy"), (e) => isErrno(e, "ENOSPC"));
    assert.equal(await Deno.readTextFile(`${cfs}/bootc.json`), formatBootcJson("enabled"));
    assert.deepEqual(await namesIn(cfs), ["bootc.json"]);
    // Room again: the same write succeeds.
    await Deno.remove(`${fs.mountpoint}/filler`, { recursive: true });
    writeBootcJson(root, "enabled-with-copy");
    assert.equal(await Deno.readTextFile(`${cfs}/bootc.json`), SPEC_EXAMPLE);
  },
  { sizeMiB: 16 },
);

/** Writes into `dir` until the filesystem has no block left (root's reserve included). */
async function fillFilesystem(dir: string): Promise<void> {
  await Deno.mkdir(dir);
  const isFull = (e: unknown) =>
    e instanceof Error && /os error 28|ENOSPC|No space left/.test(e.message);
  const f = await Deno.open(`${dir}/big`, { write: true, create: true });
  try {
    for (const size of [1 << 20, 4096]) {
      const chunk = new Uint8Array(size).fill(0x55);
      try {
        for (;;) await f.write(chunk);
      } catch (e) {
        if (!isFull(e)) throw e;
      }
    }
    await f.sync().catch((e) => {
      if (!isFull(e)) throw e;
    });
  } finally {
    f.close();
  }
  // Small files take the last free blocks the big one could not.
  for (let i = 0;; i++) {
    try {
      await Deno.writeTextFile(`${dir}/small-${i}`, "x");
    } catch (e) {
      if (isFull(e)) break;
      throw e;
    }
  }
}

toolTest(
  "the repo flag as unistore writes it: `ostree config get` reads true, the rest of config kept",
  [{ bin: "ostree", pkg: "ostree" }],
  async (bins) => {
    const tree = { "sysroot/composefs/meta.json": "{}", "sysroot/ostree": { dir: true as const } };
    await withHostTree(tree, async (root) => {
      const ostree = (...a: string[]) => runOk([bins.ostree, `--repo=${root.ostreeRepo}`, ...a]);
      await ostree("init", "--mode=bare");
      await ostree("config", "set", "core.min-free-space-percent", "7");
      await writeOstreeComposefsBound(root);
      assert.equal((await ostree("config", "get", "composefs.unified")).stdout.trim(), "true");
      assert.equal(
        (await ostree("config", "get", "core.min-free-space-percent")).stdout.trim(),
        "7",
      );
      assert.equal((await ostree("config", "get", "core.mode")).stdout.trim(), "bare");
      assert.equal(readOstreeComposefsBound(root), true);
      assert.equal(readUnifiedFlags(root).binding, "bound-only");
      await writeOstreeComposefsBound(root); // idempotent
      assert.equal(readOstreeComposefsBound(root), true);
      const leftovers = [...Deno.readDirSync(root.ostreeRepo)].filter((e) =>
        e.name.startsWith(".")
      );
      assert.deepEqual(leftovers.map((e) => e.name).filter((n) => n !== ".lock"), []);
    });
  },
);
