/**
 * OCI layer tars as composefs splitstreams: splitting an uncompressed layer into inline
 * metadata plus file objects, and reassembling the exact tar.
 *
 * Spec: specs/composefs-repo.md §5.10 (composefs-rs `composefs-oci/src/tar.rs split_async`):
 * - every header block, including pax/GNU extension headers with their data and global pax
 *   headers → inline;
 * - payloads of regular files (`0`, `\0`, `7`) larger than {@linkcode INLINE_CONTENT_MAX}
 *   (64) bytes → an object, as one external chunk of exactly the file size; the padding after
 *   it → inline;
 * - smaller files and every other payload → inline, with their padding;
 * - end-of-archive blocks and everything after them up to EOF → inline, so the reassembled
 *   stream hashes to the diff_id;
 * - sparse entries are rejected (composefs-rs cannot represent them either).
 *
 * @module
 */

import { close, pread } from "../../../ffi/fs.ts";
import { StreamingHash, toHex } from "../../digest/hash.ts";
import { longestNameComponent, NAME_MAX, TarReader } from "../../oci/tar.ts";
import { SplitstreamFormatError } from "./errors.ts";
import type { ObjectId } from "./object_id.ts";
import type { ComposefsRepo } from "./repository.ts";
import { CONTENT_TYPE, INLINE_CONTENT_MAX, SplitStream, SplitStreamWriter } from "./splitstream.ts";

/** What splitting a layer did. */
export interface LayerSplitStats {
  /** Tar entries (global pax headers included). */
  entries: number;
  /** External chunks (files over 64 bytes). */
  externalChunks: number;
  /** Objects that were new to the repository. */
  newObjects: number;
  /** Bytes in external chunks. */
  externalBytes: number;
  /** Bytes stored inline. */
  inlineBytes: number;
  /** Total size of the tar. */
  size: number;
}

/**
 * Splits an uncompressed layer tar into file objects and a layer splitstream
 * (content type `ocilayer`); returns the splitstream's object id. The stream is not registered
 * under a name: the caller verifies the diff_id first, then calls `repo.registerStream`.
 *
 * @example
 * ```ts ignore
 * const { id } = await splitTarLayer(repo, layout.layerTarChunks(desc), desc.digest);
 * repo.registerStream(`oci-layer-${diffId}`, id);
 * ```
 */
export async function splitTarLayer(
  repo: ComposefsRepo,
  tarChunks: AsyncIterable<Uint8Array>,
  where = "layer tar",
): Promise<{ id: ObjectId; stats: LayerSplitStats }> {
  const tar = new TarReader(tarChunks, where);
  const w = new SplitStreamWriter(repo, CONTENT_TYPE.ociLayer);
  const stats: LayerSplitStats = {
    entries: 0,
    externalChunks: 0,
    newObjects: 0,
    externalBytes: 0,
    inlineBytes: 0,
    size: 0,
  };
  try {
    for (let e = await tar.next(); e !== null; e = await tar.next()) {
      stats.entries++;
      if (e.sparse) {
        throw new SplitstreamFormatError(
          `${where} entry ${JSON.stringify(e.pathText)} at byte ${e.offset}`,
          "sparse tar entries are not supported (composefs layers cannot represent them)",
        );
      }
      const longest = longestNameComponent(e.path);
      if (longest > NAME_MAX) {
        throw new SplitstreamFormatError(
          `${where} entry ${JSON.stringify(e.pathText.slice(0, 200))} at byte ${e.offset}`,
          `a name component is ${longest} bytes; Linux allows at most ${NAME_MAX} (NAME_MAX), ` +
            "so no filesystem (nor composefs's EROFS image) can hold it",
        );
      }
      await w.markBoundary();
      w.writeInline(e.rawHeader);
      const regular = e.type === "file" || e.type === "contiguous";
      if (regular && e.payloadSize > INLINE_CONTENT_MAX) {
        const ow = repo.createObjectWriter();
        try {
          for await (const chunk of tar.readPayload()) ow.write(chunk);
        } catch (err) {
          ow.abort();
          throw err;
        }
        const { id, outcome } = ow.finish();
        await w.writeReference(id, e.payloadSize);
        stats.externalChunks++;
        stats.externalBytes += e.payloadSize;
        if (outcome === "written") stats.newObjects++;
      } else {
        for await (const chunk of tar.readPayload()) w.writeInline(chunk);
      }
      w.writeInline(await tar.readPadding());
    }
    for await (const chunk of tar.readTrailer()) w.writeInline(chunk);
    stats.size = w.size;
    stats.inlineBytes = w.size - stats.externalBytes;
    return { id: await w.finish(), stats };
  } catch (e) {
    w.abort();
    throw e;
  }
}

