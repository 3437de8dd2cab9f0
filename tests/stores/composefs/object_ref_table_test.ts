// lib/stores/composefs/object_ref_table.ts: numbers ids exactly as a Map of first references
// would, including ids whose first bytes (the table's hash) collide, across every growth.

import assert from "node:assert/strict";
import { toHex } from "../../../lib/digest/hash.ts";
import { ObjectRefTable } from "../../../lib/stores/composefs/object_ref_table.ts";
import { pseudoRandomBytes } from "../../fixtures/oci/mod.ts";

function ids(count: number, hashLen: number, seed: number): string[] {
  const bytes = pseudoRandomBytes(count * hashLen, seed);
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(toHex(bytes.subarray(i * hashLen, (i + 1) * hashLen)));
  return out;
}

Deno.test("object ref table numbers ids in first-reference order, as a Map would", () => {
  for (const hashLen of [32, 64]) {
    const distinct = ids(5000, hashLen, hashLen);
    // Every id referenced up to three times, in an order that revisits old ones.
    const refs = distinct.flatMap((id, i) => i % 3 === 0 ? [id, distinct[i >> 1], id] : [id]);
    const want = new Map<string, number>();
    const t = new ObjectRefTable(hashLen);
    for (const id of refs) {
      if (!want.has(id)) want.set(id, want.size);
      assert.equal(t.indexOf(id), want.get(id));
    }
    assert.equal(t.size, want.size);
    assert.equal(toHex(t.digests()), [...want.keys()].join(""));
  }
});

Deno.test("object ref table tells apart ids whose first bytes are equal", () => {
  // Same first 8 bytes: the same slot, so only the full comparison separates them.
  const prefix = "0123456789abcdef";
  const a = prefix + "00".repeat(24), b = prefix + "11".repeat(24), c = prefix + "22".repeat(24);
  const t = new ObjectRefTable(32);
  assert.deepEqual([a, b, a, c, b].map((id) => t.indexOf(id)), [0, 1, 0, 2, 1]);
});

Deno.test("object ref table refuses an id of the wrong length or not hex", () => {
  const t = new ObjectRefTable(32);
  assert.throws(() => t.indexOf("ab".repeat(64)), /expected a 64-character id, found 128/);
  assert.throws(() => t.indexOf("zz".repeat(32)), /not a hex id/);
  assert.equal(t.size, 0);
});
