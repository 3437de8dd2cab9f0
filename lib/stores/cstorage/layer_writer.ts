/**
 * Creating an image layer from its exact uncompressed tar, following the external-writer recipe
 * of specs/containers-storage.md §3.5 (c/storage `layerStore.Put` + `applyDiffWithOptions`):
 *
 * 1. take `storage.lock` and `overlay-layers/layers.lock` for writing (waiting for podman);
 * 2. append the record with `flags: {incomplete: true}`, record a token, rewrite `layers.json`;
 * 3. create `overlay/<id>/` (diff, link, `l/` link, lower or empty, work, merged);
 * 4. stream the tar once: every byte is hashed (the DiffID), headers and padding go to the
 *    tar-split file, payloads are CRC-64'd and either written or replaced by a clone of the
 *    content source's file (whose bytes, read back once, are checked against the payload or
 *    stand in for placeholder bytes: {@linkcode ClonedPayloads}), entries are extracted into
 *    `diff/`;
 * 5. check the digest against the announced DiffID, `syncfs`, name the tar-split file;
 * 6. fill in digests, sizes, compression, uid/gid sets, drop `incomplete`, record a token,
 *    rewrite `layers.json`; release the locks.
 *
 * On any failure the layer directory, its `l/` link, the tar-split file and the record are
 * removed again before the locks are released; a crash leaves an `incomplete` record, which
 * c/storage deletes on its next read-write load.
 *
 * @module
 */

import { isErrno } from "../../../ffi/errno.ts";
import { closeQuietly, fsync, openDirAt, syncfs, unlinkAt } from "../../../ffi/fs.ts";
import { Crc64Iso } from "../../digest/crc64.ts";
import { StreamingHash, toHex } from "../../digest/hash.ts";
import { concatBytes } from "../../oci/compression.ts";
import { faultPoint } from "../../fault/fault_point.ts";
import { TAR_BLOCK_SIZE, TarReader } from "../../oci/tar.ts";
import type { CopyPolicy } from "../../reflink/place.ts";
import { discardTempFile, openTempFile, publishTempFile, type TempFile } from "./temp_file.ts";
import {
  type ClonedPayloads,
  type ContentSource,
  DiffWriter,
  type DiffWriteStats,
  type PayloadSink,
  WHITEOUT_PREFIX,
} from "./diff_writer.ts";
import { binaryFromBytes } from "../../oci/binary_string.ts";
import { goBase } from "./entry_path.ts";
import { DiffIdMismatchError, LayerNotFoundError } from "./errors.ts";
import { type JsonObject, readRecordFile, writeRecordFile } from "./json_records.ts";
import { COMPRESSION, goTimeNow, layerRecordJson, parseLayerRecord } from "./layer_record.ts";
import { diffIdHex, layerId } from "./layer_id.ts";
import { LAYER_DIR, MODES, PATHS, TAR_SPLIT_SUFFIX } from "./layout.ts";
import { StoreLocks } from "./lockfile.ts";
import { createLayerDir, removeLayerDir } from "./overlay_layer.ts";
import type { StoreRoot } from "./store_root.ts";
import { DuplicatePathCheck, TarSplitWriter, TRAILER_CHUNK } from "./tar_split.ts";

/** Compression of the blob a layer was received as (recorded, never applied). */
export type BlobCompression = keyof typeof COMPRESSION;

/** One layer to create. */
export interface LayerInput {
  /** `sha256:<hex>` of the uncompressed tar; the tar must hash to it or nothing is kept. */
  diffId: string;
  /** Parent layer id (null for a base layer). */
  parent: string | null;
  /**
   * The exact uncompressed tar, in chunks; called only when the layer is not in the store yet.
   * Chunks must be fresh buffers (they are held by reference while parsed).
   */
  tar: () => AsyncIterable<Uint8Array>;
  /** Digest and size of the blob as distributed (manifest layer descriptor), when known. */
  compressedDigest?: string;
  compressedSize?: number;
  compression?: BlobCompression;
  /** Layer names (rare; c/image leaves layers unnamed). */
  names?: string[];
}

