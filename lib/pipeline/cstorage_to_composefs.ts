/**
 * containers-storage → composefs: an image of a containers-storage store (overlay driver)
 * imported into a composefs repository as the OCI streams composefs-rs writes, its file objects
 * cloned from the layers' `diff/` files (bootc PR #2205 `pull_composefs_unified` stage 2,
 * `LocalFetchOpt::ZeroCopy`; DESIGN §4).
 *
 * 1. The image is read from the store: config (big data `sha256:<id>`, which must hash to the
 *    image id), manifest (the bytes the store holds, often the registry's, with compressed layer
 *    digests: kept as they are, their sha256 is the manifest digest in composefs), and the layer
 *    chain, whose `diff-digest`s must be the config's `rootfs.diff_ids`.
 * 2. When a layer stream is missing, reflinks are probed from the store into the repository;
 *    under `reflink-required` a filesystem without them fails here, before anything is written.
 * 3. Each missing layer's exact tar is rebuilt from its tar-split and `diff/` files
 *    ({@linkcode CStorage.layerTarPartBatches}) and split as composefs-rs splits a layer
 *    (specs/composefs-repo.md §5.10): headers, padding, small payloads inline; each regular
 *    file over 64 bytes becomes an object CLONED from its `diff/` file, named by the fs-verity
 *    digest of the bytes placed (measured by the kernel in secure repositories). The digest
 *    thread reads those bytes once, for the fs-verity digest and the layer's sha256, which must
 *    equal the diff_id before the stream is registered (`syncfs`, then the symlink); a file's
 *    CRC-64 (tar-split's own check) is only computed to name a culprit once the sha256 failed.
 *    Files whose fs-verity digest this thread takes while the digest thread is behind are read
 *    twice, once on each thread. Where nothing can be cloned (copy mode), the digest thread
 *    copies the files it is far ahead on, and links them as objects where they are named by
 *    its userspace digest: this thread then only writes their references.
 * 4. Then the config stream (named refs: each diff_id → its layer stream) and the manifest
 *    stream (`config:<digest>` and the diff_ids), each holding the JSON bytes as one object;
 *    then the tags. Present streams are skipped, so a second import writes nothing.
 *
 * A failure leaves at most objects no stream references (GC removes them) and the streams of
 * layers that were complete; no manifest stream, no tag.
 *
 * @module
 */

import { close, closeQuietly, read } from "../../ffi/fs.ts";
import { openFileLimit, releaseFreeMemory } from "../../ffi/resources.ts";
import { toHex } from "../digest/hash.ts";
import { sha256Digest } from "../oci/digest.ts";
import { DigestMismatchError } from "../oci/errors.ts";
import { parseImageConfig, parseManifest } from "../oci/manifest.ts";
import { TarReader } from "../oci/tar.ts";
import { ReflinkUnsupportedError } from "../reflink/errors.ts";
import {
  cloneToTmpfile,
  type CopyPolicy,
  discardClone,
  type PlaceMethod,
  type TmpClone,
} from "../reflink/place.ts";
import { probeReflink, type ReflinkProbe } from "../reflink/probe.ts";
import { RepoReadOnlyError } from "../stores/composefs/errors.ts";
import {
  type ImportedLayer,
  layerStreamName,
  writeImageStreams,
} from "../stores/composefs/oci_image.ts";
import type { ObjectId } from "../stores/composefs/object_id.ts";
import type { ComposefsRepo, ObjectOutcome } from "../stores/composefs/repository.ts";
import {
  CONTENT_TYPE,
  INLINE_CONTENT_MAX,
  SplitStreamWriter,
} from "../stores/composefs/splitstream.ts";
import type { LayerSplitStats } from "../stores/composefs/tar_layer.ts";
import {
  type CStorage,
  LayerIntegrityError,
  type LayerRecord,
  type LayerTarPart,
} from "../stores/cstorage/mod.ts";
import { LayerStreamError, PipelineError } from "./errors.ts";
import { type FileDigests, LayerDigests, type PendingDigests } from "./layer_digests.ts";
import { placeholderTarBatches } from "./placeholder_tar.ts";
import { assertUnchanged, type SourceVersion, sourceVersion } from "../reflink/source_version.ts";
import {
  countShare,
  emptyDedupeStats,
  type OstreeDedupeStats,
  shareWithComposefsObject,
  shareWithOstreeObject,
} from "./block_sharing.ts";
import type { OstreeFileIndex } from "./ostree_dedupe.ts";
import type { OstreeRepo } from "../stores/ostree/repo.ts";
import { ByteQueue } from "./byte_queue.ts";
import { Fifo } from "./fifo.ts";

