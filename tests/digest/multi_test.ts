/**
 * lib/digest/multi.ts: every digest from one pass over the bytes (DESIGN.md §4, "one read per
 * byte"), from a copy loop (`MultiDigest` as a `DigestSink`) or from a file (`digestFile`).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Crc64Iso, crc64Iso } from "../../lib/digest/crc64.ts";
import { fsverityDigest, FsVerityHasher } from "../../lib/digest/fsverity.ts";
import { DigestStateError, hashBytes, StreamingHash, toHex } from "../../lib/digest/hash.ts";
import {
  DIGEST_FILE_CHUNK_SIZE,
  DIGEST_KINDS,
  digestFile,
  type DigestResults,
  type DigestSink,
  type DigestWants,
  MultiDigest,
} from "../../lib/digest/multi.ts";
import { feedInChunks, ODD_CHUNK_SIZES, pseudoRandomBytes } from "./helpers.ts";

const ALL = {
  sha256: true,
  sha512: true,
  fsverity256: true,
  fsverity512: true,
  crc64: true,
} as const;

/** What each digest must be, computed one function at a time. */
function separately(bytes: Uint8Array): DigestResults<typeof ALL> {
  return {
    size: bytes.length,
    sha256: hashBytes("sha256", bytes),
    sha512: hashBytes("sha512", bytes),
    fsverity256: fsverityDigest(bytes, "sha256"),
    fsverity512: fsverityDigest(bytes, "sha512"),
    crc64: crc64Iso(bytes),
  };
}

Deno.test("one pass gives the same five digests as five separate passes", () => {
  for (const size of [0, 1, 4096, 4097, 300_001]) {
    const bytes = pseudoRandomBytes(size, size + 1);
    const md = new MultiDigest(ALL);
    md.update(bytes);
    assert.deepEqual(md.finish(), separately(bytes), `size ${size}`);
  }
});

Deno.test("chunked feeding gives the same results as one chunk", () => {
  const bytes = pseudoRandomBytes(150_000, 77);
  const expected = separately(bytes);
  for (const chunk of ODD_CHUNK_SIZES) {
    const md = new MultiDigest(ALL);
    feedInChunks(md, bytes, chunk);
    assert.deepEqual(md.finish(), expected, `${chunk}-byte chunks`);
  }
});

Deno.test("only the wanted digests are computed and returned; size always is", () => {
  const bytes = new TextEncoder().encode("hello world");
  const r = new MultiDigest({ fsverity512: true, crc64: true, sha256: false }).update(bytes)
    .finish();
  assert.deepEqual(Object.keys(r).sort(), ["crc64", "fsverity512", "size"]);
  assert.equal(r.size, 11);
  // The result type follows the wants: these fields are typed as present, no `!` needed.
  const fsv: Uint8Array = r.fsverity512;
  const crc: bigint = r.crc64;
  assert.equal(
    toHex(fsv),
    "18430270729d162d4e469daca123ae61893db4b0583d8f7081e3bf4f92b88ba5" +
      "14e7982f10733fb6aa895195c5ae8fd2eb2c47a8be05513ce5a0c51a6f570409",
  );
  assert.equal(crc, crc64Iso(bytes));
  assert.equal(r.sha256, undefined);

  assert.deepEqual(new MultiDigest({}).update(bytes).finish(), { size: 11 });
});

Deno.test("wants decided at run time still work (fields are then optional)", () => {
  const wants: DigestWants = Object.fromEntries(
    DIGEST_KINDS.map((k) => [k, k.startsWith("fsverity")]),
  );
  const r = new MultiDigest(wants).update(new Uint8Array(4096)).finish();
  assert.equal(
    r.fsverity256 && toHex(r.fsverity256),
    "babc284ee4ffe7f449377fbf6692715b43aec7bc39c094a95878904d34bac97e", // spec: 4096 x 0x00
  );
  assert.equal(r.sha512, undefined);
});

