/**
 * Giving freed heap memory back to the kernel.
 *
 * Deno allocates ArrayBuffer contents with the C allocator. A long import frees most of what it
 * allocates, but glibc keeps freed pages mapped wherever a live allocation sits above them, so
 * the resident size only grows (bench/RESULTS.md: it doubled from a 1x to a 4x image while the
 * live JavaScript heap stayed flat). `malloc_trim(0)` hands back every whole free page of every
 * arena (madvise), whatever lies above it.
 *
 * @module
 */

import { libc } from "./libc.ts";

/**
 * Returns free heap pages to the kernel (glibc `malloc_trim(0)`); a no-op where the C library
 * has no such call. Costs a walk over the allocator's free lists: call it every few thousand
 * files, not per file.
 *
 * @example
 * ```ts
 * import { releaseFreeMemory } from "./memory.ts";
 * releaseFreeMemory();
 * ```
 */
export function releaseFreeMemory(): void {
  libc.malloc_trim?.(0n);
}
