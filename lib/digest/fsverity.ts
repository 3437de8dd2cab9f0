/**
 * The Linux fs-verity file digest (block size 4096, no salt), computed in userspace.
 *
 * composefs names every object by this digest, and the kernel's `FS_IOC_MEASURE_VERITY` returns
 * the same value once verity is enabled; `fsverity digest --block-size=4096` prints it too.
 * Layout and vectors: `specs/composefs-repo.md` §3.
 *
 * The Merkle tree is built while streaming: each level keeps only its one partially filled
 * 4096-byte block, so memory stays at a few pages whatever the file size (one level per factor
 * of 128 (sha256) or 64 (sha512) in block count).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { libcryptoBlockDigest } from "../../ffi/libcrypto.ts";
import { DigestStateError, HASH_SIZES, type HashAlgorithm } from "./hash.ts";

/**
 * Merkle tree block size. composefs-rs only accepts 4096 (`DEFAULT_LG_BLOCKSIZE = 12`); any other
 * value gives different digests, so objects would no longer match their names in the repository
 * nor what the kernel measures.
 */
export const FSVERITY_BLOCK_SIZE = 4096;

/** log2 of {@link FSVERITY_BLOCK_SIZE}, as stored in the descriptor's `log_blocksize` byte. */
export const FSVERITY_LOG_BLOCKSIZE = 12;

/**
 * Kernel hash algorithm id of SHA-256 (`FS_VERITY_HASH_ALG_SHA256` in the Linux UAPI). Written
 * into the descriptor and into `fsverity_enable_arg`; another value makes the kernel reject the
 * enable or measure a different digest.
 */
export const FSVERITY_HASH_ALG_SHA256 = 1;

/** Kernel hash algorithm id of SHA-512 (`FS_VERITY_HASH_ALG_SHA512`); same stakes as sha256's. */
export const FSVERITY_HASH_ALG_SHA512 = 2;

/** Kernel algorithm id by name (for the descriptor and the ioctls). */
export const FSVERITY_ALGORITHM_IDS: Readonly<Record<HashAlgorithm, number>> = {
  sha256: FSVERITY_HASH_ALG_SHA256,
  sha512: FSVERITY_HASH_ALG_SHA512,
};

/**
 * Size in bytes of an fs-verity digest (= composefs object id) per algorithm: 32 for sha256, 64
 * for sha512. Object names are twice this many hex characters.
 */
export const FSVERITY_DIGEST_SIZES: Readonly<Record<HashAlgorithm, number>> = HASH_SIZES;

/**
 * Size of `struct fsverity_descriptor`, the 256 bytes whose hash is the file digest. Fixed by the
 * kernel ABI; any other length changes every digest.
 */
export const FSVERITY_DESCRIPTOR_SIZE = 256;

// Descriptor field offsets (composefs-repo.md §3.2). Moving any of them changes every digest.
const DESC_VERSION = 0;
const DESC_HASH_ALG = 1;
const DESC_LOG_BLOCKSIZE = 2;
const DESC_SALT_SIZE = 3;
const DESC_DATA_SIZE = 8;
const DESC_ROOT_HASH = 16;
/** The descriptor reserves 64 bytes for the root hash whatever the algorithm. */
const DESC_ROOT_HASH_SIZE = 64;

/**
 * Builds the 256-byte `struct fsverity_descriptor` for a 4096-byte-block, unsalted tree. Its hash
 * (same algorithm) is the file digest.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fsverityDescriptor, fsverityDigest } from "./fsverity.ts";
 * import { hashBytes } from "./hash.ts";
 *
 * const root = new Uint8Array(32); // the root of an empty file is all zeros
 * const desc = fsverityDescriptor("sha256", 0, root);
 * assert.deepEqual(hashBytes("sha256", desc), fsverityDigest(new Uint8Array(), "sha256"));
 * ```
 */
