/**
 * GVariant normal form: byte-exact vectors from specs/ostree-repo.md §4–§6, round trips for every
 * type ostree uses, framing-offset widths 1, 2, 4 (real objects) and 8 (the width rule), and
 * rejection of malformed and non-normal input.
 */

import assert from "node:assert/strict";
import { fromHex, toHex } from "../../../lib/digest/hash.ts";
import { GVariantError } from "../../../lib/stores/ostree/errors.ts";
import {
  bswap32,
  bswap64,
  deserialize,
  type GValue,
  lookupVariant,
  offsetWidthForBody,
  offsetWidthForSize,
  parseType,
  serialize,
  Variant,
} from "../../../lib/stores/ostree/gvariant.ts";

Deno.test("parseType: alignment and fixed size of the types ostree uses", () => {
  const cases: [string, number, number | null][] = [
    ["y", 1, 1],
    ["b", 1, 1],
    ["q", 2, 2],
    ["u", 4, 4],
    ["t", 8, 8],
    ["s", 1, null],
    ["ay", 1, null],
    ["v", 8, null],
    ["(uuuusa(ayay))", 4, null],
    ["(uuua(ayay))", 4, null],
    ["(a(say)a(sayay))", 1, null],
    ["(a{sv}aya(say)sstayay)", 8, null],
    ["(uu)", 4, 8],
    ["(yu)", 4, 8],
    ["(uy)", 4, 8], // padded at the end to its alignment
    ["(tt)", 8, 16],
    ["()", 1, 1],
    ["{sv}", 8, null],
    ["ms", 1, null],
    ["mu", 4, null],
  ];
  for (const [sig, align, size] of cases) {
    const t = parseType(sig);
    assert.equal(t.align, align, `${sig} alignment`);
    assert.equal(t.fixedSize, size, `${sig} fixed size`);
  }
  assert.throws(() => parseType("a"), GVariantError);
  assert.throws(() => parseType("(uu"), GVariantError);
  assert.throws(() => parseType("{vs}"), /key must be a basic type/);
  assert.throws(() => parseType("uu"), /not a single complete type/);
  assert.throws(() => parseType("r"), /unsupported type character/);
});

Deno.test("serialize: the spec's file header, dirtree and commit vectors, byte for byte", () => {
  // §5.1 hello.txt header variant (26-byte header minus the 8-byte prefix).
  const hello = serialize("(uuuusa(ayay))", [0, 0, bswap32(0o100644), 0, "", []]);
  assert.equal(toHex(hello), "000000000000000000000081a4000000000011".slice(2));
  // §5.1 x.bin header variant with two xattrs.
  const xbin = serialize("(uuuusa(ayay))", [
    bswap32(1000),
    bswap32(1001),
    bswap32(0o104755),
    0,
    "",
    [
      [new TextEncoder().encode("user.alpha\0"), new Uint8Array([0, 1, 2])],
      [new TextEncoder().encode("user.zeta\0"), new TextEncoder().encode("zz")],
    ],
  ]);
  assert.equal(
    toHex(xbin),
    "000003e8000003e9000089ed0000000000757365722e616c706861000001020b757365722e7a657461007a7a0a0f1c11",
  );
  // §6.2 "sub" dirtree (41 bytes).
  const sub = serialize("(a(say)a(sayay))", [[[
    "x.bin",
    fromHex("216ba8ddd52da14dbdd191fd4f5a21054d01a81b380916bdd3f1ede8ab6e6962"),
  ]], []]);
  assert.equal(
    toHex(sub),
    "782e62696e00216ba8ddd52da14dbdd191fd4f5a21054d01a81b380916bdd3f1ede8ab6e6962062728",
  );
  // §6.3 commit with an `as` inside a{sv} (166 bytes, offset width 1).
  const commit = serialize("(a{sv}aya(say)sstayay)", [
    [["ostree.ref-binding", new Variant("as", ["test"])]],
    fromHex("1a926050d7bb3574dcf11ff9f896c3b97001b34fc4f2d1abf8bea288d07f88be"),
    [],
    "hello subject",
    "",
    bswap64(1704067200n),
    fromHex("0f86cfa28920c2366da50471003603466753e2b6def2c6263510d1df22c6778a"),
    fromHex("446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488"),
  ]);
  assert.equal(commit.length, 166);
  assert.equal(
    toHex(commit.subarray(0, 0x23)),
    "6f73747265652e7265662d62696e64696e670000000000007465737400050061731322",
  );
  assert.equal(toHex(commit.subarray(0xa0)), "805251434323");
});

