/**
 * Splitstreams: the spec's worked example byte for byte (up to the compressed sections), a
 * legacy-layout file built here from the spec's byte table, chunk coalescing, named refs,
 * content types, several zstd frames in a section, and precise errors for damaged files.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import zlib from "node:zlib";
import { fsverityDigest } from "../../../lib/digest/fsverity.ts";
import { toHex } from "../../../lib/digest/hash.ts";
import { SplitstreamFormatError } from "../../../lib/stores/composefs/errors.ts";
import {
  CONTENT_TYPE,
  contentType,
  SplitStream,
  type SplitStreamChunk,
  SplitStreamWriter,
} from "../../../lib/stores/composefs/splitstream.ts";
import type { ComposefsRepo } from "../../../lib/stores/composefs/repository.ts";
import { pseudoRandomBytes } from "../../fixtures/oci/mod.ts";
import { withRepo } from "./helpers.ts";
import { concatBytes } from "../../../lib/oci/compression.ts";

const enc = new TextEncoder();
const hex = (b: Uint8Array) => toHex(b);

async function chunksOf(s: SplitStream): Promise<{ kind: string; size: number; id?: string }[]> {
  const out: { kind: string; size: number; id?: string }[] = [];
  for await (const c of s.chunks() as AsyncIterable<SplitStreamChunk>) {
    if (c.kind === "inline") {
      if (c.chunkStart) out.push({ kind: "inline", size: 0 });
      out[out.length - 1].size += c.bytes.length;
    } else out.push({ kind: "external", size: 0, id: c.id });
  }
  return out;
}

async function catAll(repo: ComposefsRepo, s: SplitStream): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  await s.cat(repo, (c) => {
    parts.push(c.slice());
  });
  return concatBytes(parts);
}

Deno.test("splitstream: the spec's worked example (§5.9), header and sections byte for byte", async () => {
  await withRepo("sha512", async (repo, dir) => {
    const manifest = enc.encode('{"schemaVersion":2}');
    const w = new SplitStreamWriter(repo, CONTENT_TYPE.ociManifest);
    w.addNamedStreamRef("config:sha256:" + "a".repeat(64), "11".repeat(64));
    w.addNamedStreamRef("sha256:" + "b".repeat(64), "22".repeat(64));
    const ext = await w.writeExternal(manifest);
    assert.equal(ext, hex(fsverityDigest(manifest, "sha512")));
    const id = await w.finish();
    const file = await Deno.readFile(`${dir}/repo/objects/${id.slice(0, 2)}/${id.slice(2)}`);
    assert.equal(
      id,
      hex(fsverityDigest(file, "sha512")),
      "the stream object is named by its own digest",
    );
    const head = [
      "53 70 6c 69 74 53 74 72 65 61 6d 00 00 00 02 0c",
      "20 00 00 00 00 00 00 00 70 00 00 00 00 00 00 00",
      "70 00 00 00 00 00 00 00 f0 00 00 00 00 00 00 00",
      "f0 00 00 00 00 00 00 00 30 01 00 00 00 00 00 00",
    ].join(" ");
    assert.equal(
      [...file.subarray(0, 64)].map((b) => b.toString(16).padStart(2, "0")).join(" "),
      head,
    );
    const v = new DataView(file.buffer);
    const namedStart = Number(v.getBigUint64(0x50, true));
    const namedEnd = Number(v.getBigUint64(0x58, true));
    const streamStart = Number(v.getBigUint64(0x40, true));
    const streamEnd = Number(v.getBigUint64(0x48, true));
    assert.deepEqual(
      [namedStart, namedEnd],
      [0x130, streamStart],
      "named refs right after object refs, stream after them",
    );
    assert.equal(streamEnd, file.length);
    assert.equal(new TextDecoder().decode(file.subarray(0x60, 0x68)), "ocimanif");
    assert.equal(v.getBigUint64(0x68, true), 19n);
    assert.equal(hex(file.subarray(0x70, 0xb0)), "11".repeat(64));
    assert.equal(hex(file.subarray(0xb0, 0xf0)), "22".repeat(64));
    assert.equal(hex(file.subarray(0xf0, 0x130)), ext);
    // Each section is one zstd frame; decompressed contents as the spec gives them.
    assert.equal(
      new TextDecoder().decode(zlib.zstdDecompressSync(file.subarray(namedStart, namedEnd))),
      `0:config:sha256:${"a".repeat(64)}\0` + `1:sha256:${"b".repeat(64)}\0`,
    );
    assert.deepEqual(
      new Uint8Array(zlib.zstdDecompressSync(file.subarray(streamStart, streamEnd))),
      new Uint8Array(8),
    );

    using s = SplitStream.openObject(repo, id, CONTENT_TYPE.ociManifest);
    assert.equal(s.index.layout, "current");
    assert.deepEqual([...s.index.namedRefs], [
      [`config:sha256:${"a".repeat(64)}`, "11".repeat(64)],
      [`sha256:${"b".repeat(64)}`, "22".repeat(64)],
    ]);
    assert.deepEqual(await catAll(repo, s), manifest);
  });
});

Deno.test("splitstream: a legacy-layout file built from the spec's byte table is read correctly", async () => {
  await withRepo("sha256", async (repo) => {
    const body = enc.encode("external object content, more than sixty-four bytes long for sure!");
    const objId = repo.ensureObject(body);
    const refId = "cd".repeat(32);
    const named = new Uint8Array(zlib.zstdCompressSync(enc.encode(`0:name:with:colons\0`)));
    // Stream: inline "head" (4 bytes), external #0, inline "tail!" (5 bytes).
    const n = (x: bigint) => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigInt64(0, x, true);
      return b;
    };
    const streamData = concatBytes([
      n(-4n),
      enc.encode("head"),
      n(0n),
      n(-5n),
      enc.encode("tail!"),
    ]);
    const stream = new Uint8Array(zlib.zstdCompressSync(streamData));
    const refs = concatBytes([Uint8Array.from(refId.match(/../g)!.map((h) => parseInt(h, 16)))]);
    const objs = Uint8Array.from(objId.match(/../g)!.map((h) => parseInt(h, 16)));
    const infoStart = 32, infoEnd = 112;
    const sr = [infoEnd, infoEnd + 32], or = [infoEnd + 32, infoEnd + 64];
    const nr = [or[1], or[1] + named.length], st = [nr[1], nr[1] + stream.length];
    const file = new Uint8Array(st[1]);
    const v = new DataView(file.buffer);
    // Legacy header (§5.3): info FileRange @0, flags @16, magic @18, version @29, alg @30, lg @31.
    v.setBigUint64(0, BigInt(infoStart), true);
    v.setBigUint64(8, BigInt(infoEnd), true);
    v.setUint16(16, 0, true);
    file.set(enc.encode("SplitStream"), 18);
    file[29] = 0;
    file[30] = 1; // sha256
    file[31] = 12;
    // Info (§5.4), identical in both layouts.
    const put = (at: number, r: number[]) => {
      v.setBigUint64(infoStart + at, BigInt(r[0]), true);
      v.setBigUint64(infoStart + at + 8, BigInt(r[1]), true);
    };
    put(0, sr);
    put(16, or);
    put(32, st);
    put(48, nr);
    file.set(enc.encode("ocilayer"), infoStart + 64);
    v.setBigUint64(infoStart + 72, BigInt(4 + body.length + 5), true);
    file.set(refs, sr[0]);
    file.set(objs, or[0]);
    file.set(named, nr[0]);
    file.set(stream, st[0]);
    // The spec's legacy example header bytes (§5.9) for this info range.
    assert.equal(
      [...file.subarray(0, 32)].map((b) => b.toString(16).padStart(2, "0")).join(" "),
      "20 00 00 00 00 00 00 00 70 00 00 00 00 00 00 00 00 00 53 70 6c 69 74 53 74 72 65 61 6d 00 01 0c",
    );
    const id = repo.ensureObject(file);
    using s = SplitStream.openObject(repo, id, CONTENT_TYPE.ociLayer);
    assert.equal(s.index.layout, "legacy");
    assert.deepEqual(s.index.objectRefs, [objId]);
    assert.deepEqual([...s.index.namedRefs], [["name:with:colons", refId]]);
    assert.equal(s.index.streamSize, 4 + body.length + 5);
    assert.deepEqual(await chunksOf(s), [
      { kind: "inline", size: 4 },
      { kind: "external", size: 0, id: objId },
      { kind: "inline", size: 5 },
    ]);
    assert.deepEqual(
      await catAll(repo, s),
      concatBytes([enc.encode("head"), body, enc.encode("tail!")]),
    );
    // The same file with the magic damaged in both places is not a splitstream.
    const broken = file.slice();
    broken[18] = 0;
    const bid = repo.ensureObject(broken);
    assert.throws(
      () => SplitStream.openObject(repo, bid),
      /no "SplitStream" magic at byte 0 or 18/,
    );
  });
});

Deno.test("splitstream: the spec's tar-like example coalesces into exactly three chunks", async () => {
  await withRepo("sha512", async (repo) => {
    const header = pseudoRandomBytes(512, 1);
    const file = pseudoRandomBytes(100, 2);
    const w = new SplitStreamWriter(repo, CONTENT_TYPE.ociLayer);
    w.writeInline(header.subarray(0, 100)); // written in pieces, stored as one chunk
    w.writeInline(header.subarray(100));
    const fileId = repo.ensureObject(file);
    await w.writeReference(fileId, file.length);
    w.writeInline(new Uint8Array(412));
    await w.markBoundary(); // small buffer: no cut
    w.writeInline(new Uint8Array(1024));
    const id = await w.finish();
    using s = SplitStream.openObject(repo, id, CONTENT_TYPE.ociLayer);
    assert.equal(s.index.streamSize, 2048);
    assert.deepEqual(await chunksOf(s), [
      { kind: "inline", size: 512 },
      { kind: "external", size: 0, id: fileId },
      { kind: "inline", size: 1436 },
    ]);
    assert.deepEqual(await catAll(repo, s), concatBytes([header, file, new Uint8Array(1436)]));
  });
});

Deno.test("splitstream: repeated objects share one ref; boundaries cut long inline runs only when asked", async () => {
  await withRepo("sha256", async (repo) => {
    const big = pseudoRandomBytes(3000, 3);
    const w = new SplitStreamWriter(repo, contentType("testtype"), { inlineFlushThreshold: 1000 });
    const id1 = await w.writeExternal(big);
    for (let i = 0; i < 5; i++) {
      w.writeInline(new Uint8Array(600).fill(i));
      await w.markBoundary();
    }
    await w.writeExternal(big);
    const id = await w.finish();
    using s = SplitStream.openObject(repo, id, contentType("testtype"));
    assert.deepEqual(s.index.objectRefs, [id1], "deduplicated object refs");
    const chunks = await chunksOf(s);
    assert.deepEqual(chunks.map((c) => [c.kind, c.size]), [
      ["external", 0],
      ["inline", 1200], // flushed at the first boundary past 1000 bytes
      ["inline", 1200],
      ["inline", 600],
      ["external", 0],
    ]);
    assert.throws(
      () => SplitStream.openObject(repo, id, CONTENT_TYPE.ociConfig),
      (e: unknown) =>
        e instanceof SplitstreamFormatError &&
        /content type testtype, expected ociconfg/.test(e.message),
    );
  });
});

Deno.test("splitstream: sections made of several zstd frames are read whole", async () => {
  await withRepo("sha256", async (repo) => {
    const w = new SplitStreamWriter(repo, CONTENT_TYPE.ociBlob);
    w.writeInline(enc.encode("x"));
    const orig = await w.finish();
    const file = repo.readObject(orig);
    const v = new DataView(file.buffer);
    const streamStart = Number(v.getBigUint64(0x40, true));
    // Replace the stream section by two frames: [-6]"abcdef" split across them.
    const n = new Uint8Array(8);
    new DataView(n.buffer).setBigInt64(0, -6n, true);
    const f1 = new Uint8Array(zlib.zstdCompressSync(concatBytes([n, enc.encode("abc")])));
    const f2 = new Uint8Array(zlib.zstdCompressSync(enc.encode("def")));
    const rebuilt = concatBytes([file.subarray(0, streamStart), f1, f2]);
    new DataView(rebuilt.buffer).setBigUint64(0x48, BigInt(rebuilt.length), true);
    const id = repo.ensureObject(rebuilt);
    using s = SplitStream.openObject(repo, id);
    assert.equal(new TextDecoder().decode(await catAll(repo, s)), "abcdef");
  });
});

Deno.test("splitstream: truncated or damaged files fail with the stream's path and what is wrong", async () => {
  await withRepo("sha256", async (repo) => {
    const w = new SplitStreamWriter(repo, CONTENT_TYPE.ociLayer);
    w.writeInline(pseudoRandomBytes(5000, 4));
    await w.writeExternal(pseudoRandomBytes(100, 5));
    const file = repo.readObject(await w.finish());
    const truncated = repo.ensureObject(file.subarray(0, file.length - 10));
    assert.throws(
      () => SplitStream.openObject(repo, truncated, undefined, "streams/x"),
      /streams\/x: stream section \[\d+, \d+\) does not fit in the file \(\d+ bytes\): truncated\?/,
    );
    const badVersion = file.slice();
    badVersion[11] = 1;
    assert.throws(
      () => SplitStream.openObject(repo, repo.ensureObject(badVersion)),
      /unsupported splitstream version 1/,
    );
    const badAlg = file.slice();
    badAlg[14] = 2;
    assert.throws(
      () => SplitStream.openObject(repo, repo.ensureObject(badAlg)),
      /algorithm id 2 does not match the repository's sha256/,
    );
    // An external index past the object refs array.
    const v = new DataView(file.buffer);
    const streamStart = Number(v.getBigUint64(0x40, true));
    const n = new Uint8Array(8);
    new DataView(n.buffer).setBigInt64(0, 7n, true);
    const bad = concatBytes([
      file.subarray(0, streamStart),
      new Uint8Array(zlib.zstdCompressSync(n)),
    ]);
    new DataView(bad.buffer).setBigUint64(0x48, BigInt(bad.length), true);
    using s = SplitStream.openObject(repo, repo.ensureObject(bad), undefined, "streams/y");
    await assert.rejects(
      chunksOf(s),
      /streams\/y: external chunk index 7 out of range \(1 object refs\)/,
    );
  });
});

Deno.test("splitstream: a layer-sized stream (chunk headers and inline runs far past the compressor's write size) reads back byte for byte", async () => {
  await withRepo("sha256", async (repo) => {
    // 40,000 references are 320 KiB of chunk headers alone, and one inline run of 600 KiB is
    // more than the writer stages per compressor write: both cross its buffer many times.
    const objects = [1, 2, 3].map((seed) => pseudoRandomBytes(100 + seed, seed));
    const w = new SplitStreamWriter(repo, CONTENT_TYPE.ociLayer);
    const expected: Uint8Array[] = [];
    const ids = [];
    for (const o of objects) {
      ids.push(await w.writeExternal(o));
      expected.push(o);
    }
    for (let i = 0; i < 40_000; i++) {
      const header = new Uint8Array(1 + (i % 700)).fill(i & 0xff);
      w.writeInline(header);
      expected.push(header);
      await w.markBoundary();
      await w.writeReference(ids[i % 3], objects[i % 3].length);
      expected.push(objects[i % 3]);
    }
    const long = pseudoRandomBytes(600 << 10, 9);
    w.writeInline(long);
    expected.push(long);
    const id = await w.finish();
    using s = SplitStream.openObject(repo, id, CONTENT_TYPE.ociLayer);
    const want = concatBytes(expected);
    assert.equal(s.index.streamSize, want.length);
    const got = await catAll(repo, s);
    assert.equal(Buffer.compare(got, want), 0, "reassembled stream differs");
  });
});
