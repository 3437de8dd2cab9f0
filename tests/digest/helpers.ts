/** Shared helpers of the digest tests: deterministic data and chunked feeding. */

export { pseudoRandomBytes } from "../harness/data.ts";

/** Feeds `bytes` to `sink` in pieces of `chunkSize` (the last one shorter), like a read loop. */
export function feedInChunks(
  sink: { update(chunk: Uint8Array): unknown },
  bytes: Uint8Array,
  chunkSize: number,
): void {
  for (let off = 0; off < bytes.length; off += chunkSize) {
    sink.update(bytes.subarray(off, Math.min(off + chunkSize, bytes.length)));
  }
}

/** The odd chunk sizes every streaming hasher must handle (straddling blocks every way). */
export const ODD_CHUNK_SIZES: readonly number[] = [1, 7, 4095, 4096, 4097, 65536];
