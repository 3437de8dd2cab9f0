// Layer files placed from a content source: on XFS every regular file in diff/ shares its
// extents with the source file (FIEMAP SHARED), the layer still rebuilds to its DiffID and
// exports through skopeo; a source with the wrong bytes is caught and the half-written layer
// rolled back; on ext4 the policy decides between failing before any change and copying.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { close, O, openAt, openDir, openDirAt, readDir, S, statAt } from "../../../ffi/fs.ts";
import { OciLayout } from "../../../lib/oci/layout.ts";
import { TarReader } from "../../../lib/oci/tar.ts";
import { ReflinkUnsupportedError } from "../../../lib/reflink/errors.ts";
import { sharedBytesAt } from "../../../lib/reflink/shared.ts";
import {
  type ContentSource,
  CStorage,
  DiffIdMismatchError,
  layerChainIds,
  LayerIntegrityError,
} from "../../../lib/stores/cstorage/mod.ts";
import { buildRunnableImage } from "../../fixtures/cstorage/images.ts";
import { importOciImage } from "../../fixtures/cstorage/oci_import.ts";
import { skopeoFromStore, storeTest, tempStore, TOOLS } from "../../fixtures/cstorage/podman.ts";
import { pseudoRandomBytes } from "../../fixtures/oci/mod.ts";

/**
 * Extracts every regular-file payload of every layer of `oci:<dir>:<tag>` into `side/`, as
 * separate files on the same filesystem, and returns a content source serving them by
 * (DiffID, path).
 */
async function sideFiles(ociDir: string, tag: string, side: string) {
  const layout = await OciLayout.open(ociDir);
  const img = await layout.resolveImage(tag);
  const files = new Map<string, string>();
  await Deno.mkdir(side, { recursive: true });
  for (const [i, desc] of img.manifest.layers.entries()) {
    const tar = new TarReader(layout.layerTarChunks(desc));
    for (let e = await tar.next(); e !== null; e = await tar.next()) {
      if ((e.type !== "file" && e.type !== "contiguous") || e.payloadSize === 0) continue;
      const name = `${side}/${files.size}`;
      using f = await Deno.open(name, { write: true, createNew: true });
      for await (const c of tar.readPayload()) await f.write(c);
      const key = `${img.diffIds[i]} ${createHash("sha256").update(e.path).digest("hex")}`;
      files.set(key, name);
    }
    for await (const _ of tar.readTrailer()) { /* read to the end: closes the blob */ }
  }
  const keyOf = (diffId: string, path: Uint8Array) =>
    `${diffId} ${createHash("sha256").update(path).digest("hex")}`;
  return { img, files, keyOf };
}

/** Regular files with content below the directory `dirfd`, as raw relative paths. */
function regularFiles(dirfd: number, prefix: Uint8Array[] = []): Uint8Array[][] {
  const out: Uint8Array[][] = [];
  for (const e of readDir(dirfd)) {
    const st = statAt(dirfd, e.nameBytes);
    if ((st.mode & S.IFMT) === S.IFDIR) {
      const fd = openDirAt(dirfd, e.nameBytes);
      try {
        out.push(...regularFiles(fd, [...prefix, e.nameBytes]));
      } finally {
        close(fd);
      }
    } else if ((st.mode & S.IFMT) === S.IFREG && st.size > 0) out.push([...prefix, e.nameBytes]);
  }
  return out;
}

const joinPath = (parts: Uint8Array[]) => {
  const out: number[] = [];
  parts.forEach((p, i) => {
    if (i > 0) out.push(0x2f);
    out.push(...p);
  });
  return new Uint8Array(out);
};

/** A snapshot of what a store holds on disk (names and file contents), for "unchanged" checks. */
async function storeSnapshot(root: string): Promise<string> {
  const lines: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(`${root}/${rel}`)) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (p.endsWith(".lock")) continue; // tokens are rewritten on every write session
      lines.push(p);
      if (e.isDirectory && !p.endsWith("/diff")) await walk(p);
      else if (e.isFile && p.endsWith(".json")) lines.push(await Deno.readTextFile(`${root}/${p}`));
    }
  };
  await walk("");
  return lines.sort().join("\n");
}

