// ByteReader over sources that hand out single chunks or arrays of them.

import assert from "node:assert/strict";
import { type ByteChunks, ByteReader } from "../../lib/oci/byte_reader.ts";

async function* source(steps: ByteChunks[]): AsyncGenerator<ByteChunks> {
  for (const s of steps) yield s;
}

const bytes = (...v: number[]) => new Uint8Array(v);

Deno.test("ByteReader reads exact counts across chunks, whether they come one or many per step", async () => {
  const r = new ByteReader(source([
    bytes(1, 2),
    [bytes(3), bytes(), bytes(4, 5, 6)], // an empty chunk is skipped
    [],
    bytes(7),
    [bytes(8, 9), bytes(10)],
  ]));
  assert.equal(await r.fill(4), true);
  assert.deepEqual(r.peek(4), bytes(1, 2, 3, 4));
  assert.deepEqual(r.take(3), bytes(1, 2, 3), "a copy across chunks");
  assert.deepEqual(r.takeUpTo(10), bytes(4, 5, 6), "up to the end of one chunk");
  assert.equal(r.offset, 6);
  assert.equal(await r.fill(3), true);
  assert.deepEqual(r.take(2), bytes(7, 8));
  assert.equal(await r.fill(3), false, "only two bytes are left");
  assert.deepEqual(r.peek(2), bytes(9, 10));
  assert.deepEqual(r.take(2), bytes(9, 10));
  assert.equal(await r.atEnd(), true);
  assert.equal(r.offset, 10);
});

Deno.test("ByteReader takes thousands of small chunks of one step in order", async () => {
  const many = Array.from({ length: 5000 }, (_, i) => bytes(i & 0xff, (i >> 8) & 0xff));
  const r = new ByteReader(source([many, bytes(1, 2, 3)]));
  for (let i = 0; i < 5000; i++) {
    assert.equal(await r.fill(2), true);
    assert.deepEqual(r.take(2), many[i], `chunk ${i}`);
  }
  assert.equal(await r.fill(3), true);
  assert.deepEqual(r.take(3), bytes(1, 2, 3));
  assert.equal(await r.atEnd(), true);
});
