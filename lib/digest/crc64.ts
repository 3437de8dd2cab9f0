/**
 * CRC-64/GO-ISO: the checksum tar-split stores for every file of a containers-storage layer
 * (Go's `crc64.Checksum(data, crc64.MakeTable(crc64.ISO))`). Parameters and vectors:
 * `specs/containers-storage.md` §4.2.
 *
 * c/storage re-checks it when it rebuilds a layer tar from `diff/` ("file integrity checksum
 * failed" otherwise), so a layer unistore writes is only exportable if this matches Go bit for bit.
 *
 * JavaScript has no fast 64-bit integers (BigInt allocates per operation), so the 64-bit CRC is
 * kept as two 32-bit halves and the tables as pairs of Uint32Arrays. Eight bytes are folded per
 * step with slicing-by-8 tables.
 *
 * @module
 */

import { DigestStateError } from "./hash.ts";

/**
 * ISO 3309 polynomial x^64 + x^4 + x^3 + x + 1 (0x1B), bit-reversed, high and low 32 bits
 * (0xD800000000000000). Any other value is a different CRC: every tar-split payload unistore
 * writes would fail c/storage's integrity check.
 */
const POLY_HI = 0xD8000000;
const POLY_LO = 0x00000000;

/**
 * Initial register and final XOR (both all ones, as Go's `crc64.Update` inverts on entry and
 * exit). Changing either changes every checksum.
 */
const INIT_XOR_HI = 0xFFFFFFFF;
const INIT_XOR_LO = 0xFFFFFFFF;

/** Bytes folded per slicing step; the table count below follows from it. */
const SLICES = 8;

// TABLE_LO[k * 256 + n] / TABLE_HI[...]: the CRC of byte n followed by k zero bytes. Table 0 is
// the classic byte-at-a-time table; tables 1..7 let one step consume eight bytes. Built once at
// module load (16 KiB).
const TABLE_LO = new Uint32Array(SLICES * 256);
const TABLE_HI = new Uint32Array(SLICES * 256);
{
  for (let n = 0; n < 256; n++) {
    let lo = n;
    let hi = 0;
    for (let bit = 0; bit < 8; bit++) {
      const lsb = lo & 1;
      lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
      hi = hi >>> 1;
      if (lsb) {
        lo = (lo ^ POLY_LO) >>> 0;
        hi = (hi ^ POLY_HI) >>> 0;
      }
    }
    TABLE_LO[n] = lo;
    TABLE_HI[n] = hi;
  }
  for (let k = 1; k < SLICES; k++) {
    for (let n = 0; n < 256; n++) {
      const plo = TABLE_LO[(k - 1) * 256 + n];
      const phi = TABLE_HI[(k - 1) * 256 + n];
      const idx = plo & 0xff;
      TABLE_LO[k * 256 + n] = (((plo >>> 8) | (phi << 24)) ^ TABLE_LO[idx]) >>> 0;
      TABLE_HI[k * 256 + n] = ((phi >>> 8) ^ TABLE_HI[idx]) >>> 0;
    }
  }
}

/**
 * Streaming CRC-64/GO-ISO. `update()` takes chunks of any size; `digest()` returns the CRC as a
 * bigint, `digestBytes()` as the 8 big-endian bytes that tar-split base64-encodes into `payload`.
 *
 * `digest()` may be called more than once; `update()` after it throws {@link DigestStateError}
 * (a checksum of part of a file would only fail later, far from the bug).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Crc64Iso } from "./crc64.ts";
 *
 * const crc = new Crc64Iso();
 * crc.update(new TextEncoder().encode("12345")).update(new TextEncoder().encode("6789"));
 * assert.equal(crc.digest(), 0xb90956c775a41001n);
 * assert.deepEqual(crc.digestBytes(), new Uint8Array([0xb9, 9, 0x56, 0xc7, 0x75, 0xa4, 0x10, 1]));
 * ```
 */
export class Crc64Iso {
  // The register, already XORed with the init value.
  #lo = INIT_XOR_LO;
  #hi = INIT_XOR_HI;
  #done = false;

  /** Feeds `bytes`. Returns `this` for chaining. */
  update(bytes: Uint8Array): this {
    if (this.#done) throw new DigestStateError("crc64: update() after digest()");
    const tl = TABLE_LO;
    const th = TABLE_HI;
    let lo = this.#lo;
    let hi = this.#hi;
    const n = bytes.length;
    let i = 0;
    // Slicing-by-8: XOR eight input bytes (little-endian) into the register, then look each of
    // its eight bytes up in the table for its distance from the end.
    for (const end8 = n - (n % SLICES); i < end8; i += SLICES) {
      lo ^= bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
      hi ^= bytes[i + 4] | (bytes[i + 5] << 8) | (bytes[i + 6] << 16) | (bytes[i + 7] << 24);
      const l = tl[1792 + (lo & 0xff)] ^ tl[1536 + ((lo >>> 8) & 0xff)] ^
        tl[1280 + ((lo >>> 16) & 0xff)] ^ tl[1024 + (lo >>> 24)] ^
        tl[768 + (hi & 0xff)] ^ tl[512 + ((hi >>> 8) & 0xff)] ^
        tl[256 + ((hi >>> 16) & 0xff)] ^ tl[hi >>> 24];
      const h = th[1792 + (lo & 0xff)] ^ th[1536 + ((lo >>> 8) & 0xff)] ^
        th[1280 + ((lo >>> 16) & 0xff)] ^ th[1024 + (lo >>> 24)] ^
        th[768 + (hi & 0xff)] ^ th[512 + ((hi >>> 8) & 0xff)] ^
        th[256 + ((hi >>> 16) & 0xff)] ^ th[hi >>> 24];
      lo = l;
      hi = h;
    }
    // Tail, one byte at a time: crc = table[(crc ^ b) & 0xff] ^ (crc >> 8).
    for (; i < n; i++) {
      const idx = (lo ^ bytes[i]) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ tl[idx];
      hi = (hi >>> 8) ^ th[idx];
    }
    this.#lo = lo >>> 0;
    this.#hi = hi >>> 0;
    return this;
  }

  /** The CRC of everything fed so far, as an unsigned 64-bit bigint; ends the stream. */
  digest(): bigint {
    this.#done = true;
    return (BigInt(this.#hiOut()) << 32n) | BigInt(this.#loOut());
  }

  /** The CRC as 8 big-endian bytes (tar-split's `payload` encoding); ends the stream. */
  digestBytes(): Uint8Array {
    this.#done = true;
    const out = new Uint8Array(8);
    const view = new DataView(out.buffer);
    view.setUint32(0, this.#hiOut(), false);
    view.setUint32(4, this.#loOut(), false);
    return out;
  }

  #hiOut(): number {
    return (this.#hi ^ INIT_XOR_HI) >>> 0;
  }

  #loOut(): number {
    return (this.#lo ^ INIT_XOR_LO) >>> 0;
  }
}

/**
 * One-shot CRC-64/GO-ISO of `bytes`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { crc64Iso } from "./crc64.ts";
 *
 * assert.equal(crc64Iso(new TextEncoder().encode("123456789")), 0xb90956c775a41001n);
 * ```
 */
export function crc64Iso(bytes: Uint8Array): bigint {
  return new Crc64Iso().update(bytes).digest();
}
