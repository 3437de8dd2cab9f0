// The command line as a user meets it: exit codes, help, version, and the
// internals subcommands, run as a real process.

import assert from "node:assert/strict";
import { fsTest } from "../harness/loopfs.ts";
import { run } from "../harness/run.ts";
import { toolTest } from "../harness/tools.ts";
import { VERSION } from "../../lib/version.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

function unistore(...args: string[]) {
  return run([Deno.execPath(), "run", "-A", "--quiet", MAIN, ...args]);
}

Deno.test("--help lists the commands and exits 0; no command is a usage error (2)", async () => {
  const help = await unistore("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^unistore \d+\.\d+\.\d+: /);
  assert.match(help.stdout, /internals/);
  assert.match(help.stdout, /--root DIR/);
  const none = await unistore();
  assert.equal(none.code, 2);
  assert.match(none.stderr, /usage: unistore/);
});

Deno.test("--version agrees with deno.json", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  assert.equal(VERSION, config.version);
  const r = await unistore("--version");
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), `unistore ${config.version}`);
});

Deno.test("unknown commands, subcommands and options are usage errors naming the culprit", async () => {
  const cmd = await unistore("frobnicate");
  assert.equal(cmd.code, 2);
  assert.match(cmd.stderr, /unknown command "frobnicate"/);
  const sub = await unistore("internals", "nope");
  assert.equal(sub.code, 2);
  assert.match(sub.stderr, /unknown internals subcommand "nope"/);
  const opt = await unistore("internals", "fsverity", "--bogus", "x");
  assert.equal(opt.code, 2);
  assert.match(opt.stderr, /--bogus/);
  const alg = await unistore("internals", "fsverity", MAIN, "--alg", "md5");
  assert.equal(alg.code, 2);
  assert.match(alg.stderr, /expected sha256 or sha512, found "md5"/);
  const root = await unistore("--root");
  assert.equal(root.code, 2);
  assert.match(root.stderr, /--root needs a value/);
});

Deno.test("a missing file is an operational error (1) naming the path", async () => {
  const r = await unistore("internals", "fsverity", "/nonexistent/file");
  assert.equal(r.code, 1);
  assert.match(r.stderr, /"\/nonexistent\/file": ENOENT/);
});

toolTest(
  "internals fsverity agrees with `fsverity digest` for both algorithms",
  [{ bin: "fsverity", pkg: "fsverity" }],
  async (bins) => {
    const dir = await Deno.makeTempDir();
    try {
      const sizes = [0, 1, 64, 65, 4096, 4097, 128 * 4096 + 1, 3 * 1024 * 1024 + 5];
      for (const size of sizes) {
        const path = `${dir}/f${size}`;
        const data = new Uint8Array(size);
        for (let i = 0; i < size; i++) data[i] = (i * 31 + size) & 0xff;
        await Deno.writeFile(path, data);
        for (const alg of ["sha256", "sha512"]) {
          const ours = await unistore("internals", "fsverity", path, "--alg", alg);
          assert.equal(ours.code, 0, ours.stderr);
          const theirs = await run([
            bins.fsverity,
            "digest",
            `--hash-alg=${alg}`,
            "--block-size=4096",
            path,
          ]);
          assert.equal(theirs.code, 0, theirs.stderr);
          assert.equal(
            `${alg}:${ours.stdout.trim()} ${path}`,
            theirs.stdout.trim(),
            `size ${size}`,
          );
        }
      }
      const dflt = await unistore("internals", "fsverity", `${dir}/f65`);
      assert.equal(dflt.stdout.trim().length, 128, "the default is sha512");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

fsTest(
  "internals probe-reflink: exit 0 and stable JSON where reflinks work",
  ["xfs", "btrfs"],
  async (fs) => {
    const r = await unistore("internals", "probe-reflink", fs.mountpoint, "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      path: fs.mountpoint,
      supported: true,
      filesystem: fs.kind,
      code: null,
      reason: "reflinks work",
    });
    const human = await unistore("internals", "probe-reflink", fs.mountpoint);
    assert.equal(human.stdout.trim(), `${fs.mountpoint}: reflinks work (${fs.kind})`);
  },
);

fsTest("internals probe-reflink: exit 1 and the reason on ext4; a file probes its directory", [
  "ext4",
], async (fs) => {
  await Deno.writeTextFile(`${fs.mountpoint}/file`, "x");
  const r = await unistore("internals", "probe-reflink", `${fs.mountpoint}/file`, "--json");
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), {
    path: `${fs.mountpoint}/file`,
    supported: false,
    filesystem: "ext4",
    code: "EOPNOTSUPP",
    reason: "the filesystem does not support reflinks",
  });
  const entries = [...Deno.readDirSync(fs.mountpoint)].map((e) => e.name).sort();
  assert.deepEqual(entries, ["file", "lost+found"], "the probe left nothing behind");
});

toolTest(
  "internals ostree-checksum agrees with `ostree ls -C` for a file and a symlink",
  [{ bin: "ostree", pkg: "ostree" }],
  async (bins) => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.mkdir(`${dir}/tree`);
      await Deno.writeTextFile(`${dir}/tree/file`, "x".repeat(65));
      await Deno.chmod(`${dir}/tree/file`, 0o4755);
      await Deno.symlink("../etc/passwd", `${dir}/tree/link`);
      const repo = `${dir}/repo`;
      const ostree = (...a: string[]) => run([bins.ostree, `--repo=${repo}`, ...a]);
      assert.equal((await ostree("init", "--mode=bare")).code, 0);
      const c = await ostree("commit", "--branch=t", `--tree=dir=${dir}/tree`);
      assert.equal(c.code, 0, c.stderr);
      const ls = await ostree("ls", "-C", "t", "/file", "/link");
      for (const name of ["file", "link"]) {
        const ours = await unistore("internals", "ostree-checksum", `${dir}/tree/${name}`);
        assert.equal(ours.code, 0, ours.stderr);
        // `ostree ls -C` lines: mode uid gid size checksum path [-> target]
        const line = ls.stdout.split("\n").find((l) => l.includes(`/${name}`))!;
        assert.equal(line.trim().split(/\s+/)[4], ours.stdout.trim(), name);
      }
      const dirRefused = await unistore("internals", "ostree-checksum", `${dir}/tree`);
      assert.equal(dirRefused.code, 1);
      assert.match(dirRefused.stderr, /not a regular file or symlink/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
