/**
 * The merged tree: OCI layer semantics (whiteouts and opaque directories hide only what lower
 * layers had; hardlinks keep their inode when the target later changes; type changes; implicit
 * parents; raw names), the entry stream it hands to store writers (hardlink anchors, include,
 * identical-file sharing), and the layer-stream reader: from a real composefs repository every
 * file's object is the exact payload of the tar entry, and streams whose chunks do not line up
 * with the tar are refused.
 */

import assert from "node:assert/strict";
import { close, pread } from "../../ffi/fs.ts";
import { LayerStreamError, MergedTreeError } from "../../lib/pipeline/errors.ts";
import { layerEntries, type LayerEntry } from "../../lib/pipeline/layer_entries.ts";
import { type MergedEntry, MergedTree } from "../../lib/pipeline/merged_tree.ts";
import { importOciImage, readStoredImage } from "../../lib/stores/composefs/oci_image.ts";
import { ComposefsRepo } from "../../lib/stores/composefs/repository.ts";
import { CONTENT_TYPE, SplitStreamWriter } from "../../lib/stores/composefs/splitstream.ts";
import { buildAwkwardImage, TarBuilder } from "../fixtures/oci/mod.ts";
import { mergeRawLayers, rawTarEntries } from "./helpers.ts";

const te = new TextEncoder();
const td = new TextDecoder();

/** path → entry, paths as text (non-UTF-8 bytes as \xNN). */
function byPath(entries: Iterable<MergedEntry>): Map<string, MergedEntry> {
  const out = new Map<string, MergedEntry>();
  for (const e of entries) {
    const p = typeof e.path === "string"
      ? e.path
      : Array.from(e.path, (b) => b < 0x80 ? String.fromCharCode(b) : `\\x${b.toString(16)}`)
        .join("");
    out.set(p, e);
  }
  return out;
}

function text(e: MergedEntry | undefined): string | undefined {
  return e?.content ? td.decode(e.content) : undefined;
}

Deno.test("whiteouts and opaque dirs hide what lower layers had, never what their own layer adds", async () => {
  const l0 = new TarBuilder("pax")
    .dir("etc")
    .file("etc/keep", "keep\n")
    .file("etc/gone", "gone\n")
    .dir("etc/sub")
    .file("etc/sub/deep", "deep\n")
    .dir("var")
    .dir("var/cache")
    .file("var/cache/old", "old\n")
    .dir("var/cache/olddir")
    .file("var/cache/olddir/x", "x\n")
    .file("top", "top\n")
    .build();
  const l1 = new TarBuilder("gnu")
    .file("etc/added-then-whited-out", "same layer as its whiteout: stays\n")
    .whiteout("etc", "added-then-whited-out")
    .whiteout("etc", "gone")
    .whiteout("etc", "sub") // a whole directory
    .whiteout("etc", "never-existed")
    .file("var/cache/before-marker", "same layer, listed before the marker\n")
    .file("var/cache/olddir/fresh", "same layer, below a lower directory\n")
    .opaque("var/cache")
    .file("var/cache/after-marker", "same layer, after the marker\n")
    .file("etc/sub", "a file where the directory was\n") // same layer as its whiteout
    .whiteout("", "top") // a whiteout at the root
    .file(".wh..wh.plnk", "aufs bookkeeping\n")
    .build();
  const tree = await mergeRawLayers([l0, l1]);
  const m = byPath(tree.entries());
  assert.deepEqual([...m.keys()], [
    "/",
    "/etc",
    "/etc/added-then-whited-out",
    "/etc/keep",
    "/etc/sub",
    "/var",
    "/var/cache",
    "/var/cache/after-marker",
    "/var/cache/before-marker",
    "/var/cache/olddir",
    "/var/cache/olddir/fresh",
  ]);
  assert.equal(text(m.get("/etc/sub")), "a file where the directory was\n");
  assert.equal(m.get("/etc/sub")?.type, "file");
  assert.equal(tree.stats.whiteouts, 3, "gone, sub, top (never-existed removes nothing)");
  assert.equal(tree.stats.opaqueDirs, 1);
  assert.equal(tree.stats.layers, 2);

  // A whiteout in the first layer has nothing below it: it only disappears.
  const alone = await mergeRawLayers([new TarBuilder().whiteout("", "x").file("y", "y").build()]);
  assert.deepEqual([...byPath(alone.entries()).keys()], ["/", "/y"]);
});

