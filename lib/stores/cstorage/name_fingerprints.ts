/**
 * A set of names kept as 64-bit fingerprints, for the duplicate-path check over every entry of
 * a layer (tar-split's `ErrDuplicatePath`, see tar_split.ts).
 *
 * A `Set<string>` holds each name as a string plus a table entry: about 100 bytes per name,
 * 11 MiB for the 111,000 files of one layer of the bench's 4× image, and more resident memory
 * than that once the heap has grown for it. Here a name costs 16 to 32 bytes of one typed
 * array (an 8-byte slot, the table between a quarter and half full), so the import's memory
 * stays flat in the size of its layers.
 *
 * The price: two different names share a fingerprint with probability about n²/2⁶⁵ for n
 * names (3·10⁻¹⁰ for 10⁵), and then the second is taken for a duplicate. A true duplicate is
 * always found. A layer crafted to collide can only get itself refused.
 *
 * @module
 */

/** Slots a set starts with (a power of two). */
const INITIAL_SLOTS = 1024;

/** murmur3's finalizer: every input bit flips about half of the output bits. */
function avalanche(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Names seen so far, as fingerprints in an open-addressing table (linear probing, at most half
 * full).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NameFingerprintSet } from "./name_fingerprints.ts";
 *
 * const seen = new NameFingerprintSet();
 * assert.equal(seen.add("usr/bin/bash"), true);
 * assert.equal(seen.add("usr/bin/sh"), true);
 * assert.equal(seen.add("usr/bin/bash"), false); // already there
 * assert.equal(seen.size, 2);
 * ```
 */
export class NameFingerprintSet {
  /** Slot i is `[2i]` (first hash) and `[2i + 1]` (second hash); both 0 when empty. */
  #slots = new Uint32Array(2 * INITIAL_SLOTS);
  #size = 0;

  /** Names added. */
  get size(): number {
    return this.#size;
  }

  /** Adds `name`; false when it (or a name with the same fingerprint) was there already. */
  add(name: string): boolean {
    // The fingerprint: two 32-bit hashes of the UTF-16 code units with different multipliers,
    // each finished by murmur3's avalanche step. Only compared within one process: changing it
    // changes nothing stored.
    let a = 0x811c9dc5; // FNV-1a
    let b = 0x9e3779b9;
    for (let i = 0; i < name.length; i++) {
      const c = name.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b + c, 0x5bd1e995);
      b ^= b >>> 15;
    }
    a = avalanche(a ^ name.length);
    b = avalanche(b);
    if (a === 0 && b === 0) b = 1; // (0, 0) marks an empty slot
    if (!this.#insert(a, b)) return false;
    this.#size++;
    if (this.#size > this.#slots.length / 4) this.#grow(); // more than half of the slots used
    return true;
  }

  #insert(a: number, b: number): boolean {
    const slots = this.#slots;
    const mask = slots.length / 2 - 1;
    for (let i = a & mask;; i = (i + 1) & mask) {
      const sa = slots[2 * i], sb = slots[2 * i + 1];
      if (sa === 0 && sb === 0) {
        slots[2 * i] = a;
        slots[2 * i + 1] = b;
        return true;
      }
      if (sa === a && sb === b) return false;
    }
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new Uint32Array(2 * old.length);
    for (let i = 0; i < old.length; i += 2) {
      if (old[i] !== 0 || old[i + 1] !== 0) this.#insert(old[i], old[i + 1]);
    }
  }
}
