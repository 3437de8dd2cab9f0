/**
 * Buffered, exact-size reads from an async stream of byte chunks: what both format readers
 * (tar archives, splitstream chunk sequences) need on top of a decompressor's output.
 *
 * Chunks are kept by reference until consumed, so the source must hand out fresh buffers (as
 * `node:zlib`, `OciLayout.blobChunks` and the splitstream section reader do).
 *
 * @module
 */

/**
 * What a source hands a {@linkcode ByteReader} per step: a chunk, or several in order (a
 * producer that has many small ones at once saves a step of the async iteration per chunk).
 */
export type ByteChunks = Uint8Array | readonly Uint8Array[];

/**
 * Reads exact byte counts from an async iterable of chunks (or of arrays of chunks).
 *
 * @example
 * ```ts
 * const r = new ByteReader((async function* () { yield new Uint8Array([1, 2, 3]); })());
 * await r.fill(2); // true
 * r.take(2); // Uint8Array [1, 2]
 * ```
 */
export class ByteReader {
  readonly #source: AsyncIterator<ByteChunks>;
  /** Buffered chunks from `#first` on (those before it were taken whole). */
  #chunks: Uint8Array[] = [];
  #first = 0;
  /** Bytes of `#chunks[#first]` already taken. */
  #head = 0;
  #eof = false;
  /** Bytes buffered and not yet taken. */
  length = 0;
  /** Bytes taken so far (the offset of the next byte in the stream). */
  offset = 0;

  constructor(source: AsyncIterable<ByteChunks>) {
    this.#source = source[Symbol.asyncIterator]();
  }

  /** Buffers until at least `n` bytes are available; false when the stream ends first. */
  async fill(n: number): Promise<boolean> {
    while (this.length < n && !this.#eof) {
      // Drop the chunks taken whole, once per read from the source: a batch of thousands of
      // small chunks is consumed by index, not by shifting the array each time.
      if (this.#first > 0) {
        this.#chunks = this.#chunks.slice(this.#first);
        this.#first = 0;
      }
      const r = await this.#source.next();
      if (r.done) this.#eof = true;
      else if (r.value instanceof Uint8Array) this.#push(r.value);
      else for (const chunk of r.value) this.#push(chunk);
    }
    return this.length >= n;
  }

  #push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.length += chunk.length;
  }

  /** True once the source is exhausted and every byte was taken. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill(1));
  }

  /** Exactly `n` buffered bytes (n <= length): a view when they lie in one chunk, else a copy. */
  take(n: number): Uint8Array {
    const first = this.#chunks[this.#first];
    if (n === 0) return new Uint8Array(0);
    if (first.length - this.#head >= n) return this.#takeView(n);
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const part = this.#takeView(
        Math.min(n - off, this.#chunks[this.#first].length - this.#head),
      );
      out.set(part, off);
      off += part.length;
    }
    return out;
  }

  /** Up to `n` bytes from the first buffered chunk, as a view (length > 0 required). */
  takeUpTo(n: number): Uint8Array {
    return this.#takeView(Math.min(n, this.#chunks[this.#first].length - this.#head));
  }

  /** The next `n` buffered bytes without consuming them (n <= length). */
  peek(n: number): Uint8Array {
    const first = this.#chunks[this.#first];
    if (first.length - this.#head >= n) return first.subarray(this.#head, this.#head + n);
    const out = new Uint8Array(n);
    let off = 0;
    let i = this.#first;
    let head = this.#head;
    while (off < n) {
      const c = this.#chunks[i++];
      const part = c.subarray(head, Math.min(c.length, head + n - off));
      out.set(part, off);
      off += part.length;
      head = 0;
    }
    return out;
  }

  #takeView(n: number): Uint8Array {
    const first = this.#chunks[this.#first];
    const view = first.subarray(this.#head, this.#head + n);
    this.#head += n;
    this.length -= n;
    this.offset += n;
    if (this.#head === first.length) {
      this.#first++;
      this.#head = 0;
    }
    return view;
  }
}
