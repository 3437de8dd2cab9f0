/**
 * Streaming SHA-256 / SHA-512 over `node:crypto`, and the hex helpers every store uses to turn
 * digests into object names.
 *
 * Every store names content by a hash: ostree by sha256, composefs by an fs-verity digest built
 * on sha256 or sha512, OCI by `sha256:<hex>`. This module is the one place that knows how to run
 * those hashes and how to spell them, so the spelling (lowercase hex) cannot drift between stores.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";

/** The hash functions unistore computes. Both are what the stores' own tools use. */
export type HashAlgorithm = "sha256" | "sha512";

/** Every supported algorithm, in a fixed order (handy for tests and CLI validation). */
export const HASH_ALGORITHMS: readonly HashAlgorithm[] = ["sha256", "sha512"];

/**
 * Output size in bytes of each algorithm. Fixed by FIPS 180-4; object names in every store have
 * exactly twice this many hex characters, so a wrong value here would misname every object.
 */
export const HASH_SIZES: Readonly<Record<HashAlgorithm, number>> = {
  sha256: 32,
  sha512: 64,
};

/**
 * Whether a string names a supported hash algorithm.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isHashAlgorithm } from "./hash.ts";
 *
 * assert.ok(isHashAlgorithm("sha512"));
 * assert.ok(!isHashAlgorithm("md5"));
 * ```
 */
export function isHashAlgorithm(name: string): name is HashAlgorithm {
  return name === "sha256" || name === "sha512";
}

/** Base class of every error this directory throws, so callers can catch them as one kind. */
export class DigestError extends Error {
  override name = "DigestError";
}

/** Why a hex string was rejected. */
export type HexErrorCode = "odd-length" | "invalid-char" | "wrong-length";

/**
 * A hex string could not be decoded: odd length, a character outside `[0-9a-f]`, or not the
 * expected number of bytes. `code` says which, so callers can branch without parsing messages.
 */
export class HexError extends DigestError {
  override name = "HexError";
  constructor(readonly code: HexErrorCode, message: string) {
    super(message);
  }
}

/**
 * A streaming hasher was used after `digest()`. Raised instead of silently producing a digest of
 * half the data, which would name an object after bytes it does not contain.
 */
export class DigestStateError extends DigestError {
  override name = "DigestStateError";
}

/**
 * Incremental SHA-256 / SHA-512: feed chunks with `update`, read the result with `digest`.
 *
 * `digest()` may be called more than once (it returns a copy of the same bytes); `update()` after
 * `digest()` throws {@link DigestStateError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { StreamingHash, toHex } from "./hash.ts";
 *
 * const h = new StreamingHash("sha256");
 * h.update(new TextEncoder().encode("hello ")).update(new TextEncoder().encode("world"));
 * assert.equal(
 *   toHex(h.digest()),
 *   "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
 * );
 * ```
 */
export class StreamingHash {
  readonly algorithm: HashAlgorithm;
  #hash: Hash | null;
  #result: Uint8Array | null = null;

  constructor(algorithm: HashAlgorithm) {
    this.algorithm = algorithm;
    this.#hash = createHash(algorithm);
  }

  /** Feeds `chunk` (any length, including 0). Returns `this` for chaining. */
  update(chunk: Uint8Array): this {
    if (this.#hash === null) {
      throw new DigestStateError(`${this.algorithm}: update() after digest()`);
    }
    this.#hash.update(chunk);
    return this;
  }

  /** The digest of everything fed so far; ends the stream. */
  digest(): Uint8Array {
    if (this.#hash !== null) {
      // node returns a Buffer, often a view into a shared pool; copy into a plain Uint8Array so
      // callers can keep it and compare it with assert.deepEqual against other Uint8Arrays.
      this.#result = new Uint8Array(this.#hash.digest());
      this.#hash = null;
    }
    return this.#result!.slice();
  }
}

/**
 * One-shot hash of `bytes`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hashBytes, toHex } from "./hash.ts";
 *
 * assert.equal(
 *   toHex(hashBytes("sha256", new Uint8Array())),
 *   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
 * );
 * ```
 */
export function hashBytes(algorithm: HashAlgorithm, bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash(algorithm).update(bytes).digest());
}

// Char codes of the lowercase hex digits.
const HEX_CODES = new TextEncoder().encode("0123456789abcdef");
// The digits are ASCII, which every label of the WHATWG "latin1" decoder maps to itself.
const HEX_TEXT = new TextDecoder("latin1");

/**
 * Lowercase hex of `bytes`, the spelling every store uses in object names and digests.
 *
 * The string is decoded flat in one go from the digits' char codes. Appending two digits at a
 * time made a rope of 32 or 64 pieces that V8 keeps as such (about 1 KiB per checksum) wherever
 * it is stored unflattened, as in a map's values: an index of 120,000 ostree checksums held 100
 * MiB that way. A `String.fromCharCode(...codes)` spread was flat but walked the iterator
 * protocol, about 7 KiB of garbage per digest: a seventh of an import's garbage.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toHex } from "./hash.ts";
 *
 * assert.equal(toHex(new Uint8Array([0, 0xab, 0xff])), "00abff");
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  const codes = new Uint8Array(bytes.length * 2);
  for (let i = 0; i < bytes.length; i++) {
    codes[2 * i] = HEX_CODES[bytes[i] >> 4];
    codes[2 * i + 1] = HEX_CODES[bytes[i] & 15];
  }
  return HEX_TEXT.decode(codes);
}

// Value of a lowercase hex digit by char code, -1 for everything else.
const HEX_VALUES: Int8Array = (() => {
  const t = new Int8Array(128).fill(-1);
  for (let i = 0; i < 10; i++) t[0x30 + i] = i;
  for (let i = 0; i < 6; i++) t[0x61 + i] = 10 + i;
  return t;
})();

/**
 * Decodes lowercase hex. Uppercase is rejected on purpose: names on disk are lowercase, and a
 * string that decodes but is not the canonical spelling would point at a file that does not
 * exist. With `expectedBytes`, the result must have exactly that length (e.g. 32 for a sha256).
 *
 * @throws {HexError} odd length, a character outside `[0-9a-f]`, or the wrong byte count.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromHex, HexError } from "./hash.ts";
 *
 * assert.deepEqual(fromHex("00abff"), new Uint8Array([0, 0xab, 0xff]));
 * assert.throws(() => fromHex("abc"), (e) => e instanceof HexError && e.code === "odd-length");
 * assert.throws(() => fromHex("00", 32), (e) => e instanceof HexError && e.code === "wrong-length");
 * ```
 */
export function fromHex(hex: string, expectedBytes?: number): Uint8Array {
  if (hex.length % 2 !== 0) {
    throw new HexError("odd-length", `hex string has odd length ${hex.length}`);
  }
  if (expectedBytes !== undefined && hex.length !== expectedBytes * 2) {
    throw new HexError(
      "wrong-length",
      `hex string has ${hex.length / 2} bytes, expected ${expectedBytes}`,
    );
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) {
    const c1 = hex.charCodeAt(2 * i);
    const c2 = hex.charCodeAt(2 * i + 1);
    const hi = c1 < 128 ? HEX_VALUES[c1] : -1;
    const lo = c2 < 128 ? HEX_VALUES[c2] : -1;
    if (hi < 0 || lo < 0) {
      const at = hi < 0 ? 2 * i : 2 * i + 1;
      throw new HexError(
        "invalid-char",
        `invalid hex character ${JSON.stringify(hex[at])} at offset ${at} (lowercase 0-9a-f only)`,
      );
    }
    out[i] = (hi << 4) | lo;
  }
  return out;
}