Deno.test("round trip: every basic type, arrays, maybes, dicts and nested variants", () => {
  const cases: [string, GValue][] = [
    ["b", true],
    ["b", false],
    ["y", 255],
    ["n", -32768],
    ["q", 65535],
    ["i", -2147483648],
    ["u", 4294967295],
    ["h", 3],
    ["x", -(1n << 63n)],
    ["t", (1n << 64n) - 1n],
    ["d", 3.5],
    ["s", "héllo ☃"],
    ["s", ""],
    ["o", "/org/example"],
    ["g", "a{sv}"],
    ["ay", new Uint8Array([0, 1, 255])],
    ["ay", new Uint8Array()],
    ["au", [1, 2, 3]],
    ["as", []],
    ["as", ["", "a", "bc"]],
    ["aas", [["x"], [], ["y", "z"]]],
    ["a(say)", [["n", new Uint8Array([9])]]],
    ["a{ss}", [["k1", "v1"], ["k2", ""]]],
    ["a{sv}", [["s", new Variant("s", "x")], ["t", new Variant("t", 42n)], [
      "nested",
      new Variant("a{sv}", [["b", new Variant("b", true)]]),
    ]]],
    ["ms", null],
    ["ms", "present"],
    ["mu", 7],
    ["mu", null],
    ["(yt)", [1, 2n]],
    ["(ty)", [2n, 1]],
    ["()", []],
    ["(sv)", ["key", new Variant("(uu)", [1, 2])]],
    ["v", new Variant("v", new Variant("s", "deep"))],
  ];
  for (const [sig, value] of cases) {
    const bytes = serialize(sig, value);
    const back = deserialize(sig, bytes);
    assert.deepEqual(back, value, `${sig} round trip`);
    assert.deepEqual(serialize(sig, back), bytes, `${sig} re-serializes identically`);
  }
});

Deno.test("serialize: known small encodings (alignment, padding, reverse tuple offsets)", () => {
  // (yt): y at 0, 7 pad bytes, t at 8 → 16 bytes, fixed, no offsets.
  assert.equal(toHex(serialize("(yt)", [1, 2n])), "01000000000000000200000000000000");
  // (ty): t then y, padded at the end to 8 → 16 bytes.
  assert.equal(toHex(serialize("(ty)", [2n, 1])), "02000000000000000100000000000000");
  // (ss): first string's end recorded, the last one's implied.
  assert.equal(toHex(serialize("(ss)", ["a", "bc"])), "610062630002");
  // (sss): two offsets, stored in reverse order (end of 2nd, then end of 1st).
  assert.equal(toHex(serialize("(sss)", ["a", "b", "c"])), "61006200630004" + "02");
  // as: element ends in forward order.
  assert.equal(toHex(serialize("as", ["a", "bc"])), "6100626300" + "0205");
  // v: value, NUL, type string.
  assert.equal(toHex(serialize("v", new Variant("u", 1))), "01000000" + "00" + "75");
  // ms with a variable-size child gets a trailing zero byte; mu does not.
  assert.equal(toHex(serialize("ms", "a")), "610000");
  assert.equal(toHex(serialize("mu", 1)), "01000000");
  assert.equal(toHex(serialize("()", [])), "00");
});