/**
 * Mode of a new object: what composefs-rs gives objects (0644), as
 * lib/stores/composefs/repository.ts writes them; another mode is still a valid object, but
 * would differ from the objects composefs-rs and `ensureObjectFromFd` write.
 */
const OBJECT_MODE = 0o644;
/** Read size for small payloads read from `diff/`. */
const READ_CHUNK = 1 << 20;

/** Options of {@linkcode importCStorageImageToComposefs}. */
export interface CStorageImportOptions {
  /** `reflink-required` fails (before writing) without reflinks; `reflink-or-copy` copies. */
  policy: CopyPolicy;
  /** Tag for the image in the repository (`streams/refs/oci/<encoded>`); default none. */
  tagAs?: string | null;
  /** Also tag `localhost/bootc-<manifest digest>` (bootc's host image GC root); default true. */
  bootcTag?: boolean;
  /**
   * An ostree commit of the same image (a deployment pulled before unification): each file
   * placed is also deduplicated with the commit's object at its path, in the same pass, while
   * its pages are cached (see lib/pipeline/ostree_dedupe.ts). Reflinks only.
   */
  shareWithOstree?: { repo: OstreeRepo; files: OstreeFileIndex };
}

/** Counters of one layer split from containers-storage. */
export interface CStorageLayerStats extends LayerSplitStats {
  /** Bytes of external chunks placed into new or existing objects, by how they were placed. */
  placedBytes: Record<PlaceMethod, number>;
  /** Files whose fs-verity digest the placing thread computed, the digest thread being behind. */
  hashedWhileWaiting: number;
  /** Files the digest thread copied itself, being far ahead (copy mode only). */
  copiedByDigestThread: number;
}

/** One layer of the imported image. */
export interface CStorageImportedLayer extends ImportedLayer {
  /** The containers-storage layer it was read from. */
  layerId: string;
  stats?: CStorageLayerStats;
}

/** What {@linkcode importCStorageImageToComposefs} did. */
export interface CStorageImportResult {
  /** The containers-storage image id (hex of the config digest). */
  imageId: string;
  manifestDigest: string;
  configDigest: string;
  diffIds: string[];
  manifestStreamId: ObjectId;
  configStreamId: ObjectId;
  layers: CStorageImportedLayer[];
  /** Tags created or confirmed. */
  tags: string[];
  /** The manifest stream existed before: the image was already complete. */
  manifestSkipped: boolean;
  /** The reflink probe (absent when no layer had to be written). */
  probe?: ReflinkProbe;
  /** What sharing with `shareWithOstree` did, over the layers imported (not the skipped). */
  ostreeShared?: OstreeDedupeStats;
}

/** Probes FICLONE from the store's graph root into composefs's `objects/` (or its root). */
function probeFrom(cstore: CStorage, cfsRepo: ComposefsRepo): ReflinkProbe {
  return probeReflink(cfsRepo.probeDirfd(), cstore.root.fd);
}

/**
 * A file of `diff/` on its way to becoming an object: its digests are being computed on the
 * digest thread; {@linkcode placeFile} clones it and links the object once they are in.
 */
