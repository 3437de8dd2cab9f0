// Format-level rules of containers-storage, checked against the vectors of
// specs/containers-storage.md (§2.2 layer ids, §2.4 big-data names, §3.3 tokens, §4 tar-split).

import assert from "node:assert/strict";
import zlib from "node:zlib";
import { Crc64Iso } from "../../../lib/digest/crc64.ts";
import { bigDataFileName } from "../../../lib/stores/cstorage/big_data.ts";
import { binaryFromBytes } from "../../../lib/oci/binary_string.ts";
import { goBase, goClean, layerComponents } from "../../../lib/stores/cstorage/entry_path.ts";
import {
  AmbiguousImageError,
  StoreFormatError,
  UnsupportedLayerError,
} from "../../../lib/stores/cstorage/errors.ts";
import { parseImageRecord } from "../../../lib/stores/cstorage/image_record.ts";
import { matchImage } from "../../../lib/stores/cstorage/store.ts";
import { layerChainIds, layerId } from "../../../lib/stores/cstorage/layer_id.ts";
import { newWriteToken, TOKEN_SIZE } from "../../../lib/stores/cstorage/lockfile.ts";
import { newLinkId } from "../../../lib/stores/cstorage/overlay_layer.ts";
import {
  encodeTarSplitEntry,
  parseTarSplitLine,
  readTarSplitBatches,
  readTarSplitEntries,
  type TarSplitEntry,
} from "../../../lib/stores/cstorage/tar_split.ts";

const BASE = "57668afc5780925aa96cbcded57b95a3bc1b7435086bd378e80bb8984aaf6d68";
const CHILD_DIFF = "324247619d938a5f1d7fbb948b2f9b8aa5edf8695488ae76bb674fcddee54625";
const CHILD = "8df12966d0bb8141d3061daec864f3c55da0cbe39368e3c05bdac431b5e5cda3";

Deno.test("layer ids: base = DiffID hex, child = sha256(parent + '+' + DiffID hex) (spec §2.2)", () => {
  assert.equal(layerId(null, `sha256:${BASE}`), BASE);
  assert.equal(layerId(BASE, `sha256:${CHILD_DIFF}`), CHILD);
  assert.deepEqual(layerChainIds([`sha256:${BASE}`, `sha256:${CHILD_DIFF}`]), [BASE, CHILD]);
  assert.throws(() => layerId(null, BASE), /expected a DiffID "sha256:<64 hex>"/);
});

Deno.test("big-data file names: plain keys kept, others '=' + base64 (spec §2.4)", () => {
  const config = "16762f1c4ac2b7feab136bfd6d295f5b083ceef8f1d405f6071e3affcb2b09b8";
  const manifest = "600e951aec788c341e83a955e0997b31720d23c6656b0c95423079b9c56f647b";
  assert.equal(bigDataFileName("manifest"), "manifest");
  assert.equal(
    bigDataFileName(`sha256:${config}`),
    "=c2hhMjU2OjE2NzYyZjFjNGFjMmI3ZmVhYjEzNmJmZDZkMjk1ZjViMDgzY2VlZjhmMWQ0MDVmNjA3MWUzYWZmY2IyYjA5Yjg=",
  );
  assert.equal(
    bigDataFileName(`manifest-sha256:${manifest}`),
    "=bWFuaWZlc3Qtc2hhMjU2OjYwMGU5NTFhZWM3ODhjMzQxZTgzYTk1NWUwOTk3YjMxNzIwZDIzYzY2NTZiMGM5NTQyMzA3OWI5YzU2ZjY0N2I=",
  );
  assert.equal(
    bigDataFileName(`signature-${manifest}`),
    "=c2lnbmF0dXJlLTYwMGU5NTFhZWM3ODhjMzQxZTgzYTk1NWUwOTk3YjMxNzIwZDIzYzY2NTZiMGM5NTQyMzA3OWI5YzU2ZjY0N2I=",
  );
});

Deno.test("tar names are cleaned like Go's filepath.Clean and never leave the layer", () => {
  assert.equal(goClean("./etc//passwd"), "etc/passwd");
  assert.equal(goClean("etc/"), "etc");
  assert.equal(goClean("/a/../../b"), "/b");
  assert.equal(goClean("a/../../b"), "../b");
  assert.equal(goClean("./"), ".");
  assert.deepEqual(layerComponents("/usr/./bin/"), ["usr", "bin"]);
  assert.deepEqual(layerComponents("."), []);
  assert.deepEqual(layerComponents("../etc/passwd"), { escape: "../etc/passwd" });
  assert.deepEqual(layerComponents("a/../../etc"), { escape: "a/../../etc" });
  assert.equal(goBase("var/cache/.wh..wh..opq"), ".wh..wh..opq");
  assert.equal(goBase("etc/"), "etc");
});

