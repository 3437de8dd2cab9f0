/**
 * OCI content digests (`sha256:<hex>`, `sha512:<hex>`): parsing, computing, and verifying them
 * over a stream.
 *
 * Spec: OCI image-spec `descriptor.md` ("Digests"). Only the registered algorithms sha256 and
 * sha512 are accepted, with lowercase hex of the exact length: a digest is also used as a file
 * name (`blobs/<alg>/<hex>`, `streams/oci-layer-<digest>`), so anything looser would let a
 * manifest name a path outside the blob store.
 *
 * @module
 */

import { HASH_SIZES, type HashAlgorithm, hashBytes, StreamingHash, toHex } from "../digest/hash.ts";
import { DigestMismatchError, OciFormatError } from "./errors.ts";

/** A parsed OCI digest. */
export interface OciDigest {
  algorithm: HashAlgorithm;
  /** Lowercase hex of the digest bytes. */
  hex: string;
  /** The canonical string form `<algorithm>:<hex>`. */
  text: string;
}

const DIGEST_RE = /^(sha256|sha512):([0-9a-f]+)$/;

/**
 * Parses and validates a digest string. `where` names the document it came from, for the error.
 *
 * @example
 * ```ts
 * parseDigest("sha256:" + "a".repeat(64)).hex; // "aaaa…"
 * parseDigest("md5:00", "index.json"); // throws OciFormatError
 * ```
 */
export function parseDigest(text: unknown, where = "digest"): OciDigest {
  if (typeof text !== "string") {
    throw new OciFormatError(where, `expected a digest string, found ${JSON.stringify(text)}`);
  }
  const m = DIGEST_RE.exec(text);
  if (!m) {
    throw new OciFormatError(
      where,
      `expected a digest "sha256:<64 hex>" or "sha512:<128 hex>", found ${JSON.stringify(text)}`,
    );
  }
  const algorithm = m[1] as HashAlgorithm;
  if (m[2].length !== HASH_SIZES[algorithm] * 2) {
    throw new OciFormatError(
      where,
      `${algorithm} digest must have ${HASH_SIZES[algorithm] * 2} hex digits, found ${
        m[2].length
      } in ${JSON.stringify(text)}`,
    );
  }
  return { algorithm, hex: m[2], text };
}

/** True when `text` is a well-formed sha256 or sha512 digest string. */
export function isDigest(text: string): boolean {
  try {
    parseDigest(text);
    return true;
  } catch {
    return false;
  }
}

/** The `sha256:<hex>` digest of `bytes`. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${toHex(hashBytes("sha256", bytes))}`;
}

/**
 * Hashes a byte stream and checks it against an expected digest (and optionally a size) at the
 * end. Feed every chunk to `update`, then call `verify()`.
 *
 * @example
 * ```ts
 * const v = new DigestVerifier(desc.digest, "blobs/sha256/ab…", desc.size);
 * for await (const chunk of source) v.update(chunk);
 * v.verify(); // throws DigestMismatchError on a mismatch
 * ```
 */
export class DigestVerifier {
  readonly expected: OciDigest;
  readonly #hash: StreamingHash;
  #size = 0;

  constructor(
    expected: string | OciDigest,
    readonly where: string,
    readonly expectedSize?: number,
  ) {
    this.expected = typeof expected === "string" ? parseDigest(expected, where) : expected;
    this.#hash = new StreamingHash(this.expected.algorithm);
  }

  /** Bytes fed so far. */
  get size(): number {
    return this.#size;
  }

  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
    this.#size += chunk.length;
    if (this.expectedSize !== undefined && this.#size > this.expectedSize) {
      // Fail early: a blob longer than its descriptor is never right, and could be endless.
      throw new DigestMismatchError(
        this.where,
        `${this.expectedSize} bytes`,
        `more than ${this.expectedSize} bytes`,
      );
    }
  }

  /** The digest of everything fed, as `<alg>:<hex>`. */
  digest(): string {
    return `${this.expected.algorithm}:${toHex(this.#hash.digest())}`;
  }

  /** Throws {@linkcode DigestMismatchError} unless size and digest match; returns the digest. */
  verify(): string {
    if (this.expectedSize !== undefined && this.#size !== this.expectedSize) {
      throw new DigestMismatchError(
        this.where,
        `${this.expectedSize} bytes`,
        `${this.#size} bytes`,
      );
    }
    const found = this.digest();
    if (found !== this.expected.text) {
      throw new DigestMismatchError(this.where, this.expected.text, found);
    }
    return found;
  }
}
