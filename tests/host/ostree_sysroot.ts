// A real ostree physical root, built by ostree itself (DESIGN §5: fixtures by the real tools):
// `ostree admin init-fs` / `os-init` / `commit` / `admin deploy`, giving BLS entries,
// boot.B.S symlinks and deployment dirs exactly as ostree lays them out.

import { runOk } from "../harness/run.ts";

/** The ostree tools a sysroot fixture needs (deploy dirs are chattr +i: root, and chattr to undo). */
export const OSTREE_SYSROOT_TOOLS = [
  { bin: "ostree", pkg: "ostree" },
  { bin: "chattr", pkg: "e2fsprogs" },
];

/**
 * Builds `DIR/sysroot` as an ostree sysroot with `count` deployments of stateroot `os`, the
 * last deployed being the default. Returns the deployment names `<commit>.<serial>` in
 * `ostree admin status` order (default first).
 */
export async function buildOstreeSysroot(
  ostree: string,
  dir: string,
  count: number,
  os = "default",
): Promise<string[]> {
  const sysroot = `${dir}/sysroot`;
  const tree = await Deno.makeTempDir({ prefix: "unistore-ostree-tree-" });
  try {
    await Deno.mkdir(`${tree}/usr/lib/modules/6.1.0-test`, { recursive: true });
    await Deno.mkdir(`${tree}/usr/etc`, { recursive: true });
    await Deno.writeTextFile(`${tree}/usr/lib/modules/6.1.0-test/vmlinuz`, "kernel\n");
    await Deno.writeTextFile(`${tree}/usr/lib/modules/6.1.0-test/initramfs.img`, "initrd\n");
    // ostree reads the deployment's /etc/os-release to title the BLS entry.
    await Deno.writeTextFile(`${tree}/usr/etc/os-release`, 'ID=testos\nNAME="Test OS"\n');
    await Deno.mkdir(sysroot, { recursive: true });
    await runOk([ostree, "admin", "init-fs", "--modern", sysroot]);
    await runOk([ostree, "admin", "os-init", `--sysroot=${sysroot}`, os]);
    for (let i = 0; i < count; i++) {
      await Deno.writeTextFile(`${tree}/usr/etc/generation`, `${i}\n`);
      await runOk([
        ostree,
        `--repo=${sysroot}/ostree/repo`,
        "commit",
        "-b",
        "test",
        `--tree=dir=${tree}`,
        "--no-xattrs",
        "-s",
        `generation ${i}`,
      ]);
      await runOk([
        ostree,
        "admin",
        "deploy",
        `--sysroot=${sysroot}`,
        `--os=${os}`,
        "--karg=root=LABEL=root",
        "--karg=rw",
        "--retain",
        "test",
      ]);
    }
    const status = await runOk([ostree, "admin", "status", `--sysroot=${sysroot}`]);
    // Lines like "  default <csum>.<serial>" (a "* " marks the booted one on a real host).
    return [...status.stdout.matchAll(/^[* ] \S+ ([0-9a-f]{64}\.\d+)/gm)].map((m) => m[1]);
  } finally {
    await Deno.remove(tree, { recursive: true });
  }
}