Deno.test("a directory over a directory merges and takes the new metadata; other type changes replace", async () => {
  const l0 = new TarBuilder("pax")
    .dir("d", { mode: 0o755, uid: 1 })
    .file("d/lower", "lower\n")
    .file("f-then-dir", "file\n")
    .dir("dir-then-f")
    .file("dir-then-f/child", "child\n")
    .symlink("link", "target-a")
    .build();
  const l1 = new TarBuilder("pax")
    .dir("d", { mode: 0o700, uid: 2, xattrs: { "user.x": "y" } })
    .file("d/upper", "upper\n")
    .dir("f-then-dir")
    .file("dir-then-f", "now a file\n")
    .symlink("link", "target-b")
    .build();
  const m = byPath((await mergeRawLayers([l0, l1])).entries());
  assert.deepEqual([...m.keys()], [
    "/",
    "/d",
    "/d/lower",
    "/d/upper",
    "/dir-then-f",
    "/f-then-dir",
    "/link",
  ]);
  const d = m.get("/d")!;
  assert.equal(d.mode, 0o700);
  assert.equal(d.uid, 2);
  assert.deepEqual(d.xattrs, [["user.x", te.encode("y")]]);
  assert.equal(m.get("/f-then-dir")?.type, "dir");
  assert.equal(text(m.get("/dir-then-f")), "now a file\n");
  assert.equal(m.get("/link")?.symlinkTarget, "target-b");
});

Deno.test("an entry below a symlink (or another non-directory) of a lower layer is refused, as composefs-rs and containers-storage refuse it", async () => {
  const lower = new TarBuilder("pax")
    .dir("usr")
    .dir("usr/lib")
    .symlink("lib", "usr/lib")
    .file("f", "a file\n")
    .build();
  for (
    const [upper, found] of [
      [new TarBuilder("pax").file("lib/libx.so", "x\n").build(), /"lib" .*found a symlink/],
      [new TarBuilder("pax").dir("lib/sub").build(), /"lib" .*found a symlink/],
      [new TarBuilder("pax").hardlink("f/x", "usr").build(), /"f" .*found a file/],
    ] as const
  ) {
    await assert.rejects(
      mergeRawLayers([lower, upper]),
      (e) => e instanceof MergedTreeError && found.test(e.message) && /layer 1/.test(e.message),
    );
  }
  // Listing the directory first replaces the symlink; the entries then go into it.
  const m = byPath(
    (await mergeRawLayers([
      lower,
      new TarBuilder("pax").dir("lib").file("lib/libx.so", "x\n").build(),
    ])).entries(),
  );
  assert.equal(m.get("/lib")?.type, "dir");
  assert.equal(text(m.get("/lib/libx.so")), "x\n");
});