export function fsverityDescriptor(
  algorithm: HashAlgorithm,
  dataSize: number | bigint,
  rootHash: Uint8Array,
): Uint8Array {
  if (rootHash.length !== HASH_SIZES[algorithm]) {
    throw new RangeError(
      `${algorithm} root hash must be ${HASH_SIZES[algorithm]} bytes, got ${rootHash.length}`,
    );
  }
  const desc = new Uint8Array(FSVERITY_DESCRIPTOR_SIZE); // salt and reserved fields stay zero
  desc[DESC_VERSION] = 1;
  desc[DESC_HASH_ALG] = FSVERITY_ALGORITHM_IDS[algorithm];
  desc[DESC_LOG_BLOCKSIZE] = FSVERITY_LOG_BLOCKSIZE;
  desc[DESC_SALT_SIZE] = 0;
  new DataView(desc.buffer).setBigUint64(DESC_DATA_SIZE, BigInt(dataSize), true);
  // sha256 roots are followed by 32 zero bytes: the field is sized for the largest hash.
  desc.set(rootHash.subarray(0, DESC_ROOT_HASH_SIZE), DESC_ROOT_HASH);
  return desc;
}

/**
 * Writes the hash of one block, or of the 256-byte descriptor, into `out` (exactly the hash's
 * size).
 */
export type BlockDigest = (block: Uint8Array, out: Uint8Array) => void;

/**
 * {@linkcode BlockDigest} through node:crypto: a hash object per block. The fallback where
 * libcrypto cannot be opened (ffi/libcrypto.ts), which is 1.6 times as fast on small blocks.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nodeBlockDigest } from "./fsverity.ts";
 * import { hashBytes } from "./hash.ts";
 *
 * const out = new Uint8Array(32);
 * nodeBlockDigest("sha256")(new Uint8Array(4096), out);
 * assert.deepEqual(out, hashBytes("sha256", new Uint8Array(4096)));
 * ```
 */
export function nodeBlockDigest(algorithm: HashAlgorithm): BlockDigest {
  return (block, out) => out.set(createHash(algorithm).update(block).digest());
}

const blockDigests: Partial<Record<HashAlgorithm, BlockDigest>> = {};

function blockDigest(algorithm: HashAlgorithm): BlockDigest {
  return blockDigests[algorithm] ??= libcryptoBlockDigest(algorithm) ??
    nodeBlockDigest(algorithm);
}

/** One level of the tree: the block being filled, and how many blocks it has hashed so far. */
interface Level {
  block: Uint8Array;
  fill: number;
  blocksHashed: number;
}

/**
 * Level blocks of finished hashers, reused: an import hashes tens of thousands of files, and a
 * fresh 4 KiB buffer per level per file cost more than a tenth of the hashing (allocation and
 * the garbage collection of external memory).
 */
const freeBlocks: Uint8Array[] = [];
const FREE_BLOCKS_MAX = 64;

function newLevel(): Level {
  return {
    block: freeBlocks.pop() ?? new Uint8Array(FSVERITY_BLOCK_SIZE),
    fill: 0,
    blocksHashed: 0,
  };
}

/**
 * Streaming fs-verity digest. `update()` takes chunks of any size and alignment (a 1-byte chunk
 * and a 100 MiB chunk are both fine); `digest()` returns the 32- or 64-byte file digest.
 *
 * Data blocks are hashed directly from the caller's chunk when they are whole, and only a block
 * that straddles two chunks is copied. `digest()` may be called more than once; `update()` after
 * it throws {@link DigestStateError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FsVerityHasher } from "./fsverity.ts";
 * import { toHex } from "./hash.ts";
 *
 * const h = new FsVerityHasher("sha256");
 * h.update(new TextEncoder().encode("hello "));
 * h.update(new TextEncoder().encode("world"));
 * assert.equal(
 *   toHex(h.digest()),
 *   "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64",
 * );
 * ```
 */
export class FsVerityHasher {
  readonly algorithm: HashAlgorithm;
  readonly #hashSize: number;
  readonly #blockDigest: BlockDigest;
  // levels[0] buffers file data; levels[k] buffers the hashes of level k-1's blocks.
  readonly #levels: Level[] = [newLevel()];
  #size = 0;
  #result: Uint8Array | null = null;

  constructor(algorithm: HashAlgorithm) {
    if (!(algorithm in HASH_SIZES)) throw new RangeError(`unsupported algorithm ${algorithm}`);
    this.algorithm = algorithm;
    this.#hashSize = HASH_SIZES[algorithm];
    this.#blockDigest = blockDigest(algorithm);
  }

