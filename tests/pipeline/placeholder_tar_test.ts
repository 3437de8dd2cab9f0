// placeholderTarBatches: a tar whose payloads are stood in for, handed to the tar reader one
// array of chunks per batch of pieces; the reader sees the archive's own structure.

import assert from "node:assert/strict";
import { TarReader } from "../../lib/oci/tar.ts";
import { placeholderTarBatches } from "../../lib/pipeline/placeholder_tar.ts";
import { TarBuilder } from "../fixtures/oci/mod.ts";

type Piece = { bytes: Uint8Array } | { payload: number };

/** Cuts `tar` into pieces: each payload a length, everything between payloads as bytes. */
async function piecesOf(tar: Uint8Array): Promise<Piece[]> {
  const reader = new TarReader((async function* () {
    yield tar;
  })());
  const pieces: Piece[] = [];
  let at = 0;
  for (let e = await reader.next(); e !== null; e = await reader.next()) {
    if (e.payloadSize === 0) continue;
    pieces.push({ bytes: tar.subarray(at, e.payloadOffset) }, { payload: e.payloadSize });
    at = e.payloadOffset + e.payloadSize;
  }
  pieces.push({ bytes: tar.subarray(at) });
  return pieces;
}

Deno.test("placeholderTarBatches: the reader finds every entry, and each payload at the offset bytesOf was told", async () => {
  const big = new Uint8Array(3 * (1 << 20) + 5).fill(7); // more than one placeholder chunk
  const tar = new TarBuilder()
    .dir("etc/")
    .file("etc/a", "x".repeat(700))
    .file(`usr/${"long/".repeat(30)}b`, big) // a pax path: extension records before it
    .symlink("etc/c", "a")
    .file("etc/empty", "")
    .build();
  const pieces = await piecesOf(tar);
  // Batches of 1, 3 and 2 pieces, as tar-split runs come in.
  const batches = [pieces.slice(0, 1), pieces.slice(1, 4), pieces.slice(4)];
  assert.equal(batches.flat().length, pieces.length);
  const payloads: { size: number; offset: number }[] = [];
  let steps = 0;
  const source = placeholderTarBatches(
    (async function* () {
      for (const b of batches) {
        steps++;
        yield b;
      }
    })(),
    (p, offset) => {
      if ("bytes" in p) return p.bytes;
      payloads.push({ size: p.payload, offset });
      return p.payload;
    },
  );
  const reader = new TarReader(source, "placeholder tar");
  const seen: string[] = [];
  for (let e = await reader.next(); e !== null; e = await reader.next()) {
    seen.push(`${e.type} ${e.pathText}`);
    if (e.payloadSize > 0) {
      let n = 0;
      for await (const chunk of reader.readPayload()) {
        assert.ok(chunk.every((b) => b === 0), "placeholder bytes");
        n += chunk.length;
      }
      assert.equal(n, e.payloadSize);
      // Once its bytes were read, the payload's piece has been looked at (its batch pulled).
      const p = payloads.shift();
      assert.deepEqual(p, { size: e.payloadSize, offset: e.payloadOffset }, e.pathText);
    }
    await reader.readPadding();
  }
  let trailer = 0;
  for await (const chunk of reader.readTrailer()) trailer += chunk.length;
  assert.equal(reader.offset, tar.length, "the archive's length, trailer included");
  assert.ok(trailer >= 1024, "end-of-archive blocks");
  assert.deepEqual(seen, [
    "directory etc/",
    "file etc/a",
    `file usr/${"long/".repeat(30)}b`,
    "symlink etc/c",
    "file etc/empty",
  ]);
  assert.equal(payloads.length, 0);
  assert.equal(steps, batches.length);
});