Deno.test("hardlinks resolve to the inode they named: later changes to the target leave them alone", async () => {
  const payload = "original content, long enough to be more than sixty-four bytes of data\n";
  const l0 = new TarBuilder("pax")
    .dir("usr")
    .file("usr/a", payload, { mode: 0o755, uid: 7 })
    .hardlink("usr/b", "usr/a")
    .symlink("usr/s", "a")
    .hardlink("usr/s2", "usr/s") // a hardlink to a symlink
    .build();
  const l1 = new TarBuilder("pax")
    .whiteout("usr", "a") // delete the target
    .hardlink("usr/c", "usr/b") // link to a path of a lower layer
    .build();
  const l2 = new TarBuilder("pax")
    .file("usr/b", "replaced\n") // replace one path of the group
    .build();
  const tree = await mergeRawLayers([l0, l1, l2]);
  assert.equal(tree.stats.hardlinks, 3);
  const entries = [...tree.entries()];
  const m = byPath(entries);
  assert.deepEqual([...m.keys()], ["/", "/usr", "/usr/b", "/usr/c", "/usr/s", "/usr/s2"]);
  assert.equal(text(m.get("/usr/b")), "replaced\n");
  // /usr/c still has the original inode: written in full (its anchor /usr/a is gone).
  const c = m.get("/usr/c")!;
  assert.equal(c.type, "file");
  assert.equal(text(c), payload);
  assert.equal(c.uid, 7);
  assert.equal(c.mode, 0o755);
  assert.equal(m.get("/usr/s")?.type, "symlink");
  assert.equal(m.get("/usr/s2")?.type, "hardlink");
  assert.equal(m.get("/usr/s2")?.hardlinkTarget, "/usr/s");

  await assert.rejects(
    mergeRawLayers([new TarBuilder().hardlink("x", "missing").build()]),
    (e) => e instanceof MergedTreeError && /"missing" does not exist/.test(e.message),
  );
  await assert.rejects(
    mergeRawLayers([new TarBuilder().dir("d").hardlink("x", "d").build()]),
    (e) => e instanceof MergedTreeError && /is a directory/.test(e.message),
  );
  await assert.rejects(
    mergeRawLayers([new TarBuilder().file("a/../../etc/passwd", "x").build()]),
    (e) => e instanceof MergedTreeError && /"\.\."/.test(e.message) && /layer 0/.test(e.message),
  );
  await assert.rejects(
    mergeRawLayers([new TarBuilder().file("./", "x").build()]),
    (e) => e instanceof MergedTreeError && /root must be a directory/.test(e.message),
  );
});

Deno.test("root entry, implicit parents, raw names, devices and the entry options", async () => {
  const latin1 = new Uint8Array([...te.encode("caf"), 0xe9]);
  const l0 = new TarBuilder("pax")
    .dir("./", { mode: 0o555, uid: 0 })
    .file("a/b/c/file", "deep\n") // a, a/b, a/b/c unlisted
    .file(latin1, "latin-1 name\n")
    .add({ path: "dev/null", type: "char", devMajor: 1, devMinor: 3, mode: 0o666 })
    .add({ path: "fifo", type: "fifo", mode: 0o600 })
    .file("same-1", "x".repeat(100), { mode: 0o600 })
    .file("same-2", "x".repeat(100), { mode: 0o600 })
    .file("other-mode", "x".repeat(100), { mode: 0o644 })
    .build();
  const tree = await mergeRawLayers([l0]);
  const m = byPath(tree.entries());
  assert.equal(m.get("/")?.mode, 0o555);
  assert.equal(m.get("/")?.implicit, false);
  assert.equal(m.get("/a")?.implicit, true);
  assert.equal(m.get("/a/b/c")?.mode, 0o755);
  const raw = m.get("/caf\\xe9")!;
  assert.ok(raw.path instanceof Uint8Array, "a non-UTF-8 name stays bytes");
  assert.deepEqual(raw.path, new Uint8Array([0x2f, ...latin1]));
  assert.equal(m.get("/dev/null")?.type, "char");
  assert.equal(m.get("/dev/null")?.devMajor, 1);
  assert.equal(m.get("/dev/null")?.devMinor, 3);
  assert.equal(m.get("/fifo")?.type, "fifo");

  // include drops a path and everything below it.
  const without = byPath(tree.entries({ include: (p) => p !== "/a/b" }));
  assert.ok(without.has("/a") && !without.has("/a/b") && !without.has("/a/b/c/file"));

  // Identical files become hardlinks only for object-backed content and only when asked:
  // raw layers keep content inline, so nothing is shared here.
  const shared = byPath(tree.entries({ shareIdenticalFiles: true }));
  assert.equal(shared.get("/same-2")?.type, "file");
});

Deno.test("hardlink anchors: a path the consumer drops is never named as a target", async () => {
  const l0 = new TarBuilder()
    .dir("tmp")
    .file("tmp/first", "shared inode\n")
    .hardlink("usr-second", "tmp/first")
    .hardlink("zz-third", "tmp/first")
    .build();
  const tree = await mergeRawLayers([l0]);
  const m = byPath(tree.entries({ canAnchor: (p) => !String(p).startsWith("/tmp/") }));
  assert.equal(m.get("/tmp/first")?.type, "file");
  assert.equal(m.get("/usr-second")?.type, "file", "first anchorable path is written in full");
  assert.equal(m.get("/zz-third")?.type, "hardlink");
  assert.equal(m.get("/zz-third")?.hardlinkTarget, "/usr-second");
});

