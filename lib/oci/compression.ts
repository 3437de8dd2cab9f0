/**
 * Streaming gzip and zstd (de)compression over `node:zlib`, with memory flat in stream size.
 *
 * Layers arrive as gzip (possibly several members, which `createGunzip` concatenates), zstd
 * (possibly several frames, which `node:zlib` would silently truncate to the first: see
 * `zstd_frames.ts`), or uncompressed. Everything is exposed as async iterables of chunks.
 *
 * @module
 */

import zlib from "node:zlib";
import type { Transform } from "node:stream";
import { CompressionError } from "./errors.ts";
import type { LayerCompression } from "./manifest.ts";
import { ZstdFrameSplitter } from "./zstd_frames.ts";

/**
 * zstd level for data unistore writes (splitstream sections). composefs-rs uses the library
 * default (3); a different level changes the compressed bytes (hence splitstream object ids)
 * but not what any reader decodes.
 */
export const ZSTD_LEVEL = 3;

/**
 * Drives a `node:zlib` Transform from async code: `write` resolves once the chunk was consumed
 * and returns the output produced so far; `end` flushes and returns the rest. Errors of the
 * transform reject the pending call instead of being thrown from an event handler.
 */
export class TransformPump {
  readonly #t: Transform;
  #out: Uint8Array[] = [];
  #error: Error | null = null;
  #ended = false;
  // The pending call's settlers. An error event rejects the call waiting now; racing every
  // call against one long-lived "failed" promise instead leaked a reaction per call (a
  // kilobyte per splitstream reference: hundreds of MiB over a large image).
  #reject: ((e: Error) => void) | null = null;
  #resolveEnd: (() => void) | null = null;

  constructor(transform: Transform, readonly where: string) {
    this.#t = transform;
    transform.on("data", (d: Uint8Array) => {
      this.#out.push(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    });
    transform.on("error", (e: Error) => {
      this.#error = e;
      this.#reject?.(e);
    });
    transform.on("end", () => {
      this.#ended = true;
      this.#resolveEnd?.();
    });
  }

  /** Feeds `chunk`; returns the output available so far (possibly none). */
  async write(chunk: Uint8Array): Promise<Uint8Array[]> {
    this.#check();
    if (chunk.length > 0) {
      await this.#call((resolve, reject) =>
        this.#t.write(chunk, (err) => (err ? reject(err) : resolve()))
      );
    }
    return this.#take();
  }

  /** Ends the input; returns all remaining output. */
  async end(): Promise<Uint8Array[]> {
    this.#check();
    await this.#call((resolve) => {
      if (this.#ended) return resolve();
      this.#resolveEnd = resolve;
      this.#t.end();
    });
    return this.#take();
  }

  /** Releases the transform after a failure elsewhere. */
  destroy(): void {
    this.#t.destroy();
  }

  async #call(
    start: (resolve: () => void, reject: (e: Error) => void) => void,
  ): Promise<void> {
    try {
      await new Promise<void>((resolve, reject) => {
        this.#reject = reject;
        start(resolve, reject);
      });
    } catch (e) {
      this.#wrap(e);
    } finally {
      this.#reject = null;
      this.#resolveEnd = null;
    }
  }

  #check(): void {
    if (this.#error) this.#wrap(this.#error);
  }

  #wrap(e: unknown): never {
    if (e instanceof CompressionError) throw e;
    throw new CompressionError(this.where, `${(e as Error).message ?? e}`, { cause: e });
  }

  #take(): Uint8Array[] {
    this.#check();
    const out = this.#out;
    this.#out = [];
    return out;
  }
}

async function* pumpAll(
  source: AsyncIterable<Uint8Array>,
  pump: TransformPump,
): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of source) yield* await pump.write(chunk);
    yield* await pump.end();
  } catch (e) {
    pump.destroy();
    throw e;
  }
}

/**
 * Decompresses every zstd frame of `source` in order (skippable frames are left out), each
 * with its own decoder. Throws {@linkcode CompressionError} for a truncated or corrupt stream.
 *
 * @example
 * ```ts ignore
 * for await (const chunk of zstdDecompressStream(blobChunks, "blobs/sha256/ab…")) tar.push(chunk);
 * ```
 */
export async function* zstdDecompressStream(
  source: AsyncIterable<Uint8Array>,
  where: string,
): AsyncGenerator<Uint8Array> {
  const splitter = new ZstdFrameSplitter(where);
  let pump: TransformPump | null = null;
  try {
    for await (const chunk of source) {
      for (const piece of splitter.push(chunk)) {
        if (piece.skippable) continue;
        pump ??= new TransformPump(zlib.createZstdDecompress(), where);
        yield* await pump.write(piece.bytes);
        if (piece.end) {
          const p = pump;
          pump = null;
          yield* await p.end();
        }
      }
    }
    splitter.finish();
  } catch (e) {
    pump?.destroy();
    throw e;
  }
}

/** Decompresses gzip (all members) from `source`. */
export function gzipDecompressStream(
  source: AsyncIterable<Uint8Array>,
  where: string,
): AsyncGenerator<Uint8Array> {
  return pumpAll(source, new TransformPump(zlib.createGunzip(), where));
}

/**
 * Decompresses `source` according to `compression` (`none` passes it through).
 *
 * @example
 * ```ts ignore
 * const tar = decompressStream(blob, layerCompression(desc.mediaType)!, desc.digest);
 * ```
 */
export function decompressStream(
  source: AsyncIterable<Uint8Array>,
  compression: LayerCompression,
  where: string,
): AsyncIterable<Uint8Array> {
  switch (compression) {
    case "none":
      return source;
    case "gzip":
      return gzipDecompressStream(source, where);
    case "zstd":
      return zstdDecompressStream(source, where);
  }
}

/**
 * Decompresses a small, complete zstd buffer (all frames). For sections that are known to be
 * small (splitstream named refs); streams go through {@linkcode zstdDecompressStream}.
 */
export function zstdDecompressAll(bytes: Uint8Array, where: string): Uint8Array {
  const splitter = new ZstdFrameSplitter(where);
  const frames: Uint8Array[] = [];
  let start = 0;
  let pos = 0;
  for (const piece of splitter.push(bytes)) {
    pos += piece.bytes.length;
    if (piece.end) {
      if (!piece.skippable) frames.push(bytes.subarray(start, pos));
      start = pos;
    }
  }
  splitter.finish();
  const parts = frames.map((f) => {
    try {
      return new Uint8Array(zlib.zstdDecompressSync(f));
    } catch (e) {
      throw new CompressionError(where, `corrupt zstd frame: ${(e as Error).message}`, {
        cause: e,
      });
    }
  });
  return concatBytes(parts);
}

/** One zstd frame (level {@linkcode ZSTD_LEVEL}, no checksum) of `bytes`. */
export function zstdCompressFrame(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(
    zlib.zstdCompressSync(bytes, {
      params: { [zlib.constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL },
    }),
  );
}

/**
 * A streaming zstd encoder producing ONE frame (level {@linkcode ZSTD_LEVEL}, no checksum):
 * `write` and `end` return compressed output as it becomes available.
 */
export function zstdCompressPump(where: string): TransformPump {
  return new TransformPump(
    zlib.createZstdCompress({
      params: { [zlib.constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL },
    }),
    where,
  );
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
