/**
 * The object references of a splitstream being written: each distinct object id once, in the
 * order first referenced, with its index (what a chunk header names; specs/composefs-repo.md
 * §5). Kept as raw digests in one growing buffer with an open-addressing index over them,
 * because a layer of 100,000 files held as a `Map` of 128-character hex ids cost about 14 MiB,
 * the largest structure an import kept per file; this costs about 5.
 *
 * @module
 */

import { fromHex, HexError } from "../../digest/hash.ts";

/** Initial number of ids the table has room for; it doubles as it fills. */
const INITIAL_CAPACITY = 1024;

/**
 * Distinct object ids, numbered in the order they were first added.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ObjectRefTable } from "./object_ref_table.ts";
 *
 * const t = new ObjectRefTable(32);
 * assert.equal(t.indexOf("ab".repeat(32)), 0);
 * assert.equal(t.indexOf("cd".repeat(32)), 1);
 * assert.equal(t.indexOf("ab".repeat(32)), 0);
 * assert.equal(t.size, 2);
 * assert.equal(t.digests()[32], 0xcd);
 * ```
 */
export class ObjectRefTable {
  #digests: Uint8Array;
  /** Open addressing: slot → id index + 1 (0: empty); at most half full. */
  #slots: Int32Array;
  #size = 0;

  /** @param hashLen bytes of one digest: 32 (sha256) or 64 (sha512). */
  constructor(readonly hashLen: number) {
    this.#digests = new Uint8Array(INITIAL_CAPACITY * hashLen);
    this.#slots = new Int32Array(2 * INITIAL_CAPACITY);
  }

  /** Number of distinct ids. */
  get size(): number {
    return this.#size;
  }

  /** The index of hex id `id` (lowercase, `2 * hashLen` characters), added when new. */
  indexOf(id: string): number {
    if (id.length !== 2 * this.hashLen) {
      throw new RangeError(`expected a ${2 * this.hashLen}-character id, found ${id.length}`);
    }
    let d: Uint8Array;
    try {
      d = fromHex(id);
    } catch (e) {
      if (e instanceof HexError) throw new RangeError(`not a hex id: ${JSON.stringify(id)}`);
      throw e;
    }
    const mask = this.#slots.length - 1;
    for (let s = firstSlot(d, 0, mask);; s = (s + 1) & mask) {
      const at = this.#slots[s];
      if (at === 0) break;
      if (this.#equals(at - 1, d)) return at - 1;
    }
    return this.#add(d);
  }

  /** Every id added, as raw digests in index order (a view: valid until the next add). */
  digests(): Uint8Array {
    return this.#digests.subarray(0, this.#size * this.hashLen);
  }

  #equals(index: number, d: Uint8Array): boolean {
    const base = index * this.hashLen;
    for (let i = 0; i < d.length; i++) if (this.#digests[base + i] !== d[i]) return false;
    return true;
  }

  #add(d: Uint8Array): number {
    const index = this.#size++;
    if (this.#size * this.hashLen > this.#digests.length) {
      const grown = new Uint8Array(2 * this.#digests.length);
      grown.set(this.#digests);
      this.#digests = grown;
    }
    this.#digests.set(d, index * this.hashLen);
    if (2 * this.#size > this.#slots.length) this.#rehash(2 * this.#slots.length);
    else this.#place(index);
    return index;
  }

  #place(index: number): void {
    const mask = this.#slots.length - 1;
    let s = firstSlot(this.#digests, index * this.hashLen, mask);
    while (this.#slots[s] !== 0) s = (s + 1) & mask;
    this.#slots[s] = index + 1;
  }

  #rehash(slots: number): void {
    this.#slots = new Int32Array(slots);
    for (let i = 0; i < this.#size; i++) this.#place(i);
  }
}

/**
 * The slot a digest starting at `at` of `bytes` is looked for first. Digests are uniform: their
 * first four bytes are as good a hash as any.
 */
function firstSlot(bytes: Uint8Array, at: number, mask: number): number {
  return (bytes[at] | bytes[at + 1] << 8 | bytes[at + 2] << 16 | bytes[at + 3] << 24) & mask;
}
