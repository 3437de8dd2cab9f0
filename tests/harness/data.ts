/**
 * Test data that is varied enough to catch a misplaced byte and identical on
 * every run, so failures reproduce.
 *
 * @module
 */

/**
 * `n` pseudo-random bytes from a fixed seed (xorshift32).
 *
 * @example
 * ```ts
 * import { pseudoRandomBytes } from "./data.ts";
 * const a = pseudoRandomBytes(16, 7), b = pseudoRandomBytes(16, 7);
 * // a and b are equal; another seed gives other bytes
 * ```
 */
export function pseudoRandomBytes(n: number, seed = 0x9e3779b9): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