storeTest(
  "layer files cloned from a content source share extents with it on XFS",
  ["xfs"],
  [TOOLS.skopeo],
  async (fs, bins) => {
    await using store = await tempStore(fs.mountpoint);
    const oci = `${fs.mountpoint}/oci`;
    await buildRunnableImage(oci, "v1", { withoutBusybox: true, withContiguous: true });
    const { img, files, keyOf } = await sideFiles(oci, "v1", `${fs.mountpoint}/side`);
    const sideDir = openDir(`${fs.mountpoint}/side`);
    try {
      // Control: before the import the side files share nothing, so the check below can fail.
      for (const f of files.values()) {
        assert.equal(sharedBytesAt(sideDir, f.split("/").pop()!).sharedBytes, 0);
      }
      using cs = await CStorage.open(store.root, { create: true });
      let sawIncomplete = 0;
      const source: ContentSource = async (req) => {
        const name = files.get(keyOf(req.diffId, req.entry.path));
        assert.ok(name, `no side file for ${req.pathText}`);
        if (sawIncomplete === 0) {
          // While the layer is being written its record says so, and no image exists yet.
          const layers = JSON.parse(
            await Deno.readTextFile(`${store.root}/overlay-layers/layers.json`),
          );
          assert.deepEqual(layers.find((l: { id: string }) => l.id === req.layerId)?.flags, {
            incomplete: true,
          });
          assert.equal(
            await Deno.stat(`${store.root}/overlay-images/images.json`).catch(() => null),
            null,
          );
          sawIncomplete++;
        }
        return openAt(sideDir, name.split("/").pop()!, O.RDONLY);
      };
      const r = await importOciImage(cs, oci, "v1", ["localhost/shared:v1"], {
        contentSource: source,
      });
      assert.equal(sawIncomplete, 1);
      const clonedFiles = r.layers.reduce((n, l) => n + l.stats!.cloned.reflink, 0);
      assert.equal(clonedFiles, files.size, "every file with content was cloned");
      assert.ok(
        r.layers.every((l) => l.stats!.writtenBytes === 0),
        "no payload was written from the tar",
      );

      let checked = 0;
      for (const id of layerChainIds(img.diffIds)) {
        const diff = `${store.root}/overlay/${id}/diff`;
        const diffFd = openDir(diff);
        try {
          for (const parts of regularFiles(diffFd)) {
            const rel = joinPath(parts);
            const s = sharedBytesAt(diffFd, rel);
            const shown = new TextDecoder().decode(rel);
            assert.ok(
              s.mappedBytes > 0 && s.sharedBytes === s.mappedBytes,
              `${id}/diff/${shown}: ${JSON.stringify(s)}`,
            );
            checked++;
          }
        } finally {
          close(diffFd);
        }
      }
      assert.ok(checked >= files.size - 1, `checked ${checked} files`); // sh is a hard link of bash

      const report = await cs.checkImage("localhost/shared:v1", { deep: true });
      assert.ok(report.ok, JSON.stringify(report.problems));
      await skopeoFromStore(bins.skopeo, store, "localhost/shared:v1", `${fs.mountpoint}/out`, "x");
      assert.deepEqual(
        (await (await OciLayout.open(`${fs.mountpoint}/out`)).resolveImage("x")).diffIds,
        img.diffIds,
      );
    } finally {
      close(sideDir);
    }
  },
);

storeTest(
  "a content source with the wrong bytes is caught and the layer rolled back",
  ["xfs"],
  [],
  async (fs) => {
    await using store = await tempStore(fs.mountpoint);
    const oci = `${fs.mountpoint}/oci`;
    await buildRunnableImage(oci, "v1", { withoutBusybox: true });
    const { img, files, keyOf } = await sideFiles(oci, "v1", `${fs.mountpoint}/side`);
    const sideDir = openDir(`${fs.mountpoint}/side`);
    // Same size, other bytes, for one file of layer 1 (var/cache/new, 70 bytes).
    await Deno.writeFile(`${fs.mountpoint}/side/wrong`, pseudoRandomBytes(70, 999));
    await Deno.writeFile(`${fs.mountpoint}/side/short`, pseudoRandomBytes(69, 12));
    const sourceWith = (bad: string): ContentSource => (req) => {
      const name = req.pathText === "var/cache/new"
        ? bad
        : files.get(keyOf(req.diffId, req.entry.path))!;
      return openAt(sideDir, name.split("/").pop()!, O.RDONLY);
    };
    try {
      using cs = await CStorage.open(store.root, { create: true });
      // Layer 0 goes in; layer 1 fails on the wrong file.
      await assert.rejects(
        () =>
          importOciImage(cs, oci, "v1", ["localhost/bad:v1"], {
            contentSource: sourceWith("wrong"),
          }),
        (e) =>
          e instanceof LayerIntegrityError &&
          /var\/cache\/new.*differ from the tar payload/.test(e.message),
      );
      const [id0, id1] = layerChainIds(img.diffIds);
      const layers = await cs.layers();
      assert.deepEqual(layers.map((l) => [l.id, l.incomplete]), [[id0, false]]);
      const afterFirst = await storeSnapshot(store.root);
      assert.ok(!afterFirst.includes(id1), "nothing of layer 1 is left");
      assert.deepEqual((await Array.fromAsync(Deno.readDir(`${store.root}/overlay/l`))).length, 1);

      await assert.rejects(
        () =>
          importOciImage(cs, oci, "v1", ["localhost/bad:v1"], {
            contentSource: sourceWith("short"),
          }),
        /content source has 69 bytes, the tar entry 70/,
      );
      assert.equal(
        await storeSnapshot(store.root),
        afterFirst,
        "a failed layer leaves the store as it was",
      );

      // Without verification the wrong bytes go in, and only a deep check (or an export) notices.
      await importOciImage(cs, oci, "v1", ["localhost/bad:v1"], {
        contentSource: sourceWith("wrong"),
        clonedPayloads: "trust",
      });
      assert.ok((await cs.checkImage("localhost/bad:v1")).ok);
      const deep = await cs.checkImage("localhost/bad:v1", { deep: true });
      assert.deepEqual(deep.problems.map((p) => p.object), [`layer ${id1}`]);
      assert.match(
        deep.problems[0].message,
        /file integrity checksum failed for "var\/cache\/new"/,
      );
    } finally {
      close(sideDir);
    }
  },
);

