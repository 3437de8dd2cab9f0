/**
 * Byte strings carried as JavaScript strings, one UTF-16 code unit per byte (0–255): names
 * that need not be UTF-8 (tar entry names, xattr values) stay byte-exact while they key maps
 * and compare cheaply.
 *
 * @module
 */

/** A byte string stored one byte per UTF-16 code unit. */
export type BinaryString = string;

/**
 * Bytes per `String.fromCharCode.apply` call: the arguments are materialized on the stack, so
 * a long name is converted in slices (well under any engine's argument limit).
 */
const APPLY_CHUNK = 8192;

/**
 * Bytes as a {@linkcode BinaryString}.
 *
 * `apply` with the typed array, not a spread: a spread walks the iterator protocol and
 * allocates a result object per byte (as it did for digests' hex, lib/digest/hash.ts), garbage
 * that tens of thousands of names per layer multiply.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { binaryFromBytes, bytesFromBinary } from "./binary_string.ts";
 *
 * const s = binaryFromBytes(new Uint8Array([0x61, 0xff, 0x00]));
 * assert.equal(s, "a\u00ff\u0000");
 * assert.deepEqual(bytesFromBinary(s), new Uint8Array([0x61, 0xff, 0x00]));
 * ```
 */
export function binaryFromBytes(bytes: Uint8Array): BinaryString {
  if (bytes.length <= APPLY_CHUNK) return charsOf(bytes);
  const parts: string[] = [];
  for (let i = 0; i < bytes.length; i += APPLY_CHUNK) {
    parts.push(charsOf(bytes.subarray(i, i + APPLY_CHUNK)));
  }
  return parts.join("");
}

function charsOf(bytes: Uint8Array): string {
  // A typed array is array-like, which is all `apply` needs; the cast is for the types only.
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

/** A {@linkcode BinaryString} back to bytes (each code unit must be 0–255). */
export function bytesFromBinary(s: BinaryString): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
