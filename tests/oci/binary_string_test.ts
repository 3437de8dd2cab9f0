import assert from "node:assert/strict";
import { binaryFromBytes, bytesFromBinary } from "../../lib/oci/binary_string.ts";

Deno.test("binaryFromBytes keeps every byte value as the same code unit", () => {
  // 0x80–0x9f included: a "latin1" TextDecoder (WHATWG windows-1252) would map them elsewhere.
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const s = binaryFromBytes(all);
  assert.equal(s.length, 256);
  for (let i = 0; i < 256; i++) assert.equal(s.charCodeAt(i), i);
  assert.deepEqual(bytesFromBinary(s), all);
  assert.equal(binaryFromBytes(new Uint8Array()), "");
});

Deno.test("binaryFromBytes converts names longer than one call's argument slice, in order", () => {
  const long = Uint8Array.from({ length: 20_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff);
  const s = binaryFromBytes(long);
  assert.equal(s.length, long.length);
  assert.deepEqual(bytesFromBinary(s), long);
  assert.equal(s.charCodeAt(8192), long[8192]); // the first byte of the second slice
});
