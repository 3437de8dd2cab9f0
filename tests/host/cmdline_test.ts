// Kernel command line: the kernel's own splitting rules, and the ostree= / composefs= kargs.

import assert from "node:assert/strict";
import {
  KernelCmdline,
  parseComposefsKarg,
  parseOstreeKarg,
  readKernelCmdline,
  splitCmdline,
} from "../../lib/host/cmdline.ts";
import { HostFileError } from "../../lib/host/errors.ts";
import { fakeDigest, withHostTree } from "./host_tree.ts";

const CSUM = "ff6d610a0f0d84602d9e2878eb3a16a850f2d31faa2f14108006723892a17899";
const SHA256_HEX = "8b7df143d91c716ecfa5fc1730022f6b421b05cedee8fd52b1fc65a96030ad52";

Deno.test("splitting follows the kernel's next_arg(): whitespace, quotes, first '='", () => {
  const cases: [string, [string, string | null][]][] = [
    ["", []],
    ["  \n", []],
    ["rw quiet\n", [["rw", null], ["quiet", null]]],
    ["root=UUID=abc ro", [["root", "UUID=abc"], ["ro", null]]],
    // quotes around the value are removed; whitespace inside them is kept
    ['console="tty0 ttyS0" x', [["console", "tty0 ttyS0"], ["x", null]]],
    // quotes around the whole parameter are removed too
    ['"dyndbg=file a.c +p" b', [["dyndbg", "file a.c +p"], ["b", null]]],
    ['"flag"', [["flag", null]]],
    // quotes in the middle are part of the value (there are no escapes)
    ['a=x"y z"w', [["a", 'x"y z"w']]],
    ['empty= e2=""', [["empty", ""], ["e2", ""]]],
    ["tab\tsep\n", [["tab", null], ["sep", null]]],
  ];
  for (const [text, want] of cases) {
    assert.deepEqual(
      splitCmdline(text).map((p) => [p.key, p.value]),
      want,
      JSON.stringify(text),
    );
  }
});

Deno.test("lookups treat - and _ alike; first occurrence wins; getAll keeps order", () => {
  const c = KernelCmdline.parse("rd.break log_buf_len=1M foo=1 foo=2 bare");
  assert.equal(c.get("log-buf-len"), "1M");
  assert.equal(c.get("foo"), "1");
  assert.deepEqual(c.getAll("foo"), ["1", "2"]);
  assert.equal(c.get("bare"), null);
  assert.equal(c.get("absent"), undefined);
  assert.equal(c.has("rd.break"), true);
});

Deno.test("ostree= karg: parsed, and refused when malformed with the source named", () => {
  const c = KernelCmdline.parse(
    `BOOT_IMAGE=(hd0)/vmlinuz root=LABEL=root rw ostree=/ostree/boot.1/fedora/${CSUM}/0`,
  );
  assert.deepEqual(c.ostree(), {
    path: `/ostree/boot.1/fedora/${CSUM}/0`,
    bootversion: 1,
    stateroot: "fedora",
    bootcsum: CSUM,
    bootserial: 0,
  });
  assert.equal(KernelCmdline.parse("rw").ostree(), null);
  for (
    const bad of [
      "/ostree/boot.2/os/x/0",
      `/ostree/boot.0/os/${CSUM}`,
      `ostree/boot.0/os/${CSUM}/0`,
    ]
  ) {
    assert.equal(parseOstreeKarg(bad), null, bad);
  }
  assert.throws(
    () => KernelCmdline.parse("ostree=/ostree/boot.0/x", "/r/proc/cmdline").ostree(),
    (e) =>
      e instanceof HostFileError && e.path === "/r/proc/cmdline" &&
      /found "\/ostree\/boot.0\/x"/.test(e.message),
  );
});

Deno.test("composefs kargs: composefs=, composefs=?, composefs.digest= (first), sha256 and sha512", () => {
  const id = fakeDigest("ab");
  let c = KernelCmdline.parse(`root=UUID=abc123 rw composefs=${id}`);
  assert.deepEqual(c.composefs(), { karg: "composefs", digest: id, insecure: false, format: null });
  c = KernelCmdline.parse(`composefs=?${SHA256_HEX} root=UUID=abc123 quiet`);
  assert.deepEqual(c.composefs(), {
    karg: "composefs",
    digest: SHA256_HEX,
    insecure: true,
    format: null,
  });
  // composefs.digest= (V1 EROFS) is checked before composefs= (V2), as composefs-boot does.
  const v1 = fakeDigest("12");
  c = KernelCmdline.parse(`composefs=${id} composefs.digest=v1-sha512-12:${v1}`);
  assert.deepEqual(c.composefs(), {
    karg: "composefs.digest",
    digest: v1,
    insecure: false,
    format: "v1-sha512-12",
  });
  assert.equal(c.composefsV2()?.digest, id);
  assert.deepEqual(c.composefsDigests(), [v1, id]);
  assert.deepEqual(parseComposefsKarg("composefs.digest", `?${SHA256_HEX.toUpperCase()}`), {
    karg: "composefs.digest",
    digest: SHA256_HEX,
    insecure: true,
    format: null,
  });
  // Similar names are not the karg (bootc's test_find_in_cmdline).
  assert.equal(KernelCmdline.parse(`composefs_backup=${id} root=x`).composefs(), null);
  assert.equal(KernelCmdline.parse("root=UUID=abc rw quiet").composefs(), null);
  for (
    const bad of [
      "composefs=notahex",
      `composefs=${id.slice(1)}`,
      "composefs",
      `composefs.digest=v1-sha512-12:${SHA256_HEX}`,
    ]
  ) {
    assert.throws(
      () => KernelCmdline.parse(bad, "entry.conf: options").composefs(),
      (e) => e instanceof HostFileError && e.path === "entry.conf: options",
      bad,
    );
  }
});

Deno.test("the host's cmdline is DIR/proc/cmdline; absent means not booted", async () => {
  await withHostTree(
    { "proc/cmdline": `quiet ostree=/ostree/boot.0/default/${CSUM}/1\n` },
    (root) => {
      const c = readKernelCmdline(root);
      assert.equal(c?.source, root.procCmdline);
      assert.equal(c?.ostree()?.bootserial, 1);
    },
  );
  await withHostTree({}, (root) => assert.equal(readKernelCmdline(root), null));
});

Deno.test("this machine's /proc/cmdline parses (whatever it holds)", () => {
  const text = Deno.readTextFileSync("/proc/cmdline");
  const c = KernelCmdline.parse(text, "/proc/cmdline");
  // Re-joining the parameters gives back the unquoted words of the real line.
  const plain = text.trim().split(/\s+/).filter((w) => !w.includes('"'));
  for (const w of plain) {
    const eq = w.indexOf("=");
    const key = eq < 0 ? w : w.slice(0, eq);
    assert.ok(c.has(key), `${key} missing from ${JSON.stringify(c.params)}`);
  }
});
