// Broken files in the stores of a unified host, and bad TOML in the install config: the commands
// that read them fail with exit 1 (fsck: its own codes) and an error that names the broken file,
// never crash (no stack, no TypeError), and change nothing they should not. Each case damages a
// fresh copy of one unified ostree host (all three stores populated by `set-unified full`).

import assert from "node:assert/strict";
import { bigDataFileName } from "../../lib/stores/cstorage/mod.ts";
import { hostFixtureTest } from "../fixtures/host/mod.ts";
import { CRASH_TOOLS, type CrashHost, HostTemplate } from "./crash_host.ts";
import { judgeHost } from "./store_checks.ts";

/** One way to break a host. */
interface BrokenCase {
  name: string;
  /** Damages `host`; returns the path of what it broke (errors must name it). */
  breakIt(host: CrashHost, ids: { image: string; layer: string }): Promise<string>;
  /** Commands that read the broken file: each must refuse naming it (exit 1, fsck 4 or 8). */
  refuse: string[][];
  /** What the error must name instead of the full path (a file name, a line). */
  names?: (path: string) => RegExp;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

async function truncateHalf(path: string): Promise<string> {
  const size = (await Deno.stat(path)).size;
  await Deno.truncate(path, Math.floor(size / 2));
  return path;
}

/** The object file a composefs stream symlink points at. */
async function streamObject(host: CrashHost, stream: string): Promise<string> {
  return await Deno.realPath(`${host.composefs}/streams/${stream}`);
}

async function manifestStream(host: CrashHost): Promise<string> {
  for await (const e of Deno.readDir(`${host.composefs}/streams`)) {
    if (e.name.startsWith("oci-manifest-")) return e.name;
  }
  throw new Error("no manifest stream");
}

/**
 * Truncates the object of every layer stream and returns the first one's path. Every one:
 * which layer `readDir` lists first depends on the layers' digests, and one of an image the
 * command does not read would not be noticed (rightly).
 */
async function truncateLayerStreams(host: CrashHost): Promise<string> {
  const objects: string[] = [];
  for await (const e of Deno.readDir(`${host.composefs}/streams`)) {
    if (e.name.startsWith("oci-layer-")) objects.push(await streamObject(host, e.name));
  }
  if (objects.length === 0) throw new Error("no layer stream");
  for (const o of objects) await truncateHalf(o);
  return objects[0];
}

const STATUS = ["status", "--format", "json"];
const LIST = ["image", "list"];
const FULL = ["set-unified", "full"];
const FSCK = ["fsck", "images"];

const CASES: BrokenCase[] = [
  {
    name: "containers-storage layers.json truncated",
    breakIt: (h) => truncateHalf(`${h.store}/overlay-layers/layers.json`),
    refuse: [FSCK, LIST, FULL, [
      "image",
      "import",
      "containers-storage:IMAGE",
      "--to",
      "composefs",
    ]],
  },
  {
    name: "containers-storage images.json truncated",
    breakIt: (h) => truncateHalf(`${h.store}/overlay-images/images.json`),
    refuse: [LIST, FULL],
  },
  {
    name: "containers-storage images.json of the wrong shape",
    breakIt: async (h) => {
      const path = `${h.store}/overlay-images/images.json`;
      await Deno.writeTextFile(path, '[{"id": 42}, "x"]');
      return path;
    },
    refuse: [LIST, FULL],
  },
  {
    name: "containers-storage image config (big data) truncated",
    breakIt: (h, ids) =>
      truncateHalf(
        `${h.store}/overlay-images/${ids.image}/${bigDataFileName(`sha256:${ids.image}`)}`,
      ),
    refuse: [["image", "import", "containers-storage:IMAGE", "--to", "composefs"]],
    names: () => /sha256:[0-9a-f]{12}|config/,
  },
  {
    name: "containers-storage tar-split truncated",
    breakIt: (h, ids) => truncateHalf(`${h.store}/overlay-layers/${ids.layer}.tar-split.gz`),
    refuse: [["fsck", "images", "--deep"]],
    names: (p) => new RegExp(`${escape(p)}|tar-split|${p.split("/").pop()!.slice(0, 12)}`),
  },
  {
    name: "composefs manifest splitstream truncated",
    breakIt: async (h) => truncateHalf(await streamObject(h, await manifestStream(h))),
    refuse: [LIST, FULL, FSCK],
    names: () => /oci-manifest-sha256:|objects\/[0-9a-f]{2}\//,
  },
  {
    name: "composefs layer splitstreams truncated",
    breakIt: truncateLayerStreams,
    refuse: [["image", "import", "composefs:IMAGE", "--to", "ostree"]],
    names: () => /oci-layer-sha256:|objects\/[0-9a-f]{2}\//,
  },
  {
    name: "composefs meta.json not JSON",
    breakIt: async (h) => {
      const path = `${h.composefs}/meta.json`;
      await Deno.writeTextFile(path, '{"version": 1, "algorithm": ');
      return path;
    },
    refuse: [LIST, FULL, FSCK],
  },
  {
    name: "composefs stream symlink to a missing object",
    breakIt: async (h) => {
      const object = await streamObject(h, await manifestStream(h));
      await Deno.remove(object);
      return `${h.composefs}/streams/${await manifestStream(h)}`;
    },
    refuse: [LIST],
    names: (p) => new RegExp(`${escape(p.split("/").pop()!)}|missing`),
  },
  {
    name: "ostree repo config not a key file",
    breakIt: async (h) => {
      const path = `${h.repo}/config`;
      await Deno.writeTextFile(path, "[core\nrepo_version=1\n");
      return path;
    },
    refuse: [STATUS, LIST, FULL],
  },
  {
    name: "bootc.json not JSON",
    breakIt: async (h) => {
      await Deno.writeTextFile(h.bootcJson, '{"version": 1, "unified": ');
      return h.bootcJson;
    },
    refuse: [STATUS, FULL],
  },
  // --- install config (bootc's TOML) ---------------------------------------------------------
  ...[
    ["a TOML syntax error", '[install.storage\nunified = "enabled"\n', /line 1/],
    ["invalid UTF-8 in TOML", new Uint8Array([0x5b, 0xff, 0xfe, 0x5d, 0x0a]), /UTF-8|line 1/],
    [
      "a duplicate TOML key",
      '[install.storage]\nunified = "enabled"\nunified = "disabled"\n',
      /line 3|unified/,
    ],
    [
      "a TOML value of the wrong type",
      "[install.storage]\nunified = 3\n",
      /install\.storage\.unified/,
    ],
  ].map(([what, text, names]) => ({
    name: `install config with ${what}`,
    breakIt: async (h: CrashHost) => {
      const dir = `${h.root}/usr/lib/bootc/install`;
      await Deno.mkdir(dir, { recursive: true });
      const path = `${dir}/50-broken.toml`;
      if (typeof text === "string") await Deno.writeTextFile(path, text);
      else await Deno.writeFile(path, text as Uint8Array);
      return path;
    },
    refuse: [["config"], ["apply-config"]],
    names: (p: string) => new RegExp(`${escape(p)}.*(${(names as RegExp).source})`),
  })),
];

/** An exit that says the command refused (fsck: problems 4, operational error 8). */
function refused(args: string[], code: number): boolean {
  return args[0] === "fsck" ? code === 4 || code === 8 : code === 1;
}

function crashSign(text: string): string | null {
  if (/^\s+at /m.test(text)) return "a stack trace";
  if (/TypeError|RangeError|ReferenceError|is not a function|\[object Object\]/.test(text)) {
    return "an internal error";
  }
  return null;
}

hostFixtureTest(
  "broken store files and bad TOML: clear errors naming the file, no crash",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins);
    const unified = await template.asHost().run(FULL);
    assert.equal(unified.code, 0, unified.stderr + unified.stdout);
    await template.asHost().cleanupAfterKill();
    const before = await judgeHost(template.asHost());
    const image = before.images.find((i) => i.names.includes(template.imageNames[1]))!.id;
    const layers = JSON.parse(
      await Deno.readTextFile(`${template.asHost().store}/overlay-layers/layers.json`),
    ) as { id: string }[];
    const ids = { image, layer: layers[0].id };

