/**
 * Content checksums and metadata objects against the byte-level vectors of
 * specs/ostree-repo.md §5, §6, §7.2, §8.4 and §8.5 (each produced or accepted by the real ostree).
 */

import assert from "node:assert/strict";
import { toHex } from "../../../lib/digest/hash.ts";
import {
  canonicalXattrs,
  ContentChecksum,
  contentChecksum,
  fileHeader,
  normalizeFileMode,
} from "../../../lib/stores/ostree/checksum.ts";
import { UnsupportedEntryError } from "../../../lib/stores/ostree/errors.ts";
import {
  CommitMeta,
  metadataBool,
  metadataChecksum,
  metadataString,
  objectPath,
  parseCommit,
  parseDirMeta,
  parseDirTree,
  parseUidGidModeXattrs,
  serializeCommit,
  serializeDirMeta,
  serializeDirTree,
  serializeUidGidModeXattrs,
  validateFileName,
} from "../../../lib/stores/ostree/objects.ts";

const te = new TextEncoder();
const EMPTY_TREE = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";
const ROOT_META = "446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488";
const XBIN_META = {
  uid: 1000,
  gid: 1001,
  mode: 0o104755,
  // Deliberately unsorted and with an empty value: sorted and dropped when hashing.
  xattrs: [["user.zeta", te.encode("zz")], ["user.empty", new Uint8Array()], [
    "user.alpha",
    new Uint8Array([0, 1, 2]),
  ]] as [string, Uint8Array][],
};

Deno.test("file header and checksum: §5.1 hello.txt, link and x.bin", () => {
  const hello = { uid: 0, gid: 0, mode: 0o100644 };
  assert.equal(toHex(fileHeader(hello)), "00000012000000000000000000000000000081a4000000000011");
  assert.equal(
    contentChecksum(hello, te.encode("hello\n")),
    "44f778e59f0a4748d6b0c90a47347212a231c4ad1e8f7ea5c5dffc7749153a6b",
  );
  const link = { uid: 0, gid: 0, mode: 0o120777, symlinkTarget: "hello.txt" };
  assert.equal(
    toHex(fileHeader(link)),
    "0000001b0000000000000000000000000000a1ff0000000068656c6c6f2e747874001a",
  );
  assert.equal(
    contentChecksum(link),
    "f66efa496a72379413c44593de510dc344beb045294f1a543da87b2b6118db35",
  );
  assert.equal(
    toHex(fileHeader(XBIN_META)),
    "0000003000000000000003e8000003e9000089ed0000000000757365722e616c706861000001020b757365722e7a657461007a7a0a0f1c11",
  );
  assert.equal(
    contentChecksum(XBIN_META, te.encode("abc")),
    "216ba8ddd52da14dbdd191fd4f5a21054d01a81b380916bdd3f1ede8ab6e6962",
  );
});

Deno.test("file checksum: §5.2 run.sh and alias, §8.4 empty cloned object", () => {
  assert.equal(
    contentChecksum(
      {
        uid: 0,
        gid: 0,
        mode: 0o100755,
        xattrs: [["user.b", te.encode("2")], ["user.a", te.encode("1")]],
      },
      te.encode("#!/bin/sh\necho hi\n"),
    ),
    "91e70b29f49e98235c317d72581939f575d347a68f01f91694c78ff0afbc0daf",
  );
  assert.equal(
    contentChecksum({ uid: 0, gid: 0, mode: 0o120777, symlinkTarget: "run.sh" }),
    "4776f8f3ac30f590371d614977276a1f084db09f979363aeb57cdf923a2a31ee",
  );
  assert.equal(
    contentChecksum({
      uid: 1000,
      gid: 1000,
      mode: 0o100640,
      xattrs: [["user.checksum.test", te.encode("v")]],
    }, new Uint8Array()),
    "87e963861cbfa2dd78aea746372d19311cc676e80affd53bf9d3d74d6bd3135e",
  );
});

