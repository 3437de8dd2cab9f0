// The layer digests of an import, threaded (LayerDigests) and in-thread (LayerDigestState),
// judged by independent oracles: node:crypto over the whole stream, the `fsverity` tool per file,
// FIEMAP for the blocks shared with ostree objects.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { fiemap } from "../../ffi/extents.ts";
import { AT, close, fstat, O, openAt, pread, pwriteAll } from "../../ffi/fs.ts";
import { fsverityDigest } from "../../lib/digest/fsverity.ts";
import { type HashAlgorithm, toHex } from "../../lib/digest/hash.ts";
import {
  type FileDigests,
  LayerDigests,
  LayerDigestState,
  stageCopy,
} from "../../lib/pipeline/layer_digests.ts";
import { discardClone, type TmpClone } from "../../lib/reflink/place.ts";
import { SourceChangedError } from "../../lib/reflink/errors.ts";
import { sharedBytesOf } from "../../lib/reflink/shared.ts";
import { type SourceVersion, sourceVersion } from "../../lib/reflink/source_version.ts";
import { objectPath } from "../../lib/stores/ostree/objects.ts";
import { pseudoRandomBytes } from "../harness/data.ts";
import { fsTest } from "../harness/loopfs.ts";
import { runOk } from "../harness/run.ts";
import { toolTest } from "../harness/tools.ts";

const MiB = 1 << 20;
/** Around the fs-verity block (4096) and the read chunk (1 MiB). */
const EDGE_SIZES = [0, 1, 64, 4095, 4096, 4097, MiB + 3, 3 * MiB - 5];

/** The two implementations behind one shape: `begin` starts a layer, `end` gives its digest. */
interface Digester extends Disposable {
  name: string;
  begin(stream: HashAlgorithm, verity: HashAlgorithm | null, objectsDirfd?: number | null): void;
  inline(bytes: Uint8Array): void;
  file(
    fd: number,
    v: SourceVersion,
    what: string,
    ostreeChecksum?: string,
  ): PromiseLike<FileDigests>;
  end(): Promise<Uint8Array>;
}

/** The real thing, for what only the threaded side has (steals, staged copies). */
async function threadedDigests(): Promise<LayerDigests> {
  const d = await LayerDigests.start();
  assert.equal(d.threaded, true, "the digests run on a Worker");
  return d;
}

async function threaded(): Promise<Digester> {
  const d = await LayerDigests.start();
  assert.equal(d.threaded, true, "the digests run on a Worker");
  return Object.assign(d, { name: "LayerDigests" });
}

function inThread(): Promise<Digester> {
  let s: LayerDigestState | null = null;
  return Promise.resolve({
    name: "LayerDigestState",
    begin: (stream, verity, dirfd = null) => s = new LayerDigestState(stream, verity, dirfd),
    inline: (bytes) => s!.inline(bytes),
    file: (fd, v, what, ck) => {
      try {
        return Promise.resolve(s!.file(fd, v, what, ck));
      } catch (e) {
        return Promise.reject(e);
      }
    },
    end: () => Promise.resolve(s!.finish()),
    [Symbol.dispose]() {},
  });
}

/** A layer: file `i` comes after `inline[i]` in the stream, `tail` after the last file. */
interface Layer {
  paths: string[];
  contents: Uint8Array[];
  inline: Uint8Array[];
  tail: Uint8Array;
}

/** Writes `sizes.length` files below `dir`, each with its own bytes, and inline bytes around. */
async function writeLayer(dir: string, sizes: number[], seed: number): Promise<Layer> {
  const layer: Layer = { paths: [], contents: [], inline: [], tail: pseudoRandomBytes(77, seed) };
  for (const [i, size] of sizes.entries()) {
    const path = `${dir}/f${seed}-${i}`;
    const bytes = pseudoRandomBytes(size, seed * 1000 + i + 1);
    await Deno.writeFile(path, bytes);
    layer.paths.push(path);
    layer.contents.push(bytes);
    // Empty, tar-header-sized, and once larger than the 64 KiB the inline buffer starts with.
    const inlineSize = i === 3 ? 100_000 : i % 3 === 0 ? 0 : 512;
    layer.inline.push(pseudoRandomBytes(inlineSize, seed * 1000 + 500 + i));
  }
  return layer;
}