/**
 * The layer tar with every regular file's content replaced by zero bytes of the same length: what
 * a composefs splitstream parsed without reading its objects looks like.
 */
async function* withPlaceholders(tar: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const r = new TarReader(tar);
  for (let e = await r.next(); e !== null; e = await r.next()) {
    yield e.rawHeader.slice();
    const placeholder = (e.type === "file" || e.type === "contiguous") && e.payloadSize > 0;
    for await (const c of r.readPayload()) yield placeholder ? new Uint8Array(c.length) : c.slice();
    yield (await r.readPadding()).slice();
  }
  for await (const c of r.readTrailer()) yield c.slice();
}

storeTest(
  "placeholder payloads: the clones' bytes stand in, and the DiffID still checks them",
  ["xfs"],
  [],
  async (fs) => {
    await using store = await tempStore(fs.mountpoint);
    const oci = `${fs.mountpoint}/oci`;
    await buildRunnableImage(oci, "v1", { withoutBusybox: true });
    const { img, files, keyOf } = await sideFiles(oci, "v1", `${fs.mountpoint}/side`);
    await Deno.writeFile(`${fs.mountpoint}/side/wrong`, pseudoRandomBytes(70, 999));
    const sideDir = openDir(`${fs.mountpoint}/side`);
    const sourceWith = (bad?: string): ContentSource => (req) => {
      const name = bad && req.pathText === "var/cache/new"
        ? bad
        : files.get(keyOf(req.diffId, req.entry.path))!;
      return openAt(sideDir, name.split("/").pop()!, O.RDONLY);
    };
    try {
      using cs = await CStorage.open(store.root, { create: true });
      const opts = { clonedPayloads: "replace" as const, transform: withPlaceholders };
      const [id0, id1] = layerChainIds(img.diffIds);
      await assert.rejects(
        () =>
          importOciImage(cs, oci, "v1", ["localhost/ph:v1"], {
            ...opts,
            contentSource: sourceWith("wrong"),
          }),
        (e) => e instanceof DiffIdMismatchError && e.expected === img.diffIds[1],
      );
      assert.deepEqual(
        (await cs.layers()).map((l) => l.id),
        [id0],
        "the failed layer left nothing",
      );
      assert.ok(!(await storeSnapshot(store.root)).includes(id1));

      const r = await importOciImage(cs, oci, "v1", ["localhost/ph:v1"], {
        ...opts,
        contentSource: sourceWith(),
      });
      // Layer 0 was already stored by the failed attempt; the others were cloned.
      assert.deepEqual(r.layers.map((l) => l.reused), [true, false, false, false, false]);
      const report = await cs.checkImage("localhost/ph:v1", { deep: true });
      assert.ok(report.ok, JSON.stringify(report.problems));
      const diffFd = openDir(`${store.root}/overlay/${id1}/diff`);
      try {
        const s = sharedBytesAt(diffFd, "var/cache/new");
        assert.ok(s.sharedBytes > 0 && s.sharedBytes === s.mappedBytes);
      } finally {
        close(diffFd);
      }
    } finally {
      close(sideDir);
    }
  },
);

storeTest(
  "on ext4 the policy decides: refuse before any change, or copy",
  ["ext4"],
  [],
  async (fs) => {
    await using store = await tempStore(fs.mountpoint);
    const oci = `${fs.mountpoint}/oci`;
    await buildRunnableImage(oci, "v1", { withoutBusybox: true });
    const { files, keyOf } = await sideFiles(oci, "v1", `${fs.mountpoint}/side`);
    const source: ContentSource = (req) =>
      openAt(-100, files.get(keyOf(req.diffId, req.entry.path))!, O.RDONLY);
    using cs = await CStorage.open(store.root, { create: true });
    await assert.rejects(
      () =>
        importOciImage(cs, oci, "v1", ["localhost/x:v1"], {
          contentSource: source,
          policy: "reflink-required",
        }),
      ReflinkUnsupportedError,
    );
    assert.deepEqual(await cs.layers(), []);
    assert.deepEqual(
      (await Array.fromAsync(Deno.readDir(`${store.root}/overlay`))).map((e) => e.name),
      ["l"],
      "no layer directory is left",
    );
    const r = await importOciImage(cs, oci, "v1", ["localhost/x:v1"], { contentSource: source });
    const copied = r.layers.reduce(
      (n, l) => n + l.stats!.cloned.copy_file_range + l.stats!.cloned.readwrite,
      0,
    );
    assert.equal(copied, files.size);
    assert.equal(r.layers.reduce((n, l) => n + l.stats!.cloned.reflink, 0), 0);
    const report = await cs.checkImage("localhost/x:v1", { deep: true });
    assert.ok(report.ok, JSON.stringify(report.problems));
  },
);