Deno.test("layer streams from composefs: every object is the exact payload; misaligned streams are refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unistore-pipeline-" });
  try {
    const img = await buildAwkwardImage(`${dir}/layout`, "awkward");
    using repo = await ComposefsRepo.create(`${dir}/cfs`, { algorithm: "sha256" });
    await importOciImage(repo, `${dir}/layout`, "awkward");
    const stored = await readStoredImage(repo, "awkward");
    let objects = 0;
    for (const [i, diffId] of img.diffIds.entries()) {
      const fromStream: LayerEntry[] = [];
      for await (const e of layerEntries(repo, stored.layerStreams.get(diffId)!)) {
        fromStream.push(e);
      }
      const fromTar: LayerEntry[] = [];
      for await (const e of rawTarEntries(img.layerTars[i])) fromTar.push(e);
      assert.equal(fromStream.length, fromTar.length, `layer ${i}: same entries`);
      for (const [j, s] of fromStream.entries()) {
        const t = fromTar[j];
        assert.deepEqual(s.tar.path, t.tar.path);
        assert.deepEqual(s.tar.rawHeader, t.tar.rawHeader, `${t.tar.pathText}: same header bytes`);
        if (!t.content) {
          assert.equal(s.content, undefined);
          continue;
        }
        const want = (t.content as { bytes: Uint8Array }).bytes;
        if (want.length > 64) {
          assert.equal(s.content?.kind, "object", `${t.tar.pathText}: over 64 bytes is an object`);
          const c = s.content as { id: string; size: number };
          assert.equal(c.size, want.length);
          const fd = repo.openObject(c.id);
          try {
            const got = new Uint8Array(want.length + 1);
            assert.equal(pread(fd, got, 0), want.length);
            assert.deepEqual(got.subarray(0, want.length), want);
          } finally {
            close(fd);
          }
          objects++;
        } else {
          assert.deepEqual(s.content, { kind: "inline", bytes: want });
        }
      }
    }
    assert.ok(objects >= 15, `the awkward image has many object-backed files (${objects})`);

    // The same merge through composefs and through the raw tars.
    const viaRepo = [...(await MergedTree.fromComposefs(repo, "awkward")).entries()];
    const viaTars = [...(await mergeRawLayers(img.layerTars)).entries()];
    assert.deepEqual(viaRepo.map((e) => [e.path, e.type]), viaTars.map((e) => [e.path, e.type]));

    // A stream whose 100-byte payload is inline, and one whose 10-byte payload is an object.
    const header = (size: number) =>
      new TarBuilder("ustar").file("f", new Uint8Array(size)).build().subarray(0, 512);
    const bad = async (build: (w: SplitStreamWriter) => void | Promise<void>) => {
      const w = new SplitStreamWriter(repo, CONTENT_TYPE.ociLayer);
      await build(w);
      const id = await w.finish();
      const out = [];
      for await (const e of layerEntries(repo, id, "bad layer")) out.push(e);
      return out;
    };
    await assert.rejects(
      bad((w) => {
        w.writeInline(header(100));
        w.writeInline(new Uint8Array(512 + 1024)); // payload, padding, end of archive
      }),
      (e) => e instanceof LayerStreamError && /found inline data/.test(e.message),
    );
    await assert.rejects(
      bad(async (w) => {
        w.writeInline(header(10));
        await w.writeExternal(new Uint8Array(10).fill(1));
        w.writeInline(new Uint8Array(502 + 1024));
      }),
      (e) =>
        e instanceof LayerStreamError && /is not the payload of a regular file/.test(e.message),
    );
    await assert.rejects(
      bad(async (w) => {
        w.writeInline(header(100));
        await w.writeExternal(new Uint8Array(99).fill(1)); // one byte short
        w.writeInline(new Uint8Array(1 + 412 + 1024));
      }),
      (e) => e instanceof LayerStreamError && /object .* of 99 bytes/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
