/**
 * composefs → containers-storage: an image stored in a composefs repository rebuilt in a
 * containers-storage store (overlay driver) without the network, its regular files cloned from
 * the composefs objects (DESIGN §4: "composefs is the hub"; bootc issue #2247 `set-unified full`
 * backfill and `fsck images --repair`).
 *
 * 1. The image is read from composefs: manifest and config (checked against their digests),
 *    and the layer splitstream of each diff_id (specs/composefs-repo.md §6).
 * 2. When containers-storage already holds the image complete (record with id = config digest
 *    hex, top layer = the chain of the diff_ids, the manifest stored, every requested name),
 *    nothing is written at all.
 * 3. Otherwise, when some layer is missing, reflinks are probed from composefs's `objects/`
 *    into the store; under `reflink-required` a filesystem without them fails here, before
 *    anything is written, naming both filesystems.
 * 4. The store's writer (lib/stores/cstorage/image_writer.ts) creates each missing layer (present
 *    ones are skipped) from a tar stream made of the splitstream's inline bytes, with each
 *    external chunk (a file payload over 64 bytes) stood in for by placeholder bytes, and a
 *    content source that hands the writer the composefs object of each such file to clone.
 *    Payloads of at most 64 bytes are inline in the splitstream and written from it.
 *    So the layer's tar-split, `diff/` tree, DiffID and the image id are c/storage's own for
 *    the same tar, and each `diff/` file shares its extents with its composefs object.
 * 5. Big data (config under its digest, manifest under `manifest-<digest>` and `manifest`) and
 *    the image record with `names` come last; a failure before leaves no image and no
 *    incomplete layer behind (the writer removes a failed layer before releasing its lock).
 *
 * Why `clonedPayloads: "replace"`: the tar stream never reads an object (placeholders), the
 * writer reads each clone back exactly once and feeds those bytes to the layer's DiffID hash
 * and the tar-split CRC-64 in place of the placeholders. So every byte of every object is read
 * once, and the DiffID checked at the end of each layer covers the bytes actually placed in
 * `diff/` (a corrupt object fails the layer, which is then removed). `compare` would read each
 * object twice (payload and clone); `trust` would read it once but check the payload read from
 * the object, not the clone.
 *
 * @module
 */

import { isErrno } from "../../ffi/errno.ts";
import { statAt } from "../../ffi/fs.ts";
import { sha256Digest } from "../oci/digest.ts";
import { layerCompression } from "../oci/manifest.ts";
import { ReflinkUnsupportedError } from "../reflink/errors.ts";
import type { CopyPolicy, PlaceMethod } from "../reflink/place.ts";
import { probeReflink, type ReflinkProbe } from "../reflink/probe.ts";
import { ComposefsNotFoundError } from "../stores/composefs/errors.ts";
import { readStoredImage, type StoredImage } from "../stores/composefs/oci_image.ts";
import { type ObjectId, objectPathname } from "../stores/composefs/object_id.ts";
import type { ComposefsRepo } from "../stores/composefs/repository.ts";
import { CONTENT_TYPE, INLINE_CONTENT_MAX, SplitStream } from "../stores/composefs/splitstream.ts";
import { BIG_DATA_KEYS } from "../stores/cstorage/big_data.ts";
import {
  type ContentRequest,
  type CStorage,
  type DiffWriteStats,
  type ImageLayerInput,
  layerChainIds,
} from "../stores/cstorage/mod.ts";
import { LayerStreamError } from "./errors.ts";
import { placeholderTar } from "./placeholder_tar.ts";

/** Options of {@linkcode exportComposefsImageToCStorage}. */
export interface CStorageExportOptions {
  /** `reflink-required` fails (before writing) without reflinks; `reflink-or-copy` copies. */
  policy: CopyPolicy;
  /**
   * Names the image takes in containers-storage (e.g. `quay.io/example/os:42`,
   * `localhost/bootc`); a name another image has moves to this one, as with `podman tag`.
   * Default: {@linkcode recoveredImageName} of the config digest, as bootc names images it
   * rebuilds from composefs.
   */
  names?: string[];
}

