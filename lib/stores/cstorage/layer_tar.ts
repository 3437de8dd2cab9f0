/**
 * Rebuilding a layer's exact tar from its tar-split file and its `diff/` directory, with the
 * checks c/storage makes (tar-split `asm.WriteOutputTarStream`; specs/containers-storage.md
 * §4.3): segments are written verbatim; for a file entry with size > 0 the content is read from
 * the layer's `diff/` (then from its lowers, as the overlay file getter does) and its CRC-64
 * must match the entry ("file integrity checksum failed" otherwise). The whole stream must then
 * hash to the layer's `diff-digest` and have its `diff-size`.
 *
 * This is what `skopeo copy containers-storage:…`, `podman push` and `unistore internals
 * cat-layer` get, and what lets a layer move to another store without changing its DiffID.
 *
 * @module
 */

import { SysError } from "../../../ffi/errno.ts";
import { close, closeQuietly, O, openAt, openDirAt, read } from "../../../ffi/fs.ts";
import { Crc64Iso } from "../../digest/crc64.ts";
import { StreamingHash, toHex } from "../../digest/hash.ts";
import { gzipDecompressStream } from "../../oci/compression.ts";
import { type BinaryString, bytesFromBinary } from "../../oci/binary_string.ts";
import { goClean, layerComponents, printable } from "./entry_path.ts";
import { LayerIntegrityError, LayerNotFoundError } from "./errors.ts";
import type { LayerRecord } from "./layer_record.ts";
import { LAYER_DIR, PATHS, tarSplitPath } from "./layout.ts";
import { readLowers, resolveLinkId } from "./overlay_layer.ts";
import type { StoreRoot } from "./store_root.ts";
import { readTarSplitBatches } from "./tar_split.ts";

/** Read size for file content. */
const CHUNK = 1 << 20;

/**
 * Read size for the gzipped tar-split. Its JSON compresses about 15 times, and all that one
 * read inflates to is held at once: 1 MiB reads held 18 MiB of a 4× image's largest layer, the
 * largest allocation of its import.
 */
const TAR_SPLIT_CHUNK = 64 << 10;

/**
 * Anything that takes the tar bytes in order (a stream writer, a hash). `write` must take the
 * whole chunk (a `WritableStreamDefaultWriter` does; `Deno.FsFile.write` may write less); a
 * returned promise is awaited before the next chunk. Chunks are fresh buffers the sink may keep.
 */
export interface TarByteSink {
  write(chunk: Uint8Array): unknown;
}

/** Where {@linkcode fileChunks} reads, before copying out exactly what it read. */
let chunkReadBuffer: Uint8Array<ArrayBuffer> | null = null;

/**
 * The chunks of a file below `fd`, read `size` bytes at a time, each in a fresh buffer of its
 * own size (consumers may keep them). Fresh 1 MiB buffers per read cost a deep fsck most of
 * its time in GC.
 */
function* fileChunks(fd: number, size = CHUNK): Generator<Uint8Array> {
  const buf = (chunkReadBuffer ??= new Uint8Array(CHUNK)).subarray(0, size);
  for (;;) {
    const n = read(fd, buf);
    if (n === 0) return;
    yield buf.slice(0, n);
  }
}

/** A layer's tar-split bytes, decompressed. */
async function* tarSplitChunks(root: StoreRoot, layerId: string): AsyncGenerator<Uint8Array> {
  let fd: number;
  try {
    fd = openAt(root.fd, tarSplitPath(layerId), O.RDONLY | O.NOFOLLOW);
  } catch (e) {
    if (e instanceof SysError && e.is("ENOENT")) {
      throw new LayerIntegrityError(
        `${root.path}/${tarSplitPath(layerId)}`,
        `layer ${layerId} has no tar-split data; its tar cannot be rebuilt`,
      );
    }
    throw e;
  }
  const where = `${root.path}/${tarSplitPath(layerId)}`;
  try {
    yield* gzipDecompressStream(
      (async function* () {
        yield* fileChunks(fd, TAR_SPLIT_CHUNK);
      })(),
      where,
    );
  } finally {
    close(fd);
  }
}

