/**
 * lib/digest/fsverity.ts: the fs-verity file digest that names composefs objects.
 *
 * Three judges: the spec's vectors (composefs-repo.md §3.3), a deliberately naive reference
 * implementation below (the spec's pseudocode, every level kept in memory), and, in
 * fsverity_cli_test.ts, the `fsverity digest` tool.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  FSVERITY_ALGORITHM_IDS,
  FSVERITY_BLOCK_SIZE,
  FSVERITY_DESCRIPTOR_SIZE,
  FSVERITY_DIGEST_SIZES,
  FSVERITY_HASH_ALG_SHA256,
  FSVERITY_HASH_ALG_SHA512,
  FSVERITY_LOG_BLOCKSIZE,
  fsverityDescriptor,
  fsverityDigest,
  FsVerityHasher,
} from "../../lib/digest/fsverity.ts";
import {
  DigestStateError,
  HASH_ALGORITHMS,
  type HashAlgorithm,
  hashBytes,
  toHex,
} from "../../lib/digest/hash.ts";
import { feedInChunks, ODD_CHUNK_SIZES, pseudoRandomBytes } from "./helpers.ts";
import { FSVERITY_VECTORS } from "./spec_vectors.ts";

/** The spec's pseudocode, literally: build each whole level, then hash the descriptor. */
function referenceDigest(data: Uint8Array, alg: HashAlgorithm): Uint8Array {
  const hl = alg === "sha256" ? 32 : 64;
  const H = (b: Uint8Array) => new Uint8Array(createHash(alg).update(b).digest());
  const blocksOf = (bytes: Uint8Array): Uint8Array[] => {
    const out: Uint8Array[] = [];
    for (let off = 0; off < bytes.length; off += 4096) {
      const block = new Uint8Array(4096); // zero-padded
      block.set(bytes.subarray(off, off + 4096));
      out.push(block);
    }
    return out;
  };
  let root = new Uint8Array(hl);
  if (data.length > 0) {
    let level = blocksOf(data).map(H);
    while (level.length > 1) {
      const concat = new Uint8Array(level.length * hl);
      level.forEach((h, i) => concat.set(h, i * hl));
      level = blocksOf(concat).map(H);
    }
    root = level[0];
  }
  const desc = new Uint8Array(256);
  desc[0] = 1;
  desc[1] = alg === "sha256" ? 1 : 2;
  desc[2] = 12;
  new DataView(desc.buffer).setBigUint64(8, BigInt(data.length), true);
  desc.set(root, 16);
  return H(desc);
}

Deno.test("format constants are the kernel's", () => {
  assert.equal(FSVERITY_BLOCK_SIZE, 4096);
  assert.equal(1 << FSVERITY_LOG_BLOCKSIZE, FSVERITY_BLOCK_SIZE);
  assert.equal(FSVERITY_HASH_ALG_SHA256, 1);
  assert.equal(FSVERITY_HASH_ALG_SHA512, 2);
  assert.deepEqual(FSVERITY_ALGORITHM_IDS, { sha256: 1, sha512: 2 });
  assert.deepEqual(FSVERITY_DIGEST_SIZES, { sha256: 32, sha512: 64 });
  assert.equal(FSVERITY_DESCRIPTOR_SIZE, 256);
});

for (const v of FSVERITY_VECTORS) {
  Deno.test(`spec vector: ${v.name}`, () => {
    const bytes = v.bytes();
    assert.equal(toHex(fsverityDigest(bytes, "sha256")), v.sha256, "sha256");
    assert.equal(toHex(fsverityDigest(bytes, "sha512")), v.sha512, "sha512");
  });

  Deno.test(`spec vector fed in odd chunks: ${v.name}`, () => {
    const bytes = v.bytes();
    for (const alg of HASH_ALGORITHMS) {
      for (const chunk of ODD_CHUNK_SIZES) {
        const h = new FsVerityHasher(alg);
        feedInChunks(h, bytes, chunk);
        assert.equal(toHex(h.digest()), v[alg], `${alg}, ${chunk}-byte chunks`);
      }
    }
  });
}

Deno.test("the reference implementation reproduces the spec vectors (so it can judge others)", () => {
  for (const v of FSVERITY_VECTORS) {
    const bytes = v.bytes();
    assert.equal(toHex(referenceDigest(bytes, "sha256")), v.sha256, v.name);
    assert.equal(toHex(referenceDigest(bytes, "sha512")), v.sha512, v.name);
  }
});

// Sizes where the streaming tree has to get a boundary right: around one block, around a level
// filling exactly (128 sha256 / 64 sha512 hashes per block), and deeper trees.
const TREE_EDGE_SIZES = [
  1,
  4095,
  4096,
  4097,
  2 * 4096,
  2 * 4096 + 1,
  64 * 4096 - 1,
  64 * 4096, // sha512: level 1 is exactly one full block
  64 * 4096 + 1, // sha512: level 1 spills into a second block -> 3 levels
  65 * 4096,
  128 * 4096 - 1,
  128 * 4096, // sha256: level 1 is exactly one full block
  128 * 4096 + 1, // sha256: 3 levels
  129 * 4096,
  64 * 64 * 4096, // sha512: level 2 is exactly one full block
  64 * 64 * 4096 + 1, // sha512: 4 levels
];