/**
 * The exact tar of a layer stored as `streams/oci-layer-<diffId>`, streamed in order; the
 * sha256 of the bytes is checked against `diffId` after the last chunk (a mismatch throws
 * {@linkcode SplitstreamFormatError} from the final `next()`).
 */
export async function* layerTarChunks(
  repo: ComposefsRepo,
  diffId: string,
): AsyncGenerator<Uint8Array> {
  const name = `oci-layer-${diffId}`;
  using stream = SplitStream.openStream(repo, name, CONTENT_TYPE.ociLayer);
  const alg = diffId.startsWith("sha512:") ? "sha512" : "sha256";
  const hash = new StreamingHash(alg);
  // One external object at a time is open; nothing is held beyond the current chunk.
  for await (const c of stream.chunks()) {
    if (c.kind === "inline") {
      hash.update(c.bytes);
      yield c.bytes;
      continue;
    }
    for await (const chunk of objectChunks(repo, c.id)) {
      hash.update(chunk);
      yield chunk;
    }
  }
  const found = `${alg}:${toHex(hash.digest())}`;
  if (found !== diffId) {
    throw new SplitstreamFormatError(
      `${repo.path}/streams/${name}`,
      `reassembled layer hashes to ${found}, expected the diff_id ${diffId}`,
    );
  }
}

/** Where {@linkcode objectChunks} reads before copying out what it read. */
let objectReadBuffer: Uint8Array<ArrayBuffer> | null = null;

/** An object's content in fresh buffers of up to 1 MiB, each exactly as long as its bytes. */
async function* objectChunks(repo: ComposefsRepo, id: ObjectId): AsyncGenerator<Uint8Array> {
  const fd = repo.openObject(id);
  try {
    const buf = objectReadBuffer ??= new Uint8Array(1 << 20);
    for (let pos = 0;;) {
      const n = pread(fd, buf, pos);
      if (n === 0) return;
      pos += n;
      yield buf.slice(0, n);
    }
  } finally {
    close(fd);
  }
}

/**
 * Writes the exact tar of layer `diffId` to `sink` (a `WritableStream`, e.g.
 * `Deno.stdout.writable`, or a function) and checks that it hashes to the diff_id. This is
 * `unistore internals cat-layer DIFFID --from composefs`.
 *
 * A `WritableStream` is closed at the end unless `close: false`: Deno's file streams keep small
 * writes buffered until a larger write or `close()`, so an unclosed stream may lose the tail.
 *
 * @example
 * ```ts ignore
 * const { size } = await writeLayerTar(repo, "sha256:ab…", Deno.stdout.writable);
 * ```
 */
export async function writeLayerTar(
  repo: ComposefsRepo,
  diffId: string,
  sink: WritableStream<Uint8Array> | ((chunk: Uint8Array) => void | Promise<void>),
  opts: { close?: boolean } = {},
): Promise<{ size: number }> {
  let size = 0;
  if (typeof sink === "function") {
    for await (const chunk of layerTarChunks(repo, diffId)) {
      await sink(chunk);
      size += chunk.length;
    }
    return { size };
  }
  const writer = sink.getWriter();
  try {
    for await (const chunk of layerTarChunks(repo, diffId)) {
      await writer.write(chunk);
      size += chunk.length;
    }
    if (opts.close ?? true) await writer.close();
  } finally {
    writer.releaseLock();
  }
  return { size };
}
