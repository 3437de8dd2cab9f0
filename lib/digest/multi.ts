/**
 * Every digest a file needs, from one read of its bytes.
 *
 * A file placed into the stores needs up to five digests: sha256 (OCI, ostree), sha512,
 * fs-verity sha256/sha512 (composefs object ids) and CRC-64 (tar-split). DESIGN.md §4 asks for
 * one read per byte, so they are all fed from the same chunks: `MultiDigest` is that fan-out, and
 * `DigestSink` is what a copy loop writes into while it copies.
 *
 * @module
 */

import { open } from "node:fs/promises";
import { Crc64Iso } from "./crc64.ts";
import { FsVerityHasher } from "./fsverity.ts";
import { DigestStateError, StreamingHash } from "./hash.ts";

/**
 * Anything that consumes a byte stream chunk by chunk: every hasher in `lib/digest/`, a
 * `MultiDigest`, or a caller's own (e.g. an ostree checksum that was fed the file header first).
 *
 * The chunk is only valid during the call: producers reuse their buffers, so a sink that needs
 * the bytes later must copy them.
 */
export interface DigestSink {
  update(chunk: Uint8Array): unknown;
}

/** The digests `MultiDigest` can compute. */
export type DigestKind = "sha256" | "sha512" | "fsverity256" | "fsverity512" | "crc64";

/** Every {@link DigestKind}, in a fixed order. */
export const DIGEST_KINDS: readonly DigestKind[] = [
  "sha256",
  "sha512",
  "fsverity256",
  "fsverity512",
  "crc64",
];

/** The type of each digest's result. */
export interface DigestValues {
  /** Plain SHA-256 of the bytes (32 bytes). */
  sha256: Uint8Array;
  /** Plain SHA-512 of the bytes (64 bytes). */
  sha512: Uint8Array;
  /** fs-verity digest with SHA-256, 4096-byte blocks, no salt (32 bytes). */
  fsverity256: Uint8Array;
  /** fs-verity digest with SHA-512, 4096-byte blocks, no salt (64 bytes). */
  fsverity512: Uint8Array;
  /** CRC-64/GO-ISO, as tar-split stores it. */
  crc64: bigint;
}

/** Which digests to compute: `{ sha256: true, crc64: true }`. Absent or false = not computed. */
export type DigestWants = { readonly [K in DigestKind]?: boolean };

/**
 * What `finish()` returns for wants `W`: `size` always, each digest that `W` sets to literal
 * `true` as a required field, the rest as optional fields (present when asked for at run time).
 */
export type DigestResults<W extends DigestWants = DigestWants> =
  & { size: number }
  & { [K in DigestKind as W[K] extends true ? K : never]: DigestValues[K] }
  & { [K in DigestKind as W[K] extends true ? never : K]?: DigestValues[K] };

type Hasher = StreamingHash | FsVerityHasher | Crc64Iso;

function makeHasher(kind: DigestKind): Hasher {
  switch (kind) {
    case "sha256":
    case "sha512":
      return new StreamingHash(kind);
    case "fsverity256":
      return new FsVerityHasher("sha256");
    case "fsverity512":
      return new FsVerityHasher("sha512");
    case "crc64":
      return new Crc64Iso();
  }
}

/**
 * Feeds each chunk to every wanted digest (and to any extra sinks), so a file is read once.
 *
 * `finish()` may be called more than once (same results); `update()` after it throws
 * {@link DigestStateError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MultiDigest } from "./multi.ts";
 * import { toHex } from "./hash.ts";
 *
 * const md = new MultiDigest({ sha256: true, fsverity256: true, crc64: true });
 * md.update(new TextEncoder().encode("hello "));
 * md.update(new TextEncoder().encode("world"));
 * const r = md.finish(); // typed { size; sha256; fsverity256; crc64 }
 * assert.equal(r.size, 11);
 * assert.equal(
 *   toHex(r.sha256),
 *   "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
 * );
 * assert.equal(
 *   toHex(r.fsverity256),
 *   "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64",
 * );
 * assert.equal(typeof r.crc64, "bigint");
 * ```
 */
