/**
 * composefs ↔ containers-storage on real filesystems, judged by real tools:
 * - composefs → containers-storage (XFS, btrfs): `podman images` lists the config digest as
 *   the image id, `podman run` sees every layer applied, `skopeo copy containers-storage:… oci:…`
 *   re-verifies every diff_id, each `diff/` file over 64 bytes has exactly the physical extents
 *   of its composefs object (FIEMAP, shared), each object is opened once per file; a corrupt
 *   object fails its layer, which leaves nothing behind; a second export writes nothing
 *   (btrfs keeps small files inline in its metadata: those are compared by content);
 * - containers-storage → composefs (XFS, btrfs; the image stored by skopeo): each layer stream
 *   reassembles to the exact layer tar, the deep composefs fsck is clean, objects have exactly
 *   the extents of the `diff/` files; a corrupt `diff/` file is named and its layer not
 *   registered, as is a layer whose tar-split no longer rebuilds its diff_id; a second import
 *   writes nothing;
 * - on ext4, `reflink-required` fails before writing anything and names the filesystem, in both
 *   directions; `reflink-or-copy` copies, and skopeo and the deep fsck accept the result.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import { fiemap, FIEMAP_EXTENT } from "../../ffi/extents.ts";
import {
  AT,
  close,
  O,
  openAt,
  openDir,
  openDirAt,
  read,
  readDir,
  S,
  type Stat,
  statAt,
} from "../../ffi/fs.ts";
import { OciLayout } from "../../lib/oci/layout.ts";
import {
  exportComposefsImageToCStorage,
  recoveredImageName,
} from "../../lib/pipeline/composefs_to_cstorage.ts";
import { importCStorageImageToComposefs } from "../../lib/pipeline/cstorage_to_composefs.ts";
import { layerEntries } from "../../lib/pipeline/layer_entries.ts";
import { DigestMismatchError } from "../../lib/oci/errors.ts";
import { ReflinkUnsupportedError } from "../../lib/reflink/errors.ts";
import { clearProbeCache } from "../../lib/reflink/probe.ts";
import { fsckRepo } from "../../lib/stores/composefs/fsck.ts";
import {
  bootcTagFor,
  importOciImage,
  layerStreamName,
  listTags,
  readStoredImage,
} from "../../lib/stores/composefs/oci_image.ts";
import { ComposefsRepo } from "../../lib/stores/composefs/repository.ts";
import { SplitStream } from "../../lib/stores/composefs/splitstream.ts";
import { writeLayerTar } from "../../lib/stores/composefs/tar_layer.ts";
import {
  CStorage,
  DiffIdMismatchError,
  layerChainIds,
  LayerIntegrityError,
} from "../../lib/stores/cstorage/mod.ts";
import { buildRunnableImage } from "../fixtures/cstorage/images.ts";
import {
  podman,
  podmanRun,
  skopeoFromStore,
  skopeoToStore,
  storeTest,
  tempStore,
  TOOLS,
} from "../fixtures/cstorage/podman.ts";
import { buildOciImage, mostlyZeros, pseudoRandomBytes, TarBuilder } from "../fixtures/oci/mod.ts";
import type { LoopFs } from "../harness/loopfs.ts";
import { run, runOk } from "../harness/run.ts";
import { FAULT_AT_ENV } from "../../lib/fault/fault_point.ts";

const sha256hex = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const enc = new TextEncoder();

/** A file of a layer whose payload is a composefs object. */
interface ObjectFile {
  /** Path inside the layer as raw bytes (no leading `./` or `/`). */
  path: Uint8Array;
  pathText: string;
  id: string;
  size: number;
}

/** Every file over 64 bytes of each layer of a composefs image, by diff_id. */
async function objectFiles(
  cfs: ComposefsRepo,
  ref: string,
): Promise<Map<string, ObjectFile[]>> {
  const stored = await readStoredImage(cfs, ref);
  const out = new Map<string, ObjectFile[]>();
  for (const diffId of stored.diffIds) {
    const files: ObjectFile[] = [];
    for await (const e of layerEntries(cfs, stored.layerStreams.get(diffId)!)) {
      if (e.content?.kind !== "object") continue;
      let p = e.tar.path;
      while (p[0] === 0x2f || (p[0] === 0x2e && p[1] === 0x2f)) {
        p = p.subarray(p[0] === 0x2f ? 1 : 2);
      }
      files.push({ path: p, pathText: e.tar.pathText, id: e.content.id, size: e.content.size });
    }
    out.set(diffId, files);
  }
  return out;
}