    const failures: string[] = [];
    const table: string[] = [];
    for (const c of CASES) {
      const host = await template.copy(c.name);
      try {
        const broken = await c.breakIt(host, ids);
        const names = c.names?.(broken) ?? new RegExp(escape(broken));
        for (const cmd of c.refuse) {
          const args = cmd.map((a) =>
            a.replace("IMAGE", a.startsWith("composefs:") ? template.imageNames[1] : image)
          );
          const r = await host.run(args);
          const out = r.stderr + r.stdout;
          const said = out.split("\n").find((l) => /unistore:|FAIL|error/i.test(l)) ?? "";
          table.push(`| ${c.name} | ${args[0]} ${args[1] ?? ""} | ${r.code} | ${said.trim()} |`);
          const fail = (what: string) =>
            failures.push(`${c.name}: unistore ${args.join(" ")}: ${what}\n${out}`);
          if (!refused(args, r.code)) {
            fail(`exit ${r.code} (signal ${r.signal}), expected a refusal`);
          }
          const crash = crashSign(out);
          if (crash) fail(`output shows ${crash}`);
          if (!names.test(out)) fail(`output does not name ${names}`);
        }
        // The commands that refused changed nothing a later repair would need.
        if (c.name !== "bootc.json not JSON") {
          const flag = await Deno.readTextFile(host.bootcJson);
          if (!flag.includes('"unified": "enabled"')) {
            failures.push(`${c.name}: bootc.json changed`);
          }
        }
      } catch (e) {
        failures.push(`${c.name}: case crashed: ${(e as Error).stack}`);
      } finally {
        await host.remove();
      }
    }
    console.log(`| case | command | exit | says |\n|---|---|---|---|\n${table.join("\n")}`);
    assert.deepEqual(failures, []);
  },
);
