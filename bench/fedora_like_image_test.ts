// The benchmark's image: shaped as issue 7 asks (file count, size distribution, links), the same
// on every run, and written as a layout the real tools read back exactly (GNU tar extracts what
// was planned, skopeo inspects the layout).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { toolTest } from "../tests/harness/tools.ts";
import { runOk } from "../tests/harness/run.ts";
import { BENCH_KVER, fillContent, planImage } from "./fedora_like_image.ts";
import { writeImageLayout } from "./image_layout.ts";

const MiB = 1024 * 1024;

Deno.test("the 1× image has the shape of a Fedora bootc image", () => {
  const { stats, layers } = planImage(1);
  assert.ok(stats.files >= 28_000 && stats.files <= 33_000, `files: ${stats.files}`);
  assert.ok(
    stats.contentBytes >= 1024 * MiB && stats.contentBytes <= 1200 * MiB,
    `bytes: ${stats.contentBytes}`,
  );
  assert.ok(
    stats.medianFileBytes >= 3 * 1024 && stats.medianFileBytes <= 6 * 1024,
    `median ${stats.medianFileBytes}`,
  );
  assert.ok(stats.maxFileBytes >= 20 * MiB, `max ${stats.maxFileBytes}`);
  assert.ok(stats.p99FileBytes < stats.maxFileBytes / 10, "a long tail, not a bulk of big files");
  assert.ok(stats.symlinks >= 0.05 * stats.files, `symlinks ${stats.symlinks}`);
  assert.ok(stats.hardlinks >= 0.01 * stats.files, `hardlinks ${stats.hardlinks}`);
  assert.ok(stats.inlineFiles > 0, "some files of at most 64 bytes");
  assert.equal(layers.length, 4);
  const paths = new Set(layers.flatMap((l) => l.entries.map((e) => e.path)));
  for (const p of [`usr/lib/modules/${BENCH_KVER}/vmlinuz`, "usr/lib/os-release", "bin"]) {
    assert.ok(paths.has(p), `${p} missing`);
  }
});

Deno.test("the 4× image has four times the files and bytes of the 1× image", () => {
  const one = planImage(1).stats, four = planImage(4).stats;
  assert.ok(Math.abs(four.files / one.files - 4) < 0.2, `${four.files} vs ${one.files}`);
  assert.ok(Math.abs(four.contentBytes / one.contentBytes - 4) < 0.2);
});

Deno.test("content: equal ids give equal bytes, different ids different bytes", () => {
  const a = new Uint8Array(100_000), b = new Uint8Array(100_000), c = new Uint8Array(100_000);
  fillContent(a, 1234, a.length, 1);
  fillContent(b, 1234, b.length, 1);
  fillContent(c, 1235, c.length, 1);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // Every 4 KiB block carries its id and number: no block equals another file's block.
  assert.notDeepEqual(a.subarray(4096, 8192), c.subarray(4096, 8192));
});

toolTest(
  "the layout is deterministic and GNU tar and skopeo read back what was planned",
  [{ bin: "tar", pkg: "tar" }, { bin: "skopeo", pkg: "skopeo" }],
  async (bins) => {
    const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "unistore-bench-image-" });
    try {
      const plan = planImage(0.05);
      const img = await writeImageLayout(plan, `${dir}/a`, "t");
      const again = await writeImageLayout(planImage(0.05), `${dir}/b`, "t");
      assert.deepEqual(again.diffIds, img.diffIds);
      assert.equal(again.manifestDigest, img.manifestDigest);

      const inspect = JSON.parse(
        (await runOk([bins.skopeo, "inspect", `oci:${dir}/a:t`])).stdout,
      ) as { Digest: string; Layers: string[]; Labels: Record<string, string> };
      assert.equal(inspect.Digest, img.manifestDigest);
      assert.deepEqual(inspect.Layers, img.diffIds); // uncompressed: blob digest = diff_id
      assert.equal(inspect.Labels["containers.bootc"], "1");

      // Symlinks as real tars have them (0777): ostree commit --tree=tar= checksums the tar's
      // mode but writes a 0777 link, so any other mode makes ostree fsck fail on the host.
      const listing = (await runOk([bins.tar, "-tvf", img.layerTars[0]])).stdout.split("\n");
      const links = listing.filter((l) => l.startsWith("l"));
      assert.ok(links.length > 50, `${links.length} symlinks listed`);
      for (const l of links) assert.ok(l.startsWith("lrwxrwxrwx "), l);

      // Layer 0 extracted by GNU tar: every planned entry, with its size, bytes, mode and links.
      const out = `${dir}/x`;
      await Deno.mkdir(out);
      await runOk([bins.tar, "-xpf", img.layerTars[0], "-C", out]);
      const buf = new Uint8Array(plan.stats.maxFileBytes);
      let checked = 0;
      for (const e of plan.layers[0].entries) {
        const path = `${out}/${e.path}`;
        const st = await Deno.lstat(path);
        if (e.type === "dir") assert.ok(st.isDirectory, e.path);
        if (e.type === "symlink") assert.equal(await Deno.readLink(path), e.target);
        if (e.type === "hardlink") {
          assert.equal(st.ino, (await Deno.lstat(`${out}/${e.target}`)).ino, e.path);
        }
        if (e.type !== "file") continue;
        assert.equal(st.size, e.size, e.path);
        assert.equal(st.mode! & 0o7777, e.mode, e.path);
        assert.equal(st.gid, e.gid, e.path);
        fillContent(buf, e.contentId, e.size, plan.scale);
        const want = createHash("sha256").update(buf.subarray(0, e.size)).digest("hex");
        const got = createHash("sha256").update(await Deno.readFile(path)).digest("hex");
        assert.equal(got, want, e.path);
        checked++;
      }
      assert.ok(checked > 500, `checked ${checked} files`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
  { root: true },
);