/** `dir/path` as raw bytes, for names that need not be UTF-8. */
function below(dir: string, path: Uint8Array): Uint8Array {
  const d = enc.encode(`${dir}/`);
  const out = new Uint8Array(d.length + path.length);
  out.set(d);
  out.set(path, d.length);
  return out;
}

/** Physical extents of a file as `physical+length`, whether all are shared, or inline. */
function extentsOf(path: string | Uint8Array) {
  const fd = openAt(AT.FDCWD, path, O.RDONLY | O.NOFOLLOW);
  try {
    const ex = fiemap(fd);
    return {
      extents: ex.map((e) => `${e.physical}+${e.length}`),
      allShared: ex.length > 0 && ex.every((e) => e.shared),
      // btrfs keeps small files inside its metadata: such data is copied by a clone, not shared.
      inline: ex.length > 0 && ex.every((e) => (e.flags & FIEMAP_EXTENT.DATA_INLINE) !== 0),
    };
  } finally {
    close(fd);
  }
}

/** sha256 hex of a file's content (the path may be raw bytes). */
function contentHash(path: string | Uint8Array): string {
  const fd = openAt(AT.FDCWD, path, O.RDONLY | O.NOFOLLOW);
  try {
    const h = createHash("sha256");
    const buf = new Uint8Array(1 << 16);
    for (let n = read(fd, buf); n > 0; n = read(fd, buf)) h.update(buf.subarray(0, n));
    return h.digest("hex");
  } finally {
    close(fd);
  }
}

/**
 * Asserts that `a` and `b` are the same blocks: equal physical extents, all marked shared.
 * Data a filesystem stores inline (btrfs) cannot be shared: then the bytes must be equal.
 * Returns whether blocks were compared.
 */
function assertSameBlocks(a: string | Uint8Array, b: string | Uint8Array, what: string): boolean {
  const x = extentsOf(a);
  const y = extentsOf(b);
  if (x.inline && y.inline) {
    assert.equal(contentHash(a), contentHash(b), what);
    return false;
  }
  assert.ok(x.allShared && y.allShared, `${what}: extents not shared`);
  assert.deepEqual(x.extents, y.extents, `${what}: different physical extents`);
  return true;
}

function objectPath(cfsDir: string, id: string): string {
  return `${cfsDir}/objects/${id.slice(0, 2)}/${id.slice(2)}`;
}

/**
 * Every entry below `dir` with type, size, mode, owner, mtime and ctime (nanoseconds): equal
 * snapshots mean nothing was created, removed, written or changed in metadata. Names are
 * walked as raw bytes (the stores hold non-UTF-8 names).
 */
function treeState(dir: string): string[] {
  const out: string[] = [];
  const line = (rel: string, st: Stat) =>
    out.push(
      `${rel} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ` +
        `m${st.mtime.sec}.${st.mtime.nsec} c${st.ctime.sec}.${st.ctime.nsec}`,
    );
  const walk = (dirfd: number, rel: string) => {
    const entries = readDir(dirfd).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const sub = `${rel}/${String.fromCharCode(...e.nameBytes)}`;
      const st = statAt(dirfd, e.nameBytes);
      line(sub, st);
      if ((st.mode & S.IFMT) !== S.IFDIR) continue;
      const fd = openDirAt(dirfd, e.nameBytes);
      try {
        walk(fd, sub);
      } finally {
        close(fd);
      }
    }
  };
  const fd = openDir(dir);
  try {
    line(".", statAt(fd, "."));
    walk(fd, ".");
  } finally {
    close(fd);
  }
  return out;
}