export class MultiDigest<const W extends DigestWants = DigestWants> implements DigestSink {
  readonly #hashers: [DigestKind, Hasher][] = [];
  readonly #extra: readonly DigestSink[];
  #size = 0;
  #results: DigestResults<W> | null = null;

  /**
   * @param wants which digests to compute.
   * @param extra further sinks fed the same chunks, in order, after the built-in digests.
   */
  constructor(wants: W, extra: readonly DigestSink[] = []) {
    for (const kind of DIGEST_KINDS) {
      if (wants[kind]) this.#hashers.push([kind, makeHasher(kind)]);
    }
    this.#extra = extra;
  }

  /** Number of bytes fed so far. */
  get size(): number {
    return this.#size;
  }

  /** Feeds `chunk` to every digest. Returns `this` for chaining. */
  update(chunk: Uint8Array): this {
    // Checked here, not left to the hashers: with no built-in digests the extra sinks alone
    // would otherwise keep receiving bytes after the results were handed out.
    if (this.#results !== null) throw new DigestStateError("MultiDigest: update() after finish()");
    for (const [, h] of this.#hashers) h.update(chunk);
    for (const s of this.#extra) s.update(chunk);
    this.#size += chunk.length;
    return this;
  }

  /** Ends the stream and returns every wanted digest plus the byte count. */
  finish(): DigestResults<W> {
    if (this.#results === null) {
      const out: Partial<Record<DigestKind, Uint8Array | bigint>> & { size: number } = {
        size: this.#size,
      };
      for (const [kind, h] of this.#hashers) out[kind] = h.digest();
      this.#results = out as DigestResults<W>;
    }
    return this.#results;
  }
}

/**
 * Read size of {@link digestFile}. 1 MiB amortizes the per-read syscall and per-chunk dispatch
 * to each hasher while keeping memory flat; it is a multiple of the 4096-byte fs-verity block so
 * the fs-verity hasher never has to copy a straddling block.
 */
export const DIGEST_FILE_CHUNK_SIZE = 1024 * 1024;

/** Options of {@link digestFile}. */
export interface DigestFileOptions {
  /** Further sinks fed the same chunks (e.g. an ostree checksum already fed its header). */
  sinks?: readonly DigestSink[];
  /** Bytes per read; defaults to {@link DIGEST_FILE_CHUNK_SIZE}. */
  chunkSize?: number;
}

/**
 * Reads a plain file once, in 1 MiB chunks through one reused buffer, and returns every wanted
 * digest. For reading content that needs no fd tricks (tests, configs, verification); the
 * placement pipeline feeds a `MultiDigest` from its own copy loop instead.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { digestFile } from "./multi.ts";
 * import { toHex } from "./hash.ts";
 *
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "hello world");
 * const r = await digestFile(path, { sha256: true, fsverity256: true });
 * await Deno.remove(path);
 * assert.equal(r.size, 11);
 * assert.equal(
 *   toHex(r.fsverity256),
 *   "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64",
 * );
 * ```
 */
export async function digestFile<const W extends DigestWants>(
  path: string | URL,
  wants: W,
  options: DigestFileOptions = {},
): Promise<DigestResults<W>> {
  const chunkSize = options.chunkSize ?? DIGEST_FILE_CHUNK_SIZE;
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
    throw new RangeError(`chunkSize must be a positive integer, got ${chunkSize}`);
  }
  const md = new MultiDigest(wants, options.sinks ?? []);
  const buf = new Uint8Array(chunkSize);
  const fh = await open(path, "r");
  try {
    for (;;) {
      // position null: read sequentially from the current offset.
      const { bytesRead } = await fh.read(buf, 0, chunkSize, null);
      if (bytesRead === 0) break;
      md.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return md.finish();
}