Deno.test("ContentChecksum streams: any chunking gives the one-shot checksum", () => {
  const data = new Uint8Array(200_003).map((_, i) => (i * 31 + 7) & 0xff);
  const expected = contentChecksum(XBIN_META, data);
  for (const chunk of [1, 4095, 65536, 1 << 20]) {
    const h = new ContentChecksum(XBIN_META);
    for (let i = 0; i < data.length; i += chunk) h.update(data.subarray(i, i + chunk));
    assert.equal(h.size, data.length);
    assert.equal(h.hex(), expected, `chunk ${chunk}`);
  }
});

Deno.test("modes and xattrs: symlinks hash as 0120777, types ostree cannot store are refused", () => {
  assert.equal(normalizeFileMode(0o120755), 0o120777);
  assert.equal(normalizeFileMode(0o107755), 0o107755);
  assert.throws(() => normalizeFileMode(0o010644, "/dev/fifo"), UnsupportedEntryError);
  assert.throws(() => normalizeFileMode(0o040755), /not a regular file or symlink/);
  // A symlink's mode bits from a tar header do not change the checksum.
  assert.equal(
    contentChecksum({ uid: 0, gid: 0, mode: 0o120755, symlinkTarget: "hello.txt" }),
    "f66efa496a72379413c44593de510dc344beb045294f1a543da87b2b6118db35",
  );
  // Sorting is strcmp over bytes, not JavaScript string order ("Z" < "a" < "é").
  const sorted = canonicalXattrs([
    ["user.é", te.encode("3")],
    ["user.a", te.encode("2")],
    ["user.Z", te.encode("1")],
    ["user.none", new Uint8Array()],
  ]).map(([n]) => new TextDecoder().decode(n));
  assert.deepEqual(sorted, ["user.Z\0", "user.a\0", "user.é\0"]);
  assert.throws(
    () => canonicalXattrs([["user.x", te.encode("1")], ["user.x", te.encode("2")]]),
    /twice/,
  );
});

Deno.test("dirmeta: §6.1 vector, bare-user ostreemeta §7.2, round trips", () => {
  const root = serializeDirMeta({ uid: 0, gid: 0, mode: 0o40755 });
  assert.equal(toHex(root), "00000000" + "00000000" + "000041ed");
  assert.equal(metadataChecksum(root), ROOT_META);
  assert.deepEqual(parseDirMeta(root), { uid: 0, gid: 0, mode: 0o40755, xattrs: [] });
  assert.throws(() => serializeDirMeta({ uid: 0, gid: 0, mode: 0o100644 }), /not a directory mode/);

  const meta = serializeUidGidModeXattrs(XBIN_META);
  assert.equal(
    toHex(meta),
    "000003e8000003e9000089ed757365722e616c706861000001020b757365722e7a657461007a7a0a0f1c",
  );
  const back = parseUidGidModeXattrs(meta, "x.bin");
  assert.equal(back.mode, 0o104755);
  assert.deepEqual(back.xattrs.map(([n]) => n), ["user.alpha", "user.zeta"]);
  assert.throws(() => parseDirMeta(meta, "objects/xx/yy.dirmeta"), /is not a directory/);
});

