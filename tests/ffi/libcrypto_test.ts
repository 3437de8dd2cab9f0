// ffi/libcrypto.ts: libcrypto's one-shot hashes agree with node:crypto on every block shape an
// fs-verity tree feeds them, and the fs-verity hasher's node:crypto fallback agrees as well.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { libcryptoBlockDigest } from "../../ffi/libcrypto.ts";
import { nodeBlockDigest } from "../../lib/digest/fsverity.ts";
import { HASH_SIZES, type HashAlgorithm } from "../../lib/digest/hash.ts";
import { pseudoRandomBytes } from "../fixtures/oci/mod.ts";

const ALGORITHMS: HashAlgorithm[] = ["sha256", "sha512"];
// Empty, short, one block, a block's view inside a larger buffer, several blocks.
const data = pseudoRandomBytes(3 * 4096 + 17, 7);
const SHAPES = [
  data.subarray(0, 0),
  data.subarray(0, 1),
  data.subarray(0, 4096),
  data.subarray(4096 + 5, 2 * 4096 + 5),
  data,
];

Deno.test("libcrypto and node:crypto block digests agree on every block shape", () => {
  for (const alg of ALGORITHMS) {
    const fast = libcryptoBlockDigest(alg);
    if (!fast) {
      // Debian and every bootc image ship libcrypto.so.3: CI must exercise the fast path.
      assert.notEqual(Deno.env.get("CI"), "true", "libcrypto.so.3 could not be opened");
      console.log(`libcrypto.so.3 not found: only the node:crypto path is checked (${alg})`);
    }
    const slow = nodeBlockDigest(alg);
    for (const block of SHAPES) {
      const want = new Uint8Array(createHash(alg).update(block).digest());
      const out = new Uint8Array(HASH_SIZES[alg]);
      slow(block, out);
      assert.deepEqual(out, want, `node:crypto ${alg} of ${block.length} bytes`);
      if (fast) {
        const out2 = new Uint8Array(HASH_SIZES[alg]).fill(0xaa);
        fast(block, out2);
        assert.deepEqual(out2, want, `libcrypto ${alg} of ${block.length} bytes`);
      }
    }
  }
});

Deno.test("a libcrypto digest refuses an output of the wrong size instead of overrunning it", () => {
  const sha512 = libcryptoBlockDigest("sha512");
  if (!sha512) return;
  const backing = new Uint8Array(96).fill(0xaa);
  assert.throws(
    () => sha512(data, backing.subarray(0, 32)),
    /sha512 writes 64 bytes, the output has 32/,
  );
  assert.deepEqual(backing, new Uint8Array(96).fill(0xaa));
});
