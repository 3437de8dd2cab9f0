/**
 * A first-in first-out queue of bytes in one reused buffer.
 *
 * The layer import holds the inline bytes of up to a thousand tar entries (headers, padding,
 * small files) until the files before them are linked. A copy per run would be an ArrayBuffer
 * per entry: V8 frees those only at a full GC, so over a large image they pile up as hundreds
 * of MiB of native memory. Here the bytes are copied into one buffer that is compacted in
 * place and only grows when more is queued at once than ever before.
 *
 * @module
 */

/** Capacity a queue starts with. */
const INITIAL_CAPACITY = 64 << 10;

/**
 * Bytes pushed in runs and taken back in the same runs, in order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ByteQueue } from "./byte_queue.ts";
 *
 * const q = new ByteQueue();
 * q.push(new Uint8Array([1, 2, 3]));
 * q.push(new Uint8Array([4]));
 * assert.deepEqual([...q.take(3)], [1, 2, 3]);
 * assert.deepEqual([...q.take(1)], [4]);
 * assert.equal(q.length, 0);
 * ```
 */
export class ByteQueue {
  #buf = new Uint8Array(INITIAL_CAPACITY);
  #head = 0;
  #tail = 0;

  /** Bytes queued and not yet taken. */
  get length(): number {
    return this.#tail - this.#head;
  }

  /** Copies `bytes` to the end of the queue (the caller may reuse them at once). */
  push(bytes: Uint8Array): void {
    if (this.#tail + bytes.length > this.#buf.length) this.#makeRoom(bytes.length);
    this.#buf.set(bytes, this.#tail);
    this.#tail += bytes.length;
  }

  /**
   * Removes the first `n` bytes and returns them as a view into the queue's buffer, valid only
   * until the next {@linkcode push}: copy them or use them at once.
   */
  take(n: number): Uint8Array {
    if (n > this.length) {
      throw new RangeError(`ByteQueue.take(${n}) with only ${this.length} bytes queued`);
    }
    const out = this.#buf.subarray(this.#head, this.#head + n);
    this.#head += n;
    if (this.#head === this.#tail) this.#head = this.#tail = 0;
    return out;
  }

  #makeRoom(n: number): void {
    const queued = this.length;
    if (queued + n <= this.#buf.length / 2) {
      this.#buf.copyWithin(0, this.#head, this.#tail);
    } else {
      const grown = new Uint8Array(Math.max(2 * this.#buf.length, queued + n));
      grown.set(this.#buf.subarray(this.#head, this.#tail));
      this.#buf = grown;
    }
    this.#head = 0;
    this.#tail = queued;
  }
}
