// Hostile OCI layouts (hostile_layout.ts) imported with `unistore image import oci:…` into each
// store: `--to composefs`, then `--to composefs,containers-storage` and `--to composefs,ostree`.
// Each run exits 0 (the entry was stored safely inside the store) or 1 with one clear line that
// names what was wrong (no stack, no TypeError); what must be refused is; nothing outside the
// stores changes (the `outside` directory, the host tree outside the stores, the inode a
// hardlink aims at); and every store still passes its own checks.

import assert from "node:assert/strict";
import { hostFixtureTest } from "../fixtures/host/mod.ts";
import { runOk } from "../harness/run.ts";
import { CRASH_TOOLS, CrashHost } from "./crash_host.ts";
import { type Expect, HOSTILE_CASES, HOSTILE_TAG } from "./hostile_layout.ts";
import { judgeHost } from "./store_checks.ts";

/** The stores below a host root: what an import may change. */
const STORE_DIRS = ["sysroot/composefs", "sysroot/ostree/repo", "sysroot/ostree/bootc"];

/** Every path below `dir` with its mode, and size and link count for non-dirs (`skip` left out). */
function snapshot(dir: string, skip: readonly string[] = []): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of Deno.readDirSync(rel ? `${dir}/${rel}` : dir)) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (skip.includes(path)) continue;
      const st = Deno.lstatSync(`${dir}/${path}`);
      const mode = st.mode?.toString(8);
      // A directory's size and link count change with the stores made inside it: not compared.
      out.push(st.isDirectory ? `${path} d ${mode}` : `${path} ${st.size} ${mode} ${st.nlink}`);
      if (e.isDirectory) walk(path);
    }
  };
  walk("");
  return out.sort();
}

/** One line of stderr that says what went wrong, and no sign of a crash. */
function unclear(stderr: string, names: RegExp): string | null {
  if (!/^unistore: \S/.test(stderr)) return `does not start with "unistore: "`;
  if (/^\s+at /m.test(stderr)) return "has a stack trace";
  if (/TypeError|RangeError|ReferenceError|is not a function|\[object Object\]/.test(stderr)) {
    return "shows an internal error";
  }
  if (!names.test(stderr)) return `does not name ${names}`;
  return null;
}

hostFixtureTest(
  "hostile OCI layouts are refused or stored inside the stores, never outside",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    const base = fs.mountpoint;
    const outside = `${base}/outside`;
    await Deno.mkdir(outside);
    await Deno.writeTextFile(`${outside}/secret`, "secret\n");
    const template = `${base}/template`;
    await Deno.mkdir(`${template}/sysroot`, { recursive: true });
    await runOk([bins.ostree, "admin", "init-fs", "--modern", `${template}/sysroot`]);
    const hostTree = snapshot(template);
    const outsideTree = snapshot(outside);

    const failures: string[] = [];
    const table: string[] = [];
    for (const [i, c] of HOSTILE_CASES.entries()) {
      const fail = (what: string) => failures.push(`${c.name}: ${what}`);
      const layout = `${base}/layouts/${i}`;
      await c.build(layout, outside);
      const root = `${base}/case-${i}`;
      await runOk(["cp", "-a", template, root]);
      const host = new CrashHost(root, bins);
      const row: string[] = [];
      try {
        let refusedByHub = false;
        for (
          const [target, expect] of [
            ["composefs", c.composefs],
            ["composefs,containers-storage", c.cstorage],
            ["composefs,ostree", c.ostree],
          ] as [string, Expect][]
        ) {
          const r = await host.run([
            "image",
            "import",
            `oci:${layout}:${HOSTILE_TAG}`,
            "--to",
            target,
          ]);
          const line = r.stderr.trim().split("\n")[0] ?? "";
          row.push(
            r.code === 0 ? "stored" : `refused: ${line.slice(10, 170).replaceAll(base, "…")}`,
          );
          if (r.code !== 0 && r.code !== 1) {
            fail(`--to ${target}: exit ${r.code} (signal ${r.signal}): ${r.stderr}`);
            continue;
          }
          if (r.code === 1) {
            const why = unclear(r.stderr, c.names);
            if (why) fail(`--to ${target}: the error ${why}: ${r.stderr}`);
          }
          if (target === "composefs") refusedByHub = r.code === 1;
          else if (refusedByHub && r.code === 0) {
            fail(`--to ${target} stored what composefs refused`);
          }
          if (expect === "refuse" && r.code === 0) fail(`--to ${target} stored it: ${r.stdout}`);
        }
        await host.cleanupAfterKill();
        // Nothing outside the stores changed, nothing appeared outside the host.
        const tree = snapshot(root, STORE_DIRS);
        const inStore = (l: string) =>
          STORE_DIRS.some((d) => l.startsWith(`${d} `) || l.startsWith(`${d}/`));
        const expected = hostTree.filter((l) => !inStore(l));
        const added = tree.filter((l) => !expected.includes(l));
        const gone = expected.filter((l) => !tree.includes(l));
        if (added.length + gone.length > 0) {
          fail(
            `the host tree outside the stores changed: new ${added.join(", ")}; gone ${
              gone.join(", ")
            }`,
          );
        }
        if (JSON.stringify(snapshot(outside)) !== JSON.stringify(outsideTree)) {
          fail(`${outside} changed: ${snapshot(outside).join(", ")}`);
        }
        const v = await judgeHost(host);
        v.problems.forEach((p) => fail(`store check: ${p}`));
      } catch (e) {
        fail(`case crashed: ${(e as Error).stack}`);
      } finally {
        await host.remove();
      }
      table.push(`| ${c.name} | ${row.join(" | ")} |`);
    }
    console.log(
      "| case | --to composefs | + containers-storage | + ostree |\n|---|---|---|---|\n" +
        table.join("\n"),
    );
    assert.deepEqual(failures, []);
  },
);