interface PendingFile {
  /** The source in `diff/`: open until it is placed. */
  srcFd: number;
  /** What the source was when opened: the bytes hashed and the bytes cloned must be these. */
  version: SourceVersion;
  digests: PendingDigests;
  /** The digests, when this thread computed them itself rather than wait ({@linkcode stealWhileWaiting}). */
  stolen: FileDigests | null;
  /** The tar entry's payload size. */
  expected: number;
  nameText: string;
  what: string;
}

/**
 * Files placed between two returns of freed heap memory to the kernel (ffi/resources.ts): often
 * enough that the resident size stays flat in the image's size, rarely enough to cost nothing.
 */
const TRIM_EVERY_FILES = 2048;

/** How files are placed: the policy, and whether the probe already ruled reflinks out. */
interface Placement {
  policy: CopyPolicy;
  copyOnly: boolean;
}

/**
 * Most files handed to the digest thread and not yet placed, each holding one fd. Large, so
 * that this thread can run ahead into a layer's many small files while the digest thread is
 * still reading its big ones; smaller where the open-file limit is low (a quarter of it, so
 * the stores' own descriptors and other processes' sharing of the limit still fit).
 */
const MAX_FILES_IN_FLIGHT = 1024;

function filesInFlight(): number {
  return Math.max(16, Math.min(MAX_FILES_IN_FLIGHT, Math.floor(openFileLimit() / 4)));
}

/** Hands `srcFd` to the digest thread (and, with a checksum, to the ostree dedupe there). */
function hashFile(
  digests: LayerDigests,
  srcFd: number,
  opts: { what: string; expected: number; nameText: string; ostreeChecksum: string },
): PendingFile {
  const version = sourceVersion(srcFd);
  const p = digests.file(srcFd, version, opts.what, opts.ostreeChecksum);
  return { srcFd, version, digests: p, stolen: null, ...opts };
}

/**
 * Checks a pending file's size against the tar entry, clones it (or copies it, as `policy`
 * allows) into an unnamed file of `repo`, checks the source is still the version that was
 * hashed, and links the object under its fs-verity digest (secure repositories: measured by
 * the kernel). Releases the staged file, and the source fd once the digest thread is done with
 * it (at once, or through `lingering` for a file whose digest this thread stole).
 *
 * A clone waits for the digests, because the digest thread may first make the source share
 * its ostree object's blocks, which the clone must then share too. A copy shares nothing, so
 * it is made while the digest thread hashes the same bytes, unless the digest thread, far
 * ahead, already staged it (see lib/pipeline/layer_digests.ts). (Copying on this thread when
 * the file is handed to the digest thread, up to a thousand files ahead, measured slower.)
 */