/** The oracle: sha256 over the stream in order, in one pass. */
function streamSha256(layer: Layer): string {
  const h = createHash("sha256");
  layer.contents.forEach((c, i) => h.update(layer.inline[i]).update(c));
  return h.update(layer.tail).digest("hex");
}

/** 45 files (the batch is 32): the edge sizes, then small files of assorted sizes. */
function layerSizes(): number[] {
  return [...EDGE_SIZES, ...Array.from({ length: 37 }, (_, i) => (i * 997) % 9000)];
}

function openAll(paths: string[]): number[] {
  return paths.map((p) => openAt(AT.FDCWD, p, O.RDONLY | O.NOFOLLOW));
}

/** Fails instead of hanging when `p` never settles (a batch nobody sent). */
async function within<T>(p: PromiseLike<T>, what: string, ms = 30_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "unistore-layer-digests-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Feeds layer one awaiting results mid-stream (file 0, sent, then file 34 of a batch not yet
 * sent) before file 40 is fed, and layer two firing every file before awaiting them in reverse.
 */
async function checkTwoLayers(d: Digester, dir: string) {
  const one = await writeLayer(dir, layerSizes(), 1);
  const two = await writeLayer(dir, layerSizes().reverse(), 2);
  const fds = [...openAll(one.paths), ...openAll(two.paths)];
  try {
    d.begin("sha256", "sha512");
    const results: PromiseLike<FileDigests>[] = [];
    for (const [i, path] of one.paths.entries()) {
      d.inline(one.inline[i]);
      results.push(d.file(fds[i], sourceVersion(fds[i]), path));
      if (i === 34) {
        await within(results[0], `${d.name}: file 0 of batch 1`);
        await within(results[34], `${d.name}: file 34, in the unsent batch 2`);
      }
    }
    d.inline(one.tail);
    const got = await within(Promise.all(results), `${d.name}: layer 1`);
    assert.equal(toHex(await d.end()), streamSha256(one), `${d.name}: layer 1 stream digest`);
    got.forEach((r, i) => {
      assert.equal(r.size, one.contents[i].length, `${one.paths[i]} size`);
      assert.deepEqual(r.verity, fsverityDigest(one.contents[i], "sha512"), one.paths[i]);
      assert.equal(r.share, null);
    });

    d.begin("sha256", "sha512");
    const fds2 = fds.slice(one.paths.length);
    const results2 = two.paths.map((path, i) => {
      d.inline(two.inline[i]);
      return d.file(fds2[i], sourceVersion(fds2[i]), path);
    });
    d.inline(two.tail);
    for (let i = results2.length - 1; i >= 0; i--) {
      const r = await within(results2[i], `${d.name}: layer 2 file ${i}`);
      assert.deepEqual(r.verity, fsverityDigest(two.contents[i], "sha512"), two.paths[i]);
    }
    assert.equal(toHex(await d.end()), streamSha256(two), `${d.name}: layer 2 owes nothing to 1`);
  } finally {
    fds.forEach(close);
  }
}

Deno.test("LayerDigests on its Worker: stream sha256 and per-file fs-verity, two layers", () =>
  withTempDir(async (dir) => {
    using d = await threaded();
    await checkTwoLayers(d, dir);
  }));

Deno.test("LayerDigests whose worker cannot load hashes on this thread: the same digests", () =>
  withTempDir(async (dir) => {
    // As a binary compiled without the worker module would find it. Deno prints the worker's
    // uncaught error itself ("Uncaught (in worker)"); the test passes on what is computed.
    using d = await LayerDigests.start('data:application/javascript,throw new Error("unloadable")');
    assert.equal(d.threaded, false);
    await checkTwoLayers(Object.assign(d, { name: "LayerDigests (no worker)" }), dir);
  }));

