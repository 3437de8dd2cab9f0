/**
 * CRC-64/GO-ISO cross-checked against the real producer of tar-split files: Debian's `tar-split`
 * (Go, `crc64.ISO`). `tar-split disasm` records each file's CRC as base64 of 8 big-endian bytes
 * in `payload` (containers-storage.md §4.1); ours must equal it for c/storage to accept a layer.
 *
 * Needs `tar` and `tar-split`. Missing: fails when CI=true, skipped with a reason otherwise.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { Crc64Iso } from "../../lib/digest/crc64.ts";
import { pseudoRandomBytes } from "../harness/data.ts";
import { runOk } from "../harness/run.ts";
import { toolTest } from "../harness/tools.ts";

interface TarSplitEntry {
  type: number;
  name?: string;
  size?: number;
  payload?: string | null;
}

toolTest(
  "CRC of each file equals the payload `tar-split disasm` writes",
  [{ bin: "tar", pkg: "tar" }, { bin: "tar-split", pkg: "tar-split" }],
  async (bins) => {
    const files: Record<string, Uint8Array> = {
      "hello.txt": new TextEncoder().encode("hello from layer 2 (overrides)\n"),
      "one.bin": new Uint8Array([0xff]),
      "seven.bin": pseudoRandomBytes(7, 1),
      "block.bin": pseudoRandomBytes(4097, 2),
      "big.bin": pseudoRandomBytes(3 * 1024 * 1024 + 5, 3), // several 1 MiB segments
    };
    const dir = await Deno.makeTempDir({ prefix: "unistore-crc64-" });
    try {
      const src = join(dir, "src");
      await Deno.mkdir(src);
      for (const [name, bytes] of Object.entries(files)) {
        await Deno.writeFile(join(src, name), bytes);
      }
      const tarPath = join(dir, "layer.tar");
      const splitPath = join(dir, "layer.tar-split.gz");
      await runOk([bins.tar, "-C", src, "-cf", tarPath, ...Object.keys(files)]);
      await runOk([bins["tar-split"], "disasm", "--no-stdout", "--output", splitPath, tarPath]);

      const gz = await Deno.open(splitPath);
      const text = await new Response(
        gz.readable.pipeThrough(new DecompressionStream("gzip")),
      ).text();
      const entries = text.trim().split("\n").map((l) => JSON.parse(l) as TarSplitEntry);
      const fileEntries = entries.filter((e) => e.type === 1);
      assert.deepEqual(fileEntries.map((e) => e.name).sort(), Object.keys(files).sort());

      for (const e of fileEntries) {
        const ours = new Crc64Iso().update(files[e.name!]).digestBytes();
        assert.equal(Buffer.from(ours).toString("base64"), e.payload, e.name);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
