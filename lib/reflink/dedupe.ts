/**
 * Sharing the blocks of two files that already hold equal bytes
 * (FIDEDUPERANGE). The kernel compares before it shares, so this is safe on
 * live data: inodes, metadata and checksums stay as they are.
 *
 * @module
 */

import { fidedupeRange } from "../../ffi/clone.ts";
import { fstat } from "../../ffi/fs.ts";

/**
 * Bytes per call. Some filesystems cap one dedupe request (jdupes and
 * duperemove use 16 MiB); larger requests may be cut short silently.
 */
export const DEDUPE_CHUNK = 16 * 1024 * 1024;

/** What {@linkcode dedupeFiles} achieved. */
export interface DedupeOutcome {
  /** `same`: every byte is now shared; `differs`: the files differ (nothing past that point shared). */
  status: "same" | "differs";
  bytesDeduped: number;
  /** Where the difference was found, for `differs`. */
  differsAt?: number;
}

/**
 * Makes `dstFd` share `srcFd`'s blocks when both hold exactly the same bytes.
 * Files of different sizes are refused up front (status `differs`).
 *
 * @example
 * ```ts ignore
 * const r = dedupeFiles(a, b);
 * if (r.status === "differs") console.log(`not equal at byte ${r.differsAt}`);
 * ```
 */
export function dedupeFiles(srcFd: number, dstFd: number, what?: string): DedupeOutcome {
  const size = fstat(srcFd).size;
  const dstSize = fstat(dstFd).size;
  if (size !== dstSize) {
    return { status: "differs", bytesDeduped: 0, differsAt: Math.min(size, dstSize) };
  }
  let off = 0;
  let total = 0;
  while (off < size) {
    const len = Math.min(DEDUPE_CHUNK, size - off);
    const r = fidedupeRange(srcFd, off, len, dstFd, off, what);
    if (r.status === "differs") return { status: "differs", bytesDeduped: total, differsAt: off };
    if (r.bytesDeduped <= 0) {
      throw new Error(
        `FIDEDUPERANGE ${what ?? ""}: kernel reported 0 bytes shared at offset ${off} ` +
          `(expected up to ${len})`,
      );
    }
    // A filesystem may share less than asked: continue from where it stopped.
    off += r.bytesDeduped;
    total += r.bytesDeduped;
  }
  return { status: "same", bytesDeduped: total };
}
