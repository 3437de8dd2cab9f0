/**
 * lib/digest/crc64.ts: CRC-64/GO-ISO, the per-file checksum in tar-split files
 * (containers-storage.md §4.2).
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Crc64Iso, crc64Iso } from "../../lib/digest/crc64.ts";
import { DigestStateError } from "../../lib/digest/hash.ts";
import { feedInChunks, ODD_CHUNK_SIZES, pseudoRandomBytes } from "./helpers.ts";
import { CRC64_VECTORS } from "./spec_vectors.ts";

/**
 * The spec's definition, bit by bit with BigInt: reflected poly 0xD800000000000000, init and
 * final XOR all ones. Slow and obviously right, to judge the table-driven code.
 */
function referenceCrc64(bytes: Uint8Array): bigint {
  const MASK = 0xffffffffffffffffn;
  let crc = MASK;
  for (const b of bytes) {
    crc ^= BigInt(b);
    for (let i = 0; i < 8; i++) crc = crc & 1n ? (crc >> 1n) ^ 0xd800000000000000n : crc >> 1n;
  }
  return crc ^ MASK;
}

for (const v of CRC64_VECTORS) {
  Deno.test(`spec vector: ${v.name}`, () => {
    assert.equal(crc64Iso(v.bytes).toString(16).padStart(16, "0"), v.crc);
    assert.equal(
      Buffer.from(new Crc64Iso().update(v.bytes).digestBytes()).toString("base64"),
      v.payload,
    );
  });
}

Deno.test('check value: CRC-64/GO-ISO("123456789") = 0xb90956c775a41001', () => {
  assert.equal(crc64Iso(new TextEncoder().encode("123456789")), 0xb90956c775a41001n);
});

Deno.test("empty input: CRC is 0 (init and final XOR cancel)", () => {
  assert.equal(crc64Iso(new Uint8Array()), 0n);
  assert.deepEqual(new Crc64Iso().digestBytes(), new Uint8Array(8));
});

Deno.test("the bit-by-bit reference agrees with the spec vectors", () => {
  for (const v of CRC64_VECTORS) {
    assert.equal(referenceCrc64(v.bytes).toString(16).padStart(16, "0"), v.crc, v.name);
  }
});

Deno.test("every length 0..200 (all tail/slice mixes) matches the reference", () => {
  const data = pseudoRandomBytes(200, 5);
  for (let n = 0; n <= data.length; n++) {
    const bytes = data.subarray(0, n);
    assert.equal(crc64Iso(bytes), referenceCrc64(bytes), `length ${n}`);
  }
});

Deno.test("inputs with high bits set in every lane match the reference", () => {
  // Guards the 32-bit halves against sign-extension bugs (bytes >= 0x80, shifts by 24).
  for (const fill of [0x80, 0xff, 0x7f, 0x01]) {
    const bytes = new Uint8Array(37).fill(fill);
    assert.equal(crc64Iso(bytes), referenceCrc64(bytes), `0x${fill.toString(16)}`);
  }
});

Deno.test("chunked feeding equals one-shot, for any chunk size", () => {
  const data = pseudoRandomBytes(100_003, 9);
  const expected = crc64Iso(data);
  for (const chunk of [...ODD_CHUNK_SIZES, 3, 9]) {
    const c = new Crc64Iso();
    feedInChunks(c, data, chunk);
    assert.equal(c.digest(), expected, `${chunk}-byte chunks`);
  }
});

Deno.test("digestBytes() is the big-endian encoding of digest()", () => {
  const bytes = pseudoRandomBytes(1000, 2);
  const c = new Crc64Iso().update(bytes);
  const value = c.digest();
  const be = c.digestBytes();
  assert.equal(new DataView(be.buffer).getBigUint64(0, false), value);
});

Deno.test("digest() is repeatable; update() after it throws DigestStateError", () => {
  const c = new Crc64Iso().update(new TextEncoder().encode("123456789"));
  assert.equal(c.digest(), 0xb90956c775a41001n);
  assert.equal(c.digest(), 0xb90956c775a41001n);
  assert.throws(() => c.update(new Uint8Array(1)), DigestStateError);
});
