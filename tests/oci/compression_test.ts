/**
 * Decompression: gzip members, zstd frames (several, skippable ones between, cut at every byte),
 * and clear errors for truncated or corrupt input. `node:zlib` alone returns only the first
 * zstd frame; these tests fail if the frame splitting is lost.
 */

import assert from "node:assert/strict";
import zlib from "node:zlib";
import { decompressStream, zstdDecompressAll } from "../../lib/oci/compression.ts";
import { CompressionError } from "../../lib/oci/errors.ts";
import { ZstdFrameSplitter } from "../../lib/oci/zstd_frames.ts";
import { compressLayer, pseudoRandomBytes } from "../fixtures/oci/mod.ts";
import { run } from "../harness/run.ts";
import { toolTest } from "../harness/tools.ts";

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c.slice());
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const data = pseudoRandomBytes(300_000, 99);
const compressible = new Uint8Array(500_000).map((_, i) => (i * 7) % 13);

Deno.test("zstd: three frames with a skippable frame between them decode to the whole input", async () => {
  for (const input of [data, compressible]) {
    const blob = compressLayer(input, "zstd-multiframe");
    // node:zlib alone stops after the first frame: the reason for the splitter.
    assert.ok(new Uint8Array(zlib.zstdDecompressSync(blob)).length < input.length);
    for (const size of [1 << 20, 4096, 997]) {
      const out = await collect(decompressStream(chunked(blob, size), "zstd", "blob"));
      assert.deepEqual(out, input, `chunk size ${size}`);
    }
    assert.deepEqual(zstdDecompressAll(blob, "blob"), input);
  }
});

Deno.test("zstd frame splitter: frame boundaries are found wherever the input is cut", () => {
  const frames = [
    new Uint8Array(zlib.zstdCompressSync(new TextEncoder().encode("first"))),
    new Uint8Array(zlib.zstdCompressSync(new Uint8Array(0))),
    // Skippable frame with an empty payload, then one with 3 bytes.
    new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]),
    new Uint8Array([0x5f, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]),
    new Uint8Array(zlib.zstdCompressSync(compressible.subarray(0, 70_000), {
      params: { [zlib.constants.ZSTD_c_checksumFlag]: 1 },
    })),
  ];
  const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let off = 0;
  const ends: number[] = [];
  for (const f of frames) {
    all.set(f, off);
    off += f.length;
    ends.push(off);
  }
  for (let cut = 0; cut <= all.length; cut += cut < 200 ? 1 : 97) {
    const s = new ZstdFrameSplitter("test");
    const found: number[] = [];
    const skip: boolean[] = [];
    let pos = 0;
    for (const part of [all.subarray(0, cut), all.subarray(cut)]) {
      for (const piece of s.push(part)) {
        pos += piece.bytes.length;
        if (piece.end) {
          found.push(pos);
          skip.push(piece.skippable);
        }
      }
    }
    s.finish();
    assert.deepEqual(found, ends, `cut at ${cut}`);
    assert.deepEqual(skip, [false, false, true, true, false]);
  }
});

Deno.test("zstd: truncated and corrupt streams fail with CompressionError naming the blob", async () => {
  const blob = compressLayer(data, "zstd");
  await assert.rejects(
    collect(
      decompressStream(chunked(blob.subarray(0, blob.length - 5), 4096), "zstd", "blobs/sha256/x"),
    ),
    (e: unknown) =>
      e instanceof CompressionError && /blobs\/sha256\/x: zstd stream truncated/.test(e.message),
  );
  const notZstd = new TextEncoder().encode("this is not zstd at all");
  await assert.rejects(
    collect(decompressStream(chunked(notZstd, 5), "zstd", "blobs/sha256/y")),
    /blobs\/sha256\/y: expected a zstd frame magic \(28 b5 2f fd\) at byte 0, found 74 68 69 73/,
  );
  // A block header with the reserved block type 3 (RFC 8878 §3.1.1.2): caught while splitting.
  const reserved = new Uint8Array([
    0x28,
    0xb5,
    0x2f,
    0xfd,
    0x20,
    0x05,
    0x07,
    0x00,
    0x00,
    1,
    2,
    3,
    4,
    5,
  ]);
  await assert.rejects(
    collect(decompressStream(chunked(reserved, 3), "zstd", "blobs/sha256/z")),
    /blobs\/sha256\/z: zstd frame at byte 0: reserved block type at byte 6/,
  );
  // Compressed blocks whose bytes were damaged: the decoder itself refuses them.
  const packed = compressLayer(compressible, "zstd");
  const damaged = packed.slice();
  damaged.fill(0xff, 20, 60);
  await assert.rejects(
    collect(decompressStream(chunked(damaged, 4096), "zstd", "blobs/sha256/w")),
    (e: unknown) => e instanceof CompressionError && e.message.startsWith("blobs/sha256/w:"),
  );
});

Deno.test("gzip: concatenated members decode to the concatenation; truncation is an error", async () => {
  const a = new Uint8Array(zlib.gzipSync(data.subarray(0, 1000)));
  const b = new Uint8Array(zlib.gzipSync(data.subarray(1000)));
  const both = new Uint8Array(a.length + b.length);
  both.set(a);
  both.set(b, a.length);
  assert.deepEqual(await collect(decompressStream(chunked(both, 333), "gzip", "g")), data);
  await assert.rejects(
    collect(decompressStream(chunked(a.subarray(0, a.length - 10), 100), "gzip", "blobs/g")),
    (e: unknown) => e instanceof CompressionError && e.message.startsWith("blobs/g:"),
  );
});

toolTest("zstd: frames written by the zstd CLI (multi-threaded, with checksums) decode", [
  { bin: "zstd", pkg: "zstd" },
], async (bins) => {
  const dir = await Deno.makeTempDir({ prefix: "unistore-zstd-" });
  try {
    const big = new Uint8Array(3 * 1024 * 1024);
    big.set(data, 0);
    big.set(data, 2 * 1024 * 1024);
    await Deno.writeFile(`${dir}/in`, big);
    // --rsyncable with -T2 makes the CLI emit independent frames/jobs; -C adds checksums.
    await run([
      bins.zstd,
      "-q",
      "-C",
      "-T2",
      "--rsyncable",
      "-B1048576",
      `${dir}/in`,
      "-o",
      `${dir}/a.zst`,
    ]);
    await run([bins.zstd, "-q", `${dir}/in`, "-o", `${dir}/b.zst`]);
    const cat = new Uint8Array([
      ...await Deno.readFile(`${dir}/a.zst`),
      ...await Deno.readFile(`${dir}/b.zst`),
    ]);
    const out = await collect(decompressStream(chunked(cat, 65536), "zstd", "cli"));
    assert.equal(out.length, big.length * 2);
    assert.deepEqual(out.subarray(0, big.length), big);
    assert.deepEqual(out.subarray(big.length), big);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