Deno.test("LayerDigestState in-thread: the same digests", () =>
  withTempDir(async (dir) => {
    using d = await inThread();
    await checkTwoLayers(d, dir);
  }));

Deno.test("LayerDigests.steal: this thread takes the fs-verity digest of a file the worker has not reached; the stream digest still covers it", () =>
  withTempDir(async (dir) => {
    // A large first file keeps the worker busy while the last one is stolen.
    const layer = await writeLayer(dir, [48 * MiB, ...layerSizes()], 5);
    const fds = openAll(layer.paths);
    try {
      using d = await threadedDigests();
      d.begin("sha256", "sha512");
      const results = layer.paths.map((p, i) => {
        d.inline(layer.inline[i]);
        return d.file(fds[i], sourceVersion(fds[i]), p);
      });
      d.inline(layer.tail);
      const last = layer.paths.length - 1;
      const stolen = d.steal(results[last]);
      assert.ok(stolen, "the worker was still on the first file");
      assert.equal(stolen.size, layer.contents[last].length);
      assert.deepEqual(stolen.verity, fsverityDigest(layer.contents[last], "sha512"));
      assert.equal(d.steal(results[last]), null, "a file is taken once");

      await within(results[0], "file 0");
      assert.equal(d.steal(results[0]), null, "a settled file is not taken");
      const got = await within(Promise.all(results), "the layer");
      got.slice(0, last).forEach((r, i) => {
        assert.deepEqual(r.verity, fsverityDigest(layer.contents[i], "sha512"), layer.paths[i]);
      });
      assert.equal(got[last].size, layer.contents[last].length);
      assert.equal(toHex(await d.end()), streamSha256(layer), "every byte in the stream hash");

      // Files the worker must hash itself: one with an ostree object to share blocks with, and
      // any when no fs-verity digest is wanted.
      d.begin("sha256", "sha512");
      const withOstree = d.file(fds[1], sourceVersion(fds[1]), "x", "00".repeat(32));
      assert.equal(d.steal(withOstree), null);
      await within(withOstree, "with an ostree checksum");
      await d.end();
      d.begin("sha256", null);
      const noVerity = d.file(fds[1], sourceVersion(fds[1]), "y");
      assert.equal(d.steal(noVerity), null);
      assert.equal((await within(noVerity, "without fs-verity")).verity, null);
      await d.end();
    } finally {
      fds.forEach(close);
    }
  }));

Deno.test("LayerDigests closed with requests out: their files and the stream digest fail, none hangs", () =>
  withTempDir(async (dir) => {
    const layer = await writeLayer(dir, [5000, 70_000], 7);
    const fds = openAll(layer.paths);
    try {
      const d = await LayerDigests.start();
      assert.ok(d.threaded);
      d.begin("sha256", "sha512");
      const sent = d.file(fds[0], sourceVersion(fds[0]), layer.paths[0]);
      const end = d.end(); // sends the batch with the file, then the end request
      d[Symbol.dispose](); // before either reply could arrive
      await assert.rejects(Promise.resolve(sent), /layer digests closed/);
      await assert.rejects(end, /layer digests closed/);
      assert.ok(sent.settled);
      // A file handed in after the close fails too, once its batch is sent.
      const late = d.file(fds[1], sourceVersion(fds[1]), layer.paths[1]);
      await assert.rejects(Promise.resolve(late), /layer digests closed/);
    } finally {
      fds.forEach((fd) => close(fd));
    }
  }));