Deno.test("tar-split lines are written as Go's packer writes them (spec §4.1)", () => {
  const hello = new TextEncoder().encode("hello from layer 2 (overrides)\n");
  const crc = new Crc64Iso().update(hello).digestBytes();
  const file = (name: Uint8Array | string, size: number, c: Uint8Array | null, position: number) =>
    encodeTarSplitEntry({
      type: "file",
      name: binaryFromBytes(typeof name === "string" ? new TextEncoder().encode(name) : name),
      size,
      crc: c,
      position,
    });
  assert.equal(file("etc/", 0, null, 1), '{"type":1,"name":"etc/","payload":null,"position":1}\n');
  assert.equal(
    file("etc/hello.txt", 31, crc, 3),
    '{"type":1,"name":"etc/hello.txt","size":31,"payload":"r0NDIg+V0u0=","position":3}\n',
  );
  assert.equal(
    encodeTarSplitEntry({ type: "segment", payload: new Uint8Array([0, 1, 2]), position: 0 }),
    '{"type":2,"payload":"AAEC","position":0}\n',
  );
  // Not UTF-8: name_raw; "<>&" escaped as Go's encoder does.
  const latin1 = new Uint8Array([0x63, 0x61, 0x66, 0xe9]);
  assert.equal(
    file(latin1, 0, null, 5),
    '{"type":1,"name_raw":"Y2Fm6Q==","payload":null,"position":5}\n',
  );
  assert.equal(
    file("a<b>&c", 0, null, 7),
    '{"type":1,"name":"a\\u003cb\\u003e\\u0026c","payload":null,"position":7}\n',
  );
  // And back.
  const parsed = parseTarSplitLine(file(latin1, 12, crc, 9), "test");
  assert.deepEqual(parsed, {
    type: "file",
    name: binaryFromBytes(latin1),
    size: 12,
    crc,
    position: 9,
  });
  assert.throws(() => parseTarSplitLine('{"type":3,"position":0}', "t"), StoreFormatError);
  assert.throws(
    () => parseTarSplitLine('{"type":1,"payload":"AAE=","position":0}', "t"),
    /8-byte CRC-64/,
  );
});

async function* once(bytes: Uint8Array) {
  // Split in odd places: lines must be reassembled across chunks.
  for (let i = 0; i < bytes.length; i += 7) yield bytes.slice(i, i + 7);
}

Deno.test("tar-split files round-trip through gzip and refuse duplicate paths", async () => {
  const entries: TarSplitEntry[] = [
    { type: "segment", payload: new Uint8Array(512).fill(1), position: 0 },
    { type: "file", name: "etc/", size: 0, crc: null, position: 1 },
    { type: "segment", payload: new Uint8Array(1024), position: 2 },
  ];
  const text = entries.map(encodeTarSplitEntry).join("");
  const gz = new Uint8Array(zlib.gzipSync(new TextEncoder().encode(text)));
  const back: TarSplitEntry[] = [];
  for await (const e of readTarSplitEntries(once(new Uint8Array(zlib.gunzipSync(gz))), "t")) {
    back.push(e);
  }
  assert.deepEqual(back, entries);

  const dup = text +
    encodeTarSplitEntry({ type: "file", name: "./etc", size: 0, crc: null, position: 3 });
  await assert.rejects(async () => {
    for await (
      const _ of readTarSplitEntries(once(new TextEncoder().encode(dup)), "t")
    ) { /* drain */ }
  }, UnsupportedLayerError);
  const gap = encodeTarSplitEntry({ type: "file", name: "a", size: 0, crc: null, position: 4 });
  await assert.rejects(async () => {
    for await (
      const _ of readTarSplitEntries(once(new TextEncoder().encode(gap)), "t")
    ) { /* drain */ }
  }, /expected tar-split entry 0, found position 4/);
});

/** `bytes` in chunks of the given sizes, cycling through them. */
async function* chunked(bytes: Uint8Array, sizes: number[]) {
  for (let i = 0, k = 0; i < bytes.length; k++) {
    const n = sizes[k % sizes.length];
    yield bytes.slice(i, i + n);
    i += n;
  }
}