Deno.test("extra sinks see the same bytes (e.g. an ostree checksum fed its header first)", () => {
  const header = new TextEncoder().encode("ostree-style file header");
  const content = pseudoRandomBytes(10_000, 5);
  const ostreeLike = new StreamingHash("sha256").update(header);
  const seen: number[] = [];
  const counter: DigestSink = { update: (c) => seen.push(c.length) };
  const md = new MultiDigest({ sha256: true }, [ostreeLike, counter]);
  feedInChunks(md, content, 4000);
  const r = md.finish();

  assert.deepEqual(r.sha256, hashBytes("sha256", content));
  const both = new Uint8Array(header.length + content.length);
  both.set(header);
  both.set(content, header.length);
  assert.deepEqual(ostreeLike.digest(), hashBytes("sha256", both));
  assert.deepEqual(seen, [4000, 4000, 2000]);
});

Deno.test("every hasher is a DigestSink, so a copy loop can tee into any of them", () => {
  const sinks: DigestSink[] = [
    new StreamingHash("sha512"),
    new FsVerityHasher("sha256"),
    new Crc64Iso(),
    new MultiDigest({ crc64: true }),
  ];
  for (const s of sinks) s.update(new Uint8Array(3));
});

Deno.test("finish() is repeatable; update() after it throws DigestStateError", () => {
  const md = new MultiDigest({ sha256: true, crc64: true });
  md.update(new Uint8Array(10));
  assert.deepEqual(md.finish(), md.finish());
  assert.throws(() => md.update(new Uint8Array(1)), DigestStateError);

  // Also with no built-in digest: the extra sinks must not keep receiving bytes.
  let fed = 0;
  const onlySinks = new MultiDigest({}, [{ update: (c) => (fed += c.length) }]);
  onlySinks.update(new Uint8Array(5)).finish();
  assert.throws(() => onlySinks.update(new Uint8Array(1)), DigestStateError);
  assert.equal(fed, 5);
});

Deno.test("digestFile reads in 1 MiB chunks by default", () => {
  assert.equal(DIGEST_FILE_CHUNK_SIZE, 1024 * 1024);
  assert.equal(DIGEST_FILE_CHUNK_SIZE % 4096, 0); // whole fs-verity blocks per read
});

Deno.test("digestFile gives the same results as hashing the bytes in memory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unistore-digest-" });
  try {
    // Sizes around the 1 MiB read size: the reused buffer must not leak old bytes into a
    // short last read.
    for (const size of [0, 11, DIGEST_FILE_CHUNK_SIZE, DIGEST_FILE_CHUNK_SIZE + 1, 2_500_000]) {
      const bytes = pseudoRandomBytes(size, size + 3);
      const path = join(dir, `file-${size}`);
      await Deno.writeFile(path, bytes);
      assert.deepEqual(await digestFile(path, ALL), separately(bytes), `size ${size}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("digestFile with small odd reads, extra sinks, and a file: URL", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unistore-digest-" });
  try {
    const bytes = pseudoRandomBytes(50_000, 8);
    const path = join(dir, "f");
    await Deno.writeFile(path, bytes);
    const extra = new StreamingHash("sha512");
    const r = await digestFile(pathToFileURL(path), { fsverity256: true }, {
      chunkSize: 4097,
      sinks: [extra],
    });
    assert.deepEqual(r, { size: bytes.length, fsverity256: fsverityDigest(bytes, "sha256") });
    assert.deepEqual(extra.digest(), hashBytes("sha512", bytes));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("digestFile rejects a missing file and a bad chunk size", async () => {
  await assert.rejects(
    digestFile("/nonexistent/unistore-digest-test", { sha256: true }),
    (e: unknown) => (e as { code?: string }).code === "ENOENT",
  );
  await assert.rejects(digestFile("/dev/null", { sha256: true }, { chunkSize: 0 }), RangeError);
});