Deno.test("tree-shape edge sizes match the reference, one-shot and chunked", () => {
  const data = pseudoRandomBytes(64 * 64 * 4096 + 1);
  for (const size of TREE_EDGE_SIZES) {
    const bytes = data.subarray(0, size);
    for (const alg of HASH_ALGORITHMS) {
      const expected = toHex(referenceDigest(bytes, alg));
      assert.equal(toHex(fsverityDigest(bytes, alg)), expected, `${alg} size ${size}`);
      for (const chunk of [7, 4097, 65536]) {
        const h = new FsVerityHasher(alg);
        feedInChunks(h, bytes, chunk);
        assert.equal(toHex(h.digest()), expected, `${alg} size ${size}, ${chunk}-byte chunks`);
      }
    }
  }
});

Deno.test("sha256 tree with 4 levels (128*128*4096 + 1 bytes) matches the reference", () => {
  const bytes = pseudoRandomBytes(128 * 128 * 4096 + 1, 7);
  assert.equal(
    toHex(fsverityDigest(bytes, "sha256")),
    toHex(referenceDigest(bytes, "sha256")),
  );
});

Deno.test("chunks of irregular, changing sizes give the same digest", () => {
  const bytes = pseudoRandomBytes(300_000, 42);
  const sizes = pseudoRandomBytes(1000, 3);
  for (const alg of HASH_ALGORITHMS) {
    const h = new FsVerityHasher(alg);
    let off = 0;
    for (let i = 0; off < bytes.length; i++) {
      // 0 .. ~16 KiB, including empty chunks
      const n = (sizes[i % sizes.length] * 67) % 16411;
      h.update(bytes.subarray(off, off + n));
      off += n;
    }
    assert.equal(h.size, bytes.length);
    assert.deepEqual(h.digest(), fsverityDigest(bytes, alg), alg);
  }
});

Deno.test("the hasher copies what it keeps: reusing the caller's buffer is safe", () => {
  // A read loop refills the same buffer; a partial block left from one chunk must not change
  // when the caller overwrites that buffer.
  const bytes = pseudoRandomBytes(3 * 4096 + 100, 11);
  const buf = new Uint8Array(1000);
  const h = new FsVerityHasher("sha512");
  for (let off = 0; off < bytes.length; off += buf.length) {
    const n = Math.min(buf.length, bytes.length - off);
    buf.set(bytes.subarray(off, off + n));
    h.update(buf.subarray(0, n));
    buf.fill(0xee); // scribble over it, as the next read would
  }
  assert.deepEqual(h.digest(), fsverityDigest(bytes, "sha512"));
});

Deno.test("the digest is H(descriptor) and the descriptor has the kernel layout", () => {
  const root = hashBytes("sha256", new Uint8Array(4096).fill(0x61)); // single-block root
  const desc = fsverityDescriptor("sha256", 4096, root);
  assert.equal(desc.length, 256);
  assert.deepEqual([...desc.subarray(0, 8)], [1, 1, 12, 0, 0, 0, 0, 0]);
  assert.deepEqual([...desc.subarray(8, 16)], [0, 0x10, 0, 0, 0, 0, 0, 0]); // 4096, u64 LE
  assert.deepEqual(desc.subarray(16, 48), root);
  assert.ok(desc.subarray(48).every((b) => b === 0), "root padding, salt and reserved are zero");
  assert.equal(
    toHex(hashBytes("sha256", desc)),
    "a2a808ddaced77f0b6b3068f47b14b5a1fb3fc43674993ab11b8e7e6f2d089e2", // spec: 4096 x "a"
  );
  const d512 = fsverityDescriptor("sha512", 2n ** 40n, new Uint8Array(64).fill(9));
  assert.equal(d512[1], 2);
  assert.equal(new DataView(d512.buffer).getBigUint64(8, true), 2n ** 40n);
  assert.ok(d512.subarray(16, 80).every((b) => b === 9));
  assert.throws(() => fsverityDescriptor("sha512", 0, root), RangeError); // 32-byte root
});

Deno.test("digests are 32 (sha256) and 64 (sha512) bytes, plain Uint8Array", () => {
  for (const alg of HASH_ALGORITHMS) {
    const d = fsverityDigest(new Uint8Array(5), alg);
    assert.equal(d.length, FSVERITY_DIGEST_SIZES[alg]);
    assert.equal(Object.getPrototypeOf(d), Uint8Array.prototype);
  }
});

Deno.test("digest() is repeatable; update() after it throws DigestStateError", () => {
  const h = new FsVerityHasher("sha256").update(new TextEncoder().encode("hello world"));
  const first = h.digest();
  first.fill(0); // the caller's copy
  assert.equal(
    toHex(h.digest()),
    "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64",
  );
  assert.throws(() => h.update(new Uint8Array(1)), DigestStateError);
});

Deno.test("an unknown algorithm is rejected up front", () => {
  assert.throws(() => new FsVerityHasher("md5" as HashAlgorithm), RangeError);
});
