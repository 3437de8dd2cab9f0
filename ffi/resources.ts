/**
 * Process resources: giving freed heap memory back to the kernel, and how many files may be
 * open at once.
 *
 * Deno allocates ArrayBuffer contents with the C allocator. A long import frees most of what it
 * allocates, but glibc keeps freed pages mapped wherever a live allocation sits above them, so
 * the resident size only grows (bench/RESULTS.md: it doubled from a 1x to a 4x image while the
 * live JavaScript heap stayed flat). `malloc_trim(0)` hands back every whole free page of every
 * arena (madvise), whatever lies above it.
 *
 * @module
 */

import { check, errno, libc } from "./libc.ts";

/**
 * Returns free heap pages to the kernel (glibc `malloc_trim(0)`); a no-op where the C library
 * has no such call. Costs a walk over the allocator's free lists: call it every few thousand
 * files, not per file.
 *
 * @example
 * ```ts
 * import { releaseFreeMemory } from "./resources.ts";
 * releaseFreeMemory();
 * ```
 */
export function releaseFreeMemory(): void {
  libc.malloc_trim?.(0n);
}

/** `RLIMIT_NOFILE` on Linux: the open-file limit. */
const RLIMIT_NOFILE = 7;

/**
 * How many file descriptors this process may have open (the soft `RLIMIT_NOFILE`, which Deno
 * raises to the hard limit at start). Code that keeps many files open at once sizes itself by it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openFileLimit } from "./resources.ts";
 * assert.ok(openFileLimit() >= 64);
 * ```
 */
export function openFileLimit(): number {
  const buf = new Uint8Array(16); // struct rlimit { rlim_t cur, max }
  check(libc.getrlimit(RLIMIT_NOFILE, buf), errno[0], "getrlimit(RLIMIT_NOFILE)");
  const cur = new DataView(buf.buffer).getBigUint64(0, true);
  return cur > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(cur);
}
