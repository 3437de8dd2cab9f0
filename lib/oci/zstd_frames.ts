/**
 * Finding the boundaries of zstd frames in a byte stream, without decompressing.
 *
 * Why: `node:zlib`'s zstd decoders (sync and streaming) return only the FIRST frame of
 * concatenated input and silently drop the rest (specs/deno-platform.md §8). Layers compressed
 * by parallel or chunked encoders (zstd:chunked, pzstd) are many frames, and a splitstream
 * section written by another implementation may be too. So input is cut at frame boundaries
 * here and each frame gets its own decoder.
 *
 * Format: RFC 8878 §3.1 (zstd frames) and §3.1.2 (skippable frames). Only the frame and block
 * headers are parsed: magic, frame header descriptor, block headers (last-block bit, type,
 * size) and the optional 4-byte content checksum.
 *
 * @module
 */

import { CompressionError } from "./errors.ts";

/** Little-endian magic of a zstd frame (`28 b5 2f fd` on disk). Fixed by RFC 8878. */
export const ZSTD_MAGIC = 0xfd2fb528;
/** Skippable frames have magics 0x184D2A50..0x184D2A5F (RFC 8878 §3.1.2). */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

/** A run of bytes of one frame, in stream order. */
export interface ZstdPiece {
  bytes: Uint8Array;
  /** The frame ends with the last byte of this piece. */
  end: boolean;
  /** The bytes belong to a skippable frame (metadata such as zstd:chunked's TOC), not content. */
  skippable: boolean;
}

type State =
  | "magic"
  | "frameHeader"
  | "frameHeaderRest"
  | "blockHeader"
  | "blockBody"
  | "checksum"
  | "skipSize"
  | "skipBody";

/**
 * Cuts a stream of zstd frames into per-frame pieces. Feed chunks in order with `push`; after
 * the last chunk, `finish()` throws if the input stopped inside a frame.
 *
 * @example
 * ```ts
 * const s = new ZstdFrameSplitter("layer.tar.zst");
 * for (const piece of s.push(chunk)) {
 *   if (!piece.skippable) decoder.write(piece.bytes);
 *   if (piece.end) decoder.end();
 * }
 * s.finish();
 * ```
 */
export class ZstdFrameSplitter {
  #state: State = "magic";
  #field = new Uint8Array(8);
  #have = 0;
  #need = 4;
  #remaining = 0;
  #lastBlock = false;
  #checksum = false;
  #skippable = false;
  #offset = 0;
  #frameStart = 0;
  /** Number of complete frames seen (skippable ones included). */
  frames = 0;

  constructor(readonly where: string) {}

  /** True when the input so far ends exactly between frames. */
  get atBoundary(): boolean {
    return this.#state === "magic" && this.#have === 0;
  }

  /** Splits `chunk`; the returned pieces are views into it. */
  push(chunk: Uint8Array): ZstdPiece[] {
    const out: ZstdPiece[] = [];
    let p = 0;
    let segStart = 0;
    const cut = (end: boolean) => {
      if (p > segStart || end) {
        out.push({ bytes: chunk.subarray(segStart, p), end, skippable: this.#skippable });
      }
      segStart = p;
    };
    while (p < chunk.length) {
      if (this.#state === "blockBody" || this.#state === "skipBody") {
        const take = Math.min(this.#remaining, chunk.length - p);
        p += take;
        this.#offset += take;
        this.#remaining -= take;
      } else {
        const take = Math.min(this.#need - this.#have, chunk.length - p);
        this.#field.set(chunk.subarray(p, p + take), this.#have);
        if (this.#state === "magic" && this.#have === 0) this.#frameStart = this.#offset;
        this.#have += take;
        p += take;
        this.#offset += take;
        if (this.#have < this.#need) continue;
        this.#have = 0;
        if (this.#onField()) {
          cut(true);
          continue;
        }
      }
      if (this.#settle()) cut(true);
    }
    cut(false);
    return out;
  }

  /** Throws {@linkcode CompressionError} when the input ended inside a frame. */
  finish(): void {
    if (!this.atBoundary) {
      throw new CompressionError(
        this.where,
        `zstd stream truncated: input ended inside the frame starting at byte ${this.#frameStart} ` +
          `(${this.#offset} bytes read)`,
      );
    }
  }

  // Acts on a completely collected header field; true when that field ended a frame.
  #onField(): boolean {
    const f = this.#field;
    const v = new DataView(f.buffer);
    switch (this.#state) {
      case "magic": {
        const magic = v.getUint32(0, true);
        if (magic === ZSTD_MAGIC) {
          this.#skippable = false;
          this.#state = "frameHeader";
          this.#need = 1;
        } else if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
          this.#skippable = true;
          this.#state = "skipSize";
          this.#need = 4;
        } else {
          throw new CompressionError(
            this.where,
            `expected a zstd frame magic (28 b5 2f fd) at byte ${this.#frameStart}, found ${
              [...f.subarray(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join(" ")
            }`,
          );
        }
        return false;
      }
      case "frameHeader": {
        const fhd = f[0];
        if (fhd & 0x08) {
          throw new CompressionError(
            this.where,
            `zstd frame at byte ${this.#frameStart}: reserved bit set in frame header descriptor`,
          );
        }
        const fcsFlag = fhd >> 6;
        const singleSegment = (fhd & 0x20) !== 0;
        this.#checksum = (fhd & 0x04) !== 0;
        const dictSize = [0, 1, 2, 4][fhd & 3];
        const fcsSize = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag];
        this.#state = "frameHeaderRest";
        this.#need = (singleSegment ? 0 : 1) + dictSize + fcsSize;
        return false;
      }
      case "frameHeaderRest":
        this.#state = "blockHeader";
        this.#need = 3;
        return false;
      case "blockHeader": {
        const h = f[0] | (f[1] << 8) | (f[2] << 16);
        this.#lastBlock = (h & 1) !== 0;
        const type = (h >> 1) & 3;
        const size = h >>> 3;
        if (type === 3) {
          throw new CompressionError(
            this.where,
            `zstd frame at byte ${this.#frameStart}: reserved block type at byte ${
              this.#offset - 3
            }`,
          );
        }
        this.#state = "blockBody";
        this.#remaining = type === 1 ? 1 : size; // RLE blocks store one byte
        return false;
      }
      case "checksum":
        return this.#endFrame();
      case "skipSize":
        this.#state = "skipBody";
        this.#remaining = v.getUint32(0, true);
        return false;
      default:
        throw new Error(`unreachable zstd splitter state ${this.#state}`);
    }
  }

  // Moves through states that need no further bytes. Returns true when a frame just ended.
  #settle(): boolean {
    for (;;) {
      if (this.#state === "frameHeaderRest" && this.#need === 0) {
        this.#onField();
        continue;
      }
      if (this.#state === "blockBody" && this.#remaining === 0) {
        if (!this.#lastBlock) {
          this.#state = "blockHeader";
          this.#need = 3;
          return false;
        }
        if (this.#checksum) {
          this.#state = "checksum";
          this.#need = 4;
          return false;
        }
        return this.#endFrame();
      }
      if (this.#state === "skipBody" && this.#remaining === 0) return this.#endFrame();
      return false;
    }
  }

  #endFrame(): boolean {
    this.#state = "magic";
    this.#need = 4;
    this.frames++;
    return true;
  }
}