/**
 * Finds tar-split file names in a layer's `diff/`, then in the `diff/` of each layer in its
 * `lower` file (the overlay driver's file getter). Directories are opened one component at a
 * time without following symlinks.
 */
export class DiffFileGetter {
  readonly #dirs: (number | null)[] = [];
  /**
   * Per diff dir, the directories of the last parent path opened below it, outermost first, and
   * the child of the innermost one found absent there (so a run of files below an absent
   * directory tries it once).
   */
  readonly #chains: { comps: BinaryString[]; fds: number[]; absent: BinaryString | null }[] = [];
  #lowers: string[] | null = null;

  constructor(readonly root: StoreRoot, readonly layerId: string) {}

  #diffDir(i: number): number | null | undefined {
    if (i < this.#dirs.length) return this.#dirs[i];
    if (i === 0) {
      this.#dirs.push(
        openDirAt(this.root.fd, `${PATHS.driverDir}/${this.layerId}/${LAYER_DIR.diff}`),
      );
      return this.#dirs[0];
    }
    const driverPath = `${this.root.path}/${PATHS.driverDir}`;
    this.#lowers ??= this.root.withDir(PATHS.driverDir, (fd) => readLowers(fd, this.layerId));
    if (i - 1 >= this.#lowers.length) return undefined;
    const id = this.root.withDir(
      PATHS.driverDir,
      (fd) => resolveLinkId(fd, driverPath, this.#lowers![i - 1]),
    );
    let dir: number | null = null;
    if (id !== null) {
      try {
        dir = openDirAt(this.root.fd, `${PATHS.driverDir}/${id}/${LAYER_DIR.diff}`);
      } catch (e) {
        if (!(e instanceof SysError && e.is("ENOENT"))) throw e;
      }
    }
    this.#dirs.push(dir);
    return dir;
  }

  /** An fd on the file named `name` (as in the tar), or null when no layer has it. */
  open(name: BinaryString): number | null {
    const comps = layerComponents(goClean(name));
    if (!Array.isArray(comps) || comps.length === 0) return null;
    const last = bytesFromBinary(comps[comps.length - 1]);
    for (let i = 0;; i++) {
      const dir = this.#diffDir(i);
      if (dir === undefined) return null;
      if (dir === null) continue;
      const parent = this.#parentDir(i, dir, comps, comps.length - 1);
      if (parent === null) continue;
      const fd = absentAsNull(() => openAt(parent, last, O.RDONLY | O.NOFOLLOW));
      if (fd !== null) return fd;
    }
  }

  // The directory of the first `depth` components of `comps` below diff dir `i`, or null when
  // that layer lacks it. The directories of the last one looked up stay open: a tar lists a
  // directory's files together and walks a tree depth first, so the next file's parent is
  // usually the same, a child or a sibling (opening every component again per file was a tenth
  // of an import), and only what differs from the longest prefix still open is opened.
  #parentDir(i: number, dir: number, comps: readonly BinaryString[], depth: number): number | null {
    const chain = this.#chains[i] ??= { comps: [], fds: [], absent: null };
    let keep = 0;
    while (keep < chain.comps.length && keep < depth && chain.comps[keep] === comps[keep]) keep++;
    if (keep < chain.comps.length) {
      for (const fd of chain.fds.splice(keep)) closeQuietly(fd);
      chain.comps.length = keep;
      chain.absent = null;
    }
    if (keep < depth && chain.absent === comps[keep]) return null;
    while (chain.comps.length < depth) {
      const at = chain.fds.at(-1) ?? dir;
      const c = comps[chain.comps.length];
      const next = absentAsNull(() => openDirAt(at, bytesFromBinary(c)));
      if (next === null) {
        chain.absent = c;
        return null;
      }
      chain.comps.push(c);
      chain.fds.push(next);
      chain.absent = null;
    }
    return chain.fds.at(-1) ?? dir;
  }

