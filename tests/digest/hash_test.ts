/**
 * lib/digest/hash.ts: streaming sha256/sha512 and the lowercase-hex spelling of digests.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import {
  DigestError,
  DigestStateError,
  fromHex,
  HASH_ALGORITHMS,
  HASH_SIZES,
  hashBytes,
  HexError,
  isHashAlgorithm,
  StreamingHash,
  toHex,
} from "../../lib/digest/hash.ts";
import { feedInChunks, ODD_CHUNK_SIZES, pseudoRandomBytes } from "./helpers.ts";

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("sha256 and sha512 of known inputs match FIPS 180-4 examples", () => {
  assert.equal(
    toHex(hashBytes("sha256", text("abc"))),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    toHex(hashBytes("sha512", text("abc"))),
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a" +
      "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
  );
  assert.equal(
    toHex(hashBytes("sha256", new Uint8Array())),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
});

Deno.test("hash sizes are 32 (sha256) and 64 (sha512) bytes", () => {
  for (const alg of HASH_ALGORITHMS) {
    assert.equal(hashBytes(alg, text("x")).length, HASH_SIZES[alg]);
  }
  assert.deepEqual(HASH_SIZES, { sha256: 32, sha512: 64 });
});

Deno.test("streaming in any chunk size equals node:crypto one-shot", () => {
  const data = pseudoRandomBytes(200_000);
  for (const alg of HASH_ALGORITHMS) {
    const expected = new Uint8Array(createHash(alg).update(data).digest());
    for (const chunk of ODD_CHUNK_SIZES) {
      const h = new StreamingHash(alg);
      feedInChunks(h, data, chunk);
      assert.deepEqual(h.digest(), expected, `${alg} in ${chunk}-byte chunks`);
    }
  }
});

Deno.test("empty updates change nothing", () => {
  const h = new StreamingHash("sha256");
  h.update(new Uint8Array()).update(text("abc")).update(new Uint8Array());
  assert.deepEqual(h.digest(), hashBytes("sha256", text("abc")));
});

Deno.test("digest() returns a plain Uint8Array, repeatable, caller-owned", () => {
  const h = new StreamingHash("sha512").update(text("abc"));
  const a = h.digest();
  assert.equal(Object.getPrototypeOf(a), Uint8Array.prototype); // not a node Buffer
  a.fill(0); // mutating the returned copy must not affect the hasher
  assert.deepEqual(h.digest(), hashBytes("sha512", text("abc")));
});

Deno.test("update() after digest() throws DigestStateError", () => {
  const h = new StreamingHash("sha256");
  h.digest();
  assert.throws(() => h.update(text("late")), DigestStateError);
  assert.throws(() => h.update(text("late")), DigestError);
});

Deno.test("isHashAlgorithm accepts exactly sha256 and sha512", () => {
  assert.ok(isHashAlgorithm("sha256"));
  assert.ok(isHashAlgorithm("sha512"));
  for (const s of ["SHA256", "sha-256", "md5", ""]) assert.ok(!isHashAlgorithm(s), s);
});

Deno.test("toHex spells bytes as lowercase hex, two digits each", () => {
  assert.equal(toHex(new Uint8Array()), "");
  assert.equal(toHex(new Uint8Array([0, 1, 0x0f, 0x10, 0xab, 0xff])), "00010f10abff");
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.equal(toHex(all), Buffer.from(all).toString("hex"));
  // Longer than any one-call argument limit: the whole input, in order.
  const long = pseudoRandomBytes(100_000);
  assert.equal(toHex(long), Buffer.from(long).toString("hex"));
});

Deno.test("fromHex round-trips toHex", () => {
  const bytes = pseudoRandomBytes(1000);
  assert.deepEqual(fromHex(toHex(bytes)), bytes);
  assert.deepEqual(fromHex(""), new Uint8Array());
  assert.deepEqual(fromHex("00abff"), new Uint8Array([0, 0xab, 0xff]));
});

Deno.test("fromHex checks the expected byte count (a sha256 is 32 bytes)", () => {
  const digest = hashBytes("sha256", text("abc"));
  assert.deepEqual(fromHex(toHex(digest), 32), digest);
  assert.throws(
    () => fromHex(toHex(digest), 64),
    (e: unknown) => e instanceof HexError && e.code === "wrong-length",
  );
});

Deno.test("fromHex rejects odd lengths", () => {
  assert.throws(
    () => fromHex("abc"),
    (e: unknown) => e instanceof HexError && e.code === "odd-length",
  );
});

Deno.test("fromHex rejects non-hex and uppercase (not the canonical spelling of a name)", () => {
  for (const bad of ["zz", "0g", "AB", "aB", " 0", "0x", "é0", "\u{1F600}"]) {
    assert.throws(
      () => fromHex(bad),
      (e: unknown) =>
        e instanceof HexError && e.code === "invalid-char" && e instanceof DigestError,
      JSON.stringify(bad),
    );
  }
});

Deno.test("HexError message names the offending character and offset", () => {
  assert.throws(() => fromHex("00ag"), /"g" at offset 3/);
});