Deno.test("tar-split batches: every entry once, in order, whichever way the lines are chunked", async () => {
  const entries: TarSplitEntry[] = Array.from(
    { length: 60 },
    (_, i) =>
      i % 2 === 0 ? { type: "segment", payload: new Uint8Array(512 + i).fill(i), position: i } : {
        type: "file",
        name: `usr/lib/f${i}`,
        size: i * 100,
        crc: new Uint8Array(8),
        position: i,
      },
  );
  const bytes = new TextEncoder().encode(entries.map(encodeTarSplitEntry).join(""));
  // One chunk; chunks holding several whole lines and a part; chunks inside one line.
  for (const sizes of [[bytes.length], [2000, 3333], [5, 700, 1]]) {
    const batches: TarSplitEntry[][] = [];
    for await (const b of readTarSplitBatches(chunked(bytes, sizes), "t")) batches.push(b);
    assert.deepEqual(batches.flat(), entries, `chunks of ${sizes.join(", ")} bytes`);
    assert.ok(batches.every((b) => b.length > 0), "no empty batch");
    if (sizes.length > 1) assert.ok(batches.length > 1, "one batch per chunk that ends lines");
  }

  // A line that is not UTF-8 is named by its number, counted across chunks and batches.
  const lines = entries.slice(0, 7).map(encodeTarSplitEntry);
  const bad = new TextEncoder().encode(lines.join(""));
  const at = new TextEncoder().encode(lines.slice(0, 5).join("")).length + 20; // in line 5
  bad[at] = 0xff;
  for (const sizes of [[bad.length], [1000, 77]]) {
    await assert.rejects(async () => {
      for await (const _ of readTarSplitBatches(chunked(bad, sizes), "t")) { /* drain */ }
    }, /t: tar-split line 5 is not UTF-8/);
  }
});

Deno.test("write tokens: 64 bytes of time, counter, pid and randomness (spec §3.3)", () => {
  const before = BigInt(Date.now()) * 1_000_000n;
  const a = newWriteToken();
  const b = newWriteToken();
  const after = BigInt(Date.now() + 1) * 1_000_000n;
  assert.equal(a.length, TOKEN_SIZE);
  const va = new DataView(a.buffer);
  const vb = new DataView(b.buffer);
  const nanos = va.getBigUint64(0, true);
  assert.ok(
    nanos >= before - 1_000_000n && nanos <= after,
    `time ${nanos} not within [${before}, ${after}]`,
  );
  assert.equal(
    vb.getBigUint64(8, true),
    va.getBigUint64(8, true) + 1n,
    "the counter counts writes",
  );
  assert.equal(va.getUint32(16, true), Deno.pid);
  assert.notDeepEqual(a.subarray(20), b.subarray(20), "44 random bytes differ between tokens");
});

Deno.test("short link ids are 26 characters of base32, as the overlay driver makes them", () => {
  const ids = new Set(Array.from({ length: 50 }, newLinkId));
  assert.equal(ids.size, 50);
  for (const id of ids) assert.match(id, /^[A-Z2-7]{26}$/);
});

Deno.test("image references: ids, prefixes, names, short names and digests; ambiguity refused", () => {
  const record = (id: string, names: string[], digest: string) =>
    parseImageRecord(
      { id, names, digest, "big-data-digests": { [`manifest-${digest}`]: digest } },
      "images.json",
    );
  const d1 = `sha256:${"1".repeat(64)}`;
  const d2 = `sha256:${"2".repeat(64)}`;
  const a = record(
    `ab${"0".repeat(62)}`,
    ["localhost/app:v1", "docker.io/library/busybox:latest"],
    d1,
  );
  const b = record(`ac${"0".repeat(62)}`, ["quay.io/x/y:1"], d2);
  const images = [a, b];
  const find = (ref: string) => matchImage("/store", images, ref)?.id;
  assert.equal(find(a.id), a.id);
  assert.equal(find(`sha256:${b.id}`), b.id);
  assert.equal(find("ab"), a.id);
  assert.equal(find("localhost/app:v1"), a.id);
  assert.equal(find("app:v1"), a.id);
  assert.equal(find("busybox"), a.id);
  assert.equal(find(d2), b.id);
  assert.equal(find(`quay.io/x/y@${d2}`), b.id);
  assert.equal(find(`quay.io/x/y@${d1}`), undefined);
  assert.equal(find("app:v2"), undefined);
  assert.throws(() => find("a"), AmbiguousImageError);
});
