/**
 * The streaming tar reader: parsed fields of awkward entries, byte-exact reassembly from the
 * raw parts whatever the chunking, agreement with GNU tar's own listing, and precise errors.
 */

import assert from "node:assert/strict";
import { TarFormatError } from "../../lib/oci/errors.ts";
import { type TarEntry, TarReader } from "../../lib/oci/tar.ts";
import {
  awkwardLayer0,
  awkwardLayer1,
  awkwardLayer2,
  awkwardLayers,
  paxRecord,
  TarBuilder,
} from "../fixtures/oci/mod.ts";
import { run } from "../harness/run.ts";
import { toolTest } from "../harness/tools.ts";

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
}

interface Read {
  entries: TarEntry[];
  payloads: Uint8Array[];
  rebuilt: Uint8Array;
}

async function readAll(bytes: Uint8Array, chunk = 65536): Promise<Read> {
  const tar = new TarReader(chunked(bytes, chunk), "test.tar");
  const entries: TarEntry[] = [];
  const payloads: Uint8Array[] = [];
  const parts: Uint8Array[] = [];
  for (let e = await tar.next(); e !== null; e = await tar.next()) {
    entries.push(e);
    parts.push(e.rawHeader.slice());
    const p: Uint8Array[] = [];
    for await (const c of tar.readPayload()) p.push(c.slice());
    const payload = concat(p);
    payloads.push(payload);
    parts.push(payload, (await tar.readPadding()).slice());
  }
  for await (const c of tar.readTrailer()) parts.push(c.slice());
  return { entries, payloads, rebuilt: concat(parts) };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("tar reader: every awkward layer reassembles byte for byte from its raw parts", async () => {
  for (const [i, layer] of awkwardLayers().entries()) {
    for (const chunk of [1, 511, 512, 513, 65536]) {
      if (chunk === 1 && layer.tar.length > 200_000) continue; // 1-byte chunks: small layers only
      const { rebuilt } = await readAll(layer.tar, chunk);
      assert.equal(rebuilt.length, layer.tar.length, `layer ${i}, chunk ${chunk}: length`);
      assert.deepEqual(rebuilt, layer.tar, `layer ${i}, chunk ${chunk}: bytes`);
    }
  }
});

Deno.test("tar reader: pax layer fields (global header, xattrs, mtime fraction, big uid, long names)", async () => {
  const { entries, payloads } = await readAll(awkwardLayer0(), 7777);
  const byPath = new Map(entries.map((e, i) => [e.pathText, { e, payload: payloads[i] }]));
  const g = entries[0];
  assert.equal(g.type, "pax-global");
  assert.equal(g.payloadSize, 0);
  assert.equal(text(g.pax.get("comment")!), "unistore awkward fixture");
  assert.equal(g.rawHeader.length, 1024, "g header block plus one block of records");

  const ping = byPath.get("usr/bin/ping")!.e;
  assert.deepEqual([...ping.xattrs.keys()].sort(), ["security.capability", "user.comment"]);
  assert.equal(ping.xattrs.get("security.capability")![3], 0x02);
  assert.equal(text(ping.xattrs.get("user.comment")!), "pings things");
  assert.deepEqual(ping.headerParts.map((p) => p.typeflag), ["x", "0"]);
  // The global record applies to every later entry too.
  assert.equal(text(ping.pax.get("comment")!), "unistore awkward fixture");

  assert.deepEqual(byPath.get("usr/lib/fractional-mtime")!.e.mtime, {
    sec: 1700000000,
    nsec: 123456789,
  });
  const big = byPath.get("usr/lib/big-uid")!.e;
  assert.equal(big.uid, 3_000_000);
  assert.equal(big.gid, 3_000_001);

  const su = byPath.get("usr/bin/su")!.e;
  assert.equal(su.mode & 0o7777, 0o4755);
  assert.equal(su.type, "file");
  assert.equal(su.payloadSize, 300);
  assert.equal(su.paddingSize, 212);

  const sh = byPath.get("usr/bin/sh")!.e;
  assert.equal(sh.type, "hardlink");
  assert.equal(sh.linkPathText, "usr/bin/bash");
  assert.equal(sh.payloadSize, 0);

  const long = entries.find((e) => e.pathText.endsWith("file-in-long-dir.txt"))!;
  assert.ok(long.path.length > 100);
  assert.equal(long.format, "ustar");
  const link = byPath.get("usr/lib/long-link")!.e;
  assert.equal(link.type, "symlink");
  assert.ok(link.linkPath.length > 100);

  const latin = entries.find((e) => e.path.includes(0xe9))!;
  assert.deepEqual(
    latin.path,
    new Uint8Array([...new TextEncoder().encode("usr/share/caf"), 0xe9, 0x2e, 0x74, 0x78, 0x74]),
  );

  const dev = byPath.get("dev/null")!.e;
  assert.equal(dev.type, "char");
  assert.deepEqual([dev.devMajor, dev.devMinor], [1, 3]);
  assert.equal(byPath.get("dev/fifo")!.e.type, "fifo");
  assert.equal(byPath.get("etc/exactly-65")!.payload.length, 65);
  assert.equal(byPath.get("usr/lib/big.img")!.e.payloadSize, 3 * 1024 * 1024);
  assert.equal(byPath.get("tmp/")!.e.mode, 0o1777);
});

Deno.test("tar reader: GNU layer (L/K long names, base-256 uid, old \\0 typeflag, whiteouts, record padding)", async () => {
  const tar = awkwardLayer1();
  const { entries } = await readAll(tar);
  assert.equal(tar.length % 10240, 0, "fixture is padded to a GNU record");
  const long = entries.find((e) => e.pathText.startsWith("opt/gnu-long-name-"))!;
  assert.equal(long.format, "gnu");
  assert.deepEqual(long.headerParts.map((p) => p.typeflag), ["L", "0"]);
  assert.equal(long.uid, 70_000_000);
  assert.ok(long.pathText.endsWith("-end"));
  const link = entries.find((e) => e.pathText === "opt/gnu-long-link")!;
  assert.deepEqual(link.headerParts.map((p) => p.typeflag), ["K", "2"]);
  assert.equal(link.linkPathText, "/" + long.pathText);
  const old = entries.find((e) => e.pathText === "opt/old-typeflag")!;
  assert.equal(old.typeflag, "\0");
  assert.equal(old.type, "file");
  assert.equal(old.payloadSize, 80);
  assert.ok(entries.some((e) => e.pathText === "etc/.wh.hostname"));
  assert.ok(entries.some((e) => e.pathText === "var/cache/.wh..wh..opq"));
});

Deno.test("tar reader: ustar prefix split and contiguous files", async () => {
  const { entries } = await readAll(awkwardLayer2());
  const deep = entries.find((e) => e.pathText.endsWith("leaf-file-name.bin"))!;
  assert.ok(deep.pathText.startsWith("srv/deep-directory-level/"));
  assert.ok(deep.path.length > 100, "name came from prefix + name");
  assert.deepEqual(deep.headerParts.map((p) => p.typeflag), ["0"]);
  const c = entries.find((e) => e.pathText === "srv/contiguous")!;
  assert.equal(c.type, "contiguous");
  assert.equal(c.payloadSize, 3000);
});

Deno.test("tar reader: directories with a size field carry no payload (Go's rule); a \\0 entry with / is a directory", async () => {
  // A directory header claiming 1000 bytes, followed directly by a file: Go's archive/tar reads
  // no data for header-only types, so the next header follows immediately.
  const t = new TarBuilder("pax");
  t.add({ path: "d/", type: "dir", content: "" });
  t.add({ path: "olddir/", type: "file", typeflag: "\0" });
  t.file("f", "x");
  const bytes = t.build();
  // Patch the size of the first header to 1000 (octal 1750) and fix its checksum.
  bytes.set(new TextEncoder().encode("00000001750\0"), 124);
  bytes.fill(0x20, 148, 156);
  const sum = bytes.subarray(0, 512).reduce((s, x) => s + x, 0);
  bytes.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  const { entries, rebuilt } = await readAll(bytes);
  assert.deepEqual(entries.map((e) => [e.pathText, e.type, e.payloadSize]), [
    ["d/", "directory", 0],
    ["olddir/", "directory", 0],
    ["f", "file", 1],
  ]);
  assert.equal(entries[0].declaredSize, 1000);
  assert.deepEqual(rebuilt, bytes);
});

Deno.test("tar reader: errors name the archive and the byte offset", async () => {
  const good = new TarBuilder("pax").file("a", "hello").file("b", "x".repeat(700)).build();
  const badSum = good.slice();
  badSum[512 * 2 + 10] ^= 0xff; // inside the header of "b"
  await assert.rejects(readAll(badSum), (e: unknown) => {
    assert.ok(e instanceof TarFormatError);
    assert.equal(e.offset, 1024);
    assert.match(e.message, /test\.tar: at byte 1024: header checksum mismatch/);
    return true;
  });
  const truncated = good.slice(0, 1024 + 512 + 100); // inside b's payload
  await assert.rejects(
    readAll(truncated),
    /archive truncated: 600 payload bytes missing|archive truncated/,
  );
  const badPax = new TarBuilder("pax").add({ path: "p", content: "", pax: { uid: "12x" } }).build();
  await assert.rejects(readAll(badPax), /pax uid is not an integer: "12x"/);
  // A pax record whose declared length runs past the extended header data.
  const malformed = new TarBuilder("pax").add({ path: "q", content: "", pax: { comment: "abc" } })
    .build();
  const rec = new TextDecoder().decode(paxRecord("comment", "abc"));
  assert.equal(rec, "15 comment=abc\n");
  assert.equal(new TextDecoder().decode(malformed.subarray(512, 514)), "15");
  malformed[513] = 0x39; // "19": longer than the 15 bytes of data
  await assert.rejects(
    readAll(malformed),
    /test\.tar: at byte 512: pax record of length 19 is malformed/,
  );
});

toolTest("tar reader: entry names, types, sizes and owners match GNU tar's listing", [
  { bin: "tar", pkg: "tar" },
], async (bins) => {
  const dir = await Deno.makeTempDir({ prefix: "unistore-tar-" });
  try {
    for (const [i, layer] of awkwardLayers().entries()) {
      const path = `${dir}/layer${i}.tar`;
      await Deno.writeFile(path, layer.tar);
      const r = await run([bins.tar, "--numeric-owner", "--quoting-style=escape", "-tvf", path], {
        env: { LC_ALL: "C", TZ: "UTC" },
      });
      assert.equal(r.code, 0, r.stderr);
      const gnu = r.stdout.split("\n").filter((l) => l !== "");
      const { entries } = await readAll(layer.tar);
      const ours = entries.filter((e) => e.type !== "pax-global");
      assert.equal(ours.length, gnu.length, `layer ${i}: entry count`);
      for (const [j, e] of ours.entries()) {
        const line = gnu[j];
        const escaped = [...e.path].map((b) =>
          b >= 0x20 && b < 0x7f && b !== 0x5c
            ? String.fromCharCode(b)
            : `\\${b.toString(8).padStart(3, "0")}`
        ).join("");
        assert.ok(
          line.includes(` ${escaped}`),
          `layer ${i}: ${JSON.stringify(line)} names ${escaped}`,
        );
        assert.ok(
          line.includes(` ${e.uid}/${e.gid} `),
          `layer ${i}: ${line} owner ${e.uid}/${e.gid}`,
        );
        const typeChar = line[0];
        const expected: Record<string, string> = {
          file: "-",
          directory: "d",
          symlink: "l",
          hardlink: "h",
          char: "c",
          fifo: "p",
          contiguous: "C",
        };
        assert.equal(typeChar, expected[e.type], `layer ${i}: ${line} is ${e.type}`);
        if (e.type === "file" || e.type === "contiguous") {
          assert.match(line, new RegExp(` ${e.payloadSize} `), `layer ${i}: ${line} size`);
        }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** `bytes` with `field` written at `at` in the header at `header`, its checksum made right. */
function patchHeader(bytes: Uint8Array, header: number, at: number, field: Uint8Array): Uint8Array {
  const out = bytes.slice();
  out.set(field, header + at);
  out.fill(0x20, header + 148, header + 156);
  const sum = out.subarray(header, header + 512).reduce((s, x) => s + x, 0);
  out.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), header + 148);
  return out;
}

Deno.test("tar reader: numeric fields as Go reads them (spaces, text after a NUL, base-256 negatives)", async () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const plain = new TarBuilder("ustar").file("f", "x").build();
  // Leading spaces and NULs skipped; everything after the first NUL inside the field ignored.
  let bytes = patchHeader(plain, 0, 100, enc(" 0644\0x7"));
  // mtime -1 in base-256: marker bit, then two's complement ones (Go's `formatNumeric`).
  bytes = patchHeader(bytes, 0, 136, new Uint8Array(12).fill(0xff));
  // uid 2^33 in base-256: larger than 8 octal digits can say.
  const uid = new Uint8Array(8);
  uid[0] = 0x80;
  uid[3] = 0x02;
  bytes = patchHeader(bytes, 0, 108, uid);
  const { entries } = await readAll(bytes);
  assert.equal(entries[0].mode, 0o644);
  assert.equal(entries[0].mtime.sec, -1);
  assert.equal(entries[0].uid, 2 ** 33);

  const bad = patchHeader(plain, 0, 116, enc("00012x4\0"));
  await assert.rejects(readAll(bad), (e: unknown) => {
    assert.ok(e instanceof TarFormatError);
    assert.match(e.message, /at byte 0: invalid octal gid field "00012x4\\u0000"/);
    return true;
  });
});

Deno.test("tar reader: a pax path outranks a GNU long name, as Go merges pax records last", async () => {
  const long = `usr/share/${"d".repeat(120)}`;
  // An old-style '\0' entry: a trailing slash in its final path makes it a directory.
  const tar = new TarBuilder("gnu")
    .add({ path: long, longNames: "gnu", typeflag: "\0", pax: { path: `${long}/` } })
    .build();
  const r = new TarReader((async function* () {
    yield tar;
  })());
  const e = (await r.next())!;
  assert.deepEqual(e.headerParts.map((p) => p.typeflag), ["L", "x", "\0"]);
  assert.equal(e.pathText, `${long}/`);
  assert.equal(e.type, "directory");
  assert.equal(e.payloadSize, 0);
  assert.equal(await r.next(), null);
});