/** One layer of the exported image. */
export interface ExportedLayer {
  diffId: string;
  /** containers-storage layer id (chain id of the diff_ids up to this one). */
  layerId: string;
  /** The layer was already in the store, complete: nothing of it was read or written. */
  reused: boolean;
  /** What the writer did (new layers only). */
  stats?: DiffWriteStats;
}

/** Counters over all layers written. */
export interface CStorageExportStats {
  layersWritten: number;
  layersReused: number;
  /** Regular files placed from composefs objects, by how the bytes got there. */
  filesCloned: Record<PlaceMethod, number>;
  /** Bytes of those files (each read once, from the clone or while copying). */
  clonedBytes: number;
  /** Composefs objects opened to be cloned (one per file over 64 bytes). */
  objectsOpened: number;
  /** Files of at most 64 bytes, written from the splitstream's inline data. */
  inlineFiles: number;
  inlineBytes: number;
}

/** What {@linkcode exportComposefsImageToCStorage} did. */
export interface CStorageExportResult {
  /** The containers-storage image id: hex of the config digest. */
  imageId: string;
  configDigest: string;
  manifestDigest: string;
  diffIds: string[];
  /** The names asked for (the image may have more). */
  names: string[];
  /** The image was already complete with these names: nothing was written. */
  skippedExisting: boolean;
  /** A new image record was created (false when one with this id was updated or skipped). */
  created: boolean;
  layers: ExportedLayer[];
  /** The reflink probe (absent when no layer had to be written). */
  probe?: ReflinkProbe;
  stats: CStorageExportStats;
}

/**
 * The name bootc gives an image it rebuilds in containers-storage from composefs:
 * `localhost/bootc-recovered:<first 12 hex digits of the config digest>`
 * (specs/bootc-unified-storage.md §3, `reconcile_unified_storage`).
 *
 * @example
 * ```ts
 * recoveredImageName("sha256:0123456789abcdef0123"); // "localhost/bootc-recovered:0123456789ab"
 * ```
 */
export function recoveredImageName(configDigest: string): string {
  const hex = configDigest.slice(configDigest.indexOf(":") + 1);
  return `localhost/bootc-recovered:${hex.slice(0, 12)}`;
}

/**
 * One layer splitstream as a tar stream whose external chunks are placeholder bytes, plus the
 * object behind each placeholder, keyed by the archive offset where it starts (which is the
 * payload offset of the tar entry it belongs to).
 */
class PlaceholderLayer {
  /** Objects read from the splitstream whose entry the writer has not asked for yet. */
  readonly #pending = new Map<number, { id: ObjectId; size: number }>();

  constructor(
    readonly repo: ComposefsRepo,
    readonly diffId: string,
    readonly streamId: ObjectId,
    readonly where: string,
    /** Counts the objects opened. */
    readonly counter: { objectsOpened: number },
  ) {}