Deno.test("framing offset width: 1, 2 and 4 on real sizes, the boundary rule, and 8", () => {
  // The writer's rule: smallest w with body + n*w <= 2^(8w) - 1.
  assert.equal(offsetWidthForBody(254, 1), 1);
  assert.equal(offsetWidthForBody(255, 1), 2);
  assert.equal(offsetWidthForBody(0xffff - 2, 1), 2);
  assert.equal(offsetWidthForBody(0xffff - 1, 1), 4);
  assert.equal(offsetWidthForBody(0xffffffff - 4, 1), 4);
  assert.equal(offsetWidthForBody(0xffffffff - 3, 1), 8);
  assert.equal(offsetWidthForBody(10, 0), 0);
  // The reader's rule, from the container size.
  assert.equal(offsetWidthForSize(0), 0);
  assert.equal(offsetWidthForSize(0xff), 1);
  assert.equal(offsetWidthForSize(0x100), 2);
  assert.equal(offsetWidthForSize(0xffff), 2);
  assert.equal(offsetWidthForSize(0x10000), 4);
  assert.equal(offsetWidthForSize(0xffffffff), 4);
  assert.equal(offsetWidthForSize(0x100000000), 8);

  // Serialized arrays straddling each boundary round-trip and use the expected width.
  for (const [len, width] of [[253, 1], [254, 2], [65000, 2], [70000, 4]] as const) {
    const s = "a".repeat(len);
    const bytes = serialize("as", [s]);
    // body = len + 1 (NUL); total = body + width.
    assert.equal(bytes.length, len + 1 + width, `as of a ${len}-char string`);
    assert.deepEqual(deserialize("as", bytes), [s]);
  }
  // A two-member tuple crossing 255 bytes switches to 2-byte offsets.
  const t = serialize("(ss)", ["x".repeat(200), "y".repeat(60)]);
  assert.equal(t.length, 201 + 61 + 2);
  assert.deepEqual(deserialize("(ss)", t), ["x".repeat(200), "y".repeat(60)]);
});

Deno.test("deserialize: malformed input names the type and the problem", () => {
  assert.throws(() => deserialize("u", new Uint8Array(3)), /expected 4 bytes, found 3/);
  assert.throws(() => deserialize("s", new TextEncoder().encode("abc")), /without terminating NUL/);
  assert.throws(() => deserialize("s", new Uint8Array([0x61, 0, 0x62, 0])), /embedded NUL/);
  assert.throws(() => deserialize("s", new Uint8Array([0xff, 0])), /not valid UTF-8/);
  assert.throws(() => deserialize("b", new Uint8Array([2])), /boolean byte is 2/);
  // An array whose offset table points past its end.
  assert.throws(() => deserialize("as", new Uint8Array([0x61, 0, 9])), GVariantError);
  // A variant holding a bad type string.
  assert.throws(() => deserialize("v", new Uint8Array([1, 0, 0x7a])), /invalid type string/);
  // Shapes refused when writing.
  assert.throws(() => serialize("u", -1), /expected an integer in \[0, 4294967295\]/);
  assert.throws(() => serialize("(uu)", [1]), /expected 2 members/);
  assert.throws(() => serialize("s", "a\0b"), /without NUL/);
  assert.throws(() => serialize("ay", "x"), /expected a Uint8Array/);
});

Deno.test("deserialize: non-normal encodings are rejected by default and readable on request", () => {
  // specs §8.5: the 86-byte commit with padding byte 3 set to 01.
  const normal = fromHex(
    "7800000000000000000000006553f1006e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488300302000000",
  );
  const type = "(a{sv}aya(say)sstayay)";
  const parsed = deserialize(type, normal) as GValue[];
  assert.equal(parsed[3], "x");
  const tampered = normal.slice();
  tampered[3] = 1;
  assert.throws(
    () => deserialize(type, tampered),
    /not in normal form \(first difference .* byte 3/,
  );
  assert.deepEqual(deserialize(type, tampered, { normalForm: false }), parsed);

  // Offsets wider than needed: "as" ["a"] with a 2-byte offset in a 4-byte container is read by
  // width 1 and fails; the same with slack bytes is not normal.
  assert.throws(() => deserialize("as", new Uint8Array([0x61, 0, 0, 2])), GVariantError);
});

Deno.test("bswap32/bswap64 and lookupVariant", () => {
  assert.equal(bswap32(0o100644), 0xa4810000);
  assert.equal(bswap32(bswap32(0xdeadbeef)), 0xdeadbeef);
  // 1704067200 = 0x65920080: stored big-endian, read back little-endian.
  assert.equal(bswap64(1704067200n), 0x8000926500000000n);
  const dict = deserialize(
    "a{sv}",
    serialize("a{sv}", [["a", new Variant("s", "1")], ["a", new Variant("s", "2")]]),
  ) as [string, Variant][];
  assert.equal(lookupVariant(dict, "a")?.value, "1");
  assert.equal(lookupVariant(dict, "missing"), undefined);
});