async function placeFile(
  repo: ComposefsRepo,
  f: PendingFile,
  place: Placement,
  where: string,
  lingering: Fifo<Promise<void>>,
): Promise<{
  id: ObjectId;
  size: number;
  method: PlaceMethod;
  outcome: ObjectOutcome;
  share: FileDigests["share"];
  /** The copy linked was the digest thread's. */
  copiedAhead: boolean;
}> {
  let tmp: TmpClone | null = null;
  try {
    const stage = () =>
      cloneToTmpfile(f.srcFd, repo.objectsDirfd(true), {
        ...place,
        mode: OBJECT_MODE,
        what: f.what,
        size: f.version.size,
        stopAtSize: true, // the version is checked once copied, below
      });
    // Settled already (the digest thread is far ahead): it may have staged the copy itself.
    let d = f.stolen ?? (f.digests.settled ? await f.digests : null);
    if (place.copyOnly && !d?.copy && !d?.linked) tmp = stage();
    d ??= await f.digests;
    if (d.linked) {
      // Copied and linked there, as the object of the bytes it hashed (checked unchanged).
      if (tmp) discardClone(tmp); // both copied (it settled meanwhile): keep the linked one
      tmp = null;
      repo.linkedElsewhere();
      if (d.size !== f.expected) throw sizeMismatch(where, f.nameText, f.expected, d.size);
      return {
        id: toHex(d.verity!),
        size: d.size,
        method: d.linked.method,
        outcome: d.linked.outcome,
        share: d.share,
        copiedAhead: true,
      };
    }
    let copiedAhead = false;
    if (d.copy) {
      if (tmp) discardClone(d.copy); // both copied (it settled meanwhile): keep one
      else [tmp, copiedAhead] = [d.copy, true];
    }
    if (d.size !== f.expected) {
      throw sizeMismatch(where, f.nameText, f.expected, d.size);
    }
    tmp ??= stage();
    // The bytes placed are the bytes hashed: the source is still the version both started from
    // (a copy the digest thread staged was checked there, once made).
    if (!copiedAhead) assertUnchanged(f.srcFd, f.version, f.what);
    const staged = tmp;
    tmp = null; // finishStaged releases the staged file on every path
    const r = repo.finishStaged(staged, { digest: () => d.verity! });
    const sharesOstree = d.share?.outcome === "deduped" || d.share?.outcome === "shared";
    if (r.outcome === "already-present" && staged.method === "reflink" && !sharesOstree) {
      // The same bytes at another path (or from another image): this file takes the
      // object's blocks, else each copy in containers-storage keeps blocks of its own.
      shareWithComposefsObject(repo, r.id, f.srcFd, f.what);
    }
    return {
      id: r.id,
      size: d.size,
      method: staged.method,
      outcome: r.outcome,
      share: d.share,
      copiedAhead,
    };
  } catch (e) {
    if (tmp) discardClone(tmp);
    // The digest thread may still be reading the source: it stays open until it is done.
    await Promise.resolve(f.digests).catch(() => {});
    throw e;
  } finally {
    if (f.digests.settled) close(f.srcFd);
    else lingering.push(closeWhenHashed(f));
  }
}

/**
 * Closes a placed file's source once the digest thread is done with it (a file whose
 * fs-verity digest this thread stole is still read there for the stream hash). Settles as the
 * digest thread's result does: a file it found changed fails the layer.
 */
function closeWhenHashed(f: PendingFile): Promise<void> {
  const done = Promise.resolve(f.digests).then(
    () => close(f.srcFd),
    (e) => {
      close(f.srcFd);
      throw e;
    },
  );
  done.catch(() => {}); // awaited by the layer, in order
  return done;
}

/**
 * While the digest thread is behind (a run of large files), this thread computes fs-verity
 * digests itself instead of waiting: the head file's when the digest thread has not reached it,
 * else files from the far end of the queue, where the digest thread will come last. Stops once
 * the head's digests are in, or when nothing is left to take.
 */
function stealWhileWaiting(
  digests: LayerDigests,
  head: PendingFile,
  queue: Fifo<StreamItem>,
): void {
  if (head.stolen || digests.answered(head.digests)) return;
  head.stolen = digests.steal(head.digests);
  let far = queue.length - 1;
  while (!head.stolen && !digests.answered(head.digests)) {
    let f: PendingFile | null = null;
    for (; far >= 0 && f === null; far--) {
      const item = queue.at(far)!;
      if (isFile(item) && !item.stolen) f = item;
    }
    if (f === null) return;
    const d = digests.steal(f.digests);
    if (!d) return; // the digest thread got there too: all the files before it are its own
    f.stolen = d;
  }
}

/** A `diff/` file whose size is not its tar entry's, in c/storage's words. */
function sizeMismatch(where: string, name: string, expected: number, found: number): Error {
  return new LayerIntegrityError(
    where,
    `file integrity checksum failed for ${JSON.stringify(name)}` +
      ` (expected ${expected} bytes, found ${found})`,
  );
}

/** Releases what pending files hold after a failure (their digests may still be computing). */
async function discardPending(files: PendingFile[]): Promise<void> {
  for (const f of files) {
    try {
      const d = await f.digests;
      if (d.copy) discardClone(d.copy);
    } catch { /* the first failure is what the caller reports */ }
    closeQuietly(f.srcFd);
  }
}

/** Marks where a tar entry starts, in the queue of what goes into the splitstream. */
const BOUNDARY: unique symbol = Symbol("tar entry boundary");