  /** Number of data bytes fed so far. */
  get size(): number {
    return this.#size;
  }

  /** Feeds the next `bytes` of the file. Returns `this` for chaining. */
  update(bytes: Uint8Array): this {
    if (this.#result !== null) {
      throw new DigestStateError(`fs-verity ${this.algorithm}: update() after digest()`);
    }
    const n = bytes.length;
    const data = this.#levels[0];
    let off = 0;
    if (data.fill > 0) {
      // Finish the block the previous chunk left open.
      const take = Math.min(FSVERITY_BLOCK_SIZE - data.fill, n);
      data.block.set(bytes.subarray(0, take), data.fill);
      data.fill += take;
      off = take;
      if (data.fill === FSVERITY_BLOCK_SIZE) {
        this.#hashBlock(0, data.block);
        data.fill = 0;
      }
    }
    // Whole blocks straight from the caller's chunk: no copy on the hot path.
    while (n - off >= FSVERITY_BLOCK_SIZE) {
      this.#hashBlock(0, bytes.subarray(off, off + FSVERITY_BLOCK_SIZE));
      off += FSVERITY_BLOCK_SIZE;
    }
    if (off < n) {
      data.block.set(bytes.subarray(off), 0);
      data.fill = n - off;
    }
    this.#size += n;
    return this;
  }

  /** The fs-verity digest of everything fed so far; ends the stream. */
  digest(): Uint8Array {
    this.#result ??= this.#finish();
    return this.#result.slice();
  }

  // Hashes a full (or already zero-padded) block of `level` and appends the hash to the level
  // above, hashing that level's block in turn when it fills up. A full block is hashed as soon
  // as it fills: even if it ends up the only block of its level, its hash is what the level
  // above (or the root) needs.
  #hashBlock(level: number, block: Uint8Array): void {
    this.#levels[level].blocksHashed++;
    const up = this.#levels[level + 1] ??= newLevel();
    this.#blockDigest(block, up.block.subarray(up.fill, up.fill + this.#hashSize));
    up.fill += this.#hashSize;
    if (up.fill === FSVERITY_BLOCK_SIZE) {
      this.#hashBlock(level + 1, up.block);
      up.fill = 0;
    }
  }

  // Zero-pads and hashes the open block of `level` (buffers are reused, so the tail may hold
  // bytes of an earlier block and must be cleared).
  #flush(level: number): void {
    const l = this.#levels[level];
    if (l.fill === 0) return;
    l.block.fill(0, l.fill);
    this.#hashBlock(level, l.block);
    l.fill = 0;
  }

  #finish(): Uint8Array {
    let root: Uint8Array;
    if (this.#size === 0) {
      // An empty file has no tree; the kernel uses an all-zero root.
      root = new Uint8Array(this.#hashSize);
    } else {
      this.#flush(0);
      // Walk up until a level has hashed exactly one block: the single hash above it is the root.
      let k = 1;
      while (this.#levels[k - 1].blocksHashed > 1) {
        this.#flush(k);
        k++;
      }
      root = this.#levels[k].block.slice(0, this.#hashSize);
    }
    for (const l of this.#levels) if (freeBlocks.length < FREE_BLOCKS_MAX) freeBlocks.push(l.block);
    this.#levels.length = 0; // digest() never touches them again; the next hasher may
    const desc = fsverityDescriptor(this.algorithm, this.#size, root);
    // The file digest is the hash of the descriptor: one more call of the block hasher.
    const digest = new Uint8Array(this.#hashSize);
    this.#blockDigest(desc, digest);
    return digest;
  }
}

/**
 * One-shot fs-verity digest of `bytes` (4096-byte blocks, no salt).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fsverityDigest } from "./fsverity.ts";
 * import { toHex } from "./hash.ts";
 *
 * const id = fsverityDigest(new TextEncoder().encode("hello world"), "sha256");
 * assert.equal(toHex(id), "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64");
 * ```
 */
export function fsverityDigest(bytes: Uint8Array, algorithm: HashAlgorithm): Uint8Array {
  return new FsVerityHasher(algorithm).update(bytes).digest();
}