/** The exact tar of a composefs layer, reassembled (checked against the diff_id on the way). */
async function reassembled(cfs: ComposefsRepo, diffId: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  await writeLayerTar(cfs, diffId, (c) => {
    parts.push(c.slice());
  });
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A gzipped tar-split file with 512 zero bytes added to its last raw segment. */
function withLongerTrailer(gz: Uint8Array): Uint8Array {
  const lines = new TextDecoder().decode(gunzipSync(gz)).split("\n").filter((l) => l !== "");
  const last = lines.findLastIndex((l) => JSON.parse(l).type === 2);
  const seg = JSON.parse(lines[last]);
  const payload = Buffer.concat([Buffer.from(seg.payload, "base64"), Buffer.alloc(512)]);
  lines[last] = JSON.stringify({ ...seg, payload: payload.toString("base64") });
  return gzipSync(enc.encode(lines.join("\n") + "\n"));
}

/** Counts `openObject` calls per object id (the repository itself is real, only observed). */
function countOpens(cfs: ComposefsRepo): Map<string, number> {
  const counts = new Map<string, number>();
  const open = cfs.openObject.bind(cfs);
  cfs.openObject = (id: string) => {
    counts.set(id, (counts.get(id) ?? 0) + 1);
    return open(id);
  };
  return counts;
}

const NAME = "localhost/from-composefs:v1";

storeTest(
  "composefs → containers-storage: podman runs it, skopeo re-verifies it, diff/ shares blocks",
  ["xfs", "btrfs"],
  [TOOLS.podman, TOOLS.skopeo, TOOLS.runc, TOOLS.busybox],
  async (fs, bins) => {
    clearProbeCache(); // a fresh filesystem may reuse an earlier one's device number
    const oci = `${fs.mountpoint}/oci`;
    const img = await buildRunnableImage(oci, "v1");
    const cfsDir = `${fs.mountpoint}/composefs`;
    using cfs = await ComposefsRepo.create(cfsDir, { algorithm: "sha512" });
    await importOciImage(cfs, oci, "v1");
    const files = await objectFiles(cfs, "v1");
    await using store = await tempStore(fs.mountpoint);
    using cs = await CStorage.open(store.root, { create: true });
    const chain = layerChainIds(img.diffIds);
    const opts = { policy: "reflink-required" as const, names: [NAME] };

    // A corrupt object (same size, other bytes) in layer 2: that layer fails its DiffID check
    // and is removed again; the layers before it stay, complete; no image is recorded.
    const victim = files.get(img.diffIds[2])!.find((f) => f.pathText === "var/cache/new")!;
    const good = await Deno.readFile(objectPath(cfsDir, victim.id));
    await Deno.writeFile(objectPath(cfsDir, victim.id), pseudoRandomBytes(victim.size, 999));
    await assert.rejects(
      () => exportComposefsImageToCStorage(cfs, cs, "v1", opts),
      (e) => e instanceof DiffIdMismatchError && e.expected === img.diffIds[2],
    );
    assert.deepEqual((await cs.layers()).map((l) => [l.id, l.incomplete]), [
      [chain[0], false],
      [chain[1], false],
    ]);
    assert.deepEqual(await cs.listImages(), []);
    const left = await Array.fromAsync(Deno.readDir(`${store.root}/overlay`), (e) => e.name);
    assert.deepEqual(left.sort(), [chain[0], chain[1], "l"].sort());
    assert.equal((await Array.fromAsync(Deno.readDir(`${store.root}/overlay/l`))).length, 2);
    assert.ok(
      !(await Array.fromAsync(Deno.readDir(`${store.root}/overlay-layers`), (e) => e.name))
        .some((n) => n.startsWith(chain[2])),
    );
    await Deno.writeFile(objectPath(cfsDir, victim.id), good);

    // The export: the two stored layers are skipped, the others cloned.
    const opens = countOpens(cfs);
    const r = await exportComposefsImageToCStorage(cfs, cs, "v1", opts);
    assert.equal(r.imageId, img.configDigest.slice("sha256:".length));
    assert.equal(r.manifestDigest, img.manifestDigest);
    assert.equal(r.created, true);
    assert.deepEqual(r.layers.map((l) => [l.layerId, l.reused]), chain.map((id, i) => [id, i < 2]));
    assert.equal(r.probe?.supported, true);
    const written = img.diffIds.slice(2).flatMap((d) => files.get(d)!);
    assert.deepEqual(r.stats.filesCloned, {
      reflink: written.length,
      copy_file_range: 0,
      readwrite: 0,
    });
    assert.equal(r.stats.clonedBytes, written.reduce((n, f) => n + f.size, 0));
    assert.ok(r.stats.inlineFiles > 0, "files of at most 64 bytes come from the stream");
    // Each object was opened once per file it is the content of, and only for that file: the
    // tar stream the writer parsed never read an object.
    const perObject = new Map<string, number>();
    for (const f of written) perObject.set(f.id, (perObject.get(f.id) ?? 0) + 1);
    const allObjectIds = new Set([...files.values()].flat().map((f) => f.id));
    assert.deepEqual(
      new Map([...opens].filter(([id]) => allObjectIds.has(id))),
      perObject,
    );
    assert.equal(r.stats.objectsOpened, written.length);

    // Every diff/ file with an object is the object's blocks (layers 0 and 1 were cloned by
    // the failed attempt).
    let compared = 0;
    for (const [i, diffId] of img.diffIds.entries()) {
      for (const f of files.get(diffId)!) {
        const blocks = assertSameBlocks(
          below(`${store.root}/overlay/${chain[i]}/diff`, f.path),
          objectPath(cfsDir, f.id),
          `layer ${i} ${f.pathText}`,
        );
        if (blocks) compared++;
      }
    }
    assert.ok(compared >= 6, `compared the blocks of ${compared} files`);

    // podman: listed under the config digest, and it runs with every layer applied.
    const listed = await podman(bins.podman, store, [
      "images",
      "--no-trunc",
      "--format",
      "{{.ID}} {{.Repository}}:{{.Tag}}",
    ]);
    assert.equal(listed.stdout.trim(), `${img.configDigest} ${NAME}`);
    const out = await podmanRun(bins.podman, store, NAME, [
      "sh",
      "-c",
      "cat /etc/one; ls /var/cache; test -e /etc/exactly-65 || echo wh-file; " +
      "cat /etc/added-in-tweak; stat -c '%a %u:%g %n' /usr/bin/su /usr/bin/wall; " +
      "sha256sum /data/blob /usr/lib/big.img /var/cache/new",
    ]);
    assert.equal(
      out,
      [
        "replaced in layer 1",
        "new",
        "wh-file",
        "tweak",
        "4755 0:0 /usr/bin/su",
        "2755 0:5 /usr/bin/wall",
        `${sha256hex(pseudoRandomBytes(1024 * 1024, 17))}  /data/blob`,
        `${sha256hex(mostlyZeros(3 * 1024 * 1024))}  /usr/lib/big.img`,
        `${sha256hex(good)}  /var/cache/new`,
        "",
      ].join("\n"),
    );

    // skopeo rebuilds every layer from tar-split + diff/ and re-verifies the diff_ids.
    await skopeoFromStore(bins.skopeo, store, NAME, `${fs.mountpoint}/exported`, "x");
    const exported = await (await OciLayout.open(`${fs.mountpoint}/exported`)).resolveImage("x");
    assert.deepEqual(exported.diffIds, img.diffIds);
    assert.equal(exported.configDigest, img.configDigest);

    // A second export finds the image complete and writes nothing, in either store.
    const before = [...treeState(store.root), ...treeState(cfsDir)];
    const again = await exportComposefsImageToCStorage(cfs, cs, img.manifestDigest, opts);
    assert.equal(again.skippedExisting, true);
    assert.ok(again.layers.every((l) => l.reused));
    assert.deepEqual([...treeState(store.root), ...treeState(cfsDir)], before);
  },
);

/**
 * The runnable fixture image (without busybox) copied by skopeo into a fresh store on `fs` as
 * `localhost/src:v1`, the way podman pulls it; disposing it removes the store.
 */
async function runnableImageInStore(fs: LoopFs, skopeo: string) {
  clearProbeCache(); // a fresh filesystem may reuse an earlier one's device number
  const oci = `${fs.mountpoint}/oci`;
  const img = await buildRunnableImage(oci, "v1", { withoutBusybox: true });
  const store = await tempStore(fs.mountpoint);
  try {
    await skopeoToStore(skopeo, store, oci, "v1", "localhost/src:v1");
  } catch (e) {
    await store[Symbol.asyncDispose]();
    throw e;
  }
  return { img, store, [Symbol.asyncDispose]: () => store[Symbol.asyncDispose]() };
}

storeTest(
  "containers-storage → composefs: exact layer streams, clean deep fsck, objects share blocks",
  ["xfs", "btrfs"],
  [TOOLS.skopeo],
  async (fs, bins) => {
    await using src = await runnableImageInStore(fs, bins.skopeo);
    const { img, store } = src;
    using cs = await CStorage.open(store.root);
    const cfsDir = `${fs.mountpoint}/composefs`;
    using cfs = await ComposefsRepo.create(cfsDir, { algorithm: "sha512" });
    const chain = layerChainIds(img.diffIds);
    const storedManifest = await cs.imageManifest("localhost/src:v1");
    const opts = { policy: "reflink-required" as const, tagAs: "localhost/src:v1" };

    // A diff/ file whose bytes no longer match tar-split (layer 1): named, its layer stream not
    // registered, no manifest stream and no tag; layer 0 was complete and stays.
    const victim = `${store.root}/overlay/${chain[1]}/diff/var/cache/new`;
    const good = await Deno.readFile(victim);
    await Deno.writeFile(victim, pseudoRandomBytes(good.length, 999));
    await assert.rejects(
      () => importCStorageImageToComposefs(cs, cfs, "localhost/src:v1", opts),
      (e) =>
        e instanceof LayerIntegrityError &&
        /file integrity checksum failed for "var\/cache\/new" \(CRC-64 mismatch\)/.test(e.message),
    );
    assert.deepEqual(cfs.listCategory("streams").sort(), [layerStreamName(img.diffIds[0])]);
    assert.deepEqual(listTags(cfs), []);
    await Deno.writeFile(victim, good);

    // A tar-split whose raw bytes no longer make the layer (512 more zeros after the end
    // blocks, layer 2): every file's CRC still matches, the rebuilt tar's diff_id does not.
    const tarSplit = `${store.root}/overlay-layers/${chain[2]}.tar-split.gz`;
    const original = await Deno.readFile(tarSplit);
    await Deno.writeFile(tarSplit, withLongerTrailer(original));
    await assert.rejects(
      () => importCStorageImageToComposefs(cs, cfs, "localhost/src:v1", opts),
      (e) => e instanceof DigestMismatchError && e.expected === img.diffIds[2],
    );
    assert.deepEqual(
      cfs.listCategory("streams").sort(),
      img.diffIds.slice(0, 2).map(layerStreamName).sort(),
    );
    assert.deepEqual(listTags(cfs), []);
    await Deno.writeFile(tarSplit, original);

    const r = await importCStorageImageToComposefs(cs, cfs, "localhost/src:v1", opts);
    assert.equal(r.configDigest, img.configDigest);
    assert.equal(r.manifestDigest, `sha256:${sha256hex(storedManifest)}`);
    assert.deepEqual(
      r.layers.map((l) => [l.layerId, l.skipped]),
      chain.map((id, i) => [id, i < 2]),
    );
    assert.deepEqual(r.tags, ["localhost/src:v1", bootcTagFor(r.manifestDigest)]);
    assert.equal(r.manifestSkipped, false);
    for (const l of r.layers.filter((l) => !l.skipped)) {
      assert.deepEqual(l.stats!.placedBytes, {
        reflink: l.stats!.externalBytes,
        copy_file_range: 0,
        readwrite: 0,
      });
    }

    // Each layer stream reassembles to the very tar of the layout (hence to its diff_id).
    for (const [i, diffId] of img.diffIds.entries()) {
      const tar = await reassembled(cfs, diffId);
      assert.equal(`sha256:${sha256hex(tar)}`, diffId);
      assert.deepEqual(tar, img.layerTars[i], `layer ${i}`);
    }
    const stored = await readStoredImage(cfs, "localhost/src:v1");
    assert.deepEqual(stored.manifestBytes, storedManifest);
    assert.deepEqual(stored.configBytes, img.configBytes);
    const fsck = await fsckRepo(cfs, { deep: true });
    assert.ok(fsck.ok, JSON.stringify(fsck.findings));
    assert.equal(fsck.layersVerified, img.diffIds.length);
    assert.equal(fsck.ociImagesChecked, 1);

    // Every object is the blocks of every diff/ file that has its content: files with the
    // same content, like usr/share/dup-a and dup-b, are one object, cloned from the first and
    // given to the others.
    const files = await objectFiles(cfs, "localhost/src:v1");
    let compared = 0;
    for (const [i, diffId] of img.diffIds.entries()) {
      for (const f of files.get(diffId)!) {
        if (
          assertSameBlocks(
            objectPath(cfsDir, f.id),
            below(`${store.root}/overlay/${chain[i]}/diff`, f.path),
            `layer ${i} ${f.pathText}`,
          )
        ) compared++;
      }
    }
    assert.ok(compared >= 5, `compared the blocks of ${compared} objects`);
    const dup = (p: string) => files.get(img.diffIds[0])!.find((f) => f.pathText === p)!.id;
    assert.equal(dup("usr/share/dup-a"), dup("usr/share/dup-b"));

    // A second import writes nothing.
    const before = treeState(cfsDir);
    const again = await importCStorageImageToComposefs(cs, cfs, "localhost/src:v1", opts);
    assert.ok(again.layers.every((l) => l.skipped) && again.manifestSkipped);
    assert.equal(again.probe, undefined);
    assert.deepEqual(treeState(cfsDir), before);
  },
);

/** Imports `name` from the store at `storeRoot` into the repository at `cfsDir`, as a process. */
const IMPORT_SCRIPT = `
import { CStorage } from "${new URL("../../lib/stores/cstorage/mod.ts", import.meta.url)}";
import { ComposefsRepo } from "${new URL(
  "../../lib/stores/composefs/repository.ts",
  import.meta.url,
)}";
import { importCStorageImageToComposefs } from "${new URL(
  "../../lib/pipeline/cstorage_to_composefs.ts",
  import.meta.url,
)}";
const [storeRoot, cfsDir, name] = Deno.args;
using cs = await CStorage.open(storeRoot);
using cfs = await ComposefsRepo.open(cfsDir);
await importCStorageImageToComposefs(cs, cfs, name, { policy: "reflink-or-copy" });
`;

storeTest(
  "containers-storage → composefs: a registered layer stream survives a crash without writeback",
  ["xfs", "ext4"],
  [TOOLS.skopeo, { bin: "xfs_io", pkg: "xfsprogs" }],
  async (fs, bins) => {
    await using src = await runnableImageInStore(fs, bins.skopeo);
    const { img, store } = src;
    const cfsDir = `${fs.mountpoint}/composefs`;
    (await ComposefsRepo.create(cfsDir, { algorithm: "sha512" })).close();
    const script = `${store.dir}/import.ts`;
    await Deno.writeTextFile(script, IMPORT_SCRIPT);
    await runOk(["sync", "-f", fs.mountpoint]); // the store is on disk; the import will not be
    // Killed right after the first layer stream's symlink; objects of the next layer may already
    // be linked, never synced. Then a shutdown that flushes the log (names, links) but no file
    // data: only the syncfs the symlink waited for keeps the objects that stream names.
    const killed = await run(
      [Deno.execPath(), "run", "-A", "--quiet", script, store.root, cfsDir, "localhost/src:v1"],
      { env: { [FAULT_AT_ENV]: "composefs.stream-registered#1" } },
    );
    assert.equal(killed.signal, "SIGKILL", killed.stderr);
    await runOk([bins.xfs_io, "-x", "-c", "shutdown -f", fs.mountpoint]);
    await runOk(["umount", fs.mountpoint]);
    await runOk(["mount", "-o", "loop", fs.image, fs.mountpoint]);
    using after = await ComposefsRepo.open(cfsDir);
    const layers = img.diffIds.map(layerStreamName).filter((n) => after.streamObjectId(n));
    assert.equal(layers.length, 1, "one layer stream was registered before the kill");
    const r = await fsckRepo(after, { deep: true });
    assert.equal(r.layersVerified, 1);
    // What may be broken: objects linked after that syncfs (on ext4 they come back empty), none
    // of which the registered stream names.
    using stream = SplitStream.openStream(after, layers[0]);
    const named = new Set(stream.index.objectRefs);
    for (const f of r.findings) {
      assert.equal(f.kind, "object-digest-mismatch", JSON.stringify(f));
      assert.ok(!named.has(f.objectId!), `${f.path} is named by ${layers[0]}`);
    }

    // A rerun replaces such objects instead of trusting their names: the repository is clean.
    using cs = await CStorage.open(store.root);
    await importCStorageImageToComposefs(cs, after, "localhost/src:v1", {
      policy: "reflink-or-copy",
    });
    assert.deepEqual((await fsckRepo(after, { deep: true })).findings, []);
  },
);

storeTest(
  "on ext4 reflink-required writes nothing and names the filesystem; reflink-or-copy copies",
  ["ext4"],
  [TOOLS.skopeo],
  async (fs, bins) => {
    clearProbeCache();
    const oci = `${fs.mountpoint}/oci`;
    const img = await buildRunnableImage(oci, "v1", { withoutBusybox: true });
    const cfsDir = `${fs.mountpoint}/composefs`;
    using cfs = await ComposefsRepo.create(cfsDir, { algorithm: "sha512" });
    await importOciImage(cfs, oci, "v1");
    const files = [...(await objectFiles(cfs, "v1")).values()].flat();
    await using store = await tempStore(fs.mountpoint);
    using cs = await CStorage.open(store.root, { create: true });
    const noReflinks = (e: unknown) =>
      e instanceof ReflinkUnsupportedError && e.code === "EOPNOTSUPP" &&
      /\(ext4\) from .* \(ext4\)/.test(e.message);

    // composefs → containers-storage. A first read creates the store's lock files, as any
    // c/storage reader does; from then on a refused export must leave every byte as it was.
    assert.deepEqual(await cs.listImages(), []);
    const before = [...treeState(store.root), ...treeState(cfsDir)];
    await assert.rejects(
      () => exportComposefsImageToCStorage(cfs, cs, "v1", { policy: "reflink-required" }),
      noReflinks,
    );
    assert.deepEqual([...treeState(store.root), ...treeState(cfsDir)], before);
    const r = await exportComposefsImageToCStorage(cfs, cs, "v1", { policy: "reflink-or-copy" });
    const name = recoveredImageName(img.configDigest);
    assert.deepEqual(r.names, [name]);
    assert.equal(r.stats.filesCloned.reflink, 0);
    assert.equal(r.stats.filesCloned.copy_file_range + r.stats.filesCloned.readwrite, files.length);
    assert.equal(r.stats.layersWritten, img.diffIds.length);
    await skopeoFromStore(bins.skopeo, store, name, `${fs.mountpoint}/exported`, "x");
    const exported = await (await OciLayout.open(`${fs.mountpoint}/exported`)).resolveImage("x");
    assert.deepEqual(exported.diffIds, img.diffIds);

    // … and back into a second composefs repository.
    const cfs2Dir = `${fs.mountpoint}/composefs2`;
    using cfs2 = await ComposefsRepo.create(cfs2Dir, { algorithm: "sha512" });
    const before2 = treeState(cfs2Dir);
    await assert.rejects(
      () => importCStorageImageToComposefs(cs, cfs2, name, { policy: "reflink-required" }),
      noReflinks,
    );
    assert.deepEqual(treeState(cfs2Dir), before2);

    // A copy is made while the file is hashed: a diff/ file one byte longer than its tar entry
    // (layer 1) is named, its copy dropped, its layer not registered; layer 0 was complete.
    {
      const failDir = `${fs.mountpoint}/composefs-failed`;
      using failed = await ComposefsRepo.create(failDir, { algorithm: "sha512" });
      const victim = `${store.root}/overlay/${layerChainIds(img.diffIds)[1]}/diff/var/cache/new`;
      const good = await Deno.readFile(victim);
      await Deno.writeFile(victim, new Uint8Array([0]), { append: true });
      await assert.rejects(
        () => importCStorageImageToComposefs(cs, failed, name, { policy: "reflink-or-copy" }),
        (e) =>
          e instanceof LayerIntegrityError &&
          /"var\/cache\/new" \(expected 70 bytes, found 71\)/.test(e.message),
      );
      assert.deepEqual(failed.listCategory("streams"), [layerStreamName(img.diffIds[0])]);
      assert.deepEqual(
        [...Deno.readDirSync(`${failDir}/objects`)].filter((e) => e.name.startsWith(".")),
        [],
      );
      await Deno.writeFile(victim, good);
    }

    const r2 = await importCStorageImageToComposefs(cs, cfs2, name, {
      policy: "reflink-or-copy",
    });
    assert.equal(r2.manifestDigest, img.manifestDigest);
    for (const l of r2.layers) {
      assert.equal(l.skipped, false);
      assert.equal(l.stats!.placedBytes.reflink, 0);
    }
    assert.equal(r2.layers.reduce((n, l) => n + l.stats!.externalChunks, 0), files.length);
    for (const [i, diffId] of img.diffIds.entries()) {
      assert.deepEqual(await reassembled(cfs2, diffId), img.layerTars[i], `layer ${i}`);
    }
    const fsck = await fsckRepo(cfs2, { deep: true });
    assert.ok(fsck.ok, JSON.stringify(fsck.findings));
  },
);

/**
 * Regular files below one of `dirs` that this process holds open (sources, staged copies); the
 * directories an open store keeps are not counted.
 */
function openFilesBelow(dirs: string[]): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    let target: string;
    let isFile: boolean;
    try {
      target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
      isFile = Deno.statSync(`/proc/self/fd/${e.name}`).isFile;
    } catch {
      continue; // the listing's own fd, closed once listed
    }
    if (isFile && dirs.some((d) => target.startsWith(`${d}/`))) out.push(target);
  }
  return out.sort();
}