/**
 * What goes into the layer splitstream, in order, once the files before it are linked: a run
 * of inline bytes as its length (the bytes wait in a {@linkcode ByteQueue}), an entry's start,
 * or a file. No object per run or boundary: the queue holds the thousands of entries in flight.
 */
type StreamItem = number | typeof BOUNDARY | PendingFile;

function isFile(item: StreamItem): item is PendingFile {
  return typeof item === "object";
}

/**
 * Splits layer `layer` of `cstore` into objects and a layer splitstream of `repo` (not
 * registered): one pass over its tar-split and its `diff/` files, see the module doc. Files
 * are placed here and hashed on the digest thread meanwhile; the stream is written in order as
 * their digests come in, with at most {@linkcode MAX_FILES_IN_FLIGHT} files waiting.
 */
async function splitStoreLayer(
  repo: ComposefsRepo,
  cstore: CStorage,
  layer: LayerRecord,
  diffId: string,
  place: Placement,
  digests: LayerDigests,
  share: { repo: OstreeRepo; files: OstreeFileIndex; stats: OstreeDedupeStats } | null,
): Promise<{ id: ObjectId; stats: CStorageLayerStats }> {
  const where = `${cstore.path}: layer ${layer.id} (${diffId})`;
  const diffDir = `${cstore.path}/overlay/${layer.id}/diff`;
  // The tar reader parses segments with placeholders for file content, so that no file is read
  // before it is known whether it becomes an object (cloned) or inline data (read).
  const files = new Fifo<{ part: Extract<LayerTarPart, { type: "file" }>; offset: number }>();
  // Holds the layer store's read lock until done.
  const parts = cstore.layerTarPartBatches(layer.id);
  const source = placeholderTarBatches(parts, (p, offset) => {
    if (p.type === "segment") return p.bytes;
    if (p.size > 0) files.push({ part: p, offset });
    return p.size;
  });

  const alg = diffId.startsWith("sha512:") ? "sha512" : "sha256";
  const maxInFlight = filesInFlight();
  digests.begin(
    alg,
    repo.verity === "insecure" ? repo.algorithm : null,
    share ? share.repo.objectsDirfd : null,
    // Where nothing can be cloned, the digest thread copies the files it is far ahead on, and
    // links them too where objects are named by the digest it computed (not measured by the
    // kernel): linking was a sixth of this thread's time in a copying import.
    place.copyOnly
      ? {
        dirfd: repo.objectsDirfd(true),
        mode: OBJECT_MODE,
        minAhead: maxInFlight >> 2,
        link: repo.verity === "insecure",
      }
      : null,
  );
  const stats: CStorageLayerStats = {
    entries: 0,
    externalChunks: 0,
    newObjects: 0,
    externalBytes: 0,
    inlineBytes: 0,
    size: 0,
    placedBytes: { reflink: 0, copy_file_range: 0, readwrite: 0 },
    hashedWhileWaiting: 0,
    copiedByDigestThread: 0,
  };
  const tar = new TarReader(source, where);
  const w = new SplitStreamWriter(repo, CONTENT_TYPE.ociLayer);
  const queue = new Fifo<StreamItem>();
  const inlineBytes = new ByteQueue(); // copied in: the reader reuses its buffers
  const readBuf = new Uint8Array(READ_CHUNK); // small files, read whole into the stream
  let inFlight = 0;
  // Placed files whose source the digest thread still reads (their digests were stolen): they
  // count against the window of open files, and settle in order.
  const lingering = new Fifo<Promise<void>>();
  // Inline bytes fed since the last item queued: consecutive runs go into the queue as one.
  let run = 0;
  const inline = (bytes: Uint8Array) => {
    if (bytes.length === 0) return;
    digests.inline(bytes);
    inlineBytes.push(bytes);
    run += bytes.length;
  };
  const endRun = () => {
    if (run > 0) queue.push(run);
    run = 0;
  };
  const enqueue = (item: typeof BOUNDARY | PendingFile) => {
    endRun();
    queue.push(item);
  };
  // Writes queued items up to and including the first file (or all of them).
  const drain = async (all: boolean) => {
    while (queue.length > 0) {
      const item = queue.shift()!;
      if (typeof item === "number") w.writeInline(inlineBytes.take(item));
      else if (item === BOUNDARY) await w.markBoundary();
      else {
        inFlight--;
        digests.placing(item.digests);
        stealWhileWaiting(digests, item, queue);
        const placed = await placeFile(repo, item, place, where, lingering);
        await w.writeReference(placed.id, placed.size);
        stats.externalChunks++;
        stats.externalBytes += placed.size;
        stats.placedBytes[placed.method] += placed.size;
        if (item.stolen) stats.hashedWhileWaiting++;
        if (placed.copiedAhead) stats.copiedByDigestThread++;
        if (placed.outcome === "written") stats.newObjects++;
        if (stats.externalChunks % TRIM_EVERY_FILES === 0) releaseFreeMemory();
        if (share && placed.share) countShare(share.stats, placed.share);
        if (!all) return;
      }
    }
  };
  try {
    for (let e = await tar.next(); e !== null; e = await tar.next()) {
      stats.entries++;
      if (e.sparse) {
        throw new LayerStreamError(
          `${where} entry ${JSON.stringify(e.pathText)}`,
          "sparse tar entries are not supported (composefs layers cannot hold them)",
        );
      }
      enqueue(BOUNDARY);
      inline(e.rawHeader);
      // Past the payload's placeholders, whose tar-split entry `files` then holds; the padding
      // goes into the stream after the payload.
      const padding = await tar.readPadding();
      if (e.payloadSize > 0) {
        const f = files.shift();
        if (!f || f.offset !== e.payloadOffset || f.part.size !== e.payloadSize) {
          throw new LayerIntegrityError(
            where,
            `${JSON.stringify(e.pathText)}: the tar has a ${e.payloadSize}-byte payload at byte ` +
              `${e.payloadOffset}, tar-split ${
                f ? `a ${f.part.size}-byte file at byte ${f.offset}` : "no file entry"
              }`,
          );
        }
        const fd = f.part.open();
        if (fd === null) {
          throw new LayerIntegrityError(
            where,
            `${JSON.stringify(f.part.nameText)}: file missing from diff/`,
          );
        }
        const regular = e.type === "file" || e.type === "contiguous";
        if (regular && e.payloadSize > INLINE_CONTENT_MAX) {
          let pending: PendingFile;
          try {
            pending = hashFile(digests, fd, {
              what: `${diffDir}/${f.part.nameText}`,
              expected: e.payloadSize,
              nameText: f.part.nameText,
              ostreeChecksum: share?.files.checksumAt(e.pathText) ?? "",
            });
          } catch (err) {
            close(fd);
            throw err;
          }
          enqueue(pending);
          if (++inFlight + lingering.length > maxInFlight) {
            if (lingering.length > 0) await lingering.shift();
            else await drain(false);
          }
        } else {
          try {
            // Up to one byte more than the entry: a longer file fails the size check. Sizes are
            // checked per file; contents by the layer's diff_id at the end, which covers every
            // byte the per-file CRC-64 would (the CRC is only computed to name a culprit).
            let size = 0;
            while (size <= e.payloadSize) {
              const n = read(
                fd,
                readBuf.subarray(0, Math.min(READ_CHUNK, e.payloadSize - size + 1)),
              );
              if (n === 0) break;
              inline(readBuf.subarray(0, n));
              size += n;
            }
            if (size !== e.payloadSize) {
              throw sizeMismatch(where, f.part.nameText, e.payloadSize, size);
            }
            // Inline in composefs, but a block of its own in both other stores: share it.
            const checksum = regular && share ? share.files.checksumAt(e.pathText) : null;
            if (share && checksum) {
              const what = `${diffDir}/${f.part.nameText}`;
              const r = shareWithOstreeObject(fd, size, share.repo.objectsDirfd, checksum, what);
              if (r) countShare(share.stats, r);
            }
          } finally {
            close(fd);
          }
        }
      }
      inline(padding);
    }
    for await (const chunk of tar.readTrailer()) inline(chunk);
    if (files.length > 0) {
      throw new LayerIntegrityError(
        where,
        `tar-split has a file entry ${
          JSON.stringify(files.at(0)!.part.nameText)
        } whose content is no tar entry's payload`,
      );
    }
    endRun();
    await drain(true);
    while (lingering.length > 0) await lingering.shift();
    const found = `${alg}:${toHex(await digests.end())}`;
    if (found !== diffId) {
      // The objects already written stay unreferenced; GC removes them.
      await source.return(undefined); // releases the store's lock before the second read
      // Name the culprit when a diff/ file is what changed: c/storage's own per-file check.
      await cstore.checkLayerFiles(layer.id);
      throw new DigestMismatchError(`${where}: rebuilt tar (diff_id)`, diffId, found);
    }
    stats.size = w.size;
    stats.inlineBytes = w.size - stats.externalBytes;
    const id = await w.finish();
    releaseFreeMemory(); // what the layer freed, before the next one allocates
    return { id, stats };
  } catch (err) {
    w.abort();
    await discardPending(queue.takeAll().filter(isFile));
    await Promise.allSettled(lingering.takeAll());
    throw err;
  } finally {
    // Ends the tar-split iteration early after a failure, which releases the store's lock.
    await source.return(undefined);
  }
}