Deno.test("dirtree: §6.2 sub, root and §5.2 root vectors; names validated and sorted", () => {
  const sub = serializeDirTree({
    files: [{
      name: "x.bin",
      checksum: "216ba8ddd52da14dbdd191fd4f5a21054d01a81b380916bdd3f1ede8ab6e6962",
    }],
    dirs: [],
  });
  assert.equal(
    metadataChecksum(sub),
    "d55f1bd02cfe946d0310b011c1c26267b63cf2454009ec0d1beb166360871773",
  );
  // Given out of order: the writer sorts.
  const root = serializeDirTree({
    files: [
      {
        name: "link",
        checksum: "f66efa496a72379413c44593de510dc344beb045294f1a543da87b2b6118db35",
      },
      {
        name: "hello.txt",
        checksum: "44f778e59f0a4748d6b0c90a47347212a231c4ad1e8f7ea5c5dffc7749153a6b",
      },
    ],
    dirs: [{
      name: "sub",
      tree: "d55f1bd02cfe946d0310b011c1c26267b63cf2454009ec0d1beb166360871773",
      meta: ROOT_META,
    }],
  });
  assert.equal(root.length, 155);
  assert.equal(
    metadataChecksum(root),
    "0f86cfa28920c2366da50471003603466753e2b6def2c6263510d1df22c6778a",
  );
  assert.deepEqual(parseDirTree(root).files.map((f) => f.name), ["hello.txt", "link"]);

  const handmade = serializeDirTree({
    files: [
      {
        name: "run.sh",
        checksum: "91e70b29f49e98235c317d72581939f575d347a68f01f91694c78ff0afbc0daf",
      },
      {
        name: "alias",
        checksum: "4776f8f3ac30f590371d614977276a1f084db09f979363aeb57cdf923a2a31ee",
      },
    ],
    dirs: [{ name: "empty", tree: EMPTY_TREE, meta: ROOT_META }],
  });
  assert.equal(
    metadataChecksum(handmade),
    "b33b13fbf49040f96eaf4258ef6221c828182f5936c3ae5283935eaac9b63b90",
  );
  assert.equal(metadataChecksum(serializeDirTree({ files: [], dirs: [] })), EMPTY_TREE);

  for (const bad of ["", ".", "..", "a/b", "nul\0", "\ud800"]) {
    assert.throws(
      () => serializeDirTree({ files: [{ name: bad, checksum: EMPTY_TREE }], dirs: [] }, "/x"),
      /^Error|OstreeError/,
      `name ${JSON.stringify(bad)}`,
    );
  }
  assert.throws(() => validateFileName("\ud800", "/x"), /Invalid UTF-8 in filename/);
  assert.throws(
    () =>
      serializeDirTree({
        files: [{ name: "a", checksum: EMPTY_TREE }],
        dirs: [{ name: "a", tree: EMPTY_TREE, meta: ROOT_META }],
      }),
    /appears twice/,
  );
});

Deno.test("dirtree: 2000 files need 4-byte framing offsets (§6.2 large vector from ostree commit)", () => {
  const files = [];
  for (let i = 0; i < 2000; i++) {
    files.push({
      name: `file${String(i).padStart(5, "0")}`,
      checksum: contentChecksum({ uid: 0, gid: 0, mode: 0o100644 }, te.encode(String(i))),
    });
  }
  const bytes = serializeDirTree({ files, dirs: [] });
  assert.equal(bytes.length, 94004);
  assert.equal(
    metadataChecksum(bytes),
    "992c8f62e81884a9e0e008b86a6ab9a80eb6b365fb50091de85480e69393a32b",
  );
  assert.equal(parseDirTree(bytes).files.length, 2000);
});