  close(): void {
    for (const c of this.#chains) for (const fd of c?.fds ?? []) closeQuietly(fd);
    this.#chains.length = 0;
    for (const fd of this.#dirs) if (fd !== null) closeQuietly(fd);
    this.#dirs.length = 0;
  }
}

/** Runs `open`, answering null where a path is absent (or is no directory, or a symlink). */
function absentAsNull(open: () => number): number | null {
  try {
    return open();
  } catch (e) {
    if (e instanceof SysError && (e.is("ENOENT") || e.is("ENOTDIR") || e.is("ELOOP"))) return null;
    throw e;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Options of {@linkcode layerTarChunks} and {@linkcode writeLayerTar}. */
export interface LayerTarOptions {
  /**
   * Check each file's CRC-64 against tar-split as it goes by (default true), as c/storage
   * does: a stream consumer learns of a changed file before its bytes are passed on. Without
   * it only sizes are checked per file; the layer's digest still covers every byte.
   */
  perFileCrc?: boolean;
}

/**
 * The exact tar of `layer`, in chunks. Throws {@linkcode LayerIntegrityError} on a missing
 * tar-split file, a missing `diff/` file, or a file whose size or CRC-64 differs from its
 * entry. It does not check the digest: see {@linkcode writeLayerTar}. The caller holds the
 * layer store's read lock for the duration.
 */
export async function* layerTarChunks(
  root: StoreRoot,
  layer: LayerRecord,
  opts: LayerTarOptions = {},
): AsyncGenerator<Uint8Array> {
  const perFileCrc = opts.perFileCrc ?? true;
  const getter = new DiffFileGetter(root, layer.id);
  const where = `${root.path}: layer ${layer.id}`;
  try {
    const splitPath = `${root.path}/${tarSplitPath(layer.id)}`;
    // In batches: one step of the async iteration per run of lines, not per entry.
    for await (const batch of readTarSplitBatches(tarSplitChunks(root, layer.id), splitPath)) {
      for (const e of batch) {
        if (e.type === "segment") {
          if (e.payload.length > 0) yield e.payload;
          continue;
        }
        if (e.size === 0) continue;
        const fd = getter.open(e.name);
        if (fd === null) {
          throw new LayerIntegrityError(
            where,
            `${JSON.stringify(printable(e.name))}: file missing from diff/`,
          );
        }
        const crc = perFileCrc ? new Crc64Iso() : null;
        let n = 0;
        try {
          for (const chunk of fileChunks(fd)) {
            crc?.update(chunk);
            n += chunk.length;
            yield chunk;
          }
        } finally {
          close(fd);
        }
        if (n !== e.size || (crc && (e.crc === null || !sameBytes(crc.digestBytes(), e.crc)))) {
          throw new LayerIntegrityError(
            where,
            `file integrity checksum failed for ${JSON.stringify(printable(e.name))}` +
              (n !== e.size ? ` (expected ${e.size} bytes, found ${n})` : " (CRC-64 mismatch)"),
          );
        }
      }
    }
  } finally {
    getter.close();
  }
}

/** One piece of a layer tar, as tar-split describes it. */
export type LayerTarPart =
  | { type: "segment"; bytes: Uint8Array }
  | {
    type: "file";
    /** The entry name, printable (for messages and paths shown to people). */
    nameText: string;
    size: number;
    /**
     * Opens the content in `diff/` (or a lower's) read-only: an fd to clone from, which the
     * caller closes; null when no layer has the file. Only valid during the iteration.
     */
    open(): number | null;
  };

/**
 * A layer tar as parts, in batches (one per run of tar-split lines decompressed at once): raw
 * segments (headers, padding, end blocks) and file entries with a way to open each file's
 * content in `diff/`, so a consumer can rebuild the tar while cloning the payloads
 * (containers-storage → composefs) instead of copying them. The content is not checked here: a
 * consumer checks the rebuilt tar against the DiffID, and names a changed file with
 * {@linkcode checkLayerFiles} (tar-split's CRC-64s) once that failed.
 */
export async function* layerTarPartBatches(
  root: StoreRoot,
  layer: LayerRecord,
): AsyncGenerator<LayerTarPart[]> {
  const getter = new DiffFileGetter(root, layer.id);
  const where = `${root.path}/${tarSplitPath(layer.id)}`;
  try {
    for await (const entries of readTarSplitBatches(tarSplitChunks(root, layer.id), where)) {
      const parts: LayerTarPart[] = [];
      for (const e of entries) {
        if (e.type === "segment") {
          if (e.payload.length > 0) parts.push({ type: "segment", bytes: e.payload });
          continue;
        }
        parts.push({
          type: "file",
          nameText: printable(e.name),
          size: e.size,
          open: () => getter.open(e.name),
        });
      }
      if (parts.length > 0) yield parts;
    }
  } finally {
    getter.close();
  }
}

/** What a rebuilt tar hashed to. */
export interface LayerTarResult {
  layerId: string;
  size: number;
  digest: string;
}

/**
 * Writes `layer`'s exact tar to `sink` and checks it against the layer's `diff-digest` and
 * `diff-size` at the end (throws {@linkcode LayerIntegrityError} on a mismatch, after the bytes
 * were written: a consumer must discard them then).
 */
export async function writeLayerTar(
  root: StoreRoot,
  layer: LayerRecord,
  sink: TarByteSink,
  opts: LayerTarOptions = {},
): Promise<LayerTarResult> {
  if (!layer.diffDigest) {
    throw new LayerNotFoundError(
      `${root.path}: layer ${layer.id}`,
      "layer has no diff-digest (a container layer, or a zstd:chunked layer without one)",
    );
  }
  const sha = new StreamingHash("sha256");
  let size = 0;
  for await (const chunk of layerTarChunks(root, layer, opts)) {
    sha.update(chunk);
    size += chunk.length;
    await sink.write(chunk);
  }
  const digest = `sha256:${toHex(sha.digest())}`;
  if (digest !== layer.diffDigest) {
    throw new LayerIntegrityError(
      `${root.path}: layer ${layer.id}`,
      `rebuilt tar does not match diff-digest: expected ${layer.diffDigest}, found ${digest}`,
    );
  }
  if (layer.diffSize !== undefined && layer.diffSize >= 0 && layer.diffSize !== size) {
    throw new LayerIntegrityError(
      `${root.path}: layer ${layer.id}`,
      `rebuilt tar has ${size} bytes, diff-size says ${layer.diffSize}`,
    );
  }
  return { layerId: layer.id, size, digest };
}

/**
 * Checks `layer` against its diff-digest and diff-size by rebuilding its tar, hashing only:
 * the digest covers every byte, so the per-file CRC-64 (computed in JavaScript over every byte,
 * a tenth of a deep check's CPU time) runs only after a mismatch, in a second pass that names
 * the `diff/` file that changed, as c/storage's per-file check would. Throws
 * {@linkcode LayerIntegrityError} as {@linkcode writeLayerTar} does. The caller holds the layer
 * store's read lock.
 */
export async function verifyLayer(root: StoreRoot, layer: LayerRecord): Promise<LayerTarResult> {
  try {
    return await writeLayerTar(root, layer, { write() {} }, { perFileCrc: false });
  } catch (e) {
    if (!(e instanceof LayerIntegrityError)) throw e;
    // Names the culprit when it is a diff/ file; else the digest error stands (tar-split).
    await checkLayerFiles(root, layer);
    throw e;
  }
}

/**
 * Reads every `diff/` file of `layer` against its tar-split entry (size, CRC-64), as c/storage
 * does when it rebuilds a tar. Throws {@linkcode LayerIntegrityError} naming the first file that
 * differs or is missing; returns when all match (the layer's digest is not checked). The caller
 * holds the layer store's read lock.
 */
export async function checkLayerFiles(root: StoreRoot, layer: LayerRecord): Promise<void> {
  for await (const _ of layerTarChunks(root, layer)) { /* each file checked on the way */ }
}