/**
 * Imports the containers-storage image `imageRef` (a name, id, id prefix or digest, as
 * {@linkcode CStorage.findImage} resolves them) into the composefs repository, cloning every
 * file over 64 bytes from the layers' `diff/` files. Layer streams `oci-layer-<diff_id>` that
 * exist are skipped; the config and manifest streams carry the store's config and manifest
 * bytes unchanged. See the module doc for the steps.
 *
 * @throws {ReflinkUnsupportedError} under `reflink-required` when the store and the repository
 *   cannot share blocks: nothing was written; the message names both filesystems.
 * @throws {LayerIntegrityError} when a `diff/` file does not match its tar-split entry (size,
 *   CRC-64), naming the file; {@linkcode DigestMismatchError} when a rebuilt layer does not hash
 *   to its diff_id. The failing layer's stream is not registered.
 *
 * @example
 * ```ts ignore
 * using store = await CStorage.open("/sysroot/ostree/bootc/storage", { readOnly: true });
 * using cfs = await ComposefsRepo.open("/sysroot/composefs");
 * const r = await importCStorageImageToComposefs(store, cfs, "quay.io/example/os:42", {
 *   policy: "reflink-required", tagAs: "quay.io/example/os:42",
 * });
 * // r.tags: ["quay.io/example/os:42", "localhost/bootc-sha256:…"]
 * ```
 */