Deno.test("commit: §6.3 and §5.2 vectors, metadata order matters, §8.5 normal form", () => {
  const c1 = {
    metadata: [["ostree.ref-binding", CommitMeta.strings(["test"])] as const],
    parent: "1a926050d7bb3574dcf11ff9f896c3b97001b34fc4f2d1abf8bea288d07f88be",
    subject: "hello subject",
    body: "",
    timestamp: 1704067200,
    rootTree: "0f86cfa28920c2366da50471003603466753e2b6def2c6263510d1df22c6778a",
    rootMeta: ROOT_META,
  };
  const b1 = serializeCommit({ ...c1, metadata: [...c1.metadata] });
  assert.equal(b1.length, 166);
  assert.equal(
    metadataChecksum(b1),
    "ec2511b4bf96d85aaebf250d1a8c798bdf041cf7c80b8a868d27cada4354eea1",
  );
  const parsed = parseCommit(b1);
  assert.equal(parsed.parent, c1.parent);
  assert.equal(parsed.timestamp, 1704067200);
  assert.deepEqual(parsed.metadata[0][1].value, ["test"]);

  const c2 = {
    metadata: [
      ["version", CommitMeta.string("1.0")] as const,
      ["ostree.ref-binding", CommitMeta.strings(["hand"])] as const,
    ],
    parent: null,
    subject: "handmade",
    body: "body text",
    timestamp: 1700000000,
    rootTree: "b33b13fbf49040f96eaf4258ef6221c828182f5936c3ae5283935eaac9b63b90",
    rootMeta: ROOT_META,
  };
  const b2 = serializeCommit({ ...c2, metadata: [...c2.metadata] });
  assert.equal(b2.length, 150);
  assert.equal(
    metadataChecksum(b2),
    "0c177c85427053da5c4ec5bb6375b09b139647301050f407cc52cf5ec69456d5",
  );
  assert.equal(metadataString(parseCommit(b2).metadata, "version"), "1.0");
  // Reordering keys changes the checksum (ostree keeps insertion order).
  const swapped = serializeCommit({ ...c2, metadata: [c2.metadata[1], c2.metadata[0]] });
  assert.notEqual(metadataChecksum(swapped), metadataChecksum(b2));

  const minimal = serializeCommit({
    metadata: [],
    parent: null,
    subject: "x",
    body: "",
    timestamp: 1700000000,
    rootTree: EMPTY_TREE,
    rootMeta: ROOT_META,
  });
  assert.equal(minimal.length, 86);
  assert.equal(
    metadataChecksum(minimal),
    "f0b8ea3da476fc630056a91e8cdf801badbf0b2fba9af4d20cfa43257f9f8a5f",
  );
  const tampered = minimal.slice();
  tampered[3] = 1;
  assert.equal(
    metadataChecksum(tampered),
    "ae40b0e51d369a9d88bc442d0b12783576918fdeb8872643de75d88666d7b5ec",
  );
  assert.throws(
    () => parseCommit(tampered, "objects/ae/40.commit"),
    /objects\/ae\/40\.commit: .*normal form/,
  );
});

Deno.test("commit metadata: strings, booleans and integers as a{sv} values", () => {
  const bytes = serializeCommit({
    metadata: [
      ["s", CommitMeta.string("text")],
      ["b", CommitMeta.bool(true)],
      ["i", CommitMeta.int32(-5)],
      ["u", CommitMeta.uint32(5)],
      ["x", CommitMeta.int64(-(2 ** 40))],
      ["t", CommitMeta.uint64(42)],
    ],
    parent: null,
    subject: "",
    body: "",
    timestamp: 0,
    rootTree: EMPTY_TREE,
    rootMeta: ROOT_META,
  });
  const md = parseCommit(bytes).metadata;
  assert.deepEqual(md.map(([k, v]) => [k, v.type, v.value]), [
    ["s", "s", "text"],
    ["b", "b", true],
    ["i", "i", -5],
    ["u", "u", 5],
    ["x", "x", -(2n ** 40n)],
    ["t", "t", 42n],
  ]);
  assert.equal(metadataBool(md, "b"), true);
  assert.equal(metadataBool(md, "s"), undefined);
  // Values inside a{sv} are little-endian (not swapped like ostree's own fields): uint64 42.
  const hex = toHex(bytes);
  assert.ok(hex.includes("2a00000000000000"), "uint64 42 little-endian in the metadata");
});

Deno.test("objectPath spells loose object paths and refuses non-checksums", () => {
  assert.equal(objectPath(ROOT_META, "dirmeta"), `44/${ROOT_META.slice(2)}.dirmeta`);
  assert.equal(objectPath(EMPTY_TREE, "file"), `6e/${EMPTY_TREE.slice(2)}.file`);
  assert.throws(() => objectPath("ABC", "file"), /64-character lowercase hex/);
  assert.throws(() => objectPath(ROOT_META.toUpperCase(), "commit"), /lowercase hex/);
});