/** How layer files are placed. */
export interface LayerWriteOptions {
  /** Where regular-file content is cloned from; without it payloads are written from the tar. */
  contentSource?: ContentSource;
  /** Default `reflink-or-copy`. */
  policy?: CopyPolicy;
  /**
   * What the tar carries for files the content source serves (default `compare`): the real
   * payload, checked against the clone; `replace`: placeholders, the clone's bytes count
   * instead; `trust`: the real payload, the clone not read back. See {@linkcode ClonedPayloads}.
   */
  clonedPayloads?: ClonedPayloads;
}

/** What {@linkcode writeLayer} did. */
export interface LayerWriteResult {
  id: string;
  diffId: string;
  /** True when a complete layer with this id was already there (the tar was not read). */
  reused: boolean;
  /** Uncompressed tar length (when written). */
  diffSize?: number;
  stats?: DiffWriteStats;
}

/**
 * Creates one layer, or finds it already present. See the module doc for the steps.
 *
 * @example
 * ```ts ignore
 * const r = await writeLayer(root, {
 *   diffId: "sha256:ab…", parent: null, tar: () => layout.layerTarChunks(desc),
 *   compressedDigest: desc.digest, compressedSize: desc.size, compression: "gzip",
 * }, { contentSource: (req) => objectFdFor(req) });
 * ```
 */
export async function writeLayer(
  root: StoreRoot,
  input: LayerInput,
  opts: LayerWriteOptions = {},
): Promise<LayerWriteResult> {
  root.assertWritable("write a layer");
  const id = layerId(input.parent, input.diffId);
  root.ensureLayout();
  await using locks = await StoreLocks.acquire(root.fd, root.path, {
    graph: "write",
    layers: "write",
  });
  const layersFile = `${root.path}/${PATHS.layersDir}/${PATHS.layersJson}`;
  const records = readRecordFile(root.fd, root.path, PATHS.layersDir, PATHS.layersJson);
  const parsed = records.map((r) => parseLayerRecord(r, layersFile));
  const save = () => {
    // The token first (c/storage ≥ 1.45 order): a reader that sees the new token reloads.
    locks.recordWrite("layers");
    writeRecordFile(root.fd, PATHS.layersDir, PATHS.layersJson, records);
  };

  const found = parsed.findIndex((l) => l.id === id);
  if (found >= 0 && !parsed[found].incomplete) return { id, diffId: input.diffId, reused: true };
  if (found >= 0) {
    // Garbage of an earlier crash (ours or c/storage's): delete it as c/storage would on load.
    dropLayerFiles(root, id);
    records.splice(found, 1);
  }
  if (input.parent !== null) {
    const p = parsed.find((l) => l.id === input.parent);
    if (!p || p.incomplete) {
      throw new LayerNotFoundError(
        layersFile,
        `parent layer ${input.parent} of ${id} is ${p ? "incomplete" : "not in the store"}`,
      );
    }
  }
  const names = dedupe(input.names ?? []);
  for (const rec of records) {
    if (Array.isArray(rec.names) && names.some((n) => (rec.names as unknown[]).includes(n))) {
      rec.names = (rec.names as string[]).filter((n) => !names.includes(n));
    }
  }

  const record = layerRecordJson({
    id,
    parent: input.parent,
    names,
    created: goTimeNow(),
    compressedDigest: "",
    compressedSize: 0,
    diffDigest: "",
    diffSize: 0,
    compression: 0,
    uidset: [],
    gidset: [],
    incomplete: true,
  });
  records.push(record);
  save();
  faultPoint("cstorage.layer-incomplete-recorded");

  try {
    const built = await buildLayer(root, id, input, opts);
    const finished: JsonObject = layerRecordJson({
      id,
      parent: input.parent,
      names,
      created: record.created as string,
      compressedDigest: input.compressedDigest ?? input.diffId,
      compressedSize: input.compressedSize ?? built.size,
      diffDigest: input.diffId,
      diffSize: built.size,
      compression: COMPRESSION[input.compression ?? "none"],
      uidset: built.uids,
      gidset: built.gids,
      incomplete: false,
    });
    records[records.indexOf(record)] = finished;
    save();
    faultPoint("cstorage.layer-complete");
    return { id, diffId: input.diffId, reused: false, diffSize: built.size, stats: built.stats };
  } catch (e) {
    try {
      dropLayerFiles(root, id);
      const at = records.indexOf(record);
      if (at >= 0) records.splice(at, 1);
      save();
    } catch {
      // The original error is the one to report; what could not be removed stays flagged
      // incomplete, and is deleted by the next writer (c/storage or unistore).
    }
    throw e;
  }
}