Deno.test("LayerDigests without a worker takes nothing: every result is computed when handed in", () =>
  withTempDir(async (dir) => {
    const layer = await writeLayer(dir, [5000], 6);
    const [fd] = openAll(layer.paths);
    try {
      using d = await LayerDigests.start(
        'data:application/javascript,throw new Error("unloadable")',
      );
      d.begin("sha256", "sha512");
      const p = d.file(fd, sourceVersion(fd), layer.paths[0]);
      assert.equal(d.steal(p), null);
      assert.deepEqual((await p).verity, fsverityDigest(layer.contents[0], "sha512"));
    } finally {
      close(fd);
    }
  }));

fsTest("LayerDigests stages byte-exact copies of the files it is far ahead on, none close behind", [
  "ext4",
], async (fs) => {
  // Sources and copies on one filesystem, as in an import: copy_file_range between them for
  // files over one read (1 MiB); smaller ones are written from the bytes just hashed.
  const dir = `${fs.mountpoint}/src`;
  await Deno.mkdir(dir);
  const minAhead = 100;
  const n = minAhead + 40;
  const sizes = Array.from({ length: n }, (_, i) => 65 + i * 37);
  sizes[n - 2] = MiB + 3;
  sizes[n - 1] = 2 * MiB;
  const layer = await writeLayer(dir, sizes, 7);
  const fds = openAll(layer.paths);
  const target = openAt(AT.FDCWD, fs.mountpoint, O.RDONLY | O.DIRECTORY);
  const copies: TmpClone[] = [];
  try {
    using d = await threadedDigests();
    d.begin("sha256", "sha512", null, { dirfd: target, mode: 0o644, minAhead, link: false });
    // The caller places nothing meanwhile: file i is i files ahead of its placing.
    const results = layer.paths.map((p, i) => d.file(fds[i], sourceVersion(fds[i]), p));
    const got = await within(Promise.all(results), "the layer");
    got.forEach((r, i) => {
      if (r.copy) copies.push(r.copy);
      if (i < minAhead) return assert.ok(!r.copy, `file ${i} is close behind`);
      assert.ok(r.copy, `file ${i} is far ahead`);
      assert.equal(r.copy.method, sizes[i] <= MiB ? "readwrite" : "copy_file_range");
      const st = fstat(r.copy.fd);
      assert.equal(st.mode, 0o100644, "mode as asked");
      assert.equal(st.size, layer.contents[i].length);
      const bytes = new Uint8Array(st.size);
      assert.equal(pread(r.copy.fd, bytes, 0), st.size);
      assert.deepEqual(bytes, layer.contents[i], `copy of ${layer.paths[i]}`);
    });
    assert.equal(copies.length, n - minAhead);
    await d.end();

    // A copy is only handed over of the version that was hashed, at its length.
    const v = sourceVersion(fds[0]);
    const stale = { ...v, mtime: { sec: v.mtime.sec - 1, nsec: v.mtime.nsec } };
    const copyTo = { dirfd: target, mode: 0o644, minAhead, link: false };
    assert.equal(stageCopy(fds[0], v.size, stale, copyTo), null, "another version");
    assert.equal(stageCopy(fds[0], v.size + 1, v, copyTo), null, "another length");
    const fresh = stageCopy(fds[0], v.size, v, copyTo);
    assert.ok(fresh, "the version hashed");
    copies.push(fresh);
    // Bytes held from the hash are what is written, without reading the source again (here
    // they differ from the file's, which no import would pass, to tell the two apart).
    const held = layer.contents[0].map((b) => b ^ 0x5a);
    const written = stageCopy(fds[0], v.size, v, copyTo, held);
    assert.ok(written);
    copies.push(written);
    const back = new Uint8Array(v.size);
    assert.equal(pread(written.fd, back, 0), v.size);
    assert.deepEqual([written.method, back], ["readwrite", held]);
    const other = stageCopy(fds[0], v.size, v, copyTo, held.subarray(1));
    assert.ok(other, "held bytes of another length: the file is copied");
    copies.push(other);
    assert.equal(other.method, "copy_file_range");

    // Once the caller places the newest file, none of the next ones is far ahead of it.
    d.begin("sha256", "sha512", null, { dirfd: target, mode: 0o644, minAhead, link: false });
    const more = layer.paths.slice(0, 10).map((p, i) => d.file(fds[i], sourceVersion(fds[i]), p));
    d.placing(more[0]);
    for (const r of await within(Promise.all(more), "ten more")) assert.ok(!r.copy);
    await d.end();
  } finally {
    copies.forEach(discardClone);
    close(target);
    fds.forEach(close);
  }
});