storeTest(
  "on ext4 a many-file import shares its work between threads: digests taken while waiting, copies staged and linked ahead; a kill, exact stream, clean deep fsck, no file left open",
  ["ext4"],
  [TOOLS.skopeo],
  async (fs, bins) => {
    clearProbeCache();
    // Large files first (the digest thread falls behind and this thread takes digests from
    // it), then many small ones (this thread falls behind and the digest thread copies ahead).
    const t = new TarBuilder("pax").dir("big");
    for (let i = 0; i < 24; i++) t.file(`big/blob-${i}`, pseudoRandomBytes((4 << 20) + i, 900 + i));
    t.dir("small");
    for (let i = 0; i < 1500; i++) {
      t.file(`small/f-${i}`, pseudoRandomBytes(65 + (i * 131) % 4000, 5000 + i));
    }
    const tar = t.build();
    const oci = `${fs.mountpoint}/oci`;
    const img = await buildOciImage(oci, { layers: [{ tar, compression: "none" }], tag: "many" });
    await using store = await tempStore(fs.mountpoint);
    using cs = await CStorage.open(store.root, { create: true });
    const name = "localhost/many:1";
    await skopeoToStore(bins.skopeo, store, oci, "many", name);
    const cfsDir = `${fs.mountpoint}/composefs`;
    using cfs = await ComposefsRepo.create(cfsDir, { algorithm: "sha512" });
    const leftOpen = () => openFilesBelow([store.root, cfsDir]);
    assert.deepEqual(leftOpen(), []);

    // Killed once this thread has counted 700 objects linked: the digest thread, far ahead in
    // the small files, had linked more (each whole: copied, checked unchanged, then linked).
    // Nothing is broken, no stream registered, and the imports below go on over them.
    const script = `${store.dir}/import.ts`;
    await Deno.writeTextFile(script, IMPORT_SCRIPT);
    const killed = await run(
      [Deno.execPath(), "run", "-A", "--quiet", script, store.root, cfsDir, name],
      { env: { [FAULT_AT_ENV]: "composefs.object-linked#700" } },
    );
    assert.equal(killed.signal, "SIGKILL", killed.stderr);
    let linked = 0;
    for (const d of Deno.readDirSync(`${cfsDir}/objects`)) {
      if (d.isDirectory) linked += [...Deno.readDirSync(`${cfsDir}/objects/${d.name}`)].length;
    }
    assert.ok(linked > 700, `${linked} objects linked, more than the 700 counted at the kill`);
    assert.deepEqual(cfs.listCategory("streams"), []);
    assert.deepEqual((await fsckRepo(cfs, { deep: true })).findings, []);

    // A diff/ file one byte longer than its entry, far into the small files: named, its
    // layer not registered, no copy or source left open.
    const victim = `${store.root}/overlay/${layerChainIds(img.diffIds)[0]}/diff/small/f-1200`;
    const good = await Deno.readFile(victim);
    await Deno.writeFile(victim, new Uint8Array([7]), { append: true });
    await assert.rejects(
      () => importCStorageImageToComposefs(cs, cfs, name, { policy: "reflink-or-copy" }),
      (e) =>
        e instanceof LayerIntegrityError &&
        e.message.includes(
          `"small/f-1200" (expected ${good.length} bytes, found ${good.length + 1})`,
        ),
    );
    assert.deepEqual(cfs.listCategory("streams"), []);
    assert.deepEqual(leftOpen(), []);
    await Deno.writeFile(victim, good);

    const r = await importCStorageImageToComposefs(cs, cfs, name, { policy: "reflink-or-copy" });
    const stats = r.layers[0].stats!;
    assert.equal(stats.externalChunks, 24 + 1500);
    assert.equal(stats.placedBytes.reflink, 0);
    assert.ok(
      stats.hashedWhileWaiting > 0,
      "fs-verity digests taken while the other thread was behind",
    );
    assert.ok(stats.copiedByDigestThread > 0, "copies staged by the digest thread, far ahead");
    assert.deepEqual(await reassembled(cfs, img.diffIds[0]), tar);
    assert.deepEqual((await fsckRepo(cfs, { deep: true })).findings, []);
    assert.deepEqual(leftOpen(), []);
  },
);