/** Removes a layer's directory, `l/` link and tar-split file (missing pieces are fine). */
export function dropLayerFiles(root: StoreRoot, id: string): void {
  root.withDir(
    PATHS.driverDir,
    (driverFd) => removeLayerDir(driverFd, `${root.path}/${PATHS.driverDir}`, id),
  );
  try {
    unlinkAt(root.fd, `${PATHS.layersDir}/${id}${TAR_SPLIT_SUFFIX}`);
  } catch (e) {
    if (!isErrno(e, "ENOENT")) throw e;
  }
}

function dedupe(names: readonly string[]): string[] {
  return [...new Set(names)];
}

interface BuiltLayer {
  size: number;
  uids: number[];
  gids: number[];
  stats: DiffWriteStats;
}

/** Steps 3–5: directory, extraction, tar-split, digest check, sync, tar-split named. */
async function buildLayer(
  root: StoreRoot,
  id: string,
  input: LayerInput,
  opts: LayerWriteOptions,
): Promise<BuiltLayer> {
  const where = `${root.path}: layer ${id}`;
  const driverPath = `${root.path}/${PATHS.driverDir}`;
  root.withDir(
    PATHS.driverDir,
    (driverFd) => createLayerDir(driverFd, driverPath, id, input.parent),
  );
  const diffFd = openDirAt(root.fd, `${PATHS.driverDir}/${id}/${LAYER_DIR.diff}`);
  const layersDirFd = openDirAt(root.fd, PATHS.layersDir);
  let tmp: TempFile | undefined;
  let diff: DiffWriter | undefined;
  let ts: TarSplitWriter | undefined;
  try {
    tmp = openTempFile(layersDirFd, MODES.tarSplit);
    const tsFd = tmp.fd;
    diff = new DiffWriter(diffFd, where, {
      layerId: id,
      diffId: input.diffId,
      contentSource: opts.contentSource,
      policy: opts.policy ?? "reflink-or-copy",
      clonedPayloads: opts.clonedPayloads ?? "compare",
    });
    ts = new TarSplitWriter(tsFd, `${where} tar-split`);
    const result = await extract(input, where, diff, ts);
    diff.finish();
    await ts.finish();
    const found = `sha256:${result.hex}`;
    if (found !== input.diffId) throw new DiffIdMismatchError(where, input.diffId, found);
    fsync(tsFd);
    // One syncfs makes every diff file durable before the record says the layer is complete.
    syncfs(root.fd, root.path);
    // Replaces a stale file of a crashed attempt, if any.
    publishTempFile(tmp, layersDirFd, `${id}${TAR_SPLIT_SUFFIX}`);
    faultPoint("cstorage.layer-diff-written");
    return { size: result.size, uids: result.uids, gids: result.gids, stats: diff.stats };
  } catch (e) {
    diff?.abort();
    ts?.abort();
    throw e;
  } finally {
    if (tmp) discardTempFile(tmp, layersDirFd);
    closeQuietly(layersDirFd);
    closeQuietly(diffFd);
  }
}

/** The single pass over the tar: hash, tar-split, extraction. */
async function extract(
  input: LayerInput,
  where: string,
  diff: DiffWriter,
  ts: TarSplitWriter,
): Promise<{ hex: string; size: number; uids: number[]; gids: number[] }> {
  diffIdHex(input.diffId, where);
  const source = closableSource(input.tar());
  try {
    return await extractFrom(new TarReader(source, where), where, diff, ts);
  } finally {
    // After a failure the caller's stream (an open blob, a splitstream) must still be closed.
    await source.close();
  }
}

