// Two writers at once. Two `set-unified full` processes started together (and a little apart)
// on one host, ostree and native composefs: both exit 0 (the second may wait on a store's lock),
// and the host ends as one uninterrupted run leaves it. Then unistore writing bootc's
// containers-storage while podman works on the same store (a `podman pull` of another image and
// a `podman images` loop): c/storage's locks serialize them; afterwards podman lists every
// image, skopeo copies each one (re-verifying every layer), and unistore's own deep check passes.

import assert from "node:assert/strict";
import { buildBootableImage, hostFixtureTest } from "../fixtures/host/mod.ts";
import { runrootFor } from "../../lib/pipeline/podman_pull.ts";
import { CRASH_TOOLS, type CrashHost, HostTemplate, unistore } from "./crash_host.ts";
import { judgeHost, judgeWithPodman } from "./store_checks.ts";

/** What one uninterrupted run leaves, to compare the racing runs' result with. */
async function uninterrupted(template: HostTemplate, args: string[]) {
  const ref = await template.copy("reference");
  try {
    const r = await ref.run(args);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const v = await judgeHost(ref);
    assert.deepEqual(v.problems, []);
    return v;
  } finally {
    await ref.remove();
  }
}

async function twoAtOnce(template: HostTemplate, args: string[], gapsMs: number[]) {
  const expected = await uninterrupted(template, args);
  for (const gap of gapsMs) {
    const host = await template.copy(`race-${gap}`);
    try {
      const first = host.run(args);
      await new Promise((r) => setTimeout(r, gap));
      const [a, b] = await Promise.all([first, host.run(args)]);
      await host.cleanupAfterKill();
      assert.equal(a.code, 0, `first run (gap ${gap} ms): ${a.stderr}${a.stdout}`);
      assert.equal(b.code, 0, `second run (gap ${gap} ms): ${b.stderr}${b.stdout}`);
      const v = await judgeHost(host);
      assert.deepEqual(v.problems, [], `gap ${gap} ms`);
      assert.deepEqual(v.bootcJson, expected.bootcJson);
      assert.deepEqual(v.images.map((i) => i.id).sort(), expected.images.map((i) => i.id).sort());
      assert.deepEqual(v.composefsTags.sort(), expected.composefsTags.sort());
      assert.deepEqual(v.incompleteLayers, []);
      assert.deepEqual(await judgeWithPodman(host, v.images.map((i) => i.id)), []);
    } finally {
      await host.remove();
    }
  }
}

hostFixtureTest(
  "two set-unified full at once on an ostree host: both complete, one consistent host",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins);
    await twoAtOnce(template, ["set-unified", "full"], [0, 150, 400]);
  },
);

hostFixtureTest(
  "two set-unified full at once on a composefs host: both complete, one consistent host",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins, { kind: "composefs" });
    await twoAtOnce(template, ["set-unified", "full", "--no-pull"], [0, 100, 250]);
  },
);

/** Runs `podman images` over and over until `stop` resolves; returns how many runs failed. */
async function podmanImagesLoop(host: CrashHost, stop: Promise<unknown>) {
  let done = false;
  stop.finally(() => (done = true));
  const failures: string[] = [];
  let runs = 0;
  while (!done) {
    runs++;
    try {
      await podmanRaw(host, "images", "--quiet");
    } catch (e) {
      failures.push((e as Error).message);
    }
  }
  return { runs, failures };
}

/** podman on the host's store with its run root, without the cleanup CrashHost.podman does. */
async function podmanRaw(host: CrashHost, ...args: string[]) {
  const runroot = await runrootFor(host.store);
  const cmd = new Deno.Command(host.bins.podman, {
    args: ["--root", host.store, "--runroot", runroot, "--storage-driver", "overlay", ...args],
    env: { TMPDIR: runroot },
    stdout: "piped",
    stderr: "piped",
  });
  const out = await cmd.output();
  if (!out.success) {
    throw new Error(`podman ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/**
 * `set-unified full` (`args`) on copies of `template` while podman pulls a third image into the
 * same store and lists images in a loop, twice; then every judge on all three images.
 */
async function besidePodman(template: HostTemplate, args: string[], base: string) {
  const layout = `${base}/oci`;
  await buildBootableImage(layout, { tag: "other", version: "9", runnable: { bulkMiB: 4 } });
  await template.registry.push(layout, "other", "unistore/other:9");
  const other = `${template.registry.host}/unistore/other:9`;

  for (let round = 0; round < 2; round++) {
    const host = await template.copy(`beside-podman-${round}`);
    try {
      await Deno.mkdir(host.store, { recursive: true, mode: 0o700 });
      await Deno.mkdir(await runrootFor(host.store), { recursive: true, mode: 0o700 });
      const unify = unistore(host.root, args);
      const pull = podmanRaw(host, "pull", "--quiet", "--tls-verify=false", other);
      const loop = podmanImagesLoop(host, Promise.allSettled([unify, pull]));
      const [u, p, l] = await Promise.allSettled([unify, pull, loop]);
      assert.equal(u.status, "fulfilled");
      assert.equal(u.value.code, 0, u.value.stderr + u.value.stdout);
      assert.equal(p.status, "fulfilled", p.status === "rejected" ? String(p.reason) : "");
      assert.equal(l.status, "fulfilled");
      assert.deepEqual(l.value.failures, [], `${l.value.runs} podman images runs`);
      await host.cleanupAfterKill();

      const v = await judgeHost(host);
      assert.deepEqual(v.problems, []);
      assert.equal(v.images.length, 3, JSON.stringify(v.images));
      assert.deepEqual(v.bootcJson, { version: 1, unified: "enabled" });
      assert.deepEqual(await judgeWithPodman(host, v.images.map((i) => i.id)), []);
    } finally {
      await host.remove();
    }
  }
}

hostFixtureTest(
  "unistore rebuilds containers-storage while podman pulls and lists: nothing corrupted",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins, { kind: "composefs" });
    await besidePodman(template, ["set-unified", "full", "--no-pull"], fs.mountpoint);
  },
);

hostFixtureTest(
  "unistore pulls into containers-storage while podman pulls and lists: nothing corrupted",
  "xfs",
  CRASH_TOOLS,
  async (fs, bins) => {
    await using template = await HostTemplate.build(fs.mountpoint, bins);
    await besidePodman(template, ["set-unified", "full"], fs.mountpoint);
  },
);