fsTest("LayerDigests links the copies it stages as objects named by their fs-verity digest", [
  "ext4",
], async (fs) => {
  const dir = `${fs.mountpoint}/src`;
  const objects = `${fs.mountpoint}/objects`;
  await Deno.mkdir(dir);
  await Deno.mkdir(objects);
  const minAhead = 20;
  const n = minAhead + 12;
  // Files 0 and 1 of the far-ahead ones have the same bytes: one object, found the second time.
  const sizes = Array.from({ length: n }, (_, i) => 65 + i * 53);
  const layer = await writeLayer(dir, sizes, 11);
  await Deno.writeFile(layer.paths[minAhead + 1], layer.contents[minAhead]);
  layer.contents[minAhead + 1] = layer.contents[minAhead];
  const idOf = (i: number) => toHex(fsverityDigest(layer.contents[i], "sha512"));
  const objectPath = (id: string) => `${objects}/${id.slice(0, 2)}/${id.slice(2)}`;
  // What a power cut can leave: the name of a far-ahead file's object on an empty file.
  const torn = objectPath(idOf(n - 1));
  await Deno.mkdir(torn.slice(0, torn.lastIndexOf("/")), { recursive: true });
  await Deno.writeFile(torn, new Uint8Array(0));
  const fds = openAll(layer.paths);
  const target = openAt(AT.FDCWD, objects, O.RDONLY | O.DIRECTORY);
  const copies: TmpClone[] = [];
  try {
    using d = await threadedDigests();
    d.begin("sha256", "sha512", null, { dirfd: target, mode: 0o644, minAhead, link: true });
    const results = layer.paths.map((p, i) => d.file(fds[i], sourceVersion(fds[i]), p));
    const got = await within(Promise.all(results), "the layer");
    for (const [i, r] of got.entries()) {
      if (r.copy) copies.push(r.copy);
      assert.equal(r.copy ?? null, null, `file ${i}: a linked copy is not handed over`);
      if (i < minAhead) {
        assert.equal(r.linked, null, `file ${i} is close behind`);
        continue;
      }
      assert.deepEqual(r.verity, fsverityDigest(layer.contents[i], "sha512"));
      const expected = i === minAhead + 1 ? "already-present" : "written";
      // Small files: written from the bytes just hashed.
      assert.deepEqual(r.linked, { method: "readwrite", outcome: expected }, `file ${i}`);
      const path = objectPath(idOf(i));
      assert.deepEqual(await Deno.readFile(path), layer.contents[i], `object of file ${i}`);
      assert.equal((await Deno.stat(path)).mode! & 0o7777, 0o644);
    }
    assert.equal((await Deno.stat(torn)).size, sizes[n - 1], "the torn object was replaced");
    const whole = createHash("sha256");
    for (const c of layer.contents) whole.update(c);
    assert.equal(toHex(await d.end()), whole.digest("hex"), "the stream hash has every file");

    // A copy that cannot be linked (its XX/ is a regular file here) is dropped, not handed
    // over: the caller copies and links the file itself and meets the error there.
    const made = new Set([...Deno.readDirSync(objects)].map((e) => e.name));
    let seed = 100;
    let bytes = pseudoRandomBytes(500, seed);
    while (made.has(toHex(fsverityDigest(bytes, "sha512")).slice(0, 2))) {
      bytes = pseudoRandomBytes(500, ++seed);
    }
    const blocked = toHex(fsverityDigest(bytes, "sha512")).slice(0, 2);
    await Deno.writeFile(`${objects}/${blocked}`, new Uint8Array(0));
    await Deno.writeFile(`${dir}/unlinkable`, bytes);
    const fd = openAt(AT.FDCWD, `${dir}/unlinkable`, O.RDONLY);
    fds.push(fd);
    d.begin("sha256", "sha512", null, { dirfd: target, mode: 0o644, minAhead: 0, link: true });
    const r = await within(d.file(fd, sourceVersion(fd), `${dir}/unlinkable`), "unlinkable");
    if (r.copy) copies.push(r.copy);
    assert.deepEqual(r.verity, fsverityDigest(bytes, "sha512"));
    assert.equal(r.linked, null, "not linked");
    assert.equal(r.copy, null, "and no copy handed over");
    await d.end();
    await Deno.remove(`${objects}/${blocked}`);
  } finally {
    copies.forEach(discardClone);
    close(target);
    fds.forEach(close);
  }
  // Nothing but objects: no temporary names left in objects/ or its XX/ directories.
  for await (const e of Deno.readDir(objects)) {
    assert.match(e.name, /^[0-9a-f]{2}$/);
    for await (const o of Deno.readDir(`${objects}/${e.name}`)) {
      assert.match(o.name, /^[0-9a-f]{126}$/);
    }
  }
});