  /**
   * The tar bytes. The splitstream is read one chunk ahead of what is handed out, so that when
   * the tar reader has a header, the external chunk right after it is already known: the
   * content source is asked for the entry before its payload is read.
   */
  async *tar(): AsyncGenerator<Uint8Array> {
    using stream = SplitStream.openObject(
      this.repo,
      this.streamId,
      CONTENT_TYPE.ociLayer,
      this.where,
    );
    yield* placeholderTar(stream.chunks(), (c, offset) => {
      if (c.kind === "inline") return c.bytes;
      const size = objectSize(this.repo, c.id, this.where);
      if (this.#pending.has(offset)) {
        throw new LayerStreamError(this.where, `two external chunks at byte ${offset}`);
      }
      this.#pending.set(offset, { id: c.id, size });
      return size;
    }, { readAhead: true });
    // Every entry has been handed to the writer by now (only the trailer was still unread).
    const stray = [...this.#pending].sort(([a], [b]) => a - b)[0];
    if (stray) {
      throw new LayerStreamError(
        this.where,
        `external chunk (object ${stray[1].id}) at byte ${stray[0]} is not the payload of a ` +
          `regular file over ${INLINE_CONTENT_MAX} bytes`,
      );
    }
  }

  /** The content source for one regular file: its object's fd, or null for inline payloads. */
  open(req: ContentRequest): number | null {
    const at = req.entry.payloadOffset;
    const x = this.#pending.get(at);
    const entry = `${this.where} entry ${JSON.stringify(req.pathText)}`;
    if (x === undefined) {
      if (req.size > INLINE_CONTENT_MAX) {
        throw new LayerStreamError(
          entry,
          `expected the ${req.size}-byte payload at byte ${at} to be one external chunk, ` +
            `found inline data (a payload over ${INLINE_CONTENT_MAX} bytes must be an object)`,
        );
      }
      return null;
    }
    this.#pending.delete(at);
    if (req.size <= INLINE_CONTENT_MAX || x.size !== req.size) {
      throw new LayerStreamError(
        entry,
        req.size <= INLINE_CONTENT_MAX
          ? `expected the ${req.size}-byte payload inline, found object ${x.id}`
          : `expected a ${req.size}-byte object, found object ${x.id} of ${x.size} bytes`,
      );
    }
    const fd = this.repo.openObject(x.id);
    this.counter.objectsOpened++;
    return fd;
  }
}

function objectSize(repo: ComposefsRepo, id: ObjectId, where: string): number {
  try {
    return statAt(repo.objectsDirfd(), objectPathname(id)).size;
  } catch (e) {
    if (isErrno(e, "ENOENT") || e instanceof ComposefsNotFoundError) {
      throw new LayerStreamError(where, `references object ${id}, which is missing`);
    }
    throw e;
  }
}

/**
 * True when the store holds the image complete: its record (id = config digest hex) with the
 * expected top layer, every layer of the chain complete, config and manifest big data, and
 * every name in `names`.
 */
async function imageComplete(
  cstore: CStorage,
  imageId: string,
  configDigest: string,
  manifestDigest: string,
  chain: readonly string[],
  names: readonly string[],
): Promise<boolean> {
  const rec = (await cstore.listImages()).find((i) => i.id === imageId);
  if (!rec || rec.topLayer !== (chain.at(-1) ?? null)) return false;
  if (!names.every((n) => rec.names.includes(n))) return false;
  const keys = [BIG_DATA_KEYS.config(configDigest), BIG_DATA_KEYS.manifestFor(manifestDigest)];
  if (!keys.every((k) => rec.bigDataNames.includes(k))) return false;
  return (await missingLayers(cstore, chain)).length === 0;
}

/** The ids of `chain` that the store does not hold complete. */
async function missingLayers(cstore: CStorage, chain: readonly string[]): Promise<string[]> {
  const complete = new Set((await cstore.layers()).filter((l) => !l.incomplete).map((l) => l.id));
  return chain.filter((id) => !complete.has(id));
}

/** Probes FICLONE from composefs's `objects/` (the clone sources) into the store's graph root. */
function probeInto(cfsRepo: ComposefsRepo, cstore: CStorage): ReflinkProbe {
  return probeReflink(cstore.root.fd, cfsRepo.probeDirfd());
}

/**
 * Rebuilds the composefs image `imageRef` (a tag or manifest digest) in containers-storage,
 * cloning every file over 64 bytes from its composefs object. Same layer DiffIDs, same image id
 * (config digest), c/storage's tar-split and big data; layers already in the store are
 * skipped, and an image already complete (with every requested name) is not touched. See the
 * module doc for the steps.
 *
 * @throws {ReflinkUnsupportedError} under `reflink-required` when composefs and the store cannot
 *   share blocks: nothing was written; the message names both filesystems.
 * @throws {DiffIdMismatchError} (from the store) when a layer's objects do not rebuild its
 *   DiffID: that layer was removed again and no image was recorded.
 *
 * @example
 * ```ts ignore
 * using cfs = await ComposefsRepo.open("/sysroot/composefs", { readOnly: true });
 * using store = await CStorage.open("/sysroot/ostree/bootc/storage");
 * const r = await exportComposefsImageToCStorage(cfs, store, "quay.io/example/os:42", {
 *   policy: "reflink-required", names: ["quay.io/example/os:42"],
 * });
 * console.log(r.imageId, r.stats.filesCloned.reflink, r.stats.clonedBytes);
 * ```
 */
export async function exportComposefsImageToCStorage(
  cfsRepo: ComposefsRepo,
  cstore: CStorage,
  imageRef: string | StoredImage,
  opts: CStorageExportOptions,
): Promise<CStorageExportResult> {
  const stored = typeof imageRef === "string" ? await readStoredImage(cfsRepo, imageRef) : imageRef;
  const { configDigest, manifestDigest, diffIds } = stored;
  // The store names the image by the sha256 of the config bytes, whatever digest names it here.
  const imageId = sha256Digest(stored.configBytes).slice("sha256:".length);
  const names = [...new Set(opts.names ?? [recoveredImageName(configDigest)])];
  const chain = layerChainIds(diffIds);
  const stats: CStorageExportStats = {
    layersWritten: 0,
    layersReused: 0,
    filesCloned: { reflink: 0, copy_file_range: 0, readwrite: 0 },
    clonedBytes: 0,
    objectsOpened: 0,
    inlineFiles: 0,
    inlineBytes: 0,
  };
  const base = { imageId, configDigest, manifestDigest, diffIds, names };

  if (await imageComplete(cstore, imageId, configDigest, manifestDigest, chain, names)) {
    stats.layersReused = chain.length;
    return {
      ...base,
      skippedExisting: true,
      created: false,
      layers: diffIds.map((diffId, i) => ({ diffId, layerId: chain[i], reused: true })),
      stats,
    };
  }

  let probe: ReflinkProbe | undefined;
  if ((await missingLayers(cstore, chain)).length > 0) {
    probe = probeInto(cfsRepo, cstore);
    if (!probe.supported && opts.policy === "reflink-required") {
      throw new ReflinkUnsupportedError(
        probe.code ?? "EOPNOTSUPP",
        `${cstore.path} (${probe.filesystem}) from ${cfsRepo.path} (${probe.sourceFilesystem})`,
        probe.reason,
      );
    }
  }

  // The writer creates layers one after the other; `current` is the one whose tar it reads.
  let current: PlaceholderLayer | null = null;
  const layers: ImageLayerInput[] = diffIds.map((diffId, i) => {
    const desc = stored.manifest.layers[i];
    const compression = layerCompression(desc.mediaType);
    const streamId = stored.layerStreams.get(diffId)!;
    const where = `${cfsRepo.path}/streams/oci-layer-${diffId}`;
    return {
      tar: () => {
        current = new PlaceholderLayer(cfsRepo, diffId, streamId, where, stats);
        return current.tar();
      },
      // The blob as the manifest distributes it, recorded as c/image records a pulled layer.
      compressedDigest: compression ? desc.digest : undefined,
      compressedSize: compression ? desc.size : undefined,
      compression: compression ?? undefined,
    };
  });
  const contentSource = (req: ContentRequest): number | null => {
    const layer = current as PlaceholderLayer | null;
    if (layer === null || layer.diffId !== req.diffId) {
      throw new LayerStreamError(
        `layer ${req.diffId}`,
        "content requested for a layer whose stream is not being read",
      );
    }
    return layer.open(req);
  };

  const r = await cstore.writeImage({
    config: stored.configBytes,
    manifest: stored.manifestBytes,
    manifestDigest,
    names,
    layers,
  }, { contentSource, policy: opts.policy, clonedPayloads: "replace" });

  const out: ExportedLayer[] = r.layers.map((l) => ({
    diffId: l.diffId,
    layerId: l.id,
    reused: l.reused,
    stats: l.stats,
  }));
  for (const l of out) {
    if (l.reused || !l.stats) {
      stats.layersReused++;
      continue;
    }
    stats.layersWritten++;
    for (const m of Object.keys(stats.filesCloned) as PlaceMethod[]) {
      stats.filesCloned[m] += l.stats.cloned[m];
    }
    stats.clonedBytes += l.stats.clonedBytes;
    stats.inlineFiles += l.stats.written;
    stats.inlineBytes += l.stats.writtenBytes;
  }
  return { ...base, skippedExisting: false, created: r.created, layers: out, probe, stats };
}