/** An async iterable whose iterator can be closed early, so a failed write releases its input. */
function closableSource(iterable: AsyncIterable<Uint8Array>) {
  const it = iterable[Symbol.asyncIterator]();
  let done = false;
  return {
    [Symbol.asyncIterator]: () => ({
      next: async () => {
        const r = await it.next();
        if (r.done) done = true;
        return r;
      },
    }),
    async close() {
      if (!done) {
        done = true;
        await it.return?.();
      }
    },
  };
}

async function extractFrom(
  tar: TarReader,
  where: string,
  diff: DiffWriter,
  ts: TarSplitWriter,
): Promise<{ hex: string; size: number; uids: number[]; gids: number[] }> {
  const sha = new StreamingHash("sha256");
  let size = 0;
  const hash = (b: Uint8Array) => {
    sha.update(b);
    size += b.length;
  };
  const uids = new Set<number>();
  const gids = new Set<number>();
  const dups = new DuplicatePathCheck(where);
  let padding: Uint8Array = new Uint8Array(0);
  let index = 0;
  for (let e = await tar.next(); e !== null; e = await tar.next(), index++) {
    const name = binaryFromBytes(e.path);
    dups.add(name);
    hash(e.rawHeader);
    // tar-split's segment before an entry: the previous entry's padding, then its headers. Go's
    // reader returns a global pax header before reading its data's padding, so that padding
    // starts the next segment instead.
    let header = e.rawHeader;
    let carried: Uint8Array = new Uint8Array(0);
    if (e.type === "pax-global") {
      const end = TAR_BLOCK_SIZE + e.declaredSize;
      carried = header.subarray(end);
      header = header.subarray(0, end);
    }
    await ts.addSegment([padding, header]);
    const sink: PayloadSink = await diff.entry(e, index, { update: hash });
    let crcBytes: Uint8Array;
    try {
      if (sink.replacement) {
        // Placeholders: the clone's bytes were hashed in their place.
        for await (const _ of tar.readPayload()) { /* skipped */ }
        crcBytes = sink.replacement.crc;
      } else {
        const crc = new Crc64Iso();
        for await (const chunk of tar.readPayload()) {
          hash(chunk);
          crc.update(chunk);
          sink.write(chunk);
        }
        crcBytes = crc.digestBytes();
      }
    } catch (err) {
      sink.abort();
      throw err;
    }
    await sink.finish(crcBytes);
    // Go's reader reports a global pax header with size 0 (and uid/gid 0).
    const global = e.type === "pax-global";
    const tsSize = global ? 0 : e.declaredSize;
    await ts.addFile(name, tsSize, tsSize > 0 ? crcBytes : null);
    const own = await tar.readPadding();
    hash(own);
    padding = carried.length === 0 ? own : concatBytes([carried, own]);
    if (!goBase(name).startsWith(WHITEOUT_PREFIX)) {
      uids.add(global ? 0 : e.uid >>> 0);
      gids.add(global ? 0 : e.gid >>> 0);
    }
  }
  // After the last entry: padding plus the end blocks Go's reader consumed (up to 1024 bytes)
  // in one segment, then the rest in chunks of at most 1 MiB, as tar-split's disassembler does.
  let pending: Uint8Array[] = [padding];
  let pendingLength = padding.length;
  let limit = padding.length + 1024;
  for await (const chunk of tar.readTrailer()) {
    hash(chunk);
    let c = chunk;
    while (c.length > 0) {
      const take = Math.min(c.length, limit - pendingLength);
      pending.push(c.subarray(0, take));
      pendingLength += take;
      c = c.subarray(take);
      if (pendingLength === limit) {
        await ts.addSegment(pending);
        pending = [];
        pendingLength = 0;
        limit = TRAILER_CHUNK;
      }
    }
  }
  if (pendingLength > 0) await ts.addSegment(pending);
  const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);
  return { hex: toHex(sha.digest()), size, uids: sorted(uids), gids: sorted(gids) };
}