toolTest(
  "LayerDigests' fs-verity sha512 digests are what `fsverity digest` prints",
  [{ bin: "fsverity", pkg: "fsverity" }],
  (bins) =>
    withTempDir(async (dir) => {
      const layer = await writeLayer(dir, EDGE_SIZES, 3);
      const fds = openAll(layer.paths);
      try {
        using d = await threaded();
        d.begin("sha256", "sha512");
        const results = layer.paths.map((p, i) => d.file(fds[i], sourceVersion(fds[i]), p));
        const got = await within(Promise.all(results), "edge sizes");
        const r = await runOk([
          bins.fsverity,
          "digest",
          "--hash-alg=sha512",
          "--block-size=4096",
          ...layer.paths,
        ]);
        // One line per file: "sha512:<hex> <path>".
        const printed = r.stdout.trim().split("\n").map((l) => l.split(" ")[0]);
        assert.deepEqual(got.map((g) => `sha512:${toHex(g.verity!)}`), printed);
      } finally {
        fds.forEach(close);
      }
    }),
);

for (const [name, make] of [["LayerDigests", threaded], ["LayerDigestState", inThread]] as const) {
  Deno.test(`${name}: a file written to after its version was taken is refused`, () =>
    withTempDir(async (dir) => {
      const layer = await writeLayer(dir, [10_000, 5000], 4);
      const [changed, after] = openAll(layer.paths);
      try {
        using d = await make();
        d.begin("sha256", "sha512");
        const before = sourceVersion(changed);
        // Same size: only mtime/ctime can tell. The pause outlasts coarse (per-tick) timestamps.
        await new Promise((r) => setTimeout(r, 20));
        const w = openAt(AT.FDCWD, layer.paths[0], O.WRONLY | O.NOFOLLOW);
        pwriteAll(w, new Uint8Array([layer.contents[0][5000] ^ 0xff]), 5000);
        close(w);
        const p1 = d.file(changed, before, "layer 4/changed.bin");
        const p2 = d.file(after, sourceVersion(after), "layer 4/after.bin");
        await assert.rejects(within(p1, "changed file"), (e) => {
          assert.ok(e instanceof SourceChangedError, String(e));
          assert.equal(e.source, "layer 4/changed.bin");
          assert.match(e.message, /layer 4\/changed\.bin changed/);
          return true;
        });
        const r2 = await within(p2, "the file after it");
        assert.deepEqual(r2.verity, fsverityDigest(layer.contents[1], "sha512"));
        assert.equal((await d.end()).length, 32);
      } finally {
        close(changed);
        close(after);
      }
    }));
}