export async function importCStorageImageToComposefs(
  cstore: CStorage,
  cfsRepo: ComposefsRepo,
  imageRef: string,
  opts: CStorageImportOptions,
): Promise<CStorageImportResult> {
  const img = await cstore.image(imageRef);
  const where = `${cstore.path}: image ${img.id}`;
  const configBytes = await cstore.imageConfig(img);
  const manifestBytes = await cstore.imageManifest(img);
  const configDigest = sha256Digest(configBytes);
  if (configDigest !== `sha256:${img.id}`) {
    throw new PipelineError(
      where,
      `expected the config to hash to the image id sha256:${img.id}, found ${configDigest} ` +
        "(not an image pulled or built from an OCI config)",
    );
  }
  const manifestDigest = sha256Digest(manifestBytes);
  if (
    img.digest !== undefined && img.bigDataNames.includes(`manifest-${img.digest}`) &&
    img.digest !== manifestDigest
  ) {
    throw new DigestMismatchError(`${where} manifest-${img.digest}`, img.digest, manifestDigest);
  }
  const manifest = parseManifest(manifestBytes, `${where} manifest ${manifestDigest}`);
  if (manifest.config.digest !== configDigest) {
    throw new PipelineError(
      `${where} manifest ${manifestDigest}`,
      `expected the manifest to name config ${configDigest}, found ${manifest.config.digest}`,
    );
  }
  const config = parseImageConfig(configBytes, `${where} config`, manifest.layers.length);
  const diffIds = config.rootfs.diff_ids;
  const chain = await cstore.imageLayers(img);
  const chainDiffIds = chain.map((l) => l.diffDigest ?? "(none)");
  if (
    chain.length !== diffIds.length || chain.some((l, i) => l.diffDigest !== diffIds[i]) ||
    chain.some((l) => l.incomplete)
  ) {
    throw new PipelineError(
      where,
      `expected complete layers with the config's diff_ids [${diffIds.join(", ")}], found ` +
        `[${chainDiffIds.join(", ")}]${chain.some((l) => l.incomplete) ? " (incomplete)" : ""}`,
    );
  }

  const layerIds = new Map<string, ObjectId>();
  const missing = diffIds.some((d) => cfsRepo.streamObjectId(layerStreamName(d)) === null);
  let probe: ReflinkProbe | undefined;
  if (missing) {
    if (cfsRepo.access === "read-only") {
      throw new RepoReadOnlyError(cfsRepo.path, "repository was opened read-only");
    }
    probe = probeFrom(cstore, cfsRepo);
    if (!probe.supported && opts.policy === "reflink-required") {
      throw new ReflinkUnsupportedError(
        probe.code ?? "EOPNOTSUPP",
        `${cfsRepo.path} (${probe.filesystem}) from ${cstore.path} (${probe.sourceFilesystem})`,
        probe.reason,
      );
    }
  }

  const layers: CStorageImportedLayer[] = [];
  using digests = missing ? await LayerDigests.start() : null;
  // Sharing with ostree needs reflinks; without them the copy is all there is.
  const share = opts.shareWithOstree && probe?.supported
    ? { ...opts.shareWithOstree, stats: emptyDedupeStats() }
    : null;
  // Each layer's stream is registered once a syncfs has put its objects on disk; that syncfs
  // runs on a pool thread while the next layer is split (on ext4, a tenth of an import's time).
  const registering: Promise<void>[] = [];
  try {
    for (const [index, layer] of chain.entries()) {
      const diffId = diffIds[index];
      const blobDigest = manifest.layers[index].digest;
      const name = layerStreamName(diffId);
      const existing = layerIds.get(diffId) ?? cfsRepo.streamObjectId(name);
      if (existing !== null) {
        layerIds.set(diffId, existing);
        layers.push({ diffId, blobDigest, layerId: layer.id, streamId: existing, skipped: true });
        continue;
      }
      const { id, stats } = await splitStoreLayer(
        cfsRepo,
        cstore,
        layer,
        diffId,
        // Where the probe found no reflinks, every file is copied without trying FICLONE first.
        { policy: opts.policy, copyOnly: probe?.supported === false },
        digests!,
        share,
      );
      const registered = cfsRepo.registerStreamInBackground(name, id);
      registered.catch(() => {}); // awaited below, after the other layers
      registering.push(registered);
      layerIds.set(diffId, id);
      layers.push({ diffId, blobDigest, layerId: layer.id, streamId: id, skipped: false, stats });
    }
  } finally {
    // Nothing is linked once this returns or throws (the caller may close the repository).
    await Promise.allSettled(registering);
  }
  await Promise.all(registering);

  const streams = await writeImageStreams(
    cfsRepo,
    { configDigest, configBytes, manifestDigest, manifestBytes, diffIds },
    layerIds,
    opts,
  );
  return {
    imageId: img.id,
    manifestDigest,
    configDigest,
    diffIds,
    layers,
    ...streams,
    probe,
    ostreeShared: share?.stats,
  };
}
