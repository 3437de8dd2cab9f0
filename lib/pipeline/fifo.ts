/**
 * A first-in first-out queue of items whose `shift` costs the same however long the queue is.
 *
 * The layer import keeps thousands of tar entries' pieces queued (inline runs, boundaries,
 * files waiting for their digests). `Array.prototype.shift` on arrays that long moved the
 * whole array each time: a twentieth of the import's main-thread time. Here the taken slots
 * are only cleared, and dropped in one splice once they are half the array.
 *
 * @module
 */

/** Taken slots kept before the array is compacted (then at least half of it is taken). */
const COMPACT_AFTER = 1024;

/**
 * Items pushed at the back and shifted from the front, in order; readable by position.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Fifo } from "./fifo.ts";
 *
 * const q = new Fifo<string>();
 * q.push("a");
 * q.push("b");
 * assert.equal(q.at(q.length - 1), "b");
 * assert.equal(q.shift(), "a");
 * assert.equal(q.length, 1);
 * ```
 */
export class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  /** Items queued and not yet shifted. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  /** The oldest item, removed; undefined when the queue is empty. */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined; // no longer kept alive by the queue
    if (this.#head >= COMPACT_AFTER && this.#head * 2 >= this.#items.length) {
      this.#items.splice(0, this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** The item `i` places after the oldest (0 is the oldest), or undefined past the end. */
  at(i: number): T | undefined {
    return i >= 0 ? this.#items[this.#head + i] : undefined;
  }

  /** Every queued item, oldest first, removed from the queue. */
  takeAll(): T[] {
    const all = this.#items.slice(this.#head) as T[];
    this.#items = [];
    this.#head = 0;
    return all;
  }
}