// Sharing blocks with ostree file objects: a fake objects/ with one object of the same bytes
// (written separately, so on other blocks), one of other bytes, one symlink, and one missing.
fsTest("the digest thread shares blocks with same-bytes ostree objects only", [
  "xfs",
  "btrfs",
], async (fs) => {
  for (const make of [threaded, inThread]) {
    using d = await make();
    const base = `${fs.mountpoint}/${d.name}`;
    const size = 256 * 1024 + 3; // above btrfs' inline limit, with a partial last block
    const same = pseudoRandomBytes(size, 10), mine = pseudoRandomBytes(size, 11);
    const theirs = pseudoRandomBytes(size, 12), linked = pseudoRandomBytes(size, 13);
    const ck = (s: string) => createHash("sha256").update(s).digest("hex");
    const obj = (s: string) => `${base}/objects/${objectPath(ck(s), "file")}`;
    for (const s of ["same", "differ", "symlink"]) {
      await Deno.mkdir(obj(s).replace(/\/[^/]+$/, ""), { recursive: true });
    }
    await Deno.writeFile(obj("same"), same);
    await Deno.writeFile(obj("differ"), theirs);
    await Deno.writeFile(`${base}/outside.bin`, linked);
    await Deno.symlink(`${base}/outside.bin`, obj("symlink"));
    const sources = { same, differ: mine, symlink: linked, missing: same };
    for (const [name, bytes] of Object.entries(sources)) {
      await Deno.writeFile(`${base}/${name}.src`, bytes);
    }

    const names = Object.keys(sources);
    const fds = openAll(names.map((n) => `${base}/${n}.src`));
    const objects = openAt(AT.FDCWD, `${base}/objects`, O.RDONLY | O.DIRECTORY);
    const sameObj = openAt(AT.FDCWD, obj("same"), O.RDONLY);
    const outside = openAt(AT.FDCWD, `${base}/outside.bin`, O.RDONLY);
    try {
      assert.notEqual(fiemap(fds[0])[0].physical, fiemap(sameObj)[0].physical);
      d.begin("sha256", "sha512", objects);
      const results = names.map((n, i) => d.file(fds[i], sourceVersion(fds[i]), n, ck(n)));
      const [rSame, rDiffer, rSymlink, rMissing] = await within(Promise.all(results), d.name);
      assert.equal(
        toHex(await d.end()),
        createHash("sha256").update(same).update(mine).update(linked).update(same).digest("hex"),
      );
      assert.deepEqual(rSame.verity, fsverityDigest(same, "sha512"));

      assert.deepEqual(rSame.share, { outcome: "deduped", bytes: size }, `${d.name}: same`);
      assert.equal(fiemap(fds[0])[0].physical, fiemap(sameObj)[0].physical, "one block now");
      assert.ok(sharedBytesOf(sameObj).sharedBytes >= size - 3);
      assert.deepEqual(await Deno.readFile(obj("same")), same);

      assert.deepEqual(rDiffer.share, { outcome: "differed", bytes: 0 }, `${d.name}: differ`);
      assert.deepEqual(await Deno.readFile(obj("differ")), theirs);
      assert.equal(sharedBytesOf(fds[1]).sharedBytes, 0);

      assert.equal(rSymlink.share, null, `${d.name}: a symlink object is not followed`);
      assert.equal(sharedBytesOf(outside).sharedBytes, 0, "the symlink's target kept its blocks");
      assert.notEqual(fiemap(outside)[0].physical, fiemap(fds[2])[0].physical);
      assert.equal(await Deno.readLink(obj("symlink")), `${base}/outside.bin`);

      assert.equal(rMissing.share, null, `${d.name}: no such object`);
    } finally {
      [...fds, objects, sameObj, outside].forEach(close);
    }
  }
});
