/**
 * In-process throughput of the digests unistore computes while it places a file
 * (lib/digest: sha256 for layer diff_ids, fs-verity sha512 for composefs object names, CRC-64
 * for tar-split), next to plain sha512, on 256 MiB in memory fed in 1 MiB chunks as unistore
 * reads. It tells how much of an import is hashing, on this machine and this Deno. Prints one
 * JSON line `{"sha256": MB/s, "sha512": …, "fsverity-sha512": …, "fsverity-sha256": …,
 * "crc64": …}` (best of 2 rounds).
 *
 * usage: deno run -A bench/digest_rates.ts
 *
 * @module
 */

import { Crc64Iso } from "../lib/digest/crc64.ts";
import { FsVerityHasher } from "../lib/digest/fsverity.ts";
import { StreamingHash } from "../lib/digest/hash.ts";

const BYTES = 256 << 20;
const CHUNK = 1 << 20;

const data = new Uint8Array(BYTES);
crypto.getRandomValues(data.subarray(0, 65536));
for (let i = 65536; i < BYTES; i += 65536) data.copyWithin(i, 0, 65536);

const kinds: Record<string, () => { update(b: Uint8Array): unknown }> = {
  "sha256": () => new StreamingHash("sha256"),
  "sha512": () => new StreamingHash("sha512"),
  "fsverity-sha512": () => new FsVerityHasher("sha512"),
  "fsverity-sha256": () => new FsVerityHasher("sha256"),
  "crc64": () => new Crc64Iso(),
};
const rates: Record<string, number> = {};
for (let round = 0; round < 2; round++) {
  for (const [name, make] of Object.entries(kinds)) {
    const t = performance.now();
    const h = make();
    for (let off = 0; off < BYTES; off += CHUNK) h.update(data.subarray(off, off + CHUNK));
    const mbps = BYTES / 1e6 / ((performance.now() - t) / 1000);
    rates[name] = Math.max(rates[name] ?? 0, Math.round(mbps));
  }
}
console.log(JSON.stringify(rates));
